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
        what = f"{error.ename}: {error.evalue}"
    elif isinstance(error, CellTimeoutError):
        what = f"the cell did not finish within the timeout ({error})"
    elif isinstance(error, DeadKernelError):
        what = "the kernel died (out of memory?)"
    else:
        what = f"{type(error).__name__}: {error}"
    return f"{where} failed: {what}"


def render_notebook(notebook_path: str | Path, output_dir: str | Path, *,
                    timeout: int | None = 1800, kernel_name: str | None = None
                    ) -> RenderedNotebook:
    """Execute one ``.ipynb`` in a fresh kernel (from its own folder) and write
    ``output_dir/<name>.html`` with every output. The environment's ``NLBOOK_SMOKE`` decides
    the sizes (:func:`render_book` sets it).

    Returns a :class:`RenderedNotebook`; on a failing cell its ``error`` is set (and the HTML,
    written anyway, shows the outputs up to the failure).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook_path = Path(notebook_path)
    if not notebook_path.is_file():
        raise FileNotFoundError(f"notebook {notebook_path} does not exist")
    notebook = nbformat.read(notebook_path, as_version=4)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
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
        client.execute()
    except Exception as exception:  # nbclient's cell, timeout and kernel errors
        error = NotebookFailed(_describe(notebook_path, notebook, current[0], exception),
                               notebook_path, current[0])
    seconds = time.perf_counter() - start
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    target = output_dir / f"{notebook_path.stem}.html"
    target.write_text(body, encoding="utf-8")
    return RenderedNotebook(notebook_path, target, seconds, _title(notebook), error)


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


def main(argv: list[str] | None = None) -> int:
    from nlbook._cli import Parser, positive_int, run_command

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
    args = parser.parse_args(argv)

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
