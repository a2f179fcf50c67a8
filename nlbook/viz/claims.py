"""Figures of chapter 7 (what HOPE's memories buy): formal-language accuracy by bin, recall
against the gap, and the losses of a continual A → B → A run. Every model keeps its palette
colour (:func:`nlbook.viz.model_color`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.colors
import numpy as np

from nlbook._checks import check_int_sequence, check_scalar_in_range
from nlbook.viz._common import (
    SERIES_STYLES,
    _shade,
    check_array,
    check_mapping,
    check_text,
    check_texts,
    new_figure,
    to_numpy,
)
from nlbook.viz.palette import colors_for, model_color

__all__ = ["plot_continual", "plot_formal_accuracy", "plot_mad_accuracy", "plot_phased_recall",
           "plot_recall_by_gap"]

_CHANCE_COLOR = model_color("chance")


def _check_models(name: str, values: Mapping, *, parts: Sequence[str] = ()) -> None:
    """A non-empty dict model name -> values (-> a dict holding ``parts`` when given)."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"{name} must be a non-empty dict of model name -> values, got "
                         f"{type(values).__name__}")
    check_mapping(name, values)
    for model, value in values.items():
        if parts:
            check_mapping(f"{name}[{model!r}]", value)
            missing = [part for part in parts if part not in value]
            if missing:
                raise ValueError(f"{name}[{model!r}] must hold {' and '.join(map(repr, parts))}, "
                                 f"got {sorted(value)}")


def plot_formal_accuracy(languages: Sequence[str], accuracy: Mapping[str, Mapping[str, object]],
                         *, chance: float = 0.5,
                         bins: Sequence[str] = ("Bin0 (training lengths)", "Bin1 (longer)"),
                         title: str | None = None, width: float = 5.6,
                         height: float = 3.4) -> matplotlib.figure.Figure:
    """Grouped bars of accuracy per language, one panel per length bin.

    Args:
        languages: (L,) labels of the languages (x axis).
        accuracy: model -> {"bin0": (L,), "bin1": (L,)} accuracies in [0, 1]; each model in its
            palette colour, in the same place of every group.
        chance: drawn as a dashed line (0.5: balanced accept/reject).
        bins: the two panels' titles.

    Returns:
        A matplotlib Figure with two axes (Bin0, Bin1).
    """
    _check_models("accuracy", accuracy, parts=("bin0", "bin1"))
    languages = check_texts("languages", languages)
    if not languages:
        raise ValueError("languages must hold at least one label")
    check_texts("bins", bins, length=2)
    check_scalar_in_range("chance", chance, 0.0, 1.0)
    check_text("title", title, allow_none=True)
    for name, values in accuracy.items():
        for split in ("bin0", "bin1"):
            scores = check_array(f"accuracy[{name!r}][{split!r}]", values[split])
            if np.any((scores < 0) | (scores > 1)):
                raise ValueError(f"accuracy[{name!r}][{split!r}] must hold accuracies in "
                                 f"[0, 1], got {scores.ravel().tolist()}")
    figure, axes = new_figure(2, width=width, height=height, sharey=True)
    colours = colors_for(accuracy)
    count = len(accuracy)
    bar = 0.8 / count
    for axis, split, label in zip(axes, ("bin0", "bin1"), bins, strict=True):
        for index, (name, values) in enumerate(accuracy.items()):
            if split not in values:
                raise ValueError(f"accuracy[{name!r}] must hold 'bin0' and 'bin1', got "
                                 f"{sorted(values)}")
            scores = to_numpy(values[split]).astype(float).ravel()
            if scores.shape != (len(languages),):
                raise ValueError(f"accuracy[{name!r}][{split!r}] must hold one accuracy per "
                                 f"language ({len(languages)}), got shape {scores.shape}")
            xs = np.arange(len(languages)) + (index - (count - 1) / 2) * bar
            axis.bar(xs, 100 * scores, width=bar, color=colours[index], label=name)
        axis.axhline(100 * chance, color=_CHANCE_COLOR, linestyle="--", linewidth=1.0,
                     label=f"chance ({100 * chance:.0f} %)")
        axis.set_xticks(range(len(languages)), languages, fontsize=8, rotation=30)
        axis.set_ylim(0, 105)
        axis.set_title(label, fontsize=9)
        axis.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=7, loc="lower left")
    figure.suptitle(title or "Formal languages: trained on short strings, tested on longer ones",
                    fontsize=10)
    return figure


