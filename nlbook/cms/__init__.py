"""The Continuum Memory System (CMS): a chain of MLP blocks updated at different frequencies.

Chapter 3 of the course. Nested Learning, arXiv 2512.24695, §7.1, A-eq 70–74 (NeurIPS N-eq 30–31).

A CMS is a chain of K blocks. Block j (chain order: block 0 sees the input) is an MLP with
parameters θ_j, a chunk size C_j and a learning rate η_j. Inside a stream of tokens (0-based
positions t = 0, 1, ...), block j takes the gradient of the **task loss** of every token at the
parameters in force at that token (the ones that entered its chunk), sums them over the chunk,
and applies the sum when the chunk closes (A-eq 71, arXiv reading: one η_j per block, outside
the sum):

    θ_j ← θ_j − η_j Σ_{t = i−C_j}^{i−1} ∇_θ_j loss_t      when i ≡ 0 (mod C_j)

where i counts the tokens seen so far. The update is used from token i on (0-based), so the
output at position t depends on tokens ≤ t only. Other steps change nothing. Exactly C_j tokens
per chunk (the paper's sum over i−C..i has C+1 terms; every implementation uses C) and a SUM,
never a mean (a block with a long chunk moves about as far as a per-token block; it is only
delayed).

Blocks and levels. Block j's update frequency is f_j = 1/C_j updates per token (0 when η_j = 0:
only the outer optimizer changes it). The paper writes the blocks as MLP^(f_1), ..., MLP^(f_K)
and its **levels** sort components by frequency (Def. 2/3: the higher the level, the lower its
frequency; level 1 the fastest). The course keeps the two apart: *block* j is a position in the
chain (constructor arguments, :class:`CMSState`, :class:`CMSRecord`, ``blocks``), *level* is
the frequency rank (:attr:`ContinuumMemory.level_of_block`, ``blocks_of_level``,
``block_labels``; blocks of equal frequency share a level, blocks with η = 0 form the slowest).
Every plot and widget labels blocks by their level.

Where the per-token error signal comes from. The paper's f is the gradient of the model's task
loss. :class:`ContinuumMemory` takes it as an argument, test-time-training style: a per-token
loss ``loss_fn(outputs (B, n, d), targets (B, n, ...)) -> (B, n)`` and the targets of the
positions. The gradient of token t reaches every block through the downstream blocks at the
parameters in force at t. Every CMS block acts token-wise, so inside a segment in which no block
changes, the sum of per-token gradients equals the gradient of the summed loss: one backward pass
per segment gives every block's chunk sum exactly, for every sequence of the batch at once.
For a language model the target of position t is token t+1, known only once token t+1 has been
seen: pass targets one shorter than the input and the last position stays *pending* in the
returned state; the next call resolves it with ``pending_target`` before it computes anything,
so a chunk closes only once its last token's target is known, and the update is used from the
next token on (causal).

Variants (A §7.1):
- ``"sequential"`` (A-eq 70, the default; chapter 5 uses it): y = block_K(... block_1(x)).
- ``"independent"`` (head-wise, A-eq 74): y = x + Σ_j a_j MLP_j(norm(x)) with learnable a_j
  (initialised to 1); without residual y = Σ_j a_j MLP_j(x).
- ``"nested"`` (A-eq 72): the sequential chain in which every block is re-initialised to its
  initial (meta) parameters at the end of its context, i.e. every chunk of the next slower
  block. Any variant also accepts explicit ``reset_every`` periods.

Each block is a pre-norm residual MLP block x + W_out σ(W_in LN(x) + b_in) + b_out (LN without
affine: its gain would be redundant with W_in), or, with ``linear=True``, a linear map W x + b;
residual and pre-norm can be switched off. With every η_j = 0 the CMS is exactly the frozen
MLP chain: a Transformer MLP is a CMS of one block with update frequency 0.

Two uses, both real:
- in-context (test-time) updates within one sequence: :class:`ContinuumMemory`, per-sequence fast
  parameters, differentiable w.r.t. the initial parameters (backprop through the updates), with
  carried :class:`CMSState` for streaming;
- multi-rate training: :class:`MultiRateOptimizer` steps parameter group g of an outer
  optimizer every C_g steps with the summed gradient.
"""

from __future__ import annotations

from nlbook.cms.continuum import ContinuumMemory
from nlbook.cms.multirate import MultiRateOptimizer
from nlbook.cms.reference import reference_continuum_memory
from nlbook.cms.state import (
    VARIANTS,
    BlockRecord,
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
    "BlockRecord",
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
