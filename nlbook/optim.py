"""Optimizers as associative memories (chapter 2; arXiv 2512.24695 §4 and §7.2).

Every optimizer here is a ``torch.optim.Optimizer`` whose state is a *memory of gradients*: an
inner level that is trained, one gradient step at a time, on an inner objective over the
gradient stream, and whose output the outer level writes into the weights. Each class docstring
gives that inner objective and the paper equation ("A-eq k" = arXiv equation k, "N-eq k" =
NeurIPS equation k).

Conventions: every parameter tensor has its own memory (as in ``torch.optim``); "flattened"
means the tensor viewed as one vector. The momentum of the paper, ``m_{i+1} = α m_i − η g_i``
and ``W_{i+1} = W_i + m_{i+1}`` (A-eq 33–35), is stored in *parameter units* (it already holds
the −η factor).

Choices where the paper is open (also stated in the notebook):

- ``DeltaMomentum`` uses the flattened form ``m ← α m − (m·ĝ) ĝ − η P g`` with the *normalised*
  gradient ĝ = g/‖g‖ in the decay term (N-eq 22 and A-eq 49 differ in where P sits and neither
  normalises; unnormalised g makes the recurrence expand when ‖g‖² > 1 + α).
- ``DeepMomentum``: the inner objective is the dot-product objective ⟨M_φ(G), G⟩ of plain
  momentum with a key: see its docstring.
- ``M3`` follows Algorithm 1 (not A-eq 75), with √V + ε and running *sums* by default
  (``moments="ema"`` is the alternative many repositories use).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from nlbook._checks import check_positive_int, check_scalar_in_range

__all__ = [
    "M3",
    "OPTIMIZER_NAMES",
    "TOY_PROBLEMS",
    "AdamMemory",
    "DeepMomentum",
    "DeltaMomentum",
    "MomentumMemory",
    "Muon",
    "PreconditionedMomentum",
    "benchmark_optimizers",
    "continual_stream",
    "gradients_for_mass",
    "linear_layer_surprise_step",
    "make_optimizer",
    "max_difference_to_torch",
    "momentum_cumulative_weight",
    "momentum_weighted_sum",
    "newton_schulz",
    "run_toy_problem",
    "toy_landscape",
]

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


def _check_preconditioner(preconditioner: str | Callable) -> None:
    if not callable(preconditioner):
        _check_choice("preconditioner", preconditioner, ["identity", "rms"])


# --------------------------------------------------------------------------------------------
# shared machinery


class _MemoryOptimizer(Optimizer):
    """Loop over parameters that have a gradient and call ``_update`` on each (no grad)."""

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
        return preconditioner(grad, state)
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
    if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2:
        shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix)
        raise ValueError(f"matrix must be a 2-D tensor (r, c), got {shape}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    a, b, c = coefficients
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


# --------------------------------------------------------------------------------------------
# level 2: momentum


class MomentumMemory(_MemoryOptimizer):
    r"""SGD with momentum written as a two-level memory (A-eq 33–37; N-eq 7–10).

    Inner level, the momentum memory m (shape of the parameter), trained on the gradient stream
    by one gradient step of size η on the key-less dot-product objective with an ℓ2 retention:

        ℓ_i(m) = ⟨m, g_i⟩ + (1 − α)/(2η) ‖m‖²   ⇒   m_{i+1} = α m_i − η g_i   (A-eq 34)

    Outer level: W_{i+1} = W_i + m_{i+1} (A-eq 33). Unrolled, m_{i+1} = −η Σ_j α^{i−j} g_j.

    Numerically identical to ``torch.optim.SGD(params, lr, momentum)`` (no dampening, no
    Nesterov) at a constant learning rate. Deviation: m stores −η·(torch's buffer), so a learning
    rate changed mid-run (a scheduler) scales only new writes, as in the paper's equation.

    Args:
        params: parameters or parameter groups.
        lr: η ≥ 0, the memory's write strength.
        momentum: α ∈ [0, 1), the memory's retention.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9) -> None:
        _check_lr(lr)
        _check_retention("momentum", momentum)
        super().__init__(params, {"lr": lr, "momentum": momentum})

    def _update(self, param, grad, state, group) -> None:
        memory = _zeros_state(state, "momentum_memory", param)
        memory.mul_(group["momentum"]).add_(grad, alpha=-group["lr"])
        param.add_(memory)


class PreconditionedMomentum(_MemoryOptimizer):
    r"""Momentum whose values are preconditioned gradients (A-eq 46–47; N-eq 18–19).

    Inner objective ⟨m, P_i g_i⟩ + (1 − α)/(2η)‖m‖² ("values = P_i g_i"), one GD step:

        m_{i+1} = α m_i − η P_i g_i,        W_{i+1} = W_i + m_{i+1}.

    P_i is a memory mapping gradients into a better coordinate system (A-eq 38–41). Choices:
    ``"rms"`` (default): P = diag(1/(√v̂ + ε)) with v an EMA (β2) of g², bias-corrected, i.e.
    momentum over RMS-normalised gradients; ``"identity"``: plain :class:`MomentumMemory`; or a
    callable ``preconditioner(grad, state) -> P g`` (``state`` is this parameter's dict).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9,
                 preconditioner: str | Callable = "rms", beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        _check_lr(lr)
        _check_retention("momentum", momentum)
        _check_retention("beta2", beta2)
        _check_eps(eps)
        _check_preconditioner(preconditioner)
        super().__init__(params, {"lr": lr, "momentum": momentum, "beta2": beta2, "eps": eps,
                                  "preconditioner": preconditioner})

    def _update(self, param, grad, state, group) -> None:
        memory = _zeros_state(state, "momentum_memory", param)
        memory.mul_(group["momentum"]).add_(_precondition(grad, state, group),
                                            alpha=-group["lr"])
        param.add_(memory)


class DeltaMomentum(PreconditionedMomentum):
    r"""Delta-rule momentum: the momentum memory with an L2 inner objective (A-eq 48–49; N-eq 22).

    Flattened form (m, g as vectors of the parameter's size), with the normalised gradient
    ĝ = g/‖g‖ in the decay term:

        ℓ_i(m) = ½⟨m, ĝ_i⟩² + η⟨m, P_i g_i⟩ + (1 − α)/2 ‖m‖²,   one GD step of size 1:
        m_{i+1} = α m_i − (m_i·ĝ_i) ĝ_i − η P_i g_i,        W_{i+1} = W_i + m_{i+1}.

    The delta term erases what the memory holds along the current gradient before writing the
    new value. (αI − ĝĝᵀ) has eigenvalues α (across ĝ) and α − 1 (along ĝ), both in (−1, 1]:
    the recurrence is stable for any gradient scale, and the old component along the current
    gradient is kept only as a small reversed remainder (α − 1 = −0.1 at α = 0.9). It is a
    descent method in the sense of the write: the new value is −η P g, so from an empty memory
    the step is −η P g (mistake 4 of the reference notes, an ascent sign, is avoided). It is
    *not* SGD at α = 0: the erase term still acts on the previous memory. P as in
    :class:`PreconditionedMomentum`, ``"identity"`` by default. A zero gradient erases nothing.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9,
                 preconditioner: str | Callable = "identity", beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        # Same hyper-parameters as PreconditionedMomentum; only the default P and _update differ.
        super().__init__(params, lr, momentum, preconditioner, beta2, eps)

    def _update(self, param, grad, state, group) -> None:
        memory = _zeros_state(state, "momentum_memory", param)
        norm = grad.norm()
        erase = None
        if norm > 0:
            unit = grad / norm
            erase = unit * torch.sum(memory * unit)  # (m_i·ĝ) ĝ, read before the write
        memory.mul_(group["momentum"])
        if erase is not None:
            memory.sub_(erase)
        memory.add_(_precondition(grad, state, group), alpha=-group["lr"])
        param.add_(memory)


class AdamMemory(_MemoryOptimizer):
    r"""Adam as an associative memory of gradients and their squares (A-App. B, A-eq 101–107).

    Per coordinate, the memory m answers the element-wise L2 problem
    min_m Σ_i (m g_i − p)² + λ m², whose solution m* = p Σ g_i / (Σ g_i² + λ) with the value
    p = √(Σ g_i²) and λ → 0 is Σ g_i / √(Σ g_i²): a sum of gradients over the root of a sum of
    squares. Its two moments are themselves memories trained by one GD step per gradient:
    the first on ½‖M − g_i‖² (step 1 − β1, i.e. an EMA), the second on ½‖V − g_i²‖² (step
    1 − β2). They update at the same frequency and independently: one level (Def. 2).

    ``moments="ema"`` (default): identical to ``torch.optim.Adam(lr, betas, eps)``,

        M ← β1 M + (1−β1) g,  V ← β2 V + (1−β2) g²,  W ← W − η (M/(1−β1ᵗ)) / (√(V/(1−β2ᵗ)) + ε).

    ``moments="sum"``: the paper's reading (sums, no bias correction),
    M ← M + β1 g, V ← V + β2 g², W ← W − η M/(√V + ε). Steps then grow like √t for a constant
    gradient: it is the closed form above, not a practical optimizer.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 moments: str = "ema") -> None:
        _check_lr(lr)
        _check_betas(betas, 2)
        _check_eps(eps)
        _check_choice("moments", moments, ["ema", "sum"])
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "moments": moments})

    def _update(self, param, grad, state, group) -> None:
        beta1, beta2 = group["betas"]
        first = _zeros_state(state, "first_moment", param)
        second = _zeros_state(state, "second_moment", param)
        if group["moments"] == "sum":
            first.add_(grad, alpha=beta1)
            second.addcmul_(grad, grad, value=beta2)
            param.addcdiv_(first, second.sqrt().add_(group["eps"]), value=-group["lr"])
            return
        first.lerp_(grad, 1 - beta1)
        second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"]
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        denominator = (second.sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
        param.addcdiv_(first, denominator, value=-group["lr"] / bias_correction1)


def _check_betas(betas: Sequence[float], count: int) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != count:
        raise ValueError(f"betas must be a tuple of {count} numbers, got {betas!r}")
    for index, beta in enumerate(betas):
        _check_retention(f"betas[{index}]", beta)


class DeepMomentum(_MemoryOptimizer):
    r"""Deep momentum gradient descent, DMGD (A-eq 50; N-eq 23): the momentum is a small MLP.

    Each parameter tensor, viewed as a matrix G ∈ R^{r×c} (rows = output units; a 1-D tensor is
    one row), gets a memory M_φ with φ = (B, K, V): B ∈ R^{r×c} (a plain momentum buffer),
    key weights K ∈ R^{h×c} and value weights V ∈ R^{c×h}. Reading the memory at gradient G:

        M_φ(G) = B + F(G) Vᵀ,   F(G) = tanh(Ĝ Kᵀ)/√h   (r, h),   Ĝ = G with unit-norm rows.

    Inner objective (our choice; the paper only sketches ⟨m(u_i), 1⟩ as an example):
    the dot-product objective of momentum, now with keys, ℓ_i(φ) = ⟨M_φ(G_i), G_i⟩_F. Why:
    (1) its gradient in B is G_i, so the B part is exactly :class:`MomentumMemory`;
    (2) its gradient in V is G_iᵀ F(G_i), so the deep part is a linear-attention memory whose
    keys are (learned) features of the gradient rows and whose values are the gradient rows:
    reading it at the current gradient recalls past gradients *similar* to the current one
    (momentum weighted by similarity instead of only by age); (3) tanh features bound it, so
    the retention α keeps it finite (a dot-product objective is unbounded below, as the
    reference notes say). One inner GD step per outer step (computed with autograd):

        B ← α B − η ∇_B ℓ,   V ← α V − (η_mem/r) ∇_V ℓ,   K ← K − (η_mem/r) ∇_K ℓ,
        W ← W + M_φ(G_i)  (read with the updated φ, as W_{i+1} = W_i + m_{i+1}).

    The keys K carry no retention (α would shrink them to zero and the features with them); the
    1/r makes the deep write a mean over rows. V starts at zero, so the first step is plain
    momentum; with ``memory_lr=0`` the optimizer *is* :class:`MomentumMemory`. K starts
    N(0, 1) from a generator seeded by ``seed`` (in parameter order).

    What the deep part remembers: tanh is odd, so a past gradient −g recalls like +g and the
    read is close to (Σ_j α^{i−j} g_j g_jᵀ-like) G_i, a learned second-moment memory that adds
    step length along directions seen often. Along an oscillating, high-curvature direction
    that destabilises (measured on the chapter's quadratic), hence the small default
    η_mem = 0.1 η.

    Args:
        lr: η, write strength of the momentum buffer B.
        momentum: α ∈ [0, 1).
        hidden: h, the width of the memory MLP.
        memory_lr: η_mem ≥ 0 for K and V (``None``: 0.1 ``lr``).
        seed: seed of the key initialisation.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, hidden: int = 8,
                 memory_lr: float | None = None, seed: int = 0) -> None:
        _check_lr(lr)
        _check_retention("momentum", momentum)
        check_positive_int("hidden", hidden)
        if memory_lr is not None:
            check_scalar_in_range("memory_lr", memory_lr, 0.0, _INFINITY)
        super().__init__(params, {"lr": lr, "momentum": momentum, "hidden": hidden,
                                  "memory_lr": 0.1 * lr if memory_lr is None else memory_lr})
        self._generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def _features(gradient_matrix: torch.Tensor, key_weights: torch.Tensor) -> torch.Tensor:
        row_norms = gradient_matrix.norm(dim=1, keepdim=True)
        unit_rows = gradient_matrix / torch.where(row_norms > 0, row_norms, 1.0)
        return torch.tanh(unit_rows @ key_weights.T) / math.sqrt(key_weights.shape[0])

    def _update(self, param, grad, state, group) -> None:
        rows = param.shape[0] if param.ndim >= 2 else 1
        gradient_matrix = grad.reshape(rows, -1)
        columns = gradient_matrix.shape[1]
        if "key_weights" not in state:
            keys = torch.randn(group["hidden"], columns, generator=self._generator,
                               dtype=torch.float64)
            state["key_weights"] = keys.to(dtype=param.dtype, device=param.device)
            state["value_weights"] = torch.zeros(columns, group["hidden"], dtype=param.dtype,
                                                 device=param.device)
        buffer = _zeros_state(state, "momentum_memory", param)
        with torch.enable_grad():
            key_weights = state["key_weights"].detach().requires_grad_(True)
            value_weights = state["value_weights"].detach().requires_grad_(True)
            bias = buffer.detach().reshape(rows, columns).requires_grad_(True)
            read = bias + self._features(gradient_matrix, key_weights) @ value_weights.T
            objective = torch.sum(read * gradient_matrix)  # ℓ_i(φ) = ⟨M_φ(G_i), G_i⟩
            grad_bias, grad_keys, grad_values = torch.autograd.grad(
                objective, [bias, key_weights, value_weights])
        momentum, memory_step = group["momentum"], group["memory_lr"] / rows
        buffer.mul_(momentum).add_(grad_bias.reshape(param.shape), alpha=-group["lr"])
        state["value_weights"].mul_(momentum).add_(grad_values, alpha=-memory_step)
        state["key_weights"].add_(grad_keys, alpha=-memory_step)
        deep_read = self._features(gradient_matrix, state["key_weights"]) @ \
            state["value_weights"].T
        param.add_(buffer).add_(deep_read.reshape(param.shape))


def _muon_lr_scale(shape: torch.Size, adjust_lr_fn: str | None) -> float:
    rows, columns = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, columns))
    return math.sqrt(max(1.0, rows / columns))  # Keller Jordan's "original" scaling


