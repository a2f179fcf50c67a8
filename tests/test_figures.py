"""Figures and controls as a reader sees them: one colour per model in every figure, explorer
views that differ, log axes that stop where the data stop, and widget labels that fit."""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pytest
import torch

from nlbook import viz, widgets
from nlbook.cms import CMSRecord, ContinuumMemory, parameter_trajectory, squared_error_loss

REFERENCES = {"uniform": 4.174, "bigram": 2.487, "5-gram KN": 1.6, "7-gram KN": 1.517}


def _same(first, second) -> bool:
    return matplotlib.colors.to_rgba(first)[:3] == matplotlib.colors.to_rgba(second)[:3]


def _same_hue(first, second) -> bool:
    """Equal colours, or shades of one colour (two series of one model: one hue, two shades)."""
    first_hsv = matplotlib.colors.rgb_to_hsv(matplotlib.colors.to_rgb(first))
    second_hsv = matplotlib.colors.rgb_to_hsv(matplotlib.colors.to_rgb(second))
    return abs(first_hsv[0] - second_hsv[0]) < 0.02


def _line_colors(figure) -> dict[str, object]:
    return {line.get_label(): line.get_color() for axis in figure.axes for line in axis.lines
            if not line.get_label().startswith("_")}


def _bar_colors(axis) -> list:
    return [patch.get_facecolor() for patch in axis.patches]


# ----------------------------------------------------------------------------- the palette

def test_the_palette_gives_every_model_of_a_figure_its_own_colour():
    names = ["HOPE", "Transformer", *REFERENCES]
    colors = [matplotlib.colors.to_hex(viz.model_color(name)) for name in names]
    assert len(set(colors)) == len(colors), dict(zip(names, colors, strict=True))
    optimizers = ["momentum", "adam", "preconditioned", "delta", "deep", "muon", "m3"]
    colors = [matplotlib.colors.to_hex(viz.model_color(name)) for name in optimizers]
    assert len(set(colors)) == len(colors)


def test_labels_find_their_model():
    assert viz.model_color("HOPE validation") == viz.model_color("hope") == viz.MODEL_COLORS[
        "HOPE"]
    assert viz.model_color("M3 sum, α=0 (lr 0.0001)") == viz.MODEL_COLORS["M3 sum, α=0"]
    assert viz.model_color("momentum (lr 0.01)") == viz.MODEL_COLORS["momentum"]
    assert viz.model_color("delta rule, β = 0.5") == viz.MODEL_COLORS["delta rule, β = 0.5"]
    assert viz.model_color("hopeful") is None  # a prefix must end at a word boundary
    unknown = viz.colors_for(["HOPE", "something new", "another"])
    assert len({matplotlib.colors.to_hex(color) for color in unknown}) == 3


@pytest.mark.parametrize("model", ["HOPE", "Transformer"])
def test_training_curves_draw_a_model_and_the_references_in_their_palette_colours(model):
    figure = viz.plot_training_curves([1, 2, 3], [4.0, 3.0, 2.5], [0, 3], [4.1, 2.6],
                                      references=REFERENCES, label=model)
    colors = _line_colors(figure)
    assert _same_hue(colors[f"{model} validation"], viz.model_color(model))
    assert _same_hue(colors[f"{model} train (smoothed)"], viz.model_color(model))
    for name, nats in REFERENCES.items():
        assert _same(colors[f"{name}: {nats:.3f}"], viz.model_color(name))


def test_loss_curves_draw_every_model_in_its_palette_colour():
    curves = {"Transformer": ([0, 10, 20], [4.1, 2.6, 2.2]), "HOPE": ([0, 10], [4.1, 2.4])}
    figure = viz.plot_loss_curves(curves, references=REFERENCES, xlabel="seconds")
    colors = _line_colors(figure)
    for model in curves:
        assert _same(colors[model], viz.model_color(model))
    for name, nats in REFERENCES.items():
        assert _same(colors[f"{name}: {nats:.3f}"], viz.model_color(name))
    with pytest.raises(ValueError, match="HOPE"):
        viz.plot_loss_curves({"HOPE": ([0, 1], [1.0])})


def test_speed_bars_use_the_palette_whatever_the_order():
    for names in (["HOPE", "Transformer"], ["Transformer", "HOPE"]):
        figure = viz.plot_speed_and_size(names, [2500.0, 6500.0], [0.99e6, 0.97e6])
        for axis in figure.axes:
            for name, color in zip(names, _bar_colors(axis), strict=True):
                assert _same(color, viz.model_color(name))


