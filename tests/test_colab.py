"""The Colab path, executed: the notebooks' setup cell in a Jupyter kernel that believes it runs
on Colab (a fake ``google.colab`` module), cloning the course from a local repository through
a ``file://`` address given in ``NLBOOK_REPOSITORY``.

- The failure paths (a clone that fails, an install that fails) run in this environment's own
  kernel: fast, no network.
- ``test_colab_keeps_the_preinstalled_torch_and_numpy`` (marked ``slow``; ``.ci/run`` runs it)
  builds a Colab-like environment: a new virtual environment that sees this one's packages
  (the way Colab's image has torch, matplotlib, ipywidgets preinstalled) but holds a numpy
  older than the pinned one, and no nlbook. The setup cell then clones and pip-installs the
  course there (pip needs a package index for the build backend, as on Colab), chapter 1's
  first experiment cells run, and torch and numpy must be the ones that were there before. Why
  numpy: the registry's only older torch wheels for x86-64 Linux are CUDA builds of several GB,
  so the torch "preinstalled" here is the pinned CPU build, and the test checks it was kept,
  not replaced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from nlbook import course

ROOT = Path(__file__).resolve().parent.parent
CHAPTER_1 = ROOT / "notebooks" / "01_associative_memory.py"
FAKE_COLAB = ("import sys, types\n"
              "sys.modules.setdefault('google', types.ModuleType('google'))\n"
              "sys.modules['google.colab'] = types.ModuleType('google.colab')")
OLDER_NUMPY = "2.0.2"  # Colab's numpy in 2025; the course pins 2.4.6


def git(*arguments: str, cwd: Path) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
               "-c", "init.defaultBranch=main", *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def local_repository(tmp_path: Path) -> Path:
    """A git repository holding this working tree's files (committed or not, minus ignored
    ones): what a clone of the course would bring."""
    try:
        listed = git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs git and a git checkout of the course")
    origin = tmp_path / "origin"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = origin / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    git("init", "-q", cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "course", cwd=origin)
    return origin


def setup_cell(checkout: Path) -> str:
    """Chapter 1's setup cell with Colab's /content/nlbook moved to ``checkout``."""
    cell = next(c.source for c in jupytext.read(CHAPTER_1).cells if c.cell_type == "code")
    literal = json.dumps(course.COLAB_CHECKOUT)
    assert cell.count(literal) == 1
    return cell.replace(literal, json.dumps(str(checkout)))


def execute(cells: list[str], cwd: Path, kernel_name: str = "python3") -> list[list[dict]]:
    """Run ``cells`` in one kernel (errors do not stop it); the outputs of each cell."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=600, kernel_name=kernel_name, allow_errors=True,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return [[dict(output) for output in cell.outputs] for cell in notebook.cells]


def errors(outputs: list[dict]) -> list[dict]:
    return [output for output in outputs if output["output_type"] == "error"]


