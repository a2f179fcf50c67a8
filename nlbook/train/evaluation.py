"""Loss estimates of a character language model: in fresh windows, as one stream, and by
position.

A number taken inside one window says nothing about in-context learning: in a fresh window of
64 characters the first characters see almost no context, and a memory that learns in context
never reads more than the window. So the course reports three numbers:

- :func:`estimate_loss` / :func:`evaluate_all`: fresh windows (random, or consecutive windows
  that cover the text once), every model starting each window from nothing (nanoGPT's number);
- :func:`evaluate_stream`: every character of a text scored once, in order. A model that
  carries a state (``model.stream``, HOPE) reads the whole text as one stream, so every
  character sees everything before it; a model with a fixed context (the Transformer) slides
  its window with a stride of half a window, so every character after the first window sees at
  least half a window (the standard sliding-window evaluation);
- :func:`loss_by_position`: the mean loss at each position of many fresh windows, so a curve
  shows what more context buys (arXiv Fig. 10 plots this against context length).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import torch
from torch import nn

from nlbook._checks import (
    check_bool,
    check_device,
    check_int,
    check_int_sequence,
    check_positive_int,
)
from nlbook.data import random_batch
from nlbook.data import sequential_windows as _sequential_windows

__all__ = ["estimate_loss", "evaluate_all", "evaluate_stream", "loss_by_position",
           "window_batch_losses"]


class _EvalMode:
    """Context: eval mode and no graph, the model's mode restored afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module language model, got "
                         f"{type(model).__name__}")


def _check_ids(ids: torch.Tensor, minimum: int, name: str = "ids",
               minimum_text: str | None = None) -> None:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype != torch.int64:
        raise ValueError(f"{name} must be a 1-D int64 tensor of token ids, got "
                         f"{getattr(ids, 'shape', type(ids).__name__)} "
                         f"{getattr(ids, 'dtype', '')}")
    if len(ids) < minimum:
        raise ValueError(f"{name} must hold at least {minimum_text or minimum} tokens, got "
                         f"{len(ids)}")


def _check_ids_for(model: nn.Module, ids: torch.Tensor, minimum: int,
                   minimum_text: str | None = None) -> None:
    """``ids`` as :func:`_check_ids`, and within the model's vocabulary."""
    _check_ids(ids, minimum, minimum_text=minimum_text)
    vocab_size = getattr(model, "vocab_size", None)
    if vocab_size is not None and len(ids):
        smallest, largest = int(ids.min()), int(ids.max())
        if smallest < 0 or largest >= vocab_size:
            raise ValueError(f"ids must lie in [0, {vocab_size}) (the model's vocab_size), got "
                             f"values in [{smallest}, {largest}]")


def _summed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy (B, T) in float32 or wider."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    flat = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       reduction="none")
    return flat.view(targets.shape)


def estimate_loss(model: nn.Module, ids: torch.Tensor, *, batch_size: int, context_length: int,
                  batches: int, seed: int, device: str | torch.device = "cpu") -> float:
    """Mean cross-entropy (nats/char) over ``batches`` random windows drawn from a fresh
    generator seeded with ``seed`` (the same windows every call), in eval mode.

    Like nanoGPT's ``estimate_loss``: every position of a window counts, so positions see
    0..T-1 characters of context.
    """
    total = 0.0
    for loss in window_batch_losses(model, ids, batch_size=batch_size,
                                    context_length=context_length, batches=batches, seed=seed,
                                    device=device):
        total += loss
    return total / batches


