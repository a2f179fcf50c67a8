"""Plots for chapter 3 (the Continuum Memory System): arrays in, a matplotlib Figure out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.figure
import numpy as np

from nlbook._checks import check_bool, check_instance, check_int, check_scalar_in_range
from nlbook.viz._common import (
    MAX_AXES,
    check_array,
    check_index,
    check_mapping,
    check_sequence,
    check_text,
    check_texts,
    new_figure,
    to_numpy,
)
from nlbook.viz.diagrams import level_colour
from nlbook.viz.palette import colors_for

__all__ = ["CMS_EXPLORER_VIEWS", "plot_cms_explorer", "plot_forgetting", "plot_stream_losses",
           "plot_update_ticks"]

#: What the explorer's top row can show, value -> title.
CMS_EXPLORER_VIEWS = {
    "weights": "weights in force",
    "update": "the last update applied",
    "change": "change from the start",
}

#: Log axes span at most this many decades below their largest value: a loss that reaches
#: floating-point zero (1e-32) would otherwise stretch the axis over thirty decades.
LOG_DECADES = 6


def _order_and_labels(count: int, labels: Sequence[str] | None,
                      levels: Sequence[int] | None) -> tuple[list[int], list[str]]:
    """Drawing order (level 1 first, then by block; chain order when no levels) and labels.

    The course draws levels in one direction everywhere: level 1 (the fastest) first, i.e. at
    the bottom of a stack of rows and on the left of a row of panels."""
    if labels is not None:
        check_texts("labels", labels)
        if len(labels) != count:
            raise ValueError(f"labels must have one entry per block ({count}), got "
                             f"{len(labels)}")
    if levels is not None:
        check_instance("levels", levels, (list, tuple, np.ndarray),
                       expected="a list of ints (one level per block)")
        if len(levels) != count:
            raise ValueError(f"levels must have one entry per block ({count}), got {len(levels)}")
        for index, level in enumerate(levels):
            if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
                raise ValueError(f"levels[{index}] must be an int >= 1, got {level!r}")
    order = (sorted(range(count), key=lambda index: (levels[index], index))
             if levels is not None else list(range(count)))
    if labels is None:
        labels = ([f"level {level} (block {index})" for index, level in enumerate(levels)]
                  if levels is not None else [f"block {index}" for index in range(count)])
    return order, list(labels)


def _check_steps(name: str, steps_per_block) -> list[np.ndarray]:
    """Per block, the 1-D token counts of its updates."""
    check_sequence(name, steps_per_block)
    if len(steps_per_block) > MAX_AXES // 3:
        raise ValueError(f"{name} has {len(steps_per_block)} blocks, too many to draw")
    return [check_array(f"{name}[{block}]", steps, ndim=1, layout="(n_updates,)")
            for block, steps in enumerate(steps_per_block)]


def _colours(count: int, levels: Sequence[int] | None) -> list[str]:
    """Each block in its level's colour (the diagrams' palette), or C{j} without levels."""
    if levels is None:
        return [f"C{index}" for index in range(count)]
    return [level_colour(int(level)) for level in levels]


def _draw_ticks(axis, steps_per_block, length: int, labels: list[str], order: list[int],
                sizes=None, time: int | None = None, colours: list[str] | None = None) -> None:
    """One row per block, in ``order`` from the bottom up: a stem at every update step (height ∝
    update size when given), in the block's colour."""
    colours = colours or [f"C{index}" for index in range(len(labels))]
    for row, block in enumerate(order):
        steps = np.asarray(to_numpy(steps_per_block[block]), dtype=float).ravel()
        if sizes is not None and len(steps):
            heights = np.asarray(to_numpy(sizes[block]), dtype=float).ravel()
            heights = 0.8 * heights / max(heights.max(), 1e-12)
        else:
            heights = np.full(len(steps), 0.8)
        shown = steps if time is None else steps[steps <= time]
        axis.vlines(shown, row, row + heights[: len(shown)], color=colours[block],
                    linewidth=1.2)
        if time is not None:
            later = steps[steps > time]
            axis.vlines(later, row, row + heights[len(shown):], color="0.85", linewidth=1.0)
    axis.set_yticks(np.arange(len(order)) + 0.4, [labels[block] for block in order])
    axis.set_ylim(-0.1, len(order))
    axis.set_xlim(0, length)
    axis.set_xlabel("tokens seen (an update at i is used from position i on)")
    axis.set_title("update ticks per block (level 1, the fastest, at the bottom)")


