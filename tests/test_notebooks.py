"""Keep the course honest: every notebook is a clean, in-sync pair that follows the shape.

The notebooks themselves are executed by nbmake (``pytest`` collects ``notebooks/*.ipynb``
because ``--nbmake`` is in the pytest options); these tests check the files around them.
"""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_there_are_notebooks():
    assert SOURCES, f"no notebooks/NN_*.py found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_every_source_has_an_in_sync_ipynb(source: Path):
    twin = source.with_suffix(".ipynb")
    assert twin.is_file(), f"{source.name} has no paired {twin.name}: run jupytext --sync"
    from_text = jupytext.read(source)
    from_ipynb = jupytext.read(twin)
    assert _cells(from_text) == _cells(from_ipynb), (
        f"{source.name} and {twin.name} differ: run `jupytext --sync {source}` "
        "(the .py file is the source of truth)"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_every_ipynb_has_a_source_and_no_outputs(notebook: Path):
    assert notebook.with_suffix(".py").is_file(), f"{notebook.name} has no paired .py source"
    raw = json.loads(notebook.read_text(encoding="utf-8"))
    for index, cell in enumerate(raw["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), f"{notebook.name} cell {index} is committed with outputs"
        assert cell.get("execution_count") is None, (
            f"{notebook.name} cell {index} has an execution count: strip outputs before commit"
        )
    assert "widgets" not in raw.get("metadata", {}), f"{notebook.name} stores widget state"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_every_notebook_opens_the_same_way(source: Path):
    cells = jupytext.read(source).cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), (
        f"{source.name} must open with a markdown title cell"
    )
    opening = "\n".join(cell.source for cell in cells[:3]).lower()
    for needed in ("objectives", "time"):
        assert needed in opening, f"{source.name}: the opening cells must state the {needed}"
    code = [cell.source for cell in cells if cell.cell_type == "code"]
    setup_index = next((i for i, text in enumerate(code) if "nlbook.setup(" in text), None)
    assert setup_index is not None and setup_index <= 1, (
        f"{source.name}: nlbook.setup() must run in the first code cells"
    )
    assert "google.colab" in code[0], f"{source.name}: the first code cell installs on Colab"
    for text in code:
        for line in text.splitlines():
            assert not line.lstrip().startswith(("%", "!")) or line == line.lstrip(), (
                f"{source.name}: no indented magics (they break the py:percent round trip)"
            )
