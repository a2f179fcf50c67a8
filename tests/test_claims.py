"""nlbook.claims (chapter 7's experiments 2-4) and the switch nlbook.hope.frozen_memories.

Fast: tiny models and a few steps. Each experiment runs end to end and returns a well-formed
table; frozen_memories removes exactly the in-context writes; the continual metric is right on
a made-up history; the plots keep every model's palette colour.
"""

from __future__ import annotations

import math

import matplotlib.colors
import matplotlib.figure
import numpy as np
import pytest
import torch
from torch import nn

from nlbook import viz
from nlbook.claims import (
    ContinualMetrics,
    TextLearner,
    continual_metrics,
    continual_models,
    formal_models,
    formal_switches,
    recall_models,
    recall_switches,
    run_continual,
    run_formal,
    run_recall,
    visible_gap,
)
from nlbook.data import load_corpus
from nlbook.hope import HopeLM, frozen_cms, frozen_memories
from nlbook.hope.ablation import FROZEN_GATE_BIAS
from nlbook.tasks.recall import induction_guesses
from nlbook.transformer import TransformerLM

VOCABULARY = load_corpus().vocabulary


def _same(first, second) -> bool:
    return matplotlib.colors.to_rgba(first)[:3] == matplotlib.colors.to_rgba(second)[:3]


def _same_hue(first, second) -> bool:
    hues = [matplotlib.colors.rgb_to_hsv(matplotlib.colors.to_rgba(colour)[:3])[0]
            for colour in (first, second)]
    return abs(hues[0] - hues[1]) < 0.03


def _tiny_hope(**options) -> HopeLM:
    return HopeLM(20, 16, 2, 2, seed=0, chunk_size_memory=8, chunk_size_others=4,
                  cms_chunk_sizes=(16, 4), cms_learning_rates=(0.0, 0.05), **options)


_TITANS_FIELDS = ("generator_first_snapshot", "generator_first", "generator_second_snapshot",
                  "generator_second", "memory_first_snapshot", "memory_first",
                  "memory_second_snapshot", "memory_second")


def _titans_tensors(state) -> list[torch.Tensor]:
    return [getattr(layer.titans, name).clone() for layer in state.layers
            for name in _TITANS_FIELDS]


def _cms_tensors(state) -> list[torch.Tensor]:
    return [value.clone() for layer in state.layers for level in layer.cms.parameters
            for value in level.values()]


# ----------------------------------------------------------------------------- frozen_memories

