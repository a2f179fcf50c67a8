"""One colour per model, used by every figure of the course.

A reader who has learnt that HOPE is blue must find it blue in the next figure too. Every plot
function that draws a model, an optimizer or a reference line asks :func:`model_color` for its
colour; labels are matched by name, so "HOPE validation" and "hope" are HOPE, and "M3 sum,
α=0 (lr 0.001)" is the "M3 sum, α=0" variant. Labels the palette does not know get colours
from a fallback cycle that avoids the palette colours already used in the same figure.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.colors

from nlbook._checks import ArgumentTypeError, describe

__all__ = ["MODEL_COLORS", "colors_for", "model_color"]

#: Model (or reference line, optimizer, rule) name -> matplotlib colour.
MODEL_COLORS: dict[str, str] = {
    # chapters 5-6: the two language models and the lines of models that learn nothing
    "HOPE": "tab:blue",
    "Transformer": "tab:orange",
    "uniform": "0.45",
    "bigram": "tab:green",
    "3-gram KN": "tab:olive",
    "4-gram KN": "tab:cyan",
    "5-gram KN": "tab:purple",
    "6-gram KN": "tab:pink",
    "7-gram KN": "tab:brown",
    # chapter 7: HOPE with a part removed, and the chance level of a task
    "HOPE without in-context CMS updates": "tab:green",
    "HOPE without in-context updates": "tab:red",
    "chance": "0.45",
    # chapter 1: memory rules
    "Hebbian": "tab:blue",
    "delta rule, β = 1": "tab:orange",
    "delta rule, β = 0.5": "tab:green",
    "Titans": "tab:red",
    "least squares": "0.2",
    # chapter 2: optimizers (nlbook.optim.OPTIMIZER_NAMES) and the M3 variants of the stream
    "momentum": "tab:blue",
    "adam": "tab:orange",
    "preconditioned": "tab:green",
    "delta": "tab:red",
    "deep": "tab:purple",
    "muon": "tab:brown",
    "m3": "tab:pink",
    "M3 sum, α=1": "tab:pink",
    "M3 sum, α=0": "tab:olive",
    "M3 ema, α=1": "tab:cyan",
    "M3 ema, α=0": "tab:gray",
    # chapter 3: the forgetting experiment's models
    "one level": "tab:blue",
    "naive CMS": "tab:orange",
    "slow + reset fast": "tab:green",
}

_FALLBACK = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
             "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


def _palette_key(label: str) -> str | None:
    """The longest palette name that ``label`` is, or starts with (followed by a space or a
    punctuation mark), ignoring case."""
    text = str(label).strip().lower()
    best = None
    for name in MODEL_COLORS:
        key = name.lower()
        if text == key or (text.startswith(key) and not text[len(key)].isalnum()):
            if best is None or len(key) > len(best):
                best = name
    return best


def model_color(label: str) -> str | None:
    """The palette colour of the model named by ``label``, or None if the palette does not know
    it (e.g. ``model_color("HOPE validation") == MODEL_COLORS["HOPE"]``)."""
    if not isinstance(label, str):
        raise ArgumentTypeError(f"label must be a str, got {describe(label)}")
    key = _palette_key(label)
    return None if key is None else MODEL_COLORS[key]


def colors_for(labels: Iterable[str]) -> list[str]:
    """One colour per label: the palette's where it knows the model, otherwise the next colour
    of a fallback cycle that no other label of the same figure uses."""
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise ArgumentTypeError(f"labels must be an iterable of str, got {describe(labels)}")
    labels = list(labels)
    for index, label in enumerate(labels):
        if not isinstance(label, str):
            raise ArgumentTypeError(f"labels[{index}] must be a str, got {describe(label)}")
    known = [model_color(label) for label in labels]
    used = {matplotlib.colors.to_hex(color) for color in known if color is not None}
    spare = [color for color in _FALLBACK if matplotlib.colors.to_hex(color) not in used]
    spare = spare or _FALLBACK
    result, next_spare = [], 0
    for color in known:
        if color is None:
            color = spare[next_spare % len(spare)]
            next_spare += 1
        result.append(color)
    return result
