"""Chapter 1 plots: memory matrices, read-out errors, recall curves, speed-ups."""

from __future__ import annotations

import matplotlib.figure
import numpy as np

from nlbook._checks import check_scalar_in_range
from nlbook.viz._common import (
    check_array,
    check_index,
    check_mapping,
    check_text,
    check_texts,
    finite_max,
    new_figure,
    to_numpy,
)
from nlbook.viz.palette import colors_for

__all__ = ["plot_memory_explorer", "plot_recall_comparison", "plot_speedups"]


def plot_memory_explorer(states, errors, recall, step: int, *, title: str = "",
                         key_ids=None) -> matplotlib.figure.Figure:
    """Three views of a memory at token ``step``.

    Args:
        states: (T, d_k, d_v) the memory after every write.
        errors: (T, K) read-out error ‖S_tᵀk_j - v_j‖ per distinct key (NaN: not yet written).
        recall: (T,) fraction of written keys recalled after every write.
        step: the token to show, 0 <= step < T.
        key_ids: optional (T,) distinct key written at each step (marked in the error panel).
    """
    states = check_array("states", states, ndim=3, layout="(T, d_k, d_v)", non_empty=True)
    length = states.shape[0]
    errors = check_array("errors", errors, ndim=2, layout="(T, K) with T of states",
                         length=length)
    recall = check_array("recall", recall, ndim=1, layout="(T,) with T of states",
                         length=length)
    check_index("step", step, length)
    check_text("title", title)
    ids = check_array("key_ids", key_ids, ndim=1, layout="(T,) with T of states",
                      length=length, allow_none=True, integer=True)
    if ids is not None and (not (ids == ids.round()).all() or ids.min() < 0
                            or ids.max() >= errors.shape[1]):
        raise ValueError(f"key_ids must hold key indices in [0, {errors.shape[1]}) (K of "
                         f"errors), got values in [{ids.min()}, {ids.max()}]")
    figure, (matrix_axis, error_axis, recall_axis) = new_figure(3, width=4.3, height=3.6)
    limit = max(finite_max(np.abs(states)), 1e-12)
    image = matrix_axis.imshow(states[step], cmap="RdBu_r", vmin=-limit, vmax=limit)
    matrix_axis.set(title=f"memory S after token {step}", xlabel="value dim", ylabel="key dim")
    figure.colorbar(image, ax=matrix_axis, shrink=0.8)

    key_count = errors.shape[1]
    current = np.nan_to_num(errors[step], nan=0.0)
    colours = ["tab:gray"] * key_count
    if key_ids is not None:
        colours[int(to_numpy(key_ids)[step])] = "tab:orange"
    error_axis.bar(np.arange(key_count), current, color=colours)
    if key_ids is not None:  # a marker too: right after a delta-rule write the bar has height 0
        written = int(to_numpy(key_ids)[step])
        error_axis.plot([written], [current[written]], marker="v", color="tab:orange",
                        markersize=9, linestyle="none")
    error_axis.set(title="read-out error per key (orange: just written)", xlabel="key",
                   ylabel="‖Sᵀk − v_latest‖", ylim=(0, max(1.05 * finite_max(errors), 1e-9)))

    recall_axis.plot(np.arange(length), recall, color="tab:blue")
    recall_axis.axvline(step, color="tab:orange", lw=1)
    recall_axis.set(title="recall of keys written so far", xlabel="token", ylabel="recall",
                    ylim=(-0.02, 1.02))
    if title:
        figure.suptitle(title)
    return figure


def plot_recall_comparison(x_values, table: dict[str, list[float]], *, xlabel: str,
                           title: str = "", reference_x: float | None = None
                           ) -> matplotlib.figure.Figure:
    """Recall of several rules against a swept quantity (one line per rule).

    ``table`` maps a rule label to one recall value per entry of ``x_values``;
    ``reference_x`` draws a dashed vertical line (e.g. at N = d).
    """
    x_values = check_array("x_values", x_values, ndim=1, layout="(N,)")
    check_mapping("table", table)
    for label, recalls in table.items():
        check_array(f"table[{label!r}]", recalls, ndim=1, layout="(N,) of x_values")
    check_text("xlabel", xlabel)
    check_text("title", title)
    check_scalar_in_range("reference_x", reference_x, -np.inf, np.inf, allow_none=True)
    figure, (axis,) = new_figure(1, width=6.5, height=4.0)
    for (label, recalls), color in zip(table.items(), colors_for(table), strict=True):
        if len(recalls) != len(x_values):
            raise ValueError(f"table[{label!r}] must have {len(x_values)} values, "
                             f"got {len(recalls)}")
        axis.plot(x_values, recalls, marker="o", label=label, color=color)
    if reference_x is not None:
        axis.axvline(reference_x, color="k", ls="--", lw=1)
    axis.set(xlabel=xlabel, ylabel="recall (nearest value)", ylim=(-0.02, 1.02), title=title)
    axis.legend(fontsize=8)
    return figure


def plot_speedups(labels: list[str], loop_seconds: list[float], chunk_seconds: list[float],
                  ) -> matplotlib.figure.Figure:
    """Token loop vs chunkwise time per rule, annotated with the speed-up."""
    labels = check_texts("labels", labels)
    for name, seconds in (("loop_seconds", loop_seconds), ("chunk_seconds", chunk_seconds)):
        values = check_array(name, seconds, ndim=1, layout="(N,) of labels", length=len(labels))
        if not (values > 0).all() or not np.isfinite(values).all():
            raise ValueError(f"{name} must hold positive finite times, got {values.tolist()}")
    figure, (axis,) = new_figure(1, width=6.5, height=3.6)
    positions = np.arange(len(labels))
    loop_ms, chunk_ms = 1e3 * np.asarray(loop_seconds), 1e3 * np.asarray(chunk_seconds)
    axis.bar(positions - 0.2, loop_ms, width=0.4, label="token loop")
    axis.bar(positions + 0.2, chunk_ms, width=0.4, label="chunkwise")
    for position, slow, fast in zip(positions, loop_ms, chunk_ms, strict=True):
        axis.annotate(f"×{slow / fast:.1f}", (position + 0.2, fast), ha="center", va="bottom")
    axis.set_xticks(positions, labels)
    axis.set(ylabel="forward + backward (ms)", title="same numbers, different schedule")
    axis.legend()
    return figure