def test_frozen_memories_never_write_a_memory_along_a_stream():
    model = _tiny_hope().eval()
    idx = torch.randint(0, 20, (2, 49), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # A state that has moved, taken where every chunk has just closed (24 tokens).
        _, warm = model.stream(idx[:, :24], targets=idx[:, 1:25])
        titans, cms = _titans_tensors(warm), _cms_tensors(warm)
        with frozen_memories(model):
            state = warm
            for start in range(24, 48, 5):  # chunk boundaries of every memory fall inside
                piece = slice(start, min(start + 5, 48))
                _, state = model.stream(idx[:, piece], state,
                                        targets=idx[:, piece.start + 1:piece.stop + 1])
                for before, after in zip(titans, _titans_tensors(state), strict=True):
                    assert torch.equal(before, after)
                for before, after in zip(cms, _cms_tensors(state), strict=True):
                    assert torch.equal(before, after)
        # Outside the switch the same stream does write (the test could not pass vacuously).
        _, moved = model.stream(idx[:, 24:48], warm, targets=idx[:, 25:49])
    assert not all(torch.equal(a, b) for a, b in zip(titans, _titans_tensors(moved),
                                                        strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(cms, _cms_tensors(moved), strict=True))


def test_frozen_memories_keep_a_state_taken_mid_chunk():
    """From a state taken inside a chunk, the running memories stay fixed; a snapshot only
    catches up, at the next boundary, with what was written before the switch."""
    model = _tiny_hope().eval()
    idx = torch.randint(0, 20, (2, 40), generator=torch.Generator().manual_seed(4))
    running = [name for name in _TITANS_FIELDS if not name.endswith("snapshot")]
    with torch.no_grad():
        _, warm = model.stream(idx[:, :21], targets=idx[:, 1:22])
        with frozen_memories(model):
            _, state = model.stream(idx[:, 21:39], warm, targets=idx[:, 22:40])
    for before, after in zip(warm.layers, state.layers, strict=True):
        for name in running:
            assert torch.equal(getattr(before.titans, name), getattr(after.titans, name))
            assert torch.equal(getattr(after.titans, name),
                               getattr(after.titans, f"{name}_snapshot"))


def test_frozen_memories_leave_only_the_convolution_window():
    """Inside the switch a prediction depends on the last 1 + L·(w − 1) tokens only (the
    convolutions' windows, w = 4, stacked over the L blocks): nothing else of the stream reaches
    it, so every in-context write is gone."""
    model = _tiny_hope().eval()
    reach = len(model.blocks) * (model.blocks[0].conv.window - 1)
    idx = torch.randint(0, 20, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), frozen_memories(model):
        full, _ = model(idx)
        for position in (reach, 11, 29):
            alone, _ = model(idx[:, position - reach:position + 1])
            torch.testing.assert_close(full[:, position], alone[:, -1], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        full, _ = model(idx)
        alone, _ = model(idx[:, 26:30])
    assert (full[:, 29] - alone[:, -1]).abs().max() > 1e-3  # with its memories, it reads more


def test_frozen_memories_restore_everything_also_after_an_error():
    model = _tiny_hope().eval()
    idx = torch.randint(0, 20, (1, 24), generator=torch.Generator().manual_seed(2))
    saved = {name: value.clone() for name, value in model.state_dict().items()}
    rates = [block.cms.learning_rates for block in model.blocks]
    with torch.no_grad():
        before, _ = model(idx)
        with frozen_memories(model):
            inside, _ = model(idx)
        after, _ = model(idx)
        with pytest.raises(RuntimeError, match="inside"), frozen_memories(model):
            raise RuntimeError("an error inside")
        again, _ = model(idx)
    assert torch.equal(before, after) and torch.equal(before, again)
    assert not torch.allclose(before, inside)
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert [block.cms.learning_rates for block in model.blocks] == rates


def test_frozen_cms_still_writes_the_titans_and_switches_refuse_other_models():
    model = _tiny_hope().eval()
    idx = torch.randint(0, 20, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), frozen_cms(model):
        _, state = model.stream(idx)
    initial = model.blocks[0].titans.initial_state(1)
    assert not torch.equal(state.layers[0].titans.memory_second, initial.memory_second)
    for switch in (frozen_cms, frozen_memories):
        with pytest.raises(ValueError, match="HopeLM"), switch(TransformerLM(20, 8, 1, 1)):
            pass


# ----------------------------------------------------------------------------- the loop

def test_the_learner_trains_hope_statefully_exactly_as_nlbook_train():
    from nlbook.data import ContiguousStreams, make_corpus
    from nlbook.train import TrainConfig, train

    corpus = make_corpus(load_corpus().text[:20_000], vocabulary=VOCABULARY)
    config = TrainConfig(model="hope", d_model=16, n_layers=1, n_heads=2, context_length=32,
                         batch_size=3, steps=4, warmup_steps=2, learning_rate=2e-3,
                         min_learning_rate=2e-4, eval_interval=100, eval_batches=1,
                         carry_state=True, stream_length=128, seed=0)
    reference = train(config, corpus=corpus, progress=False, log=None)
    torch.manual_seed(0)
    model = HopeLM(len(VOCABULARY), 16, 1, 2, context_length=32)
    learner = TextLearner(model, learning_rate=2e-3, total_steps=4, warmup_steps=2,
                          min_learning_rate=2e-4)
    streams = ContiguousStreams(corpus.train_ids, 3, 32, stream_length=128,
                                generator=torch.Generator().manual_seed(0),
                                alignment=model.stream_alignment())
    losses = [learner.step(*streams.next_batch()) for _ in range(4)]
    assert losses == pytest.approx(reference.history["train_loss"], rel=1e-6)
    assert learner.carried is not None and learner.steps == 4


def test_the_learner_reads_fresh_windows_without_a_restart_mask():
    model = TransformerLM(len(VOCABULARY), 8, 1, 1, context_length=16)
    learner = TextLearner(model, learning_rate=1e-3, total_steps=None, warmup_steps=0)
    inputs = torch.randint(0, len(VOCABULARY), (2, 16))
    assert math.isfinite(learner.step(inputs, inputs))
    assert learner.carried is None and not learner.stateful
    with pytest.raises(ValueError, match="learning_rate"):
        TextLearner(model, learning_rate=0.0, total_steps=None)


# ----------------------------------------------------------------------------- formal languages

def test_run_formal_end_to_end_with_its_table():
    models = formal_models(d_model=8, n_layers=1, n_heads=2)
    result = run_formal(models, languages=("parity", "a^nb^n"), steps=2, batch_size=4,
                        train_strings=20, examples=8, seeds=(0, 1),
                        switches=formal_switches())
    assert result.languages == ("parity", "anbn")
    assert result.models == ("LSTM", "Transformer", "HOPE",
                             "HOPE without in-context CMS updates")
    for name in result.models:
        for split in ("bin0", "bin1"):
            values = result.accuracy[name][split]
            assert values.shape == (2, 2) and np.all((values >= 0) & (values <= 1))
            assert np.array_equal(values, result.correct[name][split]
                                  / result.totals[split][:, None])
    assert result.totals["bin0"][1] <= 8 and result.totals["bin1"][1] <= 8  # distinct aⁿbⁿ
    table = result.table()
    assert "chance about 0 %" in table.splitlines()[0]
    for needed in ("parity", "aⁿbⁿ", "Bin0 2-50", "Bin1 51-100", "HOPE without in-context CMS",
                   "±", "equal tokens", "Wilson", "interleaved", "positive control LSTM",
                   "equal time"):
        assert needed in table, needed
    # two steps teach nothing: the control fails, so no verdict on the claim
    assert result.control is not None and not result.control.passed
    assert result.verdict().verdict == "not tested at this budget"
    assert result.train_seconds["HOPE without in-context CMS updates"] == \
        result.train_seconds["HOPE"]
    assert isinstance(result.plot(), matplotlib.figure.Figure)
    assert isinstance(result.plot(models=["HOPE", "Transformer"]), matplotlib.figure.Figure)


def _formal_result(hope, lstm, totals=100):
    """A FormalResult over parity and (aa)*, 3 seeds, from strings right per (language, bin)."""
    from nlbook.claims import FormalResult
    from nlbook.claims.protocol import Control

    def counts(values):
        return {split: np.array([[values[language][index]] * 3 for language in range(2)])
                for index, split in enumerate(("bin0", "bin1"))}

    correct = {"HOPE": counts(hope), "LSTM": counts(lstm)}
    sizes = {split: np.array([totals, totals]) for split in ("bin0", "bin1")}
    accuracy = {model: {split: correct[model][split] / totals for split in sizes}
                for model in correct}
    worst = min(lstm[0][1], lstm[1][1]) / totals
    return FormalResult(("parity", "aa_star"), ("HOPE", "LSTM"), (0, 1, 2), correct, sizes,
                        accuracy, {"HOPE": 1.0, "LSTM": 1.0}, {"HOPE": 10.0, "LSTM": 1.0},
                        {"HOPE": 1, "LSTM": 1}, 10, 4, 1e-3, 100, (2, 50), (51, 100),
                        Control("LSTM", "parity and (aa)* bin 1", worst, 0.95))


def test_formal_verdicts_follow_the_protocol():
    solved = [(100, 100), (100, 100)]
    assert _formal_result(solved, solved).verdict().verdict == "holds"
    assert _formal_result([(100, 10), (100, 100)], solved).verdict().verdict == "mixed"
    assert _formal_result([(10, 10), (5, 0)], solved).verdict().verdict == "does not hold"
    # the control failing on parity's bin 1: no verdict
    failed = _formal_result(solved, [(100, 50), (100, 100)])
    assert not failed.control.passed
    assert failed.verdict().verdict == "not tested at this budget"
    # a language the control model itself does not solve tests nothing: left out
    result = _formal_result([(100, 100), (100, 100)], [(100, 100), (100, 100)])
    assert result.untested() == []
    assert result.equal_time_steps() == {"HOPE": 10, "LSTM": 100}


def test_the_cms_switch_equals_training_without_the_cms_on_short_strings():
    """On training strings shorter than the CMS's fast chunk (32), HOPE with and without
    in-context CMS updates train to the same model, so the switch costs no training."""
    from nlbook.tasks import formal_language_task, train_formal_language

    task = formal_language_task("parity", train_lengths=(2, 16), test_lengths=(32, 64))
    losses = []
    for rates in ((0.0, 1e-2), (0.0, 0.0)):
        model = HopeLM(13, 8, 1, 1, seed=0, cms_learning_rates=rates)
        losses.append(train_formal_language(model, task, steps=3, batch_size=4,
                                            supervision="prefix").losses)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_run_formal_validates_its_arguments():
    tiny = {"T": lambda: TransformerLM(13, 8, 1, 1, context_length=101)}
    with pytest.raises(ValueError, match="steps"):
        run_formal(tiny, steps=0, control=None)
    with pytest.raises(ValueError, match="language"):
        run_formal(tiny, languages=("dyck-7",), steps=1, control=None)
    with pytest.raises(ValueError, match="models"):
        run_formal({}, steps=1)
    with pytest.raises(ValueError, match="seeds"):
        run_formal(tiny, steps=1, seeds=(-1,), control=None)
    with pytest.raises(ValueError, match="control"):  # the control must be one of the models
        run_formal(tiny, languages=("parity",), steps=1)
    with pytest.raises(ValueError, match="context_length"):  # a window shorter than bin 1
        run_formal({"T": lambda: TransformerLM(13, 8, 1, 1, context_length=20)},
                   languages=("parity",), steps=1, control=None, claim_model=None)


# ----------------------------------------------------------------------------- recall

class WindowCopier(nn.Module):
    """A trainable window model that copies what followed the latest earlier occurrence of its
    last 12 characters (an induction-head oracle), else says 'e'; a bias it learns barely moves
    its choice. It recalls every fact inside its window and none outside."""

    def __init__(self, context_length: int = 64):
        super().__init__()
        self.vocab_size, self.context_length = len(VOCABULARY), context_length
        self.bias = nn.Parameter(torch.zeros(self.vocab_size))
        self.fallback = VOCABULARY.chars.index("e")

    def forward(self, idx, targets=None):
        guesses = induction_guesses(idx, vocab_size=self.vocab_size, fallback=self.fallback)
        logits = 10.0 * nn.functional.one_hot(guesses, self.vocab_size).float() + self.bias
        loss = None if targets is None else nn.functional.cross_entropy(
            logits.reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=-1)
        return logits, loss


def test_run_recall_scores_a_window_copier_inside_its_window_and_at_chance_beyond():
    result = run_recall({"copier": WindowCopier}, gaps=(4, 60), steps=1, trials=12,
                        batch_size=2, warmup_steps=0)
    assert result.models == ("copier",) and result.modes == {"copier": "window"}
    assert result.visible == visible_gap(64) == 18
    accuracy, control = result.mean("copier"), result.mean("copier", "control")
    assert accuracy[0] == 1.0  # the fact is in its window
    assert accuracy[1] < 0.3 and control.max() < 0.3  # out of reach, or removed: chance
    table = result.table()
    for needed in ("gap 4", "gap 60", "fact removed", "window 64", "1/26", "gaps <= 18"):
        assert needed in table, needed


def test_run_recall_end_to_end_with_hope_and_its_switch():
    models = recall_models(len(VOCABULARY), d_model=8, n_layers=1, n_heads=1)
    result = run_recall(models, gaps=(4, 70), steps=2, trials=2, batch_size=2,
                        stream_length=128, switches=recall_switches())
    assert result.models == ("HOPE", "Transformer", "HOPE without in-context updates")
    assert result.modes == {"HOPE": "stream", "Transformer": "window",
                            "HOPE without in-context updates": "stream"}
    for table in (result.accuracy, result.control, result.exact_match):
        for values in table.values():
            assert values.shape == (1, 2) and np.all((values >= 0) & (values <= 1))
    assert result.train_steps == {"HOPE": 2, "Transformer": 2}
    assert "HOPE without in-context updates" in result.table()
    assert isinstance(result.plot(), matplotlib.figure.Figure)
    with pytest.raises(ValueError, match="minutes"):
        run_recall(models, gaps=(4,), steps=1, minutes=-1.0)


# ----------------------------------------------------------------------------- continual

def test_continual_metrics_on_a_made_up_history():
    steps = [0, 5, 10, 15, 20, 25, 30]
    a = [4.0, 2.5, 2.0, 2.6, 3.0, 2.1, 1.8]  # A; B trained during steps 10-20
    b = [4.1, 3.9, 3.8, 2.9, 2.2, 2.6, 2.9]
    metric = continual_metrics(steps, a, b, (10, 20, 30))
    assert isinstance(metric, ContinualMetrics)
    assert metric.a_before_b == 2.0 and metric.a_after_b == 3.0 and metric.a_end == 1.8
    assert metric.forgetting == pytest.approx(1.0)  # A after B - A before B
    assert metric.recovery == pytest.approx(1.2)  # A after B - A at the end
    assert metric.net == pytest.approx(-0.2)
    assert metric.b_after_b == 2.2 and metric.b_forgetting == pytest.approx(0.7)
    assert metric.steps_to_recover == 10  # step 30 is the first back at or below 2.0
    never = continual_metrics(steps, [4.0, 2.5, 2.0, 2.6, 3.0, 2.9, 2.5], b, (10, 20, 30))
    assert never.steps_to_recover is None


def test_continual_metrics_validate_the_history():
    steps, losses = [0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="phase_ends"):
        continual_metrics(steps, losses, losses, (1, 2))
    with pytest.raises(ValueError, match="steps"):
        continual_metrics(steps, losses, losses, (1, 2, 4))  # 4 was never evaluated
    with pytest.raises(ValueError, match="losses_b"):
        continual_metrics(steps, losses, losses[:3], (1, 2, 3))
    with pytest.raises(ValueError, match="steps must increase"):
        continual_metrics([0, 2, 1, 3], losses, losses, (1, 2, 3))
    with pytest.raises(ValueError, match="losses_a"):
        continual_metrics(steps, [1.0, float("nan"), 1.0, 1.0], losses, (1, 2, 3))


def test_run_continual_end_to_end_with_its_table():
    models = continual_models(96, d_model=8, n_layers=1, n_heads=1)
    result = run_continual(models, steps_per_phase=2, evaluations_per_phase=2,
                           batch_size=2, validation_windows=2, stream_length=128)
    assert result.models == ("HOPE", "HOPE without in-context CMS updates", "Transformer")
    assert result.steps.tolist() == [0, 1, 2, 3, 4, 5, 6] and result.phase_ends == (2, 4, 6)
    assert result.order == ("A", "B", "A")
    for name in result.models:
        for corpus in "AB":
            values = result.losses[name][corpus]
            assert values.shape == (1, 7) and np.all(np.isfinite(values))
        assert isinstance(result.metrics(name), ContinualMetrics)
    frozen = models["HOPE without in-context CMS updates"](0)
    assert all(rate == 0.0 for block in frozen.blocks for rate in block.cms.learning_rates)
    table = result.table()
    for needed in ("forgetting", "recovery", "A @2", "B @4", "equal steps"):
        assert needed in table, needed
    assert isinstance(result.plot(), matplotlib.figure.Figure)
    with pytest.raises(ValueError, match="evaluations_per_phase"):
        run_continual(models, steps_per_phase=2, evaluations_per_phase=3)


# ----------------------------------------------------------------------------- plots

MODELS = ["HOPE", "Transformer", "HOPE without in-context updates",
          "HOPE without in-context CMS updates"]


def test_chapter_7_models_have_their_own_palette_colours():
    colours = [matplotlib.colors.to_hex(viz.model_color(name)) for name in MODELS]
    assert len(set(colours)) == len(colours)
    assert viz.model_color("HOPE without in-context updates, fact removed") == \
        viz.MODEL_COLORS["HOPE without in-context updates"]


def test_formal_bars_keep_each_model_colour():
    accuracy = {name: {"bin0": np.array([1.0, 0.8]), "bin1": np.array([0.5, 0.6])}
                for name in reversed(MODELS)}
    figure = viz.plot_formal_accuracy(["parity", "aⁿbⁿ"], accuracy)
    assert isinstance(figure, matplotlib.figure.Figure) and len(figure.axes) == 2
    for axis in figure.axes:
        bars = axis.patches
        assert len(bars) == 2 * len(MODELS)
        for index, name in enumerate(accuracy):
            for bar in bars[2 * index:2 * index + 2]:
                assert _same(bar.get_facecolor(), viz.model_color(name))
    with pytest.raises(ValueError, match="one accuracy per language"):
        viz.plot_formal_accuracy(["parity"], accuracy)


def test_recall_lines_and_controls_keep_each_model_colour():
    gaps = [8, 64, 512]
    accuracy = {name: np.array([0.9, 0.3, 0.04]) for name in MODELS}
    figure = viz.plot_recall_by_gap(gaps, accuracy, controls=accuracy, visible_gap=18)
    lines = {line.get_label(): line.get_color() for line in figure.axes[0].lines}
    for name in MODELS:
        assert _same(lines[name], viz.model_color(name))
        # The control is the same model: a shade of its colour (viz.distinguish_series).
        assert _same_hue(lines[f"{name}, fact removed"], viz.model_color(name))
        assert not _same(lines[f"{name}, fact removed"], lines[name])
    assert any(label.startswith("chance") for label in lines)
    with pytest.raises(ValueError, match="one value per gap"):
        viz.plot_recall_by_gap(gaps, {"HOPE": [0.5]})


def test_continual_curves_keep_each_model_colour():
    steps = [0, 5, 10, 15]
    losses = {name: {"A": [4.0, 3.0, 3.5, 2.9], "B": [4.0, 3.8, 2.5, 3.0]}
              for name in reversed(MODELS[1:])}
    figure = viz.plot_continual(steps, losses, phase_ends=(5, 10, 15))
    assert len(figure.axes) == 2
    for axis in figure.axes:
        colours = {line.get_label(): line.get_color() for line in axis.lines}
        for name in losses:
            assert _same(colours[name], viz.model_color(name))
    with pytest.raises(ValueError, match="phase_ends"):
        viz.plot_continual(steps, losses, phase_ends=(5, 10))


# ----------------------------------------------------------------------------- bench commands

@pytest.mark.parametrize(("command", "extra", "needed"), [
    ("formal", ["--examples", "8", "--train-strings", "20", "--languages", "parity",
                "--ignore-control"], "Formal languages"),
    ("recall", ["--trials", "1"], "Recall across a gap"),
    ("continual", ["--evaluations", "1"], "Continual learning"),
])
def test_bench_commands_print_their_tables(command, extra, needed, capsys):
    from nlbook.bench import BENCHMARKS, main

    assert command in BENCHMARKS
    main([command, "--steps", "1", "--seed", "1", "--d-model", "8", "--n-layers", "1",
          "--n-heads", "1", *extra])
    printed = capsys.readouterr().out
    assert needed in printed and ("seed(s) 1" in printed or "seeds 1" in printed)
    assert "total" in printed
    if command == "formal":  # the control first, the delta rule's beta range, no verdict
        assert printed.index("positive control LSTM") < printed.index("Formal languages")
        assert "delta β∈(0,2)" in printed and "not tested at this budget" in printed


def test_ascending_writes_negate_every_titans_step_and_restore():
    """Inside the switch each DGD write of the Titans memories is one step of gradient ascent:
    with one token and one head, W₁ = W₀(αI + η′xxᵀ) − η′ u xᵀ instead of W₀(αI − η′xxᵀ) + η′ u xᵀ,
    so the change from W₀ (what was written) flips its sign where α = 1."""
    from nlbook.hope import ascending_writes

    model = _tiny_hope()
    for block in model.blocks:
        with torch.no_grad():
            block.titans.retention_bias.fill_(FROZEN_GATE_BIAS)  # α = 1: nothing decays
    idx = torch.randint(0, 20, (1, 1), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, descent = model.stream(idx)
        with ascending_writes(model):
            _, ascent = model.stream(idx)
            assert all(block.titans.write_sign == -1.0 for block in model.blocks)
        _, again = model.stream(idx)
    assert all(block.titans.write_sign == 1.0 for block in model.blocks)
    layer = model.blocks[0]
    initial = layer.titans.initial_state(1).memory_second.detach()
    down = descent.layers[0].titans.memory_second - initial
    up = ascent.layers[0].titans.memory_second - initial
    assert float(down.abs().max()) > 1e-4
    torch.testing.assert_close(up, -down, rtol=1e-4, atol=1e-6)
    assert torch.equal(again.layers[0].titans.memory_second,
                       descent.layers[0].titans.memory_second)


def test_bench_formal_stops_when_its_positive_control_fails(capsys):
    """One step teaches the LSTM nothing: the bench prints the failed control and no verdict
    beyond "not tested at this budget", and trains nothing else."""
    from nlbook.bench import main

    main(["formal", "--steps", "1", "--seeds", "0", "--examples", "4", "--train-strings", "10",
          "--d-model", "8"])
    printed = capsys.readouterr().out
    assert "positive control LSTM" in printed and "FAILED" in printed
    assert "not tested at this budget" in printed
    assert "Transformer" not in printed and "HOPE" not in printed
