"""The results file of chapter 7: every experiment of the claims map, run under the protocol of
:mod:`nlbook.claims.protocol`, in one JSON file, ``data/claims.json``.

``python -m nlbook.bench claims`` runs the full protocol (every experiment, three seeds) and
writes the file; ``--experiments`` runs some of them and replaces only their entries, so that
experiments can run in separate processes. Each entry (a *record*) holds:

- ``command``, ``commit``, ``seconds`` (training and scoring, one torch thread), ``seeds``;
- ``control`` (the positive control, as printed) and ``control_passed``;
- ``verdict`` (one of :data:`nlbook.claims.protocol.VERDICTS`) and ``why``;
- ``summary`` (one sentence with the numbers, for the claims map), ``table`` (the plain-text
  table the chapter prints) and ``result`` (every per-seed number: the result's ``to_dict()``).

Chapter 7 prints its tables and verdicts from this file (:func:`claims_record`), the claims map
(:mod:`nlbook.claims.table`) takes its verdicts from it, and a test checks that they agree. No
number a run produces is typed by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nlbook._checks import check_callable, check_choice, check_str
from nlbook.claims.protocol import VERDICTS, Control, Verdict

__all__ = ["CLAIMS_EXPERIMENTS", "CLAIMS_RESULTS_PATH", "claims_record", "experiment_record",
           "git_commit", "load_claims_results", "run_claims_experiment", "save_claims_record",
           "write_json_atomically"]

#: Where the full protocol writes its results.
CLAIMS_RESULTS_PATH = Path(__file__).resolve().parents[2] / "data" / "claims.json"

#: The experiments of the full protocol, in the chapter's order: name -> what it tests.
CLAIMS_EXPERIMENTS: dict[str, str] = {
    "language": "Tiny Shakespeare: HOPE, HOPE with one part removed and two Transformers at "
                "equal tokens (and the Transformers at equal time); loss against context on "
                "4,096-character windows (arXiv Tables 2 and 6, Fig. 10)",
    "formal": "formal languages in Bhattamishra et al.'s setting (arXiv Table 5)",
    "parity-beta": "the delta rule with beta in (0, 1) against (0, 2) on parity (Grazzi et al.)",
    "recall": "MQAR, the field's recall test (the recall row of arXiv Table 3)",
    "phased-mqar": "continual learning in context: pairs A, pairs B, A's queries again",
    "mad": "MAD's six synthetic tasks (arXiv Table 4)",
    "sign-flip": "HOPE's in-context writes flipped to gradient ascent (Liu et al. 2026)",
}


def git_commit() -> str:
    """The short commit of the checkout this package runs from ("unknown" outside git)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json_atomically(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename, so a reader
    never sees half a file and an interrupted write leaves the old file whole."""
    path = Path(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    os.replace(temporary, path)


def experiment_record(*, command: str, seconds: float, seeds: Sequence[int],
                      control: Control | None, verdict: Verdict, summary: str, table: str,
                      result: Mapping[str, object]) -> dict[str, object]:
    """One entry of the results file (see the module docstring)."""
    check_str("command", command)
    check_str("summary", summary)
    check_str("table", table)
    if not isinstance(verdict, Verdict):
        raise ValueError(f"verdict must be an nlbook.claims.protocol.Verdict, got {verdict!r}")
    check_choice("verdict.verdict", verdict.verdict, VERDICTS)
    if control is not None and not isinstance(control, Control):
        raise ValueError(f"control must be an nlbook.claims.protocol.Control or None, got "
                         f"{control!r}")
    if not isinstance(result, Mapping):
        raise ValueError(f"result must be a dict (a result's to_dict()), got {result!r}")
    return {"command": command, "commit": git_commit(), "seconds": round(float(seconds), 1),
            "seeds": [int(seed) for seed in seeds],
            "control": None if control is None else str(control),
            "control_passed": None if control is None else control.passed,
            "verdict": verdict.verdict, "why": verdict.why, "summary": summary,
            "table": table, "result": dict(result)}


def load_claims_results(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """The experiments of the results file: name -> record ({} when there is no file)."""
    path = Path(CLAIMS_RESULTS_PATH if path is None else path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"path {str(path)!r} is not a results file (JSON): {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), dict):
        raise ValueError(f"path {str(path)!r} must hold {{'experiments': {{name: record}}}}, "
                         f"got {type(data).__name__}")
    return data["experiments"]


def claims_record(name: str, path: str | os.PathLike | None = None) -> dict[str, object]:
    """One experiment's record from the results file (ValueError naming what is missing)."""
    check_choice("name", name, tuple(CLAIMS_EXPERIMENTS))
    results = load_claims_results(path)
    if name not in results:
        raise ValueError(f"name {name!r} has no record in the results file yet: run "
                         f"`python -m nlbook.bench claims --experiments {name}`")
    return results[name]


def save_claims_record(name: str, record: Mapping[str, object],
                       path: str | os.PathLike | None = None, *,
                       lock_timeout: float = 60.0) -> None:
    """Put ``record`` under ``name`` in the results file, keeping the other experiments.

    Separate processes may finish at the same moment: the read-modify-write holds a lock (a
    directory beside the file, created atomically on every operating system)."""
    check_choice("name", name, tuple(CLAIMS_EXPERIMENTS))
    if not isinstance(record, Mapping) or "verdict" not in record:
        raise ValueError(f"record must be a dict from experiment_record, got {record!r}")
    path = Path(CLAIMS_RESULTS_PATH if path is None else path)
    lock = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            lock.mkdir()
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise ValueError(f"path {str(path)!r} is locked by {str(lock)!r} for more than "
                                 f"{lock_timeout:g} s: remove the lock if no run is writing"
                                 ) from None
            time.sleep(0.2)
    try:
        experiments = load_claims_results(path)
        experiments[name] = dict(record)
        ordered = {key: experiments[key] for key in CLAIMS_EXPERIMENTS if key in experiments}
        write_json_atomically(path, {"experiments": ordered})
    finally:
        lock.rmdir()


# ---- the full protocol, one function per experiment ------------------------------------------

def _formal(seeds: Sequence[int], log) -> tuple[dict, str]:
    from nlbook.claims.formal import formal_models, formal_switches, run_formal

    result = run_formal(formal_models(), seeds=seeds, switches=formal_switches(), log=log)
    return experiment_record(
        command="python -m nlbook.bench claims --experiments formal", seconds=0.0, seeds=seeds,
        control=result.control, verdict=result.verdict(), summary=result.summary(),
        table=result.table(), result=result.to_dict()), ""


def _parity_beta(seeds: Sequence[int], log) -> tuple[dict, str]:
    from nlbook.claims.formal import formal_delta_models, formal_models, run_formal
    from nlbook.claims.protocol import compare, verdict

    models = {"LSTM": formal_models()["LSTM"], **formal_delta_models()}
    result = run_formal(models, languages=("parity",), seeds=seeds, claim_model=None, log=log)
    narrow, wide = list(formal_delta_models())
    outcomes, readings = [], []
    for split in ("bin0", "bin1"):
        comparison = compare(result.cell(wide, split, "parity"),
                             result.cell(narrow, split, "parity"))
        outcomes.append({1: True, -1: False}.get(comparison.direction))
        readings.append(f"{split} {100 * result.cell(wide, split, 'parity').mean:.1f} % "
                        f"against {100 * result.cell(narrow, split, 'parity').mean:.1f} %")
    summary = ("parity, delta rule with beta in (0, 2) against beta in (0, 1): "
               + "; ".join(readings) + f"; {result.control}")
    return experiment_record(
        command="python -m nlbook.bench claims --experiments parity-beta", seconds=0.0,
        seeds=seeds, control=result.control, verdict=verdict(result.control, outcomes),
        summary=summary, table=result.table(), result=result.to_dict()), ""


_RUNNERS: dict[str, Callable] = {"formal": _formal, "parity-beta": _parity_beta}


def run_claims_experiment(name: str, *, seeds: Sequence[int] = (0, 1, 2),
                          log: Callable[[str], None] | None = None) -> dict[str, object]:
    """Run one experiment of the full protocol and return its record (not saved)."""
    from nlbook.claims._common import check_seeds

    check_choice("name", name, tuple(CLAIMS_EXPERIMENTS))
    check_callable("log", log, allow_none=True)
    seeds = list(check_seeds(seeds))
    if name not in _RUNNERS:
        raise ValueError(f"name {name!r}: this experiment has no runner in this version")
    start = time.perf_counter()
    record, _ = _RUNNERS[name](seeds, log)
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record
