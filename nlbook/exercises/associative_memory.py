"""Checkers for chapter 1's exercises: write one memory update by hand."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nlbook.memory import delta_rule, reference_titans_memory

__all__ = ["check_delta_step", "check_titans_step"]


def _example(seed: int, key_dim: int = 4, value_dim: int = 3):
    generator = torch.Generator().manual_seed(seed)
    state = torch.randn(key_dim, value_dim, generator=generator, dtype=torch.float64)
    key = F.normalize(torch.randn(key_dim, generator=generator, dtype=torch.float64), dim=0)
    value = torch.randn(value_dim, generator=generator, dtype=torch.float64)
    return state, key, value


def _compare(name: str, got, expected: torch.Tensor, hint: str) -> None:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{name} must be a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        raise AssertionError(f"{name} has shape {tuple(got.shape)}, expected "
                             f"{tuple(expected.shape)} (S is (d_k, d_v): keys index rows)")
    difference = (got.double() - expected).abs().max().item()
    if difference > 1e-9:
        raise AssertionError(f"{name} is off by {difference:.3g}. {hint}")


def check_delta_step(delta_step: Callable) -> bool:
    """Check ``delta_step(S, k, v, beta, decay) -> S_new`` for one token.

    Expected: S_new = decay (I - beta k kᵀ) S + beta k vᵀ, with S (d_k, d_v) (arXiv eq. 65).
    """
    for seed, (beta, decay) in enumerate([(1.0, 1.0), (0.3, 1.0), (0.7, 0.9)]):
        state, key, value = _example(seed)
        one = torch.ones(1, 1, 1, dtype=torch.float64)
        _, expected = delta_rule(key.reshape(1, 1, 1, -1), key.reshape(1, 1, 1, -1),
                                 value.reshape(1, 1, 1, -1), beta * one, decay=decay * one,
                                 initial_state=state[None, None])
        got = delta_step(state.clone(), key.clone(), value.clone(), beta, decay)
        hint = ("With beta=1, decay=1 the memory must return v for k (erase, then write)."
                if seed == 0 else
                "Remember the erase term -beta k (kᵀ S) and that decay multiplies before it.")
        _compare(f"delta_step with beta={beta}, decay={decay}", got, expected[0, 0], hint)
    print("check_delta_step: correct. S_new = α (I − β k kᵀ) S + β k vᵀ")
    return True


def check_titans_step(titans_step: Callable) -> bool:
    """Check ``titans_step(M, S, k, v, lr, momentum, forget) -> (M_new, S_new)`` for one token.

    Expected (Titans eq. 13-14 with ℓ = ½‖Mᵀk - v‖²): S_new = momentum S - lr k (Mᵀk - v)ᵀ,
    M_new = (1 - forget) M + S_new.
    """
    for seed, (lr, momentum, forget) in enumerate([(0.5, 0.0, 0.0), (0.3, 0.9, 0.1)]):
        memory, key, value = _example(seed)
        surprise = 0.1 * memory.flip(0)
        one = torch.ones(1, 1, 1, dtype=torch.float64)
        _, (expected_memory, expected_surprise) = reference_titans_memory(
            key.reshape(1, 1, 1, -1), key.reshape(1, 1, 1, -1), value.reshape(1, 1, 1, -1),
            lr * one, momentum * one, forget * one,
            initial_state=(memory[None, None], surprise[None, None]))
        result = titans_step(memory.clone(), surprise.clone(), key.clone(), value.clone(), lr,
                             momentum, forget)
        if not isinstance(result, tuple) or len(result) != 2:
            raise AssertionError("titans_step must return the pair (M_new, S_new)")
        _compare("S_new", result[1], expected_surprise[0, 0],
                 "S_new = momentum * S - lr * k (Mᵀk - v)ᵀ: the gradient is taken at the old M.")
        _compare("M_new", result[0], expected_memory[0, 0],
                 "M_new = (1 - forget) * M + S_new: Titans' α forgets (0 keeps everything).")
    print("check_titans_step: correct. Momentum carries past surprise; α forgets.")
    return True
