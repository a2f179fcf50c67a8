"""Checkers for chapter 4 (``notebooks/04_self_modifying``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nlbook.selfmod import dgd_proximal_closed_form, dgd_step

__all__ = ["check_dgd_step", "check_effective_step"]


def _case(seed: int):
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 3, dtype=torch.float64, generator=generator)
    x = 2.0 * torch.randn(3, dtype=torch.float64, generator=generator)
    grad_y = torch.randn(4, dtype=torch.float64, generator=generator)
    return W, x, grad_y


def check_effective_step(learner_fn: Callable[[float, torch.Tensor], float]) -> bool:
    """``learner_fn(lr, x)`` must return η′ = lr / (1 + lr ‖x‖²) (arXiv A-eq 57)."""
    for seed, lr in ((0, 0.5), (1, 2.0), (2, 0.01)):
        _, x, _ = _case(seed)
        got = float(learner_fn(lr, x))
        want = lr / (1 + lr * float(x.dot(x)))
        if abs(got - want) > 1e-10:
            paper = lr / (1 + lr)
            hint = (" That is the paper's η/(1+η), exact only when ‖x‖ = 1."
                    if abs(got - paper) < 1e-10 else "")
            raise AssertionError(f"for lr = {lr}, ‖x‖² = {float(x.dot(x)):.3f} expected "
                                 f"η′ = {want:.6f}, got {got:.6f}.{hint}")
    print("Correct: η′ = η / (1 + η‖x‖²), Sherman–Morrison's factor.")
    return True


def check_dgd_step(learner_fn: Callable[..., torch.Tensor]) -> bool:
    """``learner_fn(W, x, grad_y, lr)`` must return one DGD step (A-eq 57) for W (d_out, d_in)."""
    for seed, lr in ((0, 0.5), (1, 3.0)):
        W, x, grad_y = _case(seed)
        got = learner_fn(W.clone(), x.clone(), grad_y.clone(), lr)
        if not isinstance(got, torch.Tensor) or got.shape != W.shape:
            raise AssertionError(f"return a tensor of shape {tuple(W.shape)}, got "
                                 f"{getattr(got, 'shape', type(got))}")
        want = dgd_step(W, x, grad_y, lr)
        if (got - want).abs().max() > 1e-9:
            gd = W - lr * torch.outer(grad_y, x)
            if (got - gd).abs().max() < 1e-9:
                raise AssertionError("that is plain GD: the erase term −η′ W x xᵀ is missing.")
            lr_prime = lr / (1 + lr * x.dot(x))
            no_erase = W - lr_prime * torch.outer(grad_y, x)
            if (got - no_erase).abs().max() < 1e-9:
                raise AssertionError("the write is right but the erase term W(I − η′xxᵀ) is "
                                     "missing.")
            raise AssertionError(f"max difference {float((got - want).abs().max()):.3g} from "
                                 "W(I − η′xxᵀ) − η′ grad_y xᵀ with η′ = lr/(1 + lr‖x‖²).")
        closed = dgd_proximal_closed_form(W, x, grad_y, lr)
        assert (got - closed).abs().max() < 1e-9
    print("Correct: your step equals the proximal solution (W + η u xᵀ)(I + η x xᵀ)⁻¹.")
    return True
