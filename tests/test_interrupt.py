"""No run loses its work: SIGINT and SIGTERM during ``python -m nlbook.train`` write a
checkpoint of the current step, and ``--resume`` then finishes bit for bit as the run that was
never interrupted; a checkpoint write that fails leaves nothing behind."""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import nlbook
from nlbook.train import checkpoints

ROOT = Path(nlbook.__file__).parents[1]
STEPS = 300


def _text(tmp: Path) -> str:
    words = ["the", "king", "and", "queen", "of", "a", "small", "land", "sing", "loud"]
    generator = random.Random(0)
    text = " ".join(generator.choice(words) for _ in range(6000))
    path = tmp / "text.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _command(data: str, checkpoint: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nlbook.train", "--data", data, "--steps", str(STEPS),
            "--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--context-length", "16",
            "--batch-size", "4", "--eval-interval", "1000", "--eval-batches", "2",
            "--checkpoint-every", "1000", "--no-baselines", "--no-progress",
            "--checkpoint", str(checkpoint), "--figure", str(checkpoint.with_suffix(".png")),
            *extra]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1"}


def _interrupted_run(command: list[str], number: int, delay: float) -> tuple[int, str]:
    """Start ``command`` (with its progress bar, on stderr), wait until its first step is done
    (the bar shows 1/STEPS or more), then ``delay`` seconds, send signal ``number``; (exit
    status, stderr)."""
    process = subprocess.Popen([item for item in command if item != "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=_environment(), cwd=ROOT)
    seen = bytearray()

    def read() -> None:
        while chunk := process.stderr.read1(4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = re.compile(rb"\b[1-9][0-9]*/" + str(STEPS).encode())
    while process.poll() is None and not started.search(bytes(seen)):
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(number)
    process.wait(timeout=300)
    reader.join(timeout=60)
    return process.returncode, seen.decode(errors="replace").replace("\r", "\n")


def _finished(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_signals_at_random_moments_then_resume_is_bitwise_equal(tmp_path):
    data = _text(tmp_path)
    reference = tmp_path / "reference.pt"
    completed = subprocess.run(_command(data, reference), capture_output=True, text=True,
                               env=_environment(), cwd=ROOT, timeout=300)
    assert completed.returncode == 0, completed.stderr
    # The training part of the run (its own summary line): the signals land at random moments
    # of it, however loaded the machine is; a signal that came too late (the run had ended)
    # is sent again, earlier.
    span = float(re.search(r"steps in ([0-9.]+) s", completed.stdout).group(1))
    expected = _finished(reference)
    generator = random.Random(23)
    interrupted_before_the_end = 0
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        delay = generator.uniform(0.0, 0.5) * span
        for attempt in range(4):
            checkpoint = tmp_path / f"run-{int(number)}-{interrupted_before_the_end}-{attempt}.pt"
            start = time.perf_counter()
            status, err = _interrupted_run(_command(data, checkpoint), number, delay)
            # Too late: the run ended before the signal, or its training had ended (the final
            # scoring had started, or the interpreter was shutting down, where the default
            # handler kills the process): nothing to resume; send it earlier.
            if status != 0 and "fresh windows" not in err:
                break
            delay /= 3
        else:
            continue
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 128 + int(number), err
        assert checkpoint.is_file(), f"no checkpoint after {number!r} at {delay:.2f} s: {err}"
        assert f"--checkpoint {checkpoint} --resume" in lines[-1], err
        assert "Traceback" not in err
        stopped_at = torch.load(checkpoint, weights_only=True)["step"]
        print(f"{signal.Signals(number).name} {delay:.2f} s after the first step: stopped at "
              f"step {stopped_at} of {STEPS} ({time.perf_counter() - start:.1f} s)")
        interrupted_before_the_end += 0 < stopped_at < STEPS
        resumed = subprocess.run(_command(data, checkpoint, "--resume"), capture_output=True,
                                 text=True, env=_environment(), cwd=ROOT, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        got = _finished(checkpoint)
        assert got["step"] == expected["step"] == STEPS
        for name, tensor in expected["model"].items():
            assert torch.equal(got["model"][name], tensor), f"{name} differs (stopped at " \
                                                            f"step {stopped_at})"
        assert got["history"]["train_loss"] == expected["history"]["train_loss"]
        assert got["history"]["val_loss"] == expected["history"]["val_loss"]
    assert interrupted_before_the_end >= 1, "no signal landed between two steps of training"


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    state = {"format": checkpoints.CHECKPOINT_FORMAT, "weights": torch.ones(1000)}
    checkpoints.save_checkpoint(path, state)
    before = path.read_bytes()

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.os, "fsync", full_disk)
    with pytest.raises(OSError, match=r"cannot write checkpoint .*run\.pt: No space left"):
        checkpoints.save_checkpoint(path, {**state, "weights": torch.zeros(1000)})
    assert sorted(item.name for item in tmp_path.iterdir()) == ["run.pt"]  # no partial file
    assert path.read_bytes() == before


def test_every_writer_has_its_own_temporary_file(tmp_path):
    names = {checkpoints._temporary_path(tmp_path / "run.pt").name for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith(f"run.pt.{os.getpid()}.") and name.endswith(".tmp")
               for name in names)


def test_save_refuses_what_load_would_refuse(tmp_path):
    with pytest.raises(ValueError, match="state\\['format'\\]"):
        checkpoints.save_checkpoint(tmp_path / "a.pt", {"format": "x"})
    with pytest.raises(ValueError, match="state\\['payload'\\]"):
        checkpoints.save_checkpoint(tmp_path / "a.pt", {"format": checkpoints.CHECKPOINT_FORMAT,
                                                        "payload": object()})
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_with_non_finite_weights_is_refused_by_every_command(tmp_path):
    from test_fuzz import checkpoint_file, run_command_line

    from nlbook import evaluate, sample
    from nlbook.train import main as train_main

    state = torch.load(checkpoint_file(), weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    for main, argv in ((evaluate.main, ["--checkpoint", str(path)]),
                       (sample.main, ["--checkpoint", str(path), "--max-new-tokens", "3"]),
                       (train_main, ["--checkpoint", str(path), "--resume", "--no-progress"])):
        status, _, err = run_command_line(main, argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert status != 0
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert str(path) in lines[0] and "non-finite" in lines[0]
