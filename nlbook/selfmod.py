"""Delta Gradient Descent and self-modifying memories (chapter 4).

Behrouz et al., "Nested Learning" (arXiv 2512.24695): DGD (§4.5, A-eq 54–57), the
self-modifying layer, and self-modifying Titans (§8.1–8.2, A-eq 83–93).

Conventions. ``dgd_step`` and ``SelfModifyingLinear`` use the paper's column convention:
W (d_out, d_in), y = W x. ``SelfModifyingTitans`` works on (B, H, T, d) tensors in the row
convention of chapter 1: a linear map is stored as S = Wᵀ (d_in, d_out) and applied as z S,
so the DGD step reads S ← (α I − η′ k kᵀ) S + η′ k uᵀ. NL letters: **η is the inner learning
rate and α is the retention** (α = 1 keeps everything; Titans' α *forgets*, see reference §0.1).

Choices made where the paper is open (reference notes §5.1 and §8 item 14), as
"open choice: this module — why":

- DGD decay term: arXiv A-eq 57, η′ = η/(1 + η‖x‖²) in both terms — exact for any ‖x‖; the
  NeurIPS print W(I − xxᵀ) erases the whole x-direction at every step.
- L2 vs dot-product form: the exact proximal step of the L2 regression of a layer onto its
  self-generated target u (dgd_step with grad_y = −u). The output layer of M_□ regresses onto
  v̂_□ − k (the residual is subtracted), M_η and M_α onto v̂. For a linear memory this is the
  gated delta rule with a self-generated value (A-eq 92); the literal A-eq 93 erases twice.
- Which layer gets the rank-1 term: the layer that is written, with its own input: the output
  layer of each MLP memory (input silu(k S1)) and the linear M_η, M_α (input k). The first
  MLP layer is meta-learned only (``write_first_layer=False``). Why: writing it with the
  target a − ∂L/∂a diverged (state 1e58 after 256 tokens) with chunk 8 in float64.
- Range of η: softplus(M_η(x) + b_η) ∈ (0, ∞), b_η = softplus⁻¹(1) — DGD's η′‖x‖² < 1
  already bounds the step, so no η_max is needed.
- Range of α: sigmoid(M_α(x) + b_α) ∈ (0, 1), b_α = 3 (α ≈ 0.95) — erase eigenvalue
  α − η′‖x‖² ∈ (−1, 1).
- What α retains: the in-context change S − S_0 (S_0 the meta-learned initial state),
  ``retain_toward_initial=True``. A-eq 88's α·M decays towards 0; measured here, that drives
  every MLP memory to the identity map within a few hundred tokens (a trivial fixed point).
- v normalised like k: v̂ = M(v) must have the scale of M(k); with a raw v every write multiplies
  the memory's gain by about ‖v‖ (measured: 1e16 within 7 tokens).
- Scalar memories M_η, M_α: linear (d → 1), no residual (A-eq 89's "(·) +" cannot map R^d → R).
- Stop-gradient on v̂: inner — v̂ is a fixed target (DGD holds u fixed); outer — never detached.
  No write is detached either, so the outer loss reaches every memory's initial state
  (reference §8 item 8).
- Momentum: none (A-eq 88 has none): a chunk is then a gated delta rule, solved exactly.
- q: a fixed projection, ℓ2-normalised (reference "Decisions at a glance"); k and v normalised.
- Objective of every memory: (k_t, v̂_□) with v̂_□ = M_□(v_t) (final rule (c), as [AX8]).
- Chunking: ``chunk_size_memory`` (main) and ``chunk_size_others`` (k, v, η, α). Inside a
  chunk, keys, values, targets and gradients come from the state that ended the previous chunk
  (index C⌊(t−1)/C⌋, not the printed C⌈t/C⌉); the linear erase recurrence is solved exactly.
  Chunk size 1 is the token-by-token rule. Streaming is exact for every split (the partial
  chunk's snapshot and running state are carried in :class:`SelfModifyingState`).
- Read: o_t = M_memory,t(q_t), after token t's write (as chapter 1's ``delta_rule``).
- Fast state: per sequence and per head, never shared across the batch (§8 item 9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    check_dtype_float,
    check_positive_int,
    check_same_dtype_device,
    check_shape,
)

__all__ = [
    "SelfModifyingLinear",
    "SelfModifyingState",
    "SelfModifyingTitans",
    "correlated_stream_experiment",
    "dgd_proximal_closed_form",
    "dgd_step",
    "dgd_step_rank_k",
    "gated_delta_chunk",
    "reference_self_modifying_titans",
    "silu_derivative",
]


# --------------------------------------------------------------------------------------------
# DGD


def dgd_step(W: torch.Tensor, x: torch.Tensor, grad_y: torch.Tensor, lr, *,
             retention=1.0) -> torch.Tensor:
    """One Delta Gradient Descent step (arXiv A-eq 57), optionally with retention α (A-eq 88).

    W_new = W (α I − η′ x xᵀ) − η′ grad_y xᵀ,   η′ = lr / (1 + lr ‖x‖²).

    With α = 1 this is the *exact* solution of the proximal L2 regression step (A-eq 56)
    argmin_W ½‖W x − u‖² + (1/2 lr)‖W − W_old‖², u = −grad_y, i.e.
    (W_old + lr u xᵀ)(I + lr x xᵀ)⁻¹, by Sherman–Morrison. The NeurIPS print (N-eq 29) drops η′
    from the decay term; that is a typo (reference §3.2).

    Args:
        W: (..., d_out, d_in) weights.
        x: (..., d_in) the layer's input.
        grad_y: (..., d_out) gradient of the loss at the layer's output y = W x.
        lr: step size η > 0, a float or a tensor broadcastable to the leading dims (...).
        retention: α, a float or a tensor broadcastable to (...); 1 gives plain DGD.

    Returns:
        (..., d_out, d_in) the updated weights.
    """
    if not isinstance(W, torch.Tensor) or W.ndim < 2:
        raise ValueError(f"W must be a tensor of shape (..., d_out, d_in), got "
                         f"{getattr(W, 'shape', type(W))}")
    check_dtype_float("W", W)
    if x.shape[-1] != W.shape[-1] or x.shape[:-1] != W.shape[:-2]:
        raise ValueError(f"x must have shape (..., d_in) = {(*W.shape[:-2], W.shape[-1])}, "
                         f"got {tuple(x.shape)}")
    if grad_y.shape[-1] != W.shape[-2] or grad_y.shape[:-1] != W.shape[:-2]:
        raise ValueError(f"grad_y must have shape (..., d_out) = "
                         f"{(*W.shape[:-2], W.shape[-2])}, got {tuple(grad_y.shape)}")
    check_same_dtype_device("W", W, x=x, grad_y=grad_y)
    lr_tensor = torch.as_tensor(lr, dtype=W.dtype, device=W.device)
    if bool((lr_tensor <= 0).any()):
        raise ValueError(f"lr must be positive, got a minimum of {lr_tensor.min().item()}")
    alpha = torch.as_tensor(retention, dtype=W.dtype, device=W.device)
    lr_prime = lr_tensor / (1 + lr_tensor * (x * x).sum(-1))          # (...)
    lr_prime = lr_prime[..., None, None]
    alpha = alpha[..., None, None] if alpha.ndim else alpha
    W_x = (W @ x[..., :, None])                                       # (..., d_out, 1)
    return alpha * W - lr_prime * (W_x + grad_y[..., :, None]) @ x[..., None, :]


def dgd_proximal_closed_form(W: torch.Tensor, x: torch.Tensor, grad_y: torch.Tensor,
                             lr: float) -> torch.Tensor:
    """The proximal L2 step solved by a matrix inverse: (W + η u xᵀ)(I + η x xᵀ)⁻¹, u = −grad_y.

    A slow reference for :func:`dgd_step` (arXiv A-eq 56, before Sherman–Morrison).
    Shapes as in :func:`dgd_step` (no batching needed).
    """
    eye = torch.eye(x.shape[-1], dtype=W.dtype, device=W.device)
    u = -grad_y
    outer_xx = x[..., :, None] * x[..., None, :]
    return (W + lr * u[..., :, None] * x[..., None, :]) @ torch.linalg.inv(eye + lr * outer_xx)


def dgd_step_rank_k(W: torch.Tensor, X: torch.Tensor, grad_Y: torch.Tensor, lr) -> torch.Tensor:
    """The exact proximal step on r input/target pairs at once (rank-r DGD, via Woodbury).

    argmin_W ½ Σ_j ‖W x_j − u_j‖² + (1/2η)‖W − W_old‖² = (W_old + η U Xᵀ)(I + η X Xᵀ)⁻¹
               = W_old − η (W_old X − U)(I_r + η XᵀX)⁻¹ Xᵀ,   U = −grad_Y,

    where X (d_in, r) holds the inputs as columns. For r = 1 this is :func:`dgd_step`; for
    r > 1 it differs from r sequential rank-1 steps (the pairs are fitted jointly).

    Args:
        W: (..., d_out, d_in). X: (..., r, d_in) the r inputs. grad_Y: (..., r, d_out).
        lr: η > 0, a float or a tensor broadcastable to (...).

    Returns:
        (..., d_out, d_in).
    """
    check_dtype_float("W", W)
    if X.ndim != W.ndim or X.shape[-1] != W.shape[-1] or X.shape[:-2] != W.shape[:-2]:
        raise ValueError(f"X must have shape (..., r, d_in) with d_in = {W.shape[-1]} and the "
                         f"leading dims {tuple(W.shape[:-2])}, got {tuple(X.shape)}")
    if grad_Y.shape != (*X.shape[:-1], W.shape[-2]):
        raise ValueError(f"grad_Y must have shape (..., r, d_out) = "
                         f"{(*X.shape[:-1], W.shape[-2])}, got {tuple(grad_Y.shape)}")
    lr_tensor = torch.as_tensor(lr, dtype=W.dtype, device=W.device)
    if bool((lr_tensor <= 0).any()):
        raise ValueError(f"lr must be positive, got a minimum of {lr_tensor.min().item()}")
    lr_tensor = lr_tensor[..., None, None] if lr_tensor.ndim else lr_tensor
    rank = X.shape[-2]
    gram = torch.eye(rank, dtype=W.dtype, device=W.device) + lr_tensor * X @ X.transpose(-1, -2)
    residual = W @ X.transpose(-1, -2) + grad_Y.transpose(-1, -2)     # W X − U: (..., d_out, r)
    return W - lr_tensor * torch.linalg.solve(gram, residual, left=False) @ X


def correlated_stream_experiment(length: int = 400, dim: int = 16, correlation: float = 0.95,
                                 lrs: tuple[float, ...] = (0.1, 0.5, 1.0, 4.0), seed: int = 0,
                                 noise: float = 0.0) -> dict:
    """Online linear regression on a stream of correlated inputs: GD vs DGD (arXiv §4.5).

    Inputs x_t = ρ x_{t−1} + √(1−ρ²) ξ_t (ξ standard normal, ‖x‖² ≈ d), targets
    y_t = W* x_t (+ noise). Each rule sees one pair per step, starting from W = 0, and takes
    a step on the loss ½‖W x_t − y_t‖²: GD W − η (W x_t − y_t) x_tᵀ; DGD the exact proximal
    step :func:`dgd_step` with target u = y_t (grad_y = −y_t), which erases the old answer
    along x_t before writing. Returns {"gd": {lr: errors}, "dgd": {lr: errors}} with the prediction
    error ‖W_{t−1} x_t − y_t‖² / ‖y_t‖² *before* each step (T,), in float64.
    """
    check_positive_int("length", length)
    check_positive_int("dim", dim)
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(dim, dim, dtype=torch.float64, generator=generator) / math.sqrt(dim)
    inputs = torch.empty(length, dim, dtype=torch.float64)
    current = torch.randn(dim, dtype=torch.float64, generator=generator)
    for t in range(length):
        fresh = torch.randn(dim, dtype=torch.float64, generator=generator)
        current = correlation * current + math.sqrt(1 - correlation ** 2) * fresh
        inputs[t] = current
    outputs = inputs @ target.T
    outputs = outputs + noise * torch.randn(length, dim, dtype=torch.float64,
                                            generator=generator)
    results: dict = {"gd": {}, "dgd": {}}
    for lr in lrs:
        for rule in ("gd", "dgd"):
            weight = torch.zeros(dim, dim, dtype=torch.float64)
            errors = torch.empty(length, dtype=torch.float64)
            for t in range(length):
                x_t, y_t = inputs[t], outputs[t]
                grad_y = weight @ x_t - y_t
                errors[t] = grad_y.square().sum() / y_t.square().sum()
                if rule == "gd":
                    weight = weight - lr * torch.outer(grad_y, x_t)
                else:
                    weight = dgd_step(weight, x_t, -y_t, lr)  # regress onto u = y_t
            results[rule][lr] = errors.nan_to_num(nan=1e6, posinf=1e6).clamp(max=1e6)
    return results


def silu_derivative(a: torch.Tensor) -> torch.Tensor:
    """d silu(a) / da = s (1 + a (1 − s)), s = sigmoid(a)."""
    s = torch.sigmoid(a)
    return s * (1 + a * (1 - s))


# --------------------------------------------------------------------------------------------
# A self-modifying linear layer (the simple entry point)


class SelfModifyingLinear(nn.Module):
    """A linear layer y_t = W_t x_t that rewrites its own weights from its input by DGD.

    At every token the layer makes ``rank`` unit keys κ_j = normalize(P_j x_t) and targets
    u_j = W_{t−1}(V_j x_t) (self-generated: its own answer to a transformed input, A-eq 83–85
    in miniature), a step size η_t = softplus(w_η·x_t + b_η), and writes the exact proximal
    change (:func:`dgd_step_rank_k`; rank 1 is :func:`dgd_step`, A-eq 57):

        W_t = W_{t−1} − η_t (W_{t−1} K − U)(I + η_t KᵀK)⁻¹ Kᵀ,   then y_t = W_t x_t.

    The change W_t − W_{t−1} has rank ≤ ``rank``. W_0, P, V, w_η, b_η are trained by the outer
    loss (backprop flows through every write). A plain token loop: this layer is for teaching.

    Shapes: x (B, T, d_in) → y (B, T, d_out); weights per sequence (B, d_out, d_in).
    """

    def __init__(self, d_in: int, d_out: int, rank: int = 1, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_positive_int("d_in", d_in)
        check_positive_int("d_out", d_out)
        check_positive_int("rank", rank)
        if rank > d_in:
            raise ValueError(f"rank must be at most d_in = {d_in}, got {rank}")
        self.d_in, self.d_out, self.rank = d_in, d_out, rank
        scale = 1 / math.sqrt(d_in)
        self.initial_weight = nn.Parameter(torch.randn(d_out, d_in, generator=generator) * scale)
        self.key_projection = nn.Parameter(
            torch.randn(rank, d_in, d_in, generator=generator) * scale)
        self.value_projection = nn.Parameter(
            torch.randn(rank, d_in, d_in, generator=generator) * scale)
        self.lr_weight = nn.Parameter(torch.zeros(d_in))
        self.lr_bias = nn.Parameter(torch.tensor(math.log(math.e - 1)))  # softplus⁻¹(1)

    def forward(self, x: torch.Tensor, *, return_weights: bool = False):
        """x (B, T, d_in) → y (B, T, d_out) [, weights (B, T, d_out, d_in) after each write]."""
        check_shape("x", x, (None, None, self.d_in), "(B, T, d_in)")
        check_same_dtype_device("initial_weight", self.initial_weight, x=x)
        batch, length, _ = x.shape
        weight = self.initial_weight.expand(batch, -1, -1)
        outputs, history = [], []
        for t in range(length):
            x_t = x[:, t]                                                    # (B, d_in)
            keys = F.normalize(torch.einsum("rij,bj->bri", self.key_projection, x_t), dim=-1)
            probes = torch.einsum("rij,bj->bri", self.value_projection, x_t)
            targets = probes @ weight.transpose(-1, -2)                      # (B, r, d_out)
            lr = F.softplus(x_t @ self.lr_weight + self.lr_bias)             # (B,)
            weight = dgd_step_rank_k(weight, keys, -targets, lr)
            outputs.append((weight @ x_t[..., None])[..., 0])
            if return_weights:
                history.append(weight)
        y = torch.stack(outputs, dim=1)
        return (y, torch.stack(history, dim=1)) if return_weights else y


# --------------------------------------------------------------------------------------------
# The chunk kernel: a gated delta rule with the paper's (α I − β k kᵀ) erase


def _lower_mask(length: int, diagonal: int, like: torch.Tensor) -> torch.Tensor:
    """A (length, length) 0/1 mask of the lower triangle (``diagonal`` as in torch.tril)."""
    return torch.ones(length, length, dtype=like.dtype, device=like.device).tril(diagonal)


def _decay_matrix(log_gamma_previous: torch.Tensor, log_gamma: torch.Tensor) -> torch.Tensor:
    """D[t, i] = γ_{t−1} / γ_i for i < t, else 0: (..., C, C), computed in log space.

    General path: below the diagonal the exponent is ≤ 0; clamping it to ≤ 0 everywhere
    (before masking the upper triangle to 0) keeps exp from overflowing.
    """
    mask = _lower_mask(log_gamma.shape[-1], -1, log_gamma)
    if bool((log_gamma[..., -1] > -60.0).all()):
        # γ_{t−1} · (1/γ_i) from two exps of length C instead of C² exps: safe while 1/γ
        # cannot overflow, i.e. the chunk's total decay stays above e^−60 (α ≈ 0.95 for 64
        # tokens gives e^−3.3).
        return (torch.exp(log_gamma_previous)[..., :, None] * torch.exp(-log_gamma)[..., None, :]
                ).mul_(mask)
    difference = log_gamma_previous[..., :, None] - log_gamma[..., None, :]
    return difference.clamp_(max=0).exp_().mul_(mask)


def _read_decay(decay: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """E[t, i] = γ_t / γ_i for i ≤ t, else 0, from D: E = diag(α) D + I."""
    eye = torch.eye(decay.shape[-1], dtype=decay.dtype, device=decay.device)
    return decay * torch.exp(log_alpha)[..., :, None] + eye


class _GatedDeltaChunk(torch.autograd.Function):
    """The chunk kernel with a hand-written backward (see :func:`gated_delta_chunk`).

    Autograd through the same forward records ~40 nodes per chunk; this backward is the
    derivative written out once (checked by gradcheck and against the token loop in
    tests/test_selfmod.py). Notation: γ_t = Π_{j≤t} α_j, D and E the decay matrices,
    M = diag(β)(K Kᵀ ⊙ D), W = (I + M)⁻¹ diag(β)(U − diag(γ_{t−1}) K S_0).
    """

    @staticmethod
    def forward(ctx, state, keys, values, beta, log_alpha, queries):
        log_gamma = torch.cumsum(log_alpha, dim=-1)                           # (..., C)
        log_gamma_previous = log_gamma - log_alpha                           # log γ_{t−1}
        decay = _decay_matrix(log_gamma_previous, log_gamma)                 # D (..., C, C)
        gram_decay = (keys @ keys.transpose(-1, -2)) * decay                 # K Kᵀ ⊙ D
        system = beta[..., :, None] * gram_decay                             # M, strictly lower
        keys_state = keys @ state                                            # K S_0
        residual = values - torch.exp(log_gamma_previous)[..., None] * keys_state
        # (I + M) W = diag(β) residual; unitriangular: the zero diagonal of M is never read.
        new_values = torch.linalg.solve_triangular(system, beta[..., None] * residual,
                                                   upper=False, unitriangular=True)
        to_end = torch.exp(log_gamma[..., -1:] - log_gamma)                  # γ_C / γ_i
        keys_to_end = keys * to_end[..., None]
        total = torch.exp(log_gamma[..., -1])[..., None, None]               # γ_C
        final = total * state + keys_to_end.transpose(-1, -2) @ new_values
        reads = query_keys = read_decay = None
        if queries is not None:
            query_keys = queries @ keys.transpose(-1, -2)
            read_decay = _read_decay(decay, log_alpha)
            reads = (torch.exp(log_gamma)[..., None] * (queries @ state)
                     + (query_keys * read_decay) @ new_values)
        ctx.save_for_backward(state, keys, beta, log_alpha, queries, log_gamma, decay,
                              gram_decay, system, keys_state, residual, new_values, to_end,
                              query_keys, read_decay)
        return final, reads

    @staticmethod
    def backward(ctx, d_final, d_reads):
        (state, keys, beta, log_alpha, queries, log_gamma, decay, gram_decay, system,
         keys_state, residual, new_values, to_end, query_keys, read_decay) = ctx.saved_tensors
        total = torch.exp(log_gamma[..., -1])
        # Through S_C = γ_C S_0 + Kᵀ diag(γ_C/γ) W.
        d_state = total[..., None, None] * d_final
        d_new_values = (keys * to_end[..., None]) @ d_final
        d_keys = to_end[..., None] * (new_values @ d_final.transpose(-1, -2))
        flow_end = (d_new_values * new_values).sum(-1)                       # ∂/∂log(γ_C/γ_i)
        d_log_gamma = -flow_end
        d_log_total = total * (state * d_final).sum((-1, -2)) + flow_end.sum(-1)
        d_queries = None
        if queries is not None:
            # Through the reads O = diag(γ) Q S_0 + (Q Kᵀ ⊙ E) W.
            gamma = torch.exp(log_gamma)[..., None]
            scaled_d_reads = gamma * d_reads
            d_queries = scaled_d_reads @ state.transpose(-1, -2)
            d_state = d_state + queries.transpose(-1, -2) @ scaled_d_reads
            d_log_gamma = d_log_gamma + ((queries @ state) * scaled_d_reads).sum(-1)
            d_new_values = d_new_values + (query_keys * read_decay).transpose(-1, -2) @ d_reads
            # read_decay is 0 above the diagonal: no mask needed.
            d_query_keys = (d_reads @ new_values.transpose(-1, -2)) * read_decay
            d_queries = d_queries + d_query_keys @ keys
            d_keys = d_keys + d_query_keys.transpose(-1, -2) @ queries
            flow_read = d_query_keys * query_keys                            # ∂/∂log E[t, i]
            d_log_gamma = d_log_gamma + flow_read.sum(-1) - flow_read.sum(-2)
        d_log_gamma[..., -1] += d_log_total
        # Through the solve (I + M) W = diag(β) R: the adjoint (I + M)ᵀ d_right = d_W, solved
        # as d_rightᵀ (I + M) = d_Wᵀ (left=False: 2x faster here than the transposed solve).
        d_right = torch.linalg.solve_triangular(
            system, d_new_values.transpose(-1, -2), upper=False, unitriangular=True,
            left=False).transpose(-1, -2)
        d_system = (d_right @ new_values.transpose(-1, -2)).mul_(
            _lower_mask(system.shape[-1], -1, system)).neg_()
        d_beta = (residual * d_right).sum(-1) + (d_system * gram_decay).sum(-1)
        d_values = beta[..., None] * d_right
        start = torch.exp(log_gamma - log_alpha)                             # γ_{t−1}
        d_log_gamma_previous = -start * (keys_state * d_values).sum(-1)
        d_keys_state = -start[..., None] * d_values
        d_keys = d_keys + d_keys_state @ state.transpose(-1, -2)
        d_state = d_state + keys.transpose(-1, -2) @ d_keys_state
        d_gram = beta[..., :, None] * d_system * decay
        d_keys = d_keys + d_gram @ keys + d_gram.transpose(-1, -2) @ keys  # K Kᵀ is symmetric
        flow_decay = d_system * system                                       # ∂/∂log D[t, i]
        d_log_gamma_previous = d_log_gamma_previous + flow_decay.sum(-1)
        d_log_gamma = d_log_gamma - flow_decay.sum(-2) + d_log_gamma_previous
        # log γ = cumsum(log α), log γ_{t−1} = log γ_t − log α_t.
        d_log_alpha = (torch.flip(torch.cumsum(torch.flip(d_log_gamma, [-1]), -1), [-1])
                       - d_log_gamma_previous)
        return d_state, d_keys, d_values, d_beta, d_log_alpha, d_queries


def gated_delta_chunk(state: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                      beta: torch.Tensor, log_alpha: torch.Tensor,
                      queries: torch.Tensor | None = None):
    """Run S_t = (α_t I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t u_tᵀ over one chunk, in parallel.

    This is DGD with retention (A-eq 88) on a layer S = Wᵀ whose keys k_t and targets u_t are
    fixed for the chunk (produced at the chunk's start state). Error form:
    S_t = α_t S_{t−1} + k_t w_tᵀ with w_t = β_t (u_t − S_{t−1}ᵀ k_t); unrolling with
    γ_t = Π_{j≤t} α_j gives the triangular system (I + L) w = β ⊙ (u − γ_{t−1} K S_0),
    L[t, i] = β_t (γ_{t−1}/γ_i) k_t·k_i for i < t, solved at once (WY / UT form).
    The backward is written out by hand (:class:`_GatedDeltaChunk`).

    Args:
        state: (..., d_k, d_v) S_0. keys: (..., C, d_k). values: (..., C, d_v) targets u_t.
        beta: (..., C) effective step β_t = η′_t. log_alpha: (..., C) log retention.
        queries: optional (..., C, d_k); then the reads o_t = S_tᵀ q_t (after the write) are
            returned too.

    Returns:
        (S_C, reads) with S_C (..., d_k, d_v) and reads (..., C, d_v) or None.
    """
    lead = torch.broadcast_shapes(state.shape[:-2], keys.shape[:-2], values.shape[:-2],
                                  beta.shape[:-1], log_alpha.shape[:-1])
    length = keys.shape[-2]

    def expand(tensor: torch.Tensor, tail: tuple[int, ...]) -> torch.Tensor:
        return tensor.expand(*lead, *tail)

    state = expand(state, state.shape[-2:])
    if queries is not None:
        queries = expand(queries, queries.shape[-2:])
    return _GatedDeltaChunk.apply(state, expand(keys, keys.shape[-2:]),
                                  expand(values, values.shape[-2:]), expand(beta, (length,)),
                                  expand(log_alpha, (length,)), queries)


def _anchored_chunk(state, anchor, keys, values, beta, log_alpha, queries=None):
    """:func:`gated_delta_chunk` with retention pulling towards ``anchor`` instead of 0.

    S_t = A + (α_t I − β_t k kᵀ)(S_{t−1} − A) + β_t k (u_t − Aᵀk)ᵀ: at α = 1 this is the plain
    DGD step; α < 1 forgets the in-context change S − A. ``anchor=None`` means A = 0.
    """
    if anchor is None:
        return gated_delta_chunk(state, keys, values, beta, log_alpha, queries)
    final, reads = gated_delta_chunk(state - anchor, keys, values - keys @ anchor, beta,
                                     log_alpha, queries)
    if reads is not None:
        reads = reads + queries @ anchor
    return final + anchor, reads


# --------------------------------------------------------------------------------------------
# Self-modifying Titans


@dataclass
class SelfModifyingState:
    """The full fast state of :class:`SelfModifyingTitans`, carried across calls.

    Generator bank (memories k, v, η, α) and main memory, each as a *snapshot* (the state at
    the last chunk boundary: it produces keys, values, targets and gradients) and a *running*
    state (after the last processed token). ``position`` counts the tokens seen, so a call may
    start in the middle of a chunk: streaming is exact for every split.

    Shapes (B batch, H heads, d head dim, h memory hidden width):
        generator_first(_snapshot): (B, H, d, 2h + 2) = [S1 of M_k | S1 of M_v | w_η | w_α]
        generator_second(_snapshot): (B, H, 2, h, d) = [S2 of M_k, S2 of M_v]
        memory_first(_snapshot): (B, H, d, h); memory_second(_snapshot): (B, H, h, d)
    """

    generator_first_snapshot: torch.Tensor
    generator_first: torch.Tensor
    generator_second_snapshot: torch.Tensor
    generator_second: torch.Tensor
    memory_first_snapshot: torch.Tensor
    memory_first: torch.Tensor
    memory_second_snapshot: torch.Tensor
    memory_second: torch.Tensor
    position: int = 0

    def detach(self) -> SelfModifyingState:
        """A copy cut from the autograd graph (truncated backprop between calls)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return SelfModifyingState(**{name: value.detach() if torch.is_tensor(value) else value
                                     for name, value in values.items()})


def _memory_apply(z: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Residual MLP memory M(z) = z + silu(z S1) S2 (A-eq 89, row convention)."""
    return z + F.silu(z @ first) @ second


class SelfModifyingTitans(nn.Module):
    """Self-modifying Titans (arXiv §8.1–8.2, final rule A-eq 86–89, chunked A-eq 90–93).

    Per head (width d), with fixed projections x_t = W_x x, q_t = normalize(W_q x):

        k_t = normalize(M_k(x_t)),  v_t = M_v(x_t),
        η_t = softplus(M_η(x_t) + b_η),  α_t = sigmoid(M_α(x_t) + b_α)
        v̂_□ = M_□(v_t)    for □ ∈ {k, v, η, α, memory}          (self-generated targets)
        the written layer W of every memory (output layer of an MLP memory, input x = silu(k S1);
        the linear M_η, M_α, input x = k), with target u (v̂ − k, resp. v̂):
            W ← W_0 + (W − W_0)(α_t I − η′ x xᵀ) + η′ (u − W_0 x) xᵀ,  η′ = η_t/(1 + η_t‖x‖²)
        (A-eq 57/88: the DGD step; retention α acts on the in-context change W − W_0)
        o_t = M_memory,t(q_t);   y = W_o [o_t over heads]

    M_k, M_v, M_memory are residual MLPs z + silu(z S1) S2 (d → h → d); M_η and M_α are linear
    (d → 1). Inside a chunk (``chunk_size_others`` for k, v, η, α; ``chunk_size_memory`` for
    the main memory) every key, value, target and gradient comes from the state that ended the
    previous chunk; the linear erase recurrence is then solved exactly (:func:`gated_delta_chunk`).
    With both chunk sizes 1 this is the token-by-token rule. See the module docstring for every
    choice left open by the paper.

    Args:
        d_model: model width. heads: number of heads H. head_dim: d (default d_model // H).
        hidden: h, the hidden width of the MLP memories (default d).
        chunk_size_memory, chunk_size_others: the two chunk sizes (A §8.2).
        generator: torch.Generator for the initialisation.

    Call: ``y, state = layer(x, state=None)`` with x (B, T, d_model), any T ≥ 1; pass the
    returned state to the next call to continue the sequence (exact for any split).
    """

    def __init__(self, d_model: int, heads: int = 1, head_dim: int | None = None,
                 hidden: int | None = None, *, chunk_size_memory: int = 32,
                 chunk_size_others: int = 8, retain_toward_initial: bool = True,
                 write_first_layer: bool = False,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("heads", heads)
        check_positive_int("head_dim", head_dim, allow_none=True)
        check_positive_int("hidden", hidden, allow_none=True)
        check_positive_int("chunk_size_memory", chunk_size_memory)
        check_positive_int("chunk_size_others", chunk_size_others)
        if head_dim is None:
            if d_model % heads:
                raise ValueError(f"heads must divide d_model = {d_model} when head_dim is not "
                                 f"given, got heads = {heads}")
            head_dim = d_model // heads
        hidden = head_dim if hidden is None else hidden
        self.d_model, self.heads, self.head_dim, self.hidden = d_model, heads, head_dim, hidden
        self.chunk_size_memory, self.chunk_size_others = chunk_size_memory, chunk_size_others
        self.retain_toward_initial = bool(retain_toward_initial)
        self.write_first_layer = bool(write_first_layer)

        def randn(*shape: int, std: float) -> torch.Tensor:
            return torch.randn(*shape, generator=generator) * std

        d, h, width = head_dim, hidden, heads * head_dim
        self.input_projection = nn.Parameter(randn(d_model, width, std=d_model ** -0.5))
        self.query_projection = nn.Parameter(randn(d_model, width, std=d_model ** -0.5))
        self.output_projection = nn.Parameter(randn(width, d_model, std=width ** -0.5))
        # Meta-learned initial states of the memories (per head), row convention S = Wᵀ.
        self.key_memory_first = nn.Parameter(randn(heads, d, h, std=d ** -0.5))
        self.key_memory_second = nn.Parameter(randn(heads, h, d, std=0.5 * h ** -0.5))
        self.value_memory_first = nn.Parameter(randn(heads, d, h, std=d ** -0.5))
        self.value_memory_second = nn.Parameter(randn(heads, h, d, std=0.5 * h ** -0.5))
        self.lr_memory = nn.Parameter(randn(heads, d, 1, std=0.1 * d ** -0.5))
        self.retention_memory = nn.Parameter(randn(heads, d, 1, std=0.1 * d ** -0.5))
        self.main_memory_first = nn.Parameter(randn(heads, d, h, std=d ** -0.5))
        self.main_memory_second = nn.Parameter(randn(heads, h, d, std=0.5 * h ** -0.5))
        self.lr_bias = nn.Parameter(torch.full((heads, 1, 1), math.log(math.e - 1)))  # η ≈ 1
        self.retention_bias = nn.Parameter(torch.full((heads, 1, 1), 3.0))          # α ≈ 0.95

    # ---- state -------------------------------------------------------------------------------
    def initial_state(self, batch: int) -> SelfModifyingState:
        """The meta-learned initial state, expanded to ``batch`` sequences (differentiable)."""
        check_positive_int("batch", batch)

        def expand(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.unsqueeze(0).expand(batch, *tensor.shape)

        first = expand(torch.cat([self.key_memory_first, self.value_memory_first,
                                  self.lr_memory, self.retention_memory], dim=-1))
        second = expand(torch.stack([self.key_memory_second, self.value_memory_second], dim=1))
        memory_first = expand(self.main_memory_first)
        memory_second = expand(self.main_memory_second)
        return SelfModifyingState(first, first, second, second, memory_first, memory_first,
                                  memory_second, memory_second, 0)

    # ---- pieces ------------------------------------------------------------------------------
    def _generate(self, x: torch.Tensor, first: torch.Tensor, second: torch.Tensor):
        """k, v, η, α for a chunk x (B, H, C, d) from a generator snapshot."""
        h = self.hidden
        pre = x @ first                                                       # (B, H, C, 2h+2)
        hidden = F.silu(torch.stack([pre[..., :h], pre[..., h:2 * h]], dim=2))  # (B,H,2,C,h)
        key_value = x.unsqueeze(2) + hidden @ second                         # (B, H, 2, C, d)
        keys = F.normalize(key_value[:, :, 0], dim=-1)
        lr = F.softplus(pre[..., 2 * h] + self.lr_bias[..., 0])              # (B, H, C)
        log_alpha = F.logsigmoid(pre[..., 2 * h + 1] + self.retention_bias[..., 0])
        return keys, F.normalize(key_value[:, :, 1], dim=-1), lr, log_alpha

    def _generator_chunk(self, x, first_snapshot, second_snapshot, first, second, anchors):
        """Generate k, v, η, α for one chunk and write it into the generator bank, every layer
        included (``write_first_layer=True``; default path: :meth:`_generator_fixed_first`)."""
        h = self.hidden
        keys, values, lr, log_alpha = self._generate(x, first_snapshot, second_snapshot)
        # Self-generated targets v̂ = M(v) and pre-activations at the key, both at the snapshot.
        pre_value = values @ first_snapshot                                   # (B, H, C, 2h+2)
        pre_key = keys @ first_snapshot
        hidden_value = F.silu(torch.stack([pre_value[..., :h], pre_value[..., h:2 * h]], 2))
        targets = values.unsqueeze(2) + hidden_value @ second_snapshot        # (B, H, 2, C, d)
        pre_key_mlp = torch.stack([pre_key[..., :h], pre_key[..., h:2 * h]], 2)  # (B,H,2,C,h)
        hidden_key = F.silu(pre_key_mlp)
        # Local targets (see the class docstring): second layer v̂ − k, first layer
        # a − ∂L/∂a with L = ½‖M(k) − v̂‖², a = k S1, ∂L/∂a = (e S2ᵀ) ⊙ silu′(a), e = M(k) − v̂.
        keys_mlp = keys.unsqueeze(2)
        error = keys_mlp + hidden_key @ second_snapshot - targets             # (B, H, 2, C, d)
        first_targets = pre_key_mlp - (error @ second_snapshot.transpose(-1, -2)) * (
            silu_derivative(pre_key_mlp))
        first_values = torch.cat([first_targets[:, :, 0], first_targets[:, :, 1],
                                  pre_value[..., 2 * h:]], dim=-1)            # (B, H, C, 2h+2)
        key_norm = (keys * keys).sum(-1)
        first, _ = _anchored_chunk(first, anchors[0], keys, first_values,
                                   lr / (1 + lr * key_norm), log_alpha)
        hidden_norm = (hidden_key * hidden_key).sum(-1)                      # (B, H, 2, C)
        lr2 = lr.unsqueeze(2)
        second, _ = _anchored_chunk(second, anchors[1], hidden_key, targets - keys_mlp,
                                    lr2 / (1 + lr2 * hidden_norm), log_alpha.unsqueeze(2))
        return (keys, values, lr, log_alpha), first, second

    def _memory_chunk(self, keys, values, queries, lr, log_alpha, first_snapshot,
                      second_snapshot, first, second, anchors):
        """Write one chunk into the main memory, both layers, and read it with the queries
        (``write_first_layer=True``; the default path is :meth:`_memory_fixed_first`)."""
        targets = _memory_apply(values, first_snapshot, second_snapshot)     # v̂ = M(v)
        pre_key = keys @ first_snapshot
        hidden_key = F.silu(pre_key)
        error = keys + hidden_key @ second_snapshot - targets                 # e = M(k) − v̂
        first_targets = pre_key - (error @ second_snapshot.transpose(-1, -2)) * (
            silu_derivative(pre_key))
        key_norm = (keys * keys).sum(-1)
        first, pre_query = _anchored_chunk(first, anchors[0], keys, first_targets,
                                           lr / (1 + lr * key_norm), log_alpha, queries)
        hidden_norm = (hidden_key * hidden_key).sum(-1)
        second, read = _anchored_chunk(second, anchors[1], hidden_key, targets - keys,
                                       lr / (1 + lr * hidden_norm), log_alpha,
                                       F.silu(pre_query))
        return queries + read, first, second

    # ---- the two loops: first layers written (general) or fixed (default, faster) ------------
    def _generator_written(self, inputs, state, anchors, return_trace):
        """The generator loop when every layer is written (chunk by chunk, from the state)."""
        first_snap, first = state.generator_first_snapshot, state.generator_first
        second_snap, second = state.generator_second_snapshot, state.generator_second
        generated, trace_states = [], []
        for start, end in self._boundaries(state.position, inputs.shape[2],
                                           self.chunk_size_others):
            out, first, second = self._generator_chunk(inputs[:, :, start:end], first_snap,
                                                       second_snap, first, second, anchors)
            generated.append(out)
            if (state.position + end) % self.chunk_size_others == 0:
                first_snap, second_snap = first, second
            if return_trace:
                trace_states.append((state.position + end, self._named_states(first, second)))
        keys, values, lr, log_alpha = (torch.cat(parts, dim=2)
                                       for parts in zip(*generated, strict=True))
        return (keys, values, lr, log_alpha, first_snap, first, second_snap, second,
                trace_states)

    def _memory_written(self, keys, values, queries, lr, log_alpha, state, anchors):
        """The main-memory loop when its first layer is written too."""
        first_snap, first = state.memory_first_snapshot, state.memory_first
        second_snap, second = state.memory_second_snapshot, state.memory_second
        reads = []
        for start, end in self._boundaries(state.position, keys.shape[2],
                                           self.chunk_size_memory):
            span = slice(start, end)
            read, first, second = self._memory_chunk(
                keys[:, :, span], values[:, :, span], queries[:, :, span], lr[:, :, span],
                log_alpha[:, :, span], first_snap, second_snap, first, second, anchors)
            reads.append(read)
            if (state.position + end) % self.chunk_size_memory == 0:
                first_snap, second_snap = first, second
        return torch.cat(reads, dim=2), first_snap, first, second_snap, second

    def _folded_first_layers(self) -> torch.Tensor:
        """W_x S1 for M_k and M_v, (d_model, H·2·h): x_t S1 = x (W_x S1), per head."""
        fixed_first = torch.stack([self.key_memory_first, self.value_memory_first], dim=1)
        folded = torch.einsum("mhd,hgdk->mhgk",
                              self.input_projection.view(self.d_model, self.heads,
                                                         self.head_dim), fixed_first)
        return folded.reshape(self.d_model, -1)

    def _generator_fixed_first(self, pre_hidden, inputs, state, anchors, return_trace,
                               keep_state=True):
        """The generator loop when the MLP memories' first layers are never written.

        Those layers then equal their meta-learned initial values for the whole stream, so
        their work leaves the sequential loop: silu(x_t S1) for M_k and M_v is one matmul over
        all tokens (x_t = W_x x folded into one weight), and only the written parts (the
        second layers, and the linear M_η, M_α) are carried chunk by chunk. Same rule as
        :meth:`_generator_chunk` (tested against the float64 token reference).
        """
        batch, length, _ = pre_hidden.shape
        heads, h = self.heads, self.hidden
        # pre_hidden = x W_x S1 (B, T, H·2·h), from the fused projection in forward.
        hidden_inputs = F.silu(pre_hidden).view(batch, length, heads, 2, h).permute(0, 2, 3, 1, 4)
        fixed_first = torch.stack([self.key_memory_first, self.value_memory_first], dim=1)
        scalar_anchor = None if anchors[0] is None else anchors[0][..., 2 * h:]
        scalar_snap = state.generator_first_snapshot[..., 2 * h:]             # (B, H, d, 2)
        scalar = state.generator_first[..., 2 * h:]
        second_snap, second = state.generator_second_snapshot, state.generator_second
        generated, trace_states = [], []
        for start, end in self._boundaries(state.position, length, self.chunk_size_others):
            x_chunk, size = inputs[:, :, start:end], end - start
            key_value = x_chunk.unsqueeze(2) + hidden_inputs[:, :, :, start:end] @ second_snap
            keys = F.normalize(key_value[:, :, 0], dim=-1)                    # (B, H, C, d)
            values = F.normalize(key_value[:, :, 1], dim=-1)
            scalars = x_chunk @ scalar_snap                                   # (B, H, C, 2)
            lr = F.softplus(scalars[..., 0] + self.lr_bias[..., 0])
            log_alpha = F.logsigmoid(scalars[..., 1] + self.retention_bias[..., 0])
            # Hidden activations of M_k and M_v at the keys and at the values, one matmul.
            hidden = F.silu(torch.einsum("bhcd,hgdk->bhgck", torch.cat([keys, values], dim=2),
                                         fixed_first))                        # (B, H, 2, 2C, h)
            generated.append((keys, values, lr, log_alpha))
            if end == length and not keep_state:
                break  # the last writes would only reach the discarded state
            hidden_key, hidden_value = hidden[..., :size, :], hidden[..., size:, :]
            targets = values.unsqueeze(2) + hidden_value @ second_snap        # v̂ = M(v)
            key_norm = (keys * keys).sum(-1)
            scalar, _ = _anchored_chunk(scalar, scalar_anchor, keys, values @ scalar_snap,
                                        lr / (1 + lr * key_norm), log_alpha)
            hidden_norm = (hidden_key * hidden_key).sum(-1)                   # (B, H, 2, C)
            lr2 = lr.unsqueeze(2)
            second, _ = _anchored_chunk(second, anchors[1], hidden_key,
                                        targets - keys.unsqueeze(2),
                                        lr2 / (1 + lr2 * hidden_norm), log_alpha.unsqueeze(2))
            if (state.position + end) % self.chunk_size_others == 0:
                scalar_snap, second_snap = scalar, second
            if return_trace:
                trace_states.append((state.position + end, self._named_states(
                    self._with_fixed_first(scalar), second)))
        keys, values, lr, log_alpha = (torch.cat(parts, dim=2)
                                       for parts in zip(*generated, strict=True))
        return (keys, values, lr, log_alpha, self._with_fixed_first(scalar_snap),
                self._with_fixed_first(scalar), second_snap, second, trace_states)

    def _with_fixed_first(self, scalar: torch.Tensor) -> torch.Tensor:
        """[S1 of M_k | S1 of M_v | w_η | w_α] (B, H, d, 2h+2) from the written w (B, H, d, 2)."""
        fixed = torch.cat([self.key_memory_first, self.value_memory_first], dim=-1)
        return torch.cat([fixed.expand(scalar.shape[0], *fixed.shape), scalar], dim=-1)

    def _memory_fixed_first(self, keys, values, queries, lr, log_alpha, state, anchors):
        """The main-memory loop when its first layer is never written: silu(z S1) for keys,
        values and queries is one matmul over the whole call, and so are the anchor terms;
        only the second layer is carried chunk by chunk (rule of :meth:`_memory_chunk`)."""
        # Per-head products with the fixed first layer (the meta-learned one: never written).
        hidden_key, hidden_value, hidden_query = F.silu(torch.einsum(
            "bhgtd,hdk->bhgtk", torch.stack([keys, values, queries], dim=2),
            self.main_memory_first)).unbind(2)                                # (B, H, T, h) each
        anchor = anchors[1]
        if anchor is not None:
            key_anchor, query_anchor = torch.einsum(
                "bhgtk,hkd->bhgtd", torch.stack([hidden_key, hidden_query], dim=2),
                self.main_memory_second).unbind(2)                            # (B, H, T, d)
        second_snap, second = state.memory_second_snapshot, state.memory_second
        reads = []
        for start, end in self._boundaries(state.position, keys.shape[2],
                                           self.chunk_size_memory):
            span = slice(start, end)
            chunk_hidden_key, chunk_lr = hidden_key[:, :, span], lr[:, :, span]
            # Target of the written layer: v̂ − k with v̂ = M(v) at the snapshot.
            targets = hidden_value[:, :, span] @ second_snap + values[:, :, span] - keys[:, :, span]
            beta = chunk_lr / (1 + chunk_lr * (chunk_hidden_key * chunk_hidden_key).sum(-1))
            if anchor is None:
                second, read = gated_delta_chunk(second, chunk_hidden_key, targets, beta,
                                                 log_alpha[:, :, span], hidden_query[:, :, span])
            else:
                delta, read = gated_delta_chunk(second - anchor, chunk_hidden_key,
                                                targets - key_anchor[:, :, span], beta,
                                                log_alpha[:, :, span], hidden_query[:, :, span])
                second, read = delta + anchor, read + query_anchor[:, :, span]
            reads.append(queries[:, :, span] + read)
            if (state.position + end) % self.chunk_size_memory == 0:
                second_snap = second
        return (torch.cat(reads, dim=2), state.memory_first_snapshot, state.memory_first,
                second_snap, second)


    @staticmethod
    def _boundaries(position: int, length: int, chunk: int) -> list[tuple[int, int]]:
        """Chunk spans [start, end) of this call, aligned to global multiples of ``chunk``."""
        spans, start = [], 0
        while start < length:
            end = min(length, start + chunk - (position + start) % chunk)
            spans.append((start, end))
            start = end
        return spans

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, state: SelfModifyingState | None = None, *,
                return_trace: bool = False, keep_state: bool = True):
        """x (B, T, d_model) → (y (B, T, d_model), state[, trace]).

        ``keep_state=False`` (a training step that discards the state): the generator's
        writes after the last chunk of the call, which only the state would carry on, are
        skipped, and the returned state is ``None``. The output is unchanged.

        ``trace`` (for plots) holds per-token ``lr`` η_t and ``retention`` α_t (B, H, T), and
        ``states``: a list of (tokens seen, {memory name: (B, H, ...) state}) after every
        generator chunk.
        """
        check_shape("x", x, (None, None, self.d_model), "(B, T, d_model)")
        check_dtype_float("x", x)
        check_same_dtype_device("input_projection", self.input_projection, x=x)
        batch, length, _ = x.shape
        if length == 0:
            raise ValueError("x must hold at least one token, got T = 0")
        if state is None:
            state = self.initial_state(batch)
        elif state.generator_first.shape[0] != batch:
            raise ValueError(f"state must be for batch {batch}, got a state for batch "
                             f"{state.generator_first.shape[0]}")
        heads, d = self.heads, self.head_dim
        if self.retain_toward_initial:
            anchor = self.initial_state(batch)
            generator_anchors = (anchor.generator_first, anchor.generator_second)
            memory_anchors = (anchor.memory_first, anchor.memory_second)
        else:
            generator_anchors = memory_anchors = (None, None)
        # One matmul for every projection of x: W_x, W_q and (fixed first layers) W_x S1.
        width = heads * d
        weights = [self.input_projection, self.query_projection]
        if not self.write_first_layer:
            weights.append(self._folded_first_layers())
        projected = x @ torch.cat(weights, dim=1)
        # split, not slices: its backward is one cat, not a zero-filled tensor per slice.
        projected = projected.split([width, width, projected.shape[-1] - 2 * width], dim=-1)
        inputs = projected[0].view(batch, length, heads, d).transpose(1, 2)
        queries = F.normalize(projected[1].view(batch, length, heads, d).transpose(1, 2), dim=-1)

        # 1) The generator bank does not read the main memory: run it over the whole call.
        if self.write_first_layer:
            generated = self._generator_written(inputs, state, generator_anchors, return_trace)
        else:
            generated = self._generator_fixed_first(projected[2], inputs, state,
                                                    generator_anchors, return_trace,
                                                    keep_state or return_trace)
        (keys, values, lr, log_alpha, first_snap, first, second_snap, second,
         trace_states) = generated
        # 2) The main memory, with its own (usually longer) chunks.
        run_memory = (self._memory_written if self.write_first_layer
                      else self._memory_fixed_first)
        reads, mem_first_snap, mem_first, mem_second_snap, mem_second = run_memory(
            keys, values, queries, lr, log_alpha, state, memory_anchors)
        output = reads.transpose(1, 2).reshape(batch, length, heads * d)
        y = output @ self.output_projection
        new_state = SelfModifyingState(first_snap, first, second_snap, second, mem_first_snap,
                                       mem_first, mem_second_snap, mem_second,
                                       state.position + length)
        if not return_trace:
            return y, (new_state if keep_state else None)
        trace = {"lr": lr, "retention": log_alpha.exp(), "keys": keys, "values": values,
                 "states": trace_states,
                 "memory": self._named_states(new_state.generator_first,
                                              new_state.generator_second)
                 | {"memory_first": mem_first, "memory_second": mem_second}}
        return y, new_state, trace

    def _named_states(self, first: torch.Tensor, second: torch.Tensor) -> dict:
        h = self.hidden
        return {"key_first": first[..., :h], "key_second": second[:, :, 0],
                "value_first": first[..., h:2 * h], "value_second": second[:, :, 1],
                "lr": first[..., 2 * h], "retention": first[..., 2 * h + 1]}


# --------------------------------------------------------------------------------------------
# The slow, obviously correct reference


def reference_self_modifying_titans(layer: SelfModifyingTitans, x: torch.Tensor,
                                    chunk_size_memory: int = 1,
                                    chunk_size_others: int = 1) -> torch.Tensor:
    """Token-by-token float64 loop of the rule in :class:`SelfModifyingTitans`.

    Written independently of the fast path: column-convention matrices per (sequence, head),
    one :func:`dgd_step` per layer per token, snapshots refreshed after every C tokens
    (the state at C⌊(t−1)/C⌋, never the future). Returns y (B, T, d_model) in float64.
    """
    layer_params = {name: p.double() for name, p in layer.named_parameters()}

    def write(weight, initial_weight, x_layer, target, eta, alpha):
        """DGD towards ``target`` (grad_y = −target); retention towards W_0 or towards 0."""
        if not layer.retain_toward_initial:
            return dgd_step(weight, x_layer, -target, eta, retention=alpha)
        shifted_target = target - initial_weight @ x_layer
        return initial_weight + dgd_step(weight - initial_weight, x_layer, -shifted_target,
                                         eta, retention=alpha)

    x = x.double()
    batch, length, _ = x.shape
    heads, d = layer.heads, layer.head_dim
    inputs = x @ layer_params["input_projection"]
    queries = x @ layer_params["query_projection"]
    outputs_list = []
    for b in range(batch):
        per_head = []
        for head in range(heads):
            # Column convention: first layer W1 (h, d), second layer W2 (d, h); scalar w (1, d).
            def initial(name: str, head: int = head) -> torch.Tensor:
                return layer_params[name][head].transpose(0, 1)

            running = {"k": [initial("key_memory_first"), initial("key_memory_second")],
                       "v": [initial("value_memory_first"), initial("value_memory_second")],
                       "eta": [initial("lr_memory")], "alpha": [initial("retention_memory")],
                       "memory": [initial("main_memory_first"), initial("main_memory_second")]}
            snapshot = {name: list(weights) for name, weights in running.items()}
            initial_weights = {name: list(weights) for name, weights in running.items()}
            lr_bias = layer_params["lr_bias"][head, 0, 0]
            retention_bias = layer_params["retention_bias"][head, 0, 0]

            def mlp(weights: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
                if len(weights) == 1:  # linear scalar memory
                    return weights[0] @ z
                return z + weights[1] @ F.silu(weights[0] @ z)

            head_outputs = []
            for t in range(length):
                x_t = inputs[b, t, head * d:(head + 1) * d]
                q_t = F.normalize(queries[b, t, head * d:(head + 1) * d], dim=0)
                k_t = F.normalize(mlp(snapshot["k"], x_t), dim=0)
                v_t = F.normalize(mlp(snapshot["v"], x_t), dim=0)
                eta = F.softplus(mlp(snapshot["eta"], x_t)[0] + lr_bias)
                alpha = torch.sigmoid(mlp(snapshot["alpha"], x_t)[0] + retention_bias)
                for name in running:
                    frozen = snapshot[name]
                    target = mlp(frozen, v_t)                  # v̂ = M(v), fixed inner target
                    if len(frozen) == 1:
                        # L = ½(w·k − v̂)²: regress w·k onto the target u = v̂
                        running[name] = [write(running[name][0], initial_weights[name][0], k_t,
                                               target, eta, alpha)]
                        continue
                    pre = frozen[0] @ k_t
                    hidden = F.silu(pre)
                    # L = ½‖k + W2 silu(W1 k) − v̂‖². Local targets: the second layer's output
                    # should be v̂ − k; the first layer's pre-activation should move to
                    # pre − ∂L/∂pre. DGD regresses each layer onto its target u, i.e.
                    # dgd_step with grad_y = −u (A-eq 56–57).
                    error = mlp(frozen, k_t) - target
                    grad_pre = (frozen[1].transpose(0, 1) @ error) * silu_derivative(pre)
                    target_first = pre - grad_pre
                    target_second = target - k_t
                    first_layer = running[name][0]
                    if layer.write_first_layer:
                        first_layer = write(first_layer, initial_weights[name][0], k_t,
                                            target_first, eta, alpha)
                    running[name] = [
                        first_layer,
                        write(running[name][1], initial_weights[name][1], hidden,
                              target_second, eta, alpha),
                    ]
                head_outputs.append(mlp(running["memory"], q_t))  # read after the write
                seen = t + 1
                for name in running:
                    size = chunk_size_memory if name == "memory" else chunk_size_others
                    if seen % size == 0:
                        snapshot[name] = list(running[name])
            per_head.append(torch.stack(head_outputs))
        outputs_list.append(torch.cat(per_head, dim=-1))
    outputs = torch.stack(outputs_list)
    return outputs @ layer_params["output_projection"]
