"""The MQAR plots (nlbook.viz.recall): a Figure for typical inputs, ValueError on bad shapes."""

from __future__ import annotations

import matplotlib.figure
import pytest
import torch

from nlbook import viz
from nlbook.tasks import mqar_batch


def sequence(length=32, pairs=4, seed=0):
    inputs, targets = mqar_batch(1, vocab_size=64, sequence_length=length, kv_pairs=pairs,
                                 generator=torch.Generator().manual_seed(seed))
    return inputs[0], targets[0]


def similarity(length, seed=0):
    matrix = 2 * torch.rand(length, length, generator=torch.Generator().manual_seed(seed)) - 1
    return matrix.masked_fill(torch.ones(length, length).triu(1).bool(), float("nan"))


def test_sequence_plot_draws_pairs_queries_and_predictions():
    inputs, targets = sequence()
    figure = viz.plot_mqar_sequence(inputs, targets, kv_pairs=4, predictions=targets.clamp(0))
    assert isinstance(figure, matplotlib.figure.Figure)
    texts = {text.get_text() for text in figure.axes[0].texts}
    for position in torch.nonzero(targets >= 0).flatten():
        assert f"→{int(targets[position])}" in texts
    long_inputs, long_targets = sequence(128, 16)
    assert isinstance(viz.plot_mqar_sequence(long_inputs, long_targets, kv_pairs=16),
                      matplotlib.figure.Figure)


def test_sequence_plot_refuses_bad_shapes():
    inputs, targets = sequence()
    with pytest.raises(ValueError, match="targets"):
        viz.plot_mqar_sequence(inputs, targets[:-1], kv_pairs=4)
    with pytest.raises(ValueError, match="inputs"):
        viz.plot_mqar_sequence(inputs[None], targets, kv_pairs=4)
    with pytest.raises(ValueError, match="kv_pairs"):
        viz.plot_mqar_sequence(inputs, targets, kv_pairs=17)
    with pytest.raises(ValueError, match="predictions"):
        viz.plot_mqar_sequence(inputs, targets, kv_pairs=4, predictions=targets[:3])


def test_curves_plot_draws_seeds_and_their_mean():
    curves = {"hope": [[(50, 0.3), (100, 0.9)], [(50, 0.2), (100, 0.8)]],
              "hope-shared-input": [[(50, 0.1), (100, 0.2)]]}
    figure = viz.plot_mqar_curves(curves, chance=0.25, threshold=0.9)
    assert isinstance(figure, matplotlib.figure.Figure)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert "hope (mean of 2)" in labels and "hope-shared-input" in labels
    colors = {line.get_label(): line.get_color() for line in figure.axes[0].get_lines()}
    assert colors["hope (mean of 2)"] != colors["hope-shared-input"]  # one colour per model


def test_curves_plot_refuses_bad_shapes():
    with pytest.raises(ValueError, match="curves"):
        viz.plot_mqar_curves({"a": [[(1, 0.5, 2.0)]]})
    with pytest.raises(ValueError, match="curves"):
        viz.plot_mqar_curves({"a": []})
    with pytest.raises(ValueError, match="curves"):
        viz.plot_mqar_curves({})
    with pytest.raises(ValueError, match="chance"):
        viz.plot_mqar_curves({"a": [[(1, 0.5)]]}, chance=1.5)


def test_recall_plot_marks_the_nearest_write():
    inputs, targets = sequence()
    query = int(torch.nonzero(targets >= 0)[0])
    values = similarity(32, seed=1)
    values[query, :query + 1] = -0.5
    values[query, 1] = 0.9  # the first pair's value: the answer when the first key is asked
    figure = viz.plot_hope_recall(inputs, targets, torch.rand(32), similarity(32), values,
                                  query, kv_pairs=4, title="t")
    assert isinstance(figure, matplotlib.figure.Figure)
    assert "nearest value written at i = 1" in figure.axes[3].get_title()


def test_recall_plot_refuses_bad_shapes():
    inputs, targets = sequence()
    good = dict(inputs=inputs, targets=targets, lr=torch.rand(32),
                key_similarity=similarity(32), value_similarity=similarity(32), position=10,
                kv_pairs=4)
    for name, bad in (("lr", torch.rand(31)), ("key_similarity", similarity(31)),
                      ("value_similarity", torch.rand(32, 31)), ("position", 32)):
        with pytest.raises(ValueError, match=name):
            viz.plot_hope_recall(**(good | {name: bad}))