class Muon(_MemoryOptimizer):
    r"""Muon: a momentum memory read through a Newton–Schulz non-linearity (A-eq 42, 52).

    Inner level: the momentum memory m, one GD step of size 1 − μ on ½‖m − g_i‖² (an EMA,
    m ← μ m + (1 − μ) g_i). Its read-out passes through the output non-linearity σ = NS_k, k
    Newton–Schulz steps, itself a memory minimising ‖Oᵀ O − I‖²_F (A-eq 43–44):

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
        if len(ns_coefficients) != 3:
            raise ValueError(f"ns_coefficients must be 3 numbers (a, b, c), got {ns_coefficients}")
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

    Inner objectives: with sums, M1 takes one GD step of size β1 on −⟨M1, g_t⟩ (momentum's
    dot-product objective with retention 1), V one of size β2 on −⟨V, g_t²⟩ and M2 one of size
    β3 on −⟨M2, Σ_chunk g_i⟩; with EMAs each is one step of size 1 − β on ½‖M − value‖².
    O2 starts at 0 and a refreshed O2 is first used at step t + 1 (Algorithm 1's low-frequency
    loop, the timing of [KMC]). Choices, as the reference notes ask:

    - ``moments="sum"`` (default): Algorithm 1 literally, running *sums* without decay (so M1
      never forgets; NS makes O1 scale-free and √V grows like √t: AdaGrad-like steps).
      ``moments="ema"``: M1 ← β1 M1 + (1−β1) g, V ← β2 V + (1−β2) g², M2 ← β3 M2 +
      (1−β3)·(chunk mean), no bias correction: the reading of several repositories.
    - Denominator √V + ε (three of four sources), not √(V + ε).
    - NS: the quintic of :class:`Muon` in the parameter's precision (``ns_precision``).
    - Parameters with ≥ 2 dimensions are viewed as (shape[0], −1) for NS. 0-D and 1-D
      parameters (biases, norms) skip NS: O = M, i.e. an Adam-like (M1 + α M2)/(√V + ε) step.
    """

    def __init__(self, params: Iterable, lr: float = 0.02,
                 betas: tuple[float, float, float] = (0.9, 0.999, 0.9), alpha: float = 1.0,
                 slow_every: int = 10, ns_steps: int = 5, eps: float = 1e-8,
                 moments: str = "sum",
                 ns_coefficients: tuple[float, float, float] = MUON_COEFFICIENTS,
                 ns_precision: str = "param") -> None:
        _check_lr(lr)
        _check_choice("moments", moments, ["sum", "ema"])
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
        super().__init__(params, {
            "lr": lr, "betas": tuple(betas), "alpha": alpha, "slow_every": slow_every,
            "ns_steps": ns_steps, "eps": eps, "moments": moments,
            "ns_coefficients": tuple(ns_coefficients), "ns_precision": ns_precision})

    @staticmethod
    def _orthogonalise(momentum: torch.Tensor, group: dict) -> torch.Tensor:
        if momentum.ndim < 2:
            return momentum.clone()
        matrix = momentum.reshape(momentum.shape[0], -1)
        orthogonal = newton_schulz(matrix, group["ns_steps"], group["ns_coefficients"],
                                   1e-7, _PRECISIONS.get(group["ns_precision"]))
        return orthogonal.to(momentum.dtype).reshape(momentum.shape)

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
        if state["step"] % group["slow_every"] == 0:  # the low-frequency level
            if summed:
                slow.add_(chunk, alpha=beta3)
            else:
                slow.mul_(beta3).add_(chunk, alpha=(1 - beta3) / group["slow_every"])
            slow_output.copy_(self._orthogonalise(slow, group))
            chunk.zero_()


