"""nlbook.ngram: exact normalisation, agreement with a slow dictionary implementation of
interpolated modified Kneser-Ney, and the published Tiny Shakespeare numbers."""

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from nlbook.data import load_corpus
from nlbook.ngram import (
    NgramModel,
    modified_kneser_ney_discounts,
    ngram_baselines,
    uniform_cross_entropy,
)


def synthetic_ids(length=3000, vocab=7, seed=0):
    """A Markov-ish stream with structure at several orders and some rare symbols."""
    rng = np.random.default_rng(seed)
    ids = [0, 1]
    for _ in range(length - 2):
        if rng.random() < 0.6:
            ids.append((ids[-1] + ids[-2]) % (vocab - 1))
        else:
            ids.append(int(rng.integers(vocab)))
    return np.array(ids)


def reference_kneser_ney(train, order, vocab):
    """Slow, obviously correct interpolated modified KN with Python dictionaries.

    Returns prob(history_tuple, word) following Chen & Goodman (1998)."""
    train = [int(x) for x in train]
    raw = [Counter(tuple(train[i:i + k]) for i in range(len(train) - k + 1))
           for k in range(order + 1)]
    counts = []
    for k in range(1, order + 1):
        if k == order:
            counts.append(dict(raw[k]))
        else:  # continuation counts: distinct predecessors of the k-gram
            predecessors = defaultdict(set)
            for gram in raw[k + 1]:
                predecessors[gram[1:]].add(gram[0])
            counts.append({gram: len(before) for gram, before in predecessors.items()})
    discounts = [modified_kneser_ney_discounts(np.array(list(c.values()))) for c in counts]

    def discount(k, c):
        d1, d2, d3 = discounts[k - 1]
        return 0.0 if c == 0 else d1 if c == 1 else d2 if c == 2 else d3

    def prob(history, word):
        p = 1.0 / vocab
        for k in range(1, order + 1):
            if len(history) < k - 1:
                break
            h = tuple(history[len(history) - (k - 1):]) if k > 1 else ()
            table = counts[k - 1]
            total = sum(c for g, c in table.items() if g[:-1] == h)
            if total == 0:
                continue
            freed = sum(discount(k, c) for g, c in table.items() if g[:-1] == h)
            c = table.get((*h, word), 0)
            p = max(c - discount(k, c), 0.0) / total + freed / total * p
        return p

    return prob


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_slow_dictionary_reference(order):
    train, test = synthetic_ids(600), synthetic_ids(80, seed=1)
    model = NgramModel(order, 7).fit(train)
    prob = reference_kneser_ney(train, order, 7)
    history = list(train[len(train) - (order - 1):]) if order > 1 else []
    stream = history + [int(x) for x in test]
    expected = [math.log(prob(stream[:len(history) + t], stream[len(history) + t]))
                for t in range(len(test))]
    got = model.log_probs(test, history=np.array(history, dtype=np.int64))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("smoothing", ["kneser_ney", "absolute"])
@pytest.mark.parametrize("order", [1, 2, 3, 5, 7])
def test_probabilities_sum_to_one_and_agree_with_log_probs(order, smoothing):
    train = synthetic_ids()
    model = NgramModel(order, 7, smoothing=smoothing).fit(train)
    rng = np.random.default_rng(2)
    histories = [rng.integers(7, size=n) for n in (0, 1, 3, 6, 6)] + [train[100:106]]
    for history in histories:
        probabilities = model.next_token_probabilities(history)
        assert probabilities.shape == (7,)
        assert np.all(probabilities > 0)
        assert abs(probabilities.sum() - 1.0) < 1e-12
        if len(history) >= order - 1:
            for word in range(7):
                scored = model.log_probs(np.array([word]), history=history)[0]
                assert abs(scored - math.log(probabilities[word])) < 1e-12


def test_uniform_and_argument_checks():
    assert uniform_cross_entropy(65) == pytest.approx(4.1744, abs=1e-4)
    with pytest.raises(ValueError, match="order"):
        NgramModel(0, 5)
    with pytest.raises(ValueError, match="smoothing"):
        NgramModel(2, 5, smoothing="witten_bell")
    with pytest.raises(ValueError, match=r"train_ids must lie in \[0, 5\)"):
        NgramModel(2, 5).fit(np.array([0, 1, 9]))
    with pytest.raises(RuntimeError, match="fit"):
        NgramModel(2, 5).log_probs(np.array([0, 1]))


def test_tiny_shakespeare_reference_numbers():
    # performance-and-benchmarks.md §2.3: bigram 2.487, 3-gram KN 2.038, 5-gram KN 1.561.
    corpus = load_corpus()
    results = ngram_baselines(corpus.train_ids, corpus.val_ids, corpus.vocab_size,
                              orders=(3, 5))
    assert results["uniform"]["nats"] == pytest.approx(math.log(65))
    assert results["bigram"]["nats"] == pytest.approx(2.487, abs=2e-3)
    assert results["3-gram KN"]["nats"] == pytest.approx(2.038, abs=2e-3)
    assert results["5-gram KN"]["nats"] == pytest.approx(1.561, abs=2e-3)
    assert results["5-gram KN"]["bits"] == pytest.approx(1.561 / math.log(2), abs=3e-3)
