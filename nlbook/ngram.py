"""Count-based character n-gram models: the "learns nothing" baselines of chapter 6.

A model that only counts gives the honest reference line beside every training curve: on Tiny
Shakespeare an interpolated modified Kneser-Ney 7-gram reaches about 1.52 nats/char with no
training at all (measured: chapter 6 and the README), better than the 3-minute CPU baby GPT.

Interpolated smoothing, for orders k = 1..n over a vocabulary of V characters, with history
h (the k-1 previous characters) and h' (h without its oldest character)::

    P_0(w)      = 1 / V
    P_k(w | h)  = max(c_k(h, w) - D_k(c_k(h, w)), 0) / c_k(h)  +  gamma_k(h) P_{k-1}(w | h')
    gamma_k(h)  = sum_w D_k(c_k(h, w)) / c_k(h)          (the mass the discounts freed)
    P_k(w | h)  = P_{k-1}(w | h')                           when c_k(h) = 0

* ``smoothing="kneser_ney"`` (Chen & Goodman 1998, interpolated *modified* KN): the highest
  order counts raw occurrences; lower orders count *continuations*, the number of distinct
  characters seen before the k-gram (how many contexts it completes). Three discounts per order
  D1, D2, D3+ come from the count-of-counts n1..n4 of that order:
  Y = n1/(n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3.
* ``smoothing="absolute"``: raw counts at every order and one discount D (0.75) everywhere.

Because each discount is clipped to (0, count], every conditional distribution sums to one
exactly (up to float rounding); :meth:`NgramModel.next_token_probabilities` lets a test check it.

Everything is vectorised with numpy: a k-gram is one int64 key (base-V digits), counts come
from ``np.unique`` and look-ups from ``np.searchsorted``, so a 7-gram on a million characters
builds in seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "NgramModel",
    "modified_kneser_ney_discounts",
    "ngram_baselines",
    "uniform_cross_entropy",
]


def uniform_cross_entropy(vocab_size: int) -> float:
    """Cross-entropy in nats of the uniform distribution over ``vocab_size`` symbols: ln V."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    return math.log(vocab_size)


def modified_kneser_ney_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's discounts (D1, D2, D3+) from the count-of-counts of ``counts``.

    Each discount is clipped to (0, its count]; where a count-of-count is zero (tiny corpora)
    the formula is undefined and the classic fallback (0.5, 1.0, 1.5) is used for that term.
    """
    counts = np.asarray(counts)
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == value)) for value in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
    d1 = 1.0 - 2.0 * y * n2 / n1 if n1 > 0 else 0.5
    d2 = 2.0 - 3.0 * y * n3 / n2 if n2 > 0 else 1.0
    d3 = 3.0 - 4.0 * y * n4 / n3 if n3 > 0 else 1.5
    floor = 1e-3  # a zero discount would give unseen characters probability zero
    return (float(np.clip(d1, floor, 1.0)), float(np.clip(d2, floor, 2.0)),
            float(np.clip(d3, floor, 3.0)))


def _as_numpy_ids(ids, name: str, vocab_size: int | None) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array of token ids, got "
                         f"shape {ids.shape} and dtype {ids.dtype}")
    if vocab_size is not None and ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} must lie in [0, {vocab_size}), got values in "
                         f"[{ids.min()}, {ids.max()}]")
    return ids.astype(np.int64)


def _gram_keys(ids: np.ndarray, length: int, vocab_size: int) -> np.ndarray:
    """Key of every window of ``length`` ids: sum_i ids[t+i] V^(length-1-i), shape (N-length+1,)."""
    n = len(ids) - length + 1
    keys = np.zeros(max(n, 0), dtype=np.int64)
    for offset in range(length):
        keys = keys * vocab_size + ids[offset:offset + n]
    return keys


@dataclass
class _OrderTable:
    """Counts of one order k: sorted gram keys with their (raw or continuation) counts, and per
    history the total count and the discounted mass (D1 N1 + D2 N2 + D3 N3+)."""

    gram_keys: np.ndarray
    gram_counts: np.ndarray
    history_keys: np.ndarray
    history_totals: np.ndarray
    history_freed: np.ndarray
    discounts: tuple[float, float, float]

    def discount_of(self, counts: np.ndarray) -> np.ndarray:
        d1, d2, d3 = self.discounts
        return np.where(counts >= 3, d3, np.where(counts == 2, d2, np.where(counts == 1, d1, 0.0)))


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[i] where sorted_keys[i] == query, else 0 (vectorised)."""
    if sorted_keys.size == 0:
        return np.zeros(queries.shape, dtype=values.dtype)
    position = np.searchsorted(sorted_keys, queries)
    position = np.minimum(position, sorted_keys.size - 1)
    found = sorted_keys[position] == queries
    return np.where(found, values[position], 0).astype(values.dtype)


