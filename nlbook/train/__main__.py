"""``python -m nlbook.train``."""

from nlbook.train.cli import main

raise SystemExit(main())