def plot_recall_by_gap(gaps: Sequence[int], accuracy: Mapping[str, object], *,
                       controls: Mapping[str, object] | None = None,
                       chance: float | None = 1 / 26, visible_gap: float | None = None,
                       ylabel: str = "accuracy per answer character",
                       title: str | None = None, width: float = 6.4,
                       height: float = 4.0) -> matplotlib.figure.Figure:
    """Recall accuracy against the gap between fact and query (log x axis), one line per model.

    Args:
        gaps: (G,) gaps in characters.
        accuracy: model -> (G,) accuracy (solid lines, palette colours).
        controls: model -> (G,) accuracy with the fact removed (dotted, the model's colour).
        chance: drawn as a dashed grey line (None: none).
        visible_gap: the longest gap at which the fact still lies in a fixed window: a
            vertical line ("fact leaves the window").

    Returns:
        A matplotlib Figure with one axes.
    """
    _check_models("accuracy", accuracy)
    gaps = check_array("gaps", gaps, ndim=1, layout="(G,)", integer=True).ravel()
    if gaps.size == 0 or np.any(gaps < 0):
        raise ValueError(f"gaps must be non-empty and non-negative, got {gaps.tolist()}")
    for name, values in accuracy.items():
        check_array(f"accuracy[{name!r}]", values)
    if controls is not None:
        check_mapping("controls", controls, non_empty=False)
        for name, values in controls.items():
            check_array(f"controls[{name!r}]", values)
    check_scalar_in_range("chance", chance, 0.0, 1.0, allow_none=True)
    check_scalar_in_range("visible_gap", visible_gap, 0.0, math.inf, allow_none=True)
    check_text("ylabel", ylabel)
    check_text("title", title, allow_none=True)
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    shown = np.maximum(gaps, 1.0)  # a gap of 0 on a log axis
    for (name, values), colour in zip(accuracy.items(), colors_for(accuracy), strict=True):
        values = to_numpy(values).astype(float).ravel()
        if values.shape != gaps.shape:
            raise ValueError(f"accuracy[{name!r}] must hold one value per gap ({gaps.size}), "
                             f"got shape {values.shape}")
        axis.plot(shown, values, "o-", color=colour, linewidth=1.6, markersize=4, label=name)
    for name, values in (controls or {}).items():
        values = to_numpy(values).astype(float).ravel()
        if values.shape != gaps.shape:
            raise ValueError(f"controls[{name!r}] must hold one value per gap ({gaps.size}), "
                             f"got shape {values.shape}")
        if name in accuracy:
            colour = colors_for(accuracy)[list(accuracy).index(name)]
        else:
            colour = model_color(name) or colors_for([*accuracy, name])[-1]
        axis.plot(shown, values, ":", color=colour, linewidth=1.0, marker=".",
                  label=f"{name}, fact removed")
    if chance is not None:
        axis.axhline(chance, color=_CHANCE_COLOR, linestyle="--", linewidth=1.0,
                     label=f"chance ({chance:.3f})")
    if visible_gap is not None:
        axis.axvline(max(visible_gap, 1.0), color="0.3", linestyle="-.", linewidth=1.0,
                     label=f"fact leaves the window (gap > {visible_gap:g})")
    drawn = [line.get_ydata() for line in axis.lines if len(line.get_ydata()) == gaps.size]
    values = np.concatenate([np.asarray(data, dtype=float) for data in drawn])
    if values.size and np.all((values >= 0) & (values <= 1)):  # accuracies: the whole range
        axis.set_ylim(-0.02, 1.02)
    axis.set_xscale("log")
    axis.set_xticks(shown, [f"{gap:g}" for gap in gaps], fontsize=8)
    axis.minorticks_off()
    axis.set_xlabel("gap between the fact and the question (characters)")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    axis.set_title(title or "Recall of a planted fact across a gap")
    return figure


