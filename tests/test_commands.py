"""Commands that talk: ``sample`` writes characters as they come, ``evaluate`` shows progress
and its time, a timed-out notebook is one error line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nlbook

ROOT = Path(nlbook.__file__).parents[1]
CHECKPOINT = ROOT / "data" / "hope-shakespeare-tiny.pt"


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_sample_writes_characters_as_they_are_generated():
    """The first characters arrive while the process is still generating (flushed), long
    before the end; the samples are separated."""
    process = subprocess.Popen([sys.executable, "-m", "nlbook.sample", "--checkpoint",
                                str(CHECKPOINT), "--max-new-tokens", "150", "--num-samples",
                                "2", "--prompt", "ROMEO:"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=_environment(), cwd=ROOT)
    header = process.stdout.readline().decode()
    loaded = time.perf_counter()
    assert header.startswith(f"# {CHECKPOINT}"), header
    assert process.stdout.readline().decode() == "--- sample 1\n"
    first = process.stdout.read(len("ROMEO:") + 3).decode()
    first_seconds = time.perf_counter() - loaded
    still_running = process.poll() is None
    rest, err = process.communicate(timeout=600)
    total_seconds = time.perf_counter() - loaded
    text = first + rest.decode()
    assert first.startswith("ROMEO:")
    assert still_running, "the first characters came only when everything was generated"
    assert first_seconds < total_seconds / 2
    assert text.count("--- sample 2\n") == 1
    assert err.decode().strip().startswith("sampled 300 characters in")
    print(f"first characters {first_seconds:.2f} s after the model was loaded; all "
          f"{total_seconds:.1f} s")


def test_evaluate_shows_progress_on_stderr_and_ends_with_its_time(tmp_path):
    from test_fuzz import checkpoint_file, text_file

    completed = subprocess.run([sys.executable, "-m", "nlbook.evaluate", "--checkpoint",
                                checkpoint_file(), "--data", text_file()],
                               capture_output=True, text=True, env=_environment(), cwd=ROOT,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "fresh windows" in completed.stderr and "%" in completed.stderr  # tqdm's bars
    assert completed.stdout.strip().splitlines()[-1].startswith("evaluated in ")
    quiet = subprocess.run([sys.executable, "-m", "nlbook.evaluate", "--checkpoint",
                            checkpoint_file(), "--data", text_file(), "--no-progress"],
                           capture_output=True, text=True, env=_environment(), cwd=ROOT,
                           timeout=300)
    assert quiet.returncode == 0 and not quiet.stderr.strip()


def test_render_with_a_short_timeout_prints_one_error_line(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Slow"),
                      nbformat.v4.new_code_cell("import time\ntime.sleep(30)")]
    path = tmp_path / "slow.ipynb"
    nbformat.write(notebook, path)
    completed = subprocess.run([sys.executable, "-m", "nlbook.render", str(path), "--output",
                                str(tmp_path / "out"), "--timeout", "2"],
                               capture_output=True, text=True, env=_environment(), cwd=tmp_path,
                               timeout=300)
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert "timeout" in lines[0] and "Traceback" not in completed.stdout + completed.stderr
