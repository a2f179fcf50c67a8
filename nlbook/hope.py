"""The HOPE block and language model (chapter 5).

Behrouz et al., "Nested Learning" (arXiv 2512.24695), §8.3, A-eq 94–97: HOPE is
**self-modifying Titans followed by a Continuum Memory System**:

    o_t = M_memory,t(q_t)                       (self-modifying Titans, A-eq 86–93; nlbook.selfmod)
    y_t = MLP^(f_K)( … MLP^(f_1)(o_t) )          (CMS, A-eq 70–71; nlbook.cms)

The paper removes "normalisation and convolution layers for clarity" from its figures and
equations. This module fills them in; each choice is stated as "open choice: this module — why".

Block (:class:`HopeBlock`), x (B, T, d) → (B, T, d)::

    h = conv4(LayerNorm(x))                   causal depth-wise convolution, window 4
    x = x + SelfModifyingTitans(h)            residual around the memory
    x = CMS(x)                                each level a pre-norm residual MLP x + MLP(LN(x))

- Normalisation: pre-norm (LayerNorm without bias) before the memory; the CMS levels carry their
  own pre-LayerNorm (chapter 3). Why: pre-norm keeps the residual stream's scale free, as in the
  Transformer baseline, so the comparison changes one thing (the mixer) at a time.
- Convolution: a causal depth-wise convolution of window 4 on the memory's input (reference
  §5.3; [AX8] "local convolution with window 4"), initialised to the identity. It is applied
  once, before the projections of self-modifying Titans (so q, k, v all see it) — [KMC]'s
  placement; Titans §4.4 convolves after each projection (3 convolutions instead of 1).
- Residuals: around the self-modifying Titans and around each CMS level.
- No positional embedding: the recurrent memories and the convolution see tokens in order, so
  order is already in the state ("NoPE" works for recurrent models). The model therefore has
  no hard length limit; ``context_length`` is kept only as the training window that
  :mod:`nlbook.train` reads.
- Language model (:class:`HopeLM`): token embedding → n_layers HOPE blocks → final LayerNorm →
  LM head tied to the embedding.

The CMS's in-context "task loss" (A-eq 71 says: the model's loss; for an LM the next-token
loss). Inside a stack a middle block cannot see the final loss causally chunk by chunk, so
**each block's CMS is trained in context on the next-token cross-entropy of its own output read
through the model's readout** (final norm + tied LM head; a "logit-lens" loss, cheap for a
65-character vocabulary). The target of position t is token t+1: the CMS receives it one step
late through its pending mechanism (nlbook.cms), so every update is causal and streaming is
exact.

Levels of the CMS (defaults, chosen for speed on a CPU): level 0 is a *slow* level, η = 0 in
context: it changes only through the outer optimizer (AdamW), across contexts — the
lowest-frequency level; level 1 is a *fast* level updated in context every 32 tokens with
η = 1e-2 (sum of the per-token gradients, arXiv reading). Each MLP has width 2d, so a block has
about the parameters of a Transformer block of the same width (12 d²).

Open choice: the gradient of the outer loss through the in-context CMS updates.
``first_order=True`` (default) treats the updates as constants (first-order MAML): the initial
parameters still get the outer gradient through the direct path. Measured on one CPU thread
(``python -m nlbook.bench hope --second-order``, 1M parameters, batch 16, context 128):
second order (create_graph) is 6–8% slower per training step of the whole model (the CMS
alone: 1.5× slower), with no measurable gain at this scale (see the chapter's report); the
first-order default is the cheaper and simpler reading. The self-modifying Titans is always
differentiated fully.

Speed (``python -m nlbook.bench hope``, one thread, ~1M parameters, batch 16, context 128):
HOPE trains at 0.34–0.39× the Transformer's tokens/s, short of the 0.5× target. Measured
by removing parts of the model (step times, same run): the self-modifying Titans is about
two thirds of a HOPE step (≈105 ms per layer, forward + backward, against ≈60 ms for a whole
Transformer layer), the fast CMS level about a tenth, everything else (norms, convolution,
the CMS MLPs, embedding, readout) is cheaper than the Transformer. The Titans runs its chunks
one after another, each a few dozen medium-sized batched products, exps and triangular solves
(memory-bound in eager PyTorch), while attention at T = 128 is one fused kernel. What made it
faster (0.28× before): a hand-written backward for the chunk kernel, the never-written first
layers moved out of the chunk loop, the CMS's in-context updates kept as low-rank factors,
and a training pass that skips the work only the discarded state needs.

Open choice: chunk sizes of the Titans (A §8.2): main memory 64, generator memories (k, v, η,
α) 32, memory hidden width d_h / 2. Measured at d = 144, B = 16, T = 128: the Titans layer's
forward + backward took 310 ms with chunks (32, 8), 210 ms with (16, 16), 150 ms with
(64, 64) (before the speed-ups above): each chunk is a sequential step of small triangular
solves, so fewer chunks is faster on a CPU. Inside a chunk the linear erase recurrence is
still exact token by token; only keys, values and targets come from the chunk-start state.
Measured after the speed-ups (whole model, one run each): (main 32, others 64) trains at
0.41× the Transformer, (64, 64) at 0.36–0.41×, the default (64, 32) at 0.35–0.38×; the
defaults are kept so that the shipped checkpoint and the chapters' numbers stay valid.

Generation carries every state forward (conv buffer, self-modifying Titans state, CMS state
with its pending position) and feeds one token at a time: the logits equal those of one forward
pass over the same text (tested to 1e-5 in float32), at O(1) cost per token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import check_dtype_float, check_positive_int, check_shape
from nlbook.cms import CMSRecord, CMSState, ContinuumMemory, cross_entropy_loss
from nlbook.selfmod import SelfModifyingState, SelfModifyingTitans
from nlbook.transformer import (
    TransformerLM,
    check_generation_arguments,
    check_targets,
    check_token_ids,
    language_model_loss,
    parameter_count,
    sample_next_token,
)

__all__ = [
    "CausalDepthwiseConv",
    "HopeBlock",
    "HopeBlockOutput",
    "HopeBlockState",
    "HopeLM",
    "HopeState",
    "PassageTrace",
    "TransformerLM",
    "benchmark_hope",
    "matched_models",
    "trace_passage",
    "training_tokens_per_second",
]


# --------------------------------------------------------------------------------------------
# Causal depth-wise convolution with a carried buffer


class CausalDepthwiseConv(nn.Module):
    """y_t = Σ_{j=0}^{w−1} a_j ⊙ x_{t−w+1+j}: a causal depth-wise 1-D convolution (window w).

    Shapes: x (B, T, d) → y (B, T, d). ``buffer`` (B, w−1, d) holds the last w−1 inputs of the
    previous call (zeros at the start of a stream), so streaming is exact. Initialised to the
    identity (a_{w−1} = 1, other taps 0): the block starts as if there were no convolution.
    """

    def __init__(self, dim: int, window: int = 4) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("window", window)
        self.dim, self.window = dim, window
        weight = torch.zeros(dim, window)
        weight[:, -1] = 1.0
        self.weight = nn.Parameter(weight)

    def initial_buffer(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.window - 1, self.dim)

    def forward(self, x: torch.Tensor, buffer: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d) → (y (B, T, d), new buffer (B, w−1, d))."""
        check_shape("x", x, (None, None, self.dim), "(B, T, d)")
        if buffer is None:
            buffer = self.initial_buffer(x)
        padded = torch.cat([buffer, x], dim=1)                               # (B, w−1+T, d)
        y = F.conv1d(padded.transpose(1, 2), self.weight.unsqueeze(1), groups=self.dim)
        return y.transpose(1, 2), padded[:, padded.shape[1] - (self.window - 1):]


