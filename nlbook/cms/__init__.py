"""The Continuum Memory System (CMS): a chain of MLP blocks updated at different frequencies.

Chapter 3 of the course. Nested Learning, arXiv 2512.24695, §7.1, A-eq 70–74 (NeurIPS N-eq 30–31).

A CMS has K levels. Level ℓ is an MLP block with parameters θ^(ℓ), a chunk size C_ℓ and a
learning rate η_ℓ. Inside a stream of tokens (0-based positions t = 0, 1, ...), level ℓ takes the
gradient of the **task loss** of every token at the parameters in force at that token (the ones
that entered its chunk), sums them over the chunk, and applies the sum when the chunk closes
(A-eq 71, arXiv reading: one η_ℓ per level, outside the sum):

    θ^(ℓ) ← θ^(ℓ) − η_ℓ Σ_{t = i−C_ℓ}^{i−1} ∇_θ^(ℓ) loss_t      when i ≡ 0 (mod C_ℓ)

where i counts the tokens seen so far. The update is used from token i on (0-based), so the
output at position t depends on tokens ≤ t only. Other steps change nothing. Exactly C_ℓ tokens
per chunk (the paper's sum over i−C..i has C+1 terms; every implementation uses C) and a SUM,
never a mean (a level with a long chunk moves about as far as a per-token level; it is only
delayed).

Where the per-token error signal comes from. The paper's f is the gradient of the model's task
loss. :class:`ContinuumMemory` takes it as an argument, test-time-training style: a per-token
loss ``loss_fn(outputs (B, n, d), targets (B, n, ...)) -> (B, n)`` and the targets of the
positions. The gradient of token t reaches every level through the downstream levels at the
parameters in force at t. Every CMS level acts token-wise, so inside a segment in which no level
changes, the sum of per-token gradients equals the gradient of the summed loss: one backward pass
per segment gives every level's chunk sum exactly, for every sequence of the batch at once.
For a language model the target of position t is token t+1, known only once token t+1 has been
seen: pass targets one shorter than the input and the last position stays *pending* in the
returned state; the next call resolves it with ``pending_target`` before it computes anything,
so a chunk closes only once its last token's target is known, and the update is used from the
next token on (causal).

Variants (A §7.1):
- ``"sequential"`` (A-eq 70, the default; chapter 5 uses it): y = block_K(... block_1(x)).
- ``"independent"`` (head-wise, A-eq 74): y = x + Σ_ℓ a_ℓ MLP_ℓ(norm(x)) with learnable a_ℓ
  (initialised to 1); without residual y = Σ_ℓ a_ℓ MLP_ℓ(x).
- ``"nested"`` (A-eq 72): the sequential chain in which every level is re-initialised to its
  initial (meta) parameters at the end of its context, i.e. every chunk of the next slower
  level. Any variant also accepts explicit ``reset_every`` periods.

Each level is a pre-norm residual MLP block x + W_out σ(W_in LN(x) + b_in) + b_out (LN without
affine: its gain would be redundant with W_in), or, with ``linear=True``, a linear map W x + b;
residual and pre-norm can be switched off. With every η_ℓ = 0 the CMS is exactly the frozen
MLP chain: a Transformer MLP is a CMS of one level with update frequency 0.

Two uses, both real:
- in-context (test-time) updates within one sequence: :class:`ContinuumMemory`, per-sequence fast
  parameters, differentiable w.r.t. the initial parameters (backprop through the updates), with
  carried :class:`CMSState` for streaming;
- multi-rate training: :class:`MultiRateOptimizer` steps level ℓ of an outer optimizer every
  C_ℓ steps with the summed gradient.
"""

from __future__ import annotations

from nlbook.cms.continuum import ContinuumMemory
from nlbook.cms.multirate import MultiRateOptimizer
from nlbook.cms.reference import reference_continuum_memory
from nlbook.cms.state import (
    VARIANTS,
    CMSOutput,
    CMSRecord,
    CMSState,
    LevelRecord,
    cross_entropy_loss,
    nested_reset_periods,
    parameter_trajectory,
    squared_error_loss,
)

__all__ = [
    "VARIANTS",
    "CMSOutput",
    "CMSRecord",
    "CMSState",
    "ContinuumMemory",
    "LevelRecord",
    "MultiRateOptimizer",
    "cross_entropy_loss",
    "nested_reset_periods",
    "parameter_trajectory",
    "reference_continuum_memory",
    "squared_error_loss",
]