def plot_continual(steps: Sequence[int], losses: Mapping[str, Mapping[str, object]], *,
                   phase_ends: Sequence[int], order: Sequence[str] = ("A", "B", "A"),
                   corpus_names: Mapping[str, str] | None = None,
                   title: str | None = None, width: float = 5.0,
                   height: float = 3.6) -> matplotlib.figure.Figure:
    """Validation loss on corpus A and on corpus B (two panels) against optimizer steps, with
    the training phases shaded.

    Args:
        steps: (N,) optimizer steps of the evaluations.
        losses: model -> {"A": (N,), "B": (N,)} losses (nats/char), palette colours.
        phase_ends: the step at which each phase ends (one per entry of ``order``).
        order: the corpus each phase trains on.
        corpus_names: "A"/"B" -> a name for the panel titles.

    Returns:
        A matplotlib Figure with two axes.
    """
    _check_models("losses", losses, parts=("A", "B"))
    steps = check_array("steps", steps, ndim=1, layout="(N,)", integer=True, non_empty=True)
    if np.any(steps < 0):
        raise ValueError(f"steps must be optimizer steps (>= 0), got {steps.tolist()}")
    for name, values in losses.items():
        for corpus in ("A", "B"):
            check_array(f"losses[{name!r}][{corpus!r}]", values[corpus])
    order = check_texts("order", order)
    for index, corpus in enumerate(order):
        if corpus not in ("A", "B"):
            raise ValueError(f"order[{index}] must be 'A' or 'B', got {corpus!r}")
    phase_ends = check_int_sequence("phase_ends", phase_ends, low=0)
    if corpus_names is not None:
        check_mapping("corpus_names", corpus_names, non_empty=False)
        for key, value in corpus_names.items():
            check_text(f"corpus_names[{key!r}]", value)
    check_text("title", title, allow_none=True)
    if len(phase_ends) != len(order):
        raise ValueError(f"phase_ends must give one step per phase ({len(order)}), got "
                         f"{len(phase_ends)}")
    names = {"A": "A", "B": "B", **(corpus_names or {})}
    figure, axes = new_figure(2, width=width, height=height)
    colours = colors_for(losses)
    starts = [0, *phase_ends[:-1]]
    for axis, corpus in zip(axes, ("A", "B"), strict=True):
        for start, end, trained in zip(starts, phase_ends, order, strict=True):
            if trained == corpus:
                axis.axvspan(start, end, color="0.9", zorder=0)
            axis.text((start + end) / 2, 1.0, f"on {trained}", transform=axis.get_xaxis_transform(),
                      ha="center", va="bottom", fontsize=7)
        for (name, values), colour in zip(losses.items(), colours, strict=True):
            if corpus not in values:
                raise ValueError(f"losses[{name!r}] must hold 'A' and 'B', got {sorted(values)}")
            curve = to_numpy(values[corpus]).astype(float).ravel()
            if curve.shape != steps.shape:
                raise ValueError(f"losses[{name!r}][{corpus!r}] must hold one loss per step "
                                 f"({steps.size}), got shape {curve.shape}")
            axis.plot(steps, curve, "o-", color=colour, markersize=3, linewidth=1.5, label=name)
        axis.set_xlabel("optimizer step")
        axis.set_title(f"validation loss on {corpus} ({names[corpus]})", fontsize=9, pad=14)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy (nats/char)")
    axes[0].legend(fontsize=7, loc="upper right")
    figure.suptitle(title or "Continual learning: train on A, then B, then A again (grey: "
                    "training on this corpus)", fontsize=10)
    return figure


