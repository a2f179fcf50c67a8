"""Checkers for chapter 6's exercises: bits per character, nucleus (top-p) filtering, and the
loss of a bigram model predicted from counts alone.

Each ``check_*`` calls the learner's function on small inputs, compares with nlbook's answer and
raises ``AssertionError`` with a hint (a wrong logarithm base, an off-by-one at the nucleus
boundary, ...). Use as ``from nlbook.exercises import tiny_shakespeare as ex``;
``ex.check_bits_per_char(fn)``, ``ex.answer("perplexity", prediction)``,
``ex.solution("top_p_filter")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from nlbook._checks import check_ndim, check_positive_int, check_scalar_in_range
from nlbook.exercises import solutions
from nlbook.exercises._core import (
    Chapter,
    CheckResult,
    Question,
    checker,
    expect_number,
    expect_tensor,
)
from nlbook.transformer import sample_next_token

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "bigram_count_cross_entropy", "check_bigram_loss",
           "check_bits_per_char", "check_top_p_filter", "experiment", "reference_top_p_filter",
           "reveal", "solution"]


# ------------------------------------------------------------------------------ bits per char

@checker("bits_per_char")
def check_bits_per_char(bits_per_char: Callable[[float], float]) -> CheckResult:
    """Check ``bits_per_char(nats) -> bits``: the same cross-entropy with a base-2 logarithm,
    bits = nats / ln 2 (because log2 p = ln p / ln 2)."""
    for nats in (math.log(65.0), 1.88, 1.5165, 0.25):
        expected = nats / math.log(2.0)
        got = expect_number(f"bits_per_char({nats:.4f})", bits_per_char(nats))
        if abs(got - expected) < 1e-9:
            continue
        hints = [(nats * math.log(2.0), "you multiplied by ln 2: divide by it instead"),
                 (nats / math.log(10.0), "ln 10 converts to digits (bans), not bits"),
                 (math.exp(nats), "exp(nats) is the perplexity, not bits/char"),
                 (nats / 2.0, "divide by ln 2 ≈ 0.693, not by 2")]
        for value, hint in hints:
            if abs(got - value) < 1e-9:
                raise AssertionError(f"bits_per_char({nats:.4f}) = {got:.4f}: {hint}")
        raise AssertionError(f"bits_per_char({nats:.4f}) returned {got:.4f}, expected "
                             f"{expected:.4f} (= nats / ln 2)")
    return "ln 65 = 4.174 nats = 6.022 bits, i.e. log2 of 65 choices."


# ------------------------------------------------------------------------------ top-p

def reference_top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020) as :func:`nlbook.transformer.sample_next_token`
    applies it: sort each row's probabilities in decreasing order and keep the smallest prefix
    whose probability reaches ``top_p``; the other logits become -inf.

    Args:
        logits: (B, V) float. top_p: in (0, 1].

    Returns:
        (B, V) logits, equal to the input where kept and -inf elsewhere.
    """
    check_ndim("logits", logits, 2, "(B, V)")
    check_scalar_in_range("top_p", top_p, 0.0, 1.0, low_inclusive=False)
    probabilities = torch.softmax(logits.double(), dim=-1)
    kept = torch.zeros_like(logits, dtype=torch.bool)
    for row in range(logits.shape[0]):  # a plain loop: obviously the definition
        total = 0.0
        for token in torch.argsort(probabilities[row], descending=True).tolist():
            kept[row, token] = True
            total += float(probabilities[row, token])
            if total >= top_p:
                break
    return logits.masked_fill(~kept, float("-inf"))


@checker("top_p_filter")
def check_top_p_filter(top_p_filter: Callable[[torch.Tensor, float], torch.Tensor]
                       ) -> CheckResult:
    """Check ``top_p_filter(logits (B, V), p) -> logits (B, V)`` with -inf outside the nucleus.

    The kept set must equal :func:`reference_top_p_filter`'s, and sampling from the learner's
    filtered logits with a seeded generator must draw exactly the tokens that nlbook's sampler
    (``sample_next_token(logits, top_p=p)``) draws with the same seed.
    """
    generator = torch.Generator().manual_seed(0)
    for batch, vocab, top_p in [(4, 8, 0.5), (6, 65, 0.9), (3, 5, 0.99), (5, 12, 0.05)]:
        logits = 2.0 * torch.randn(batch, vocab, generator=generator)
        got = expect_tensor(f"top_p_filter(logits {tuple(logits.shape)}, {top_p})",
                            top_p_filter(logits.clone(), top_p), tuple(logits.shape),
                            allow_infinite=True).to(logits.dtype)
        expected = reference_top_p_filter(logits, top_p)
        got_kept, expected_kept = torch.isfinite(got), torch.isfinite(expected)
        if torch.equal(got_kept, expected_kept):
            if not torch.equal(got[got_kept], logits[got_kept]):
                raise AssertionError("the kept logits must be returned unchanged (the sampler "
                                     "renormalises with its softmax; do not rescale them)")
            continue
        probabilities = torch.softmax(logits.double(), dim=-1)
        sorted_probabilities, order = torch.sort(probabilities, dim=-1, descending=True)
        strictly_below = torch.zeros_like(got_kept).scatter(
            -1, order, sorted_probabilities.cumsum(-1) <= top_p)
        if torch.equal(got_kept, strictly_below):
            hint = ("you dropped the token that crosses p: keep the smallest set whose total "
                    "probability REACHES p (the crossing token is kept; at least one token is)")
        elif got_kept.sum() == expected_kept.sum() and not (got_kept & expected_kept).all():
            hint = "you kept the right number of tokens but not the most likely ones (sort order?)"
        elif (~got_kept).all(dim=-1).any():
            hint = "a row has no finite logit left: at least the most likely token must stay"
        else:
            hint = (f"kept {got_kept.sum(-1).tolist()} tokens per row, expected "
                    f"{expected_kept.sum(-1).tolist()}")
        raise AssertionError(f"top_p_filter(logits, {top_p}) keeps the wrong tokens: {hint}")
    # Same seed, same distribution -> the same draws as nlbook's sampler.
    logits = 3.0 * torch.randn(64, 65, generator=generator)
    ours = sample_next_token(logits, top_p=0.8, generator=torch.Generator().manual_seed(1))
    filtered = expect_tensor("top_p_filter(logits (64, 65), 0.8)",
                             top_p_filter(logits.clone(), 0.8), tuple(logits.shape),
                             allow_infinite=True)
    theirs = torch.multinomial(torch.softmax(filtered.float(), dim=-1), 1,
                               generator=torch.Generator().manual_seed(1))
    if not torch.equal(ours, theirs):
        raise AssertionError("sampling after your filter draws other tokens than "
                             "nlbook.transformer.sample_next_token(logits, top_p=0.8) with the "
                             "same seed")
    return "it samples exactly what nlbook's sampler samples."


