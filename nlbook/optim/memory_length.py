"""A gradient step as a memory write, and the memory length of momentum: the surprise step of
a linear layer and how far back momentum remembers."""

from __future__ import annotations

import torch

from nlbook._checks import (
    ArgumentTypeError,
    check_same_dtype_device,
    check_scalar_in_range,
    check_shape,
    check_tensor,
    describe,
)
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
    check_tensor("weight", weight, ndim=2, layout="(d_out, d_in)", dtype="float")
    d_out, d_in = weight.shape
    check_shape("inputs", inputs, (None, d_in), "(B, d_in) with d_in of weight")
    check_shape("output_gradients", output_gradients, (inputs.shape[0], d_out),
                "(B, d_out) with B of inputs and d_out of weight")
    check_same_dtype_device("weight", weight, inputs=inputs, output_gradients=output_gradients)
    for name, tensor in (("inputs", inputs), ("output_gradients", output_gradients)):
        check_tensor(name, tensor, dtype="float")
    _check_lr(lr)
    return weight - lr * output_gradients.T @ inputs


def momentum_weighted_sum(gradients: torch.Tensor, lr: float, momentum: float) -> torch.Tensor:
    r"""The unrolled momentum memory m_T = −η Σ_{j=1..T} α^{T−j} g_j (reference for A-eq 34).

    Args:
        gradients: (T, ...) the gradient stream, oldest first.

    Returns:
        m_T with the shape of one gradient; a slow loop in float64 (a reference, not a kernel).
    """
    check_tensor("gradients", gradients, layout="(T, ...)", dtype="float")
    if gradients.ndim < 1 or gradients.shape[0] < 1:
        raise ValueError(f"gradients must be a tensor (T, ...) with T >= 1, got shape "
                         f"{tuple(gradients.shape)}")
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

    if isinstance(count, torch.Tensor):
        count = count.detach().cpu().numpy()
    if isinstance(count, bool) or count is None or isinstance(count, (str, bytes)):
        raise ArgumentTypeError(f"count must be an int or an array of ints, got "
                                f"{describe(count)}")
    counts = np.asarray(count)
    if not np.issubdtype(counts.dtype, np.integer):
        raise ArgumentTypeError(f"count must be an int or an array of ints, got dtype "
                                f"{counts.dtype}")
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