def plot_phased_recall(accuracy: Mapping[str, object], intervals: Mapping[str, object], *,
                       blocks: Sequence[str] = ("A's first queries", "B's queries",
                                                "A's last queries"),
                       chance: float | None = None,
                       title: str = "") -> matplotlib.figure.Figure:
    """Continual learning in context (phased MQAR): accuracy on each query block per model,
    with its 95 % interval as whiskers.

    Args:
        accuracy: model name → (K,) accuracies in [0, 1] (the mean over seeds), one per block.
        intervals: model name → (K, 2) rows (low, high) in [0, 1], the pooled 95 % interval.
        blocks: the K block names on the x axis (A's first queries, B's, A's last).
        chance: the in-context chance 1/n (dashed grey line), or None.
        title: the axes title.
    """
    _check_models("accuracy", accuracy)
    check_texts("blocks", blocks)
    count = len(blocks)
    if not count:
        raise ValueError("blocks must name at least one query block, got []")
    check_mapping("intervals", intervals)
    if set(intervals) != set(accuracy):
        raise ValueError(f"intervals must have one entry per model of accuracy "
                         f"({sorted(accuracy)}), got {sorted(intervals)}")
    checked = {}
    for name, values in accuracy.items():
        values = check_array(f"accuracy[{name!r}]", values, ndim=1, layout="(K,)",
                             length=count)
        bounds = check_array(f"intervals[{name!r}]", intervals[name], ndim=2, layout="(K, 2)",
                             length=count)
        if bounds.shape[1] != 2:
            raise ValueError(f"intervals[{name!r}] must have rows (low, high), got shape "
                             f"{bounds.shape}")
        for label, array in ((f"accuracy[{name!r}]", values),
                             (f"intervals[{name!r}]", bounds)):
            if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
                raise ValueError(f"{label} must hold fractions in [0, 1], got {array.tolist()}")
        if np.any(bounds[:, 0] > bounds[:, 1]):
            raise ValueError(f"intervals[{name!r}] must have low <= high in every row, got "
                             f"{bounds.tolist()}")
        checked[name] = (values, bounds)
    if chance is not None:
        check_scalar_in_range("chance", chance, 0.0, 1.0)
    check_text("title", title)
    figure, (axis,) = new_figure(width=7.2, height=3.6)
    positions = np.arange(count, dtype=float)
    spread = 0.3 / max(1, len(checked) - 1) if len(checked) > 1 else 0.0
    colors, seen = [], {}
    for color in colors_for(list(checked)):  # a repeated palette colour gets a shade of it
        key = matplotlib.colors.to_hex(color)
        seen[key] = seen.get(key, 0) + 1
        colors.append(color if seen[key] == 1 else _shade(color, seen[key] - 1))
    for index, ((name, (values, bounds)), color) in enumerate(
            zip(checked.items(), colors, strict=True)):
        shift = positions + (index - (len(checked) - 1) / 2) * spread
        whiskers = np.stack([values - bounds[:, 0], bounds[:, 1] - values]).clip(min=0)
        axis.plot(shift, 100 * values, color=color, marker="o", markersize=4, linewidth=1.6,
                  linestyle=SERIES_STYLES[index % len(SERIES_STYLES)], label=name)
        axis.errorbar(shift, 100 * values, yerr=100 * whiskers, fmt="none", capsize=3,
                      linewidth=1.0, color=color)
    if chance is not None:
        axis.axhline(100 * chance, color=_CHANCE_COLOR, linestyle="--", linewidth=1,
                     label=f"in-context chance ({100 * chance:.0f} %)")
    axis.set_xticks(positions)
    axis.set_xticklabels(list(blocks), fontsize=8)
    axis.set_xlim(-0.5, count - 0.5)
    axis.set_ylim(0, 102)
    axis.set_ylabel("accuracy (%), 95 % interval")
    axis.set_title(title or "Phased MQAR: A, then B, then A's queries again", fontsize=10)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    axis.grid(alpha=0.3)
    return figure


