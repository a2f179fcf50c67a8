"""Training curves of chapter 6: loss against steps, with the n-gram lines that learn nothing."""

from __future__ import annotations

import math

import matplotlib
import numpy as np

from nlbook.viz._common import new_figure, to_numpy

__all__ = ["plot_evaluations", "plot_loss_by_position", "plot_training_curves"]

_LN2 = math.log(2.0)


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
        label: the model's name in the legend.

    Returns:
        A matplotlib Figure with one axes.
    """
    train_steps, train_loss = to_numpy(train_steps).ravel(), to_numpy(train_loss).ravel()
    if train_steps.shape != train_loss.shape:
        raise ValueError(f"train_steps and train_loss must have the same length, got "
                         f"{train_steps.shape} and {train_loss.shape}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing!r}")
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    if train_loss.size:
        axis.plot(train_steps, train_loss, color="tab:blue", alpha=0.25, linewidth=0.8)
        smoothed = np.empty_like(train_loss, dtype=float)
        running = float(train_loss[0])
        for index, value in enumerate(train_loss):
            running = smoothing * running + (1.0 - smoothing) * float(value)
            smoothed[index] = running
        axis.plot(train_steps, smoothed, color="tab:blue", label=f"{label} train (smoothed)")
    if val_steps is not None and val_loss is not None:
        val_steps, val_loss = to_numpy(val_steps).ravel(), to_numpy(val_loss).ravel()
        if val_steps.shape != val_loss.shape:
            raise ValueError(f"val_steps and val_loss must have the same length, got "
                             f"{val_steps.shape} and {val_loss.shape}")
        axis.plot(val_steps, val_loss, "o-", color="tab:orange", markersize=3,
                  label=f"{label} validation")
    colors = ["0.55", "tab:green", "tab:purple", "tab:red", "tab:brown", "tab:olive"]
    finite = [value for value in (references or {}).values() if math.isfinite(value)]
    for index, (name, nats) in enumerate((references or {}).items()):
        axis.axhline(nats, linestyle="--", linewidth=1.0, color=colors[index % len(colors)],
                     label=f"{name}: {nats:.3f}")
    observed = np.concatenate([train_loss[np.isfinite(train_loss)],
                               np.asarray(finite, dtype=float)])
    if observed.size:
        axis.set_ylim(max(0.0, observed.min() - 0.15), min(observed.max(), 4.5) + 0.15)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("cross-entropy (nats/char)")
    secondary = axis.secondary_yaxis("right", functions=(lambda nats: nats / _LN2,
                                                         lambda bits: bits * _LN2))
    secondary.set_ylabel("bits/char")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    axis.set_title(title or f"{label} on a character corpus")
    return figure


def _model_colour(name: str, index: int) -> str:
    """One colour per model name (the same in every figure of a chapter)."""
    known = {"hope": "tab:red", "transformer": "tab:blue"}
    for key, colour in known.items():
        if name.lower().startswith(key):
            return colour
    return ["tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan"][index % 5]


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
    if isinstance(smoothing, bool) or not isinstance(smoothing, int) or smoothing < 1:
        raise ValueError(f"smoothing must be a positive int, got {smoothing!r}")
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    for index, (name, curve) in enumerate(curves.items()):
        values = to_numpy(curve).astype(float).ravel()
        if values.size == 0:
            raise ValueError(f"curves[{name!r}] is empty")
        positions = np.arange(1, values.size + 1)  # characters of context seen
        colour = _model_colour(name, index)
        axis.plot(positions, values, color=colour, alpha=0.25, linewidth=0.7)
        if values.size >= smoothing:
            kernel = np.ones(smoothing) / smoothing
            smooth = np.convolve(values, kernel, mode="valid")
            axis.plot(positions[smoothing - 1:], smooth, color=colour, label=name)
        else:
            axis.plot(positions, values, color=colour, label=name)
    for index, (name, nats) in enumerate((references or {}).items()):
        axis.axhline(nats, linestyle="--", linewidth=1.0,
                     color=["0.55", "tab:green", "tab:purple", "tab:brown"][index % 4],
                     label=f"{name}: {nats:.3f}")
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
    for index, (name, values) in enumerate(scores.items()):
        xs = [position + (index - (count - 1) / 2) * bar
              for position, key in enumerate(evaluations) if key in values]
        ys = [float(values[key]) for key in evaluations if key in values]
        finite.extend(y for y in ys if math.isfinite(y))
        bars = axis.bar(xs, ys, width=bar, color=_model_colour(name, index), label=name)
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks(range(len(evaluations)), evaluations, fontsize=8)
    if finite:
        axis.set_ylim(max(0.0, min(finite) - 0.2), max(finite) + 0.1)
    axis.set_ylabel("cross-entropy (nats/char)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3, axis="y")
    axis.set_title(title or "One model, three ways of scoring it")
    return figure
