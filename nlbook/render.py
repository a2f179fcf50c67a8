"""The executed book: ``python -m nlbook.render`` runs every notebook at full size and writes
it as HTML with its outputs (figures included), for a teacher to host or share.

    python -m nlbook.render                       # every notebooks/NN_*.ipynb -> rendered/
    python -m nlbook.render notebooks/04_self_modifying.ipynb --output /tmp/book
    python -m nlbook.render --smoke               # smoke sizes: a quick look that all runs

Each notebook runs in a fresh Jupyter kernel from the ``notebooks/`` folder (as JupyterLab
runs it), with ``NLBOOK_HEADLESS=1`` so that a broken widget plot fails the run instead of
hiding in widget state. One line of progress per notebook; a failing cell stops that notebook
with an error naming the notebook, the cell and the exception, its partial HTML (with the
error shown) is still written, the other notebooks still run, and the exit status is 1.
``rendered/`` is ignored by git. Full size takes about 15 minutes on a 2-core laptop CPU
(chapter 6 alone about 12).
"""

from __future__ import annotations

import html
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NotebookFailed", "RenderedNotebook", "main", "render_book", "render_notebook"]

DEFAULT_OUTPUT = "rendered"


class NotebookFailed(RuntimeError):
    """A cell of a notebook raised (or timed out); the message names the notebook and cell."""

    def __init__(self, message: str, notebook: Path, cell_index: int | None) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.cell_index = cell_index


@dataclass
class RenderedNotebook:
    """One notebook of the book: where its HTML went, how long it ran, its title, and the
    failure (``None`` when every cell ran)."""

    notebook: Path
    html: Path
    seconds: float
    title: str
    error: NotebookFailed | None = None


def _title(notebook) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _describe(notebook_path: Path, notebook, index: int | None, error: Exception) -> str:
    """'notebooks/x.ipynb, cell 12 (code cell 7: `first line`): ValueError: message'."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    where = f"{notebook_path}"
    if index is not None:
        cell = notebook.cells[index]
        code_number = sum(1 for c in notebook.cells[:index + 1] if c.cell_type == "code")
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
        if len(first_line) > 60:
            first_line = first_line[:57] + "..."
        where += f", cell {index + 1} (code cell {code_number}: `{first_line}`)"
    if isinstance(error, CellExecutionError):
        what = f"{error.ename}: {_first_line(error.evalue)}"
    elif isinstance(error, CellTimeoutError):
        what = f"the cell did not finish within the timeout ({_first_line(error)})"
    elif isinstance(error, DeadKernelError):
        what = "the kernel died (out of memory?)"
    else:
        what = f"{type(error).__name__}: {_first_line(error)}"
    return f"{where} failed: {what}"


def _first_line(value) -> str:
    """One line: a failure is reported on one line (nbclient's messages run over several)."""
    lines = [line.strip() for line in str(value).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _check_timeout(timeout) -> None:
    from nlbook._checks import check_int

    check_int("timeout", timeout, low=1, allow_none=True)


def render_notebook(notebook_path: str | Path, output_dir: str | Path, *,
                    timeout: int | None = 1800, kernel_name: str | None = None
                    ) -> RenderedNotebook:
    """Execute one ``.ipynb`` in a fresh kernel (from its own folder) and write
    ``output_dir/<name>.html`` with every output. The environment's ``NLBOOK_SMOKE`` decides
    the sizes (:func:`render_book` sets it).

    Returns a :class:`RenderedNotebook`; on a failing cell its ``error`` is set (and the HTML,
    written anyway, shows the outputs up to the failure).
    """
    import subprocess

    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    from nlbook._checks import check_str

    notebook_path = _notebook_path("notebook_path", notebook_path)
    output_dir = _output_folder(output_dir)
    _check_timeout(timeout)
    check_str("kernel_name", kernel_name, allow_none=True)
    try:
        notebook = nbformat.read(notebook_path, as_version=4)
    except Exception as error:  # not JSON, not a notebook
        raise ValueError(f"notebook_path {str(notebook_path)!r} is not a readable notebook: "
                         f"{_first_line(error)}") from None
    current: list[int | None] = [None]

    def on_cell_start(cell, cell_index, **_):
        current[0] = cell_index

    options = {} if kernel_name is None else {"kernel_name": kernel_name}
    client = NotebookClient(notebook, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(notebook_path.parent)}},
                            on_cell_start=on_cell_start, **options)
    start = time.perf_counter()
    error = None
    try:
        # The kernel's own stderr (its warnings, and the traceback it prints when a timed-out
        # cell is interrupted) is not for the reader: failures are reported on one line.
        client.execute(stderr=subprocess.DEVNULL)
    except Exception as exception:  # nbclient's cell, timeout and kernel errors
        error = NotebookFailed(_describe(notebook_path, notebook, current[0], exception),
                               notebook_path, current[0])
    seconds = time.perf_counter() - start
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    target = output_dir / f"{notebook_path.stem}.html"
    target.write_text(body, encoding="utf-8")
    return RenderedNotebook(notebook_path, target, seconds, _title(notebook), error)


def _notebook_path(name: str, path) -> Path:
    """``path`` as an existing ``.ipynb`` file, or ValueError naming ``name``."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{name} must be a notebook path (str or Path), got "
                         f"{type(path).__name__} {path!r}"[:200])
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: notebook {path} does not exist")
    if path.suffix != ".ipynb":
        raise ValueError(f"{name} must be a .ipynb notebook, got {str(path)!r}")
    return path


def _output_folder(path) -> Path:
    """``path`` as a writable folder (created), or ValueError naming ``output_dir``."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"output_dir must be a folder path (str or Path), got "
                         f"{type(path).__name__} {path!r}"[:200])
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output_dir must be a folder, got the file {str(path)!r}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"output_dir {str(path)!r} cannot be created: "
                         f"{error.strerror or error}") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"output_dir {str(path)!r} is not writable")
    return path


