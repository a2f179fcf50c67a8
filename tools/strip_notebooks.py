"""Strip run results from the course's .ipynb files before a commit (authors' tool).

JupyterLab saves a notebook with its outputs, execution counts, per-cell execution times and
the kernel's language_info; none of it belongs in the repository. This removes all of it and
keeps only what the paired .py source also holds (the cells, the kernelspec, jupytext's
settings), so a stripped notebook is byte-identical to the one ``jupytext --sync`` writes.

    python tools/strip_notebooks.py                  # every notebooks/NN_*.ipynb
    python tools/strip_notebooks.py notebooks/03_continuum_memory.ipynb
    python tools/strip_notebooks.py --check          # exit 1 if a notebook needs stripping
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KEPT_METADATA = ("jupytext", "kernelspec")
# What Jupyter adds to a cell when it runs or shows it (jupytext's own keys, such as
# lines_to_next_cell, stay: they come from the .py).
RUN_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "jupyter", "trusted")


def stripped(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` without outputs, execution counts or the metadata of a run."""
    for cell in notebook.cells:
        for key in RUN_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata = nbformat.NotebookNode(
        {key: notebook.metadata[key] for key in KEPT_METADATA if key in notebook.metadata})
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path,
                        help="notebooks to strip (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a notebook holds run results")
    arguments = parser.parse_args(argv)
    paths = arguments.paths or sorted(NOTEBOOK_DIR.glob("[0-9][0-9]*_*.ipynb"))
    dirty = []
    for path in paths:
        before = path.read_text(encoding="utf-8")
        after = nbformat.writes(stripped(nbformat.reads(before, as_version=4)))
        if not after.endswith("\n"):
            after += "\n"
        if after != before:
            dirty.append(path)
            if not arguments.check:
                path.write_text(after, encoding="utf-8")
    for path in dirty:
        print(f"{'needs stripping' if arguments.check else 'stripped'}: {path}")
    return 1 if arguments.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