def plot_update_ticks(steps_per_block: Sequence, length: int, *, sizes: Sequence | None = None,
                      labels: Sequence[str] | None = None,
                      levels: Sequence[int] | None = None) -> matplotlib.figure.Figure:
    """When every CMS block updated over a stream of ``length`` tokens.

    Args:
        steps_per_block: per block (chain order), the token counts at which it updated
            (``CMSRecord.update_steps``).
        length: stream length T.
        sizes: per block, the size of each update (stem heights are scaled per block).
        labels: per block, e.g. ``ContinuumMemory.block_labels()``; default "level ℓ (block j)"
            when ``levels`` are given, else "block j".
        levels: per block its level (``ContinuumMemory.level_of_block``): rows are drawn by
            level, level 1 at the bottom, each in its level's colour. Default: chain order.
    """
    steps = _check_steps("steps_per_block", steps_per_block)
    check_int("length", length, low=1)
    if sizes is not None:
        check_sequence("sizes", sizes, length=len(steps))
        for block, (size, block_steps) in enumerate(zip(sizes, steps, strict=True)):
            check_array(f"sizes[{block}]", size, ndim=1, layout="(n_updates,) of steps_per_block",
                        length=len(block_steps))
    order, names = _order_and_labels(len(steps_per_block), labels, levels)
    figure, axes = new_figure(width=8.0, height=0.6 + 0.5 * len(names))
    _draw_ticks(axes[0], steps_per_block, length, names, order, sizes,
                colours=_colours(len(names), levels))
    return figure