def test_an_optimizer_keeps_its_colour_in_every_selection():
    path = np.zeros((5, 2))
    losses = np.linspace(1.0, 0.1, 5)
    from nlbook import optim

    landscape = optim.toy_landscape("quadratic", 30)
    for selection in (["momentum", "adam", "muon"], ["muon", "m3"], ["delta", "momentum"]):
        runs = {f"{name} (lr 0.01)": (path, losses) for name in selection}
        figure = viz.plot_optimizer_trajectories(runs, landscape)
        for axis in figure.axes:
            for line in axis.lines:
                name = line.get_label().split(" (")[0]
                if name in selection:
                    assert _same(line.get_color(), viz.model_color(name)), (selection, name)
    results = {"task": np.repeat([0, 1], 10),
               "momentum (lr 0.1)": {"loss": losses.repeat(4), "final_task_losses": [1, 2]},
               "M3 sum, α=1 (lr 0.001)": {"loss": losses.repeat(4), "final_task_losses": [1, 2]}}
    figure = viz.plot_continual_stream(results, smooth=2)
    colors = _line_colors(figure)
    assert _same(colors["momentum (lr 0.1)"], viz.model_color("momentum"))
    assert _same(colors["M3 sum, α=1 (lr 0.001)"], viz.model_color("M3 sum, α=1"))


def test_chapter_3_setups_have_one_colour_in_both_figures():
    results = {"one level": [1e-32, 2.0, 2.0, 7e-5], "naive CMS": [5e-32, 1.98, 1.98, 0.009],
               "slow + reset fast": [0.02, 2.0, 0.06, 0.05]}
    bars = viz.plot_forgetting(results, ["a", "b", "c", "d"]).axes[0]
    for index, name in enumerate(results):
        for color in _bar_colors(bars)[4 * index: 4 * index + 4]:
            assert _same(color, viz.model_color(name))
    curves = {name: np.abs(np.sin(np.arange(50.0))) + 1e-3 for name in reversed(list(results))}
    colors = _line_colors(viz.plot_stream_losses(curves))
    for name in results:
        assert _same(colors[name], viz.model_color(name))


def test_recall_rules_use_the_palette():
    table = {"Hebbian (linear attention)": [1.0, 0.9], "delta rule, β = 1": [1.0, 0.5],
             "delta rule, β = 0.5": [1.0, 0.6], "least squares (hindsight)": [1.0, 1.0]}
    colors = _line_colors(viz.plot_recall_comparison([16, 32], table, xlabel="N"))
    for label in table:
        assert _same(colors[label], viz.model_color(label))
    assert len({matplotlib.colors.to_hex(color) for color in colors.values()}) == len(table)


# ----------------------------------------------------------------------------- log axes

def test_log_axes_stop_where_the_data_stop():
    curves = {"one level": np.r_[np.full(20, 1e-32), np.linspace(2.0, 0.1, 20)],
              "slow + reset fast": np.linspace(1.0, 0.01, 40)}
    axis = viz.plot_stream_losses(curves).axes[0]
    bottom, _ = axis.get_ylim()
    assert bottom >= 2.0 * 10.0 ** -(viz.continuum.LOG_DECADES + 0.5)
    for line in axis.lines:
        data = np.asarray(line.get_ydata(), dtype=float)
        if data.size > 2:
            assert data.min() >= bottom * 0.999
    assert "drawn at" in axis.get_legend().get_title().get_text()
    bars = viz.plot_forgetting({"one level": [4e-32, 2.01, 2.01, 7e-5]}, list("abcd")).axes[0]
    assert bars.get_ylim()[0] >= 2.01 * 10.0 ** -(viz.continuum.LOG_DECADES + 0.5)
    with pytest.raises(ValueError, match="floor"):
        viz.plot_stream_losses(curves, floor=0.0)


# ----------------------------------------------------------------------------- chapter 3 explorer

def _explorer_data():
    generator = torch.Generator().manual_seed(0)
    length = 96
    task = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    x = torch.randn(1, length, 4, generator=generator, dtype=torch.float64)
    cms = ContinuumMemory(4, [1, 8], [0.03, 0.01], linear=True, variant="independent",
                          residual=False, pre_norm=False, init_scale=0.0, dtype=torch.float64)
    record = CMSRecord(2, keep_deltas=True)
    with torch.no_grad():
        stream = cms(x, x @ task.T, loss_fn=squared_error_loss, record=record)
    trajectories = [parameter_trajectory(record, block, "weight", cms.blocks[block]["weight"])
                    for block in range(2)]
    steps = [record.update_steps(block) for block in range(2)]
    return trajectories, steps, stream.losses[0]


