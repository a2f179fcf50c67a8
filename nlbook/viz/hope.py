"""Plots for chapter 5 (the HOPE block): arrays in, a Figure out."""

from __future__ import annotations

import numpy as np

from nlbook.viz._common import new_figure, to_numpy
from nlbook.viz.palette import colors_for

__all__ = ["plot_hope_passage", "plot_hope_timescales", "plot_speed_and_size"]


def _mark(axis, token: int) -> None:
    axis.axvline(token, color="black", linewidth=0.8)


def plot_hope_timescales(lr, retention, key_change, value_change, memory_drift,
                         generator_drift, cms_drift, cms_updates, token_loss, token: int, *,
                         cms_levels=None, cms_labels=None, text: str = "", title: str = ""):
    """Every memory of one HOPE layer while it reads a passage, with token ``token`` marked.

    Args (T tokens, H heads, K CMS blocks; tensors or arrays):
        lr, retention: (T, H) the self-modifying Titans' η_t and α_t.
        key_change, value_change: (T, H) ‖k_t − k_{t−1}‖, ‖v_t − v_{t−1}‖.
        memory_drift, generator_drift: (T, H) ‖S_t − S_0‖ of the main memory and of the
            generator memories (M_k, M_v, M_η, M_α).
        cms_drift: (T, K) ‖θ_t − θ_0‖ per CMS block (chain order); cms_updates: per block the
            token counts of its in-context updates.
        cms_levels: per block its CMS level (``cms.level_of_block``): blocks are drawn and
            listed by level, level 1 (the fastest) first. Default: chain order.
        cms_labels: per block its label (``cms.block_labels()``); default "CMS block j".
        token_loss: (T,) next-token loss of the model at each position (NaN at the end).
        token: the position to mark. text: the passage (one character per token).

    Panels: the text around ``token`` and the loss; η and α; k and v changes (fastest
    timescale); the Titans memories' drift (per chunk); the CMS blocks' drift with their
    update ticks (slowest), by level; a snapshot of every memory at ``token``.
    """
    lr, retention = to_numpy(lr), to_numpy(retention)
    key_change, value_change = to_numpy(key_change), to_numpy(value_change)
    memory_drift, generator_drift = to_numpy(memory_drift), to_numpy(generator_drift)
    cms_drift, token_loss = to_numpy(cms_drift), to_numpy(token_loss)
    length, heads = lr.shape
    token = int(np.clip(token, 0, length - 1))
    steps = np.arange(length)
    figure, axes = new_figure(3, 2, width=4.4, height=2.9)

    axis = axes[0]
    axis.plot(steps, token_loss, color="tab:gray", linewidth=0.8)
    _mark(axis, token)
    axis.set_ylabel("next-token loss (nats)")
    window = text[max(0, token - 24):token].replace("\n", "⏎")
    current = text[token:token + 1].replace("\n", "⏎") if text else ""
    axis.set_title(f"…{window}[{current}]  (token {token})", fontsize=8, family="monospace")
    axis.set_xlabel("token t")

    axis = axes[1]
    for head in range(heads):
        axis.plot(steps, lr[:, head], color="tab:blue", alpha=0.7, linewidth=0.9,
                  label="η_t (learning rate)" if head == 0 else None)
        axis.plot(steps, retention[:, head], color="tab:orange", alpha=0.7, linewidth=0.9,
                  label="α_t (retention)" if head == 0 else None)
    _mark(axis, token)
    axis.set_title(f"Titans gates, every head: η = {lr[token].mean():.3f}, "
                   f"α = {retention[token].mean():.3f}", fontsize=9)
    axis.legend(fontsize=7)

    axis = axes[2]
    axis.plot(steps, key_change.mean(1), label="‖k_t − k_{t−1}‖")
    axis.plot(steps, value_change.mean(1), label="‖v_t − v_{t−1}‖")
    _mark(axis, token)
    axis.set_title("every token: generated keys and values (mean over heads)", fontsize=9)
    axis.legend(fontsize=7)

    axis = axes[3]
    for head in range(heads):
        axis.plot(steps[:token + 1], memory_drift[:token + 1, head], color="tab:green",
                  alpha=0.8, label="main memory" if head == 0 else None)
        axis.plot(steps[:token + 1], generator_drift[:token + 1, head], color="tab:purple",
                  alpha=0.8, label="k, v, η, α memories" if head == 0 else None)
    top = max(float(memory_drift.max()), float(generator_drift.max()), 1e-12)
    axis.set_xlim(0, length - 1)
    axis.set_ylim(0, 1.05 * top)
    axis.set_title("self-modifying Titans: ‖S_t − S_0‖ per head", fontsize=9)
    axis.legend(fontsize=7)
    axis.set_xlabel("token t")

    axis = axes[4]
    blocks = cms_drift.shape[1]
    if len(cms_updates) != blocks:
        raise ValueError(f"cms_updates must have one entry per CMS block ({blocks}), "
                         f"got {len(cms_updates)}")
    for name, values in (("cms_levels", cms_levels), ("cms_labels", cms_labels)):
        if values is not None and len(values) != blocks:
            raise ValueError(f"{name} must have one entry per CMS block ({blocks}), "
                             f"got {len(values)}")
    order = (sorted(range(blocks), key=lambda index: (cms_levels[index], index))
             if cms_levels is not None else list(range(blocks)))
    labels = ([f"CMS {label}" for label in cms_labels] if cms_labels is not None
              else [f"CMS block {index}" for index in range(blocks)])
    colors = ["tab:brown", "tab:red", "tab:cyan", "tab:olive"]
    for block in order:
        color = colors[block % len(colors)]
        axis.plot(steps[:token + 1], cms_drift[:token + 1, block], color=color,
                  label=f"{labels[block]}: {len(cms_updates[block])} updates")
        for tick in cms_updates[block]:
            axis.axvline(tick - 0.5, color=color, linewidth=0.5, linestyle=":")
    axis.set_xlim(0, length - 1)
    axis.set_ylim(0, 1.05 * max(float(cms_drift.max()), 1e-12))
    axis.set_title("CMS: ‖θ_t − θ_0‖ per block (dotted: update ticks)", fontsize=9)
    axis.legend(fontsize=7)
    axis.set_xlabel("token t")

    axis = axes[5]
    short = [labels[block].split(" (")[0] for block in order]
    if len(set(short)) < len(short):  # blocks that share a level: keep the bars apart
        short = [f"{name} · block {block}" for name, block in zip(short, order, strict=True)]
    names = ["η", "α", "Δk", "Δv", "main", "k,v,η,α", *short]
    now = np.array([lr[token].mean(), retention[token].mean(), key_change[token].mean(),
                    value_change[token].mean(), memory_drift[token].mean(),
                    generator_drift[token].mean(), *cms_drift[token][order]])
    peak = np.array([lr.mean(1).max(), retention.mean(1).max(), key_change.mean(1).max(),
                     value_change.mean(1).max(), memory_drift.mean(1).max(),
                     generator_drift.mean(1).max(), *cms_drift.max(0)[order]])
    axis.bar(names, now / np.maximum(peak, 1e-12), color="tab:gray")
    axis.set_ylim(0, 1.05)
    axis.set_title(f"every memory at token {token} (fraction of its peak)", fontsize=9)
    axis.tick_params(axis="x", labelsize=7, rotation=45)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def plot_hope_passage(traces: dict, text: str, token: int, layer: int = 0,
                      model: str | None = None):
    """:func:`plot_hope_timescales` for ``traces[model][layer]`` (a dict of its arguments):
    the per-timescale explorer's callback (model and layer picked by drop-downs)."""
    model = next(iter(traces)) if model is None else model
    if model not in traces:
        raise ValueError(f"model must be one of {sorted(traces)}, got {model!r}")
    layers = traces[model]
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer must lie in [0, {len(layers)}), got {layer!r}")
    return plot_hope_timescales(**layers[layer], token=token, text=text,
                                title=f"{model} HOPE, layer {layer}")


def plot_speed_and_size(names, tokens_per_second, parameters, *,
                        title: str = "training speed at matched size"):
    """Bars of training tokens/s and parameter counts (millions), one bar per model, in the
    model's palette colour."""
    figure, axes = new_figure(2, width=3.8, height=3.0)
    colors = colors_for(names)
    axes[0].bar(names, to_numpy(tokens_per_second), color=colors)
    axes[0].set_ylabel("tokens / s (one thread)")
    axes[0].set_title(title, fontsize=9)
    axes[1].bar(names, np.asarray(parameters, dtype=float) / 1e6, color=colors)
    axes[1].set_ylabel("parameters (millions)")
    axes[1].set_title("parameter count", fontsize=9)
    return figure
