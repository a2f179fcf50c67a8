"""Switches that remove one part of a trained HOPE, for the measurements of chapters 6 and 7."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["frozen_cms"]


@contextmanager
def frozen_cms(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every CMS block of ``model`` (a HopeLM) has η = 0 in context: the
    CMS weights never change within a stream (the blocks run at their meta-learned initial
    parameters), everything else is unchanged. The learning rates are restored on exit.

    ``with frozen_cms(model): evaluate_stream(model, ids, window=1024)`` measures what the
    in-context CMS updates buy on that stream.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(block, "cms") for block in blocks):
        raise ValueError(f"model must be a HopeLM (blocks with a CMS), got "
                         f"{type(model).__name__}")
    saved = [block.cms.learning_rates for block in blocks]
    try:
        for block in blocks:
            block.cms.learning_rates = tuple(0.0 for _ in block.cms.learning_rates)
        yield model
    finally:
        for block, rates in zip(blocks, saved, strict=True):
            block.cms.learning_rates = rates
