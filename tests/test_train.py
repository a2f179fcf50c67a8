"""nlbook.train and nlbook.sample: exact resume, NaN stop, safe checkpoints, schedule,
registries, presets, the command lines. Tiny models on a small synthetic corpus."""

import itertools
import math
import time

import pytest
import torch

import nlbook.transformer
from nlbook import sample as sample_module
from nlbook import train as train_module
from nlbook.train import (
    PRESETS,
    CheckpointError,
    ModelUnavailableError,
    TrainConfig,
    TrainingDivergedError,
    build_model,
    build_optimizer,
    learning_rate_at,
    load_checkpoint,
    load_model,
    train,
)
from nlbook.transformer import parameter_count


@pytest.fixture
def corpus_path(tmp_path):
    """A small UTF-8 corpus with some structure and non-ASCII characters."""
    generator = torch.Generator().manual_seed(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "café", "naïve", "über", "and"]
    picks = torch.randint(len(words), (900,), generator=generator).tolist()
    text = " ".join(words[i] for i in picks).replace("mat ", "mat.\n")
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


def tiny_config(corpus_path, checkpoint=None, **overrides) -> TrainConfig:
    values = dict(d_model=16, n_layers=1, n_heads=2, context_length=16, batch_size=4, steps=20,
                  learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=3, eval_interval=5,
                  eval_batches=2, data=str(corpus_path),
                  checkpoint=None if checkpoint is None else str(checkpoint))
    values.update(overrides)
    return TrainConfig(**values)


def run(config, **kwargs):
    return train(config, progress=False, log=None, **kwargs)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_equals_an_uninterrupted_run(corpus_path, tmp_path, optimizer):
    options = {"model_options": {"dropout": 0.1}, "optimizer": optimizer}  # dropout: torch RNG
    straight = run(tiny_config(corpus_path, tmp_path / "a.pt", **options))
    config = tiny_config(corpus_path, tmp_path / "b.pt", **options)
    first = run(config, stop_at_step=8)
    assert first.step == 8 and load_checkpoint(tmp_path / "b.pt")["step"] == 8
    resumed = run(config, resume=True)
    assert resumed.step == straight.step == 20
    assert resumed.history == straight.history
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_hope_resume_equals_an_uninterrupted_run(corpus_path, tmp_path):
    pytest.importorskip("nlbook.hope")
    options = {"model": "hope", "steps": 10, "eval_interval": 5}
    straight = run(tiny_config(corpus_path, tmp_path / "a.pt", **options))
    config = tiny_config(corpus_path, tmp_path / "b.pt", **options)
    run(config, stop_at_step=4)
    resumed = run(config, resume=True)
    assert resumed.history == straight.history
    assert straight.history["train_loss"][-1] < straight.history["train_loss"][0]
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_is_plain_and_atomic(corpus_path, tmp_path):
    path = tmp_path / "run" / "model.pt"
    result = run(tiny_config(corpus_path, path, steps=6))
    assert path.is_file() and not (tmp_path / "run" / "model.pt.tmp").exists()
    state = torch.load(path, weights_only=True)
    assert state["step"] == 6 and state["config"]["steps"] == 6
    assert state["vocabulary"] == result.vocabulary.chars and "é" in state["vocabulary"]
    model, vocabulary, _ = load_model(path)
    idx = torch.zeros(1, 5, dtype=torch.int64)
    assert torch.equal(model(idx)[0], result.model(idx)[0])
    assert vocabulary == result.vocabulary


class NotATensor:
    """A custom class: unpickling it could run arbitrary code."""

    def __init__(self) -> None:
        self.payload = "anything"


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "nlbook-checkpoint-1", "model": {}, "extra": NotATensor()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*weights_only=True"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an nlbook checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("corrupt_at", [7, 10])
def test_nan_stops_cleanly_and_keeps_the_last_good_checkpoint(corpus_path, tmp_path,
                                                              corrupt_at):
    path = tmp_path / "nan.pt"

    def corrupt(step, model):  # test-only fault: a parameter becomes NaN after this step
        if step == corrupt_at:
            with torch.no_grad():
                next(model.parameters())[0, 0] = float("nan")

    config = tiny_config(corpus_path, path, checkpoint_interval=5)
    with pytest.raises(TrainingDivergedError, match=r"step (8|10)") as caught:
        run(config, after_step=corrupt)
    assert caught.value.last_good_step == 5
    state = load_checkpoint(path)
    assert state["step"] == 5
    assert all(bool(torch.isfinite(value).all()) for value in state["model"].values())
    assert run(config, resume=True, stop_at_step=6).step == 6  # the good checkpoint resumes


