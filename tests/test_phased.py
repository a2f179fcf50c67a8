"""Continual learning in context: the phased MQAR task, the sliding-window Transformer++,
run_phased_mqar's protocol, the CMS-frozen switch and ``python -m nlbook.bench phased-mqar``."""

from __future__ import annotations

import json

import matplotlib.figure
import pytest
import torch

from nlbook import bench
from nlbook.claims import (
    PHASED_MODELS,
    PhasedMQARResult,
    PhasedRun,
    phased_models,
    phased_switches,
    run_phased_mqar,
)
from nlbook.hope import HopeLM, frozen_cms
from nlbook.tasks import PHASES, phased_mqar_batch, phased_mqar_layout
from nlbook.transformer_plus_plus import TransformerPlusPlusLM

# ----------------------------------------------------------------------------- the task


def test_phased_layout_read_token_by_token():
    """The slow, obvious reading of every row: A's pairs, blanks, A's keys as queries, B's
    pairs (other keys, other values), blanks, B's queries, blanks, A's queries again."""
    n, g, vocab = 3, 2, 20
    inputs, targets, phase = phased_mqar_batch(16, vocab_size=vocab, pairs_per_phase=n, gap=g,
                                               generator=torch.Generator().manual_seed(0))
    length = 7 * n + 3 * g
    assert inputs.shape == targets.shape == phase.shape == (16, length)
    assert inputs.dtype == targets.dtype == phase.dtype == torch.int64
    for row in range(16):
        x, y, p = inputs[row].tolist(), targets[row].tolist(), phase[row].tolist()
        position = 0
        pairs = {}
        for name in ("A", "B"):
            pairs[name] = {}
            for _ in range(n):
                key, value = x[position], x[position + 1]
                assert 1 <= key < vocab // 2 <= value < vocab
                assert y[position] == y[position + 1] == -1
                assert p[position] == p[position + 1] == -1
                pairs[name][key] = value
                position += 2
            assert len(pairs[name]) == n  # distinct keys
            for _ in range(g):
                assert (x[position], y[position], p[position]) == (0, -1, -1)
                position += 1
            seen = []
            for _ in range(n):
                assert x[position] in pairs[name]
                assert y[position] == pairs[name][x[position]]
                assert p[position] == (0 if name == "A" else 1)
                seen.append(x[position])
                position += 1
            assert sorted(seen) == sorted(pairs[name])  # every key queried once
        assert not set(pairs["A"]) & set(pairs["B"])
        assert not set(pairs["A"].values()) & set(pairs["B"].values())
        for _ in range(g):
            assert (x[position], y[position], p[position]) == (0, -1, -1)
            position += 1
        seen = []
        for _ in range(n):
            assert y[position] == pairs["A"][x[position]] and p[position] == 2
            seen.append(x[position])
            position += 1
        assert sorted(seen) == sorted(pairs["A"]) and position == length
    layout = phased_mqar_layout(n, g)
    for index, block in enumerate(PHASES):
        start, stop = layout[block]
        assert bool((phase[:, start:stop] == index).all())
    assert layout["sequence"] == (0, length)


