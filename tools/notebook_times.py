"""Measure each notebook's run time at full size (authors' tool).

Executes notebooks with ``NLBOOK_SMOKE=0`` through nbclient, one torch thread, and records the
wall-clock seconds and the kernel's CPU seconds (user + system, read by a cell appended to the
run: on a busy machine the CPU time is the steadier of the two) in
``data/notebook-times.json``. The README's "run" column must be at least each measured CPU
time (``tests/test_notebooks.py`` checks it against this file).

    python tools/notebook_times.py                       # every notebook
    python tools/notebook_times.py 06_tiny_shakespeare   # some of them (merged into the file)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "data" / "notebook-times.json"
CPU_CELL = ("import resource as _resource\n"
            "_usage = _resource.getrusage(_resource.RUSAGE_SELF)\n"
            "print('NLBOOK_CPU_SECONDS', _usage.ru_utime + _usage.ru_stime)")


def measure(path: Path, timeout: int) -> dict[str, float]:
    """Run one notebook at full size; its wall-clock and kernel CPU seconds."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(CPU_CELL))
    environment = dict(os.environ, NLBOOK_SMOKE="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    old = dict(os.environ)
    os.environ.update(environment)
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        client.execute()
        wall = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(old)
    text = "".join(output.get("text", "") for output in notebook.cells[-1].outputs)
    cpu = float(text.split("NLBOOK_CPU_SECONDS", 1)[1].split()[0])
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook stems (default: every notebook)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    if args.names:
        paths = [path for path in paths if path.stem in args.names]
        if len(paths) != len(args.names):
            print(f"error: names must be notebook stems, got {args.names}", file=sys.stderr)
            return 2
    times = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    for path in paths:
        measured = measure(path, args.timeout)
        times[path.stem] = measured | {"load_average": round(os.getloadavg()[0], 1)}
        print(f"{path.stem}: {measured['cpu_seconds']:.0f} s CPU, "
              f"{measured['wall_seconds']:.0f} s wall", flush=True)
        RESULTS.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n",
                           encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