def _index_page(rendered: Sequence[RenderedNotebook], smoke: bool) -> str:
    rows = "\n".join(
        f'<li><a href="{html.escape(item.html.name)}">{html.escape(item.title or item.html.stem)}'
        f"</a> <small>({item.seconds:.0f} s{', FAILED' if item.error else ''})</small></li>"
        for item in rendered)
    size = "smoke sizes (a check that everything runs, not the teaching sizes)" if smoke \
        else "full sizes"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>nlbook: the executed "
            "course</title></head>\n<body><h1>nlbook: Nested Learning and HOPE, executed</h1>\n"
            f"<p>Every notebook run top to bottom at {size} by <code>python -m nlbook.render"
            f"</code>.</p>\n<ol>\n{rows}\n</ol>\n</body></html>\n")


def render_book(notebooks: Sequence[str | Path], output_dir: str | Path = DEFAULT_OUTPUT, *,
                smoke: bool = False, timeout: int | None = 1800,
                progress: Callable[[str], None] | None = print,
                kernel_name: str | None = None) -> list[RenderedNotebook]:
    """Render ``notebooks`` in order into ``output_dir`` (plus an ``index.html``), at full size
    unless ``smoke``; ``progress`` gets one line per notebook. A failing notebook does not stop
    the others: check each result's ``error``."""
    from nlbook._checks import check_bool, check_callable

    if isinstance(notebooks, (str, bytes, os.PathLike)) or not isinstance(notebooks, Sequence):
        raise ValueError(f"notebooks must be a list of notebook paths, got "
                         f"{type(notebooks).__name__}")
    notebooks = [_notebook_path(f"notebooks[{index}]", path)
                 for index, path in enumerate(notebooks)]
    output_dir = _output_folder(output_dir)
    check_bool("smoke", smoke)
    _check_timeout(timeout)
    check_callable("progress", progress, allow_none=True)
    from nlbook._checks import check_str

    check_str("kernel_name", kernel_name, allow_none=True)
    say = progress or (lambda message: None)
    previous = {name: os.environ.get(name) for name in ("NLBOOK_SMOKE", "NLBOOK_HEADLESS")}
    os.environ["NLBOOK_SMOKE"] = "1" if smoke else "0"  # the kernels inherit the environment
    os.environ["NLBOOK_HEADLESS"] = "1"
    rendered = []
    try:
        for number, notebook in enumerate(notebooks, 1):
            say(f"[{number}/{len(notebooks)}] {notebook}: running ...")
            result = render_notebook(notebook, output_dir, timeout=timeout,
                                     kernel_name=kernel_name)
            rendered.append(result)
            status = "FAILED" if result.error else "done"
            say(f"[{number}/{len(notebooks)}] {notebook}: {status} in {result.seconds:.0f} s "
                f"-> {result.html}")
            if result.error:
                say(f"    error: {result.error}")
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    index = Path(output_dir) / "index.html"
    index.write_text(_index_page(rendered, smoke), encoding="utf-8")
    return rendered


def _default_notebooks() -> list[Path]:
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    notebooks = sorted(folder.glob("[0-9][0-9]*_*.ipynb"))
    here = Path.cwd()
    notebooks = [path.relative_to(here) if path.is_relative_to(here) else path
                 for path in notebooks]
    if not notebooks:
        raise FileNotFoundError(f"no notebooks/NN_*.ipynb in {folder.parent}: run python -m "
                                "nlbook.render from a checkout of the course, or name notebooks")
    return notebooks


def _parser():
    from nlbook._cli import Parser, positive_int

    parser = Parser(
        prog="python -m nlbook.render",
        description="Execute the course's notebooks at full size and write them as HTML with "
                    "their outputs (an index.html links them).")
    parser.add_argument("notebooks", nargs="*", help="notebooks to render (default: every "
                        "notebooks/NN_*.ipynb of this checkout)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"folder for the HTML files (default {DEFAULT_OUTPUT}/, ignored "
                             "by git)")
    parser.add_argument("--smoke", action="store_true",
                        help="smoke sizes (seconds per notebook) instead of the full sizes")
    parser.add_argument("--timeout", type=positive_int, default=1800,
                        help="seconds one cell may run (default 1800)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from nlbook._cli import run_command

    args = _parser().parse_args(argv)

    def run() -> int:
        notebooks = [Path(path) for path in args.notebooks] or _default_notebooks()
        missing = [str(path) for path in notebooks if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"no such notebook: {', '.join(missing)}")
        output = Path(args.output)
        if output.exists() and not output.is_dir():
            raise ValueError(f"--output must be a folder, got the file {str(output)!r}")
        output.mkdir(parents=True, exist_ok=True)
        if not os.access(output, os.W_OK):
            raise ValueError(f"--output {str(output)!r} is not writable")
        rendered = render_book(notebooks, output, smoke=args.smoke, timeout=args.timeout)
        failed = [item for item in rendered if item.error]
        total = sum(item.seconds for item in rendered)
        print(f"{len(rendered) - len(failed)} of {len(rendered)} notebooks rendered in "
              f"{total:.0f} s -> {output / 'index.html'}")
        for item in failed:
            print(f"error: {item.error}", file=sys.stderr)
        return 1 if failed else 0

    return run_command(run)


if __name__ == "__main__":
    raise SystemExit(main())