def plot_cms_explorer(trajectories: Sequence, steps_per_block: Sequence, losses,
                      time: int, *, show: str = "change", labels: Sequence[str] | None = None,
                      levels: Sequence[int] | None = None) -> matplotlib.figure.Figure:
    """The per-timescale memory explorer at token position ``time``.

    Top: for every block, level 1 on the left, on a colour scale fixed over the whole stream,
    one of ``show="weights"``: the weight matrix in force at ``time``; ``show="update"``: the
    last update the block applied before ``time`` (what it is writing now; zeros before its
    first update); ``show="change"``: the change from the start (equal to "weights" when the
    memory starts at 0). Middle: the update ticks of every block (grey = still to come), level 1
    at the bottom. Bottom: the per-token loss on the stream with a marker at ``time``.

    Args:
        trajectories: per block (chain order), (n_updates + 1, rows, cols): the weights after
            each update (row 0 = start), e.g. from ``nlbook.cms.parameter_trajectory``.
        steps_per_block: per block, the n_updates token counts of those updates.
        losses: (T,) per-token loss on the stream.
        time: 0-based token position shown.
        show: "weights", "update" or "change".
        labels, levels: as in :func:`plot_update_ticks`.
    """
    if show not in CMS_EXPLORER_VIEWS:
        raise ValueError(f"show must be one of {sorted(CMS_EXPLORER_VIEWS)}, got {show!r}")
    _check_steps("steps_per_block", steps_per_block)
    check_sequence("trajectories", trajectories)
    if len(trajectories) != len(steps_per_block):
        raise ValueError(f"trajectories and steps_per_block must have one entry per block, got "
                         f"{len(trajectories)} and {len(steps_per_block)}")
    for block, trajectory in enumerate(trajectories):
        values = check_array(f"trajectories[{block}]", trajectory,
                             layout="(n_updates + 1, rows, cols)", non_empty=True)
        if values.ndim not in (2, 3):
            raise ValueError(f"trajectories[{block}] must have 2 or 3 dimensions (n_updates + "
                             f"1, rows, cols), got shape {values.shape}")
    losses = check_array("losses", losses, ndim=1, layout="(T,)", non_empty=True)
    length = len(losses)
    check_index("time", time, length)
    order, names = _order_and_labels(len(trajectories), labels, levels)
    count = len(names)
    figure, axes = new_figure(ncols=count, nrows=3, width=3.0, height=2.2)
    grid = axes[0].get_gridspec()
    for axis in axes[count:]:
        axis.remove()
    tick_axis = figure.add_subplot(grid[1, :])
    loss_axis = figure.add_subplot(grid[2, :])
    for column, block in enumerate(order):
        trajectory = np.asarray(to_numpy(trajectories[block]), dtype=float)
        steps = np.asarray(to_numpy(steps_per_block[block]), dtype=float).ravel()
        if trajectory.ndim == 2:
            trajectory = trajectory[:, None, :]
        if len(trajectory) != len(steps) + 1:
            raise ValueError(f"trajectories[{block}] must have len(steps) + 1 = {len(steps) + 1} "
                             f"rows, got {len(trajectory)}")
        if show == "change":
            values = trajectory - trajectory[0]
        elif show == "update":  # row j: the change made by update j (row 0: none yet)
            values = np.concatenate([np.zeros_like(trajectory[:1]), np.diff(trajectory, axis=0)])
        else:
            values = trajectory
        limit = max(float(np.abs(values).max()), 1e-12)
        index = int(np.searchsorted(steps, time, side="right"))
        image = axes[column].imshow(values[index], cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[column].set_title(f"{names[block]}\n{index} updates", fontsize=8)  # two lines:
        # one line per panel ran into its neighbours
        axes[column].set_xticks([])
        axes[column].set_yticks([])
        figure.colorbar(image, ax=axes[column], shrink=0.8)
    _draw_ticks(tick_axis, steps_per_block, length, names, order, time=time,
                colours=_colours(count, levels))
    tick_axis.axvline(time, color="k", linewidth=0.8)
    loss_axis.plot(np.arange(length), losses, color="0.5", linewidth=0.8)
    if length:
        loss_axis.plot([time], [losses[time]], "o", color="C3")
    loss_axis.axvline(time, color="k", linewidth=0.8)
    loss_axis.set_xlim(0, length)
    loss_axis.set_xlabel("token position")
    loss_axis.set_ylabel("loss on the stream")
    figure.suptitle(f"CMS at position {time}: {CMS_EXPLORER_VIEWS[show]}")
    return figure


def _log_floor(arrays, floor: float | None) -> float:
    """The lowest value a log axis shows: ``floor``, or LOG_DECADES decades below the largest
    finite value of ``arrays``."""
    if floor is not None:
        if not floor > 0:
            raise ValueError(f"floor must be a positive number, got {floor!r}")
        return float(floor)
    finite = [array[np.isfinite(array)] for array in arrays]
    peak = max((float(np.abs(array).max()) for array in finite if array.size), default=1.0)
    return max(peak, 1e-300) * 10.0 ** -LOG_DECADES


def _mark_floor(axis, floor: float, clipped: bool) -> str | None:
    """Stop the axis at ``floor``; the legend title to use when values were clipped."""
    axis.set_ylim(bottom=floor)
    return f"values below {floor:.0e} drawn at {floor:.0e}" if clipped else None


def plot_stream_losses(curves: Mapping[str, object], *, boundaries: Sequence[int] = (),
                       labels: Sequence[str] = (), smooth: int = 1,
                       ylabel: str = "loss on the stream",
                       floor: float | None = None) -> matplotlib.figure.Figure:
    """Per-token loss of several models on one stream (a moving average of ``smooth`` tokens),
    with vertical lines at the phase ``boundaries`` and the phase ``labels`` on top.

    The log axis stops at ``floor`` (default: LOG_DECADES decades below the largest value);
    smaller values, such as a loss at floating-point zero, are drawn at the floor.
    """
    check_mapping("curves", curves)
    for name, curve in curves.items():
        check_array(f"curves[{name!r}]", curve, ndim=1, layout="(T,)")
    check_sequence("boundaries", boundaries)
    for index, boundary in enumerate(boundaries):
        check_int(f"boundaries[{index}]", boundary, low=0)
    check_texts("labels", labels)
    check_int("smooth", smooth, low=1)
    check_text("ylabel", ylabel)
    check_scalar_in_range("floor", floor, 0.0, np.inf, low_inclusive=False, allow_none=True)
    figure, axes = new_figure(width=8.0, height=3.2)
    axis = axes[0]
    smoothed = {}
    for name, curve in curves.items():
        values = np.asarray(to_numpy(curve), dtype=float).ravel()
        if smooth > 1 and len(values) >= smooth:
            values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
        smoothed[name] = values
    lowest = _log_floor(list(smoothed.values()), floor)
    clipped = False
    for (name, values), color in zip(smoothed.items(), colors_for(smoothed), strict=True):
        clipped = clipped or bool((values < lowest).any())
        axis.plot(np.arange(len(values)) + smooth - 1, np.maximum(values, lowest), color=color,
                  label=name, linewidth=1.0)
    edges = [0, *boundaries]
    for boundary in boundaries:
        axis.axvline(boundary, color="k", linewidth=0.6, linestyle="--")
    for index, label in enumerate(labels[: len(edges)]):
        axis.text(edges[index], 1.01, f" {label}", transform=axis.get_xaxis_transform(),
                  fontsize=9)
    axis.set_yscale("log")
    note = _mark_floor(axis, lowest, clipped)
    axis.set_xlabel("token position")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8, title=note, title_fontsize=7)
    return figure


