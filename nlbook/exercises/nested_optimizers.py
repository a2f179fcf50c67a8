"""Exercise checkers for chapter 2, optimizers as associative memories.

Use as ``from nlbook.exercises import nested_optimizers as ex; ex.check_momentum_step(fn)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["check_delta_momentum_step", "check_gradients_for_mass", "check_momentum_step"]


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
        got = learner(memory.clone(), gradient.clone(), lr, momentum)
        want = reference(memory, gradient, lr, momentum)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise AssertionError(f"{name} must return a tensor of shape {tuple(want.shape)}, "
                                 f"got {getattr(got, 'shape', type(got))}")
        if not torch.allclose(got.double(), want, atol=1e-10):
            if torch.allclose(got.double(), -want, atol=1e-10):
                raise AssertionError(f"{name}: the sign is flipped. {hint}")
            error = (got.double() - want).abs().max().item()
            raise AssertionError(
                f"{name}: wrong for lr={lr}, momentum={momentum} (max error {error:.3g}). {hint}")


def check_momentum_step(learner: Callable) -> bool:
    """``learner(m, g, lr, momentum) -> m_new``: one step of the momentum memory (A-eq 34),
    m_new = α m − η g (the inner objective ⟨m, g⟩ with retention α)."""
    def reference(memory, gradient, lr, momentum):
        return momentum * memory - lr * gradient

    _compare("momentum step", learner, reference,
             "The memory keeps α of itself and writes −η·g (a descent direction).")
    print("momentum step: correct (m ← α m − η g).")
    return True


def check_gradients_for_mass(learner: Callable) -> bool:
    """``learner(beta, fraction) -> n``: the smallest n with 1 − βⁿ ≥ fraction."""
    for beta, fraction in ((0.9, 0.5), (0.9, 0.99), (0.5, 0.75), (0.99, 0.5), (0.95, 0.9)):
        count, weight = 0, 0.0
        while weight < fraction:
            count += 1
            weight = 1 - beta**count
        got = learner(beta, fraction)
        if got != count:
            hint = (" Off by one: the last n gradients carry 1 − βⁿ; you need the *first* n "
                    "where that reaches the fraction (the paper makes this slip too)."
                    if isinstance(got, int) and abs(got - count) == 1 else "")
            raise AssertionError(f"beta={beta}, fraction={fraction}: expected {count}, "
                                 f"got {got!r}.{hint}")
    print("gradients for mass: correct (β = 0.9: 7 gradients for 50%, 44 for 99%).")
    return True


def check_delta_momentum_step(learner: Callable) -> bool:
    """``learner(m, g, lr, momentum) -> m_new`` for flattened vectors (A-eq 49, normalised):
    m_new = α m − (m·ĝ) ĝ − η g with ĝ = g/‖g‖."""
    def reference(memory, gradient, lr, momentum):
        unit = gradient / gradient.norm()
        return momentum * memory - (memory @ unit) * unit - lr * gradient

    _compare("delta momentum step", learner, reference,
             "Erase along the *normalised* gradient ĝ = g/‖g‖, using the old m, then write −η g.")
    print("delta momentum step: correct (m ← α m − (m·ĝ) ĝ − η g).")
    return True