def window_batch_losses(model: nn.Module, ids: torch.Tensor, *, batch_size: int,
                        context_length: int, batches: int, seed: int,
                        device: str | torch.device = "cpu", share: tuple[int, int] = (0, 1)
                        ) -> list[float]:
    """The ``batches`` mean losses behind :func:`estimate_loss`, batch by batch.

    ``share=(r, n)`` computes only the batches ``i`` with ``i % n == r`` (the others are still
    drawn, so every batch is the same window as in one process, and reported as 0.0): n
    processes each compute their share and sum the lists, which gives one process's list.
    """
    _check_model(model)
    check_positive_int("batches", batches)
    check_int("seed", seed, low=0)
    device = check_device("device", device)
    _check_ids_for(model, ids, 2)
    rank, size = check_int_sequence("share", share, length=2, low=0)
    if not rank < size:
        raise ValueError(f"share must be (rank, size) with 0 <= rank < size, got {share!r}")
    generator = torch.Generator().manual_seed(seed)
    losses = [0.0] * batches
    with _EvalMode(model):
        for index in range(batches):
            inputs, targets = random_batch(ids, batch_size, context_length, generator, device)
            if index % size == rank:
                _, loss = model(inputs, targets)
                losses[index] = float(loss)
    return losses


def _steps(values: range, progress: bool, what: str):
    """``values``, with a tqdm bar on stderr when ``progress``."""
    check_bool("progress", progress)
    if not progress:
        return values
    from tqdm.auto import tqdm

    return tqdm(values, desc=what, unit="batch", file=sys.stderr, dynamic_ncols=True,
                leave=False)


def evaluate_all(model: nn.Module, ids: torch.Tensor, *, context_length: int,
                 batch_size: int = 64, device: str | torch.device = "cpu",
                 progress: bool = False) -> float:
    """Cross-entropy (nats/char) of *every* character of ``ids`` once, in consecutive fresh
    windows of ``context_length`` (the number an n-gram baseline scored on the same text
    compares with, except that a window's first characters see little context).
    ``progress``: a tqdm bar on stderr."""
    _check_model(model)
    check_positive_int("batch_size", batch_size)
    device = check_device("device", device)
    check_bool("progress", progress)
    _check_ids_for(model, ids, 2)
    inputs, targets = _sequential_windows(ids, context_length)
    with _EvalMode(model):
        total, count = 0.0, 0
        for start in _steps(range(0, len(inputs), batch_size), progress, "fresh windows"):
            x = inputs[start:start + batch_size].to(device)
            y = targets[start:start + batch_size].to(device)
            logits, _ = model(x)
            losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 y.reshape(-1), ignore_index=-1, reduction="sum")
            total += float(losses)
            count += int((y >= 0).sum())
    return total / count


