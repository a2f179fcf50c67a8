"""MAD (Poli et al. 2024): the six task generators checked against slow, obvious readings of
their rows; run_mad's protocol at a tiny size; the result's round trip; the positive control
that stops the verdict; ``python -m nlbook.bench mad``."""

from __future__ import annotations

import json

import matplotlib.figure
import pytest
import torch

from nlbook.claims import MADResult, mad_models, run_mad
from nlbook.claims.mad import CONTROL_MODEL, CompressionReader
from nlbook.tasks import MAD_SETTINGS, MAD_TASKS, mad_batch, memorization_table


def batch(task, seed=0, size=16, **options):
    return mad_batch(task, size, generator=torch.Generator().manual_seed(seed), **options)


@pytest.mark.parametrize("task", MAD_TASKS)
def test_every_task_gives_int64_rows_of_its_length_deterministically(task):
    inputs, targets = batch(task)
    length, vocab = MAD_SETTINGS[task]["sequence_length"], MAD_SETTINGS[task]["vocab_size"]
    assert inputs.shape == targets.shape == (16, length)
    assert inputs.dtype == targets.dtype == torch.int64
    assert 0 <= int(inputs.min()) and int(inputs.max()) < vocab
    assert int(targets.min()) >= -1 and int(targets.max()) < vocab
    assert bool((targets >= 0).any(dim=1).all()), "every row has a scored target"
    again = batch(task)
    assert torch.equal(inputs, again[0]) and torch.equal(targets, again[1])
    other = batch(task, seed=1)
    assert not torch.equal(inputs, other[0])


def _pairs_check(inputs, targets, vocab, noise):
    """Walk the pairs: a key's target is its value when the key was shown before, else -1;
    the last pair is always scored; noise slots are never scored."""
    plain = vocab - noise
    for row, answers in zip(inputs.tolist(), targets.tolist(), strict=True):
        shown = {}
        for slot in range(0, len(row), 2):
            key, value = row[slot], row[slot + 1]
            assert answers[slot + 1] == -1
            if key >= plain:  # noise
                assert value >= plain and answers[slot] == -1
                continue
            assert key < plain // 2 <= value < plain
            if key in shown:
                assert value == shown[key] and answers[slot] == value
            else:
                assert answers[slot] == -1
                shown[key] = value
        assert answers[len(row) - 2] == row[-1]


def test_in_context_recall_scores_every_repeated_key_and_ends_on_a_probe():
    _pairs_check(*batch("in-context-recall"), vocab=16, noise=0)


def test_noisy_recall_puts_noise_in_about_frac_noise_of_the_slots():
    inputs, targets = batch("noisy-in-context-recall", size=64)
    _pairs_check(inputs, targets, vocab=32, noise=16)
    noise_slots = float((inputs[:, 0::2] >= 16).float().mean())
    assert 0.1 < noise_slots < 0.3  # 0.2 of the 31 slots before the probe


@pytest.mark.parametrize("test", [False, True])
def test_fuzzy_recall_values_follow_their_keys_and_repeats_are_scored(test):
    inputs, targets = batch("fuzzy-in-context-recall", size=32, test=test)
    pad, half = 15, 7
    for row, answers in zip(inputs.tolist(), targets.tolist(), strict=True):
        start = 0
        while row[start] == pad:
            start += 1
        # cut the row into (key motif, value motif): runs of key tokens then value tokens
        pairs, position = [], start
        while position < len(row):
            key_start = position
            while row[position] < half:
                position += 1
            value_start = position
            while position < len(row) and half <= row[position] < pad:
                position += 1
            pairs.append((tuple(row[key_start:value_start]), value_start, position))
        shown = {}
        scored = [False] * len(row)
        for key, value_start, end in pairs:
            assert 1 <= len(key) <= 3 and 1 <= end - value_start <= 3
            assert len(set(key)) == len(key)
            if test:
                assert len(key) == 3
            value = tuple(row[value_start:end])
            if key in shown:
                assert shown[key] == value
                for index in range(value_start, end):
                    scored[index] = True
            shown[key] = value
        expected = [row[t + 1] if scored[t + 1] else -1 for t in range(len(row) - 1)] + [-1]
        assert answers == expected
        assert pairs[-1][0] in dict(list(shown.items())), "the probe's key was shown before"
        assert answers[-2] == row[-1]


