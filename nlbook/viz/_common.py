"""Small helpers shared by the chapter plotting modules."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.lines

# Importing pyplot does not pick a GUI backend by itself; notebooks keep their inline backend.
import matplotlib.pyplot as plt
import numpy as np

from nlbook._checks import ArgumentTypeError, check_int, check_scalar_in_range, describe

__all__ = ["new_figure", "to_numpy"]

#: A figure with more axes than this is a mistake (a size passed as a count), not a plot.
MAX_AXES = 400


def to_numpy(array) -> np.ndarray:
    """Convert a tensor (any device, with or without grad) or array-like to a numpy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu()
        if array.dtype.is_floating_point:
            array = array.double()
        return array.numpy()
    return np.asarray(array)


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.4,
               **subplot_kwargs) -> tuple[matplotlib.figure.Figure, np.ndarray]:
    """A figure with an ``nrows x ncols`` grid of axes, returned as a flat array of axes.

    The figure is detached from pyplot's state machine (``plt.close``) so that figures made in
    loops or widget callbacks do not pile up; Jupyter still shows a returned ``Figure``.
    """
    check_int("ncols", ncols, low=1)
    check_int("nrows", nrows, low=1)
    if ncols * nrows > MAX_AXES:
        raise ValueError(f"ncols and nrows ask for {ncols * nrows} axes, more than {MAX_AXES}")
    check_scalar_in_range("width", width, 0.0, 1000.0, low_inclusive=False)
    check_scalar_in_range("height", height, 0.0, 1000.0, low_inclusive=False)
    figure, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                squeeze=False, layout="constrained", **subplot_kwargs)
    plt.close(figure)
    return figure, axes.ravel()


#: Line styles given, in turn, to the series of one axes that would otherwise share a style.
SERIES_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)),
                 (0, (3, 1, 1, 1, 1, 1)))


def _series(axis) -> list:
    """The labelled lines of ``axis`` that are series (more than one point), in drawing order."""
    return [line for line in axis.lines if not str(line.get_label()).startswith("_")
            and np.size(line.get_xdata()) > 1]


def style_key(line) -> tuple:
    """What a line's style looks like: its dash pattern (``get_linestyle`` says "--" for every
    custom dash)."""
    _, dashes = getattr(line, "_unscaled_dash_pattern", (0, None))
    return (line.get_linestyle(), tuple(dashes) if dashes else ())


def _shade(colour, index: int) -> tuple[float, float, float]:
    """The ``index``-th shade (1, 2, ...) of ``colour``: alternately darker and lighter."""
    red, green, blue = matplotlib.colors.to_rgb(colour)
    amount = 0.35 * ((index + 1) // 2) / (1 + 0.5 * ((index - 1) // 2))
    target = 0.0 if index % 2 else 1.0  # darker first, then lighter
    return tuple(channel + (target - channel) * min(amount, 0.7)
                 for channel in (red, green, blue))


def _covered(axis, legend) -> bool:
    """Whether ``legend`` (inside ``axis``) covers a data point of a series."""
    figure = axis.figure
    figure.canvas.draw_without_rendering() if hasattr(figure.canvas, "draw_without_rendering") \
        else figure.canvas.draw()
    box = legend.get_window_extent()
    for line in axis.lines:
        points = axis.transData.transform(np.column_stack(
            [np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)]))
        finite = np.isfinite(points).all(axis=1)
        inside = ((points[finite, 0] >= box.x0) & (points[finite, 0] <= box.x1)
                  & (points[finite, 1] >= box.y0) & (points[finite, 1] <= box.y1))
        if inside.any():
            return True
    return False


def distinguish_series(figure) -> None:
    """Give every series of each axes its own colour and line style, and keep legends off
    the data.

    A series that repeats an earlier one's colour (two curves of one model, e.g. HOPE and HOPE
    with its CMS frozen) gets a shade of it, so the palette still names the model; a series that
    repeats a line style gets the next unused one of :data:`SERIES_STYLES`. A legend inside the
    axes that covers a data point moves outside, to the right. Every ``nlbook.viz.plot_*`` runs
    this on its figure (``nlbook.viz`` wraps them), and ``tests/test_figures.py`` checks it.
    """
    for axis in figure.axes:
        lines = _series(axis)
        colours: dict[str, int] = {}
        styles: list = []
        probe = matplotlib.lines.Line2D([], [])
        for line in lines:
            colour = matplotlib.colors.to_hex(line.get_color())
            if colour in colours:
                colours[colour] += 1
                line.set_color(_shade(colour, colours[colour] - 1))
            else:
                colours[colour] = 1
            if line.get_linestyle() in ("None", "none", " ", ""):
                continue  # markers only: the marker tells the series apart
            style = style_key(line)
            if style in styles:
                for candidate in SERIES_STYLES:
                    probe.set_linestyle(candidate)
                    if style_key(probe) not in styles:
                        line.set_linestyle(candidate)
                        style = style_key(probe)
                        break
            styles.append(style)
        legend = axis.get_legend()
        if legend is None or not lines:
            continue
        by_label = {str(line.get_label()): line for line in axis.lines}
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=False):
            line = by_label.get(text.get_text())
            if line is not None and hasattr(handle, "set_linestyle"):
                handle.set_color(line.get_color())
                handle.set_linestyle(line.get_linestyle())
        if getattr(legend, "_bbox_to_anchor", None) is None and _covered(axis, legend):
            legend.set_bbox_to_anchor((1.02, 1.0), transform=axis.transAxes)
            legend._loc = 2  # "upper left" of the anchor: beside the axes, clear of the data


