"""Plots for chapter 2, optimizers as associative memories: arrays in, a Figure out."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import matplotlib.figure
import numpy as np

from nlbook.viz._common import new_figure, to_numpy
from nlbook.viz.palette import colors_for

__all__ = [
    "plot_continual_stream",
    "plot_momentum_memory_length",
    "plot_optimizer_trajectories",
]


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
    figure, (trajectory_axes, loss_axes) = new_figure(2, width=4.6, height=3.8)
    xs, ys = to_numpy(landscape["x"]), to_numpy(landscape["y"])
    values = to_numpy(landscape["loss"])
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
    momenta = [momenta] if isinstance(momenta, (int, float)) else list(momenta)
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
    tasks = to_numpy(results["task"])
    labels = [label for label in results if label != "task"]
    figure, (stream_axes, final_axes) = new_figure(2, width=4.8, height=3.6)
    boundaries = np.nonzero(np.diff(tasks))[0] + 1
    edges = np.concatenate([[0], boundaries, [len(tasks)]])
    for index, (begin, end) in enumerate(itertools.pairwise(edges)):
        if index % 2:
            stream_axes.axvspan(begin, end, color="0.93", lw=0)
    window = max(1, int(smooth))
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
