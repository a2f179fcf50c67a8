"""nlbook.course: the repository address lives in pyproject.toml only, and every copy (the
notebooks' setup cells, the README's Colab links) is generated from it and checked."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import jupytext
import pytest

from nlbook import course

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))


def first_code_cell(path: Path) -> str:
    return next(cell.source for cell in jupytext.read(path).cells if cell.cell_type == "code")


def test_every_copy_agrees_with_pyproject():
    problems = course.check(ROOT)
    assert problems == [], "\n".join(problems)


def test_the_address_is_read_from_project_urls():
    address = course.repository_address(ROOT)
    assert address.startswith("https://")
    assert f'Repository = "{address}"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert course.main(["check"]) == 0


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_setup_cell_ends_without_an_expression_echo(source):
    # Jupyter echoes a cell's last expression as Out[..]: setup() prints its summary once and
    # its SetupInfo is assigned, not shown a second time.
    body = ast.parse(first_code_cell(source)).body
    assert not isinstance(body[-1], ast.Expr), f"{source.name}: the setup cell echoes a value"
    assert "nlbook.setup(" in ast.unparse(body[-1])


def test_setup_cell_reads_NLBOOK_REPOSITORY_and_never_raises_a_subprocess_error():
    cell = course.setup_cell("https://github.com/someone/fork")
    assert 'os.environ.get("NLBOOK_REPOSITORY", "https://github.com/someone/fork")' in cell
    assert "check=True" not in cell  # a failure is explained, not a CalledProcessError
    compile(cell, "setup cell", "exec")
    lines = cell.splitlines()
    assert all(not line.lstrip().startswith(("%", "!")) for line in lines)  # plain Python


def make_checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    for source in SOURCES:
        shutil.copy(source, root / "notebooks" / source.name)
        shutil.copy(source.with_suffix(".ipynb"), root / "notebooks" / source.with_suffix(
            ".ipynb").name)
    return root


def test_a_changed_address_is_found_everywhere_and_sync_rewrites_it(tmp_path):
    root = make_checkout(tmp_path)
    assert course.check(root) == []
    old = course.repository_address(root)
    new = "https://github.com/someone/fork"
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8").replace(old, new),
                         encoding="utf-8")
    problems = course.check(root)
    assert len(problems) == 2 * len(SOURCES) + 1  # every .py, every .ipynb, the README block
    changed = course.sync(root)
    assert len(changed) == len(problems)
    assert course.check(root) == []
    assert course.sync(root) == []  # idempotent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/01_" in readme
    assert old not in readme
    for source in SOURCES:
        copied = root / "notebooks" / source.name
        assert new in first_code_cell(copied) and old not in copied.read_text(encoding="utf-8")
        # the pair stays in sync, cell ids and everything after the setup cell untouched
        text_cells = [(c.cell_type, c.source) for c in jupytext.read(copied).cells]
        twin = copied.with_suffix(".ipynb")
        assert text_cells == [(c.cell_type, c.source) for c in jupytext.read(twin).cells]
        before = json.loads(source.with_suffix(".ipynb").read_text(encoding="utf-8"))["cells"]
        after = json.loads(twin.read_text(encoding="utf-8"))["cells"]
        assert [cell.get("id") for cell in before] == [cell.get("id") for cell in after]
        assert before[2:] == after[2:]


def test_one_edited_copy_or_a_stray_copy_is_reported(tmp_path):
    root = make_checkout(tmp_path)
    address = course.repository_address(root)
    notebook = root / "notebooks" / SOURCES[0].name
    notebook.write_text(notebook.read_text(encoding="utf-8").replace(
        "setup_info = nlbook.setup(seed=0)", "nlbook.setup(seed=0)"), encoding="utf-8")
    (root / "notes.md").write_text(f"clone {address} by hand\n", encoding="utf-8")
    problems = course.check(root)
    assert any(SOURCES[0].name in problem and "setup cell" in problem for problem in problems)
    assert any(problem.startswith("notes.md") for problem in problems)
    assert len(problems) == 2
    course.sync(root)
    assert [problem for problem in course.check(root) if "notes.md" not in problem] == []


def test_sync_keeps_a_notebooks_seed_and_fills_a_new_notebook(tmp_path):
    root = make_checkout(tmp_path)
    new = root / "notebooks" / "07_new_chapter.py"
    new.write_text("# %% [markdown]\n# # Chapter 7\n\n# %%\nimport nlbook\n\n"
                   "nlbook.setup(seed=3)\n\n# %%\nprint('experiment')\n", encoding="utf-8")
    jupytext.write(jupytext.read(new), new.with_suffix(".ipynb"), fmt="ipynb")
    assert any("07_new_chapter" in problem for problem in course.check(root))
    course.sync(root)
    assert course.check(root) == []
    cell = first_code_cell(new)
    assert cell.endswith("setup_info = nlbook.setup(seed=3)") and "google.colab" in cell
    assert "print('experiment')" in new.read_text(encoding="utf-8")
    assert "notebooks/07_new_chapter.ipynb" in (root / "README.md").read_text(encoding="utf-8")


def test_colab_links_need_a_github_address():
    assert course.colab_url("https://github.com/a/b.git", "notebooks/x.ipynb") == (
        "https://colab.research.google.com/github/a/b/blob/main/notebooks/x.ipynb")
    with pytest.raises(course.CourseError, match="GitHub"):
        course.colab_url("https://gitlab.com/a/b", "notebooks/x.ipynb")