# --------------------------------------------------------------------------------------------
# The HOPE block


@dataclass
class HopeBlockState:
    """What one block carries between calls: the convolution buffer (B, w−1, d), the
    self-modifying Titans state and the CMS state (with its pending position)."""

    conv: torch.Tensor
    titans: SelfModifyingState
    cms: CMSState

    def detach(self) -> HopeBlockState:
        return HopeBlockState(self.conv.detach(), self.titans.detach(), self.cms.detach())


@dataclass
class HopeBlockOutput:
    """Result of :meth:`HopeBlock.forward`: output (B, T, d), the new state, the CMS's per-token
    in-context losses (B, T) (NaN where no target was known) and, with ``return_trace``, the
    self-modifying Titans trace (see :meth:`nlbook.selfmod.SelfModifyingTitans.forward`)."""

    output: torch.Tensor
    state: HopeBlockState
    cms_losses: torch.Tensor
    titans_trace: dict | None = None


class HopeBlock(nn.Module):
    """One HOPE block (arXiv A-eq 94–97): conv → self-modifying Titans → CMS (see module doc).

    Args:
        d_model: width d.
        heads: heads H of the self-modifying Titans. head_dim: d_h (default d / H).
        memory_hidden: hidden width of the Titans' MLP memories (default d_h / 2: speed).
        chunk_size_memory, chunk_size_others: the Titans' two chunk sizes (A §8.2).
        cms_chunk_sizes, cms_learning_rates: C_ℓ and η_ℓ per CMS level, in chain order
            (η = 0: the level changes only through the outer optimizer).
        cms_hidden_dim: hidden width of every CMS MLP (default 2 d).
        conv_window: window of the causal depth-wise convolution (0 or 1: none).
        first_order: first-order in-context CMS updates (see the module docstring).
        generator: torch.Generator for the initialisation.

    Call: ``out = block(x, targets, loss_fn=..., state=..., pending_target=...)`` with the
    CMS's conventions (nlbook.cms): targets (B, T) or (B, T−1) (the last one then pending),
    ``loss_fn(outputs (B, n, d), targets (B, n)) -> (B, n)``; without targets the CMS runs
    frozen at the state's parameters.
    """

    def __init__(self, d_model: int, heads: int, *, head_dim: int | None = None,
                 memory_hidden: int | None = None, chunk_size_memory: int = 64,
                 chunk_size_others: int = 32, cms_chunk_sizes: Sequence[int] = (256, 32),
                 cms_learning_rates: Sequence[float] = (0.0, 1e-2),
                 cms_hidden_dim: int | None = None, conv_window: int = 4,
                 first_order: bool = True, generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        self.d_model = d_model
        self.norm = nn.LayerNorm(d_model, bias=False)
        self.conv = CausalDepthwiseConv(d_model, conv_window) if conv_window > 1 else None
        if head_dim is None and d_model % heads == 0:
            head_dim = d_model // heads
        if memory_hidden is None and head_dim is not None:
            memory_hidden = max(1, head_dim // 2)
        self.titans = SelfModifyingTitans(d_model, heads, head_dim, memory_hidden,
                                          chunk_size_memory=chunk_size_memory,
                                          chunk_size_others=chunk_size_others,
                                          generator=generator)
        self.cms = ContinuumMemory(d_model, list(cms_chunk_sizes), list(cms_learning_rates),
                                   hidden_dim=cms_hidden_dim or 2 * d_model,
                                   variant="sequential", residual=True, pre_norm=True,
                                   generator=generator, first_order=first_order)

    def initial_state(self, x: torch.Tensor) -> HopeBlockState:
        """The state at the start of a stream, for input x (B, T, d) (its batch, dtype)."""
        batch = x.shape[0]
        conv = (self.conv.initial_buffer(x) if self.conv is not None
                else x.new_zeros(batch, 0, self.d_model))
        return HopeBlockState(conv, self.titans.initial_state(batch),
                              self.cms.initial_state(batch))

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                state: HopeBlockState | None = None, pending_target: torch.Tensor | None = None,
                record: CMSRecord | None = None, return_trace: bool = False,
                dropout: float = 0.0, keep_state: bool = True) -> HopeBlockOutput:
        """x (B, T, d) → :class:`HopeBlockOutput` (output (B, T, d), new state, CMS losses).

        ``keep_state=False`` (a training step): work that only the returned state would carry
        on is skipped, and the state is ``None``; the output is unchanged."""
        check_shape("x", x, (None, None, self.d_model), "(B, T, d_model)")
        check_dtype_float("x", x)
        fresh = state is None
        if state is None:
            state = self.initial_state(x)
        hidden = self.norm(x)
        conv_buffer = state.conv
        if self.conv is not None:
            hidden, conv_buffer = self.conv(hidden, state.conv)
        trace = None
        if return_trace:
            memory_out, titans_state, trace = self.titans(hidden, state.titans,
                                                          return_trace=True)
        else:
            memory_out, titans_state = self.titans(hidden, state.titans, keep_state=keep_state)
        x = x + F.dropout(memory_out, dropout, self.training)
        # A fresh stream passes no CMS state: the CMS then starts from its shared parameters
        # without expanding them over the batch (cheaper, same values).
        cms_out = self.cms(x, targets, loss_fn=loss_fn, state=None if fresh else state.cms,
                           pending_target=pending_target, record=record,
                           keep_state=keep_state)
        new_state = (HopeBlockState(conv_buffer, titans_state, cms_out.state) if keep_state
                     else None)
        return HopeBlockOutput(cms_out.output, new_state, cms_out.losses, trace)


# --------------------------------------------------------------------------------------------
# The language model


@dataclass
class HopeState:
    """Stream state of a :class:`HopeLM`: one :class:`HopeBlockState` per layer and the number
    of tokens consumed."""

    layers: list[HopeBlockState]
    position: int = 0

    def detach(self) -> HopeState:
        return HopeState([layer.detach() for layer in self.layers], self.position)


class HopeLM(nn.Module):
    """Character-level HOPE language model: embedding → HOPE blocks → final norm → tied head.

    Args:
        vocab_size, d_model, n_layers, n_heads: as :class:`nlbook.transformer.TransformerLM`
            (n_heads = heads of the self-modifying Titans).
        context_length: the training window nlbook.train uses; *not* a limit (no positional
            embedding: any T works, and generation never crops).
        dropout: dropout on the embedding and on the memory branch (training mode only).
        seed: seed of the torch.Generator that initialises every parameter (reproducible).
        Other keyword arguments go to every :class:`HopeBlock` (chunk sizes, CMS levels, ...).

    Call ``logits, loss = model(idx, targets=None)`` with idx int64 (B, T), any T ≥ 1: logits
    (B, T, V); loss is the mean next-token cross-entropy when targets (B, T) are given (-1 is
    ignored), else None. ``model.stream(idx, state)`` continues a stream (exact for any split).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, *,
                 context_length: int = 256, dropout: float = 0.0, seed: int = 0,
                 **block_options) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                            ("n_layers", n_layers), ("n_heads", n_heads),
                            ("context_length", context_length)):
            check_positive_int(name, value)
        if d_model % n_heads and block_options.get("head_dim") is None:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.vocab_size, self.d_model = vocab_size, d_model
        self.n_layers, self.n_heads = n_layers, n_heads
        self.context_length, self.dropout = context_length, dropout
        generator = torch.Generator().manual_seed(seed)
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        with torch.no_grad():
            self.token_embedding.weight.normal_(0.0, 0.02, generator=generator)
        self.blocks = nn.ModuleList(HopeBlock(d_model, n_heads, generator=generator,
                                              **block_options) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model, bias=False)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied input/output embeddings

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm + tied LM head: (B, T, d) → logits (B, T, V)."""
        return self.lm_head(self.final_norm(hidden))

    def _cms_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The CMS's in-context task loss: per-token next-token cross-entropy (B, n) of a
        block's CMS output read through this model's readout (a method, so copies of the model
        use their own readout)."""
        return cross_entropy_loss(self.readout)(outputs, targets)

    def stream(self, idx: torch.Tensor, state: HopeState | None = None, *,
               record: list[CMSRecord] | None = None, return_trace: bool = False,
               keep_state: bool = True):
        """Continue a stream: idx (B, T) int64, T ≥ 1 → (logits (B, T, V), new state[, traces]).

        The target of position t (token t+1) reaches each CMS one call later for the last
        position (pending), so the result equals one pass over the concatenated text.
        ``record``: one :class:`nlbook.cms.CMSRecord` per layer, appended to.
        ``traces``: per layer the self-modifying Titans trace.
        ``keep_state=False``: the new state is ``None`` and the work only it needs is skipped
        (what :meth:`forward` does: a training pass discards the state).
        """
        check_token_ids("idx", idx, self.vocab_size, None)
        if idx.shape[1] < 1:
            raise ValueError("idx must hold at least one token per row, got T = 0")
        if state is not None and len(state.layers) != self.n_layers:
            raise ValueError(f"state must hold {self.n_layers} layers, got {len(state.layers)}")
        if record is not None and len(record) != self.n_layers:
            raise ValueError(f"record must hold one CMSRecord per layer ({self.n_layers}), "
                             f"got {len(record)}")
        pending = idx[:, 0] if state is not None else None
        x = F.dropout(self.token_embedding(idx), self.dropout, self.training)
        new_layers, traces = [], []
        for index, block in enumerate(self.blocks):
            block_state = None if state is None else state.layers[index]
            has_pending = block_state is not None and block_state.cms.pending_input is not None
            out = block(x, idx[:, 1:], loss_fn=self._cms_loss, state=block_state,
                        pending_target=pending if has_pending else None,
                        record=None if record is None else record[index],
                        return_trace=return_trace, dropout=self.dropout,
                        keep_state=keep_state)
            x = out.output
            new_layers.append(out.state)
            traces.append(out.titans_trace)
        logits = self.readout(x)
        position = (0 if state is None else state.position) + idx.shape[1]
        new_state = HopeState(new_layers, position) if keep_state else None
        return (logits, new_state, traces) if return_trace else (logits, new_state)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_token_ids("idx", idx, self.vocab_size, None)
        check_targets(idx, targets, self.vocab_size)
        logits, _ = self.stream(idx, keep_state=False)  # a training pass discards the state
        return logits, language_model_loss(logits, targets)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, return_logits: bool = False):
        """Append ``max_new_tokens`` sampled tokens to idx (B, T) → (B, T + new).

        The prompt is read once; then one token at a time with the carried state (no
        re-reading, no cropping). ``return_logits``: also return the logits (B, new, V) from
        which each new token was drawn (they equal a single forward pass, see the tests).
        """
        check_generation_arguments(idx, max_new_tokens)
        was_training = self.training
        self.eval()
        try:
            collected = []
            logits, state = self.stream(idx)
            for step in range(max_new_tokens):
                last = logits[:, -1, :]
                collected.append(last)
                token = sample_next_token(last, temperature=temperature, top_k=top_k,
                                          top_p=top_p, generator=generator)
                idx = torch.cat([idx, token], dim=1)
                if step + 1 < max_new_tokens:
                    logits, state = self.stream(token, state)
        finally:
            self.train(was_training)
        if not return_logits:
            return idx
        empty = idx.new_zeros(idx.shape[0], 0, self.vocab_size, dtype=logits.dtype)
        return idx, (torch.stack(collected, dim=1) if collected else empty)


# --------------------------------------------------------------------------------------------
# Matching the Transformer's parameter count


def matched_models(vocab_size: int, d_model: int, n_layers: int, n_heads: int, *,
                   context_length: int = 128, seed: int = 0,
                   **hope_options) -> tuple[HopeLM, TransformerLM]:
    """A HopeLM of the given size and the TransformerLM (same depth and heads) whose width is
    chosen, among multiples of n_heads, to make its total parameter count closest.

    Returns (hope, transformer); compare with :func:`nlbook.transformer.parameter_count`.
    """
    hope = HopeLM(vocab_size, d_model, n_layers, n_heads, context_length=context_length,
                  seed=seed, **hope_options)
    target = parameter_count(hope).total

    def transformer_count(width: int) -> int:
        # Embedding V d, position T d, per layer 12 d² + 2 d (norms), final norm d.
        return (vocab_size + context_length) * width + n_layers * (12 * width ** 2 + 2 * width) \
            + width

    widths = range(n_heads, 8 * d_model + 1, n_heads)
    best = min(widths, key=lambda width: abs(transformer_count(width) - target))
    torch.manual_seed(seed)  # TransformerLM initialises from torch's global generator
    transformer = TransformerLM(vocab_size, best, n_layers, n_heads,
                                context_length=context_length)
    return hope, transformer


# --------------------------------------------------------------------------------------------
# Per-timescale trace of a passage (for the notebook's widget)


@dataclass
class PassageTrace:
    """Every memory of a HopeLM, token by token, while it reads a passage (batch 1).

    Per layer ℓ (lists indexed by layer), T tokens, H heads:
        lr[ℓ], retention[ℓ]: (T, H) the Titans' η_t and α_t.
        key_change[ℓ], value_change[ℓ]: (T, H) ‖k_t − k_{t−1}‖, ‖v_t − v_{t−1}‖ (generated keys
            and values; row 0 is ‖k_0‖).
        memory_drift[ℓ]: (T, H) ‖S_t − S_0‖ of the main memory's written layer (S_0 the
            meta-learned initial state); generator_drift[ℓ]: (T, H) the same for M_k, M_v,
            M_η, M_α together.
        cms_drift[ℓ]: (T, K) ‖θ_t − θ_0‖ per CMS level (all its tensors); cms_updates[ℓ]:
            per level the token counts at which it was updated.
    token_loss: (T,) the model's next-token loss at each position (NaN for the last).
    """

    lr: list[torch.Tensor] = field(default_factory=list)
    retention: list[torch.Tensor] = field(default_factory=list)
    key_change: list[torch.Tensor] = field(default_factory=list)
    value_change: list[torch.Tensor] = field(default_factory=list)
    memory_drift: list[torch.Tensor] = field(default_factory=list)
    generator_drift: list[torch.Tensor] = field(default_factory=list)
    cms_drift: list[torch.Tensor] = field(default_factory=list)
    cms_updates: list[list[list[int]]] = field(default_factory=list)
    token_loss: torch.Tensor | None = None

    def layer(self, index: int) -> dict:
        """The arrays of layer ``index`` as keyword arguments of
        :func:`nlbook.viz.plot_hope_timescales` (plus ``token_loss``)."""
        if not 0 <= index < len(self.lr):
            raise ValueError(f"index must lie in [0, {len(self.lr)}), got {index!r}")
        return {"lr": self.lr[index], "retention": self.retention[index],
                "key_change": self.key_change[index], "value_change": self.value_change[index],
                "memory_drift": self.memory_drift[index],
                "generator_drift": self.generator_drift[index],
                "cms_drift": self.cms_drift[index], "cms_updates": self.cms_updates[index],
                "token_loss": self.token_loss}


def _norm_per_head(tensor: torch.Tensor) -> torch.Tensor:
    """(1, H, ...) → (H,) Frobenius norm per head."""
    return tensor[0].flatten(1).norm(dim=1)


@torch.no_grad()
def trace_passage(model: HopeLM, idx: torch.Tensor) -> PassageTrace:
    """Feed idx (1, T) to ``model`` one token at a time (exact streaming) and record every
    memory after each token (see :class:`PassageTrace`). Cost: T calls of one token."""
    check_token_ids("idx", idx, model.vocab_size, None)
    if idx.shape[0] != 1:
        raise ValueError(f"idx must hold one sequence (1, T), got {tuple(idx.shape)}")
    was_training = model.training
    model.eval()
    length, layers = idx.shape[1], model.n_layers
    records = [CMSRecord(block.cms.num_levels) for block in model.blocks]
    per_layer: dict[str, list[list[torch.Tensor]]] = {
        name: [[] for _ in range(layers)] for name in
        ("lr", "retention", "key", "value", "memory_drift", "generator_drift", "cms_drift")}
    losses = torch.full((length,), math.nan)
    initial = [block.titans.initial_state(1) for block in model.blocks]
    state = None
    try:
        for t in range(length):
            logits, state, traces = model.stream(idx[:, t:t + 1], state, record=records,
                                                 return_trace=True)
            if t + 1 < length:
                losses[t] = F.cross_entropy(logits[0, -1:].float(), idx[0, t + 1:t + 2]).item()
            for layer, (block, trace) in enumerate(zip(model.blocks, traces, strict=True)):
                titans_state = state.layers[layer].titans
                per_layer["lr"][layer].append(trace["lr"][0, :, -1])
                per_layer["retention"][layer].append(trace["retention"][0, :, -1])
                per_layer["key"][layer].append(trace["keys"][0, :, -1])
                per_layer["value"][layer].append(trace["values"][0, :, -1])
                per_layer["memory_drift"][layer].append(_norm_per_head(
                    titans_state.memory_second - initial[layer].memory_second))
                generator = torch.cat([
                    (titans_state.generator_first - initial[layer].generator_first)[0]
                    .flatten(1),
                    (titans_state.generator_second - initial[layer].generator_second)[0]
                    .flatten(1)], dim=1)
                per_layer["generator_drift"][layer].append(generator.norm(dim=1))
                cms_state = state.layers[layer].cms
                drift = []
                for level in range(block.cms.num_levels):
                    start = block.cms.initial_parameters(level, 1)
                    squares = sum((cms_state.parameters[level][name] - start[name]).pow(2).sum()
                                  for name in start)
                    drift.append(torch.as_tensor(squares).sqrt())
                per_layer["cms_drift"][layer].append(torch.stack(drift))
    finally:
        model.train(was_training)
    result = PassageTrace(token_loss=losses)
    for layer in range(layers):
        keys = torch.stack(per_layer["key"][layer])                          # (T, H, d)
        values = torch.stack(per_layer["value"][layer])
        previous_keys = torch.cat([torch.zeros_like(keys[:1]), keys[:-1]])
        previous_values = torch.cat([torch.zeros_like(values[:1]), values[:-1]])
        result.lr.append(torch.stack(per_layer["lr"][layer]))
        result.retention.append(torch.stack(per_layer["retention"][layer]))
        result.key_change.append((keys - previous_keys).norm(dim=-1))
        result.value_change.append((values - previous_values).norm(dim=-1))
        result.memory_drift.append(torch.stack(per_layer["memory_drift"][layer]))
        result.generator_drift.append(torch.stack(per_layer["generator_drift"][layer]))
        result.cms_drift.append(torch.stack(per_layer["cms_drift"][layer]))
        result.cms_updates.append([records[layer].update_steps(level)
                                   for level in range(model.blocks[layer].cms.num_levels)])
    return result


# --------------------------------------------------------------------------------------------
# Training throughput against the Transformer (python -m nlbook.bench hope)


def _training_step(model: nn.Module, *, batch: int, length: int, vocab_size: int = 65,
                   seed: int = 0) -> Callable[[], None]:
    """One full training step (forward, backward, AdamW) of ``model`` on a fixed random token
    window (B, T) = (batch, length), as a closure."""
    check_positive_int("batch", batch)
    check_positive_int("length", length)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(vocab_size, (batch, length), generator=generator)
    targets = torch.randint(vocab_size, (batch, length), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def training_tokens_per_second(model: nn.Module, *, batch: int, length: int, steps: int = 3,
                               vocab_size: int = 65, seed: int = 0) -> float:
    """Tokens per second of full training steps (forward, backward, AdamW step) of ``model`` on
    random token windows (B, T) = (batch, length), after one warm-up step. One run: timing
    noise is the caller's to judge (the bench prints the load average)."""
    import time

    check_positive_int("steps", steps)
    step = _training_step(model, batch=batch, length=length, vocab_size=vocab_size, seed=seed)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * length * steps / (time.perf_counter() - start)


