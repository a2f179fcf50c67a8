"""The course's exercises, one module per chapter, plus their solutions.

Per chapter (``from nlbook.exercises import associative_memory as ex``):

- ``ex.check_*(your_function)`` checks an implement-it exercise: it calls your function on small
  inputs, compares with nlbook's answer and raises ``AssertionError`` with a hint when the
  result is wrong (a missing ``return``, a transposed result, NaN entries, a flipped sign...).
  A function that still raises ``NotImplementedError`` is reported as "not done yet" without an
  error, so "Run all" on an untouched notebook runs to the end.
- ``ex.answer(name, prediction)`` compares your prediction for a predict-then-run question with
  what happened and explains it; ``ex.reveal(name)`` explains without a prediction.
- ``ex.solution(name)`` prints one solution (they live in :mod:`nlbook.exercises.solutions`,
  out of the notebooks' reading path).

The same three functions exist here for every chapter at once: ``nlbook.exercises.answer``,
``reveal`` and ``solution`` find the question or exercise by name.
"""

from __future__ import annotations

import importlib

__all__ = ["CHAPTERS", "answer", "reveal", "solution"]

#: The chapter modules, in course order.
CHAPTERS = ("levels", "associative_memory", "nested_optimizers", "muon_m3", "continuum_memory",
            "self_modifying", "hope_block", "tiny_shakespeare", "what_memory_buys")


def _chapter_with(kind: str, name: str):
    for chapter in CHAPTERS:
        module = importlib.import_module(f"nlbook.exercises.{chapter}")
        table = module.QUESTIONS if kind == "question" else module.SOLUTIONS
        key = name.removeprefix("check_").removeprefix("my_") if kind == "exercise" else name
        if key in table:
            return module
    raise ValueError(f"name must name a {kind} of one of the chapters {list(CHAPTERS)}, got "
                     f"{name!r}")


def answer(name: str, prediction: object = None) -> None:
    """``answer`` of the chapter that asks question ``name``."""
    _chapter_with("question", name).answer(name, prediction)


def reveal(name: str) -> None:
    """``reveal`` of the chapter that asks question ``name``."""
    _chapter_with("question", name).reveal(name)


def solution(name: str) -> None:
    """``solution`` of the chapter that sets exercise ``name``."""
    _chapter_with("exercise", name).solution(name)