# ------------------------------------------------------------------------------ bigram loss

def bigram_count_cross_entropy(ids, vocab_size: int) -> float:
    """Cross-entropy (nats/char) of the maximum-likelihood bigram model on the text it was
    counted on: -(1/N) Σ_{a,b} c(a, b) ln(c(a, b) / c(a)), with c(a, b) the number of times
    b follows a and c(a) = Σ_b c(a, b) (N = len(ids) - 1 pairs).

    It equals the conditional entropy H(next | current) of the text, the lowest training loss
    any model that sees only the previous character can reach.
    """
    check_positive_int("vocab_size", vocab_size)
    ids = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"ids must be 1-D with at least 2 tokens, got shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"ids must lie in [0, {vocab_size})")
    counts = np.bincount(ids[:-1] * vocab_size + ids[1:], minlength=vocab_size ** 2)
    counts = counts.reshape(vocab_size, vocab_size).astype(np.float64)
    row_totals = counts.sum(axis=1, keepdims=True)
    seen = counts > 0
    log_probabilities = np.log(counts[seen] / np.broadcast_to(row_totals, counts.shape)[seen])
    return float(-(counts[seen] * log_probabilities).sum() / counts.sum())


@checker("bigram_loss")
def check_bigram_loss(bigram_loss: Callable[[torch.Tensor, int], float]) -> CheckResult:
    """Check ``bigram_loss(ids (N,) int64, vocab_size) -> nats``: the cross-entropy of the
    count-based (maximum-likelihood, unsmoothed) bigram model on the same ids."""
    generator = torch.Generator().manual_seed(0)
    cases = [torch.tensor([0, 1, 0, 1, 1, 0, 2, 0]),
             torch.randint(0, 5, (200,), generator=generator),
             torch.randint(0, 65, (3000,), generator=generator) % 13]
    for ids, vocab in zip(cases, (3, 5, 65), strict=True):
        expected = bigram_count_cross_entropy(ids, vocab)
        got = expect_number(f"bigram_loss(ids ({len(ids)},), {vocab})",
                            bigram_loss(ids.clone(), vocab))
        if abs(got - expected) < 1e-6:
            continue
        counts = np.bincount((ids[:-1] * vocab + ids[1:]).numpy(), minlength=vocab ** 2)
        joint = counts[counts > 0] / counts.sum()
        if abs(got - expected / math.log(2.0)) < 1e-6:
            hint = "you returned bits: the course's losses are in nats (natural logarithm)"
        elif abs(got + (joint * np.log(joint)).sum()) < 1e-6:
            hint = ("you computed the joint entropy H(a, b): divide each count by its ROW total "
                    "c(a), not by the number of pairs")
        elif abs(got + expected) < 1e-6:
            hint = "the sign is flipped: cross-entropy is MINUS the mean log-probability"
        else:
            hint = "expected -(1/N) Σ c(a,b) ln(c(a,b)/c(a))"
        raise AssertionError(f"bigram_loss gave {got:.6f} nats, expected {expected:.6f}: {hint}")
    return "this is the best training loss a model that sees one character of context can reach."


QUESTIONS = {
    "perplexity": Question(
        {"a": "about 1.5", "b": "about 2.2", "c": "about 4.6", "d": "65"},
        "c",
        """The perplexity e^L is the number of equally likely characters that would give the
        same cross-entropy: e^1.52 ≈ 4.6. The uniform model over 65 characters has perplexity
        65 (ln 65 = 4.17 nats); the 7-gram has narrowed each guess down to about 4.6
        characters, nanoGPT's 1.88 nats to about 6.6. (2.2 would be 1.52 read as bits:
        2^1.52.)"""),
    "train_vs_val": Question(
        {"a": "the count-based bigram on its own training text, by a little",
         "b": "the smoothed bigram on validation text",
         "c": "they are equal"},
        "a",
        """Counted on the text it is scored on, the bigram gives every pair exactly its own
        frequency: no model that sees one character can do better there (it is the conditional
        entropy H(next | current) of that text). On unseen text some pairs are rarer or more
        frequent than counted, and smoothing must reserve probability for pairs never seen, so
        the validation loss is a little higher. The gap is small because 65 × 65 pair
        frequencies are estimated from a million characters; for a 7-gram the same gap is
        large."""),
}
SOLUTIONS = solutions.BY_CHAPTER["tiny_shakespeare"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