def test_a_failed_clone_or_install_says_what_to_do_in_one_sentence(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    checkout = content / "nlbook"
    not_a_course = tmp_path / "not-a-course"
    not_a_course.mkdir()
    (not_a_course / "README.md").write_text("no Python project here\n")
    git("init", "-q", cwd=not_a_course)
    git("add", "-A", cwd=not_a_course)
    git("commit", "-q", "-m", "x", cwd=not_a_course)
    missing = (tmp_path / "missing").as_uri()
    outputs = execute([
        FAKE_COLAB,
        f"import os\nos.environ['NLBOOK_REPOSITORY'] = {missing!r}",
        setup_cell(checkout),
        f"os.environ['NLBOOK_REPOSITORY'] = {not_a_course.as_uri()!r}",
        setup_cell(checkout),
        f"print(os.path.exists({str(checkout)!r}))",
    ], content)
    for cell, step in ((2, "clone the course from " + missing), (4, "install nlbook")):
        (error,) = errors(outputs[cell])
        (line,) = error["traceback"]  # one line: no traceback, no CalledProcessError
        assert line.startswith(f"CourseSetupError: Could not {step}"), line
        assert "NLBOOK_REPOSITORY" in line and line.endswith("run this cell again.")
        assert "Traceback" not in line and "CalledProcessError" not in line
    # the failed install left no half-made checkout behind: running the cell again starts over
    assert outputs[5][0]["text"].strip() == "False"


def fake_colab_environment(tmp_path: Path) -> Path:
    """A virtual environment that sees this environment's packages (like Colab's preinstalled
    image), imports a fake google.colab at start-up, and has its own older numpy. Returns its
    python."""
    venv = tmp_path / "colab-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # Plain path lines: this environment's packages are visible, its .pth files are not run,
    # so its editable nlbook is not (Colab has no nlbook).
    (site / "preinstalled.pth").write_text("\n".join(sorted(outer)) + "\n")
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab."""\n')
    (site / "zz_colab_runtime.pth").write_text("import google.colab\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                    f"numpy=={OLDER_NUMPY}"], check=True)
    return python


def versions(python: Path, cwd: Path) -> dict:
    code = ("import json, importlib.util, numpy, torch; print(json.dumps({'torch': "
            "torch.__version__, 'torch_file': torch.__file__, 'numpy': numpy.__version__, "
            "'nlbook': importlib.util.find_spec('nlbook') is not None}))")
    environment = dict(os.environ, PYTHONPATH="")
    return json.loads(subprocess.run([str(python), "-c", code], cwd=cwd, env=environment,
                                     capture_output=True, text=True, check=True).stdout)


@pytest.mark.slow
def test_colab_keeps_the_preinstalled_torch_and_numpy(tmp_path, monkeypatch):
    origin = local_repository(tmp_path)
    python = fake_colab_environment(tmp_path)
    content = tmp_path / "content"
    content.mkdir()
    before = versions(python, content)
    assert before["numpy"] == OLDER_NUMPY and not before["nlbook"]
    pinned = (ROOT / "requirements.txt").read_text()
    assert f"numpy=={OLDER_NUMPY}" not in pinned  # the environment really differs from the pins

    kernels = tmp_path / "jupyter" / "kernels" / "fake-colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fake Colab", "language": "python",
        "env": {"PYTHONPATH": "", "NLBOOK_REPOSITORY": origin.as_uri(), "NLBOOK_SMOKE": "1",
                "NLBOOK_HEADLESS": "1"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    checkout = content / "nlbook"
    chapter = [c.source for c in jupytext.read(CHAPTER_1).cells if c.cell_type == "code"]
    report = ("import json, numpy, torch, nlbook\n"
              "print(json.dumps({'torch': torch.__version__, 'torch_file': torch.__file__, "
              "'numpy': numpy.__version__, 'nlbook_file': nlbook.__file__}))")
    cells = [setup_cell(checkout), *chapter[1:5], report]
    outputs = execute(cells, content, kernel_name="fake-colab")
    for index, cell_outputs in enumerate(outputs):
        assert errors(cell_outputs) == [], (index, errors(cell_outputs))
    setup_outputs = outputs[0]
    assert not any(o["output_type"] == "execute_result" for o in setup_outputs)  # no echo
    printed = "".join(o.get("text", "") for o in setup_outputs)
    assert printed.count("nlbook 0.1.0 | seed 0") == 1 and f"numpy {OLDER_NUMPY}" in printed
    after = json.loads(outputs[-1][0]["text"])
    assert Path(after["nlbook_file"]).resolve().is_relative_to(checkout.resolve())
    assert after["torch"] == before["torch"] and after["torch_file"] == before["torch_file"]
    assert after["numpy"] == OLDER_NUMPY
    colab_site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    assert list(colab_site.glob("nlbook-*.dist-info")), "the setup cell did not pip-install"
    assert not list(colab_site.glob("torch*")), "pip installed a second torch"
    # A second run of the setup cell (the checkout exists) changes nothing.
    again = execute([setup_cell(checkout), report], content, kernel_name="fake-colab")
    assert errors(again[0]) == [] and json.loads(again[1][0]["text"]) == after