def test_cli_exits_non_zero_with_the_divergence_message(corpus_path, tmp_path, monkeypatch,
                                                        capsys):
    forward = nlbook.transformer.TransformerLM.forward
    calls = {"training": 0}

    def diverging_forward(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training:
            calls["training"] += 1
            if calls["training"] >= 4:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(nlbook.transformer.TransformerLM, "forward", diverging_forward)
    status = train_module.main(["--data", str(corpus_path), "--steps", "10", "--d-model", "16",
                                "--n-layers", "1", "--n-heads", "2", "--context-length", "8",
                                "--eval-interval", "2", "--eval-batches", "1", "--no-progress",
                                "--checkpoint", str(tmp_path / "cli.pt")])
    assert status == 1
    error = capsys.readouterr().err
    assert "diverged" in error and "at step 4" in error and "step 2" in error


def test_cli_trains_saves_figure_and_samples(corpus_path, tmp_path, capsys):
    checkpoint, figure = tmp_path / "cli.pt", tmp_path / "figures" / "loss.png"
    status = train_module.main(["--data", str(corpus_path), "--steps", "6", "--d-model", "16",
                                "--n-layers", "1", "--n-heads", "2", "--context-length", "8",
                                "--eval-interval", "3", "--eval-batches", "1", "--no-progress",
                                "--checkpoint", str(checkpoint), "--figure", str(figure)])
    assert status == 0 and checkpoint.is_file() and figure.stat().st_size > 1000
    output = capsys.readouterr().out
    assert "bits/char" in output and "7-gram KN" in output
    assert train_module.main(["--checkpoint", str(checkpoint), "--resume", "--no-progress",
                              "--no-baselines", "--figure", str(figure)]) == 0
    status = sample_module.main(["--checkpoint", str(checkpoint), "--prompt", "the café",
                                 "--max-new-tokens", "30", "--top-k", "5", "--top-p", "0.9"])
    assert status == 0
    text = capsys.readouterr().out.splitlines()[-1]
    assert text.startswith("the café")
    assert sample_module.main(["--checkpoint", str(checkpoint), "--prompt", "QQQ"]) == 2
    assert "prompt contains the character 'Q'" in capsys.readouterr().err


def test_time_budget_ends_at_a_step_with_a_final_evaluation(corpus_path):
    config = tiny_config(corpus_path, steps=None, minutes=0.01, calibration_steps=3)
    result = run(config)
    assert result.step == result.total_steps >= 4
    assert result.history["val_steps"][-1] == result.step


def test_learning_rate_schedule():
    def rate(step):
        return learning_rate_at(step, learning_rate=1e-3, min_learning_rate=1e-4,
                                warmup_steps=10, total_steps=110)

    assert rate(0) == pytest.approx(1e-4) and rate(9) == pytest.approx(1e-3)
    assert rate(60) == pytest.approx(5.5e-4)  # half-way down the cosine
    assert rate(110) == pytest.approx(1e-4)
    decay = [rate(step) for step in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert learning_rate_at(500, learning_rate=1e-3, min_learning_rate=0.0, warmup_steps=10,
                            total_steps=None) == 1e-3


def test_model_registry_and_errors(monkeypatch):
    model = build_model("transformer", 10, 16, 1, 2, context_length=8)
    assert isinstance(model, nlbook.transformer.TransformerLM) and model.context_length == 8
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("lstm", 10, 16, 1, 2)
    monkeypatch.setitem(train_module.MODEL_REGISTRY, "hope", "nlbook._not_written_yet:HopeLM")
    with pytest.raises(ModelUnavailableError, match=r"nlbook\._not_written_yet\.HopeLM"):
        build_model("hope", 10, 16, 1, 2)


def test_optimizer_selection():
    model = nlbook.transformer.TransformerLM(10, 16, 1, 2, context_length=8, bias=True)
    adamw = build_optimizer("AdamW", model, learning_rate=1e-3, weight_decay=0.1)
    decays = sorted(group["weight_decay"] for group in adamw.param_groups)
    assert decays == [0.0, 0.1]
    assert all(p.ndim < 2 for p in adamw.param_groups[1]["params"])
    with pytest.raises(ValueError, match="optimizer must be"):
        build_optimizer("lion", model, learning_rate=1e-3)


def test_every_chapter_2_optimizer_trains(corpus_path):
    for name in train_module.NLBOOK_OPTIMIZERS:
        result = run(tiny_config(corpus_path, steps=3, eval_interval=3, eval_batches=1,
                                 optimizer=name, learning_rate=1e-3, min_learning_rate=1e-4))
        assert math.isfinite(result.val_loss), name


def test_presets_are_the_documented_sizes():
    sizes = {}
    for preset in PRESETS:
        config = TrainConfig.from_preset(preset)
        model = build_model(config.model, 65, config.d_model, config.n_layers, config.n_heads,
                            context_length=config.context_length, **config.model_options)
        sizes[preset] = parameter_count(model)
    position = {name: PRESETS[name]["context_length"] * PRESETS[name]["d_model"]
                for name in PRESETS}
    # nanoGPT counts parameters without the position embedding: 0.80M and 10.65M.
    assert round((sizes["small"].total - position["small"]) / 1e6, 2) == 0.80
    assert round((sizes["base"].total - position["base"]) / 1e6, 2) == 10.65
    assert sizes["tiny"].total < sizes["small"].total
    with pytest.raises(ValueError, match="preset"):
        TrainConfig.from_preset("huge")
    with pytest.raises(ValueError, match="exactly one of steps and minutes"):
        TrainConfig(steps=None)


def test_loss_figure_has_reference_lines_and_checks_lengths():
    from nlbook.viz import plot_training_curves

    figure = plot_training_curves([1, 2, 3], [4.0, 3.0, 2.5], [0, 3], [4.1, 2.6],
                                  references={"bigram": 2.487, "7-gram KN": 1.517})
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "bigram: 2.487" in labels and "7-gram KN: 1.517" in labels
    with pytest.raises(ValueError, match="train_steps and train_loss"):
        plot_training_curves([1, 2], [4.0])


def test_weight_decay_skips_biases_gains_and_per_head_scalars():
    from nlbook.hope import HopeLM

    model = HopeLM(vocab_size=11, d_model=16, n_layers=1, n_heads=2, context_length=16)
    optimizer = build_optimizer("adamw", model, learning_rate=1e-3, weight_decay=0.1)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups
                for p in group["params"]}
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert any(len(shape) == 3 and shape[1:] == (1, 1) for shape in shapes.values())
    for name, parameter in model.named_parameters():
        is_matrix = sum(size > 1 for size in parameter.shape) >= 2
        assert decay_of[id(parameter)] == (0.1 if is_matrix else 0.0), name


def test_time_budget_is_a_deadline_when_steps_slow_down(corpus_path):
    """Planned from fast early steps, a run whose steps then slow down stops at the deadline."""
    config = tiny_config(corpus_path, steps=None, minutes=0.02, calibration_steps=3)

    def slow_after_calibration(step, model):
        if step > 4:
            time.sleep(0.25)

    start = time.perf_counter()
    result = run(config, after_step=slow_after_calibration)
    assert result.step == result.total_steps < 20
    # The deadline plus one step and evals; generous, so that a busy machine is not a failure.
    assert time.perf_counter() - start < 0.02 * 60 + 30
    assert result.history["val_steps"][-1] == result.step


def test_time_budget_uses_its_whole_time_when_early_steps_were_slow(corpus_path):
    """The cosine follows wall-clock time: slow early steps do not end the run early."""
    config = tiny_config(corpus_path, steps=None, minutes=0.02, calibration_steps=3)

    def slow_calibration(step, model):
        if step <= 4:
            time.sleep(0.1)

    start = time.perf_counter()
    result = run(config, after_step=slow_calibration)
    seconds = time.perf_counter() - start
    # A plan made from the slow steps would have stopped after about 0.8 s / 0.1 s = 8 more,
    # before the deadline; the run must instead end at the deadline (how many steps fit in it
    # depends on how busy the machine is: not asserted). Upper bounds generous for the same
    # reason.
    assert result.step == result.total_steps > 4
    assert 0.02 * 60 <= result.seconds < 0.02 * 60 + 30 and seconds < 0.02 * 60 + 30


def test_time_schedule_follows_the_fraction_of_time_passed():
    def rate(step, progress=None, total=None):
        return learning_rate_at(step, learning_rate=1e-3, min_learning_rate=1e-4,
                                warmup_steps=10, total_steps=total, progress=progress)

    assert rate(5, progress=0.9) == pytest.approx(6e-4)  # warm-up is counted in steps
    assert rate(50, progress=0.0) == pytest.approx(1e-3)
    assert rate(50, progress=0.5) == pytest.approx(5.5e-4) == rate(60, total=110)
    assert rate(50, progress=1.0) == rate(50, progress=1.3) == pytest.approx(1e-4)


def test_time_budget_shorter_than_the_warm_up_still_stops_on_time(corpus_path):
    config = tiny_config(corpus_path, steps=None, minutes=0.01, warmup_steps=10_000)

    def slow(step, model):
        time.sleep(0.05)

    start = time.perf_counter()
    result = run(config, after_step=slow)
    assert result.step == result.total_steps < 10_000
    assert time.perf_counter() - start < 0.01 * 60 + 3


# ----------------------------------------------------------------------------- stateful training

def stateful_config(corpus_path, checkpoint=None, **overrides) -> TrainConfig:
    values = dict(model="hope", steps=12, eval_interval=6, carry_state=True, stream_length=64,
                  model_options={"chunk_size_memory": 16, "chunk_size_others": 8,
                                 "cms_chunk_sizes": (32, 8), "cms_learning_rates": (0.0, 0.05)})
    values.update(overrides)
    return tiny_config(corpus_path, checkpoint, **values)


def test_stateful_resume_equals_an_uninterrupted_run_bitwise(corpus_path, tmp_path):
    straight = run(stateful_config(corpus_path, tmp_path / "a.pt"))
    config = stateful_config(corpus_path, tmp_path / "b.pt")
    run(config, stop_at_step=5)  # mid-stream: the carried state is in the checkpoint
    saved = load_checkpoint(tmp_path / "b.pt")
    assert saved["carried_state"] is not None and saved["streams"] is not None
    resumed = run(config, resume=True)
    assert resumed.history == straight.history
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    final_a = load_checkpoint(tmp_path / "a.pt")
    final_b = load_checkpoint(tmp_path / "b.pt")
    # A finished run keeps no carried state (no step reads it); resuming it does nothing.
    assert final_a["carried_state"] is None and final_b["carried_state"] is None
    assert run(stateful_config(corpus_path, tmp_path / "a.pt"), resume=True).step == 12
    assert torch.equal(final_a["streams"]["positions"]["positions"],
                       final_b["streams"]["positions"]["positions"])


def test_stateful_training_lowers_the_loss(corpus_path):
    result = run(stateful_config(corpus_path, steps=30, eval_interval=30))
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]