def _sliding_windows(length: int, window: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, first scored index) of the windows that score every target once.

    Targets are the positions 1..length−1 of the text; a window reads inputs [start, end) and
    predicts [start + 1, end + 1). The first window scores all of its predictions, every later
    one the predictions its predecessor did not make, which sit at window index ≥ window −
    stride, i.e. with at least half a window of context.
    """
    stride = max(1, window // 2)
    scored, start = 0, 0  # ``scored``: targets 1..scored are done
    while scored < length - 1:
        end = min(start + window, length - 1)
        yield start, end, scored - start
        scored = end
        start = max(start + stride, end - window + stride) if end < length - 1 else end


def evaluate_stream(model: nn.Module, ids: torch.Tensor, *, window: int,
                    device: str | torch.device = "cpu", batch_size: int = 64,
                    progress: bool = False) -> float:
    """Mean nats/char of every character of ``ids`` after the first, each scored once, in order.

    A model with ``stream`` (HOPE) reads ``ids`` as one stream in pieces of ``window`` tokens,
    carrying its whole state, with every in-context update it makes: the number does not depend
    on ``window`` (the pieces only bound memory). A model without (the Transformer) slides its
    context window of ``window`` tokens (≤ its ``context_length``) with a stride of half the
    window and scores each token once, so every token after the first window sees at least half
    a window of context (windows batched by ``batch_size``).

    Runs under ``torch.no_grad()`` in eval mode and restores the model's mode. ``progress``:
    a tqdm bar on stderr.

    Raises:
        ValueError: naming the argument, for a model that is not a module, ``ids`` that are not
            a 1-D int64 tensor of at least 2 tokens, or a ``window`` that is not a positive int
            (or longer than a fixed-context model's ``context_length``).
    """
    return float(stream_token_losses(model, ids, window=window, device=device,
                                      batch_size=batch_size, progress=progress).mean())


def stream_token_losses(model: nn.Module, ids: torch.Tensor, *, window: int,
                         device: str | torch.device = "cpu", batch_size: int = 64,
                         progress: bool = False) -> torch.Tensor:
    """The per-token losses behind :func:`evaluate_stream` (same arguments, same reading):
    (len(ids) − 1,) float64, entry t the loss of predicting ``ids[t + 1]``. Binned along the
    text they show whether a carried state drifts over a long stream."""
    _check_model(model)
    _check_ids_for(model, ids, 2)
    check_positive_int("window", window)
    check_positive_int("batch_size", batch_size)
    device = check_device("device", device)
    check_bool("progress", progress)
    count = len(ids) - 1
    losses = torch.zeros(count, dtype=torch.float64)
    with _EvalMode(model):
        if hasattr(model, "stream"):
            state = None
            for start in _steps(range(0, count, window), progress, "stream"):
                end = min(start + window, count)
                inputs = ids[None, start:end].to(device)
                targets = ids[None, start + 1:end + 1].to(device)
                logits, state = model.stream(inputs, state, targets=targets)
                losses[start:end] = _summed_cross_entropy(logits, targets)[0].double().cpu()
            return losses
        context = getattr(model, "context_length", None)
        if context is not None and window > context:
            raise ValueError(f"window must be at most the model's context_length ({context}), "
                             f"got {window}")
        # Windows of equal length are batched; the last one may be shorter.
        groups: dict[int, list[tuple[int, int, int]]] = {}
        for span in _sliding_windows(len(ids), window):
            groups.setdefault(span[1] - span[0], []).append(span)
        bar = _steps(range(sum(-(-len(members) // batch_size) for members in groups.values())),
                     progress, "sliding windows")
        batches = iter(bar)
        for length, members in groups.items():
            for first in range(0, len(members), batch_size):
                next(batches, None)
                batch = members[first:first + batch_size]
                starts = torch.tensor([start for start, _, _ in batch])
                rows = starts[:, None] + torch.arange(length)
                logits, _ = model(ids[rows].to(device))
                window_losses = _summed_cross_entropy(logits, ids[rows + 1].to(device))
                for row, (start, end, scored_from) in enumerate(batch):
                    losses[start + scored_from:end] = window_losses[row, scored_from:].double()
        next(batches, None)  # the bar ends (and closes)
    return losses


def loss_by_position(model: nn.Module, ids: torch.Tensor, *, length: int, windows: int,
                     seed: int, device: str | torch.device = "cpu",
                     batch_size: int = 16) -> torch.Tensor:
    """Mean loss (nats) at each position of ``windows`` random windows of ``length`` tokens,
    each read from a fresh state: a (length,) float tensor whose entry p is the loss of
    predicting token p + 1 from the p + 1 tokens before it.

    The windows start at positions drawn from ``torch.Generator().manual_seed(seed)`` (the same
    windows for every model). A fixed-context model (the Transformer) needs ``length`` ≤ its
    ``context_length``; HOPE takes any length. Runs under ``torch.no_grad()`` in eval mode and
    restores the model's mode.

    Raises:
        ValueError: naming the argument (bad ``ids``, ``length``, ``windows``, ``seed``).
    """
    _check_model(model)
    check_positive_int("length", length)
    check_positive_int("windows", windows)
    check_positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    device = check_device("device", device)
    _check_ids_for(model, ids, length + 1, minimum_text=f"length + 1 = {length + 1}")
    context = getattr(model, "context_length", None)
    if not hasattr(model, "stream") and context is not None and length > context:
        raise ValueError(f"length must be at most the model's context_length ({context}) for a "
                         f"model without a stream state, got {length}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(ids) - length, (windows,), generator=generator)
    offsets = torch.arange(length)
    total = torch.zeros(length, dtype=torch.float64)
    with _EvalMode(model):
        for first in range(0, windows, batch_size):
            rows = starts[first:first + batch_size, None] + offsets
            inputs, targets = ids[rows].to(device), ids[rows + 1].to(device)
            logits, _ = model(inputs)
            total += _summed_cross_entropy(logits, targets).sum(0).double().cpu()
    return (total / windows).to(torch.get_default_dtype())
