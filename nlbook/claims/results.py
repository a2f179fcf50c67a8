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
import math
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nlbook._checks import check_callable, check_choice, check_scalar_in_range, check_str
from nlbook.claims.protocol import VERDICTS, Control, Verdict

__all__ = [
    "CLAIMS_EXPERIMENTS",
    "CLAIMS_RESULTS_PATH",
    "RECALL_MODELS",
    "RECALL_SETTING",
    "claims_protocol_minutes",
    "claims_record",
    "experiment_record",
    "git_commit",
    "load_claims_results",
    "merge_claims_records",
    "rebuild_claims_record",
    "run_claims_experiment",
    "save_claims_record",
    "show_claims_record",
    "write_json_atomically",
]

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


def _path(name: str, value: object, default: Path | None = None) -> Path:
    """``value`` as a Path (None: ``default``), or ValueError naming ``name``."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{name} must be a file path (str or os.PathLike), got {value!r}")
    return Path(value)


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
    path = _path("path", path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    os.replace(temporary, path)


def experiment_record(*, command: str, seconds: float, seeds: Sequence[int],
                      control: Control | None, verdict: Verdict, summary: str, table: str,
                      result: Mapping[str, object]) -> dict[str, object]:
    """One entry of the results file (see the module docstring)."""
    from nlbook.claims._common import check_seeds

    check_str("command", command)
    check_scalar_in_range("seconds", seconds, 0.0, math.inf, high_inclusive=False)
    seeds = check_seeds(seeds)
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
    path = _path("path", path, CLAIMS_RESULTS_PATH)
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


def show_claims_record(name: str, path: str | os.PathLike | None = None) -> str:
    """What chapter 7 prints for one experiment of the full protocol: its table (which ends
    with its control and verdict), then the command, commit, seeds and time of the run."""
    record = claims_record(name, path)
    seeds = ", ".join(str(seed) for seed in record["seeds"])
    return (f"{record['table']}\n-- full protocol: `{record['command']}` (commit "
            f"{record['commit']}, seeds {seeds}, {float(record['seconds']) / 60:.0f} min of "
            f"one CPU thread)\n-- verdict: {record['verdict']} ({record['why']})")


def claims_figure(name: str, path: str | os.PathLike | None = None):
    """The figure of one experiment of the full protocol, drawn from its stored result (its
    result class's ``plot()``)."""
    check_choice("name", name, tuple(_EXPERIMENTS))
    figure_of = _EXPERIMENTS[name][2](claims_record(name, path)["result"])
    return figure_of.plot()


def claims_protocol_minutes(path: str | os.PathLike | None = None) -> float:
    """Minutes of one CPU thread that the full protocol's records took together."""
    return sum(float(record["seconds"]) for record in load_claims_results(path).values()) / 60


def save_claims_record(name: str, record: Mapping[str, object],
                       path: str | os.PathLike | None = None, *,
                       lock_timeout: float = 60.0) -> None:
    """Put ``record`` under ``name`` in the results file, keeping the other experiments.

    Separate processes may finish at the same moment: the read-modify-write holds a lock (a
    directory beside the file, created atomically on every operating system)."""
    check_choice("name", name, tuple(CLAIMS_EXPERIMENTS))
    if not isinstance(record, Mapping) or "verdict" not in record:
        raise ValueError(f"record must be a dict from experiment_record, got {record!r}")
    path = _path("path", path, CLAIMS_RESULTS_PATH)
    check_scalar_in_range("lock_timeout", lock_timeout, 0.0, 3600.0)
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


# ---- the full protocol, one entry per experiment ---------------------------------------------

def _record_of(result, *, command: str, seconds: float) -> dict[str, object]:
    """The record of a result with ``control``, ``verdict()``, ``summary()``, ``table()`` and
    ``to_dict()`` (the protocol's interface)."""
    return experiment_record(command=command, seconds=seconds, seeds=result.seeds,
                             control=result.control, verdict=result.verdict(),
                             summary=result.summary(), table=result.table(),
                             result=result.to_dict())


def _formal_run(seeds: list[int], log):
    from nlbook.claims.formal import formal_models, formal_switches, run_formal

    return run_formal(formal_models(), seeds=seeds, switches=formal_switches(), log=log)


def _parity_run(seeds: list[int], log):
    from nlbook.claims.formal import formal_delta_models, formal_models, run_formal

    models = {"LSTM": formal_models()["LSTM"], **formal_delta_models()}
    return run_formal(models, languages=("parity",), seeds=seeds, claim_model=None, log=log)


def _parity_record(result, *, command: str, seconds: float) -> dict[str, object]:
    from nlbook.claims.formal import formal_delta_models
    from nlbook.claims.protocol import compare, verdict

    narrow, wide = list(formal_delta_models())
    outcomes, readings = [], []
    for split in ("bin0", "bin1"):
        comparison = compare(result.cell(wide, split, "parity"),
                             result.cell(narrow, split, "parity"))
        outcomes.append({1: True, -1: False}.get(comparison.direction))
        readings.append(f"{split} {result.cell(wide, split, 'parity')} against "
                        f"{result.cell(narrow, split, 'parity')}")
    summary = ("parity, strings right %, delta rule with beta in (0, 2) against beta in "
               "(0, 1): " + "; ".join(readings))
    return experiment_record(command=command, seconds=seconds, seeds=result.seeds,
                             control=result.control,
                             verdict=verdict(result.control, outcomes, seeds=len(result.seeds)),
                             summary=summary, table=result.table(), result=result.to_dict())


#: The recall row's MQAR setting: the issue "HOPE that recalls"'s task (T 32, 4 pairs, V 64,
#: 1,000 steps of 32, AdamW 3e-3, cosine) with a 300-step warm-up, the shortest with which
#: Transformer++, the attention control, passed.
RECALL_SETTING: dict[str, object] = {"steps": 1000, "batch_size": 32, "vocab_size": 64,
                                     "sequence_length": 32, "kv_pairs": 4,
                                     "learning_rate": 3e-3, "warmup_steps": 300}
RECALL_MODELS = ("hope", "delta", "linear_attention", "transformer", "transformer++")


def _recall_run(seeds: list[int], log):
    from nlbook.claims.mqar import mqar_models, run_mqar

    factories = mqar_models(64, sequence_length=32, names=RECALL_MODELS)
    return run_mqar(factories, seeds=seeds, **RECALL_SETTING, log=log)


def _recall_record(result, *, command: str, seconds: float) -> dict[str, object]:
    return experiment_record(command=command, seconds=seconds, seeds=result.seeds,
                             control=result.control(), verdict=result.recall_verdict(),
                             summary=result.recall_summary(), table=result.table(),
                             result=result.to_dict())


#: The language experiment's protocol, sized for one CPU thread (a HOPE step of the tiny preset
#: costs about 0.15 s; three HOPE variants and two Transformers per seed).
LANGUAGE_SETTING: dict[str, object] = {
    "steps": 400, "scored_characters": 20_000, "position_length": 4096, "position_windows": 4,
    "variants": ("HOPE", "without DGD (plain gradient step on the L2 objective)",
                 "without CMS (one plain MLP)", "Transformer", "Transformer++")}


def _language_run(seeds: list[int], log):
    from nlbook.claims.language import run_language

    return run_language(seeds=seeds, log=log, **LANGUAGE_SETTING)


def _language_record(result, *, command: str, seconds: float) -> dict[str, object]:
    rows = {}
    for row, (control, judged) in {
            "perplexity": (result.language_control(), result.perplexity_verdict()),
            "ablation": (result.language_control(), result.ablation_verdict()),
            "context": (result.context_control(), result.context_verdict())}.items():
        rows[row] = {"control": str(control), "control_passed": control.passed,
                     "verdict": judged.verdict, "why": judged.why,
                     "summary": result.summary(row)}
    record = experiment_record(command=command, seconds=seconds, seeds=result.seeds,
                               control=result.language_control(),
                               verdict=result.perplexity_verdict(),
                               summary=result.summary("perplexity"), table=result.table(),
                               result=result.to_dict())
    record["rows"] = rows
    return record


def _sign_flip_run(seeds: list[int], log):
    from nlbook.claims.sign_flip import run_sign_flip
    from nlbook.data import DATA_DIR, load_corpus
    from nlbook.train import load_model

    model, _, _ = load_model(DATA_DIR / "hope-shakespeare-tiny.pt")
    return run_sign_flip(seeds=seeds, language_model=model,
                         stream_ids=load_corpus().val_ids[:20_000], log=log)


def _phased_run(seeds: list[int], log):
    from nlbook.claims.phased import phased_models, phased_switches, run_phased_mqar

    return run_phased_mqar(phased_models(), seeds=seeds, switches=phased_switches(), log=log)


def _mad_run(seeds: list[int], log):
    from nlbook.claims.mad import mad_models, run_mad

    # bench mad's budget (its defaults): 500 steps, a 300-step warm-up, AdamW 3e-3
    return run_mad(mad_models(names=("hope", "transformer++")), seeds=seeds, steps=500,
                   warmup_steps=300, learning_rate=3e-3, log=log)


def _loader(module: str, name: str, method: str) -> Callable:
    def load(*args):
        import importlib

        return getattr(getattr(importlib.import_module(module), name), method)(*args)
    return load


#: name -> (run(seeds, log) -> result, record(result, command=, seconds=) -> dict,
#: from_dict(data) -> result, combine(results) -> result or None).
_EXPERIMENTS: dict[str, tuple[Callable, Callable, Callable, Callable | None]] = {
    "language": (_language_run, _language_record,
                 _loader("nlbook.claims.language", "LanguageResult", "from_dict"),
                 _loader("nlbook.claims.language", "LanguageResult", "combine")),
    "formal": (_formal_run, _record_of,
               _loader("nlbook.claims.formal", "FormalResult", "from_dict"), None),
    "parity-beta": (_parity_run, _parity_record,
                    _loader("nlbook.claims.formal", "FormalResult", "from_dict"), None),
    "recall": (_recall_run, _recall_record,
               _loader("nlbook.claims.mqar", "MQARResult", "from_dict"),
               _loader("nlbook.claims.mqar", "MQARResult", "combine")),
    "phased-mqar": (_phased_run, _record_of,
                    _loader("nlbook.claims.phased", "PhasedMQARResult", "from_dict"), None),
    "mad": (_mad_run, _record_of, _loader("nlbook.claims.mad", "MADResult", "from_dict"), None),
    "sign-flip": (_sign_flip_run, _record_of,
                  _loader("nlbook.claims.sign_flip", "SignFlipResult", "from_dict"), None),
}


def run_claims_experiment(name: str, *, seeds: Sequence[int] = (0, 1, 2),
                          log: Callable[[str], None] | None = None) -> dict[str, object]:
    """Run one experiment of the full protocol and return its record (not saved)."""
    from nlbook.claims._common import check_seeds

    check_choice("name", name, tuple(CLAIMS_EXPERIMENTS))
    check_callable("log", log, allow_none=True)
    seeds = list(check_seeds(seeds))
    if name not in _EXPERIMENTS:
        raise ValueError(f"name {name!r}: this experiment has no runner in this version")
    run, record, _, _ = _EXPERIMENTS[name]
    start = time.perf_counter()
    result = run(seeds, log)
    return record(result, command=f"python -m nlbook.bench claims --experiments {name}",
                  seconds=time.perf_counter() - start)


def merge_claims_records(name: str, records: Sequence[Mapping[str, object]]
                         ) -> dict[str, object]:
    """One record from records of the same experiment run on different seeds in separate
    processes: the results combined, the verdict and tables computed again from all seeds."""
    check_choice("name", name, tuple(_EXPERIMENTS))
    _, record, from_dict, combine = _EXPERIMENTS[name]
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence) or not records:
        raise ValueError(f"records must be a non-empty list of records, got {records!r}")
    if combine is None:
        raise ValueError(f"name {name!r}: its results cannot be combined; run its seeds in "
                         f"one process")
    for index, item in enumerate(records):
        if not isinstance(item, Mapping) or not {"result", "command", "seconds",
                                                 "commit"} <= set(item):
            raise ValueError(f"records[{index}] must be a record of the results file (with "
                             f"result, command, seconds and commit), got {item!r}")
    results = [from_dict(item["result"]) for item in records]
    merged = record(combine(results),
                    command=" && ".join(str(item["command"]) for item in records),
                    seconds=sum(float(item["seconds"]) for item in records))
    commits = sorted({str(item["commit"]) for item in records})
    merged["commit"] = ",".join(commits)
    return merged


def rebuild_claims_record(name: str, record: Mapping[str, object]) -> dict[str, object]:
    """``record`` with its verdict, tables and summary computed again from its stored per-seed
    result (after a change to how a result is read, never to its numbers); the command,
    commit and seconds of the run are kept."""
    check_choice("name", name, tuple(_EXPERIMENTS))
    if not isinstance(record, Mapping) or "result" not in record:
        raise ValueError(f"record must be a record of the results file, got {record!r}")
    _, make_record, from_dict, _ = _EXPERIMENTS[name]
    rebuilt = make_record(from_dict(record["result"]), command=str(record["command"]),
                          seconds=float(record["seconds"]))
    rebuilt["commit"] = record["commit"]
    return rebuilt