def _images(figure) -> list[np.ndarray]:
    return [np.asarray(axis.images[0].get_array()) for axis in figure.axes if axis.images]


def test_the_explorer_views_show_different_things_when_the_memory_starts_at_zero():
    trajectories, steps, losses = _explorer_data()
    shown = {view: _images(viz.plot_cms_explorer(trajectories, steps, losses, time=50,
                                                 show=view))
             for view in viz.CMS_EXPLORER_VIEWS}
    for weights, update in zip(shown["weights"], shown["update"], strict=True):
        assert not np.allclose(weights, update)  # the two options of the notebook's dropdown
    # The last update is the difference of the last two weights, and zero before the first.
    level, index = 1, int(np.searchsorted(steps[1], 50, side="right"))
    expected = (trajectories[level][index] - trajectories[level][index - 1]).numpy()
    assert np.allclose(shown["update"][level], expected)
    before = _images(viz.plot_cms_explorer(trajectories, steps, losses, time=3, show="update"))
    assert np.allclose(before[1], 0.0)
    with pytest.raises(ValueError, match="show"):
        viz.plot_cms_explorer(trajectories, steps, losses, time=5, show="bogus")


# ----------------------------------------------------------------------------- widgets

def test_widget_labels_are_never_cut():
    for control in (widgets.float_slider(1.0, 0.05, 1.0, 0.05, "decay / β / lr"),
                    widgets.int_slider(3, 0, 9, description="token"),
                    widgets.dropdown(["a", "b"], "a", "a long description"),
                    widgets.multi_select(["x", "y"], ("x",), "optimizers")):
        assert control.style.description_width == "initial"


def test_a_multi_select_shows_every_option():
    from nlbook.optim import OPTIMIZER_NAMES

    control = widgets.multi_select(OPTIMIZER_NAMES, ("momentum", "adam", "muon"), "optimizers")
    assert control.rows >= len(OPTIMIZER_NAMES) and control.value == ("momentum", "adam", "muon")


# ----------------------------------------------------------------------------- every series

def _plot_calls():
    """Every ``viz.plot_*`` with the sample arguments of its fuzz-registry entry."""
    import test_fuzz

    calls = []
    for name in viz.__all__:
        if not name.startswith("plot_"):
            continue
        entry = test_fuzz.REGISTRY.get(test_fuzz.key_of(getattr(viz, name)))
        if entry is not None and not entry.exempt:
            calls.append((name, entry.make))
    return calls


def _check_series_and_legends(figure, what: str) -> None:
    from nlbook.viz._common import _covered, _series, style_key

    for axis in figure.axes:
        lines = _series(axis)
        colours = [matplotlib.colors.to_hex(line.get_color()) for line in lines]
        styles = [style_key(line) for line in lines
                  if line.get_linestyle() not in ("None", "none", "", " ")]
        labels = [line.get_label() for line in lines]
        assert len(set(colours)) == len(colours), f"{what}: two series share a colour {labels}"
        assert len(set(styles)) == len(styles), f"{what}: two series share a line style {labels}"
        legend = axis.get_legend()
        if legend is not None and getattr(legend, "_bbox_to_anchor", None) is None:
            assert not _covered(axis, legend), f"{what}: the legend covers data"


def test_every_plot_gives_each_series_its_colour_and_style_and_keeps_legends_off_data():
    calls = _plot_calls()
    assert len(calls) > 20
    for name, make in calls:
        _check_series_and_legends(getattr(viz, name)(**make()), name)


def test_two_curves_of_one_model_differ_in_colour_and_style():
    """Chapter 6's case: HOPE and HOPE with its CMS frozen (one palette colour, two series)."""
    steps = np.arange(20)
    figure = viz.plot_loss_curves(
        {"HOPE": (steps, 3 - 0.05 * steps), "HOPE, CMS frozen": (steps, 3.1 - 0.05 * steps),
         "Hope-Attention": (steps, 3.2 - 0.04 * steps)}, references=REFERENCES,
        xlabel="step", title="t")
    _check_series_and_legends(figure, "plot_loss_curves")
    colours = _line_colors(figure)
    assert _same(colours["HOPE"], viz.model_color("HOPE"))  # the first keeps the palette's