def benchmark_hope(*, d_model: int = 144, n_layers: int = 4, n_heads: int = 4,
                   batch: int = 16, length: int = 128, steps: int = 5,
                   second_order: bool = False) -> dict[str, float]:
    """Training tokens/s of HopeLM and a TransformerLM at matched parameter count
    (:func:`matched_models`), and their ratio; prints one line per model. With
    ``second_order`` also times HOPE with create_graph through the CMS updates.

    One run, with the models' steps interleaved (A, B, A, B, ...) and each model's median step
    time reported: a shared CPU's speed drifts by ±10% over seconds, and interleaving puts both
    models under the same drift (measured here: back-to-back timing moved the ratio between
    0.28 and 0.36 from one run to the next)."""
    import time

    check_positive_int("steps", steps)
    hope, transformer = matched_models(65, d_model, n_layers, n_heads, context_length=length)
    rows = [("HopeLM (first-order CMS)", "hope", hope),
            ("TransformerLM", "transformer", transformer)]
    if second_order:
        slow, _ = matched_models(65, d_model, n_layers, n_heads, context_length=length,
                                 first_order=False)
        rows.insert(1, ("HopeLM (second-order CMS)", "hope_second_order", slow))
    step_functions = {key: _training_step(model, batch=batch, length=length)
                      for _, key, model in rows}
    seconds: dict[str, list[float]] = {key: [] for key in step_functions}
    for step in step_functions.values():
        step()  # warm-up
    for _ in range(steps):
        for key, step in step_functions.items():
            start = time.perf_counter()
            step()
            seconds[key].append(time.perf_counter() - start)
    results = {}
    for label, key, model in rows:
        median = sorted(seconds[key])[len(seconds[key]) // 2]
        results[key] = batch * length / median
        count = parameter_count(model).total
        print(f"{label:28s} {count / 1e6:6.3f}M parameters  {results[key]:9.0f} tokens/s "
              f"(median of {steps} steps; fastest {batch * length / min(seconds[key]):.0f})")
    results["ratio"] = results["hope"] / results["transformer"]
    print(f"ratio HOPE / Transformer: {results['ratio']:.2f}  (batch {batch}, context {length}, "
          f"{steps} interleaved timed steps per model)")
    if second_order:
        results["second_order_ratio"] = results["hope_second_order"] / results["hope"]
        print(f"second-order / first-order HOPE: {results['second_order_ratio']:.2f}")
    return results
