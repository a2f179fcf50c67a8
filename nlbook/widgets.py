"""Thin ipywidgets explorers over the pure plots in :mod:`nlbook.viz`.

A plot function takes keyword arguments and returns a matplotlib ``Figure``. :func:`explore`
wires it to controls and redraws on every change. ipywidgets catches any exception raised in a
callback and hides it inside the widget state, so under tests (``nlbook.is_headless()``) the
explorer also calls the plot once directly and draws it: a broken plot then fails the run.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from typing import Any

import matplotlib.figure

from nlbook import is_headless
from nlbook._checks import (
    ArgumentTypeError,
    check_callable,
    check_instance,
    check_int,
    check_scalar_in_range,
    check_str,
    describe,
)

__all__ = ["dropdown", "explore", "float_slider", "int_slider", "multi_select", "render_once"]

#: Every control sizes its label to the text (ipywidgets' default cuts labels after ~10
#: characters: "decay / β / lr" showed as "decay / β …").
LABEL_STYLE = {"description_width": "initial"}


def render_once(
    plot: Callable[..., matplotlib.figure.Figure], **kwargs
) -> matplotlib.figure.Figure:
    """Call ``plot(**kwargs)``, check it returned a Figure and draw it to PNG in memory.

    Drawing catches errors that only appear at render time (bad colour limits, NaN extents).
    """
    check_callable("plot", plot)
    figure = plot(**kwargs)
    if not isinstance(figure, matplotlib.figure.Figure):
        raise ValueError(
            f"plot must return a matplotlib Figure, got {type(figure).__name__} from "
            f"{getattr(plot, '__name__', plot)}"
        )
    figure.savefig(io.BytesIO(), format="png")
    return figure


def int_slider(value: int, low: int, high: int, step: int = 1, description: str = ""):
    """An integer slider that redraws when released (plots can take a few ms)."""
    import ipywidgets

    check_int("low", low)
    check_int("high", high)
    check_int("value", value)
    if not low <= value <= high:
        raise ValueError(f"value must lie in [low, high] = [{low}, {high}], got {value}")
    check_int("step", step, low=1)
    check_str("description", description, allow_empty=True)

    return ipywidgets.IntSlider(value=value, min=low, max=high, step=step,
                                description=description, continuous_update=False,
                                style=LABEL_STYLE)


def float_slider(value: float, low: float, high: float, step: float, description: str = "",
                 readout_format: str = ".3g"):
    """A float slider that redraws when released."""
    import ipywidgets

    check_scalar_in_range("low", low, -math.inf, math.inf)
    check_scalar_in_range("high", high, -math.inf, math.inf)
    check_scalar_in_range("value", value, -math.inf, math.inf)
    if not low <= value <= high:
        raise ValueError(f"value must lie in [low, high] = [{low}, {high}], got {value}")
    check_scalar_in_range("step", step, 0.0, math.inf, low_inclusive=False)
    check_str("description", description, allow_empty=True)
    check_str("readout_format", readout_format)

    return ipywidgets.FloatSlider(value=value, min=low, max=high, step=step,
                                  description=description, continuous_update=False,
                                  readout_format=readout_format, style=LABEL_STYLE)


def dropdown(options, value=None, description: str = ""):
    """A drop-down menu; ``options`` is a list of labels or (label, value) pairs."""
    import ipywidgets

    choices = _check_options(options)
    if value is not None and value not in choices:
        raise ValueError(f"value must be one of the options {choices}, got {describe(value)}")
    check_str("description", description, allow_empty=True)

    return ipywidgets.Dropdown(options=options, value=value, description=description,
                               style=LABEL_STYLE)


def multi_select(options, value=(), description: str = ""):
    """A list from which several entries can be picked, tall enough to show every option
    (ipywidgets shows 5 rows by default and hides the rest, selected ones included)."""
    import ipywidgets

    choices = _check_options(options)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ArgumentTypeError(f"value must be a tuple of options, got {describe(value)}")
    for item in value:
        if item not in choices:
            raise ValueError(f"value must hold only options {choices}, got {describe(item)}")
    check_str("description", description, allow_empty=True)
    options = list(options)
    return ipywidgets.SelectMultiple(options=options, value=tuple(value), rows=len(options),
                                     description=description, style=LABEL_STYLE)


def _check_options(options) -> list:
    """The values a choice widget offers: ``options`` is a non-empty list of labels or of
    (label, value) pairs."""
    if isinstance(options, (str, bytes, Mapping)) or not isinstance(options, (list, tuple)):
        raise ArgumentTypeError(f"options must be a list of labels or (label, value) pairs, got "
                                f"{describe(options)}")
    if not options:
        raise ValueError("options must not be empty")
    return [item[1] if isinstance(item, tuple) and len(item) == 2 else item for item in options]


def explore(
    plot: Callable[..., matplotlib.figure.Figure],
    controls: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    play: str | None = None,
):
    """Build an explorer: ``controls`` (name -> widget) drive ``plot(**values, **fixed)``.

    Args:
        plot: a pure plotting function returning a ``Figure``.
        controls: keyword name of ``plot`` -> ipywidgets value widget (slider, dropdown...).
        fixed: keyword arguments passed unchanged on every call (data arrays, titles).
        play: name of an integer control to which a Play button is linked (animate a time
            slider).

    Returns:
        An ``ipywidgets.VBox`` holding the controls and the output area. Display it as the last
        expression of a cell.

    Raises:
        ValueError: if a control is not a widget with a ``value`` or ``play`` names no control.
        Any exception of ``plot`` itself, in headless mode (tests).
    """
    import ipywidgets
    from IPython.display import display

    check_callable("plot", plot)
    check_instance("controls", controls, Mapping, expected="a dict name -> widget")
    check_instance("fixed", fixed, Mapping, allow_none=True, expected="a dict of arguments")
    check_str("play", play, allow_none=True)
    fixed = dict(fixed or {})
    for name, control in controls.items():
        if not hasattr(control, "value"):
            raise ValueError(f"controls[{name!r}] must be an ipywidgets value widget, "
                             f"got {type(control).__name__}")
    if play is not None and play not in controls:
        raise ValueError(f"play must name one of the controls {sorted(controls)}, got {play!r}")

    if is_headless():  # fail loudly here: the callback below would swallow the exception
        render_once(plot, **{name: c.value for name, c in controls.items()}, **fixed)

    def redraw(**values) -> None:
        display(plot(**values, **fixed))  # return None: a returned Figure would show twice

    output = ipywidgets.interactive_output(redraw, dict(controls))
    rows = list(controls.values())
    if play is not None:
        slider = controls[play]
        player = ipywidgets.Play(value=slider.value, min=slider.min, max=slider.max,
                                 step=slider.step, interval=150, description="play")
        ipywidgets.jslink((player, "value"), (slider, "value"))
        rows = [ipywidgets.HBox([player, slider])] + [c for n, c in controls.items() if n != play]
    return ipywidgets.VBox([*rows, output])