# --------------------------------------------------------------------------------------------
# Argument checks of the plotting functions. NaN in plotted data is a gap, not an error.


def check_array(name: str, value, *, ndim: int | None = None, layout: str = "",
                allow_none: bool = False, length: int | None = None,
                non_empty: bool = False, integer: bool = False) -> np.ndarray | None:
    """``value`` (a tensor or array-like of numbers; of ints when ``integer``) as a float64
    array of rank ``ndim`` and, when given, ``length`` rows; raise naming ``name`` otherwise."""
    if value is None and allow_none:
        return None
    if value is None or isinstance(value, (str, bytes, Mapping, bool)) \
            or (isinstance(value, numbers.Number) and ndim not in (None, 0)):
        raise ArgumentTypeError(f"{name} must be an array {layout}".rstrip()
                                + f" of numbers, got {describe(value)}")
    if isinstance(value, (list, tuple)) and any(isinstance(item, bool) for item in value):
        raise ArgumentTypeError(f"{name} must hold numbers, got a bool among them")
    try:
        array = to_numpy(value)
    except (TypeError, ValueError) as error:
        raise ArgumentTypeError(f"{name} must be an array of numbers, got {describe(value)} "
                                f"({error})") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.number)):
        raise ArgumentTypeError(f"{name} must hold numbers, got an array of dtype "
                                f"{array.dtype}")
    if integer and not np.issubdtype(array.dtype, np.integer):
        raise ArgumentTypeError(f"{name} must hold ints, got an array of dtype {array.dtype}")
    array = array.astype(np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}".rstrip()
                         + f", got shape {array.shape}")
    if length is not None and (array.ndim == 0 or array.shape[0] != length):
        raise ValueError(f"{name} must have {length} rows {layout}".rstrip()
                         + f", got shape {array.shape}")
    if non_empty and array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    return array


def check_text(name: str, value, *, allow_none: bool = False) -> str | None:
    """A str (empty allowed) for a title or label."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str{' or None' if allow_none else ''}, got "
                                f"{describe(value)}")
    return value


def check_texts(name: str, value, *, length: int | None = None) -> list[str]:
    """A list or tuple of str (labels), of ``length`` entries when given."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise ArgumentTypeError(f"{name} must be a list of str, got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ArgumentTypeError(f"{name}[{index}] must be a str, got {describe(item)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(value)}")
    return list(value)


def check_index(name: str, value, size: int) -> int:
    """An int position in [0, size)."""
    return check_int(name, value, low=0, high=max(size - 1, 0))  # type: ignore[return-value]


def check_mapping(name: str, value, *, non_empty: bool = True) -> Mapping:
    """A dict-like of str keys (model or curve names)."""
    if not isinstance(value, Mapping):
        raise ArgumentTypeError(f"{name} must be a dict, got {describe(value)}")
    if non_empty and not value:
        raise ValueError(f"{name} must not be empty")
    for key in value:
        if not isinstance(key, str):
            raise ArgumentTypeError(f"{name} keys must be str, got {describe(key)}")
    return value


def check_references(references) -> None:
    """None, or name -> a finite number of nats (the dashed lines of the models that learn
    nothing)."""
    if references is None:
        return
    check_mapping("references", references, non_empty=False)
    for key, value in references.items():
        check_scalar_in_range(f"references[{key!r}]", value, -math.inf, math.inf)


def check_sequence(name: str, value, *, length: int | None = None,
                   of: str = "") -> Sequence:
    """A list or tuple (per level, per model) of ``length`` entries (``of``: what sets the
    length, for the message) when given."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise ArgumentTypeError(f"{name} must be a list or tuple, got {describe(value)}")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must have {length} entries{' (' + of + ')' if of else ''}, "
                         f"got {len(value)}")
    return value


def finite_max(array: np.ndarray, default: float = 0.0) -> float:
    """The largest finite value of ``array`` (NaN and inf are gaps), or ``default``."""
    finite = array[np.isfinite(array)]
    return float(finite.max()) if finite.size else default
