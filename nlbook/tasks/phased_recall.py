"""Continual learning in context: a phased MQAR (chapter 7).

One sequence holds two tasks learned one after the other *in context*, with the weights frozen:
key-value set A and its queries, then set B (other keys, other values) and its queries, then
A's queries once more. A memory that keeps A while it learns B answers A's last queries as well
as its first; one that B overwrites falls towards chance on them. This is the in-context form
of the A → B → A schedule (the paper's continual-learning claim, arXiv §7, credits memories that
update at different frequencies).

Layout of one row (n = ``pairs_per_phase``, g = ``gap``; blanks are token 0)::

    A: k1 v1 … kn vn | g blanks | A's keys (shuffled)  ← phase 0, targets A's values
    B: k1 v1 … kn vn | g blanks | B's keys (shuffled)  ← phase 1, targets B's values
                       g blanks | A's keys (shuffled)  ← phase 2, targets A's values again

Length T = 7n + 3g. Keys come from [1, V/2) and values from [V/2, V), as in
:func:`nlbook.tasks.mqar_batch`; A's and B's keys are disjoint, and so are their values, so an
answer with B's value to A's key is always wrong. The value is never written after a query, so a
query cannot be answered from an earlier query of the same key.
"""

from __future__ import annotations

import torch

from nlbook._checks import check_int, check_memory, check_positive_int, check_torch_generator

__all__ = ["PHASES", "phased_mqar_batch", "phased_mqar_layout"]

#: The three scored query blocks of a row, in order (the values of the ``phase`` tensor).
PHASES = ("A first", "B", "A last")


def phased_mqar_layout(pairs_per_phase: int, gap: int = 8) -> dict[str, tuple[int, int]]:
    """Where each block of a phased MQAR row lies: name → (start, stop) token positions.

    Names: ``"A pairs"``, ``"A first"`` (A's first queries), ``"B pairs"``, ``"B"`` (B's
    queries), ``"A last"`` (A's queries again) and ``"sequence"`` (0, T) with T = 7n + 3g.
    """
    check_positive_int("pairs_per_phase", pairs_per_phase)
    check_int("gap", gap, low=0)
    check_memory("pairs_per_phase and gap", 7 * pairs_per_phase + 3 * gap, bytes_per_element=8,
                 what="one row")
    n, g = pairs_per_phase, gap
    return {"A pairs": (0, 2 * n), "A first": (2 * n + g, 3 * n + g),
            "B pairs": (3 * n + g, 5 * n + g), "B": (5 * n + 2 * g, 6 * n + 2 * g),
            "A last": (6 * n + 3 * g, 7 * n + 3 * g), "sequence": (0, 7 * n + 3 * g)}


def phased_mqar_batch(batch_size: int, *, vocab_size: int, pairs_per_phase: int, gap: int = 8,
                      generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of phased MQAR rows (layout in the module docstring).

    Args:
        batch_size: B.
        vocab_size: V; keys from [1, V/2), values from [V/2, V); 2n distinct of each are
            needed (n per set), so V/2 - 1 ≥ 2n.
        pairs_per_phase: n, the key-value pairs of A and of B.
        gap: blanks between each set's pairs and its queries, and between B's queries and
            A's last queries (≥ 0).
        generator: a CPU torch.Generator (every random draw of the batch).

    Returns:
        inputs: int64 (B, T), T = 7n + 3g.
        targets: int64 (B, T), a query's value at its position, −1 where nothing is scored.
        phase: int64 (B, T), 0 / 1 / 2 at the queries of A first / B / A last
            (:data:`PHASES`), −1 elsewhere.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("vocab_size", vocab_size)
    check_memory("vocab_size", 2 * vocab_size, bytes_per_element=8, what="the key permutations")
    layout = phased_mqar_layout(pairs_per_phase, gap)
    check_torch_generator("generator", generator)
    n = pairs_per_phase
    half = vocab_size // 2
    if 2 * n > half - 1 or 2 * n > vocab_size - half:
        raise ValueError(f"pairs_per_phase must be at most {min(half - 1, vocab_size - half) // 2}"
                         f" for vocab_size {vocab_size} (2 × pairs_per_phase distinct keys in "
                         f"[1, {half}) and values in [{half}, {vocab_size})), got {n}")
    length = layout["sequence"][1]
    check_memory("batch_size, pairs_per_phase and gap", 3 * batch_size * length,
                 bytes_per_element=8)
    inputs = torch.zeros(batch_size, length, dtype=torch.int64)
    targets = torch.full((batch_size, length), -1, dtype=torch.int64)
    phase = torch.full((batch_size, length), -1, dtype=torch.int64)
    for row in range(batch_size):
        keys = 1 + torch.randperm(half - 1, generator=generator)[:2 * n]
        values = half + torch.randperm(vocab_size - half, generator=generator)[:2 * n]
        sets = {"A": (keys[:n], values[:n]), "B": (keys[n:], values[n:])}
        for name, (set_keys, set_values) in sets.items():
            start = layout[f"{name} pairs"][0]
            inputs[row, start:start + 2 * n:2] = set_keys
            inputs[row, start + 1:start + 2 * n:2] = set_values
        for index, block in enumerate(PHASES):
            set_keys, set_values = sets[block[0]]
            order = torch.randperm(n, generator=generator)
            start, stop = layout[block]
            inputs[row, start:stop] = set_keys[order]
            targets[row, start:stop] = set_values[order]
            phase[row, start:stop] = index
    return inputs, targets, phase
