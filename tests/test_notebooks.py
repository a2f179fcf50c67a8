"""Keep the course honest: every notebook is a clean, in-sync pair that follows the shape.

The notebooks themselves are executed by nbmake (``pytest`` collects ``notebooks/*.ipynb``
because ``--nbmake`` is in the pytest options); these tests check the files around them.

The file checks read **what git would commit** (the staged version, ``git show :path``), and
the file on disk only outside a git checkout or for a file git does not track yet. A student
who runs a notebook in JupyterLab and saves it (outputs kept in the ``.ipynb``; the paired
``.py`` rewritten by jupytext) therefore keeps a passing ``pytest`` in their clone, while an
author's ``git add`` of an unstripped or unsynced pair fails here before it is committed.
``test_running_and_saving_a_notebook_keeps_the_checks_passing`` simulates exactly that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]*_*.py"))
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]*_*.ipynb"))
KERNEL = "python3"


# ----------------------------------------------------------------------------- reading files

def committed_text(path: Path) -> str:
    """The text git would commit for ``path`` (its staged blob), or the file on disk when
    ``path`` is not in a git checkout or not tracked."""
    git = shutil.which("git")
    if git is not None:
        result = subprocess.run([git, "show", f":./{path.name}"], cwd=path.parent,
                                capture_output=True)
        if result.returncode == 0:
            return result.stdout.decode("utf-8")
    return path.read_text(encoding="utf-8")


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


# ----------------------------------------------------------------------------- the checks
# Each takes a path, so that the simulation below can run them on a student's clone.

def check_pair_in_sync(source: Path) -> None:
    twin = source.with_suffix(".ipynb")
    assert twin.is_file(), f"{source.name} has no paired {twin.name}: run jupytext --sync"
    from_text = jupytext.reads(committed_text(source), fmt="py:percent")
    from_ipynb = jupytext.reads(committed_text(twin), fmt="ipynb")
    assert _cells(from_text) == _cells(from_ipynb), (
        f"{source.name} and {twin.name} differ: run `jupytext --sync {source}` "
        "(the .py file is the source of truth)")


def check_clean(notebook: Path) -> None:
    assert notebook.with_suffix(".py").is_file(), f"{notebook.name} has no paired .py source"
    raw = json.loads(committed_text(notebook))
    for index, cell in enumerate(raw["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), (
            f"{notebook.name} cell {index} is committed with outputs: strip them (README, "
            "'Editing the notebooks as text')")
        assert cell.get("execution_count") is None, (
            f"{notebook.name} cell {index} has an execution count: strip outputs before commit")
    assert "widgets" not in raw.get("metadata", {}), f"{notebook.name} stores widget state"


def check_kernelspec(source: Path) -> None:
    """Both files name the kernel, so JupyterLab opens the notebook without asking."""
    notebook = source.with_suffix(".ipynb")
    for name, metadata in (
            (notebook.name, json.loads(committed_text(notebook)).get("metadata", {})),
            (source.name, jupytext.reads(committed_text(source), fmt="py:percent").metadata)):
        kernelspec = metadata.get("kernelspec", {})
        assert kernelspec.get("name") == KERNEL and kernelspec.get("language") == "python", (
            f"{name} has no python3 kernelspec (JupyterLab would ask 'Select Kernel'): "
            f"got {kernelspec!r}")
        assert kernelspec.get("display_name"), f"{name}: the kernelspec needs a display_name"


def check_opens_the_same_way(source: Path) -> None:
    cells = jupytext.reads(committed_text(source), fmt="py:percent").cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), (
        f"{source.name} must open with a markdown title cell")
    opening = "\n".join(cell.source for cell in cells[:3]).lower()
    for needed in ("objectives", "time"):
        assert needed in opening, f"{source.name}: the opening cells must state the {needed}"
    code = [cell.source for cell in cells if cell.cell_type == "code"]
    setup_index = next((i for i, text in enumerate(code) if "nlbook.setup(" in text), None)
    assert setup_index is not None and setup_index <= 1, (
        f"{source.name}: nlbook.setup() must run in the first code cells")
    assert "google.colab" in code[0], f"{source.name}: the first code cell installs on Colab"
    for text in code:
        for line in text.splitlines():
            assert not line.lstrip().startswith(("%", "!")) or line == line.lstrip(), (
                f"{source.name}: no indented magics (they break the py:percent round trip)")


_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]+\$|`[^`\n]*`", re.DOTALL)


# Outside math: a sub- or superscript in brackets (W_{t+1}, α^{i−j}, MLP^(f_K)), or a line
# that opens with a subscripted symbol and an equals sign (o_t = M(q_t)): a display equation.
_PLAIN_FORMULA = re.compile(r"[_^][{(]|^\s*[A-Za-zα-ωΑ-Ω]\w*_[\w{(][^=]*=\s")


def check_equations_are_typeset(source: Path) -> None:
    """Every chapter writes its formulas in LaTeX ($…$, $$…$$), not as plain text."""
    for index, cell in enumerate(jupytext.reads(committed_text(source), fmt="py:percent").cells):
        if cell.cell_type != "markdown":
            continue
        prose = _MATH.sub("", cell.source)
        for line in prose.splitlines():
            assert not _PLAIN_FORMULA.search(line), (
                f"{source.name} markdown cell {index} has an equation in plain text: "
                f"{line.strip()!r} (write it as $…$)")


_HEADING_COMMENT = re.compile(r"^# #{1,6} \S")


def check_no_markdown_in_code(source: Path) -> None:
    """A markdown heading written as a comment inside a code cell (``# ## 1. ...``) is a
    missing ``# %% [markdown]`` marker: the section's heading and prose would render as code."""
    for index, cell in enumerate(jupytext.reads(committed_text(source), fmt="py:percent").cells):
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            assert not _HEADING_COMMENT.match(line), (
                f"{source.name} code cell {index} holds a markdown heading as a comment: "
                f"{line.strip()!r} (a missing `# %% [markdown]` marker above it?)")


# ----------------------------------------------------------------------------- the tests

def test_there_are_notebooks():
    assert SOURCES, f"no notebooks/NN_*.py found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_every_source_has_an_in_sync_ipynb(source: Path):
    check_pair_in_sync(source)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_every_ipynb_has_a_source_and_no_outputs(notebook: Path):
    check_clean(notebook)


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_every_notebook_names_its_kernel(source: Path):
    check_kernelspec(source)


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_every_notebook_opens_the_same_way(source: Path):
    check_opens_the_same_way(source)


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_every_chapter_typesets_its_equations(source: Path):
    check_equations_are_typeset(source)


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_no_code_cell_holds_a_markdown_heading(source: Path):
    check_no_markdown_in_code(source)


def test_the_checks_catch_what_they_are_for(tmp_path: Path):
    """Each check fails on the defect it exists for (outside git, the file on disk counts)."""
    import nbformat

    source = tmp_path / "09_example.py"
    source.write_text("# %% [markdown]\n# # Title\n#\n# Objectives, time.\n\n"
                      "# %% [markdown]\n# o_t = M(q_t)\n\n# %%\nx = 1\n", encoding="utf-8")
    notebook = jupytext.reads(source.read_text(encoding="utf-8"), fmt="py:percent")
    notebook.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    notebook.cells[2].execution_count = 1
    jupytext.write(notebook, source.with_suffix(".ipynb"), fmt="ipynb")
    with pytest.raises(AssertionError, match="committed with outputs"):
        check_clean(source.with_suffix(".ipynb"))
    with pytest.raises(AssertionError, match="kernelspec"):
        check_kernelspec(source)
    with pytest.raises(AssertionError, match="plain text"):
        check_equations_are_typeset(source)
    heading = tmp_path / "09_heading.py"
    heading.write_text("# %%\nx = 1\n\n# ## 1. A section\n#\n# Its prose.\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="missing `# %% \\[markdown\\]` marker"):
        check_no_markdown_in_code(heading)
    source.write_text(source.read_text(encoding="utf-8") + "\n# %%\ny = 2\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="differ"):
        check_pair_in_sync(source)


# ----------------------------------------------------------------------------- run, then save

SIMULATED = "04_self_modifying"  # a quick chapter (about 15 s at smoke size)


def _git(repository: Path, *arguments: str) -> str:
    result = subprocess.run(["git", "-c", "user.name=student", "-c", "user.email=s@example.org",
                             *arguments], cwd=repository, capture_output=True, text=True,
                            check=True)
    return result.stdout


@pytest.fixture(scope="module")
def saved_clone(tmp_path_factory):
    """A student's clone in which one notebook was run top to bottom and saved.

    The run is nbclient's (what JupyterLab's "Run all" does, in smoke sizes); the save goes
    through jupytext's contents manager, which writes the ``.ipynb`` with its outputs and
    rewrites the paired ``.py``, as JupyterLab does on every save and autosave.
    """
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    import nbclient
    import nbformat

    try:
        from jupytext.sync_contentsmanager import TextFileContentsManager
    except ImportError:  # jupytext < 1.17
        from jupytext.contentsmanager import TextFileContentsManager

    clone = tmp_path_factory.mktemp("clone")
    shutil.copy(ROOT / "jupytext.toml", clone)
    (clone / "notebooks").mkdir()
    for path in [*SOURCES, *NOTEBOOKS]:  # as published: what git holds, not a local run
        (clone / "notebooks" / path.name).write_text(committed_text(path), encoding="utf-8")
    _git(clone, "init", "-q")
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", "the course as published")

    relative = f"notebooks/{SIMULATED}.ipynb"
    notebook = nbformat.read(clone / relative, as_version=4)
    environment = {"NLBOOK_SMOKE": "1", "NLBOOK_HEADLESS": "1", "OMP_NUM_THREADS": "1"}
    saved_environment = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name=KERNEL, resources={
            "metadata": {"path": str(clone / "notebooks")}}).execute()
    finally:
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    manager = TextFileContentsManager(root_dir=str(clone))
    manager.save({"type": "notebook", "format": "json", "content": notebook}, relative)
    return clone, notebook


def test_running_and_saving_a_notebook_keeps_the_checks_passing(saved_clone):
    clone, _ = saved_clone
    notebook = clone / "notebooks" / f"{SIMULATED}.ipynb"
    source = notebook.with_suffix(".py")
    on_disk = json.loads(notebook.read_text(encoding="utf-8"))
    assert any(cell.get("outputs") for cell in on_disk["cells"]), "the save kept no outputs"
    assert _git(clone, "status", "--porcelain", "--untracked-files=no").split() == [
        "M", f"notebooks/{SIMULATED}.ipynb"], "saving must change nothing but the .ipynb"
    assert _cells(jupytext.read(source)) == _cells(jupytext.read(notebook))  # still paired
    check_pair_in_sync(source)
    check_clean(notebook)
    check_kernelspec(source)
    check_opens_the_same_way(source)
    check_equations_are_typeset(source)
    # An author who stages the unstripped notebook is told, before the commit...
    _git(clone, "add", f"notebooks/{SIMULATED}.ipynb")
    with pytest.raises(AssertionError, match="committed with outputs"):
        check_clean(notebook)
    # ... and the README's strip command gives back exactly the committed file.
    subprocess.run([sys.executable, str(ROOT / "tools" / "strip_notebooks.py"), str(notebook)],
                   check=True, capture_output=True)
    _git(clone, "add", f"notebooks/{SIMULATED}.ipynb")
    assert _git(clone, "status", "--porcelain", "--untracked-files=no") == ""
    check_clean(notebook)


def test_run_all_reports_every_exercise_not_done_without_an_echo(saved_clone):
    """"Run all" on the untouched notebook: each checker and question says "not done yet",
    and no exercise cell ends with an ``Out[...]`` (a checker's result displays nothing)."""
    _, notebook = saved_clone
    exercise_cells = [cell for cell in notebook.cells if cell.cell_type == "code"
                      and re.search(r"ex\.(check_\w+|answer)\(", cell.source)]
    assert exercise_cells
    for cell in exercise_cells:
        kinds = [output["output_type"] for output in cell.outputs]
        assert "execute_result" not in kinds and "error" not in kinds, (cell.source, kinds)
        printed = "".join(output.get("text", "") for output in cell.outputs
                          if output["output_type"] == "stream")
        assert "not done yet" in printed, cell.source


def test_run_all_hides_every_predict_then_run_result(saved_clone):
    """Through nbclient: a predict-then-run cell's outputs hold nothing of its experiment before
    a prediction is set (the experiment ran; ``ex.answer`` only says how to see it)."""
    _, notebook = saved_clone
    cells = [cell for cell in notebook.cells
             if cell.cell_type == "code" and "ex.answer(" in cell.source]
    assert cells
    for cell in cells:
        name = re.search(r'ex\.answer\("(\w+)"', cell.source).group(1)
        assert [output["output_type"] for output in cell.outputs] == ["stream"], cell.source
        printed = cell.outputs[0]["text"]
        assert printed.startswith(f"{name}: not done yet."), printed
        assert "hidden until you predict" in printed, printed
