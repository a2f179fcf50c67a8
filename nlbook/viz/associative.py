"""Chapter 1 plots: memory matrices, read-out errors, recall curves, speed-ups."""

from __future__ import annotations

import matplotlib.figure
import numpy as np

from nlbook.viz._common import new_figure, to_numpy
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
    states, errors, recall = to_numpy(states), to_numpy(errors), to_numpy(recall)
    length = states.shape[0]
    if not 0 <= step < length:
        raise ValueError(f"step must lie in [0, {length - 1}], got {step}")
    figure, (matrix_axis, error_axis, recall_axis) = new_figure(3, width=4.3, height=3.6)
    limit = max(float(np.abs(states).max()), 1e-12)
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
                   ylabel="‖Sᵀk − v_latest‖", ylim=(0, max(1.05 * np.nanmax(errors), 1e-9)))

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
    figure, (axis,) = new_figure(1, width=6.5, height=4.0)
    x_values = to_numpy(x_values)
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
    if not len(labels) == len(loop_seconds) == len(chunk_seconds):
        raise ValueError("labels, loop_seconds and chunk_seconds must have the same length, got "
                         f"{len(labels)}, {len(loop_seconds)}, {len(chunk_seconds)}")
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
