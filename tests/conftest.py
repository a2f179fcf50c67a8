"""Unit tests draw figures with the non-interactive Agg backend."""

import matplotlib

matplotlib.use("Agg")
