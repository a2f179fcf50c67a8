"""Sequence mixers that can stand in for self-modifying Titans in a HOPE block (chapter 7).

The paper's **Hope-Attention** (arXiv §8.3) replaces self-modifying Titans with softmax
attention, followed by the CMS; it isolates what the CMS adds. The ablation of chapter 7 also
puts linear attention there. Both keep HOPE's streaming contract: a call continues a stream
from a state, and reading a text in pieces gives exactly the result of one pass.

- :class:`SlidingWindowAttention`: causal softmax attention over the last ``window`` tokens
  (the current one included), its state the keys and values of the last ``window − 1`` tokens
  (a cache with a validity mask, so restarted rows of a carried batch see nothing). No
  positional encoding, as in HOPE (the block's convolution sees the order).
- :class:`GatedLinearAttention`: S_t = α_t S_{t−1} + k_t v_tᵀ, o_t = S_tᵀ q_t (NL arXiv eq. 64,
  the Hebbian memory of chapter 1) with q, k ℓ2-normalised and a per-token, per-head
  retention α_t = sigmoid(w_α·x + b); its state S (B, H, d, d).
- :class:`GatedDeltaRule`: S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ, o_t = S_tᵀ q_t
  (NL arXiv eq. 65 with retention: Gated DeltaNet, the L2 memory of chapter 1) with q, k
  ℓ2-normalised, β_t = sigmoid(w_β·x) and α_t = sigmoid(w_α·x + b) per token and head; its
  state S (B, H, d, d). The recall baseline of chapter 5 (MQAR).

Every state is a dataclass of (B, ...) tensors (and a position) whose initial value has the
same shapes, so :mod:`nlbook.hope.carry` carries and restarts them like the Titans state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    check_bool,
    check_dtype_float,
    check_finite,
    check_instance,
    check_memory,
    check_positive_int,
    check_shape,
    check_torch_generator,
    entry_point,
)
from nlbook.memory import delta_rule, linear_attention

__all__ = ["AttentionState", "GatedDeltaRule", "GatedLinearAttention", "LinearAttentionState",
           "SlidingWindowAttention"]


def _detach_dataclass(state):
    values = {item.name: getattr(state, item.name) for item in fields(state)}
    return type(state)(**{name: value.detach() if torch.is_tensor(value) else value
                          for name, value in values.items()})


@dataclass
class AttentionState:
    """Keys and values (B, H, window − 1, d) of the last tokens, ``valid`` (B, window − 1)
    1.0 where a cached token exists (0.0 at the start of a stream), and the tokens seen."""

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor
    position: int = 0

    def detach(self) -> AttentionState:
        return _detach_dataclass(self)


@dataclass
class LinearAttentionState:
    """The linear-attention memory S (B, H, d, d) and the tokens seen."""

    memory: torch.Tensor
    position: int = 0

    def detach(self) -> LinearAttentionState:
        return _detach_dataclass(self)


class _HeadProjections(nn.Module):
    """Fused q, k, v projections (d_model → H·d each) and the output projection."""

    def __init__(self, d_model: int, heads: int, head_dim: int | None, extra: int,
                 generator: torch.Generator | None) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("heads", heads)
        if head_dim is None:
            if d_model % heads:
                raise ValueError(f"heads must divide d_model = {d_model} when head_dim is not "
                                 f"given, got heads = {heads}")
            head_dim = d_model // heads
        check_positive_int("head_dim", head_dim)
        check_torch_generator("generator", generator, allow_none=True)
        check_memory("d_model, heads and head_dim",
                     d_model * (3 * heads * head_dim + extra) + heads * head_dim * d_model,
                     what="the parameters")
        self.d_model, self.heads, self.head_dim, self.extra = d_model, heads, head_dim, extra
        width = heads * head_dim
        self.input_projection = nn.Parameter(
            torch.randn(d_model, 3 * width + extra, generator=generator) * d_model ** -0.5)
        self.output_projection = nn.Parameter(
            torch.randn(width, d_model, generator=generator) * width ** -0.5)

    def project(self, x: torch.Tensor):
        """x (B, T, d_model) → q, k, v (B, H, T, d) and the extra columns (B, T, extra)."""
        batch, length, _ = x.shape
        width = self.heads * self.head_dim
        projected = x @ self.input_projection
        q, k, v, extra = projected.split([width, width, width, self.extra], dim=-1)

        def heads(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

        return heads(q), heads(k), heads(v), extra

    def output(self, reads: torch.Tensor) -> torch.Tensor:
        """reads (B, H, T, d) → (B, T, d_model)."""
        batch, _, length, _ = reads.shape
        return reads.transpose(1, 2).reshape(batch, length, -1) @ self.output_projection

    def start(self, x: torch.Tensor, state, state_class, return_trace: bool = False,
              keep_state: bool = True):
        """Check x (B, T, d_model) with B, T ≥ 1, its dtype, device and values, the flags and
        the state (its class and batch); the initial state if None."""
        check_shape("x", x, (None, None, self.d_model), "(B, T, d_model)")
        check_dtype_float("x", x)
        if x.dtype != self.input_projection.dtype or x.device != self.input_projection.device:
            raise ValueError(f"x must have the mixer's dtype {self.input_projection.dtype} and "
                             f"device {self.input_projection.device} (convert the module with "
                             f".to()), got {x.dtype} on {x.device}")
        if x.shape[1] == 0 or x.shape[0] == 0:
            raise ValueError(f"x must hold at least one sequence and one token, got shape "
                             f"{tuple(x.shape)}")
        check_finite("x", x)
        check_bool("return_trace", return_trace)
        check_bool("keep_state", keep_state)
        check_instance("state", state, state_class, allow_none=True,
                       expected=f"a {state_class.__name__} (from this mixer)")
        if state is None:
            return self.initial_state(x.shape[0])
        batch = next(getattr(state, item.name) for item in fields(state)
                     if torch.is_tensor(getattr(state, item.name))).shape[0]
        if batch != x.shape[0]:
            raise ValueError(f"state must be for batch {x.shape[0]} (of x), got a state for "
                             f"batch {batch}")
        return state


class SlidingWindowAttention(_HeadProjections):
    """Causal softmax attention over the last ``window`` tokens (Hope-Attention's mixer).

    Call: ``y, state = mixer(x, state=None)`` with x (B, T, d_model); exact for any split of a
    stream (token t attends to tokens t − window + 1 … t wherever the call boundaries fall).
    """

    def __init__(self, d_model: int, heads: int, head_dim: int | None = None, *,
                 window: int = 64, generator: torch.Generator | None = None) -> None:
        super().__init__(d_model, heads, head_dim, 0, generator)
        check_positive_int("window", window)
        self.window = window

    def initial_state(self, batch: int) -> AttentionState:
        check_positive_int("batch", batch)
        reference = self.input_projection
        cache = reference.new_zeros(batch, self.heads, self.window - 1, self.head_dim)
        return AttentionState(cache, cache.clone(), reference.new_zeros(batch, self.window - 1))

    @entry_point
    def forward(self, x: torch.Tensor, state: AttentionState | None = None, *,
                return_trace: bool = False, keep_state: bool = True):
        state = self.start(x, state, AttentionState, return_trace, keep_state)
        batch, length, _ = x.shape
        q, k, v, _ = self.project(x)
        keys = torch.cat([state.keys, k], dim=2)                          # (B, H, W−1+T, d)
        values = torch.cat([state.values, v], dim=2)
        cached = self.window - 1
        # Query i (at cache index cached + i) sees key j when 0 ≤ cached + i − j < window,
        # and a cached key only if it exists.
        query_index = torch.arange(length, device=x.device)[:, None] + cached
        key_index = torch.arange(cached + length, device=x.device)[None, :]
        distance = query_index - key_index
        allowed = (distance >= 0) & (distance < self.window)              # (T, W−1+T)
        valid = torch.cat([state.valid, state.valid.new_ones(batch, length)], dim=1) > 0.5
        mask = allowed[None, None] & valid[:, None, None, :]              # (B, 1, T, W−1+T)
        reads = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        new_state = None
        if keep_state:
            new_state = AttentionState(keys[:, :, keys.shape[2] - cached:],
                                       values[:, :, values.shape[2] - cached:],
                                       valid[:, valid.shape[1] - cached:].to(x.dtype),
                                       state.position + length)
        y = self.output(reads)
        if return_trace:
            return y, new_state, {"keys": k, "values": v}
        return y, new_state


class _GatedMatrixMemory(_HeadProjections):
    """What gated linear attention and the gated delta rule share: fused q, k, v and
    ``gates`` gate columns per head (started small, so every gate starts near its bias), a
    retention bias b = 3 (α ≈ 0.95), a chunk size, and the memory S (B, H, d, d) as state."""

    def __init__(self, d_model: int, heads: int, head_dim: int | None, gates: int,
                 chunk_size: int, generator: torch.Generator | None) -> None:
        check_positive_int("heads", heads)  # before gates·heads below
        super().__init__(d_model, heads, head_dim, gates * heads, generator)
        check_positive_int("chunk_size", chunk_size)
        self.chunk_size = chunk_size
        with torch.no_grad():
            self.input_projection[:, 3 * heads * self.head_dim:].mul_(0.1)
        self.retention_bias = nn.Parameter(torch.full((heads,), 3.0))

    def initial_state(self, batch: int) -> LinearAttentionState:
        check_positive_int("batch", batch)
        return LinearAttentionState(self.input_projection.new_zeros(
            batch, self.heads, self.head_dim, self.head_dim))


class GatedLinearAttention(_GatedMatrixMemory):
    """Gated linear attention, S_t = α_t S_{t−1} + k_t v_tᵀ, o_t = S_tᵀ q_t (NL arXiv eq. 64)
    with q, k ℓ2-normalised and α_t = sigmoid(w_α·x_t + b) per head (b starts at 3: α ≈ 0.95).

    Call: ``y, state = mixer(x, state=None)``; computed chunkwise (``chunk_size``) by
    :func:`nlbook.memory.linear_attention`, exact for any split of a stream.
    """

    def __init__(self, d_model: int, heads: int, head_dim: int | None = None, *,
                 chunk_size: int = 64, generator: torch.Generator | None = None) -> None:
        # One gate column per head: the retention α = sigmoid(w_α·x + 3) starts near 0.95.
        super().__init__(d_model, heads, head_dim, 1, chunk_size, generator)

    @entry_point
    def forward(self, x: torch.Tensor, state: LinearAttentionState | None = None, *,
                return_trace: bool = False, keep_state: bool = True):
        state = self.start(x, state, LinearAttentionState, return_trace, keep_state)
        length = x.shape[1]
        q, k, v, gate = self.project(x)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        decay = torch.sigmoid(gate + self.retention_bias).transpose(1, 2)  # (B, H, T)
        # One chunk per call segment aligned to the stream (any split is exact anyway: the
        # recurrence is linear).
        reads, final = linear_attention(q, k, v, decay=decay, initial_state=state.memory,
                                        chunk_size=min(self.chunk_size, length))
        new_state = LinearAttentionState(final, state.position + length) if keep_state else None
        y = self.output(reads)
        if return_trace:
            return y, new_state, {"keys": k, "values": v, "retention": decay}
        return y, new_state


class GatedDeltaRule(_GatedMatrixMemory):
    """Gated delta rule (Gated DeltaNet): one gradient step per token on ½‖Sᵀk_t − v_t‖² with
    retention (NL arXiv eq. 65; Titans App. C),

        S_t = α_t (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ,    o_t = S_tᵀ q_t,

    q, k ℓ2-normalised, β_t = sigmoid(w_β·x) ∈ (0, 1) (starts at 1/2) and the retention
    α_t = sigmoid(w_α·x + b) (b starts at 3: α ≈ 0.95), per token and head.

    Call: ``y, state = mixer(x, state=None)`` with x (B, T, d_model); computed chunkwise
    (``chunk_size``, exact WY form) by :func:`nlbook.memory.delta_rule`, exact for any split of
    a stream; its state is :class:`LinearAttentionState` (S (B, H, d, d)).
    """

    def __init__(self, d_model: int, heads: int, head_dim: int | None = None, *,
                 chunk_size: int = 64, generator: torch.Generator | None = None) -> None:
        # Two gate columns per head: β = sigmoid(w_β·x) starts near 1/2, α near 0.95.
        super().__init__(d_model, heads, head_dim, 2, chunk_size, generator)

    @entry_point
    def forward(self, x: torch.Tensor, state: LinearAttentionState | None = None, *,
                return_trace: bool = False, keep_state: bool = True):
        state = self.start(x, state, LinearAttentionState, return_trace, keep_state)
        length = x.shape[1]
        q, k, v, gates = self.project(x)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        step_gate, retention_gate = gates.split(self.heads, dim=-1)         # (B, T, H) each
        beta = torch.sigmoid(step_gate).transpose(1, 2)                     # (B, H, T)
        decay = torch.sigmoid(retention_gate + self.retention_bias).transpose(1, 2)
        # The chunkwise form is exact, so any split of a stream gives the same reads.
        reads, final = delta_rule(q, k, v, beta, decay=decay, initial_state=state.memory,
                                  chunk_size=min(self.chunk_size, length))
        new_state = LinearAttentionState(final, state.position + length) if keep_state else None
        y = self.output(reads)
        if return_trace:
            return y, new_state, {"keys": k, "values": v, "step": beta, "retention": decay}
        return y, new_state
