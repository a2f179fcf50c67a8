"""Switches that remove one part of a trained HOPE, for the measurements of chapters 6 and 7.

Each switch is a context manager: inside it the model runs with the part removed, on exit
everything is restored exactly (the same tensors, bit for bit). They are evaluation switches:
train a model *built* without the part (e.g. ``cms_learning_rates`` all 0) to measure what
training without it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["FROZEN_GATE_BIAS", "ascending_writes", "frozen_cms", "frozen_memories"]

#: The gate bias that :func:`frozen_memories` writes: η_t = softplus(w·x + b) with b = −1e4
#: underflows to exactly 0 and α_t = sigmoid(w·x + b) with b = +1e4 rounds to exactly 1, in
#: float32 and float64, for any finite w·x far below 1e4 (the model's are O(1)).
FROZEN_GATE_BIAS = 1e4


def _check_hope(model: nn.Module, *, titans: bool = False) -> nn.ModuleList:
    """``model.blocks`` if ``model`` is a HopeLM (with the self-modifying Titans as every
    block's mixer when ``titans``), else ValueError."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(block, "cms") for block in blocks):
        raise ValueError(f"model must be a HopeLM (blocks with a CMS), got "
                         f"{type(model).__name__}")
    if titans:
        for block in blocks:
            mixer = getattr(block, "titans", None) if \
                getattr(block, "mixer_name", "titans") == "titans" else None
            if mixer is None or not hasattr(mixer, "lr_bias"):
                raise ValueError(f"model must be a HopeLM whose blocks read the context with "
                                 f"the self-modifying Titans (mixer 'titans'), got a block with "
                                 f"mixer {getattr(block, 'mixer_name', None)!r}: attention has "
                                 f"no memory written in context to freeze")
    return blocks


@contextmanager
def frozen_cms(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every CMS block of ``model`` (a HopeLM) has η = 0 in context: the
    CMS weights never change within a stream (the blocks run at their meta-learned initial
    parameters), everything else is unchanged. The learning rates are restored on exit.

    ``with frozen_cms(model): evaluate_stream(model, ids, window=1024)`` measures what the
    in-context CMS updates buy on that stream.
    """
    blocks = _check_hope(model)
    saved = [block.cms.learning_rates for block in blocks]
    try:
        for block in blocks:
            block.cms.learning_rates = tuple(0.0 for _ in block.cms.learning_rates)
        yield model
    finally:
        for block, rates in zip(blocks, saved, strict=True):
            block.cms.learning_rates = rates


@contextmanager
def frozen_memories(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, **no memory of** ``model`` (a HopeLM) **is written in context**: every
    in-context write is a no-op, so HOPE reads a stream with the weights it had at its start.

    - Self-modifying Titans (arXiv A-eq 86–93): every memory (main memory and the generators
      of k, v, η, α) is written with the step η′_t = η_t / (1 + η_t‖x‖²) and the retention
      α_t. Inside, η_t = 0 and α_t = 1 for every token, head and layer (the gate biases
      ``lr_bias``/``retention_bias`` are set to ∓:data:`FROZEN_GATE_BIAS`), so the DGD step
      W ← W₀ + (W − W₀)(α_t I − η′ x xᵀ) + η′ (u − W₀ x) xᵀ returns W unchanged: the Titans
      state stays what it was when the stream (or the carried state) began, and the main
      memory is read at that state.
    - CMS: η = 0 for every block, as :func:`frozen_cms` (the gradient sum of a chunk left open
      when the switch began is then applied with η = 0: dropped).

    What still moves: the causal convolutions' buffers (the last 3 inputs of each block, a
    fixed window, not a memory). So inside the block HOPE is a model that sees the last
    1 + 3·L tokens (L blocks) and its fixed weights.

    On exit the gate biases (the same tensors, bit for bit) and the CMS learning rates are
    restored, also after an exception. An evaluation switch: do not train inside it.

    ``with frozen_memories(model): recall_accuracy(model, ...)`` measures what HOPE recalls
    without its in-context memories.
    """
    blocks = _check_hope(model, titans=True)
    saved = [(block.titans.lr_bias.detach().clone(), block.titans.retention_bias.detach().clone())
             for block in blocks]
    with frozen_cms(model):
        try:
            with torch.no_grad():
                for block in blocks:
                    block.titans.lr_bias.fill_(-FROZEN_GATE_BIAS)
                    block.titans.retention_bias.fill_(FROZEN_GATE_BIAS)
            yield model
        finally:
            with torch.no_grad():
                for block, (lr_bias, retention_bias) in zip(blocks, saved, strict=True):
                    block.titans.lr_bias.copy_(lr_bias)
                    block.titans.retention_bias.copy_(retention_bias)


@contextmanager
def ascending_writes(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, **every in-context write of the self-modifying Titans memories goes
    uphill**: the step η′_t of each DGD write (A-eq 57/88) is negated, so each write is one step
    of gradient *ascent* on the memory's inner objective ‖M(k_t) − v̂_t‖² instead of descent.

    A memory that binds keys to values needs the descent: after an ascent step M(k) moves away
    from the value. Liu et al. (arXiv 2602.21204) report that for TTT and Titans-style layers
    trained as language models the flip barely changes results, i.e. such layers may not use
    their inner objective as a memory; this switch asks the same question of HOPE (chapter 7).
    The CMS's in-context updates are left as they are (a separate switch: :func:`frozen_cms`).

    On exit every layer writes by descent again, also after an exception. An evaluation switch:
    do not train inside it.
    """
    blocks = _check_hope(model, titans=True)
    try:
        for block in blocks:
            block.titans.write_sign = -1.0
        yield model
    finally:
        for block in blocks:
            block.titans.write_sign = 1.0
