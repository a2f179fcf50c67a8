"""A small pre-norm GPT (nanoGPT-like), written from scratch: the Transformer baseline of ch. 6.

Layout per block (pre-norm, Radford et al. 2019 / nanoGPT)::

    x = x + Dropout(Attention(LayerNorm(x)))          causal softmax attention, H heads
    x = x + Dropout(MLP(LayerNorm(x)))                Linear(d, r d) -> GELU -> Linear(r d, d)

with learned absolute position embeddings, a final LayerNorm and an output projection tied to
the token embedding. Attention is ``softmax(q k^T / sqrt(d_head) + causal mask) v``, computed
with ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``;
:func:`reference_causal_attention` is the explicit float64 formula the tests compare with.

The sampling helpers (:func:`sample_next_token`, :func:`generate_tokens`) work for any model
with the interface ``logits, loss = model(idx, targets=None)`` and a ``context_length``
attribute, so HOPE reuses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import check_ndim, check_positive_int, check_scalar_in_range

__all__ = [
    "ParameterCount",
    "TransformerLM",
    "check_generation_arguments",
    "check_targets",
    "check_token_ids",
    "generate_tokens",
    "language_model_loss",
    "parameter_count",
    "reference_causal_attention",
    "sample_next_token",
]


def check_token_ids(name: str, ids: torch.Tensor, vocab_size: int, context_length: int | None,
                    *, allow_ignore_index: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``ids`` is int64 (B, T), T <= context, ids in
    [0, vocab_size) (or -1, the ignore index, when ``allow_ignore_index``).

    Under torch.compile only the shape and dtype are checked: the range check reads the values
    (a graph break and a host sync), and the embedding's own index check still catches an id
    out of range."""
    check_ndim(name, ids, 2, "(B, T)")
    if ids.dtype != torch.int64:
        raise ValueError(f"{name} must have dtype torch.int64, got {ids.dtype}")
    if context_length is not None and ids.shape[1] > context_length:
        raise ValueError(f"{name} has T = {ids.shape[1]} tokens, more than context_length = "
                         f"{context_length}")
    if ids.numel() and not torch.compiler.is_compiling():
        low = -1 if allow_ignore_index else 0
        smallest, largest = int(ids.min()), int(ids.max())
        if smallest < low or largest >= vocab_size:
            raise ValueError(f"{name} must lie in [{low}, {vocab_size}), got values in "
                             f"[{smallest}, {largest}]")


def check_generation_arguments(idx: torch.Tensor, max_new_tokens: int) -> None:
    """Raise ValueError unless idx is a (B, T) prompt with T >= 1 and max_new_tokens an int >= 0."""
    check_ndim("idx", idx, 2, "(B, T)")
    if idx.shape[1] < 1:
        raise ValueError("idx must hold at least one token per row (a prompt)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")


def check_targets(idx: torch.Tensor, targets: torch.Tensor | None, vocab_size: int) -> None:
    """Raise ValueError unless ``targets`` is None or int64 ids (or -1) of idx's shape (B, T)."""
    if targets is None:
        return
    check_token_ids("targets", targets, vocab_size, None, allow_ignore_index=True)
    if targets.shape != idx.shape:
        raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, "
                         f"got {tuple(targets.shape)}")


def language_model_loss(logits: torch.Tensor, targets: torch.Tensor | None
                        ) -> torch.Tensor | None:
    """Mean next-token cross-entropy in nats: logits (B, T, V), targets (B, T), -1 ignored."""
    if targets is None:
        return None
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-1)