def test_selective_copying_targets_are_the_content_tokens_in_order():
    inputs, targets = batch("selective-copying")
    vocab, length, copies = 16, 64, 8
    for row, answers in zip(inputs.tolist(), targets.tolist(), strict=True):
        region = length - copies - 1
        content = [token for token in row[:region] if token != vocab - 2]
        assert len(content) == copies and all(token < vocab - 2 for token in content)
        assert row[region] == vocab - 1 and row[region + 1:] == [vocab - 2] * copies
        assert answers == [-1] * (region + 1) + content


def test_compression_targets_are_the_row_itself_ending_on_the_compression_token():
    inputs, targets = batch("compression")
    assert torch.equal(inputs, targets)
    assert bool((inputs[:, -1] == 15).all()) and int(inputs[:, :-1].max()) < 15


def test_memorization_answers_from_one_table_fixed_by_the_task_seed():
    table = memorization_table(256)
    assert table.shape == (127,) and len(set(table.tolist())) == 127
    assert int(table.min()) >= 127 and int(table.max()) < 255
    for seed in (0, 1):  # two batch generators, one table
        inputs, targets = batch("memorization", seed=seed)
        assert bool((inputs[:, 1::2] == 255).all()) and bool((targets[:, 0::2] == -1).all())
        for row, answers in zip(inputs.tolist(), targets.tolist(), strict=True):
            for slot in range(0, len(row), 2):
                assert answers[slot + 1] == int(table[row[slot]])
    assert not torch.equal(memorization_table(256, 1), table)
    assert torch.equal(batch("memorization", task_seed=1)[0], batch("memorization")[0])


