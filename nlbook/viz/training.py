"""Training curves of chapter 6: loss against steps, with the n-gram lines that learn nothing."""

from __future__ import annotations

import math

import matplotlib
import numpy as np

from nlbook._checks import check_int, check_scalar_in_range
from nlbook.viz._common import (
    check_array,
    check_mapping,
    check_references,
    check_text,
    check_texts,
    new_figure,
    to_numpy,
)
from nlbook.viz.palette import colors_for

__all__ = ["plot_ablation", "plot_evaluations", "plot_loss_by_position", "plot_loss_curves",
           "plot_training_curves"]

_LN2 = math.log(2.0)


def _finish_loss_axes(axis, xlabel: str, title: str) -> None:
    """Labels, a bits/char axis on the right, grid, legend and title of a loss plot."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel("cross-entropy (nats/char)")
    secondary = axis.secondary_yaxis("right", functions=(lambda nats: nats / _LN2,
                                                         lambda bits: bits * _LN2))
    secondary.set_ylabel("bits/char")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    axis.set_title(title)


def plot_training_curves(train_steps, train_loss, val_steps=None, val_loss=None, *,
                         references: dict[str, float] | None = None, label: str = "model",
                         smoothing: float = 0.9, title: str | None = None,
                         width: float = 6.4, height: float = 4.0) -> matplotlib.figure.Figure:
    """Training and validation loss (nats/char, bits/char on the right axis) against steps.

    Args:
        train_steps, train_loss: (N,) steps and per-step training losses (raw, drawn faintly,
            plus an exponential moving average with factor ``smoothing``).
        val_steps, val_loss: (M,) evaluation steps and validation losses.
        references: name -> nats/char of models that learn nothing (uniform, bigram, n-gram
            Kneser-Ney), drawn as dashed horizontal lines.
        label: the model's name in the legend; its colour is the palette's
            (:func:`nlbook.viz.model_color`), the same in every figure.

    Returns:
        A matplotlib Figure with one axes.
    """
    train_steps = check_array("train_steps", train_steps, ndim=1, layout="(N,)")
    train_loss = check_array("train_loss", train_loss, ndim=1, layout="(N,)")
    if (val_steps is None) != (val_loss is None):
        raise ValueError("val_steps and val_loss must be given together (or both left out)")
    if val_steps is not None:
        check_array("val_steps", val_steps, ndim=1, layout="(M,)")
        check_array("val_loss", val_loss, ndim=1, layout="(M,)")
    check_references(references)
    check_text("label", label)
    check_text("title", title, allow_none=True)
    check_scalar_in_range("smoothing", smoothing, 0.0, 1.0, high_inclusive=False)
    if train_steps.shape != train_loss.shape:
        raise ValueError(f"train_steps and train_loss must have the same length, got "
                         f"{train_steps.shape} and {train_loss.shape}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing!r}")
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    color = colors_for([label, *(references or {})])[0]
    if train_loss.size:
        axis.plot(train_steps, train_loss, color=color, alpha=0.2, linewidth=0.8)
        smoothed = np.empty_like(train_loss, dtype=float)
        running = float(train_loss[0])
        for index, value in enumerate(train_loss):
            running = smoothing * running + (1.0 - smoothing) * float(value)
            smoothed[index] = running
        axis.plot(train_steps, smoothed, color=color, alpha=0.7,
                  label=f"{label} train (smoothed)")
    if val_steps is not None and val_loss is not None:
        val_steps, val_loss = to_numpy(val_steps).ravel(), to_numpy(val_loss).ravel()
        if val_steps.shape != val_loss.shape:
            raise ValueError(f"val_steps and val_loss must have the same length, got "
                             f"{val_steps.shape} and {val_loss.shape}")
        axis.plot(val_steps, val_loss, "o-", color=color, markersize=3, linewidth=1.6,
                  label=f"{label} validation")
    _draw_references(axis, references, [label])
    finite = [value for value in (references or {}).values() if math.isfinite(value)]
    observed = np.concatenate([train_loss[np.isfinite(train_loss)],
                               np.asarray(finite, dtype=float)])
    if observed.size:
        axis.set_ylim(max(0.0, observed.min() - 0.15), min(observed.max(), 4.5) + 0.15)
    _finish_loss_axes(axis, "optimizer step", title or f"{label} on a character corpus")
    return figure


def _draw_references(axis, references: dict[str, float] | None, models: list[str]) -> None:
    """Dashed horizontal lines of the models that learn nothing, in their palette colours."""
    names = list(references or {})
    for name, color in zip(names, colors_for([*models, *names])[len(models):], strict=True):
        nats = references[name]  # type: ignore[index]
        axis.axhline(nats, linestyle="--", linewidth=1.0, color=color,
                     label=f"{name}: {nats:.3f}")


def plot_loss_curves(curves: dict[str, tuple], *, references: dict[str, float] | None = None,
                     xlabel: str = "optimizer step", title: str = "validation loss",
                     width: float = 6.4, height: float = 4.0) -> matplotlib.figure.Figure:
    """Several models' loss curves on one axes (nats/char, bits/char on the right axis).

    Args:
        curves: model name -> (x (N,), loss (N,)), e.g. ``{"HOPE": (seconds, val_loss),
            "Transformer": (...)}``. Each model is drawn in its palette colour
            (:func:`nlbook.viz.model_color`), the colour it has in every other figure.
        references: name -> nats/char of models that learn nothing (dashed lines).
        xlabel: what x measures (steps, seconds, tokens).

    Returns:
        A matplotlib Figure with one axes.
    """
    check_mapping("curves", curves)
    for name, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curves[{name!r}] must be a pair (x (N,), loss (N,)), got "
                             f"{type(pair).__name__}")
        x_values = check_array(f"curves[{name!r}][0]", pair[0], ndim=1, layout="(N,)")
        losses = check_array(f"curves[{name!r}][1]", pair[1], ndim=1, layout="(N,)")
        if x_values.shape != losses.shape:
            raise ValueError(f"curves[{name!r}] must hold x and loss of the same length, got "
                             f"{x_values.shape} and {losses.shape}")
    check_references(references)
    check_text("xlabel", xlabel)
    check_text("title", title)
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    observed = [value for value in (references or {}).values() if math.isfinite(value)]
    for (name, (x_values, losses)), color in zip(curves.items(), colors_for(curves),
                                                  strict=True):
        x_values, losses = to_numpy(x_values).ravel(), to_numpy(losses).ravel()
        if x_values.shape != losses.shape:
            raise ValueError(f"curves[{name!r}] must hold x and loss of the same length, got "
                             f"{x_values.shape} and {losses.shape}")
        axis.plot(x_values, losses, "o-", color=color, markersize=3, linewidth=1.6, label=name)
        observed.extend(float(value) for value in losses[np.isfinite(losses)])
    _draw_references(axis, references, list(curves))
    if observed:
        axis.set_ylim(max(0.0, min(observed) - 0.15), min(max(observed), 4.5) + 0.15)
    _finish_loss_axes(axis, xlabel, title)
    return figure


def plot_loss_by_position(curves: dict[str, object], *, references: dict[str, float] | None = None,
                          training_window: int | None = None, smoothing: int = 16,
                          title: str | None = None, width: float = 6.4,
                          height: float = 4.0) -> matplotlib.figure.Figure:
    """Loss at each position of fresh windows (:func:`nlbook.train.loss_by_position`), one
    curve per model, against the number of characters of context (log axis).

    Args:
        curves: model name -> (L,) mean loss at positions 0..L−1 (lengths may differ: a
            Transformer's curve ends at its context, HOPE's can run far past its window).
        references: name -> nats/char, dashed lines (the n-gram lines).
        training_window: draw a vertical line where the training window ends.
        smoothing: positions averaged in a running window (the raw curve is drawn faintly).

    Returns:
        A matplotlib Figure with one axes.
    """
    if not isinstance(curves, dict) or not curves:
        raise ValueError("curves must be a non-empty dict of name -> (L,) losses")
    for name, curve in curves.items():
        check_array(f"curves[{name!r}]", curve, ndim=1, layout="(L,)", non_empty=True)
    if isinstance(smoothing, bool) or not isinstance(smoothing, int) or smoothing < 1:
        raise ValueError(f"smoothing must be a positive int, got {smoothing!r}")
    check_references(references)
    check_int("training_window", training_window, low=1, allow_none=True)
    check_text("title", title, allow_none=True)
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    for (name, curve), colour in zip(curves.items(), colors_for(curves), strict=True):
        values = to_numpy(curve).astype(float).ravel()
        if values.size == 0:
            raise ValueError(f"curves[{name!r}] is empty")
        positions = np.arange(1, values.size + 1)  # characters of context seen
        axis.plot(positions, values, color=colour, alpha=0.25, linewidth=0.7)
        if values.size >= smoothing:
            kernel = np.ones(smoothing) / smoothing
            smooth = np.convolve(values, kernel, mode="valid")
            axis.plot(positions[smoothing - 1:], smooth, color=colour, label=name)
        else:
            axis.plot(positions, values, color=colour, label=name)
    _draw_references(axis, references, list(curves))
    if training_window is not None:
        axis.axvline(training_window, color="0.3", linestyle=":", linewidth=1.0,
                     label=f"training window ({training_window})")
    axis.set_xscale("log")
    axis.set_xlabel("characters of context (position in a fresh window + 1)")
    axis.set_ylabel("cross-entropy (nats/char)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="upper right")
    axis.set_title(title or "Loss against context length")
    return figure


def plot_evaluations(scores: dict[str, dict[str, float]], *, title: str | None = None,
                     width: float = 6.4, height: float = 3.6) -> matplotlib.figure.Figure:
    """Grouped bars: for each model (colour) its loss under each evaluation (group), e.g.
    ``{"HOPE": {"fresh windows": 1.82, "one stream": 1.70}, "Transformer": {...}}``.
    Missing entries are left out."""
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict of model -> {evaluation: nats}")
    for name, values in scores.items():
        check_mapping(f"scores[{name!r}]", values, non_empty=False)
        for key, value in values.items():  # NaN (a diverged model) is drawn as a gap
            if not (isinstance(value, float) and math.isnan(value)):
                check_scalar_in_range(f"scores[{name!r}][{key!r}]", value, -math.inf,
                                      math.inf)
    check_text("title", title, allow_none=True)
    evaluations: list[str] = []
    for values in scores.values():
        for key in values:
            if key not in evaluations:
                evaluations.append(key)
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    count = len(scores)
    bar = 0.8 / count
    finite = []
    colours = colors_for(scores)
    for index, (name, values) in enumerate(scores.items()):
        xs = [position + (index - (count - 1) / 2) * bar
              for position, key in enumerate(evaluations) if key in values]
        ys = [float(values[key]) for key in evaluations if key in values]
        finite.extend(y for y in ys if math.isfinite(y))
        bars = axis.bar(xs, ys, width=bar, color=colours[index], label=name)
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks(range(len(evaluations)), evaluations, fontsize=8)
    if finite:
        axis.set_ylim(max(0.0, min(finite) - 0.2), max(finite) + 0.1)
    axis.set_ylabel("cross-entropy (nats/char)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3, axis="y")
    axis.set_title(title or "One model, three ways of scoring it")
    return figure


def plot_ablation(names, stream, fresh=None, *, baseline: str = "HOPE",
                  title: str | None = None, width: float = 6.4,
                  height: float | None = None) -> matplotlib.figure.Figure:
    """Horizontal bars of each variant's streaming loss (and, faint, its fresh-window loss),
    with a vertical line at the ``baseline`` variant's streaming loss: what removing each part
    costs (right of the line) or buys (left).

    Args:
        names: (N,) variant names. stream: (N,) streaming losses. fresh: optional (N,).
    """
    names = check_texts("names", names)
    stream = check_array("stream", stream, ndim=1, layout="(N,) of names")
    check_text("baseline", baseline)
    check_text("title", title, allow_none=True)
    check_scalar_in_range("height", height, 0.0, 1000.0, low_inclusive=False, allow_none=True)
    if fresh is not None:
        check_array("fresh", fresh, ndim=1, layout="(N,) of names")
    if len(names) == 0 or stream.shape != (len(names),):
        raise ValueError(f"stream must hold one loss per name ({len(names)}), got "
                         f"{stream.shape}")
    if fresh is not None:
        fresh = to_numpy(fresh).astype(float).ravel()
        if fresh.shape != stream.shape:
            raise ValueError(f"fresh must have the shape of stream {stream.shape}, got "
                             f"{fresh.shape}")
    figure, axes = new_figure(width=width, height=height or 0.45 * len(names) + 1.2)
    axis = axes[0]
    rows = np.arange(len(names))[::-1]
    colours = colors_for(names)
    if fresh is not None:
        axis.barh(rows + 0.2, fresh, height=0.35, color=colours, alpha=0.35,
                  label="fresh windows")
    bars = axis.barh(rows - (0.2 if fresh is not None else 0.0), stream,
                     height=0.35 if fresh is not None else 0.6, color=colours,
                     label="one stream (sliding window for a fixed context)")
    axis.bar_label(bars, fmt="%.3f", fontsize=7)
    if baseline in names:
        axis.axvline(stream[names.index(baseline)], color="0.3", linestyle=":", linewidth=1.0)
    values = np.concatenate([stream, fresh if fresh is not None else stream])
    finite = values[np.isfinite(values)]
    if finite.size:
        axis.set_xlim(max(0.0, finite.min() - 0.1), finite.max() + 0.08)
    axis.set_yticks(rows, names, fontsize=8)
    axis.set_xlabel("cross-entropy (nats/char)")
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(alpha=0.3, axis="x")
    axis.set_title(title or "What each part buys (lower is better)")
    return figure
