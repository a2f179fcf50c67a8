"""The full protocol's results file (data/claims.json): complete records, verdicts that follow
from their stored numbers, and a claims map, a README and a chapter 7 that agree with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nlbook.claims import protocol
from nlbook.claims.language import LanguageResult
from nlbook.claims.mqar import MQARResult, MQARRun
from nlbook.claims.results import (
    CLAIMS_EXPERIMENTS,
    claims_record,
    experiment_record,
    load_claims_results,
    merge_claims_records,
    rebuild_claims_record,
    save_claims_record,
    show_claims_record,
)
from nlbook.claims.table import CLAIM_ROWS, claims_from_results, claims_verdicts_table

ROOT = Path(__file__).resolve().parent.parent


def test_every_record_is_complete_with_three_seeds_and_a_control():
    results = load_claims_results()
    assert results, "data/claims.json holds no experiment: run python -m nlbook.bench claims"
    for name, record in results.items():
        assert name in CLAIMS_EXPERIMENTS
        assert record["verdict"] in protocol.VERDICTS, name
        assert len(record["seeds"]) >= protocol.MIN_SEEDS, name
        assert record["command"].startswith("python -m nlbook.bench"), name
        assert record["commit"] and record["seconds"] > 0, name
        assert record["control"] and isinstance(record["control_passed"], bool), name


@pytest.mark.parametrize("name", sorted(load_claims_results()))
def test_each_verdict_and_table_follow_from_the_stored_numbers(name):
    """Recomputed from the per-seed numbers in the file, every verdict, table and summary is
    the one the file holds: nothing in a record was typed or edited by hand."""
    record = load_claims_results()[name]
    rebuilt = rebuild_claims_record(name, record)
    for key in ("verdict", "why", "summary", "table", "control", "control_passed"):
        assert rebuilt[key] == record[key], (name, key)
    assert rebuilt.get("rows") == record.get("rows"), name


def test_the_claims_map_takes_each_verdict_from_the_file():
    results = load_claims_results()
    rows = claims_from_results()
    assert len(rows) == len(CLAIM_ROWS)
    for row in rows:
        if not row.experiment:
            assert row.verdict in ("not testable on a CPU", "not tested at this budget")
            continue
        record = results.get(row.experiment)
        if record is None:
            assert row.verdict == "not tested at this budget"
            continue
        expected = record["rows"][row.row] if row.row else record
        assert row.verdict == expected["verdict"], row.topic
        assert row.measured_here == expected["summary"], row.topic


def test_the_readme_lists_the_verdicts_of_the_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- results: claims-verdicts -->\n(.*?)<!-- /results -->", readme,
                      re.DOTALL)
    assert block is not None, "README.md has no claims-verdicts block"
    assert block.group(1) == claims_verdicts_table() + "\n"
    for row in claims_from_results():
        assert f"| {row.topic} | **{row.verdict}** |" in block.group(1)


def test_chapter_7_prints_every_experiment_from_the_file():
    source = (ROOT / "notebooks" / "07_what_memory_buys.py").read_text(encoding="utf-8")
    for name in CLAIMS_EXPERIMENTS:
        assert f'show_claims_record("{name}")' in source, name
    for name in load_claims_results():
        shown = show_claims_record(name)
        assert shown.startswith(claims_record(name)["table"])
        assert claims_record(name)["verdict"] in shown


# ---- the file's machinery, on small made-up results -----------------------------------------

def _mqar(seed: int, hope: int, delta: int, attention: int) -> MQARResult:
    def run(correct: int) -> MQARRun:
        return MQARRun(correct / 1000, correct, 1000, protocol.wilson_interval(correct, 1000),
                       None, [(1, correct / 1000)], 1.0, 10)

    runs = {"hope": [run(hope)], "delta": [run(delta)], "linear_attention": [run(delta)],
            "transformer++": [run(attention)]}
    return MQARResult(runs, [seed], {"steps": 5, "sequence_length": 8, "kv_pairs": 2})


def _recall_record(result: MQARResult) -> dict:
    return experiment_record(command="python -m nlbook.bench claims --experiments recall",
                             seconds=1.0, seeds=result.seeds, control=result.control(),
                             verdict=result.recall_verdict(), summary=result.recall_summary(),
                             table=result.table(), result=result.to_dict())


def test_records_merge_over_seeds_and_the_verdict_needs_three(tmp_path):
    path = tmp_path / "claims.json"
    parts = [_recall_record(_mqar(seed, 950, 700, 999)) for seed in range(3)]
    assert parts[0]["verdict"] == "not tested at this budget"  # one seed: a sketch
    save_claims_record("recall", parts[0], path)
    assert load_claims_results(path)["recall"]["seeds"] == [0]
    merged = merge_claims_records("recall", parts)
    assert merged["seeds"] == [0, 1, 2] and merged["seconds"] == 3.0
    assert merged["verdict"] == "holds", merged["why"]  # above both rules, below attention
    save_claims_record("recall", merged, path)
    assert claims_record("recall", path)["verdict"] == "holds"
    failed = merge_claims_records("recall", [_recall_record(_mqar(seed, 950, 700, 300))
                                             for seed in range(3)])
    assert failed["verdict"] == "not tested at this budget" and "FAILED" in failed["why"]


def test_a_ranking_at_the_ceiling_is_not_read():
    at_ceiling = MQARResult.combine([_mqar(seed, 995, 999, 990) for seed in range(3)])
    judged = at_ceiling.recall_verdict()
    assert judged.verdict == "not tested at this budget" and "ceiling" in judged.why
    ranked = MQARResult.combine([_mqar(seed, 950, 700, 999) for seed in range(3)])
    assert ranked.recall_verdict().verdict == "holds"


def test_bad_records_and_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="name"):
        claims_record("bogus")
    with pytest.raises(ValueError, match="no record"):
        claims_record("recall", tmp_path / "empty.json")
    with pytest.raises(ValueError, match="record"):
        save_claims_record("recall", {"table": "x"}, tmp_path / "c.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="results file"):
        load_claims_results(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="combined"):
        merge_claims_records("formal", [{"result": {}}])
    from nlbook.claims.results import run_claims_experiment

    with pytest.raises(ValueError, match="name"):
        run_claims_experiment("bogus")
    with pytest.raises(ValueError, match="seeds"):
        run_claims_experiment("recall", seeds=[-1])
    with pytest.raises(ValueError, match="log"):
        run_claims_experiment("recall", log=3)


def test_bench_claims_merges_parts_and_rebuilds(tmp_path, capsys):
    from nlbook import bench

    parts = []
    for seed in range(3):
        part = tmp_path / f"part{seed}.json"
        save_claims_record("recall", _recall_record(_mqar(seed, 950, 700, 999)), part)
        parts.append(str(part))
    output = tmp_path / "claims.json"
    assert bench.main(["claims", "--experiments", "recall", "--merge", ",".join(parts),
                       "--output", str(output)]) == 0
    record = json.loads(output.read_text(encoding="utf-8"))["experiments"]["recall"]
    assert record["seeds"] == [0, 1, 2] and record["verdict"] == "holds"
    assert bench.main(["claims", "--rebuild", "--output", str(output)]) == 0
    assert "recall: rebuilt: holds" in capsys.readouterr().out


def _language(seeds, hope=1.70, transformer=1.80, without_dgd=1.75, drop=0.10):
    runs, step_ms = {}, {}
    for index, seed in enumerate(seeds):
        jitter = 0.001 * index

        def run(stream, early=2.0, late=None, parameters=100, equal=None, jitter=jitter):
            late = early - drop if late is None else late
            out = {"parameters": parameters, "steps": 10, "seconds": 1.0, "fresh": stream,
                   "stream": stream + jitter, "early": early, "late": late,
                   "diverged_at": None}
            if equal is not None:
                out["equal_time"] = {"steps": 40, "stream": equal, "fresh": equal}
            return out

        runs[str(seed)] = {
            "HOPE": run(hope), "without DGD (plain gradient step on the L2 objective)":
                run(without_dgd, late=2.0 - drop / 2),
            "without CMS (one plain MLP)": run(hope + 0.05, late=2.0 - drop / 2),
            "Transformer": run(transformer, early=2.5, late=2.0, equal=transformer - 0.1),
            "Transformer++": run(transformer, early=2.5, late=2.0, equal=transformer - 0.1)}
        step_ms[str(seed)] = {name: 10.0 for name in runs[str(seed)]}
    setting = {"steps": 10, "batch_size": 4, "context_length": 16, "stream_length": 64,
               "position_length": 256, "position_windows": 1, "scored_characters": 100,
               "learning_rate": 1e-3}
    return LanguageResult(list(seeds), runs, step_ms, setting, bigram=2.4)


def test_language_verdicts_follow_the_protocol():
    result = _language([0, 1, 2])
    assert result.perplexity_verdict().verdict == "holds"
    assert result.ablation_verdict().verdict == "holds"
    assert result.context_verdict().verdict == "holds"
    assert _language([0]).perplexity_verdict().verdict == "not tested at this budget"
    worse = _language([0, 1, 2], hope=1.90)
    assert worse.perplexity_verdict().verdict == "does not hold"
    untrained = _language([0, 1, 2], transformer=2.6)  # the control stays above the bigram
    assert untrained.perplexity_verdict().verdict == "not tested at this budget"
    combined = LanguageResult.combine([_language([0]), _language([1]), _language([2])])
    assert combined.seeds == [0, 1, 2]
    again = LanguageResult.from_dict(json.loads(json.dumps(combined.to_dict())))
    assert again.table() == combined.table()
    for row in ("perplexity", "ablation", "context"):
        assert "HOPE" in combined.summary(row)
    with pytest.raises(ValueError, match="row"):
        combined.summary("bogus")
    with pytest.raises(ValueError, match="seed"):
        LanguageResult.combine([_language([0]), _language([0])])
