"""Chapter 0's exercises: write one update as the argmin of an inner objective, and sort
components into levels by their update frequency.

Use as ``from nlbook.exercises import levels as ex``; ``ex.check_hebbian_step(fn)``,
``ex.answer("proximal_weight", prediction)``, ``ex.solution("levels_of")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nlbook.exercises import solutions
from nlbook.exercises._core import (
    Chapter,
    CheckResult,
    Question,
    checker,
    compare,
    expect_number,
    expect_tensor,
)
from nlbook.levels import Component, assign_levels

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "check_hebbian_step", "check_levels_of",
           "experiment", "reveal", "solution"]


@checker("hebbian_step")
def check_hebbian_step(hebbian_step: Callable) -> CheckResult:
    """Check ``hebbian_step(S, k, v, beta) -> S_new``: the argmin over S of
    −⟨Sᵀk, v⟩ + ‖S − S_t‖² / (2β), i.e. S_new = S + β k vᵀ, with S (d_k, d_v)."""
    generator = torch.Generator().manual_seed(0)
    for beta in (1.0, 0.3):
        state = torch.randn(4, 3, generator=generator, dtype=torch.float64)
        key = torch.randn(4, generator=generator, dtype=torch.float64)
        value = torch.randn(3, generator=generator, dtype=torch.float64)
        what = f"hebbian_step(S, k, v, beta={beta})"
        got = expect_tensor(what, hebbian_step(state.clone(), key.clone(), value.clone(), beta),
                            (4, 3))
        expected = state + beta * torch.outer(key, value)
        if (got - (state - beta * torch.outer(key, value))).abs().max() < 1e-9:
            raise AssertionError(f"{what} has the wrong sign: the inner objective is −⟨Sᵀk, v⟩, "
                                 "and a step *descends* it, so the write adds along k")
        if (got - beta * torch.outer(key, value)).abs().max() < 1e-9:
            raise AssertionError(f"{what} forgot the old memory: the proximal term keeps S "
                                 "close to S_t, so the new memory is S_t plus the write")
        compare(what, got, expected, "Set the gradient of the whole objective to zero: "
                "−k vᵀ + (S − S_t)/β = 0.")
    return "S_new = S + β k vᵀ: one gradient step on −⟨Sᵀk, v⟩, which is linear attention."


@checker("levels_of")
def check_levels_of(levels_of: Callable) -> CheckResult:
    """Check ``levels_of(frequencies) -> list of levels`` for independent components (no one
    needs another's state): level 1 for the highest frequency, equal frequencies share one."""
    cases = ([1.0, 1 / 1024, 1 / 32], [0.5, 0.5, 0.25], [1 / 16, 1.0, 1 / 16, 1 / 4], [2.0])
    for frequencies in cases:
        components = [Component(f"c{index}", frequency, ())
                      for index, frequency in enumerate(frequencies)]
        table = assign_levels(components)
        expected = [table[f"c{index}"] for index in range(len(frequencies))]
        what = f"levels_of({frequencies})"
        got = levels_of(list(frequencies))
        if got is None:
            expect_number(what, got)  # the missing-return hint
        if not isinstance(got, (list, tuple)) or len(got) != len(frequencies):
            raise AssertionError(f"{what} must return a list with one level per frequency "
                                 f"({len(frequencies)} here), got {got!r}")
        numbers = [expect_number(f"{what}[{index}]", level) for index, level in enumerate(got)]
        if numbers == expected:
            continue
        highest = max(expected)
        if numbers == [highest + 1 - level for level in expected]:
            raise AssertionError(f"{what} returned {numbers}, expected {expected}: the order is "
                                 "reversed. Level 1 is the *fastest* (highest frequency)")
        if len(set(numbers)) == len(numbers) and len(set(expected)) < len(expected):
            raise AssertionError(f"{what} returned {numbers}, expected {expected}: components "
                                 "with the same frequency share one level")
        raise AssertionError(f"{what} returned {numbers}, expected {expected}: sort the "
                             "distinct frequencies from high to low and number them from 1")
    return "level = rank of the frequency among the distinct frequencies, 1 the fastest."


QUESTIONS = {
    "proximal_weight": Question(
        {"a": "at the same place",
         "b": "ten times closer to W_t, in the same direction",
         "c": "exactly at W_t",
         "d": "ten times further from W_t"},
        "b",
        """The argmin of ⟨g, W⟩ + ‖W − W_t‖² / (2η) is W_t − η g: the proximal weight 1/η sets
        how far the step may go. Ten times the weight is a tenth of the step, along the same
        direction −g. The proximal term is the learning rate, written as a cost of moving
        away from what the memory held."""),
    "cms_levels": Question(
        {"a": "3", "b": "2", "c": "1", "d": "16"},
        "b",
        """A level is a frequency class, not a position in the chain: the two blocks updated
        every 16 tokens share a level (level 2), and the block updated every token is level 1.
        Three blocks, two frequencies, two levels."""),
}
SOLUTIONS = solutions.BY_CHAPTER["levels"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
