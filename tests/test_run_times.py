"""The README's run times are measurements: each is at least the CPU time that
``tools/notebook_times.py`` measured for the notebook at full size (data/notebook-times.json).
No timing is taken here (a test never times anything): the file is the measurement."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| \w+ \| \[[^\]]+\]\(notebooks/(?P<stem>[\w]+)\.ipynb\) \|.*\| "
                 r"(?P<run>[\d.]+) (?P<unit>s|min)\*? \|$", re.MULTILINE)


def readme_run_times() -> dict[str, float]:
    """Notebook stem -> the README's run time in seconds."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return {match.group("stem"): float(match.group("run")) * (60 if match.group("unit") == "min"
                                                              else 1)
            for match in ROW.finditer(text)}


def test_every_notebook_has_a_run_time_in_the_readme():
    stems = {path.stem for path in (ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb")}
    assert set(readme_run_times()) == stems


def test_each_readme_run_time_covers_the_measured_cpu_time():
    measured = json.loads((ROOT / "data" / "notebook-times.json").read_text(encoding="utf-8"))
    for stem, seconds in readme_run_times().items():
        assert stem in measured, f"{stem}: not measured (python tools/notebook_times.py {stem})"
        cpu = measured[stem]["cpu_seconds"]
        assert cpu <= seconds, (f"{stem}: measured {cpu:.0f} s of CPU at full size, the README "
                                f"says {seconds:.0f} s")