class NgramModel:
    """Interpolated character n-gram model (modified Kneser-Ney or absolute discounting).

    Args:
        order: n, the number of characters in the largest gram (history of n-1 characters).
        vocab_size: V; token ids lie in [0, V).
        smoothing: ``"kneser_ney"`` (interpolated modified KN) or ``"absolute"``.
        discount: the single discount of ``"absolute"`` smoothing.

    Use :meth:`fit` on the training ids, then :meth:`log_probs` / :meth:`cross_entropy` on the
    validation ids (pass the end of the training text as ``history`` so the first validation
    characters are scored with their real context).
    """

    def __init__(self, order: int, vocab_size: int, *, smoothing: str = "kneser_ney",
                 discount: float = 0.75) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be a positive int, got {order!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
        if smoothing not in ("kneser_ney", "absolute"):
            raise ValueError(f"smoothing must be 'kneser_ney' or 'absolute', got {smoothing!r}")
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must lie in (0, 1], got {discount!r}")
        if float(vocab_size) ** order >= 2.0**62:
            raise ValueError(f"vocab_size ** order = {vocab_size}**{order} does not fit the "
                             f"int64 keys; use a lower order")
        self.order = order
        self.vocab_size = vocab_size
        self.smoothing = smoothing
        self.discount = discount
        self._tables: list[_OrderTable] = []

    def __repr__(self) -> str:
        return f"NgramModel(order={self.order}, vocab_size={self.vocab_size}, " \
               f"smoothing={self.smoothing!r})"

    # ------------------------------------------------------------------ building
    def fit(self, train_ids) -> NgramModel:
        """Count every order 1..n in ``train_ids`` (1-D integer ids). Returns ``self``."""
        ids = _as_numpy_ids(train_ids, "train_ids", self.vocab_size)
        if len(ids) < self.order:
            raise ValueError(f"train_ids has {len(ids)} tokens, fewer than order={self.order}")
        size = self.vocab_size
        unique_keys = [np.unique(_gram_keys(ids, k, size), return_counts=True)
                       for k in range(1, self.order + 1)]
        self._tables = []
        for k in range(1, self.order + 1):
            keys, raw_counts = unique_keys[k - 1]
            if self.smoothing == "kneser_ney" and k < self.order:
                # Continuation count: distinct characters seen before this k-gram, i.e. the
                # number of distinct (k+1)-grams whose last k characters are this k-gram.
                longer_keys = unique_keys[k][0]
                suffixes = longer_keys % (size ** k)
                cont_keys, cont_counts = np.unique(suffixes, return_counts=True)
                keys, counts = cont_keys, cont_counts.astype(np.int64)
            else:
                counts = raw_counts.astype(np.int64)
            if self.smoothing == "kneser_ney":
                discounts = modified_kneser_ney_discounts(counts)
            else:
                discounts = (self.discount,) * 3
            table = _OrderTable(keys, counts, np.empty(0, np.int64), np.empty(0, np.int64),
                                np.empty(0), discounts)
            # Keys are sorted, and a gram's history is key // V, so each history's grams are
            # contiguous: reduce over those runs.
            histories = keys // size
            history_keys, starts = np.unique(histories, return_index=True)
            table.history_keys = history_keys
            table.history_totals = np.add.reduceat(counts, starts)
            table.history_freed = np.add.reduceat(table.discount_of(counts), starts)
            self._tables.append(table)
        return self

    def _check_fitted(self) -> None:
        if not self._tables:
            raise RuntimeError("call fit(train_ids) before scoring")

    # ------------------------------------------------------------------ scoring
    def log_probs(self, ids, history=None) -> np.ndarray:
        """Natural-log probability of every token of ``ids`` given the tokens before it.

        Args:
            ids: 1-D integer ids to score, length N.
            history: optional ids that precede ``ids`` (e.g. the end of the training text);
                tokens without n-1 predecessors use the longest history available.

        Returns:
            float64 array of shape (N,): log P(ids[t] | previous n-1 tokens).
        """
        self._check_fitted()
        ids = _as_numpy_ids(ids, "ids", self.vocab_size)
        if history is None:
            history = np.empty(0, np.int64)
        history = _as_numpy_ids(history, "history", self.vocab_size)
        history = history[max(len(history) - (self.order - 1), 0):]  # only n-1 matter
        stream = np.concatenate([history, ids])
        first = len(history)  # position in stream of ids[0]
        positions = np.arange(first, len(stream))
        size = self.vocab_size
        probability = np.full(len(ids), 1.0 / size)
        for k in range(1, self.order + 1):
            table = self._tables[k - 1]
            available = positions - (k - 1) >= 0  # enough predecessors for a k-gram
            history_key = np.zeros(len(ids), dtype=np.int64)
            for offset in range(k - 1, 0, -1):
                index = np.maximum(positions - offset, 0)
                history_key = history_key * size + stream[index]
            gram_key = history_key * size + stream[positions]
            total = _lookup(table.history_keys, table.history_totals, history_key)
            freed = _lookup(table.history_keys, table.history_freed, history_key)
            count = _lookup(table.gram_keys, table.gram_counts, gram_key)
            seen = available & (total > 0)
            safe_total = np.where(seen, total, 1)
            direct = np.maximum(count - table.discount_of(count), 0.0) / safe_total
            probability = np.where(seen, direct + freed / safe_total * probability, probability)
        return np.log(probability)

    def cross_entropy(self, ids, history=None) -> float:
        """Mean negative log-likelihood of ``ids`` in nats per token."""
        return float(-self.log_probs(ids, history).mean())

    def next_token_probabilities(self, history) -> np.ndarray:
        """P(w | history) for every w in the vocabulary, shape (V,), float64; sums to one.

        Only the last n-1 ids of ``history`` matter; a shorter history uses the lower orders.
        """
        self._check_fitted()
        history = _as_numpy_ids(history, "history", self.vocab_size)
        size = self.vocab_size
        words = np.arange(size, dtype=np.int64)
        probability = np.full(size, 1.0 / size)
        for k in range(1, self.order + 1):
            if len(history) < k - 1:
                break
            table = self._tables[k - 1]
            history_key = 0
            for token in (history[len(history) - (k - 1):] if k > 1 else []):
                history_key = history_key * size + int(token)
            query = np.array([history_key], dtype=np.int64)
            total = int(_lookup(table.history_keys, table.history_totals, query)[0])
            if total == 0:
                continue
            freed = float(_lookup(table.history_keys, table.history_freed, query)[0])
            count = _lookup(table.gram_keys, table.gram_counts, history_key * size + words)
            direct = np.maximum(count - table.discount_of(count), 0.0) / total
            probability = direct + freed / total * probability
        return probability


def ngram_baselines(train_ids, val_ids, vocab_size: int, *, orders=(3, 4, 5, 6, 7),
                    verbose: bool = False) -> dict[str, dict[str, float]]:
    """Validation cross-entropy of the models that learn nothing, on the same split.

    Returns ``{name: {"nats": ..., "bits": ..., "seconds": ...}}`` for ``"uniform"``,
    ``"bigram"`` (interpolated absolute discounting, D = 0.75) and ``"{n}-gram KN"`` for each
    n in ``orders`` (interpolated modified Kneser-Ney). ``seconds`` is build plus scoring time.
    Validation is scored on every token, with the end of the training ids as history.
    """
    results: dict[str, dict[str, float]] = {}

    def record(name: str, nats: float, seconds: float) -> None:
        results[name] = {"nats": nats, "bits": nats / math.log(2), "seconds": seconds}
        if verbose:
            print(f"{name:>12}: {nats:.4f} nats/char  {nats / math.log(2):.4f} bits/char  "
                  f"({seconds:.1f} s)")

    record("uniform", uniform_cross_entropy(vocab_size), 0.0)
    specs = [("bigram", 2, "absolute")] + [(f"{n}-gram KN", n, "kneser_ney") for n in orders]
    for name, order, smoothing in specs:
        start = time.perf_counter()
        model = NgramModel(order, vocab_size, smoothing=smoothing).fit(train_ids)
        nats = model.cross_entropy(val_ids, history=train_ids[len(train_ids) - (order - 1):])
        record(name, nats, time.perf_counter() - start)
    return results