# --------------------------------------------------------------------------------------------
# level 1 and the memory length of momentum


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


# --------------------------------------------------------------------------------------------
# toy problems, the explorer, the continual-learning stream, the benchmark

OPTIMIZER_NAMES = ("momentum", "adam", "preconditioned", "delta", "deep", "muon", "m3")


def make_optimizer(name: str, params: Iterable, lr: float, momentum: float = 0.9) -> Optimizer:
    """Build one of :data:`OPTIMIZER_NAMES` from a learning rate and a momentum.

    ``momentum`` is α for the momentum family, β1 for Adam, μ for Muon (weight decay 0 here)
    and β1 = β3 for M3 (default sums: NS makes O1 scale-free, so β only rescales).
    """
    _check_choice("name", name, OPTIMIZER_NAMES)
    if name == "momentum":
        return MomentumMemory(params, lr, momentum)
    if name == "adam":
        return AdamMemory(params, lr, betas=(momentum, 0.999))
    if name == "preconditioned":
        return PreconditionedMomentum(params, lr, momentum)
    if name == "delta":
        return DeltaMomentum(params, lr, momentum)
    if name == "deep":
        return DeepMomentum(params, lr, momentum)
    if name == "muon":
        return Muon(params, lr, momentum, weight_decay=0.0)
    return M3(params, lr, betas=(momentum, 0.999, momentum))


