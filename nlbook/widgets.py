"""Thin ipywidgets explorers over the pure plots in :mod:`nlbook.viz`.

A plot function takes keyword arguments and returns a matplotlib ``Figure``. :func:`explore`
wires it to controls and redraws on every change. ipywidgets catches any exception raised in a
callback and hides it inside the widget state, so under tests (``nlbook.is_headless()``) the
explorer also calls the plot once directly and draws it: a broken plot then fails the run.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import matplotlib.figure

from nlbook import is_headless

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

    return ipywidgets.IntSlider(value=value, min=low, max=high, step=step,
                                description=description, continuous_update=False,
                                style=LABEL_STYLE)


def float_slider(value: float, low: float, high: float, step: float, description: str = "",
                 readout_format: str = ".3g"):
    """A float slider that redraws when released."""
    import ipywidgets

    return ipywidgets.FloatSlider(value=value, min=low, max=high, step=step,
                                  description=description, continuous_update=False,
                                  readout_format=readout_format, style=LABEL_STYLE)


def dropdown(options, value=None, description: str = ""):
    """A drop-down menu; ``options`` is a list of labels or (label, value) pairs."""
    import ipywidgets

    return ipywidgets.Dropdown(options=options, value=value, description=description,
                               style=LABEL_STYLE)


def multi_select(options, value=(), description: str = ""):
    """A list from which several entries can be picked, tall enough to show every option
    (ipywidgets shows 5 rows by default and hides the rest, selected ones included)."""
    import ipywidgets

    options = list(options)
    return ipywidgets.SelectMultiple(options=options, value=tuple(value), rows=len(options),
                                     description=description, style=LABEL_STYLE)


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
