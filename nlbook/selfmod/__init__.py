"""Delta Gradient Descent and self-modifying memories (chapter 4).

Behrouz et al., "Nested Learning" (arXiv 2512.24695): DGD (§4.5, A-eq 54–57), the
self-modifying layer, and self-modifying Titans (§8.1–8.2, A-eq 83–93).

Conventions. ``dgd_step`` and ``SelfModifyingLinear`` use the paper's column convention:
W (d_out, d_in), y = W x. ``SelfModifyingTitans`` works on (B, H, T, d) tensors in the row
convention of chapter 1: a linear map is stored as S = Wᵀ (d_in, d_out) and applied as z S,
so the DGD step reads S ← (α I − η′ k kᵀ) S + η′ k uᵀ. NL letters: **η is the inner learning
rate and α is the retention** (α = 1 keeps everything; Titans' α *forgets*: see the glossary).

Choices made where the paper is open (arXiv §8.1–8.2 leaves them to the implementer), as
"open choice: this module — why":

- DGD decay term: arXiv A-eq 57, η′ = η/(1 + η‖x‖²) in both terms — exact for any ‖x‖; the
  NeurIPS print W(I − xxᵀ) erases the whole x-direction at every step.
- L2 vs dot-product form: the exact proximal step of the L2 regression of a layer onto its
  self-generated target u (dgd_step with grad_y = −u). The output layer of M_□ regresses onto
  v̂_□ − k (the residual is subtracted), M_η and M_α onto v̂. For a linear memory this is the
  gated delta rule with a self-generated value (A-eq 92); A-eq 88 and 93 read literally (the
  gradient of the memory's own L2 objective as the value) erase twice and settle at half the
  target, like A-eq 57 with u = −∇_y L (chapter 4, ``correlated_stream_experiment``).
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
  (a detached write would leave the initial states untrained).
- Momentum: none (A-eq 88 has none): a chunk is then a gated delta rule, solved exactly.
- q: a fixed projection, ℓ2-normalised (the paper calls q "the only non-adaptive projection",
  and its ablation without an adaptive q barely changes perplexity); k and v normalised.
- Objective of every memory: (k_t, v̂_□) with v̂_□ = M_□(v_t) (the final rule, A-eq 86–89).
- Chunking: ``chunk_size_memory`` (main) and ``chunk_size_others`` (k, v, η, α). Inside a
  chunk, keys, values, targets and gradients come from the state that ended the previous chunk
  (index C⌊(t−1)/C⌋, not the printed C⌈t/C⌉); the linear erase recurrence is solved exactly.
  Chunk size 1 is the token-by-token rule. Streaming is exact for every split (the partial
  chunk's snapshot and running state are carried in :class:`SelfModifyingState`).
- Read: o_t = M_memory,t(q_t), after token t's write (as chapter 1's ``delta_rule``).
- Fast state: per sequence and per head, never shared across the batch (each sequence is its
  own context).
"""

from __future__ import annotations

from nlbook.selfmod.chunk_kernel import gated_delta_chunk
from nlbook.selfmod.dgd import (
    STREAM_RULES,
    SelfModifyingLinear,
    correlated_stream_experiment,
    dgd_proximal_closed_form,
    dgd_step,
    dgd_step_rank_k,
    silu_derivative,
)
from nlbook.selfmod.reference import reference_self_modifying_titans
from nlbook.selfmod.titans import SelfModifyingState, SelfModifyingTitans

__all__ = [
    "STREAM_RULES",
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