def _rotated_quadratic(point: torch.Tensor) -> torch.Tensor:
    # Hessian R diag(1, 20) Rᵀ with R a 30° rotation: condition number 20, not axis-aligned
    angle = math.pi / 6
    u = math.cos(angle) * point[..., 0] + math.sin(angle) * point[..., 1]
    v = -math.sin(angle) * point[..., 0] + math.cos(angle) * point[..., 1]
    return 0.5 * (u**2 + 20.0 * v**2)


def _rosenbrock(point: torch.Tensor) -> torch.Tensor:
    return (1 - point[..., 0]) ** 2 + 100.0 * (point[..., 1] - point[..., 0] ** 2) ** 2


# name -> (loss of a (..., 2) tensor, start point, minimum, plot box (x0, x1, y0, y1))
TOY_PROBLEMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], tuple[float, float],
                              tuple[float, float], tuple[float, float, float, float]]] = {
    "quadratic": (_rotated_quadratic, (-2.0, 1.5), (0.0, 0.0), (-2.5, 2.5, -2.0, 2.0)),
    "rosenbrock": (_rosenbrock, (-1.5, 1.5), (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0)),
}


def run_toy_problem(name: str, problem: str = "quadratic", lr: float = 0.01,
                    momentum: float = 0.9, steps: int = 200):
    """Optimise a 2-D toy problem from its fixed start with ``make_optimizer(name, ...)``.

    The point is a (1, 2) float64 parameter (so Muon and M3 see a matrix). A run that leaves
    |p| < 1e3 or turns non-finite stops; the rest is NaN.

    Returns:
        (path (steps + 1, 2), losses (steps + 1,)) as numpy float64 arrays.
    """
    import numpy as np

    _check_choice("problem", problem, list(TOY_PROBLEMS))
    check_positive_int("steps", steps)
    loss_fn, start, _, _ = TOY_PROBLEMS[problem]
    point = torch.tensor([start], dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer(name, [point], lr, momentum)
    path = np.full((steps + 1, 2), np.nan)
    losses = np.full(steps + 1, np.nan)
    for step in range(steps + 1):
        loss = loss_fn(point)[0]
        if not torch.isfinite(loss) or point.detach().abs().max() > 1e3:
            break
        path[step] = point.detach()[0].numpy()
        losses[step] = loss.item()
        if step == steps:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return path, losses


def continual_stream(optimizers: dict[str, Callable[[Iterable], Optimizer]], *,
                     tasks: int = 3, switch_every: int = 50, steps: int = 600,
                     input_dim: int = 8, hidden: int = 32, output_dim: int = 4,
                     batch: int = 32, shared: float = 0.5, seed: int = 0) -> dict:
    r"""A continual-learning stream: the regression task changes every ``switch_every`` steps.

    Tasks are linear teachers y = A_k x/√d with A_k = √s A_shared + √(1−s) A_own,k (s =
    ``shared``: overlapping, not orthogonal, subspaces) visited in the cycle 0, 1, ..., K−1, 0,
    ... A tanh MLP student (d → hidden → output_dim, identical initial weights for every
    optimizer) takes one step per fresh batch of the current task.

    Args:
        optimizers: label -> factory ``params -> Optimizer``.

    Returns:
        ``{"task": (steps,) task index per step, label: {"loss": (steps,) loss on the current
        batch before the step, "final_task_losses": (tasks,) loss of the final model on each
        task}}`` (numpy arrays; test batches of 1024 from a separate generator).
    """
    import numpy as np

    for name, value in (("tasks", tasks), ("switch_every", switch_every), ("steps", steps),
                        ("input_dim", input_dim), ("hidden", hidden),
                        ("output_dim", output_dim), ("batch", batch)):
        check_positive_int(name, value)
    check_scalar_in_range("shared", shared, 0.0, 1.0)
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn(output_dim, input_dim, generator=generator)
    teachers = [math.sqrt(shared) * common + math.sqrt(1 - shared)
                * torch.randn(output_dim, input_dim, generator=generator) for _ in range(tasks)]
    teachers = [teacher / math.sqrt(input_dim) for teacher in teachers]
    initial = torch.nn.Sequential(torch.nn.Linear(input_dim, hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(hidden, output_dim))
    with torch.no_grad():
        for param in initial.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5
                        / math.sqrt(param.shape[-1]))
    task_of_step = (np.arange(steps) // switch_every) % tasks
    test_generator = torch.Generator().manual_seed(seed + 1)
    test_inputs = [torch.randn(1024, input_dim, generator=test_generator) for _ in teachers]
    results: dict[str, Any] = {"task": task_of_step}
    for label, factory in optimizers.items():
        model = torch.nn.Sequential(torch.nn.Linear(input_dim, hidden), torch.nn.Tanh(),
                                    torch.nn.Linear(hidden, output_dim))
        model.load_state_dict(initial.state_dict())
        optimizer = factory(model.parameters())
        data = torch.Generator().manual_seed(seed + 2)  # the same stream for every optimizer
        losses = np.empty(steps)
        for step in range(steps):
            inputs = torch.randn(batch, input_dim, generator=data)
            targets = inputs @ teachers[task_of_step[step]].T
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[step] = loss.item()
        with torch.no_grad():
            final = [torch.nn.functional.mse_loss(model(x), x @ teacher.T).item()
                     for x, teacher in zip(test_inputs, teachers, strict=True)]
        results[label] = {"loss": losses, "final_task_losses": np.array(final)}
    return results


def benchmark_optimizers(width: int = 256, depth: int = 3, batch: int = 64,
                         repeats: int = 5, min_seconds: float = 0.2) -> dict[str, float]:
    """Time ``optimizer.step()`` of every optimizer on one bias-free MLP (float32, CPU).

    Gradients are computed once; each timing is the median over ``repeats`` of the mean step
    time in a loop of at least ``min_seconds``. Prints one line per optimizer with its time
    relative to ``torch.optim.SGD(lr, momentum=0.9)`` measured in the same run.

    Returns:
        label -> seconds per step.
    """
    import statistics

    for name, value in (("width", width), ("depth", depth), ("batch", batch),
                        ("repeats", repeats)):
        check_positive_int(name, value)
    generator = torch.Generator().manual_seed(0)
    layers = [torch.nn.Linear(width, width, bias=False) for _ in range(depth)]
    model = torch.nn.Sequential(*[module for layer in layers
                                  for module in (layer, torch.nn.Tanh())])
    inputs = torch.randn(batch, width, generator=generator)
    model(inputs).square().mean().backward()
    params = list(model.parameters())
    factories: dict[str, Callable[[], Optimizer]] = {
        "torch.optim.SGD": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
        "torch.optim.Adam": lambda: torch.optim.Adam(params, lr=1e-3),
        "torch.optim.Muon": lambda: torch.optim.Muon(params, lr=1e-3),
        "MomentumMemory": lambda: MomentumMemory(params, lr=1e-3),
        "AdamMemory": lambda: AdamMemory(params, lr=1e-3),
        "PreconditionedMomentum": lambda: PreconditionedMomentum(params, lr=1e-3),
        "DeltaMomentum": lambda: DeltaMomentum(params, lr=1e-3),
        "DeepMomentum": lambda: DeepMomentum(params, lr=1e-3),
        "Muon": lambda: Muon(params, lr=1e-3),
        "M3": lambda: M3(params, lr=1e-3),
    }
    seconds: dict[str, float] = {}
    for label, factory in factories.items():
        optimizer = factory()
        optimizer.step()  # warm-up, and creates the state
        samples = []
        for _ in range(repeats):
            calls, start = 0, time.perf_counter()
            while True:
                optimizer.step()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            samples.append(elapsed / calls)
        seconds[label] = statistics.median(samples)
    baseline = seconds["torch.optim.SGD"]
    print(f"model: {depth} bias-free Linear({width}, {width}) + tanh, float32; "
          f"step() only, gradients fixed")
    for label, value in seconds.items():
        print(f"{label:>24}: {value * 1e3:8.3f} ms/step   {value / baseline:6.2f}x SGD")
    return seconds


def toy_landscape(problem: str, resolution: int = 120) -> dict:
    """The loss of a toy problem on a grid over its plot box, for contour plots.

    Returns:
        ``{"x": (resolution,), "y": (resolution,), "loss": (resolution, resolution) indexed
        [y, x], "start": (2,), "minimum": (2,), "name": problem}`` as numpy arrays.
    """
    import numpy as np

    _check_choice("problem", problem, list(TOY_PROBLEMS))
    check_positive_int("resolution", resolution)
    loss_fn, start, minimum, (x0, x1, y0, y1) = TOY_PROBLEMS[problem]
    xs = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    ys = torch.linspace(y0, y1, resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return {"x": xs.numpy(), "y": ys.numpy(), "loss": loss_fn(grid).numpy(),
            "start": np.array(start), "minimum": np.array(minimum), "name": problem}


def max_difference_to_torch(make_ours: Callable[[Iterable], Optimizer],
                            make_torch: Callable[[Iterable], Optimizer], *, steps: int = 100,
                            bias: bool = True, reload_at: int | None = 50,
                            seed: int = 0) -> float:
    """Train two copies of a small float64 MLP (6 → 12 → 3, tanh) on the same random
    regression batches, one with each optimizer, and return the largest parameter difference.

    At ``reload_at`` both optimizers are rebuilt from a deep copy of their ``state_dict()``
    (a save/load halfway). ``bias=False`` keeps every parameter 2-D (for Muon).
    """
    import copy

    check_positive_int("steps", steps)
    finals = []
    for make in (make_ours, make_torch):
        generator = torch.Generator().manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(6, 12, bias=bias), torch.nn.Tanh(),
                                    torch.nn.Linear(12, 3, bias=bias)).double()
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(0.5 * torch.randn(param.shape, generator=generator,
                                              dtype=torch.float64))
        optimizer = make(model.parameters())
        for step in range(steps):
            if step == reload_at:
                saved = copy.deepcopy(optimizer.state_dict())
                optimizer = make(model.parameters())
                optimizer.load_state_dict(saved)
            inputs = torch.randn(16, 6, generator=generator, dtype=torch.float64)
            targets = torch.randn(16, 3, generator=generator, dtype=torch.float64)
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(inputs), targets).backward()
            optimizer.step()
        finals.append(torch.cat([param.detach().flatten() for param in model.parameters()]))
    return (finals[0] - finals[1]).abs().max().item()
