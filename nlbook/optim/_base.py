"""Shared machinery of the chapter-2 optimizers: argument checks, the memory-optimizer
base class, preconditioning and the Newton-Schulz orthogonalisation."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from nlbook._checks import (
    ArgumentTypeError,
    check_int,
    check_scalar_in_range,
    check_tensor,
    describe,
)

MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan's quintic, also torch.optim.Muon's
_PRECISIONS = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
_INFINITY = float("inf")


# --------------------------------------------------------------------------------------------
# argument checks


def _check_lr(lr: float) -> None:
    check_scalar_in_range("lr", lr, 0.0, _INFINITY)


def _check_retention(name: str, value: float) -> None:
    check_scalar_in_range(name, value, 0.0, 1.0, high_inclusive=False)


def _check_eps(eps: float) -> None:
    check_scalar_in_range("eps", eps, 0.0, _INFINITY, low_inclusive=False)


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_coefficients(name: str, coefficients: Any) -> tuple[float, float, float]:
    """The (a, b, c) of the quintic Newton-Schulz iteration: three finite numbers."""
    if isinstance(coefficients, (str, bytes)) or not isinstance(coefficients, (tuple, list)) \
            or len(coefficients) != 3:
        raise ValueError(f"{name} must be 3 numbers (a, b, c), got {describe(coefficients)}")
    return tuple(check_scalar_in_range(f"{name}[{index}]", value, -math.inf, math.inf)
                 for index, value in enumerate(coefficients))  # type: ignore[return-value]


def _check_params(params: Any) -> None:
    if params is None or isinstance(params, (str, bytes, numbers.Number, torch.Tensor)) \
            or not hasattr(params, "__iter__"):
        raise ArgumentTypeError(f"params must be an iterable of tensors or parameter-group "
                                f"dicts (e.g. model.parameters()), got {describe(params)}")


def _check_preconditioner(preconditioner: str | Callable) -> None:
    if not callable(preconditioner):
        _check_choice("preconditioner", preconditioner, ["identity", "rms"])


# --------------------------------------------------------------------------------------------
# shared machinery


class _MemoryOptimizer(Optimizer):
    """Loop over parameters that have a gradient and call ``_update`` on each (no grad)."""

    def __init__(self, params: Any, defaults: dict) -> None:
        _check_params(params)
        super().__init__(params, defaults)

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict,
                group: dict) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One outer step. ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[param]
                state["step"] = state.get("step", 0) + 1
                self._update(param, param.grad, state, group)
        return loss


def _zeros_state(state: dict, name: str, like: torch.Tensor) -> torch.Tensor:
    if name not in state:
        state[name] = torch.zeros_like(like, memory_format=torch.preserve_format)
    return state[name]


def _precondition(grad: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
    """P_i g_i for the preconditioned momenta: identity, RMS (a bias-corrected EMA of g²,
    P = diag(1/(√v̂ + ε))), or a user callable ``preconditioner(grad, state) -> P g``."""
    preconditioner = group["preconditioner"]
    if callable(preconditioner):
        value = preconditioner(grad, state)
        # A wrong shape would broadcast into the update: refused, naming the callable.
        if not isinstance(value, torch.Tensor) or value.shape != grad.shape \
                or not value.is_floating_point():
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else \
                type(value).__name__
            raise ValueError(f"preconditioner must return P g, a float tensor of the gradient's "
                             f"shape {tuple(grad.shape)}, got {shape}")
        return value
    if preconditioner == "identity":
        return grad
    beta2 = group["beta2"]
    second_moment = _zeros_state(state, "second_moment", grad)
    second_moment.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction = 1 - beta2 ** state["step"]
    return grad / ((second_moment / bias_correction).sqrt_().add_(group["eps"]))


def newton_schulz(matrix: torch.Tensor, steps: int = 5,
                  coefficients: tuple[float, float, float] = MUON_COEFFICIENTS,
                  eps: float = 1e-7, compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately orthogonalise ``matrix`` (r, c): U Vᵀ of its SVD, singular values → ~1.

    The quintic Newton–Schulz iteration X ← a X + (b XXᵀ + c (XXᵀ)²) X from X₀ = G/‖G‖_F,
    on the wide orientation (transposed when r > c). NL reads it as a memory that minimises
    ‖Oᵀ O − I‖²_F by gradient steps (A-eq 43–44); with the coefficients of Keller Jordan's Muon
    (also ``torch.optim.Muon``'s) the singular values land in about [0.7, 1.2], not exactly 1.

    Args:
        matrix: (r, c) tensor.
        steps: number of iterations (≥ 0).
        coefficients: (a, b, c) of the quintic.
        eps: the Frobenius norm is clamped below at ``eps`` before dividing.
        compute_dtype: dtype of the iteration (``torch.bfloat16`` reproduces torch's Muon);
            ``None`` keeps ``matrix.dtype``. The result has ``compute_dtype``.

    Returns:
        (r, c) tensor.
    """
    check_tensor("matrix", matrix, ndim=2, layout="(r, c)", dtype="float")
    check_int("steps", steps, low=0)
    a, b, c = _check_coefficients("coefficients", coefficients)
    _check_eps(eps)
    if compute_dtype is not None and (not isinstance(compute_dtype, torch.dtype)
                                      or not compute_dtype.is_floating_point):
        raise ArgumentTypeError(f"compute_dtype must be a floating-point torch.dtype or None, "
                                f"got {describe(compute_dtype)}")
    x = matrix.to(compute_dtype) if compute_dtype is not None else matrix.clone()
    tall = matrix.shape[0] > matrix.shape[1]
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b·A + c·A²
        x = torch.addmm(x, polynomial, x, beta=a)  # a·X + (b·A + c·A²)·X
    return x.T if tall else x

def _check_betas(betas: Sequence[float], count: int) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != count:
        raise ValueError(f"betas must be a tuple of {count} numbers, got {betas!r}")
    for index, beta in enumerate(betas):
        _check_retention(f"betas[{index}]", beta)
