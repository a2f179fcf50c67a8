"""python -m nlbook.render: executed notebooks as HTML with outputs, progress per notebook, and
an error that names the notebook and the cell. Small made-up notebooks (seconds), plus one
chapter at smoke size."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from nlbook import render

ROOT = Path(__file__).resolve().parent.parent


def write_notebook(path: Path, *code: str) -> Path:
    cells = [nbformat.v4.new_markdown_cell(f"# {path.stem} title")]
    cells += [nbformat.v4.new_code_cell(source) for source in code]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_a_book_is_rendered_with_outputs_progress_and_an_error_naming_the_cell(tmp_path):
    good = write_notebook(
        tmp_path / "01_good.ipynb",
        "import os\nprint('sizes:', os.environ['NLBOOK_SMOKE'])",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()")
    bad = write_notebook(tmp_path / "02_bad.ipynb", "x = 1", "print('before')\n1 / 0",
                         "print('never reached')")
    lines = []
    rendered = render.render_book([bad, good], tmp_path / "book", progress=lines.append)
    failed, passed = rendered
    assert passed.error is None and failed.error is not None
    message = str(failed.error)
    assert str(bad) in message and "cell 3 (code cell 2: `print('before')`)" in message
    assert "ZeroDivisionError" in message and failed.error.cell_index == 2
    page = passed.html.read_text(encoding="utf-8")
    assert "sizes: 0" in page  # full sizes by default
    assert "data:image/png;base64" in page  # figures are inside the page
    partial = failed.html.read_text(encoding="utf-8")
    assert "before" in partial and "ZeroDivisionError" in partial and "never reached" in partial
    assert [line.split(":")[0] for line in lines if "running" in line] == [
        f"[1/2] {bad}", f"[2/2] {good}"]
    assert any("FAILED" in line for line in lines) and any("done" in line for line in lines)
    index = (tmp_path / "book" / "index.html").read_text(encoding="utf-8")
    assert '<a href="01_good.html">01_good title</a>' in index and "FAILED" in index


def test_the_command_exits_non_zero_naming_the_failure(tmp_path, capsys):
    bad = write_notebook(tmp_path / "bad.ipynb", "raise ValueError('broken on purpose')")
    assert render.main([str(bad), "--output", str(tmp_path / "out"), "--smoke"]) == 1
    captured = capsys.readouterr()
    assert f"error: {bad}, cell 2 (code cell 1: `raise ValueError" in captured.err
    assert "ValueError: broken on purpose" in captured.err
    assert render.main([str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err


def test_a_chapter_renders_at_smoke_size(tmp_path, monkeypatch):
    monkeypatch.setenv("NLBOOK_SMOKE", "1")
    chapter = ROOT / "notebooks" / "04_self_modifying.ipynb"
    if not chapter.is_file():
        pytest.skip("chapter 4 is not in this checkout")
    (result,) = render.render_book([chapter], tmp_path, smoke=True, progress=None)
    assert result.error is None, result.error
    page = result.html.read_text(encoding="utf-8")
    assert "SMOKE" in page and "data:image/png;base64" in page
    import os

    assert os.environ["NLBOOK_SMOKE"] == "1"  # restored