def test_a_model_without_state_refuses_carry_state(corpus_path):
    with pytest.raises(ValueError, match="carry_state"):
        tiny_config(corpus_path, model="transformer", carry_state=True)
    with pytest.raises(ValueError, match="stream_length"):
        stateful_config(corpus_path, stream_length=40)  # not a multiple of the context (16)
    with pytest.raises(ValueError, match="carry_state"):
        stateful_config(corpus_path, carry_state=1)


def test_stateful_batch_rows_stay_independent():
    """Row 0's logits and gradients over carried windows do not depend on row 1's text."""
    from nlbook.hope import HopeLM

    model = HopeLM(12, 16, 2, 2, chunk_size_memory=8, chunk_size_others=4,
                   cms_chunk_sizes=(16, 8), cms_learning_rates=(0.0, 0.1)).double()
    generator = torch.Generator().manual_seed(0)
    texts = torch.randint(12, (2, 3 * 16 + 1), generator=generator)
    other = texts.clone()
    other[1] = torch.randint(12, (3 * 16 + 1,), generator=generator)

    def run_windows(ids):
        carried, logits_seen, grads = None, [], []
        for window in range(3):
            inputs = ids[:, window * 16:(window + 1) * 16]
            targets = ids[:, window * 16 + 1:(window + 1) * 16 + 1]
            restart = torch.tensor([False, window == 1])  # row 1 restarts mid-run
            state = None if carried is None else model.resume_stream(carried, restart=restart)
            logits, state = model.stream(inputs, state, targets=targets)
            model.zero_grad()
            nlbook.transformer.language_model_loss(logits[:1], targets[:1]).backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()
                                    if p.grad is not None]))
            carried = model.carry_over(state)
            logits_seen.append(logits[0].detach())
        return logits_seen, grads

    logits_a, grads_a = run_windows(texts)
    logits_b, grads_b = run_windows(other)
    for a, b in zip(logits_a + grads_a, logits_b + grads_b, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_m3_trains_the_tiny_transformer_below_the_bigram_line():
    """M3 at its default settings in nlbook.train (the hidden matrices; AdamW for the rest)
    beats the bigram baseline (2.49 nats/char on the validation split) within 300 steps.
    Algorithm 1 as printed ended at 3.35 here (steps inversely proportional to |g|)."""
    config = TrainConfig(optimizer="m3", steps=300, eval_interval=300, eval_batches=10)
    result = train(config, progress=False, log=None)
    assert isinstance(result.model, torch.nn.Module)
    assert result.val_loss < 2.49, result.history["val_loss"]


# ----------------------------------------------------------------------------- the loop's steps

def test_train_is_the_sequence_of_its_steps(corpus_path, tmp_path):
    """set_up_run, an evaluation, train_step × N, an evaluation, write_checkpoint: train()."""
    from nlbook.train import record_evaluation, set_up_run, train_step, write_checkpoint

    straight = run(stateful_config(corpus_path, tmp_path / "train.pt", steps=4, eval_interval=4))
    by_hand = set_up_run(stateful_config(corpus_path, tmp_path / "hand.pt", steps=4,
                                         eval_interval=4))
    assert by_hand.step == 0 and by_hand.carried is None and not by_hand.finished
    record_evaluation(by_hand)
    losses = [train_step(by_hand) for _ in range(4)]
    assert by_hand.finished and by_hand.carried is not None
    record_evaluation(by_hand)
    write_checkpoint(by_hand)
    assert by_hand.history == straight.history and losses == straight.history["train_loss"]
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 by_hand.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    written = load_checkpoint(tmp_path / "hand.pt")
    expected = load_checkpoint(tmp_path / "train.pt")
    assert written["step"] == 4 and written["world_size"] == 1
    assert torch.equal(written["streams"]["generator"], expected["streams"]["generator"])


def test_set_up_run_resumes_what_write_checkpoint_wrote(corpus_path, tmp_path):
    from nlbook.train import set_up_run, train_step, write_checkpoint

    config = stateful_config(corpus_path, tmp_path / "run.pt")
    first = set_up_run(config)
    for _ in range(3):
        train_step(first)
    write_checkpoint(first)
    resumed = set_up_run(config, resume=True)
    assert resumed.step == 3 and resumed.last_good_step == 3
    assert resumed.history == first.history and resumed.resumed_from_world_size == 1
    assert torch.equal(resumed.streams.positions, first.streams.positions)
    conv = [layer["conv"] for layer in first.carried.layers]
    assert all(torch.equal(a, layer["conv"]) for a, layer in zip(conv, resumed.carried.layers,
                                                                 strict=True))
    assert train_step(resumed) == train_step(first)  # the same next batch, state and update


def test_train_step_stops_before_a_non_finite_update(corpus_path, tmp_path):
    from nlbook.train import set_up_run, train_step, write_checkpoint

    step_run = set_up_run(tiny_config(corpus_path, tmp_path / "nan.pt"))
    train_step(step_run)
    with torch.no_grad():
        next(step_run.model.parameters())[0, 0] = float("nan")
    before = [p.detach().clone() for p in step_run.model.parameters()]
    with pytest.raises(TrainingDivergedError, match="at step 2; stopped before updating"):
        train_step(step_run)
    assert step_run.step == 1 and step_run.history["train_steps"] == [1]
    after = list(step_run.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before[1:], after[1:], strict=True))
    with pytest.raises(TrainingDivergedError, match="parameters are not finite"):
        write_checkpoint(step_run)
    assert not (tmp_path / "nan.pt").exists()


def test_stop_at_deadline_ends_a_time_budget_at_this_step(corpus_path):
    from nlbook.train import set_up_run
    from nlbook.train.loop import stop_at_deadline

    messages = []
    budget_run = set_up_run(tiny_config(corpus_path, steps=None, minutes=0.5))
    assert not stop_at_deadline(budget_run, messages.append) and not budget_run.finished
    budget_run.elapsed_before = 31.0  # past the 30 s budget
    assert stop_at_deadline(budget_run, messages.append) and budget_run.finished
    assert budget_run.total_steps == 0 and "time budget 0.5 min reached" in messages[0]
    assert not set_up_run(tiny_config(corpus_path)).finished
