"""Plots of MQAR, the course's recall yardstick (chapters 1 and 5): arrays in, a Figure out.

An MQAR sequence (:func:`nlbook.tasks.mqar_batch`) holds n key-value pairs ``k_1 v_1 … k_n
v_n``, then blanks in which every key comes back once as a query; the target at a query is its
value, every other target is −1.
"""

from __future__ import annotations

import matplotlib.figure
import matplotlib.patches
import numpy as np

from nlbook._checks import check_int, check_scalar_in_range
from nlbook.viz._common import (
    check_array,
    check_index,
    check_mapping,
    check_sequence,
    check_text,
    new_figure,
)
from nlbook.viz.palette import colors_for

__all__ = ["plot_hope_recall", "plot_mqar_curves", "plot_mqar_sequence"]

#: Fill colour of each role of a token in an MQAR sequence.
ROLE_COLORS = {"key": "#9ecae1", "value": "#fdae6b", "query": "#3182bd", "blank": "#f0f0f0"}


def _check_tokens(inputs, targets, kv_pairs):
    """(T,) ids and (T,) targets (−1: not scored) of one sequence, and n pairs in its start."""
    inputs = check_array("inputs", inputs, ndim=1, layout="(T,)", non_empty=True, integer=True)
    length = inputs.shape[0]
    targets = check_array("targets", targets, ndim=1, layout="(T,) with T of inputs",
                          length=length, integer=True)
    if inputs.min() < 0:
        raise ValueError(f"inputs must hold token ids >= 0, got {inputs.min():.0f}")
    if targets.min() < -1:
        raise ValueError(f"targets must hold token ids >= 0 or -1 (not scored), got "
                         f"{targets.min():.0f}")
    kv_pairs = check_int("kv_pairs", kv_pairs, low=1, high=max(1, length // 2))
    if 2 * kv_pairs > length:
        raise ValueError(f"kv_pairs must be at most T // 2 = {length // 2} (the pairs fill "
                         f"the first 2n tokens), got {kv_pairs}")
    return inputs.astype(np.int64), targets.astype(np.int64), kv_pairs


def _roles(inputs: np.ndarray, targets: np.ndarray, kv_pairs: int) -> list[str]:
    roles = []
    for position in range(inputs.shape[0]):
        if position < 2 * kv_pairs:
            roles.append("key" if position % 2 == 0 else "value")
        else:
            roles.append("query" if targets[position] >= 0 else "blank")
    return roles


def _draw_strip(axis, inputs, targets, roles, *, predictions=None, mark=None) -> None:
    """Tokens as boxes (colour: role), arcs from each query back to its key, the target under
    each query (and the prediction, green when right, red when wrong)."""
    length = inputs.shape[0]
    for position in range(length):
        edge = "black" if position == mark else "0.6"
        axis.add_patch(matplotlib.patches.Rectangle(
            (position - 0.45, -0.45), 0.9, 0.9, facecolor=ROLE_COLORS[roles[position]],
            edgecolor=edge, linewidth=2.0 if position == mark else 0.6))
        text_color = "white" if roles[position] == "query" else "black"
        axis.text(position, 0, str(inputs[position]), ha="center", va="center", fontsize=7,
                  color=text_color)
    context = [position for position, role in enumerate(roles) if role in ("key", "value")]
    for position in range(length):
        if roles[position] != "query":
            continue
        sources = [source for source in context
                   if roles[source] == "key" and inputs[source] == inputs[position]]
        if sources:
            source = sources[0]
            middle, height = (source + position) / 2, 0.6 + 0.04 * (position - source)
            xs = np.linspace(source, position, 40)
            ys = 0.5 + (height - 0.5) * (1 - ((xs - middle) / max(middle - source, 1e-9)) ** 2)
            axis.plot(xs, ys, color="tab:blue", linewidth=0.8, alpha=0.7)
        axis.text(position, -0.8, f"→{targets[position]}", ha="center", va="center",
                  fontsize=6.5, color="0.2")
        if predictions is not None:
            right = predictions[position] == targets[position]
            axis.text(position, -1.25, str(int(predictions[position])), ha="center",
                      va="center", fontsize=6.5, color="tab:green" if right else "tab:red")
    top = 0.7 + 0.04 * length
    axis.set_xlim(-0.7, length - 0.3)
    axis.set_ylim(-1.6 if predictions is not None else -1.15, top)
    axis.set_yticks([])
    axis.set_xlabel("position t")
    for side in ("left", "right", "top"):
        axis.spines[side].set_visible(False)


def plot_mqar_sequence(inputs, targets, *, kv_pairs: int, predictions=None,
                       title: str = "") -> matplotlib.figure.Figure:
    """One MQAR sequence: the n pairs (keys light blue, values orange), the blanks (grey) and
    the queries (dark blue), an arc from every query back to the key it repeats, and under
    each query the value it must answer (``→ v``).

    Args:
        inputs: (T,) token ids of one sequence.
        targets: (T,) the value at each query position, −1 elsewhere.
        kv_pairs: n; the first 2n tokens are the pairs.
        predictions: optional (T,) a model's guess at every position; drawn under the queries
            (green: right, red: wrong).
        title: the figure's title.
    """
    inputs, targets, kv_pairs = _check_tokens(inputs, targets, kv_pairs)
    length = inputs.shape[0]
    if predictions is not None:
        predictions = check_array("predictions", predictions, ndim=1,
                                  layout="(T,) with T of inputs", length=length, integer=True)
    check_text("title", title)
    roles = _roles(inputs, targets, kv_pairs)
    figure, (axis,) = new_figure(width=min(18.0, max(5.0, 0.34 * length)), height=2.1)
    _draw_strip(axis, inputs, targets, roles, predictions=predictions)
    queries = int((targets >= 0).sum())
    handles = [matplotlib.patches.Patch(facecolor=color, edgecolor="0.6", label=role)
               for role, color in ROLE_COLORS.items()]
    # Beside the strip, not on it: every cell of the strip is data.
    axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                frameon=False)
    axis.set_title(title or f"one MQAR sequence: {kv_pairs} pairs, then {queries} queries "
                   f"(under each: the value to answer"
                   f"{'; below: the model' if predictions is not None else ''})", fontsize=9)
    return figure


def _distinct_colors(names: list[str]) -> list[str]:
    """The palette's colours, a spare one for each name whose colour an earlier name took
    (the palette matches by name, so "hope-shared-input" would be drawn in HOPE's blue)."""
    import matplotlib.colors

    colors = colors_for(names)
    spare = [f"tab:{name}" for name in ("green", "purple", "brown", "pink", "olive", "cyan",
                                        "gray", "orange", "red", "blue")]
    used: set[str] = set()
    result = []
    for color in colors:
        if matplotlib.colors.to_hex(color) in used:
            color = next((candidate for candidate in spare
                          if matplotlib.colors.to_hex(candidate) not in used), color)
        used.add(matplotlib.colors.to_hex(color))
        result.append(color)
    return result


def _check_curve(name: str, curve) -> np.ndarray:
    curve = check_array(name, curve, ndim=2, layout="(points, 2) of (step, accuracy)",
                        non_empty=True)
    if curve.shape[1] != 2:
        raise ValueError(f"{name} must have shape (points, 2) of (step, accuracy), got "
                         f"{curve.shape}")
    return curve


def plot_mqar_curves(curves, *, chance: float | None = None, threshold: float | None = None,
                     title: str = "",
                     xlabel: str = "training step") -> matplotlib.figure.Figure:
    """Held-out MQAR accuracy against training steps, per model: one thin line per seed and
    the mean over seeds (thick) when the seeds share their steps.

    Args:
        curves: model name → a list (one per seed) of curves, each (points, 2) rows of
            (step, accuracy in [0, 1]) (``MQARRun.curve``).
        chance: the in-context chance 1/n (dashed grey line), or None.
        threshold: the accuracy that counts as solved (dotted line), or None.
        title, xlabel: labels.
    """
    check_mapping("curves", curves)
    checked = {}
    for name, runs in curves.items():
        check_sequence(f"curves[{name!r}]", runs)
        if not runs:
            raise ValueError(f"curves[{name!r}] must hold at least one seed's curve, got none")
        checked[name] = [_check_curve(f"curves[{name!r}][{seed}]", run)
                         for seed, run in enumerate(runs)]
    for label, value in (("chance", chance), ("threshold", threshold)):
        if value is not None:
            check_scalar_in_range(label, value, 0.0, 1.0)
    check_text("title", title)
    check_text("xlabel", xlabel)
    figure, (axis,) = new_figure(width=6.4, height=3.6)
    for (name, runs), color in zip(checked.items(), _distinct_colors(list(checked)), strict=True):
        for run in runs:
            axis.plot(run[:, 0], 100 * run[:, 1], color=color, linewidth=0.7, alpha=0.45)
        steps = runs[0][:, 0]
        if all(run.shape == runs[0].shape and np.array_equal(run[:, 0], steps) for run in runs):
            mean = np.mean([run[:, 1] for run in runs], axis=0)
            axis.plot(steps, 100 * mean, color=color, linewidth=2.2,
                      label=f"{name} (mean of {len(runs)})" if len(runs) > 1 else name)
        else:
            axis.plot([], [], color=color, linewidth=2.2, label=name)
    if chance is not None:
        axis.axhline(100 * chance, color="0.45", linestyle="--", linewidth=1,
                     label=f"in-context chance ({100 * chance:.0f} %)")
    if threshold is not None:
        axis.axhline(100 * threshold, color="0.3", linestyle=":", linewidth=1,
                     label=f"solved ({100 * threshold:.0f} %)")
    axis.set_ylim(0, 102)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("held-out accuracy (%)")
    axis.set_title(title or "MQAR: held-out accuracy while training", fontsize=10)
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(alpha=0.3)
    return figure


def plot_hope_recall(inputs, targets, lr, key_similarity, value_similarity, position: int, *,
                     kv_pairs: int, title: str = "") -> matplotlib.figure.Figure:
    """Which write a HOPE main memory reads at one position of an MQAR sequence.

    Args (T tokens):
        inputs, targets: (T,) the sequence and its targets (−1: not scored), n = ``kv_pairs``.
        lr: (T,) the step size η_t with which token t was written (one head).
        key_similarity: (T, T): row t, column i ≤ t, the cosine between the read's feature
            silu(q_t S1) and the written key's feature silu(k_i S1) in the main memory (NaN
            above the diagonal: not yet written).
        value_similarity: (T, T): row t, column i ≤ t, the cosine between what the memory
            returns at t and the value written at i (NaN above the diagonal).
        position: the read to show, 0 ≤ position < T.
        title: the figure's title.

    Panels: the sequence with η_t of every write; the key-similarity matrix (every read,
    every write); for the read at ``position``, its similarity with every earlier key and
    with every earlier value, the nearest one marked.
    """
    inputs, targets, kv_pairs = _check_tokens(inputs, targets, kv_pairs)
    length = inputs.shape[0]
    lr = check_array("lr", lr, ndim=1, layout="(T,) with T of inputs", length=length)
    matrices = {}
    for name, value in (("key_similarity", key_similarity),
                        ("value_similarity", value_similarity)):
        matrix = check_array(name, value, ndim=2, layout="(T, T) with T of inputs",
                             length=length)
        if matrix.shape != (length, length):
            raise ValueError(f"{name} must have shape (T, T) = {(length, length)} with T of "
                             f"inputs, got {matrix.shape}")
        matrices[name] = matrix
    position = check_index("position", position, length)
    check_text("title", title)
    roles = _roles(inputs, targets, kv_pairs)
    colors = [ROLE_COLORS[role] for role in roles]
    steps = np.arange(length)
    figure, axes = new_figure(2, 2, width=5.6, height=2.9)

    axis = axes[0]
    axis.bar(steps, lr, color=colors, edgecolor="0.5", linewidth=0.5)
    axis.axvline(position, color="black", linewidth=0.8)
    axis.set_xticks(steps, [str(token) for token in inputs], fontsize=6)
    axis.set_ylabel("η_t (step of the write)")
    axis.set_title("every write: its token (x axis) and its step size η_t", fontsize=9)

    axis = axes[1]
    limit = 1.0
    image = axis.imshow(matrices["key_similarity"], cmap="RdBu_r", vmin=-limit, vmax=limit,
                        aspect="auto")
    axis.axhline(position, color="black", linewidth=0.8)
    for query in np.flatnonzero(targets >= 0):
        axis.plot(-0.9, query, marker=">", color=ROLE_COLORS["query"], markersize=4,
                  clip_on=False)
    axis.set(xlabel="written at position i", ylabel="read at position t")
    axis.set_title("cos(silu(q_t S1), silu(k_i S1)); ▸ queries", fontsize=9)
    figure.colorbar(image, ax=axis, shrink=0.8)

    answer = targets[position]
    for axis, name, what in ((axes[2], "key_similarity", "key"),
                             (axes[3], "value_similarity", "value")):
        row = matrices[name][position, :position + 1]
        shown = np.nan_to_num(row, nan=0.0)
        bar_colors = list(colors[:position + 1])
        axis.bar(steps[:position + 1], shown, color=bar_colors, edgecolor="0.5", linewidth=0.5)
        axis.set_xlim(-0.7, length - 0.3)
        axis.set_ylim(-1.05, 1.05)
        axis.axhline(0, color="0.6", linewidth=0.6)
        axis.set_xticks(steps, [str(token) for token in inputs], fontsize=6)
        axis.set_xlabel("written at position i (its token)")
        if np.isfinite(row).any():
            best = int(np.nanargmax(row))
            axis.bar([best], [shown[best]], color="none", edgecolor="black", linewidth=1.6)
            verdict = ""
            if answer >= 0:
                # The pair (key at p, value at p + 1) reaches a write through the causal
                # convolution (window 4): writes p + 1 to p + 3 see both tokens.
                sources = [p for p in range(0, 2 * kv_pairs, 2) if inputs[p] == inputs[position]]
                verdict = ("  ✓ a write that sees its pair" if sources
                           and sources[0] + 1 <= best <= sources[0] + 3
                           else "  ✗ not its pair")
            axis.set_title(f"read at t = {position} (token {inputs[position]}): nearest {what} "
                           f"written at i = {best} (token {inputs[best]}){verdict}", fontsize=8)
        else:
            axis.set_title(f"read at t = {position}: no {what} to compare", fontsize=8)
        axis.set_ylabel(f"cosine with the {what}")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