def test_phased_batch_is_deterministic_and_refuses_bad_input():
    def draw(seed):
        return phased_mqar_batch(4, vocab_size=32, pairs_per_phase=4, gap=3,
                                 generator=torch.Generator().manual_seed(seed))

    for first, second in zip(draw(5), draw(5), strict=True):
        assert torch.equal(first, second)
    assert not torch.equal(draw(5)[0], draw(6)[0])
    with pytest.raises(ValueError, match="pairs_per_phase"):
        phased_mqar_batch(2, vocab_size=16, pairs_per_phase=4,
                          generator=torch.Generator())  # 8 keys do not fit in [1, 8)
    with pytest.raises(ValueError, match="gap"):
        phased_mqar_batch(2, vocab_size=64, pairs_per_phase=2, gap=-1,
                          generator=torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        phased_mqar_batch(2, vocab_size=64, pairs_per_phase=2, generator=0)
    with pytest.raises(ValueError, match="batch_size"):
        phased_mqar_batch(0, vocab_size=64, pairs_per_phase=2, generator=torch.Generator())


# ------------------------------------------------------------------ sliding-window attention


def _plus_plus(window, n_layers=1, length=24):
    torch.manual_seed(0)
    return TransformerPlusPlusLM(17, 16, n_layers, 2, context_length=length,
                                 window=window).eval()


def test_sliding_window_output_never_depends_on_tokens_before_its_window():
    window, length = 5, 24
    idx = torch.randint(0, 17, (2, length), generator=torch.Generator().manual_seed(1))
    for n_layers in (1, 2):
        model = _plus_plus(window, n_layers)
        reach = n_layers * (window - 1)  # each layer reads window - 1 tokens further back
        with torch.no_grad():
            base, _ = model(idx)
            for position in (reach, 13, length - 1):
                changed = idx.clone()
                changed[:, :position - reach] = (changed[:, :position - reach] + 7) % 17
                logits, _ = model(changed)
                torch.testing.assert_close(logits[:, position], base[:, position])
                # the first token inside the reach does matter
                inside = idx.clone()
                inside[:, position - reach] = (inside[:, position - reach] + 7) % 17
                moved, _ = model(inside)
                assert (moved[:, position] - base[:, position]).abs().max() > 1e-6


def test_a_window_as_long_as_the_input_is_full_attention():
    idx = torch.randint(0, 17, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full, _ = _plus_plus(None, 2)(idx)
        for window in (12, 40):
            windowed, _ = _plus_plus(window, 2)(idx)
            assert torch.equal(full, windowed)
        shorter, _ = _plus_plus(6, 2)(idx)
    assert not torch.allclose(full, shorter)
    with pytest.raises(ValueError, match="window"):
        _plus_plus(0)


# ----------------------------------------------------------------------------- the switch


def test_the_cms_frozen_switch_freezes_the_cms_in_context_and_restores_it():
    model = HopeLM(20, 16, 2, 2, context_length=24, cms_chunk_sizes=(256, 4), seed=0).eval()
    idx = torch.randint(0, 20, (2, 24), generator=torch.Generator().manual_seed(3))
    rates = [block.cms.learning_rates for block in model.blocks]
    saved = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad():
        _, start = model.stream(idx[:, :1])  # before the first chunk of 4 closes
        before, written = model.stream(idx)
        with frozen_cms(model) as inside:
            assert inside is model
            frozen_logits, frozen = model.stream(idx)
        after, _ = model.stream(idx)
    for layer in range(2):
        initial = start.layers[layer].cms.parameters[1]
        for name, value in frozen.layers[layer].cms.parameters[1].items():
            assert torch.equal(value, initial[name]), name  # never written in context
        assert any(not torch.equal(value, initial[name])
                   for name, value in written.layers[layer].cms.parameters[1].items())
        # the Titans memory is still written inside the switch
        assert not torch.equal(frozen.layers[layer].titans.memory_second,
                               start.layers[layer].titans.memory_second)
    assert not torch.allclose(before, frozen_logits)
    assert torch.equal(before, after)
    assert [block.cms.learning_rates for block in model.blocks] == rates
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name


# ----------------------------------------------------------------------------- the protocol


def test_phased_models_build_every_model_and_refuse_bad_options():
    factories = phased_models(16, d_model=8, n_layers=1, pairs_per_phase=2, gap=1)
    assert list(factories) == list(PHASED_MODELS)
    models = {name: factory(seed=0) for name, factory in factories.items()}
    assert models["sliding-window transformer++"].window == 4 * 2 + 1
    assert models["transformer++"].window is None
    assert models["sliding-window hope-attention"].blocks[0].attention.window == 4 * 2 + 1
    assert models["hope-attention"].blocks[0].attention.window == 17
    for name in ("hope", "delta", "linear_attention", "hope-attention"):
        assert models[name].blocks[0].cms.chunk_sizes[-1] == 4
    with pytest.raises(ValueError, match="window"):
        phased_models(16, d_model=8, pairs_per_phase=2, gap=1, window=17)
    with pytest.raises(ValueError, match="names"):
        phased_models(16, d_model=8, pairs_per_phase=2, gap=1, names=["lstm"])


def test_run_phased_mqar_at_a_tiny_size_and_its_round_trip(tmp_path):
    lines = []
    result = run_phased_mqar(phased_models(16, d_model=8, n_layers=1, pairs_per_phase=2, gap=1),
                             seeds=(0, 1), steps=2, batch_size=2, vocab_size=16,
                             pairs_per_phase=2, gap=1, warmup_steps=1, test_size=3,
                             switches=phased_switches(), log=lines.append, log_every=1)
    assert list(result.runs) == [*PHASED_MODELS, "hope (CMS frozen in context)"]
    for runs in result.runs.values():
        assert len(runs) == 2
        for run in runs:
            assert run.queries == [6, 6, 6]
            assert all(0 <= right <= 6 for right in run.correct)
    assert result.runs["hope (CMS frozen in context)"][0].ms_per_step is None
    assert result.setting["sequence_length"] == 17 and result.chance == 0.5
    assert any("test accuracy" in line for line in lines)
    text = result.table()
    assert "A last" in text and "positive control hope-attention" in text
    assert result.verdict().verdict == "not tested at this budget"  # 2 seeds: a sketch
    assert "seed" in result.verdict().why
    assert "Phased MQAR" in result.summary() and result.summary().endswith(".")
    again = PhasedMQARResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.to_dict() == result.to_dict()
    assert again.table() == text
    path = tmp_path / "phased.json"
    result.save(str(path), command="test")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["command"] == "test" and PHASED_MODELS[0] in saved["runs"]
    assert isinstance(result.plot(), matplotlib.figure.Figure)
    with pytest.raises(ValueError, match="data"):
        PhasedMQARResult.from_dict({"runs": {}})


def _result(cells: dict[str, tuple[int, int, int]], total: int = 1000) -> PhasedMQARResult:
    """A result with the same counts in each of three seeds: name -> correct (A first, B,
    A last) out of ``total`` each (or a list of three such triples, one per seed)."""
    runs = {name: [PhasedRun(list(seed_counts), [total] * 3, 1.0, 10, 0.1)
                   for seed_counts in (counts if isinstance(counts, list) else [counts] * 3)]
            for name, counts in cells.items()}
    return PhasedMQARResult(runs, [0, 1, 2], {"pairs_per_phase": 4, "sequence_length": 52,
                                              "steps": 10, "control": "hope-attention",
                                              "control_threshold": 0.9, "claim_model": "hope"})


def test_a_failed_control_gives_not_tested_and_a_passed_one_a_verdict():
    others = {"linear_attention": (900, 900, 400), "delta": (950, 950, 500),
              "sliding-window hope-attention": (990, 990, 260),
              "sliding-window transformer++": (250, 250, 250),  # never learned A
              "hope (CMS frozen in context)": (990, 990, 600)}
    failed = _result({"hope": (990, 990, 900), "hope-attention": (990, 990, 850), **others})
    assert failed.control is not None and not failed.control.passed
    assert failed.verdict().verdict == "not tested at this budget"
    passed = _result({"hope": (990, 990, 900), "hope-attention": (1000, 1000, 995), **others})
    assert passed.control.passed
    assert passed.verdict().verdict == "holds"
    assert all(item.direction == 1 for item in passed.comparisons().values())
    # a model that never learned A is not compared (it would "forget" nothing)
    assert "sliding-window transformer++" not in passed.comparisons()
    assert passed.not_compared() == ["sliding-window transformer++"]
    assert "did not learn A" in passed.table()
    assert passed.forgetting("hope") == pytest.approx([-0.09] * 3)
    assert passed.retention("hope") == pytest.approx([(0.9 - 0.25) / (0.99 - 0.25)] * 3)
    mixed = _result({"hope": (990, 990, 550), "hope-attention": (1000, 1000, 995), **others})
    assert mixed.verdict().verdict == "mixed"
    # a HOPE that never learned A cannot be said to keep it
    unlearned = _result({"hope": (250, 250, 250), "hope-attention": (1000, 1000, 995), **others})
    assert unlearned.verdict().verdict == "not tested at this budget"
    assert unlearned.retention("hope") == [None, None, None]
    assert _result({"hope": (990, 990, 900)}).control is None
    # learned A in one seed of three: its pooled interval is above chance, yet not compared
    once = _result({"hope": (990, 990, 900), "hope-attention": (1000, 1000, 995),
                    "delta": [(997, 996, 256), (250, 250, 250), (251, 249, 250)]})
    assert once.cell("delta", 0).pooled_interval[0] > once.chance
    assert not once.learned("delta") and once.not_compared() == ["delta"]
    assert once.verdict().verdict == "not tested at this budget"  # no test left


def test_bench_phased_mqar_runs_and_writes_its_json(tmp_path, capsys):
    path = tmp_path / "phased.json"
    status = bench.main(["phased-mqar", "--steps", "1", "--seeds", "0", "--pairs", "1",
                         "--gap", "0", "--vocab", "8", "--d-model", "8", "--n-layers", "1",
                         "--test-size", "2", "--warmup", "1", "--json", str(path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "phased-mqar" in out and "A last" in out and "wrote" in out
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["command"].startswith("python -m nlbook.bench phased-mqar")
    assert PhasedMQARResult.from_dict(data).seeds == [0]
