"""Training curves of chapter 6: loss against steps, with the n-gram lines that learn nothing."""

from __future__ import annotations

import math

import matplotlib
import numpy as np

from nlbook.viz._common import new_figure, to_numpy

__all__ = ["plot_training_curves"]

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