@pytest.mark.parametrize("call, name", [
    (lambda: batch("bogus"), "task"),
    (lambda: batch("in-context-recall", motif_size=2), "motif_size"),
    (lambda: batch("in-context-recall", sequence_length=7), "sequence_length"),
    (lambda: batch("selective-copying", sequence_length=16, tokens_to_copy=8), "sequence_length"),
    (lambda: batch("fuzzy-in-context-recall", vocab_size=6), "vocab_size"),
    (lambda: batch("noisy-in-context-recall", frac_noise=1.0), "frac_noise"),
    (lambda: mad_batch("compression", 0, generator=torch.Generator()), "batch_size"),
])
def test_bad_arguments_are_refused_naming_them(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()


def test_compression_reader_decodes_every_position_from_the_last_state_only():
    factory = mad_models(d_model=8, n_layers=1, names=["transformer++"])["transformer++"]
    reader = CompressionReader(factory(seed=0, vocab_size=16, sequence_length=12), 16, 12)
    inputs = torch.randint(15, (3, 12), generator=torch.Generator().manual_seed(0))
    logits, loss = reader(inputs, inputs)
    assert logits.shape == (3, 12, 16) and torch.isfinite(loss)
    # Rows that end alike but differ early differ in every decoded position or none: the
    # decoder sees one vector per row.
    changed = inputs.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 15
    other, _ = reader(changed)
    assert not torch.allclose(logits, other)
    with pytest.raises(ValueError, match="lm_head"):
        CompressionReader(torch.nn.Linear(2, 2), 16, 12)


TINY = {"in-context-recall": {"sequence_length": 12},
        "selective-copying": {"sequence_length": 12, "tokens_to_copy": 2},
        "compression": {"sequence_length": 8}}


@pytest.fixture(scope="module")
def tiny_result():
    models = mad_models(d_model=8, n_layers=1, names=["hope", "transformer++"])
    return run_mad(models, tasks=list(TINY), seeds=(0, 1, 2), steps=2, batch_size=2,
                   test_size=3, task_options=TINY, timing_rounds=1)


def test_run_mad_scores_every_model_task_and_seed(tiny_result):
    result = tiny_result
    assert result.tasks == list(TINY) and result.seeds == [0, 1, 2]
    for model in ("hope", "transformer++"):
        for task in TINY:
            runs = result.runs[model][task]
            assert [run["seed"] for run in runs] == [0, 1, 2]
            totals = {run["total"] for run in runs}
            assert len(totals) == 1, "one test set for every seed"
            for run in runs:
                assert 0 <= run["correct"] <= run["total"]
                assert run["interval"][0] <= run["accuracy"] <= run["interval"][1]
            assert result.ms_per_step[model][task] > 0
            assert result.equal_time_steps[model][task] >= 1
    assert result.equal_time_steps[CONTROL_MODEL]["compression"] in (1, 2, 3)
    assert result.runs["hope"]["compression"][0]["total"] == 3 * 8
    table = result.table()
    assert "transformer++" in table and "compression" in table and "ms per step" in table
    assert "positive control transformer++" in table
    assert "HOPE vs Transformer++" in result.summary()
    assert isinstance(result.plot(), matplotlib.figure.Figure)


def test_mad_result_round_trips_through_json(tiny_result):
    data = json.loads(json.dumps(tiny_result.to_dict()))
    again = MADResult.from_dict(data)
    assert again.to_dict() == tiny_result.to_dict()
    assert again.table() == tiny_result.table()
    with pytest.raises(ValueError, match="data"):
        MADResult.from_dict({"runs": {}})


def _synthetic(control_accuracy: float, hope_accuracy: dict[str, float]) -> MADResult:
    """A result by hand: 1,000 scored tokens per seed, three seeds."""
    tasks = ["in-context-recall", "selective-copying", "memorization"]

    def runs(accuracy):
        correct = round(1000 * accuracy)
        return [dict(seed=seed, correct=correct, total=1000, accuracy=correct / 1000,
                     interval=(0.0, 1.0), final_loss=0.1, ms_per_step=1.0, diverged_at=None)
                for seed in range(3)]

    return MADResult({"hope": {task: runs(hope_accuracy.get(task, 0.95)) for task in tasks},
                      "transformer++": {task: runs(control_accuracy) for task in tasks}},
                     [0, 1, 2], tasks, setting={"steps": 1})


def test_a_failed_control_stops_the_verdict():
    failed = _synthetic(0.5, {})
    assert not failed.control.passed
    assert failed.verdict().verdict == "not tested at this budget"
    assert _synthetic(0.95, {}).verdict().verdict == "holds"
    assert _synthetic(0.95, {"memorization": 0.5}).verdict().verdict == "mixed"
    worse = {task: 0.5 for task in ("in-context-recall", "selective-copying", "memorization")}
    assert _synthetic(0.95, worse).verdict().verdict == "does not hold"
    only_hope = MADResult({"hope": failed.runs["hope"]}, [0, 1, 2], failed.tasks)
    assert only_hope.control is None
    assert only_hope.verdict().verdict == "not tested at this budget"


def test_bench_mad_runs_and_writes_a_readable_file(tmp_path, capsys):
    from nlbook import bench

    path = tmp_path / "mad.json"
    status = bench.main(["mad", "--models", "transformer++", "--tasks", "compression",
                         "--seeds", "0", "--steps", "2", "--warmup", "1", "--batch", "2",
                         "--d-model", "8", "--n-layers", "1", "--test-size", "2",
                         "--json", str(path)])
    assert status == 0
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["command"].startswith("python -m nlbook.bench mad")
    assert data["verdict"] == "not tested at this budget"
    result = MADResult.from_dict(data)
    assert result.runs["transformer++"]["compression"][0]["total"] == 2 * 32
    assert "MAD at CPU scale" in capsys.readouterr().out