def plot_mad_accuracy(tasks: Sequence[str], means: Mapping[str, object], *,
                      lows: Mapping[str, object] | None = None,
                      highs: Mapping[str, object] | None = None,
                      chance: Sequence[float] | None = None, title: str = "",
                      width: float = 7.2, height: float = 3.4) -> matplotlib.figure.Figure:
    """Grouped bars of test accuracy per MAD task, one bar per model, with interval whiskers.

    Args:
        tasks: (K,) task labels (x axis).
        means: model -> (K,) mean accuracies in [0, 1] (each model in its own colour, in the
            same place of every group).
        lows, highs: model -> (K,) the interval's ends in [0, 1] (whiskers), or None.
        chance: (K,) each task's chance accuracy (a short dashed grey line over its group).
        title: the figure's title.

    Returns:
        A matplotlib Figure with one axes; the legend sits to the right, off the bars.
    """
    _check_models("means", means)
    tasks = check_texts("tasks", tasks)
    if not tasks:
        raise ValueError("tasks must hold at least one label")
    check_text("title", title)
    values = {}
    for name, series in means.items():
        array = check_array(f"means[{name!r}]", series).ravel()
        if array.shape != (len(tasks),) or not np.all((array >= 0) & (array <= 1)):
            raise ValueError(f"means[{name!r}] must hold one accuracy in [0, 1] per task "
                             f"({len(tasks)}), got {array.tolist()}")
        values[name] = array
    ends = {}
    for label, given in (("lows", lows), ("highs", highs)):
        if given is None:
            continue
        check_mapping(label, given)
        for name in values:
            if name not in given:
                raise ValueError(f"{label} must hold every model of means, missing {name!r}")
            array = check_array(f"{label}[{name!r}]", given[name]).ravel()
            if array.shape != (len(tasks),) or not np.all((array >= 0) & (array <= 1)):
                raise ValueError(f"{label}[{name!r}] must hold one value in [0, 1] per task "
                                 f"({len(tasks)}), got {array.tolist()}")
            ends.setdefault(name, {})[label] = array
    if (lows is None) != (highs is None):
        raise ValueError("lows and highs must be given together (the interval's two ends)")
    if chance is not None:
        chance = check_array("chance", chance, ndim=1, layout="(K,)").ravel()
        if chance.shape != (len(tasks),) or not np.all((chance >= 0) & (chance <= 1)):
            raise ValueError(f"chance must hold one accuracy in [0, 1] per task "
                             f"({len(tasks)}), got {chance.tolist()}")
    figure, axes = new_figure(width=width, height=height)
    axis = axes[0]
    count = len(values)
    bar = 0.8 / count
    for index, ((name, array), colour) in enumerate(zip(values.items(), colors_for(values),
                                                        strict=True)):
        xs = np.arange(len(tasks)) + (index - (count - 1) / 2) * bar
        axis.bar(xs, 100 * array, width=bar, color=colour, label=name)
        if name in ends:
            low, high = ends[name]["lows"], ends[name]["highs"]
            below = np.clip(array - low, 0, None)
            above = np.clip(high - array, 0, None)
            axis.errorbar(xs, 100 * array, yerr=100 * np.stack([below, above]), fmt="none",
                          ecolor="0.15", elinewidth=1.0, capsize=2.5)
    if chance is not None:
        for position, level in enumerate(chance):
            axis.plot([position - 0.45, position + 0.45], [100 * level] * 2,
                      color=_CHANCE_COLOR, linestyle="--", linewidth=1.0,
                      label="chance" if position == 0 else None)
    axis.set_xticks(range(len(tasks)), tasks, fontsize=8, rotation=20)
    axis.set_ylim(0, 105)
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    axis.set_title(title or "MAD at CPU scale: test accuracy per task (95 % interval)",
                   fontsize=10)
    return figure