def plot_forgetting(results: Mapping[str, Sequence[float]], phase_labels: Sequence[str], *,
                    ylabel: str = "test MSE on task A", log: bool = True,
                    floor: float | None = None) -> matplotlib.figure.Figure:
    """Grouped bars: one group per measurement point (``phase_labels``), one bar per setup.

    With ``log``, the axis stops at ``floor`` (default: LOG_DECADES decades below the largest
    value) and smaller values are drawn at the floor.
    """
    check_mapping("results", results)
    phase_labels = check_texts("phase_labels", phase_labels)
    names = list(results)
    for name in names:
        values = check_array(f"results[{name!r}]", results[name], ndim=1,
                             layout="(phases,) of phase_labels")
        if len(values) != len(phase_labels):
            raise ValueError(f"results[{name!r}] must have {len(phase_labels)} values, "
                             f"got {len(values)}")
    check_text("ylabel", ylabel)
    check_bool("log", log)
    check_scalar_in_range("floor", floor, 0.0, np.inf, low_inclusive=False, allow_none=True)
    figure, axes = new_figure(width=7.0, height=3.4)
    axis = axes[0]
    width = 0.8 / max(len(names), 1)
    positions = np.arange(len(phase_labels))
    table = {name: np.asarray(results[name], dtype=float) for name in names}
    lowest = _log_floor(list(table.values()), floor) if log else None
    clipped = False
    for index, ((name, values), color) in enumerate(zip(table.items(), colors_for(names),
                                                         strict=True)):
        bottom = 0.0
        if lowest is not None:  # bars rise from the floor; a value below it is a bare floor
            clipped = clipped or bool((values < lowest).any())
            values, bottom = np.maximum(values, lowest) - lowest, lowest
        axis.bar(positions + (index - (len(names) - 1) / 2) * width, values, width,
                 label=name, color=color, bottom=bottom)
    axis.set_xticks(positions, phase_labels)
    note = None
    if lowest is not None:
        axis.set_yscale("log")
        note = _mark_floor(axis, lowest, clipped)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8, title=note, title_fontsize=7)
    return figure
