"""Transformer++: the paper's Transformer baseline (rotary positions, SwiGLU, RMSNorm, no biases).

The Nested Learning paper (and Titans, GLA, DeltaNet before it) compares HOPE with
"Transformer++", the Llama-style recipe (Touvron et al. 2023). Per block (pre-norm)::

    x = x + Attention(RMSNorm(x))        causal softmax attention, rotary q and k, H heads
    x = x + SwiGLU(RMSNorm(x))           W_down (SiLU(W_gate x) * W_up x)

with no position embedding (positions enter only through the rotation of q and k), no biases,
a final RMSNorm and an output projection tied to the token embedding.

Rotary position embedding (Su et al. 2021, RoFormer eq. 34): split each head's d_head
dimensions into pairs (2i, 2i+1), i = 0 .. d_head/2 - 1, and rotate the pair of the vector at
position t by the angle t θ_i with θ_i = base^(-2i/d_head) (base 10,000)::

    (x_2i, x_2i+1) -> (x_2i cos tθ_i - x_2i+1 sin tθ_i,  x_2i sin tθ_i + x_2i+1 cos tθ_i)

A rotation by tθ applied to q_t and by sθ to k_s gives q_t . k_s a dependence on t - s only
(R(tθ)^T R(sθ) = R((s - t)θ)): attention sees relative positions, and a window model trained
on short strings has no position it never saw as an absolute index.

RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * g, no centring, no bias.

Interface as :class:`nlbook.transformer.TransformerLM` (a window model, no state carried):
``logits, loss = model(idx, targets=None)``, ``generate``, ``vocab_size``, ``context_length``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    check_memory,
    check_positive_int,
    check_scalar_in_range,
    check_tensor,
    entry_point,
)
from nlbook.transformer import (
    check_targets,
    check_token_ids,
    generate_tokens,
    language_model_loss,
)

__all__ = ["TransformerPlusPlusLM", "apply_rotary", "rotary_angles", "swiglu_hidden_width"]


@entry_point
def rotary_angles(positions: torch.Tensor, d_head: int, *, base: float = 10000.0) -> torch.Tensor:
    """The rotation angles t θ_i: positions (T,) -> (T, d_head / 2), θ_i = base^(-2i/d_head).

    Computed in float64 (angles of long sequences lose digits in float32 before the cos)."""
    check_tensor("positions", positions, ndim=1, layout="(T,)", finite=True)
    if positions.dtype == torch.bool or positions.is_complex():
        raise ValueError(f"positions must hold real numbers (int or float), got dtype "
                         f"{positions.dtype}")
    check_positive_int("d_head", d_head)
    if d_head % 2:
        raise ValueError(f"d_head must be even (rotary embedding rotates pairs of dimensions), "
                         f"got {d_head}")
    check_memory("positions and d_head", positions.shape[0] * d_head, bytes_per_element=8,
                 what="the angles")
    check_scalar_in_range("base", base, 1.0, math.inf, low_inclusive=False,
                          high_inclusive=False)
    return _angles(positions, d_head, float(base))


def _angles(positions: torch.Tensor, d_head: int, base: float) -> torch.Tensor:
    index = torch.arange(d_head // 2, dtype=torch.float64, device=positions.device)
    theta = base ** (-2.0 * index / d_head)
    return positions.to(torch.float64)[:, None] * theta[None, :]


@entry_point
def apply_rotary(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0
                 ) -> torch.Tensor:
    """Rotate the pairs (2i, 2i+1) of x's last axis by t θ_i (RoFormer eq. 34).

    Args:
        x: (..., T, d_head) queries or keys, d_head even.
        positions: (T,) the position t of each row (any real offset: the scores q . k of two
            rotated vectors depend only on the difference of their positions).
        base: θ_i = base^(-2i/d_head).

    Returns:
        x rotated, same shape and dtype.
    """
    check_tensor("x", x, layout="(..., T, d_head)", dtype="float")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 axes (..., T, d_head), got shape "
                         f"{tuple(x.shape)}")
    check_tensor("positions", positions, ndim=1, layout="(T,)")
    if positions.shape[0] != x.shape[-2]:
        raise ValueError(f"positions must hold one position per row of x (T = {x.shape[-2]}), "
                         f"got shape {tuple(positions.shape)}")
    if x.shape[-1] % 2:
        raise ValueError(f"x must have an even last axis d_head (rotary embedding rotates "
                         f"pairs of dimensions), got shape {tuple(x.shape)}")
    angles = rotary_angles(positions, x.shape[-1], base=base)
    return _rotate(x, torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., T, d) with cos, sin (T, d/2): each pair (x_2i, x_2i+1) rotated."""
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)


