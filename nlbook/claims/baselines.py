"""Recurrent baselines of chapter 7's experiments: an LSTM (the positive control of the formal
languages) and a DeltaNet whose step size β ranges over (0, 1) or (0, 2) (Grazzi et al. 2024).

Both have the course's interface (``logits, loss = model(idx, targets=None)``, ``vocab_size``,
``context_length``), so :func:`nlbook.tasks.next_character.train_next_character` and the
language-model tools train them like the Transformer and HOPE.

**DeltaRuleLM.** Each layer (pre-norm, no biases)::

    x = x + W_o DeltaRule(q, k, v, β)(RMSNorm(x))      q, k ℓ2-normalised per head
    x = x + SwiGLU(RMSNorm(x))

with S_t = (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ and o_t = S_tᵀ q_t (NL arXiv eq. 65;
:func:`nlbook.memory.delta_rule`, chunkwise and exact) and β_t = ``beta_max`` · sigmoid(w_β x_t).
For a unit key the transition I - β k kᵀ has eigenvalue 1 - β along k and 1 elsewhere: with
β in (0, 1) every eigenvalue lies in [0, 1], and Grazzi et al. (ICLR 2025, arXiv 2411.12537)
prove that such a linear recurrence cannot compute parity in finite precision; β in (0, 2)
(``beta_max=2``) allows eigenvalues down to -1, a reflection, which flips a sign per 1 read.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import check_memory, check_positive_int, check_scalar_in_range, entry_point
from nlbook.memory import delta_rule
from nlbook.transformer import check_targets, check_token_ids, language_model_loss
from nlbook.transformer_plus_plus import RMSNorm, SwiGLU, swiglu_hidden_width

__all__ = ["LSTMLM", "DeltaRuleLM"]


class LSTMLM(nn.Module):
    """Embedding → ``torch.nn.LSTM`` (``n_layers``, hidden ``d_model``) → linear head.

    Args:
        vocab_size, d_model, n_layers: as the other course models.
        n_heads: accepted for a uniform signature (factories pass it); unused.
        context_length: longest input accepted (an LSTM has no window; this only bounds T).

    ``logits, loss = model(idx, targets=None)``: idx (B, T) int64 -> logits (B, T, V).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int = 1, n_heads: int = 1, *,
                 context_length: int = 1024) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                            ("n_layers", n_layers), ("n_heads", n_heads),
                            ("context_length", context_length)):
            check_positive_int(name, value)
        check_memory("vocab_size, d_model and n_layers",
                     2 * vocab_size * d_model + 8 * n_layers * d_model * d_model,
                     what="the parameters")
        self.vocab_size, self.d_model, self.n_layers = vocab_size, d_model, n_layers
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        # nn.LSTM takes Python ints only (a numpy integer passes the checks above).
        self.lstm = nn.LSTM(int(d_model), int(d_model), num_layers=int(n_layers),
                            batch_first=True)
        self.lm_head = nn.Linear(d_model, vocab_size)

    @entry_point
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_token_ids("idx", idx, self.vocab_size, self.context_length)
        check_targets(idx, targets, self.vocab_size)
        hidden, _ = self.lstm(self.token_embedding(idx))
        logits = self.lm_head(hidden)
        return logits, language_model_loss(logits, targets)


class _DeltaLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, beta_max: float, chunk_size: int) -> None:
        super().__init__()
        self.n_heads, self.beta_max, self.chunk_size = n_heads, beta_max, chunk_size
        self.norm = RMSNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.beta = nn.Linear(d_model, n_heads, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.mlp_norm = RMSNorm(d_model)
        self.mlp = SwiGLU(d_model, swiglu_hidden_width(d_model, 4), 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        h = self.norm(x)
        shape = (batch, length, self.n_heads, width // self.n_heads)
        q, k, v = (part.view(shape).transpose(1, 2) for part in self.qkv(h).split(width, -1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = self.beta_max * torch.sigmoid(self.beta(h)).transpose(1, 2)  # (B, H, T)
        output, _ = delta_rule(q, k, v, beta, chunk_size=self.chunk_size)
        x = x + self.out(output.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.mlp_norm(x))


class DeltaRuleLM(nn.Module):
    """A DeltaNet language model with β in (0, ``beta_max``) (see the module docstring).

    Args:
        vocab_size, d_model, n_layers, n_heads: as the other course models.
        context_length: longest input accepted (a recurrence has no window).
        beta_max: 1 (β in (0, 1): eigenvalues in [0, 1]) or up to 2 (β in (0, 2): in [-1, 1]).
        chunk_size: the exact chunkwise form's chunk (a speed knob only).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, *,
                 context_length: int = 1024, beta_max: float = 1.0, chunk_size: int = 16
                 ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                            ("n_layers", n_layers), ("n_heads", n_heads),
                            ("context_length", context_length), ("chunk_size", chunk_size)):
            check_positive_int(name, value)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        check_scalar_in_range("beta_max", beta_max, 0.0, 2.0, low_inclusive=False)
        check_memory("vocab_size, d_model and n_layers",
                     vocab_size * d_model + n_layers * 13 * d_model * d_model,
                     what="the parameters")
        self.vocab_size, self.d_model = vocab_size, d_model
        self.n_layers, self.n_heads = n_layers, n_heads
        self.context_length, self.beta_max = context_length, float(beta_max)
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(_DeltaLayer(d_model, n_heads, self.beta_max, chunk_size)
                                    for _ in range(n_layers))
        self.final_norm = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        for layer in self.layers:
            for projection in (layer.out, layer.mlp.down):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * n_layers))

    @entry_point
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_token_ids("idx", idx, self.vocab_size, self.context_length)
        check_targets(idx, targets, self.vocab_size)
        x = self.token_embedding(idx)
        for layer in self.layers:
            x = layer(x)
        logits = self.lm_head(self.final_norm(x))
        return logits, language_model_loss(logits, targets)
