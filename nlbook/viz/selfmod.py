"""Plots for chapter 4 (DGD and self-modifying memories): arrays in, a Figure out."""

from __future__ import annotations

import numpy as np

from nlbook.viz._common import new_figure, to_numpy

__all__ = ["plot_gd_vs_dgd_stream", "plot_selfmod_trace"]


_RULE_TITLES = {"gd": "GD", "dgd": "DGD, target u = y (the course, HOPE)",
                "dgd_literal": "DGD as printed, u = −∇_y L (A-eq 57)"}


def plot_gd_vs_dgd_stream(results: dict, *, title: str = "online regression, correlated inputs"):
    """Relative error before each step, one panel per rule, one line per step size.

    ``results``: {rule: {lr: errors (T,)}} as returned by
    ``nlbook.selfmod.correlated_stream_experiment`` (rules "gd", "dgd", "dgd_literal"; any
    subset, drawn in that order).
    """
    rules = [rule for rule in _RULE_TITLES if rule in results]
    unknown = sorted(set(results) - set(_RULE_TITLES))
    if unknown or not rules:
        raise ValueError(f"results must hold rules among {list(_RULE_TITLES)}, got "
                         f"{sorted(results)}")
    figure, axes = new_figure(len(rules), width=4.2)
    for axis, rule in zip(axes, rules, strict=True):
        for lr, errors in results[rule].items():
            values = np.clip(to_numpy(errors), 1e-6, 1e6)
            axis.semilogy(values, label=f"η = {lr:g}", linewidth=1)
        axis.set_title(f"{_RULE_TITLES[rule]}\n{title}", fontsize=9)
        axis.set_xlabel("step t")
        axis.set_ylabel("‖W x − y‖² / ‖y‖² before the step")
        axis.set_ylim(1e-4, 1e6)
        axis.legend(fontsize=8)
    return figure


def plot_selfmod_trace(lr, retention, changes: dict, step: int, *, head: int = 0):
    """Watch self-modifying Titans over a sequence (batch element 0, one head).

    Args:
        lr: (T,) η_t. retention: (T,) α_t.
        changes: memory name -> (T,) size of that memory's in-context change ‖S_t − S_0‖.
        step: the token to mark (0-based).
        head: only used in the title.
    """
    lr, retention = to_numpy(lr), to_numpy(retention)
    length = len(lr)
    step = int(np.clip(step, 0, length - 1))
    figure, axes = new_figure(2, width=4.6)
    axes[0].plot(lr, label="η_t (learning rate)")
    axes[0].plot(retention, label="α_t (retention)")
    axes[0].axvline(step, color="black", linewidth=0.8)
    axes[0].set_xlabel("token t")
    axes[0].set_title(f"head {head}: η_t = {lr[step]:.3f}, α_t = {retention[step]:.3f}",
                      fontsize=9)
    axes[0].legend(fontsize=8)
    for name, values in changes.items():
        values = to_numpy(values)
        axes[1].plot(np.arange(step + 1), values[:step + 1], label=name)
    axes[1].set_xlim(0, length - 1)
    top = max(float(np.max(to_numpy(v))) for v in changes.values())
    axes[1].set_ylim(0, 1.05 * top + 1e-12)
    axes[1].set_xlabel("token t")
    axes[1].set_title("‖S_t − S_0‖: each memory's in-context change", fontsize=9)
    axes[1].legend(fontsize=8)
    return figure
