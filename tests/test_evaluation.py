"""nlbook.train's evaluations: streaming (HOPE one stream, the Transformer a sliding window),
loss by position, and the ``python -m nlbook.evaluate`` command line."""

import math

import pytest
import torch

from nlbook.hope import HopeLM
from nlbook.train import evaluate_stream, loss_by_position
from nlbook.train.evaluation import _sliding_windows
from nlbook.transformer import TransformerLM

VOCAB = 11


def small_hope(dtype=torch.float64) -> HopeLM:
    model = HopeLM(VOCAB, 16, 2, 2, chunk_size_memory=8, chunk_size_others=4,
                   cms_chunk_sizes=(16, 4), cms_learning_rates=(0.0, 0.1), seed=0)
    return model.to(dtype)


def small_transformer(context: int = 16) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(VOCAB, 16, 1, 2, context_length=context).double()


def text(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(VOCAB, (length,), generator=torch.Generator().manual_seed(seed))


def one_pass_loss(model, ids: torch.Tensor) -> float:
    with torch.no_grad():
        _, loss = model(ids[None, :-1], ids[None, 1:])
    return float(loss)


def test_hope_stream_does_not_depend_on_the_window():
    model, ids = small_hope(), text(90)
    whole = evaluate_stream(model, ids, window=len(ids))
    for window in (1, 7, 64):
        assert evaluate_stream(model, ids, window=window) == pytest.approx(whole, rel=1e-5)


def test_hope_stream_equals_one_forward_pass_and_restores_the_mode():
    model, ids = small_hope(), text(70, seed=1)
    model.train()
    assert evaluate_stream(model, ids, window=16) == pytest.approx(one_pass_loss(model, ids),
                                                                  rel=1e-9)
    assert model.training


def test_transformer_on_a_short_text_is_one_forward_pass():
    model, ids = small_transformer(context=16), text(12, seed=2)
    assert evaluate_stream(model, ids, window=16) == pytest.approx(one_pass_loss(model, ids),
                                                                  rel=1e-9)


@pytest.mark.parametrize("length,window", [(100, 16), (101, 15), (17, 16), (40, 1), (33, 2)])
def test_sliding_windows_score_each_token_once_with_half_a_window(length, window):
    context_of: dict[int, int] = {}
    for start, end, scored_from in _sliding_windows(length, window):
        assert 0 < end - start <= window
        for index in range(scored_from, end - start):
            target = start + index + 1          # the token predicted at window index ``index``
            assert target not in context_of, "a token was scored twice"
            context_of[target] = index + 1      # tokens the window has seen before it
    assert sorted(context_of) == list(range(1, length))
    for target, context in context_of.items():
        if target > window:                      # after the first window
            assert context >= window / 2


def test_transformer_stream_matches_a_direct_computation():
    model, ids, window = small_transformer(context=16), text(75, seed=3), 16
    total = 0.0
    with torch.no_grad():
        for start, end, scored_from in _sliding_windows(len(ids), window):
            logits, _ = model(ids[None, start:end])
            losses = torch.nn.functional.cross_entropy(logits[0], ids[start + 1:end + 1],
                                                       reduction="none")
            total += float(losses[scored_from:].sum())
    assert evaluate_stream(model, ids, window=window) == pytest.approx(total / 74, rel=1e-9)


def test_loss_by_position_shape_and_first_position():
    model, ids = small_hope(), text(400, seed=4)
    curve = loss_by_position(model, ids, length=40, windows=6, seed=0)
    assert curve.shape == (40,) and bool(torch.isfinite(curve).all())
    again = loss_by_position(model, ids, length=40, windows=6, seed=0)
    assert torch.equal(curve, again)
    # HOPE takes lengths far past any training window; the Transformer only up to its context.
    assert loss_by_position(model, ids, length=200, windows=2, seed=1).shape == (200,)
    transformer = small_transformer(context=16)
    assert loss_by_position(transformer, ids, length=16, windows=3, seed=0).shape == (16,)
    with pytest.raises(ValueError, match="length"):
        loss_by_position(transformer, ids, length=17, windows=3, seed=0)


def test_loss_by_position_is_the_mean_of_fresh_windows():
    model, ids = small_hope(), text(300, seed=5)
    curve = loss_by_position(model, ids, length=20, windows=3, seed=7, batch_size=2)
    starts = torch.randint(len(ids) - 20, (3,), generator=torch.Generator().manual_seed(7))
    expected = torch.zeros(20, dtype=torch.float64)
    with torch.no_grad():
        for start in starts.tolist():
            logits, _ = model(ids[None, start:start + 20])
            expected += torch.nn.functional.cross_entropy(
                logits[0], ids[start + 1:start + 21], reduction="none")
    assert torch.allclose(curve.double(), expected / 3, rtol=1e-5)


@pytest.mark.parametrize("call,argument", [
    (lambda m, ids: evaluate_stream(m, ids, window=0), "window"),
    (lambda m, ids: evaluate_stream(m, ids.float(), window=4), "ids"),
    (lambda m, ids: evaluate_stream(m, ids[:1], window=4), "ids"),
    (lambda m, ids: evaluate_stream("model", ids, window=4), "model"),
    (lambda m, ids: loss_by_position(m, ids, length=0, windows=2, seed=0), "length"),
    (lambda m, ids: loss_by_position(m, ids, length=4, windows=0, seed=0), "windows"),
    (lambda m, ids: loss_by_position(m, ids, length=4, windows=2, seed=-1), "seed"),
    (lambda m, ids: loss_by_position(m, ids, length=60, windows=2, seed=0), "ids"),
])
def test_bad_arguments_are_named(call, argument):
    with pytest.raises(ValueError, match=argument):
        call(small_hope(), text(50))


def test_transformer_window_longer_than_its_context_is_refused():
    with pytest.raises(ValueError, match="window"):
        evaluate_stream(small_transformer(context=16), text(50), window=17)


def test_evaluate_command_line(tmp_path, capsys):
    from nlbook.evaluate import main
    from nlbook.train import TrainConfig, train

    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("to be or not to be, that is the question.\n" * 40, encoding="utf-8")
    checkpoint = tmp_path / "hope.pt"
    train(TrainConfig(model="hope", d_model=16, n_layers=1, n_heads=2, context_length=16,
                      batch_size=4, steps=3, warmup_steps=1, eval_interval=3, eval_batches=1,
                      data=str(corpus_file), checkpoint=str(checkpoint), carry_state=True,
                      stream_length=64), progress=False, log=None)
    assert main(["--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "fresh windows of 16" in out and "streaming (one stream" in out
    assert "bits/char" in out and "perplexity" in out
    nats = float(out.split("streaming")[1].split(":")[1].split()[0])
    assert math.isfinite(nats)
    assert main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2
    other = tmp_path / "other.txt"
    other.write_text("zzz", encoding="utf-8")
    assert main(["--checkpoint", str(checkpoint), "--data", str(other)]) == 2
    assert "not in the" in capsys.readouterr().err


def test_plot_loss_by_position_and_evaluations():
    import matplotlib

    from nlbook.viz import plot_evaluations, plot_loss_by_position

    figure = plot_loss_by_position({"HOPE": torch.linspace(3, 1.5, 200),
                                    "Transformer": torch.linspace(3, 1.6, 64)},
                                   references={"7-gram KN": 1.52}, training_window=64)
    assert isinstance(figure, matplotlib.figure.Figure)
    lines = figure.axes[0].get_lines()
    assert figure.axes[0].get_xscale() == "log" and len(lines) >= 5
    hope_colour = [line.get_color() for line in lines if line.get_label() == "HOPE"]
    bars = plot_evaluations({"HOPE": {"fresh windows": 1.8, "one stream": 1.7},
                             "Transformer": {"fresh windows": 1.76}})
    assert len(bars.axes[0].patches) == 3
    assert hope_colour and bars.axes[0].patches[0].get_facecolor()[:3] == \
        matplotlib.colors.to_rgb(hope_colour[0])
    with pytest.raises(ValueError, match="curves"):
        plot_loss_by_position({})
    with pytest.raises(ValueError, match="smoothing"):
        plot_loss_by_position({"HOPE": [1.0, 2.0]}, smoothing=0)
    with pytest.raises(ValueError, match="scores"):
        plot_evaluations({})
