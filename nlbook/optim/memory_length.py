"""A gradient step as a memory write, and the memory length of momentum: the surprise step of
a linear layer and how far back momentum remembers."""

from __future__ import annotations

import torch

from nlbook._checks import check_scalar_in_range
from nlbook.optim._base import (
    _check_lr,
    _check_retention,
)


def linear_layer_surprise_step(weight: torch.Tensor, inputs: torch.Tensor,
                               output_gradients: torch.Tensor, lr: float) -> torch.Tensor:
    r"""One GD step of a linear layer y = W x as a memory write (A-eq 8–9, 29–31; N-eq 2–6).

    W_{t+1} = W_t − η Σ_b δ_b x_bᵀ = argmin_W Σ_b ⟨W x_b, δ_b⟩ + ‖W − W_t‖²_F/(2η): the layer
    maps each input x_b (key) to its local surprise signal δ_b = ∇_{y_b} L (value).

    Args:
        weight: W, (d_out, d_in).
        inputs: x, (B, d_in).
        output_gradients: δ = ∂L/∂y, (B, d_out).
        lr: η ≥ 0.

    Returns:
        The new weight, (d_out, d_in).
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be a 2-D tensor (d_out, d_in), got "
                         f"{getattr(weight, 'shape', type(weight))}")
    d_out, d_in = weight.shape
    for name, tensor, width in (("inputs", inputs, d_in), ("output_gradients",
                                                          output_gradients, d_out)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2 or tensor.shape[1] != width:
            raise ValueError(f"{name} must have shape (B, {width}), got "
                             f"{tuple(getattr(tensor, 'shape', ()))}")
    if inputs.shape[0] != output_gradients.shape[0]:
        raise ValueError(f"inputs and output_gradients must share B, got {inputs.shape[0]} "
                         f"and {output_gradients.shape[0]}")
    _check_lr(lr)
    return weight - lr * output_gradients.T @ inputs


def momentum_weighted_sum(gradients: torch.Tensor, lr: float, momentum: float) -> torch.Tensor:
    r"""The unrolled momentum memory m_T = −η Σ_{j=1..T} α^{T−j} g_j (reference for A-eq 34).

    Args:
        gradients: (T, ...) the gradient stream, oldest first.

    Returns:
        m_T with the shape of one gradient; a slow loop in float64 (a reference, not a kernel).
    """
    if not isinstance(gradients, torch.Tensor) or gradients.ndim < 1:
        raise ValueError("gradients must be a tensor (T, ...) of at least one dimension")
    _check_lr(lr)
    _check_retention("momentum", momentum)
    steps = gradients.shape[0]
    total = torch.zeros_like(gradients[0], dtype=torch.float64)
    for index in range(steps):
        total += momentum ** (steps - 1 - index) * gradients[index].double()
    return -lr * total


def momentum_cumulative_weight(momentum: float, count):
    r"""Fraction of an EMA's total weight carried by its last ``count`` gradients: 1 − βⁿ.

    The i-th most recent gradient (i = 0, 1, ...) weighs β^i(1 − β) (A §4.3). ``count`` may be
    an int or an array of ints; the result has its shape.
    """
    _check_retention("momentum", momentum)
    import numpy as np

    counts = np.asarray(count)
    if np.any(counts < 0):
        raise ValueError(f"count must be non-negative, got {count!r}")
    result = 1.0 - momentum ** counts.astype(np.float64)
    return float(result) if result.ndim == 0 else result


def gradients_for_mass(momentum: float, fraction: float) -> int:
    r"""Smallest n with 1 − βⁿ ≥ ``fraction``: how many recent gradients carry that mass.

    β = 0.9 gives 7 for 50% and 44 for 99% (the paper says 6 and 43: off by one).
    """
    _check_retention("momentum", momentum)
    check_scalar_in_range("fraction", fraction, 0.0, 1.0, high_inclusive=False)
    count, weight = 0, 0.0
    while weight < fraction:  # exact counting, no logarithm rounding at the boundary
        count += 1
        weight = 1.0 - momentum**count
        if count > 10_000_000:
            raise ValueError(f"momentum {momentum} needs over 10^7 gradients for {fraction}")
    return count
