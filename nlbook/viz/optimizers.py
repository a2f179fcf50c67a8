"""Plots for chapter 2, optimizers as associative memories: arrays in, a Figure out."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import matplotlib.figure
import numpy as np

from nlbook._checks import ArgumentTypeError, check_int, check_scalar_in_range, describe
from nlbook.viz._common import (
    check_array,
    check_mapping,
    check_text,
    new_figure,
    to_numpy,
)
from nlbook.viz.palette import colors_for

__all__ = [
    "plot_continual_stream",
    "plot_momentum_memory_length",
    "plot_newton_schulz",
    "plot_optimizer_trajectories",
]

#: Line styles cycled with the colours, so that series differ in print and for colour-blind
#: readers too.
_LINE_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def plot_optimizer_trajectories(runs: Mapping[str, tuple], landscape: Mapping[str, object],
                                title: str | None = None) -> matplotlib.figure.Figure:
    """Trajectories on a 2-D toy problem (left) and their loss curves (right, log scale).

    Args:
        runs: label -> (path (T + 1, 2), losses (T + 1,)); NaN rows (a diverged run) are
            skipped.
        landscape: ``{"x": (nx,), "y": (ny,), "loss": (ny, nx), "start": (2,), "minimum": (2,),
            "name": str}`` (``nlbook.optim.toy_landscape``).
        title: figure title; defaults to the problem's name.
    """
    check_mapping("runs", runs, non_empty=False)
    for label, run in runs.items():
        if not isinstance(run, (tuple, list)) or len(run) != 2:
            raise ValueError(f"runs[{label!r}] must be a pair (path (T + 1, 2), losses "
                             f"(T + 1,)), got {describe(run)}")
        path = check_array(f"runs[{label!r}][0]", run[0], ndim=2, layout="(T + 1, 2)")
        check_array(f"runs[{label!r}][1]", run[1], ndim=1, layout="(T + 1,) of the path",
                    length=len(path))
        if path.shape[1] != 2:
            raise ValueError(f"runs[{label!r}][0] must have shape (T + 1, 2), got {path.shape}")
    check_mapping("landscape", landscape)
    missing = sorted({"x", "y", "loss", "start", "minimum"} - set(landscape))
    if missing:
        raise ValueError(f"landscape lacks {', '.join(missing)} (see nlbook.optim.toy_landscape)")
    xs = check_array("landscape['x']", landscape["x"], ndim=1, non_empty=True)
    ys = check_array("landscape['y']", landscape["y"], ndim=1, non_empty=True)
    values = check_array("landscape['loss']", landscape["loss"], ndim=2, layout="(ny, nx)")
    if values.shape != (len(ys), len(xs)):
        raise ValueError(f"landscape['loss'] must have shape (ny, nx) = {(len(ys), len(xs))}, "
                         f"got {values.shape}")
    check_text("title", title, allow_none=True)
    figure, (trajectory_axes, loss_axes) = new_figure(2, width=4.6, height=3.8)
    levels = np.quantile(np.log10(values + 1e-12), np.linspace(0.02, 0.98, 18))
    trajectory_axes.contour(xs, ys, np.log10(values + 1e-12), levels=levels, colors="0.75",
                            linewidths=0.7)
    start, minimum = to_numpy(landscape["start"]), to_numpy(landscape["minimum"])
    trajectory_axes.plot(*start, "ko", markersize=5, label="start")
    trajectory_axes.plot(*minimum, "k*", markersize=10, label="minimum")
    for (label, (path, losses)), color in zip(runs.items(), colors_for(runs), strict=True):
        path, losses = to_numpy(path), to_numpy(losses)
        finite = np.isfinite(losses)
        trajectory_axes.plot(path[finite, 0], path[finite, 1], lw=1.2, label=label, color=color)
        steps = np.arange(len(losses))[finite]
        loss_axes.semilogy(steps, np.maximum(losses[finite], 1e-16), color=color,
                           lw=1.2, label=label if finite.all() else f"{label} (diverged)")
    trajectory_axes.set_xlim(xs[0], xs[-1])
    trajectory_axes.set_ylim(ys[0], ys[-1])
    trajectory_axes.set_xlabel("x")
    trajectory_axes.set_ylabel("y")
    trajectory_axes.set_title(title or f"{landscape.get('name', 'toy problem')}: trajectories")
    trajectory_axes.legend(fontsize=7, loc="best")
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("loss")
    loss_axes.set_title("loss")
    loss_axes.legend(fontsize=7)
    return figure


def plot_momentum_memory_length(momenta: float | Sequence[float] = 0.9,
                                max_count: int = 60) -> matplotlib.figure.Figure:
    """Cumulative weight 1 − βⁿ of the last n gradients in an EMA momentum, for each β.

    Marks the first n reaching 50% and 99% of the mass (exact counts, not the paper's).
    """
    if isinstance(momenta, (str, bytes)) or momenta is None or not (
            isinstance(momenta, (int, float)) or hasattr(momenta, "__iter__")):
        raise ArgumentTypeError(f"momenta must be a number or a list of numbers in [0, 1), got "
                                f"{describe(momenta)}")
    momenta = [momenta] if isinstance(momenta, (int, float)) else list(momenta)
    if not momenta:
        raise ValueError("momenta must hold at least one momentum")
    for index, beta in enumerate(momenta):
        check_scalar_in_range(f"momenta[{index}]", beta, 0.0, 1.0, high_inclusive=False)
    check_int("max_count", max_count, low=1, high=10 ** 6)
    counts = np.arange(max_count + 1)
    figure, (axes,) = new_figure(1, width=5.5, height=3.6)
    for beta in momenta:
        weights = 1.0 - beta ** counts.astype(float)
        (line,) = axes.plot(counts, weights, lw=1.5, label=f"β = {beta}")
        for fraction, marker in ((0.5, "o"), (0.99, "s")):
            reached = np.nonzero(weights >= fraction)[0]
            if reached.size:
                n = int(reached[0])
                axes.plot(n, weights[n], marker, color=line.get_color())
                axes.annotate(f"{n}", (n, weights[n]), textcoords="offset points",
                              xytext=(4, -10), fontsize=8, color=line.get_color())
    for fraction in (0.5, 0.99):
        axes.axhline(fraction, color="0.6", lw=0.7, ls="--")
    axes.set_xlabel("n, the most recent gradients")
    axes.set_ylabel("share of the momentum's weight")
    axes.set_title("How short is momentum's memory? (o 50%, □ 99%)")
    axes.legend(fontsize=8)
    return figure


def plot_continual_stream(results: Mapping[str, object],
                          smooth: int = 10) -> matplotlib.figure.Figure:
    """Loss on the stream (left, moving average, task switches shaded) and the final model's
    loss on every task (right).

    Args:
        results: ``nlbook.optim.continual_stream`` output: ``"task"`` (steps,) and, per label,
            ``{"loss": (steps,), "final_task_losses": (tasks,)}``.
        smooth: moving-average window in steps (1 = raw).
    """
    check_mapping("results", results)
    if "task" not in results:
        raise ValueError("results must hold 'task' (see nlbook.optim.continual_stream)")
    tasks = check_array("results['task']", results["task"], ndim=1, layout="(steps,)")
    labels = [label for label in results if label != "task"]
    for label in labels:
        run = results[label]
        if not isinstance(run, dict) or not {"loss", "final_task_losses"} <= set(run):
            raise ValueError(f"results[{label!r}] must be a dict with 'loss' and "
                             f"'final_task_losses' (see nlbook.optim.continual_stream)")
        check_array(f"results[{label!r}]['loss']", run["loss"], ndim=1)
        check_array(f"results[{label!r}]['final_task_losses']", run["final_task_losses"],
                    ndim=1)
    check_int("smooth", smooth, low=1)
    figure, (stream_axes, final_axes) = new_figure(2, width=4.8, height=3.6)
    boundaries = np.nonzero(np.diff(tasks))[0] + 1
    edges = np.concatenate([[0], boundaries, [len(tasks)]])
    for index, (begin, end) in enumerate(itertools.pairwise(edges)):
        if index % 2:
            stream_axes.axvspan(begin, end, color="0.93", lw=0)
    window = max(1, min(int(smooth), len(tasks)))
    kernel = np.ones(window) / window
    colors = dict(zip(labels, colors_for(labels), strict=True))
    for label in labels:
        losses = to_numpy(results[label]["loss"])
        smoothed = np.convolve(losses, kernel, mode="valid") if len(losses) >= window else losses
        stream_axes.semilogy(np.arange(len(smoothed)) + window - 1, smoothed, lw=1.2,
                             label=label, color=colors[label])
    stream_axes.set_xlabel("step (shading: task changes)")
    stream_axes.set_ylabel(f"loss on the current task ({window}-step mean)")
    stream_axes.set_title("continual stream")
    stream_axes.legend(fontsize=7)
    task_count = len(to_numpy(results[labels[0]]["final_task_losses"])) if labels else 0
    width = 0.8 / max(1, len(labels))
    for offset, label in enumerate(labels):
        finals = to_numpy(results[label]["final_task_losses"])
        final_axes.bar(np.arange(task_count) + offset * width, finals, width=width, label=label,
                       color=colors[label])
    final_axes.set_xticks(np.arange(task_count) + 0.4 - width / 2,
                          [f"task {index}" for index in range(task_count)])
    final_axes.set_ylabel("test loss of the final model")
    final_axes.set_title("after the stream: every task")
    final_axes.legend(fontsize=7)
    return figure


def plot_newton_schulz(initial, after: Mapping[str, object], *,
                       title: str | None = None) -> matplotlib.figure.Figure:
    """What Newton–Schulz does to singular values (arXiv eq. 43–44; Muon's σ = NS_k).

    Args:
        initial: (n,) singular values of X₀ = G/‖G‖_F, all in (0, 1] (the x axis, log scale).
        after: per label (e.g. "1 step", "5 steps") the (n,) singular values each initial one
            becomes after that many iterations (the same order as ``initial``).
        title: the figure's title (default: a description).

    The diagonal (nothing changes) and the target 1 are drawn dashed; each series has its own
    colour, line style and marker. The legend sits outside the axes, clear of the data.
    """
    initial = check_array("initial", initial, ndim=1, layout="(n,) singular values",
                          non_empty=True)
    if not np.all(np.isfinite(initial)) or np.any(initial <= 0):
        raise ValueError(f"initial must hold finite singular values > 0, got {initial.tolist()}")
    after = check_mapping("after", after)
    series = {}
    for label, values in after.items():
        series[label] = check_array(f"after[{label!r}]", values, ndim=1,
                                    layout="(n,) like initial", length=initial.size)
    title = check_text("title", title, allow_none=True)
    figure, (axes,) = new_figure(1, width=6.6, height=3.8)
    axes.plot(initial, initial, color="0.55", ls="--", lw=1.0, label="no change")
    axes.axhline(1.0, color="0.3", ls=":", lw=1.0, label="target 1 (orthogonal)")
    for index, ((label, values), colour) in enumerate(zip(series.items(),
                                                          colors_for(series), strict=True)):
        axes.plot(initial, values, color=colour, ls=_LINE_STYLES[index % len(_LINE_STYLES)],
                  marker=_MARKERS[index % len(_MARKERS)], markevery=max(1, initial.size // 8),
                  markersize=4, lw=1.6, label=label)
    axes.set_xscale("log")
    axes.set_xlabel("singular value of X₀ = G / ‖G‖_F")
    axes.set_ylabel("singular value after the iterations")
    axes.set_title(title if title is not None else
                   "Newton–Schulz pushes every singular value towards 1")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return figure
