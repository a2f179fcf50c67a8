"""Diagrams of the framework (chapters 0, 3 and 5): levels and frequencies, the CMS chain,
the HOPE block with what each memory reads and writes. Plain numbers in, a Figure out.

Every diagram draws levels the same way: level 1 (the fastest) at the bottom, higher levels
above, each level in the colour :data:`LEVEL_COLOURS` gives it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.figure
from matplotlib.patches import FancyBboxPatch

from nlbook._checks import check_int_sequence, check_number_sequence
from nlbook.levels import Component, assign_levels, hope_components, level_label
from nlbook.viz._common import check_mapping, check_text, new_figure

__all__ = ["LEVEL_COLOURS", "level_colour", "plot_cms_chain", "plot_hope_block",
           "plot_level_map"]

#: One colour per level, level 1 first (the diagrams, the CMS chain and the HOPE block).
LEVEL_COLOURS = ("#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")


def level_colour(level: int) -> str:
    """The colour of ``level`` (1 = fastest) in every diagram of the course."""
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"level must be an int >= 1, got {level!r}")
    return LEVEL_COLOURS[(level - 1) % len(LEVEL_COLOURS)]


def _box(axis, x: float, y: float, width: float, height: float, text: str, colour: str, *,
         fontsize: float = 8.0, alpha: float = 0.22) -> None:
    """A rounded box centred at (x, y) with its text."""
    axis.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                  boxstyle="round,pad=0.02,rounding_size=0.06",
                                  facecolor=colour, edgecolor=colour, alpha=alpha, linewidth=1.5))
    axis.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                  boxstyle="round,pad=0.02,rounding_size=0.06",
                                  facecolor="none", edgecolor=colour, linewidth=1.5))
    axis.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(axis, start: tuple[float, float], end: tuple[float, float], *, colour: str = "0.25",
           style: str = "-|>", linestyle: str = "-", text: str = "", fontsize: float = 7.0,
           curve: float = 0.0) -> None:
    axis.annotate("", xy=end, xytext=start,
                  arrowprops={"arrowstyle": style, "color": colour, "linestyle": linestyle,
                              "linewidth": 1.2, "shrinkA": 2, "shrinkB": 2,
                              "connectionstyle": f"arc3,rad={curve}"})
    if text:
        axis.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, text, fontsize=fontsize,
                  ha="center", va="center", color=colour,
                  bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})


def _period_text(frequency: float, unit: str) -> str:
    if frequency == 0:
        return "never (fixed here)"
    period = 1.0 / frequency
    if abs(period - round(period)) < 1e-9:
        period_int = round(period)
        return f"every {unit}" if period_int == 1 else f"every {period_int:,} {unit}s"
    return f"{frequency:.3g} updates per {unit}"


def plot_level_map(components: Sequence[Component], *, levels: Mapping[str, int] | None = None,
                   unit: str = "step", title: str = "") -> matplotlib.figure.Figure:
    """The level/frequency map of a nested system (arXiv §3.2, Def. 2/3).

    One row per level, level 1 (the fastest) at the bottom; one box per component with its
    description; on the right of each row the level and how often it is updated; an arrow
    from A to B when B's state at step t needs A's state at step t (which makes A ≻ B at equal
    frequency).

    Args:
        components: the system, e.g. ``nlbook.levels.sgd_momentum_components()``.
        levels: name → level; default :func:`nlbook.levels.assign_levels` (checked against it
            when given).
        unit: the unit of time of the frequencies ("step", "token").
        title: the figure title.
    """
    computed = assign_levels(components)
    if levels is not None:
        check_mapping("levels", levels, non_empty=False)
    check_text("unit", unit)
    if not unit:
        raise ValueError("unit must be a non-empty str (e.g. 'step'), got ''")
    check_text("title", title)
    if levels is not None and dict(levels) != computed:
        raise ValueError(f"levels must be the levels of the components (Def. 2/3), "
                         f"{computed}, got {dict(levels)}")
    rows: dict[int, list[Component]] = {}
    for component in components:
        rows.setdefault(computed[component.name], []).append(component)
    top = max(rows)
    widest = max(len(row) for row in rows.values())
    figure, axes = new_figure(width=2.6 * widest + 3.2, height=1.05 * top + 0.9)
    axis = axes[0]
    box_width, box_height = 2.2, 0.72
    centres: dict[str, tuple[float, float]] = {}
    for level, row in rows.items():
        start = (widest - len(row)) * 1.3
        for index, component in enumerate(row):
            x, y = start + 1.3 + 2.6 * index, float(level)
            centres[component.name] = (x, y)
            text = "\n".join(textwrap.wrap(component.name, 26))
            if component.description:
                text += "\n" + "\n".join(textwrap.wrap(component.description, 30))
            _box(axis, x, y, box_width, box_height, text, level_colour(level), fontsize=7.5)
        axis.text(2.6 * widest + 0.25, level, f"level {level}\n"
                  f"{_period_text(row[0].frequency, unit)}", fontsize=8.5, va="center",
                  color=level_colour(level), fontweight="bold")
    for component in components:
        for need in component.needs:
            (x0, y0), (x1, y1) = centres[need], centres[component.name]
            dy = box_height / 2 if y1 > y0 else (-box_height / 2 if y1 < y0 else 0.0)
            if dy:  # between rows: land beside the centre, so arrows from two boxes stay apart
                spread = max(-0.5, min(0.5, 0.25 * (x0 - x1)))
                _arrow(axis, (x0, y0 + dy), (x1 + spread, y1 - dy), text="needs it at t")
            else:
                dx = box_width / 2 if x1 > x0 else -box_width / 2
                _arrow(axis, (x0 + dx, y0), (x1 - dx, y1), text="needs it at t", curve=0.3)
    axis.annotate("", xy=(-0.05, top + 0.45), xytext=(-0.05, 0.55),
                  arrowprops={"arrowstyle": "-|>", "color": "0.4", "linewidth": 1.2})
    axis.text(-0.2, (top + 1) / 2, "higher level = lower frequency", rotation=90, fontsize=8,
              ha="right", va="center", color="0.3")
    axis.set_xlim(-0.6, 2.6 * widest + 2.9)
    axis.set_ylim(0.4, top + 0.6)
    axis.axis("off")
    axis.set_title(title or "levels, ordered by update frequency (level 1 the fastest)",
                   fontsize=10)
    return figure


def _cms_levels(chunk_sizes: Sequence[int], learning_rates: Sequence[float]) -> list[int]:
    components = [Component(f"block {index}", 1.0 / size if rate != 0.0 else 0.0)
                  for index, (size, rate) in enumerate(zip(chunk_sizes, learning_rates,
                                                           strict=True))]
    levels = assign_levels(components)
    return [levels[component.name] for component in components]


def _check_cms_arguments(chunk_sizes: Sequence[int], learning_rates: Sequence[float], *,
                         names: tuple[str, str] = ("chunk_sizes", "learning_rates")) -> None:
    check_int_sequence(names[0], chunk_sizes, low=1)
    check_number_sequence(names[1], learning_rates, low=0.0)
    if len(chunk_sizes) != len(learning_rates):
        raise ValueError(f"{names[0]} and {names[1]} must have the same length, got "
                         f"{len(chunk_sizes)} and {len(learning_rates)}")


def plot_cms_chain(chunk_sizes: Sequence[int], learning_rates: Sequence[float], *,
                   loss: str = "task loss of token t", title: str = ""
                   ) -> matplotlib.figure.Figure:
    """The CMS chain (A-eq 70–71): input → block 0 → … → block K−1 → output, each block in its
    level's colour with its chunk size and rate, and the gradient of the task loss flowing back
    to every block that learns in context (summed over its chunk, applied when it closes).

    Args:
        chunk_sizes, learning_rates: per block, in chain order (as ``ContinuumMemory``).
        loss: what the blocks learn from (shown at the end of the chain).
        title: the figure title.
    """
    _check_cms_arguments(chunk_sizes, learning_rates)
    check_text("loss", loss)
    check_text("title", title)
    levels = _cms_levels(chunk_sizes, learning_rates)
    count = len(chunk_sizes)
    figure, axes = new_figure(width=2.3 * count + 4.2, height=2.9)
    axis = axes[0]
    y = 1.0
    _box(axis, 0.6, y, 0.9, 0.55, "input\nx_t", "0.6", fontsize=8)
    for index, (size, rate, level) in enumerate(zip(chunk_sizes, learning_rates, levels,
                                                    strict=True)):
        x = 2.2 + 2.3 * index
        when = f"every {size} tokens" if rate != 0.0 else "outer optimizer only"
        if rate != 0.0 and size == 1:
            when = "every token"
        text = (f"block {index}\n{level_label(level, size if rate else None).split(' (')[0]}"
                f"\nC = {size}, η = {rate:g}\n{when}")
        _box(axis, x, y, 1.9, 1.0, text, level_colour(level), fontsize=7.5)
        _arrow(axis, (1.05 if index == 0 else x - 2.3 + 0.95, y), (x - 0.95, y))
        if rate != 0.0:
            _arrow(axis, (2.2 + 2.3 * count + 0.2, y - 0.62), (x + 0.2, y - 0.55),
                   colour=level_colour(level), linestyle="--", curve=-0.25)
    end = 2.2 + 2.3 * count
    _arrow(axis, (end - 1.35, y), (end - 0.05, y))
    _box(axis, end + 0.55, y, 1.2, 0.6, "output y_t\n→ " + loss.split(" of ")[0], "0.6",
         fontsize=7.5)
    axis.text(end + 0.55, y - 0.95, f"∇ {loss}: summed over each\nblock's chunk, applied when "
              "it closes", fontsize=7, ha="center", va="top", color="0.3")
    axis.set_xlim(0, end + 1.7)  # room for the note under the output box
    # The longest dashed gradient arrow (to block 0) sags by about curve × length / 2 below its
    # ends: the axes reach below it, so that it is not clipped at the bottom of the figure.
    sag = 0.25 * (2.3 * count - 0.2) / 2
    bottom = min(-0.35, y - 0.62 - sag - 0.15)
    axis.set_ylim(bottom, 1.75)
    figure.set_figheight(2.9 * (1.75 - bottom) / 2.1)
    axis.axis("off")
    axis.set_title(title or "the CMS chain: blocks in chain order, coloured by level "
                   "(level 1 the fastest)", fontsize=10)
    return figure


def plot_hope_block(*, chunk_size_memory: int = 64, chunk_size_others: int = 32,
                    cms_chunk_sizes: Sequence[int] = (256, 32),
                    cms_learning_rates: Sequence[float] = (0.0, 1e-2), conv_window: int = 4,
                    title: str = "") -> matplotlib.figure.Figure:
    """The HOPE block (A-eq 94–97) as nlbook builds it, and what each memory reads and writes.

    Left: the data flow of one block, bottom to top: LayerNorm → causal convolution → the
    self-modifying Titans (generator memories M_k, M_v, M_η, M_α and the main memory) →
    residual → the CMS blocks → output. Right: one row per memory, what it reads, what target it
    is written towards, by which rule and how often. Colours are the levels of the whole model
    when trained by an outer optimizer (the Titans' memories level 1, the CMS's in-context
    blocks next, the outer optimizer's weights last).

    Args: the block's chunk sizes and CMS configuration (``nlbook.hope.HopeBlock``'s
    arguments; pass a block's own values to draw it).
    """
    for name, value in (("chunk_size_memory", chunk_size_memory),
                        ("chunk_size_others", chunk_size_others), ("conv_window", conv_window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    _check_cms_arguments(cms_chunk_sizes, cms_learning_rates,
                         names=("cms_chunk_sizes", "cms_learning_rates"))
    check_text("title", title)
    # Model-wide levels (nlbook.levels.hope_components, trained by AdamW).
    components = hope_components(cms_chunk_sizes, cms_learning_rates)
    model_levels = assign_levels(components)
    titans_level = model_levels[components[0].name]
    outer_level = model_levels[components[-1].name]     # the weights, after AdamW's moments
    cms_level = {index: model_levels.get(f"CMS block {index}", outer_level)
                 for index in range(len(cms_chunk_sizes))}
    figure, axes = new_figure(2, width=5.6, height=6.4)
    flow, table = axes
    x, width = 1.6, 2.6
    y = 0.4
    _box(flow, x, y, width, 0.45, "x (B, T, d)", "0.6")
    steps = [("LayerNorm", "0.6"),
             (f"causal depth-wise conv, window {conv_window}" if conv_window > 1
              else "(no convolution)", "0.6"),
             ("self-modifying Titans (per head)\n"
              "x_t = W_x h,  q_t = normalize(W_q h)\n"
              "k_t, v_t, η_t, α_t from M_k, M_v, M_η, M_α\n"
              "main memory: write (k_t → v̂), read o_t = M(q_t)\n"
              "y = W_o o", level_colour(titans_level))]
    heights = [0.45, 0.45, 1.45]
    for (text, colour), height in zip(steps, heights, strict=True):
        previous = y
        y = y + 0.35 + height / 2 + (0.25 if previous == 0.4 else 0.0)
        _arrow(flow, (x, previous + 0.25), (x, y - height / 2))
        _box(flow, x, y, width, height, text, colour, fontsize=7.5)
        y = y + height / 2 - 0.25
    residual_y = y + 0.65
    _arrow(flow, (x, y + 0.25), (x, residual_y - 0.15))
    flow.text(x, residual_y, "⊕  x + Titans(…)", ha="center", va="center", fontsize=8)
    flow.annotate("", xy=(x - width / 2 - 0.05, residual_y), xytext=(x - width / 2 - 0.05, 0.4),
                  arrowprops={"arrowstyle": "-|>", "color": "0.5", "linewidth": 1.0,
                              "connectionstyle": "bar,fraction=-0.15"})
    y = residual_y + 0.2
    for index, (size, rate) in enumerate(zip(cms_chunk_sizes, cms_learning_rates,
                                             strict=True)):
        level = cms_level[index]
        when = (("every token" if size == 1 else f"every {size} tokens") if rate != 0.0
                else "η = 0: AdamW only")
        text = f"CMS block {index}: x + MLP(LN(x))\n{when}"
        previous = y
        y = y + 0.75
        _arrow(flow, (x, previous), (x, y - 0.3))
        _box(flow, x, y, width, 0.6, text, level_colour(level), fontsize=7.5)
        y = y + 0.3
    _arrow(flow, (x, y), (x, y + 0.45))
    flow.text(x, y + 0.6, "output (B, T, d) → next block / readout", ha="center", fontsize=8)
    flow.set_xlim(-0.2, 3.4)
    flow.set_ylim(0, y + 0.9)
    flow.axis("off")
    flow.set_title("one HOPE block (bottom to top)", fontsize=9)

    rows = [("M_k, M_v", "x_t", "k_t → v̂ = M(v_t),\nby DGD",
             f"every token; keys and\ntargets every {chunk_size_others}", titans_level),
            ("M_η, M_α", "x_t", "k_t → v̂ = M(v_t),\nby DGD",
             f"every token; keys and\ntargets every {chunk_size_others}", titans_level),
            ("main memory", "q_t (read after\nthe write)", "k_t → v̂ = M(v_t),\nby DGD",
             f"every token; keys and\ntargets every {chunk_size_memory}", titans_level)]
    for index, (size, rate) in enumerate(zip(cms_chunk_sizes, cms_learning_rates,
                                             strict=True)):
        if rate != 0.0:
            rows.append((f"CMS block {index}", "its input", "−η Σ ∇ next-token loss\n(readout)",
                         "every token" if size == 1 else f"every {size} tokens",
                         cms_level[index]))
        else:
            rows.append((f"CMS block {index}", "its input", "(not in context)",
                         "AdamW, every step", outer_level))
    rows.append(("projections, initial\nstates, conv, norms", "—", "outer loss, by AdamW",
                 "every training step\n(after AdamW's moments)", outer_level))
    header = ("memory", "reads", "is written towards", "how often", "level")
    cells = [[name, reads, target, often, str(level)]
             for name, reads, target, often, level in rows]
    drawn = table.table(cellText=cells, colLabels=header, loc="center", cellLoc="center",
                        colWidths=[0.2, 0.15, 0.27, 0.29, 0.09])
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(6.5)
    drawn.scale(1.0, 2.6)
    for row, (*_, level) in enumerate(rows, start=1):
        for column in range(len(header)):
            drawn[row, column].set_facecolor(level_colour(level) + "33")
    table.axis("off")
    table.set_title("what each memory reads and writes (level: whole model, 1 = fastest)",
                    fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
