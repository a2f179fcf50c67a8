"""Muon and M3: momentum memories whose output is orthogonalised (arXiv §7.2,
Algorithm 1)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from nlbook._checks import check_bool, check_positive_int, check_scalar_in_range
from nlbook.optim._base import (
    _INFINITY,
    _PRECISIONS,
    MUON_COEFFICIENTS,
    _check_choice,
    _check_coefficients,
    _check_eps,
    _check_lr,
    _check_retention,
    _MemoryOptimizer,
    _zeros_state,
    newton_schulz,
)


def _muon_lr_scale(shape: torch.Size, adjust_lr_fn: str | None) -> float:
    rows, columns = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, columns))
    return math.sqrt(max(1.0, rows / columns))  # Keller Jordan's "original" scaling


class Muon(_MemoryOptimizer):
    r"""Muon: a momentum memory read through a Newton–Schulz non-linearity (A-eq 42, 52).

    Inner level (level 1; the weights are level 2): the momentum memory m, one GD step of size
    1 − μ on ½‖m − g_i‖² (an EMA, m ← μ m + (1 − μ) g_i). Its read-out passes through the output
    non-linearity σ = NS_k, k Newton–Schulz steps, itself a memory minimising ‖Oᵀ O − I‖²_F
    (A-eq 43–44):

        u = (1 − μ) g + μ m   (Nesterov; ``nesterov=False``: u = m),
        W ← (1 − η λ) W − η s · NS_k(u),   s = √max(1, rows/cols).

    Matches ``torch.optim.Muon`` (as in torch 2.13) on 2-D parameters with the same arguments:
    NS coefficients (3.4445, −4.7750, 2.0315), X₀ = u/max(‖u‖_F, eps) with eps = 1e-7, the
    iteration run in **bfloat16** (``ns_precision="bfloat16"``; ``"float32"``/``"float64"``/
    ``"param"`` run it in that precision instead, which no longer matches torch), decoupled
    weight decay with the *unscaled* η, ``adjust_lr_fn`` None/"original" or "match_rms_adamw"
    (s = 0.2 √max(rows, cols)). Only 2-D parameters are accepted (ValueError otherwise).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, weight_decay: float = 0.1,
                 ns_coefficients: tuple[float, float, float] = MUON_COEFFICIENTS,
                 eps: float = 1e-7, adjust_lr_fn: str | None = None,
                 ns_precision: str = "bfloat16") -> None:
        _check_lr(lr)
        _check_retention("momentum", momentum)
        check_positive_int("ns_steps", ns_steps)
        check_scalar_in_range("weight_decay", weight_decay, 0.0, _INFINITY)
        _check_eps(eps)
        _check_choice("adjust_lr_fn", adjust_lr_fn, [None, "original", "match_rms_adamw"])
        _check_choice("ns_precision", ns_precision, [*_PRECISIONS, "param"])
        check_bool("nesterov", nesterov)
        _check_coefficients("ns_coefficients", ns_coefficients)
        super().__init__(params, {
            "lr": lr, "momentum": momentum, "nesterov": bool(nesterov), "ns_steps": ns_steps,
            "weight_decay": weight_decay, "ns_coefficients": tuple(ns_coefficients), "eps": eps,
            "adjust_lr_fn": adjust_lr_fn, "ns_precision": ns_precision})
        for group in self.param_groups:
            for param in group["params"]:
                if param.ndim != 2:
                    raise ValueError(f"params must all be 2-D for Muon, got a parameter of "
                                     f"shape {tuple(param.shape)} (use AdamMemory for it)")

    def _update(self, param, grad, state, group) -> None:
        momentum = group["momentum"]
        memory = _zeros_state(state, "momentum_buffer", grad)
        memory.lerp_(grad, 1 - momentum)  # one GD step of size 1 − μ on ½‖m − g‖²
        read = grad.lerp(memory, momentum) if group["nesterov"] else memory
        precision = group["ns_precision"]
        orthogonal = newton_schulz(read, group["ns_steps"], group["ns_coefficients"],
                                   group["eps"], _PRECISIONS.get(precision))
        lr = group["lr"]
        param.mul_(1 - lr * group["weight_decay"])
        param.add_(orthogonal, alpha=-lr * _muon_lr_scale(param.shape, group["adjust_lr_fn"]))


