"""HopeLM, the character-level HOPE language model, and a Transformer of matched size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import check_positive_int
from nlbook.cms import CMSRecord, cross_entropy_loss
from nlbook.hope.block import HopeBlock, HopeBlockState
from nlbook.hope.carry import CarriedState, carry_over, resume_stream
from nlbook.transformer import (
    TransformerLM,
    check_generation_arguments,
    check_targets,
    check_token_ids,
    language_model_loss,
    parameter_count,
    sample_next_token,
)


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
        Other keyword arguments go to every :class:`HopeBlock` (chunk sizes, CMS blocks, ...).

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
               targets: torch.Tensor | None = None, record: list[CMSRecord] | None = None,
               return_trace: bool = False, keep_state: bool = True):
        """Continue a stream: idx (B, T) int64, T ≥ 1 → (logits (B, T, V), new state[, traces]).

        The target of position t (token t+1) reaches each CMS one call later for the last
        position (pending), so the result equals one pass over the concatenated text.
        ``targets`` (B, T): the next tokens, when known (training on a text, evaluation): then
        the last position's in-context gradient is taken at once and nothing stays pending
        (same logits; a restarted row then has no target of its old stream waiting).
        ``record``: one :class:`nlbook.cms.CMSRecord` per layer, appended to.
        ``traces``: per layer the self-modifying Titans trace.
        ``keep_state=False``: the new state is ``None`` and the work only it needs is skipped
        (what :meth:`forward` does: a training pass discards the state).
        """
        check_token_ids("idx", idx, self.vocab_size, None)
        if idx.shape[1] < 1:
            raise ValueError("idx must hold at least one token per row, got T = 0")
        if targets is not None:
            check_token_ids("targets", targets, self.vocab_size, None)
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got "
                                 f"{tuple(targets.shape)}")
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
            out = block(x, idx[:, 1:] if targets is None else targets,
                        loss_fn=self._cms_loss, state=block_state,
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

    def stream_alignment(self) -> int:
        """Tokens after which every in-context memory has just closed a chunk together: the
        least common multiple of the Titans' two chunk sizes and the chunk sizes (and reset
        periods) of every CMS block with η ≠ 0. A stream may restart (a row of a carried batch
        start afresh) only at multiples of it."""
        periods = {1}
        for block in self.blocks:
            if block.mixer_name == "titans":
                periods.update((block.titans.chunk_size_memory, block.titans.chunk_size_others))
            for index, rate in enumerate(block.cms.learning_rates):
                if rate != 0.0:
                    periods.add(block.cms.chunk_sizes[index])
                    if block.cms.reset_every[index] is not None:
                        periods.add(block.cms.reset_every[index])
        return math.lcm(*periods)

    def carry_over(self, state: HopeState, *, relative: bool = True) -> CarriedState:
        """Cut a stream state from the graph between training steps, as offsets from the
        meta-learned initial parameters (:func:`nlbook.hope.carry.carry_over`)."""
        return carry_over(self, state, relative=relative)

    def resume_stream(self, carried: CarriedState, *,
                      restart: torch.Tensor | None = None) -> HopeState:
        """The state for the next window: current initial parameters + carried offsets; rows in
        ``restart`` (B,) start afresh (:func:`nlbook.hope.carry.resume_stream`)."""
        return resume_stream(self, carried, restart=restart)

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
