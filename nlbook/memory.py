"""Associative memories: linear attention, the (gated) delta rule, Titans, softmax attention.

Chapter 1 of the course. Nested Learning reads every sequence layer as an *associative memory*
that solves an inner optimisation problem, M* = argmin_M L̃(M(K); V) (NL Def. 1, arXiv eq. 6),
one gradient step per token:

==================  ===================================  =====================================
layer               inner objective (per token)          one gradient step gives
==================  ===================================  =====================================
linear attention    -<Sᵀk_t, v_t>  (dot product)         S_t = α_t S_{t-1} + k_t v_tᵀ  (Hebbian)
delta rule          ½‖Sᵀk_t - v_t‖²  (L2 regression)     S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1}
                                                               + β_t k_t v_tᵀ
Titans (linear)     ½‖Mᵀk_t - v_t‖² with momentum        S_t = η_t S_{t-1} - θ_t ∇,
                                                         M_t = (1 - α_t) M_{t-1} + S_t
softmax attention   Σ_i s(k_i, q)‖v_i - m‖² (solved      o = Σ_i softmax(qᵀk_i/√d) v_i
                    exactly, non-parametric)
==================  ===================================  =====================================

Conventions (flash-linear-attention's, used by every chapter):

- ``q, k``: (B, H, T, d_k); ``v``: (B, H, T, d_v); per-token gates: (B, H, T).
- The state S has shape (B, H, d_k, d_v); the read happens *after* the write at step t:
  o_t = S_tᵀ q_t. Nothing scales q inside these functions.
- ``chunk_size=None`` runs the slow, obviously correct token-by-token loop (the reference);
  an integer runs the chunkwise form, which processes C tokens with matrix products and loops
  only over the T/C chunks. For linear attention and the delta rule the chunkwise form is
  *exact* (WY representation; chapter 1, section 9). For Titans it is the
  paper's chunk approximation (every gradient in a chunk is taken at the state that entered
  the chunk, Titans §3.2), so chunk size is a modelling choice there, not a speed knob.

Greek letters follow each paper: in the delta rule α_t = ``decay`` *retains* (1 keeps all);
in Titans α_t = ``forget`` *forgets* (0 keeps all), θ_t = ``lr`` and η_t = ``momentum``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nlbook._checks import (
    check_dtype_float,
    check_in_range,
    check_positive_int,
    check_same_dtype_device,
    check_shape,
)
from nlbook.timing import time_call

__all__ = [
    "benchmark_memory",
    "delta_rule",
    "linear_attention",
    "reference_titans_memory",
    "softmax_attention",
    "softmax_attention_reference",
    "titans_memory",
]

_QK_LAYOUT = "(B, H, T, d_k)"
_V_LAYOUT = "(B, H, T, d_v)"
_GATE_LAYOUT = "(B, H, T)"
_STATE_LAYOUT = "(B, H, d_k, d_v)"


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, ...]:
    check_shape("q", q, (None, None, None, None), _QK_LAYOUT)
    check_dtype_float("q", q)
    batch, heads, length, key_dim = q.shape
    check_shape("k", k, (batch, heads, length, key_dim), _QK_LAYOUT)
    check_shape("v", v, (batch, heads, length, None), _V_LAYOUT)
    check_same_dtype_device("q", q, k=k, v=v)
    if length < 1:
        raise ValueError(f"q must hold at least one token (T >= 1), got shape {tuple(q.shape)}")
    return batch, heads, length, key_dim, v.shape[-1]


def _check_gate(name: str, gate, q: torch.Tensor, low: float, high: float, *,
                low_inclusive: bool = True) -> torch.Tensor | None:
    if gate is None:
        return None
    if not isinstance(gate, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape {_GATE_LAYOUT} or None, "
                         f"got {type(gate).__name__}")
    check_shape(name, gate, tuple(q.shape[:3]), _GATE_LAYOUT)
    check_same_dtype_device("q", q, **{name: gate})
    check_in_range(name, gate, low, high, low_inclusive=low_inclusive)
    return gate


def _check_state(name: str, state, q: torch.Tensor, value_dim: int) -> torch.Tensor:
    batch, heads, _, key_dim = q.shape
    if state is None:
        return q.new_zeros(batch, heads, key_dim, value_dim)
    check_shape(name, state, (batch, heads, key_dim, value_dim), _STATE_LAYOUT)
    check_same_dtype_device("q", q, **{name: state})
    return state


def _read(query: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """o = Sᵀ q for a batch of heads: query (B, H, d_k), state (B, H, d_k, d_v) -> (B, H, d_v)."""
    return torch.einsum("bhk,bhkv->bhv", query, state)


def _outer(key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """k vᵀ for a batch of heads: (B, H, d_k), (B, H, d_v) -> (B, H, d_k, d_v)."""
    return key[..., :, None] * value[..., None, :]


# --------------------------------------------------------------------------------------------
# Reference: token-by-token loops (slow, obviously correct)
# --------------------------------------------------------------------------------------------


def _delta_rule_loop(q, k, v, beta, decay, state, return_states):
    """S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ; β=None gives linear attention."""
    outputs, states = [], []
    for t in range(q.shape[2]):
        if decay is not None:
            state = decay[:, :, t, None, None] * state  # decay first, then correct (as fla)
        if beta is None:  # Hebbian write: no dependence on what is stored
            state = state + _outer(k[:, :, t], v[:, :, t])
        else:  # erase what the memory predicts for k_t, write v_t: one step on ½‖Sᵀk - v‖²
            error = v[:, :, t] - _read(k[:, :, t], state)
            state = state + beta[:, :, t, None, None] * _outer(k[:, :, t], error)
        outputs.append(_read(q[:, :, t], state))
        if return_states:
            states.append(state)
    output = torch.stack(outputs, dim=2)
    return output, state, (torch.stack(states, dim=2) if return_states else None)


def _titans_loop(q, k, v, lr, momentum, forget, memory, surprise, frozen_chunk, return_states):
    """Titans' linear memory, token by token, gradient frozen at each chunk's entering state.

    frozen_chunk=1 is the exact online rule (Titans eq. 13-14 with ℓ = ½‖Mᵀk - v‖²).
    """
    outputs, memories, surprises = [], [], []
    for t in range(q.shape[2]):
        if t % frozen_chunk == 0:
            gradient_point = memory  # every gradient of this chunk is taken here
        error = _read(k[:, :, t], gradient_point) - v[:, :, t]
        gradient = _outer(k[:, :, t], error)  # ∇_M ½‖Mᵀk - v‖² = k (Mᵀk - v)ᵀ
        surprise = momentum[:, :, t, None, None] * surprise - lr[:, :, t, None, None] * gradient
        memory = (1 - forget[:, :, t, None, None]) * memory + surprise
        outputs.append(_read(q[:, :, t], memory))
        if return_states:
            memories.append(memory)
            surprises.append(surprise)
    output = torch.stack(outputs, dim=2)
    states = None
    if return_states:
        states = (torch.stack(memories, dim=2), torch.stack(surprises, dim=2))
    return output, (memory, surprise), states


# --------------------------------------------------------------------------------------------
# Chunkwise forms
# --------------------------------------------------------------------------------------------


def _pad_and_split(tensor: torch.Tensor, chunk_size: int, value: float = 0.0) -> torch.Tensor:
    """(B, H, T, ...) -> (B, H, N, C, ...) with T padded up to N*C using ``value``."""
    length = tensor.shape[2]
    padding = -length % chunk_size
    if padding:
        trailing = [0, 0] * (tensor.ndim - 3)
        tensor = F.pad(tensor, [*trailing, 0, padding], value=value)
    return tensor.reshape(*tensor.shape[:2], -1, chunk_size, *tensor.shape[3:])


def _chunkwise_delta(q, k, v, beta, decay, state, chunk_size, return_states):
    """Exact chunkwise (gated) delta rule / linear attention (beta=None).

    Per chunk, with in-chunk cumulative log-decay γ, Γ_ij = exp(γ_i - γ_j) (i ≥ j) and the
    causal mask M (diagonal included):
        A  = strict_lower(diag(β) K Kᵀ ⊙ Γ),   [W | U] = (I + A)⁻¹ [diag(β) K ⊙ e^γ | diag(β) V]
        U' = U - W S₀                          (pseudo-values; U' = V for linear attention)
        O  = (Q ⊙ e^γ) S₀ + (Q Kᵀ ⊙ Γ ⊙ M) U'
        S  = e^{γ_C} S₀ + (K ⊙ e^{γ_C - γ})ᵀ U'
    Padding tokens have k = v = q = 0, β = 0 and decay 1, so they change nothing.
    """
    length = q.shape[2]
    queries, keys, values = (_pad_and_split(x, chunk_size) for x in (q, k, v))
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    if decay is not None:
        log_decay = _pad_and_split(torch.log(decay), chunk_size)  # pad with log 1 = 0
        gamma = log_decay.cumsum(dim=-1)  # (B, H, N, C)
        # Γ from differences of γ (never ratios of products), masked before exp: no overflow.
        exponent = (gamma[..., :, None] - gamma[..., None, :]).masked_fill(~causal, -math.inf)
        decay_matrix = torch.exp(exponent)  # Γ ⊙ M
        queries_decayed = queries * torch.exp(gamma)[..., None]
        keys_to_end = keys * torch.exp(gamma[..., -1:] - gamma)[..., None]
        chunk_decay = torch.exp(gamma[..., -1])[..., None, None]  # (B, H, N, 1, 1)
    else:
        decay_matrix = causal.to(q.dtype)
        queries_decayed, keys_to_end, chunk_decay = queries, keys, None

    if beta is not None:
        betas = _pad_and_split(beta, chunk_size)[..., None]  # (B, H, N, C, 1)
        strict = causal & ~torch.eye(chunk_size, dtype=torch.bool, device=q.device)
        interaction = (betas * keys) @ keys.transpose(-1, -2) * decay_matrix
        lower = torch.eye(chunk_size, dtype=q.dtype, device=q.device) + interaction * strict
        keys_decayed = keys * torch.exp(gamma)[..., None] if decay is not None else keys
        right_hand = torch.cat([betas * keys_decayed, betas * values], dim=-1)
        solved = torch.linalg.solve_triangular(lower, right_hand, upper=False, unitriangular=True)
        w_matrix, u_matrix = solved.split([k.shape[-1], v.shape[-1]], dim=-1)

    entering_states, pseudo_values = [], []
    for chunk in range(queries.shape[2]):  # the only sequential loop: T/C steps
        entering_states.append(state)
        if beta is None:
            pseudo = values[:, :, chunk]
        else:
            pseudo = u_matrix[:, :, chunk] - w_matrix[:, :, chunk] @ state
        pseudo_values.append(pseudo)
        if chunk_decay is not None:
            state = chunk_decay[:, :, chunk] * state
        state = state + keys_to_end[:, :, chunk].transpose(-1, -2) @ pseudo
    entering = torch.stack(entering_states, dim=2)  # (B, H, N, d_k, d_v)
    pseudo = torch.stack(pseudo_values, dim=2)  # (B, H, N, C, d_v)

    scores = queries @ keys.transpose(-1, -2) * decay_matrix  # Q Kᵀ ⊙ Γ ⊙ M
    output = queries_decayed @ entering + scores @ pseudo
    output = output.flatten(2, 3)[:, :, :length]

    states = None
    if return_states:  # S_t = e^{γ_t} S₀ + Σ_{i≤t} Γ_ti k_i u'_iᵀ, for plots
        mixing = decay_matrix.expand(*keys.shape[:3], -1, -1)  # (B, H, N, C, C)
        states = torch.einsum("bhnti,bhnik,bhniv->bhntkv", mixing, keys, pseudo)
        carried = entering[:, :, :, None]
        if decay is not None:
            carried = carried * torch.exp(gamma)[..., None, None]
        states = (states + carried).flatten(2, 3)[:, :, :length]
    return output, state, states


def _segment_products(factors: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
    """R[s, i] = Π_{j=i+1..s} factors_j for s ≥ i, else 0. factors (..., C) -> (..., C, C).

    Built with a cumulative product instead of ratios of products, so factors equal to 0
    (no momentum, full forgetting) are exact.
    """
    size = factors.shape[-1]
    after = torch.ones(size, size, dtype=torch.bool, device=factors.device).tril(-1)  # j > i
    table = torch.where(after, factors[..., :, None], torch.ones_like(factors)[..., :, None])
    return table.cumprod(dim=-2) * causal


def _chunkwise_titans(q, k, v, lr, momentum, forget, memory, surprise, chunk_size,
                      return_states):
    """Titans' linear memory with every gradient of a chunk taken at the entering state M₀.

    With E = K M₀ - V, P^a_t = Π(1-α), P^η_t = Π η inside the chunk,
    R^η[s,i] = Π_{j=i+1..s} η_j, R^a[t,s] = Π_{j=s+1..t}(1-α_j), G = R^a R^η, f = R^a P^η:
        O   = diag(P^a) Q M₀ + diag(f) Q S₀ - (Q Kᵀ ⊙ G)(diag(θ) E)
        M_t = P^a_t M₀ + f_t S₀ - Σ_i G[t,i] k_i (θ_i e_i)ᵀ
        S_t = P^η_t S₀ - Σ_i R^η[t,i] k_i (θ_i e_i)ᵀ
    The state handed on is read at the chunk's last *real* token (padding has θ=0, η=1, α=0).
    """
    length = q.shape[2]
    queries, keys, values = (_pad_and_split(x, chunk_size) for x in (q, k, v))
    thetas = _pad_and_split(lr, chunk_size)
    etas = _pad_and_split(momentum, chunk_size, value=1.0)
    keeps = 1 - _pad_and_split(forget, chunk_size)
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()

    momentum_products = _segment_products(etas, causal)  # R^η  (B, H, N, C, C)
    retention_products = _segment_products(keeps, causal)  # R^a
    weights = retention_products @ momentum_products  # G
    cumulative_eta = etas.cumprod(dim=-1)  # P^η
    cumulative_keep = keeps.cumprod(dim=-1)  # P^a
    surprise_weight = (retention_products @ cumulative_eta[..., None])[..., 0]  # f
    scores = queries @ keys.transpose(-1, -2) * weights

    outputs, memories, surprises = [], [], []
    chunk_count = queries.shape[2]
    for chunk in range(chunk_count):
        query, key = queries[:, :, chunk], keys[:, :, chunk]
        errors = key @ memory - values[:, :, chunk]  # all at the entering state M₀
        scaled_errors = thetas[:, :, chunk, :, None] * errors  # diag(θ) E
        outputs.append(cumulative_keep[:, :, chunk, :, None] * (query @ memory)
                       + surprise_weight[:, :, chunk, :, None] * (query @ surprise)
                       - scores[:, :, chunk] @ scaled_errors)
        if return_states:
            memories.append(
                cumulative_keep[:, :, chunk, :, None, None] * memory[:, :, None]
                + surprise_weight[:, :, chunk, :, None, None] * surprise[:, :, None]
                - torch.einsum("bhti,bhik,bhiv->bhtkv", weights[:, :, chunk], key, scaled_errors))
            surprises.append(
                cumulative_eta[:, :, chunk, :, None, None] * surprise[:, :, None]
                - torch.einsum("bhti,bhik,bhiv->bhtkv", momentum_products[:, :, chunk], key,
                               scaled_errors))
        last = chunk_size - 1 if chunk < chunk_count - 1 else (length - 1) % chunk_size
        new_memory = (cumulative_keep[:, :, chunk, last, None, None] * memory
                      + surprise_weight[:, :, chunk, last, None, None] * surprise
                      - (weights[:, :, chunk, last, :, None] * key).transpose(-1, -2)
                      @ scaled_errors)
        surprise = (cumulative_eta[:, :, chunk, last, None, None] * surprise
                    - (momentum_products[:, :, chunk, last, :, None] * key).transpose(-1, -2)
                    @ scaled_errors)
        memory = new_memory
    output = torch.stack(outputs, dim=2).flatten(2, 3)[:, :, :length]
    states = None
    if return_states:
        states = (torch.stack(memories, dim=2).flatten(2, 3)[:, :, :length],
                  torch.stack(surprises, dim=2).flatten(2, 3)[:, :, :length])
    return output, (memory, surprise), states


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _delta_family(q, k, v, beta, decay, initial_state, chunk_size, return_states):
    """Check the arguments of linear attention (beta=None) or the delta rule, then dispatch."""
    _check_qkv(q, k, v)
    beta = _check_gate("beta", beta, q, 0.0, 2.0)
    decay = _check_gate("decay", decay, q, 0.0, 1.0, low_inclusive=False)
    state = _check_state("initial_state", initial_state, q, v.shape[-1])
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    if chunk_size is None:
        output, state, states = _delta_rule_loop(q, k, v, beta, decay, state, return_states)
    else:
        output, state, states = _chunkwise_delta(q, k, v, beta, decay, state, chunk_size,
                                                 return_states)
    return (output, state, states) if return_states else (output, state)


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    decay: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
    return_states: bool = False,
):
    """(Gated) linear attention: one GD step per token on the dot-product objective.

    Inner objective -<Sᵀk_t, v_t> with retention (NL arXiv eq. 64; N-eq 11-15): its gradient
    does not depend on S, so the write is Hebbian and nothing can be overwritten:
        S_t = α_t S_{t-1} + k_t v_tᵀ,    o_t = S_tᵀ q_t.

    Args:
        q, k: (B, H, T, d_k).  v: (B, H, T, d_v).
        decay: α_t in (0, 1], shape (B, H, T); None means 1 (vanilla linear attention).
        initial_state: S_0, (B, H, d_k, d_v); zeros when None.
        chunk_size: None for the token loop (reference); C ≥ 1 for the exact chunkwise form.
        return_states: also return every S_t, (B, H, T, d_k, d_v).

    Returns:
        ``(o, final_state)`` with o (B, H, T, d_v) and S_T (B, H, d_k, d_v); plus the per-token
        states when ``return_states``.
    """
    return _delta_family(q, k, v, None, decay, initial_state, chunk_size, return_states)


def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    decay: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
    return_states: bool = False,
):
    """(Gated) delta rule: one GD step per token on L2 regression (DeltaNet, Gated DeltaNet).

    Inner objective ½‖Sᵀk_t - v_t‖² with step β_t (NL arXiv eq. 65; Titans App. C). The
    gradient k_t (Sᵀk_t - v_t)ᵀ depends on the state, so the step first *erases* what S stores
    along k_t and then writes v_t:
        S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,    o_t = S_tᵀ q_t,
    with the retention α_t applied before the correction (flash-linear-attention's order).

    Args:
        q, k: (B, H, T, d_k); keys are usually ℓ2-normalised.  v: (B, H, T, d_v).
        beta: step sizes β_t in [0, 2], shape (B, H, T). For unit keys (I - β k kᵀ) has
            eigenvalue 1 - β along k, so β ∈ [0, 2] keeps the erase non-expansive; β = 1
            replaces the stored value exactly.
        decay: α_t in (0, 1], shape (B, H, T); None means 1.
        initial_state: S_0, (B, H, d_k, d_v); zeros when None.
        chunk_size: None for the token loop (reference); C ≥ 1 for the exact chunkwise WY
            form (any T; the last chunk is padded with tokens that change nothing).
        return_states: also return every S_t, (B, H, T, d_k, d_v).

    Returns:
        ``(o, final_state)``, plus the per-token states when ``return_states``.
    """
    if beta is None:
        raise ValueError("beta must be a tensor of shape (B, H, T), got None "
                         "(use linear_attention for the rule without correction)")
    return _delta_family(q, k, v, beta, decay, initial_state, chunk_size, return_states)


def titans_memory(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lr: torch.Tensor,
    momentum: torch.Tensor,
    forget: torch.Tensor,
    *,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    chunk_size: int | None = 1,
    return_states: bool = False,
):
    """Titans' neural long-term memory with a linear memory (Titans eq. 13-14, §3.2).

    Inner loss ℓ(M; k_t, v_t) = ½‖Mᵀk_t - v_t‖², gradient ∇ = k_t (Mᵀk_t - v_t)ᵀ:
        S_t = η_t S_{t-1} - θ_t ∇ℓ(M'; k_t, v_t)     (past surprise + momentary surprise)
        M_t = (1 - α_t) M_{t-1} + S_t                 (α *forgets*: Titans' letter)
        o_t = M_tᵀ q_t
    where M' is the state that entered the current chunk of ``chunk_size`` tokens. With
    ``chunk_size=1`` (or ``None``) M' = M_{t-1}: the exact online rule. With larger chunks all
    gradients inside a chunk are frozen at M', which makes the chunk parallel but changes the
    result (Titans §3.2): compare it with the frozen-gradient loop of the same chunk size.
    With η = 0 and α = 0 this is the delta rule with β = θ. (With forgetting the two differ:
    Titans erases with (1 - α)I - θ k kᵀ, the gated delta rule with α'(I - β k kᵀ).)

    Args:
        q, k: (B, H, T, d_k).  v: (B, H, T, d_v).
        lr: θ_t in [0, 1], (B, H, T).  momentum: η_t in [0, 1], (B, H, T).
        forget: α_t in [0, 1], (B, H, T).
        initial_state: the pair (M_0, S_0), each (B, H, d_k, d_v); zeros when None.
        chunk_size: ``None`` runs the exact token loop; an integer C runs the chunkwise form
            (matrix products inside each chunk). C = 1 equals the exact rule.
        return_states: also return the pair of per-token states (M_t, S_t), each
            (B, H, T, d_k, d_v).

    Returns:
        ``(o, (M_T, S_T))``, plus the per-token states when ``return_states``.
    """
    _check_qkv(q, k, v)
    lr = _check_gate("lr", lr, q, 0.0, 1.0)
    momentum = _check_gate("momentum", momentum, q, 0.0, 1.0)
    forget = _check_gate("forget", forget, q, 0.0, 1.0)
    for name, gate in (("lr", lr), ("momentum", momentum), ("forget", forget)):
        if gate is None:
            raise ValueError(f"{name} must be a tensor of shape {_GATE_LAYOUT}, got None")
    if initial_state is None:
        memory = surprise = None
    elif isinstance(initial_state, (tuple, list)) and len(initial_state) == 2:
        memory, surprise = initial_state
    else:
        raise ValueError("initial_state must be None or the pair (M_0, S_0), each "
                         f"{_STATE_LAYOUT}, got {type(initial_state).__name__}")
    memory = _check_state("initial_state[0] (M_0)", memory, q, v.shape[-1])
    surprise = _check_state("initial_state[1] (S_0)", surprise, q, v.shape[-1])
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    if chunk_size is None:
        output, final, states = _titans_loop(q, k, v, lr, momentum, forget, memory, surprise,
                                             1, return_states)
    else:
        output, final, states = _chunkwise_titans(q, k, v, lr, momentum, forget, memory,
                                                  surprise, chunk_size, return_states)
    return (output, final, states) if return_states else (output, final)


def reference_titans_memory(q, k, v, lr, momentum, forget, *, initial_state=None,
                            frozen_chunk_size: int = 1, return_states: bool = False):
    """Token-by-token Titans loop whose gradients are frozen per chunk of ``frozen_chunk_size``.

    The slow twin of ``titans_memory(..., chunk_size=C)``: same arguments and returns. With
    ``frozen_chunk_size=1`` it is the exact online rule.
    """
    check_positive_int("frozen_chunk_size", frozen_chunk_size)
    _check_qkv(q, k, v)
    if initial_state is None:
        memory = surprise = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
    else:
        memory, surprise = initial_state
    output, final, states = _titans_loop(q, k, v, lr, momentum, forget, memory, surprise,
                                         frozen_chunk_size, return_states)
    return (output, final, states) if return_states else (output, final)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                      causal: bool = True, window: int | None = None) -> torch.Tensor:
    """Softmax attention as the non-parametric memory (NL arXiv eq. 62-63).

    The exact minimiser of Σ_{i≤t} s(k_i, q_t)‖v_i - m‖² with s(k, q) = exp(qᵀk/√d_k) is the
    Nadaraya-Watson average o_t = Σ_i softmax_i(q_tᵀk_i/√d_k) v_i: the memory caches every
    token instead of compressing them. ``window=c`` restricts the sum to the last c tokens
    (sliding-window attention). Computed by ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        q, k: (B, H, T, d_k).  v: (B, H, T, d_v).
        causal: token t sees only tokens ≤ t.
        window: optional window length c ≥ 1 (needs ``causal``).

    Returns:
        o: (B, H, T, d_v).
    """
    _check_qkv(q, k, v)
    check_positive_int("window", window, allow_none=True)
    if window is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if not causal:
        raise ValueError("window needs causal=True, got causal=False")
    positions = torch.arange(q.shape[2], device=q.device)
    distance = positions[:, None] - positions[None, :]
    allowed = (distance >= 0) & (distance < window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def softmax_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                                causal: bool = True) -> torch.Tensor:
    """The same Nadaraya-Watson read written out: weights exp(qᵀk/√d) normalised over i ≤ t."""
    _check_qkv(q, k, v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        future = torch.ones(q.shape[2], q.shape[2], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, -math.inf)
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return (weights / weights.sum(dim=-1, keepdim=True)) @ v


# --------------------------------------------------------------------------------------------
# Benchmark (python -m nlbook.bench memory)
# --------------------------------------------------------------------------------------------


def benchmark_memory(batch: int = 16, heads: int = 4, length: int = 256, dim: int = 32,
                     chunk_sizes: tuple[int, ...] = (16, 32, 64), repeats: int = 5,
                     seed: int = 0) -> dict[str, float]:
    """Time forward+backward of each rule: token loop vs chunkwise, in one run.

    Prints one line per (rule, chunk size) with milliseconds and the speed-up over the loop,
    and returns ``{"<rule> C=<c>": speedup}``. Call with one torch thread for stable ratios.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=generator)

    q = normal(batch, heads, length, dim) / math.sqrt(dim)
    k = F.normalize(normal(batch, heads, length, dim), dim=-1)
    v = normal(batch, heads, length, dim)
    gate = torch.sigmoid(normal(batch, heads, length))
    decay = 0.9 + 0.1 * torch.sigmoid(normal(batch, heads, length))
    rules = {
        "linear attention": lambda c, x: linear_attention(x[0], x[1], x[2], decay=decay,
                                                          chunk_size=c),
        "gated delta rule": lambda c, x: delta_rule(x[0], x[1], x[2], gate, decay=decay,
                                                    chunk_size=c),
        "titans (chunk = frozen-gradient span)": lambda c, x: titans_memory(
            x[0], x[1], x[2], 0.5 * gate, 0.5 * gate, 0.05 * gate, chunk_size=c),
    }
    speedups: dict[str, float] = {}
    print(f"shape (B, H, T, d) = ({batch}, {heads}, {length}, {dim}), forward + backward, "
          f"median of {repeats}")
    for name, rule in rules.items():
        def run(chunk_size, rule=rule):
            inputs = [x.clone().requires_grad_() for x in (q, k, v)]
            output, _ = rule(chunk_size, inputs)
            output.square().sum().backward()

        # Titans' token loop is chunk_size=1 of the reference loop; the others' is None.
        loop_time = time_call(lambda: run(None), repeats=repeats)
        print(f"  {name:40s} token loop   {1e3 * loop_time:8.1f} ms")
        for chunk_size in chunk_sizes:
            chunk_time = time_call(lambda c=chunk_size: run(c), repeats=repeats)
            speedups[f"{name} C={chunk_size}"] = loop_time / chunk_time
            print(f"  {name:40s} chunk C={chunk_size:<4d} {1e3 * chunk_time:8.1f} ms   "
                  f"speed-up x{loop_time / chunk_time:5.1f}")
    return speedups