class M3(_MemoryOptimizer):
    r"""Multi-scale Momentum Muon, M3 (arXiv §7.2, **Algorithm 1**; not A-eq 75).

    Two momentum memories on two time scales plus a second moment, each written by one GD
    step per gradient (one CMS applied to the optimizer): a fast M1 written every step, a slow
    M2 written once per chunk of f = ``slow_every`` steps with the chunk's gradient sum.

        every step t:  M1 ← M1 + β1 g_t,   V ← V + β2 g_t²,   O1 = NS_T(M1),
                       W ← W − η (O1 + α O2) / (√V + ε),
        when t ≡ 0 (mod f), after the step:  M2 ← M2 + β3 Σ_{chunk} g_i,   O2 = NS_T(M2).

    Levels (Def. 2/3 of the paper, level 1 the fastest): M1 and V are written every step and
    the weights need them at the same step, so M1 and V form level 1 and W level 2; M2 is
    written every f steps, less often than W: level 3.

    Inner objectives: with sums, M1 takes one GD step of size β1 on −⟨M1, g_t⟩ (momentum's
    dot-product objective with retention 1), V one of size β2 on −⟨V, g_t²⟩ and M2 one of size
    β3 on −⟨M2, Σ_chunk g_i⟩; with EMAs each is one step of size 1 − β on ½‖M − value‖².
    O2 starts at 0 and a refreshed O2 is first used at step t + 1 (Algorithm 1's low-frequency
    loop computes O2 from the previous chunk). Choices where the sources are open:

    - ``moments="sum"`` (default): Algorithm 1 literally, running *sums* without decay (so M1
      never forgets; NS makes O1 scale-free and √V grows like √t: AdaGrad-like steps).
      ``moments="ema"``: M1 ← β1 M1 + (1−β1) g, V ← β2 V + (1−β2) g², M2 ← β3 M2 +
      (1−β3)·(chunk mean), no bias correction: the reading of several repositories.
    - Denominator √V + ε (the reading of most public implementations), not √(V + ε).
    - NS: the quintic of :class:`Muon` in the parameter's precision (``ns_precision``).
    - ``orthogonal_scale``: the size of O = NS_T(M), which Algorithm 1 does not fix (NS starts
      from M/‖M‖_F, so its output has singular values ≈ 1 whatever the size of M).
      ``"unit"`` (default): that output as it is, Algorithm 1 as printed. ``"momentum"``:
      O = NS_T(M) · ‖M‖_F / ‖NS_T(M)‖_F, the orthogonalised direction with the momentum's own
      Frobenius norm.
    - Parameters with ≥ 2 dimensions are viewed as (shape[0], −1) for NS. 0-D and 1-D
      parameters (biases, norms) skip NS: O = M, i.e. an Adam-like (M1 + α M2)/(√V + ε) step.

    Why ``orthogonal_scale="momentum"`` exists: as printed, the step is homogeneous of degree
    −1 in the gradient. NS removes the gradient's size from the numerator while √V keeps it in
    the denominator, so scaling the loss by c scales every step by 1/c, and a coordinate whose
    gradient is tiny takes a huge step (the numerator is spread over the matrix by NS, the
    denominator is that coordinate's own). Measured on the tiny Transformer of ``nlbook.train``
    (gradients clipped to norm 1, entries ~1e-3): the very first step, at 1/100 of the peak
    rate in warm-up, moved the hidden matrices by 0.02-0.7 RMS per entry, more than their
    initial size. With the momentum's norm on O, O1/√V has Adam's units (degree 0: NS(M1)
    changes M1's direction, not its size) and one learning rate serves M3 and AdamW. Sums keep
    M1's whole history, so along a persistent direction the step then grows like √t: the EMA
    reading is the one that trains. ``nlbook.train`` (``optimizer="m3"``) therefore builds
    ``M3(moments="ema", orthogonal_scale="momentum")`` on the hidden matrices, AdamW on the
    rest; measured there (tiny Transformer, 300 steps at the default rate 2e-3, validation
    nats/char, 20 batches): that reading 2.29, AdamW 2.46, Muon 2.45, Algorithm 1 as printed
    3.35 (sums, unit scale), EMAs with unit scale 3.71, sums with the momentum's scale 3.04.
    The class default stays Algorithm 1 as printed, the rule chapter 2b teaches and tests
    against its two nested loops.
    """

    def __init__(self, params: Iterable, lr: float = 0.02,
                 betas: tuple[float, float, float] = (0.9, 0.999, 0.9), alpha: float = 1.0,
                 slow_every: int = 10, ns_steps: int = 5, eps: float = 1e-8,
                 moments: str = "sum",
                 ns_coefficients: tuple[float, float, float] = MUON_COEFFICIENTS,
                 ns_precision: str = "param", orthogonal_scale: str = "unit") -> None:
        _check_lr(lr)
        _check_choice("moments", moments, ["sum", "ema"])
        _check_choice("orthogonal_scale", orthogonal_scale, ["unit", "momentum"])
        if not isinstance(betas, (tuple, list)) or len(betas) != 3:
            raise ValueError(f"betas must be a tuple of 3 numbers (β1, β2, β3), got {betas!r}")
        for index, beta in enumerate(betas):  # a sum may use β = 1; an EMA needs β < 1
            check_scalar_in_range(f"betas[{index}]", beta, 0.0, 1.0,
                                  high_inclusive=moments == "sum")
        check_scalar_in_range("alpha", alpha, 0.0, _INFINITY)
        check_positive_int("slow_every", slow_every)
        check_positive_int("ns_steps", ns_steps)
        _check_eps(eps)
        _check_choice("ns_precision", ns_precision, [*_PRECISIONS, "param"])
        _check_coefficients("ns_coefficients", ns_coefficients)
        super().__init__(params, {
            "lr": lr, "betas": tuple(betas), "alpha": alpha, "slow_every": slow_every,
            "ns_steps": ns_steps, "eps": eps, "moments": moments,
            "ns_coefficients": tuple(ns_coefficients), "ns_precision": ns_precision,
            "orthogonal_scale": orthogonal_scale})

    @staticmethod
    def _orthogonalise(momentum: torch.Tensor, group: dict) -> torch.Tensor:
        if momentum.ndim < 2:
            return momentum.clone()
        matrix = momentum.reshape(momentum.shape[0], -1)
        orthogonal = newton_schulz(matrix, group["ns_steps"], group["ns_coefficients"],
                                   1e-7, _PRECISIONS.get(group["ns_precision"]))
        orthogonal = orthogonal.to(momentum.dtype)
        if group.get("orthogonal_scale", "unit") == "momentum":
            # The direction of NS, the size of M: O1/√V then has Adam's units (see the class doc).
            tiny = torch.finfo(orthogonal.dtype).tiny
            orthogonal = orthogonal * (matrix.norm() / orthogonal.norm().clamp(min=tiny))
        return orthogonal.reshape(momentum.shape)

    def _update(self, param, grad, state, group) -> None:
        beta1, beta2, beta3 = group["betas"]
        fast = _zeros_state(state, "fast_momentum", param)
        slow = _zeros_state(state, "slow_momentum", param)
        second = _zeros_state(state, "second_moment", param)
        chunk = _zeros_state(state, "chunk_gradient_sum", param)
        slow_output = _zeros_state(state, "slow_output", param)
        summed = group["moments"] == "sum"
        if summed:
            fast.add_(grad, alpha=beta1)
            second.addcmul_(grad, grad, value=beta2)
        else:
            fast.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        chunk.add_(grad)
        update = self._orthogonalise(fast, group).add_(slow_output, alpha=group["alpha"])
        param.addcdiv_(update, second.sqrt().add_(group["eps"]), value=-group["lr"])
        if state["step"] % group["slow_every"] == 0:  # the low-frequency level (level 3)
            if summed:
                slow.add_(chunk, alpha=beta3)
            else:
                slow.mul_(beta3).add_(chunk, alpha=(1 - beta3) / group["slow_every"])
            slow_output.copy_(self._orthogonalise(slow, group))
            chunk.zero_()
