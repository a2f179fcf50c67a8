"""Momentum as a memory of gradients, and its richer memories: preconditioned, delta,
Adam and deep momentum (arXiv §4, A-eq 33–52)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from nlbook._checks import check_positive_int, check_scalar_in_range
from nlbook.optim._base import (
    _INFINITY,
    _check_betas,
    _check_choice,
    _check_eps,
    _check_lr,
    _check_preconditioner,
    _check_retention,
    _MemoryOptimizer,
    _precondition,
    _zeros_state,
)


class MomentumMemory(_MemoryOptimizer):
    r"""SGD with momentum written as a two-level memory (A-eq 33–37; N-eq 7–10).

    Inner level (level 1: written first at each step), the momentum memory m (shape of the
    parameter), trained on the gradient stream
    by one gradient step of size η on the key-less dot-product objective with an ℓ2 retention:

        ℓ_i(m) = ⟨m, g_i⟩ + (1 − α)/(2η) ‖m‖²   ⇒   m_{i+1} = α m_i − η g_i   (A-eq 34)

    Outer level (level 2: same frequency, but it needs m_{i+1} of the same step, Def. 2):
    W_{i+1} = W_i + m_{i+1} (A-eq 33). Unrolled, m_{i+1} = −η Σ_j α^{i−j} g_j.

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
    the step is −η P g (a descent step: writing +η P g would climb the loss). It is
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
    the retention α keeps it finite (a dot-product objective is unbounded below: the paper's
    example objective ⟨m(u), 1⟩ has no minimum). One inner GD step per outer step (computed
    with autograd):

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
