"""nlbook.timing: the one low module of timing helpers (no import cycle with nlbook.bench)."""

from __future__ import annotations

import subprocess
import sys

from nlbook import timing


def test_chapter_modules_do_not_import_the_benchmark_script():
    # A fresh interpreter: nlbook.memory needs only the low timing module, and nlbook.bench
    # (which imports the chapters) is not dragged in.
    code = ("import sys, nlbook.memory; "
            "print('nlbook.bench' in sys.modules, 'nlbook.timing' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "True"]


def test_timing_imports_only_the_standard_library():
    code = "import sys, nlbook.timing; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_time_call_returns_the_median_and_bench_keeps_the_old_name():
    calls = []
    seconds = timing.time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert seconds >= 0 and len(calls) == 5
    from nlbook.bench import time_call

    assert time_call is timing.time_call
    assert len(timing.load_average()) == 3