def swiglu_hidden_width(d_model: int, mlp_ratio: int) -> int:
    """SwiGLU's hidden width: 2/3 of ``mlp_ratio * d_model`` (three matrices instead of two,
    so the MLP has the parameters of a GELU MLP of ratio ``mlp_ratio``; Shazeer 2020)."""
    check_positive_int("d_model", d_model)
    check_positive_int("mlp_ratio", mlp_ratio)
    return max(1, round(2 * mlp_ratio * d_model / 3))


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * g over the last axis (Zhang & Sennrich 2019); no bias."""

    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


class RotaryAttention(nn.Module):
    """Causal multi-head attention with rotary q and k: (B, T, d_model) -> (B, T, d_model).

    ``window`` w (None: full causal attention): position t attends to positions
    t - w + 1 .. t only (sliding-window attention, as in Longformer / Mistral)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, base: float,
                 window: int | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.base = base
        self.window = window
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.dropout = dropout
        self.out_dropout = nn.Dropout(dropout)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotated q, k and v, each (B, H, T, d_head), for x (B, T, d_model)."""
        batch, length, width = x.shape
        shape = (batch, length, self.n_heads, width // self.n_heads)
        q, k, v = (part.view(shape).transpose(1, 2) for part in self.qkv(x).split(width, -1))
        angles = _angles(torch.arange(length, device=x.device), width // self.n_heads,
                         self.base)
        cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.heads(x)
        dropout = self.dropout if self.training else 0.0
        if self.window is None or self.window >= length:
            attended = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:  # s may be read at t only if t - window < s <= t
            offset = torch.arange(length, device=x.device)
            distance = offset[:, None] - offset[None, :]
            allowed = (distance >= 0) & (distance < self.window)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                                      dropout_p=dropout)
        return self.out_dropout(self.out(attended.transpose(1, 2).reshape(batch, length, width)))


class SwiGLU(nn.Module):
    """W_down (SiLU(W_gate x) * W_up x), no biases (Shazeer 2020)."""

    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.silu(self.gate(x)) * self.up(x)))


class PlusPlusBlock(nn.Module):
    """One pre-norm Transformer++ block (rotary attention then SwiGLU, each with a residual)."""

    def __init__(self, d_model: int, n_heads: int, hidden: int, dropout: float,
                 base: float, window: int | None = None) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(d_model)
        self.attention = RotaryAttention(d_model, n_heads, dropout, base, window)
        self.mlp_norm = RMSNorm(d_model)
        self.mlp = SwiGLU(d_model, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TransformerPlusPlusLM(nn.Module):
    """Transformer++ language model: rotary positions, SwiGLU MLP, RMSNorm, no biases.

    Args:
        vocab_size: V, number of token ids.
        d_model: residual width d.
        n_layers: number of blocks.
        n_heads: attention heads H (d_model / H must be even: rotary pairs).
        context_length: longest input T (the window; rotary positions need no table, so this
            only bounds the input and the generation window).
        mlp_ratio: SwiGLU's hidden width is 2/3 of ``mlp_ratio * d_model``
            (:func:`swiglu_hidden_width`), the parameters of a GELU MLP of that ratio.
        dropout: dropout on attention weights and residual branches (train mode).
        rotary_base: θ_i = rotary_base^(-2i/d_head).
        window: None (default) for full causal attention, or w ≥ 1 for sliding-window
            attention: in every layer position t attends to t - w + 1 .. t only. One layer's
            output at t then depends on tokens t - w + 1 .. t alone; through L layers the
            reach is t - L(w - 1) .. t (each layer reads w - 1 tokens further back).

    Call ``logits, loss = model(idx, targets=None)`` with idx int64 (B, T), T <= context_length:
    logits (B, T, V); loss is the mean cross-entropy in nats when targets (B, T) are given
    (target -1 is ignored), else None.
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, *,
                 context_length: int = 256, mlp_ratio: int = 4, dropout: float = 0.0,
                 rotary_base: float = 10000.0, window: int | None = None) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                            ("n_layers", n_layers), ("n_heads", n_heads),
                            ("context_length", context_length), ("mlp_ratio", mlp_ratio)):
            check_positive_int(name, value)
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model ({d_model}) must be n_heads ({n_heads}) times an even "
                             f"head width (rotary embedding rotates pairs of dimensions)")
        check_scalar_in_range("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        check_scalar_in_range("rotary_base", rotary_base, 1.0, math.inf, low_inclusive=False,
                              high_inclusive=False)
        check_positive_int("window", window, allow_none=True)
        hidden = swiglu_hidden_width(d_model, mlp_ratio)
        check_memory("vocab_size, d_model, n_layers and mlp_ratio",
                     vocab_size * d_model + n_layers * (4 * d_model + 3 * hidden) * d_model,
                     what="the parameters")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.context_length = context_length
        self.rotary_base = float(rotary_base)
        self.window = window
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            PlusPlusBlock(d_model, n_heads, hidden, dropout, self.rotary_base, window)
            for _ in range(n_layers))
        self.final_norm = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied input/output embeddings
        self._init_weights(n_layers)

    def _init_weights(self, n_layers: int) -> None:
        # N(0, 0.02); residual output projections scaled by 1/sqrt(2 n_layers) (GPT-2), so
        # the residual stream's variance does not grow with depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        for block in self.blocks:
            for projection in (block.attention.out, block.mlp.down):
                nn.init.normal_(projection.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    @entry_point
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_token_ids("idx", idx, self.vocab_size, self.context_length)
        check_targets(idx, targets, self.vocab_size)
        x = self.embedding_dropout(self.token_embedding(idx))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.final_norm(x))
        return logits, language_model_loss(logits, targets)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to idx (B, T); returns (B, T + new)."""
        return generate_tokens(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                               top_p=top_p, generator=generator)
