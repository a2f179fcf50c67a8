"""Chapter 4's exercises (``notebooks/04_self_modifying``): Delta Gradient Descent by hand.

Use as ``from nlbook.exercises import self_modifying as ex``; ``ex.check_dgd_step(fn)``,
``ex.answer("huge_step", prediction)``, ``ex.solution("dgd_step")``.
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
from nlbook.selfmod import dgd_proximal_closed_form, dgd_step

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "check_dgd_step", "check_effective_step",
           "experiment", "reveal", "solution"]


def _case(seed: int):
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 3, dtype=torch.float64, generator=generator)
    x = 2.0 * torch.randn(3, dtype=torch.float64, generator=generator)
    grad_y = torch.randn(4, dtype=torch.float64, generator=generator)
    return W, x, grad_y


@checker("effective_step")
def check_effective_step(learner_fn: Callable[[float, torch.Tensor], float]) -> CheckResult:
    """``learner_fn(lr, x)`` must return η′ = lr / (1 + lr ‖x‖²) (arXiv A-eq 57)."""
    for seed, lr in ((0, 0.5), (1, 2.0), (2, 0.01)):
        _, x, _ = _case(seed)
        what = f"effective_step(lr={lr}, x) with ‖x‖² = {float(x.dot(x)):.3f}"
        got = expect_number(what, learner_fn(lr, x.clone()))
        want = lr / (1 + lr * float(x.dot(x)))
        if abs(got - want) > 1e-10:
            paper = lr / (1 + lr)
            if abs(got - paper) < 1e-10:
                hint = " That is the paper's η/(1+η), exact only when ‖x‖ = 1."
            elif abs(got - lr / (1 + lr * float(x.norm()))) < 1e-10:
                hint = " Sherman–Morrison needs the squared norm ‖x‖² = xᵀx, not ‖x‖."
            else:
                hint = " Sherman–Morrison: (I + η x xᵀ)⁻¹ = I − η′ x xᵀ; solve for η′."
            raise AssertionError(f"{what}: expected η′ = {want:.6f}, got {got:.6f}.{hint}")
    return "η′ = η / (1 + η‖x‖²), Sherman–Morrison's factor."


@checker("dgd_step")
def check_dgd_step(learner_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """``learner_fn(W, x, grad_y, lr)`` must return one DGD step (A-eq 57) for W (d_out, d_in)."""
    for seed, lr in ((0, 0.5), (1, 3.0)):
        W, x, grad_y = _case(seed)
        what = f"dgd_step(W, x, grad_y, lr={lr})"
        got = expect_tensor(what, learner_fn(W.clone(), x.clone(), grad_y.clone(), lr),
                            tuple(W.shape))
        want = dgd_step(W, x, grad_y, lr)
        if (got - want).abs().max() > 1e-9:
            lr_prime = lr / (1 + lr * x.dot(x))
            if (got - (W - lr * torch.outer(grad_y, x))).abs().max() < 1e-9:
                raise AssertionError(f"{what} is plain GD: the erase term −η′ W x xᵀ is missing")
            if (got - (W - lr_prime * torch.outer(grad_y, x))).abs().max() < 1e-9:
                raise AssertionError(f"{what}: the write is right but the erase term "
                                     "W(I − η′xxᵀ) is missing")
            if (got - (W @ (torch.eye(3, dtype=W.dtype) - torch.outer(x, x))
                       - lr * torch.outer(grad_y, x))).abs().max() < 1e-9:
                raise AssertionError(f"{what} uses the NeurIPS print's W(I − xxᵀ): the erase "
                                     "needs η′ too")
        compare(what, got, want, "Erase along x with η′ = lr/(1 + lr‖x‖²), then write −η′ "
                                 "grad_y xᵀ.")
        closed = dgd_proximal_closed_form(W, x, grad_y, lr)
        compare(f"{what} (against the proximal closed form)", got, closed,
                "DGD must equal the exact proximal step (W + η u xᵀ)(I + η x xᵀ)⁻¹.")
    return "your step equals the proximal solution (W + η u xᵀ)(I + η x xᵀ)⁻¹."


QUESTIONS = {
    "huge_step": Question(
        {"a": "about W x: a step that big is clipped to nothing",
         "b": "something huge: the weights blow up",
         "c": "exactly the target u = −∇_y L",
         "d": "zero"},
        "c",
        """As η → ∞, η′ = η/(1 + η‖x‖²) → 1/‖x‖², and W_new x = W x − η′‖x‖² (W x + ∇_y L)
        → −∇_y L = u. The proximal step solves the regression W x = u exactly, and it changes W
        only along x (the change has norm about ‖W x − u‖/‖x‖). Plain GD with the same η would
        move W by η ∇_y L xᵀ, millions of times too far. DGD's step size saturates; GD's does
        not."""),
    "rank": Question(
        {"a": "1", "b": "6", "c": "10", "d": "0"},
        "b",
        """Every token adds a rank-1 change (one key, one target), but ten rank-1 changes in
        different directions add up to a matrix of rank min(10, 6, 8) = 6, the most a 6 × 8
        matrix can have. "Rank 1" limits what one token can write, not what a context can: a
        self-modifying layer can reshape all of its weights within a few tokens."""),
}
SOLUTIONS = solutions.BY_CHAPTER["self_modifying"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
