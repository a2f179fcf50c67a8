"""The HOPE block and language model (chapter 5).

Behrouz et al., "Nested Learning" (arXiv 2512.24695), §8.3, A-eq 94–97: HOPE is
**self-modifying Titans followed by a Continuum Memory System**:

    o_t = M_memory,t(q_t)                       (self-modifying Titans, A-eq 86–93; nlbook.selfmod)
    y_t = MLP^(f_K)( … MLP^(f_1)(o_t) )          (CMS, A-eq 70–71; nlbook.cms)

(The paper prints o_t = M_memory,t−1(q_t), a read before token t's write; the course reads after
the write, as every memory of the course does, see chapter 1.)

The paper removes "normalisation and convolution layers for clarity" from its figures and
equations. This module fills them in; each choice is stated as "open choice: this module — why".

Block (:class:`HopeBlock`), x (B, T, d) → (B, T, d)::

    h = conv4(LayerNorm(x))                   causal depth-wise convolution, window 4
    x = x + SelfModifyingTitans(h)            residual around the memory
    x = CMS(x)                                each block a pre-norm residual MLP x + MLP(LN(x))

- Normalisation: pre-norm (LayerNorm without bias) before the memory; the CMS blocks carry their
  own pre-LayerNorm (chapter 3). Why: pre-norm keeps the residual stream's scale free, as in the
  Transformer baseline, so the comparison changes one thing (the mixer) at a time.
- Convolution: a causal depth-wise convolution of window 4 on the memory's input (arXiv §8.3:
  "local convolution with window 4"), its taps drawn uniformly in ±1/√4 (PyTorch's Conv1d
  default; ``conv_init="identity"`` restores the old identity start). It is applied once, before
  the projections of self-modifying Titans (so q, k, v all see it); Titans §4.4 convolves after
  each projection (3 convolutions instead of 1). Why random: a memory binds a key to the value
  that follows it only if the value's token carries the previous token; started at the
  identity, the previous-token taps are 0 and must grow first: on MQAR the gated delta rule in
  the block stayed at chance for 1,000 steps, and HOPE with only this start undone binds, but
  later (chapter 5; ``python -m nlbook.bench mqar --models hope,hope-identity-conv``).
- Self-modifying Titans (:class:`nlbook.selfmod.SelfModifyingTitans`) starts so that it can
  bind: M_v reads its own input x_v = W_v x (with one input for M_k and M_v, keys and values
  start with cosine 0.93 and the written target v̂ − k nearly vanishes), and the main memory's
  fixed first layer has std 1 (unit-variance pre-activations at unit keys; at the fan-in scale
  a DGD write with η ≈ 1 stores about a sixth of its target). Both are initial values and input
  maps inside the paper's design (A-eq 86–89 fix neither); their effect is measured on MQAR in
  RESULTS.md.
- Residuals: around the self-modifying Titans and around each CMS block.
- No positional embedding: the recurrent memories and the convolution see tokens in order, so
  order is already in the state ("NoPE" works for recurrent models). The model therefore has
  no hard length limit; ``context_length`` is kept only as the training window that
  :mod:`nlbook.train` reads.
- Language model (:class:`HopeLM`): token embedding → n_layers HOPE blocks → final LayerNorm →
  LM head tied to the embedding.

The CMS's in-context "task loss" (A-eq 71 says: the model's loss; for an LM the next-token
loss). The final loss at token t depends only on tokens ≤ t, so a middle block's CMS could be
trained on it causally, chunk by chunk; but every inner gradient would then run through all the
later blocks, segment by segment. A cost choice, therefore: **each block's CMS is trained in
context on the next-token cross-entropy of its own output read through the model's readout**
(final norm + tied LM head; a "logit-lens" loss, cheap for a 65-character vocabulary). The
target of position t is token t+1: the CMS receives it one step late through its pending
mechanism (nlbook.cms), so every update is causal and streaming is exact.

Blocks of the CMS (defaults, chosen for speed on a CPU), in chain order: block 0 has η = 0 in
context: it changes only through the outer optimizer (AdamW), across contexts; block 1 is
updated in context every 32 tokens with η = 1e-2 (sum of the per-token gradients, arXiv
reading). By frequency (Def. 2/3, level 1 the fastest; ``cms.level_of_block``), block 1 is the
CMS's level 1 and block 0 its level 2. In the whole model (chapter 0's level map) the Titans
memories, written at every token, are level 1, the CMS's block 1 level 2, AdamW's moments
level 3, and the weights, the initial states and the CMS's block 0 level 4. Each MLP has width
2d, so a block has about the parameters of a Transformer block of the same width (12 d²).

Open choice: the gradient of the outer loss through the in-context CMS updates.
``first_order=True`` (default) treats the updates as constants (first-order MAML): the initial
parameters still get the outer gradient through the direct path. Measured on one CPU thread
(``python -m nlbook.bench hope --second-order``, 1M parameters, batch 16, context 128):
second order (create_graph) is 6–8% slower per training step of the whole model (the CMS
alone: 1.5× slower), with no measurable gain at this scale (see the chapter's report); the
first-order default is the cheaper and simpler reading. The self-modifying Titans is always
differentiated fully.

Speed (``python -m nlbook.bench hope``, one thread, ~1M parameters, batch 16, context 128): HOPE
trains at 0.37–0.39× the Transformer's tokens/s, short of the 0.5× target. Measured by removing
parts of the model (median step times, same run): the self-modifying Titans is about 60% of a HOPE
step (100–140 ms per layer, forward + backward, against 60–80 ms for a whole Transformer layer), the
CMS's in-context updates 15–20%, everything else (norms, convolution, the CMS MLPs, embedding,
readout) is cheaper than the Transformer. The Titans runs its chunks one after another, each a few
dozen medium-sized batched products, exps and triangular solves (memory-bound in eager PyTorch),
while attention at T = 128 is one fused kernel. What made it faster (0.28× before): a hand-written
backward for the chunk kernel, chunks longer than 32 solved in blocks of 32 (exact: the recurrence
inside a chunk is linear), the never-written first layers moved out of the chunk loop, the CMS's
in-context updates kept as low-rank factors, and a training pass that skips the work only the
discarded state needs.

Open choice: chunk sizes of the Titans (A §8.2): main memory 64, generator memories (k, v, η,
α) 32, memory hidden width d_h / 2. Measured at d = 144, B = 16, T = 128: the Titans layer's
forward + backward took 310 ms with chunks (32, 8), 210 ms with (16, 16), 150 ms with
(64, 64) (before the speed-ups above): each chunk is a sequential step of small triangular
solves, so fewer chunks is faster on a CPU. Inside a chunk the linear erase recurrence is
still exact token by token; only keys, values and targets come from the chunk-start state.
Measured after the speed-ups (the Titans layer alone, interleaved, one run): against the
default (64, 32), (64, 64) is 23% faster and (32, 64) 25%; the defaults are kept so that the
shipped checkpoint and the chapters' numbers stay valid.

Generation carries every state forward (conv buffer, self-modifying Titans state, CMS state
with its pending position) and feeds one token at a time: the logits equal those of one forward
pass over the same text (tested to 1e-5 in float32), at O(1) cost per token.
"""

from __future__ import annotations

from nlbook.hope.ablation import ascending_writes, frozen_cms, frozen_memories
from nlbook.hope.block import CausalDepthwiseConv, HopeBlock, HopeBlockOutput, HopeBlockState
from nlbook.hope.language_model import HopeLM, HopeState, matched_models
from nlbook.hope.speed import benchmark_hope, training_tokens_per_second
from nlbook.hope.trace import PassageTrace, trace_passage
from nlbook.transformer import TransformerLM

__all__ = [
    "CausalDepthwiseConv",
    "HopeBlock",
    "HopeBlockOutput",
    "HopeBlockState",
    "HopeLM",
    "HopeState",
    "PassageTrace",
    "TransformerLM",
    "ascending_writes",
    "benchmark_hope",
    "frozen_cms",
    "frozen_memories",
    "matched_models",
    "trace_passage",
    "training_tokens_per_second",
]
