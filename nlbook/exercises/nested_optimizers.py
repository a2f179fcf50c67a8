"""Chapter 2's exercises: optimizers as associative memories.

Use as ``from nlbook.exercises import nested_optimizers as ex``; ``ex.check_momentum_step(fn)``,
``ex.answer("long_memory", prediction)``, ``ex.solution("momentum_step")``.
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

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "check_delta_momentum_step",
           "check_gradients_for_mass", "check_momentum_step", "experiment", "reveal", "solution"]


def _cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, float, float]]:
    generator = torch.Generator().manual_seed(seed)
    cases = []
    for lr, momentum, scale in ((0.1, 0.9, 1.0), (0.5, 0.0, 3.0), (0.01, 0.5, 0.2)):
        memory = torch.randn(6, generator=generator, dtype=torch.float64)
        gradient = scale * torch.randn(6, generator=generator, dtype=torch.float64)
        cases.append((memory, gradient, lr, momentum))
    return cases


def _compare(name: str, learner: Callable, reference: Callable, hint: str) -> None:
    for memory, gradient, lr, momentum in _cases():
        what = f"{name}(m, g, lr={lr}, momentum={momentum})"
        want = reference(memory, gradient, lr, momentum)
        got = expect_tensor(what, learner(memory.clone(), gradient.clone(), lr, momentum),
                            tuple(want.shape))
        if (got + want).abs().max() < 1e-10:
            raise AssertionError(f"{what}: the sign is flipped. {hint}")
        if (got - (want + 2 * lr * gradient)).abs().max() < 1e-10:
            raise AssertionError(f"{what}: the sign of the write is flipped: the gradient "
                                 "points uphill, the memory must store a step downhill")
        compare(what, got, want, hint, tolerance=1e-10)


@checker("momentum_step")
def check_momentum_step(learner: Callable) -> CheckResult:
    """``learner(m, g, lr, momentum) -> m_new``: one step of the momentum memory (A-eq 34),
    m_new = α m − η g (the inner objective ⟨m, g⟩ with retention α)."""
    def reference(memory, gradient, lr, momentum):
        return momentum * memory - lr * gradient

    _compare("momentum_step", learner, reference,
             "The memory keeps a fraction (the momentum) of itself and writes a descent "
             "direction scaled by the learning rate.")
    return "m ← α m − η g."


@checker("gradients_for_mass")
def check_gradients_for_mass(learner: Callable) -> CheckResult:
    """``learner(beta, fraction) -> n``: the smallest n with 1 − βⁿ ≥ fraction."""
    for beta, fraction in ((0.9, 0.5), (0.9, 0.99), (0.5, 0.75), (0.99, 0.5), (0.95, 0.9)):
        count, weight = 0, 0.0
        while weight < fraction:
            count += 1
            weight = 1 - beta**count
        what = f"gradients_for_mass(beta={beta}, fraction={fraction})"
        got = expect_number(what, learner(beta, fraction))
        if got != count:
            if abs(got - count) == 1:
                hint = (" Off by one: the last n gradients carry 1 − βⁿ; you need the *first* "
                        "n where that reaches the fraction (the paper makes this slip too).")
            elif got != int(got):
                hint = " Count gradients: the answer is a whole number."
            else:
                hint = ""
            raise AssertionError(f"{what}: expected {count}, got {got!r}.{hint}")
    return "β = 0.9: 7 gradients for 50%, 44 for 99%."


@checker("delta_momentum_step")
def check_delta_momentum_step(learner: Callable) -> CheckResult:
    """``learner(m, g, lr, momentum) -> m_new`` for flattened vectors (A-eq 49, normalised):
    m_new = α m − (m·ĝ) ĝ − η g with ĝ = g/‖g‖."""
    def reference(memory, gradient, lr, momentum):
        unit = gradient / gradient.norm()
        return momentum * memory - (memory @ unit) * unit - lr * gradient

    def raw(memory, gradient, lr, momentum):
        return momentum * memory - (memory @ gradient) * gradient - lr * gradient

    memory, gradient, lr, momentum = _cases()[1]  # ‖g‖ ≠ 1: raw and normalised erases differ
    got = learner(memory.clone(), gradient.clone(), lr, momentum)
    if isinstance(got, torch.Tensor) and got.shape == memory.shape and \
            (got.double() - raw(memory, gradient, lr, momentum)).abs().max() < 1e-10:
        raise AssertionError("delta_momentum_step erases along the raw gradient g: normalise "
                             "it first (the erase direction must be a unit vector)")
    _compare("delta_momentum_step", learner, reference,
             "Erase along the *normalised* gradient, using the old m, then write as momentum "
             "does.")
    return "m ← α m − (m·ĝ) ĝ − η g."


QUESTIONS = {
    "long_memory": Question(
        {"a": "about 10", "b": "about 23", "c": "about 230", "d": "about 2,300"},
        "c",
        """1 − βⁿ ≥ 0.9 needs n ≥ ln 0.1 / ln 0.99 ≈ 229.1, so 230 gradients. A rule of thumb:
        an EMA with coefficient β remembers about 1/(1 − β) steps (100 here), and it takes
        ln 10 ≈ 2.3 times that to gather 90% of its weight. At β = 0.9 the same count is 22."""),
    "adam_scale": Question(
        {"a": "100 times larger", "b": "10 times larger", "c": "the same",
         "d": "100 times smaller"},
        "c",
        """Adam divides its first moment (a sum of gradients) by the root of its second (a sum
        of squares): multiply every gradient by 100 and both numerator and denominator grow
        100 times, so the step does not change (up to ε = 10⁻⁸). SGD with momentum, a memory
        of raw gradients, moves 100 times further. That is why Adam's learning rate is a step
        size in parameter units, and SGD's is not."""),
}
SOLUTIONS = solutions.BY_CHAPTER["nested_optimizers"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