def reference_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                               ) -> torch.Tensor:
    """Causal softmax attention by the textbook formula, in float64 (a test reference).

    Args:
        q, k, v: (B, H, T, d_head).

    Returns:
        (B, H, T, d_head) float64: o_t = sum_{s <= t} softmax_s(q_t . k_s / sqrt(d_head)) v_s.
    """
    q, k, v = q.double(), k.double(), v.double()
    length = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: (B, T, d_model) -> (B, T, d_model)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = dropout
        self.out_dropout = nn.Dropout(dropout)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of shape (B, H, T, d_head) for input x of shape (B, T, d_model)."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=-1)
        shape = (batch, length, self.n_heads, width // self.n_heads)
        return (q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2),
                v.view(shape).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.heads(x)
        attended = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        merged = attended.transpose(1, 2).reshape(batch, length, width)
        return self.out_dropout(self.out(merged))


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear(d, r d) -> GELU -> Linear(r d, d)."""

    def __init__(self, d_model: int, mlp_ratio: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, mlp_ratio * d_model, bias=bias)
        self.down = nn.Linear(mlp_ratio * d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    """One pre-norm Transformer block (attention then MLP, each with a residual)."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float,
                 bias: bool) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model, bias=bias)
        self.attention = CausalSelfAttention(d_model, n_heads, dropout, bias)
        self.mlp_norm = nn.LayerNorm(d_model, bias=bias)
        self.mlp = MLP(d_model, mlp_ratio, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TransformerLM(nn.Module):
    """Character-level GPT language model.

    Args:
        vocab_size: V, number of token ids.
        d_model: residual width d.
        n_layers: number of blocks.
        n_heads: attention heads H (must divide d_model).
        context_length: longest input T (size of the position embedding).
        mlp_ratio: hidden width of the MLP is ``mlp_ratio * d_model``.
        dropout: dropout on attention weights, residual branches and embeddings (train mode).
        bias: biases in Linear and LayerNorm layers (nanoGPT's default is False).

    Call ``logits, loss = model(idx, targets=None)`` with idx int64 (B, T), T <= context_length:
    logits (B, T, V); loss is the mean cross-entropy in nats when targets (B, T) are given
    (target -1 is ignored), else None.
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, *,
                 context_length: int = 256, mlp_ratio: int = 4, dropout: float = 0.0,
                 bias: bool = False) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                            ("n_layers", n_layers), ("n_heads", n_heads),
                            ("context_length", context_length), ("mlp_ratio", mlp_ratio)):
            check_positive_int(name, value)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        check_scalar_in_range("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context_length, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, mlp_ratio, dropout, bias) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model, bias=bias)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied input/output embeddings
        self._init_weights(n_layers)

    def _init_weights(self, n_layers: int) -> None:
        # GPT-2 initialisation: N(0, 0.02), residual output projections scaled by
        # 1/sqrt(2 n_layers) so the residual stream's variance does not grow with depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            for projection in (block.attention.out, block.mlp.down):
                nn.init.normal_(projection.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_token_ids("idx", idx, self.vocab_size, self.context_length)
        check_targets(idx, targets, self.vocab_size)
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.embedding_dropout(self.token_embedding(idx) + self.position_embedding(positions))
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


def sample_next_token(logits: torch.Tensor, *, temperature: float = 1.0,
                      top_k: int | None = None, top_p: float | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from logits (B, V) -> int64 (B, 1).

    ``temperature`` divides the logits (0 means greedy argmax); ``top_k`` keeps the k largest;
    ``top_p`` keeps the smallest set of most likely tokens whose probability reaches p
    (nucleus sampling, Holtzman et al. 2020). Both filters may be combined (top-k first).
    """
    check_ndim("logits", logits, 2, "(B, V)")
    check_scalar_in_range("temperature", temperature, 0.0, math.inf)
    check_positive_int("top_k", top_k, allow_none=True)
    if top_p is not None:
        check_scalar_in_range("top_p", top_p, 0.0, 1.0, low_inclusive=False)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p (keeps at least one).
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probabilities = torch.softmax(logits, dim=-1)
    if generator is not None and generator.device != probabilities.device:
        # A CPU generator drives sampling for a model on another device.
        return torch.multinomial(probabilities.cpu(), 1, generator=generator).to(logits.device)
    return torch.multinomial(probabilities, 1, generator=generator)


@torch.no_grad()
def generate_tokens(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, *,
                    temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Autoregressive sampling for any model with ``model(idx) -> (logits, loss)`` and
    ``model.context_length``: idx (B, T) int64 -> (B, T + max_new_tokens). The input is cropped
    to the last ``context_length`` tokens before each step."""
    check_generation_arguments(idx, max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            window = idx[:, -model.context_length:]
            logits, _ = model(window)
            token = sample_next_token(logits[:, -1, :], temperature=temperature, top_k=top_k,
                                      top_p=top_p, generator=generator)
            idx = torch.cat([idx, token], dim=1)
    finally:
        model.train(was_training)
    return idx


@dataclass(frozen=True)
class ParameterCount:
    """Number of parameters: ``total`` (shared tensors counted once) and ``non_embedding``
    (total minus every ``nn.Embedding``; the tied output head is then not counted either).
    Kaplan et al. 2020 match models by the non-embedding count."""

    total: int
    non_embedding: int


def parameter_count(model: nn.Module) -> ParameterCount:
    """Count the trainable parameters of any model (works for TransformerLM and HopeLM)."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if parameter.requires_grad and id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    embedding = 0
    counted: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding) and id(module.weight) not in counted:
            counted.add(id(module.weight))
            embedding += module.weight.numel()
    return ParameterCount(total=total, non_embedding=total - embedding)
