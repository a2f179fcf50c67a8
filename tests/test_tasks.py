"""nlbook.tasks: formal languages, recall across a gap, the continual-learning setup.

Every generator is deterministic under its seed or generator and rejects bad arguments with a
ValueError naming the argument; formal-language labels are checked against recognisers written
separately (regular expressions and a cancellation procedure); the recall answer is unreachable
without its planted fact.
"""

import re

import numpy as np
import pytest
import torch
from torch import nn

from nlbook.tasks.formal_languages import (
    ACCEPT_ID,
    ALPHABETS,
    END_ID,
    FORMAL_VOCABULARY,
    LANGUAGES,
    REJECT_ID,
    encode_strings,
    evaluate_formal_language,
    formal_language_batch,
    formal_language_task,
    is_member,
    prefix_labels,
    sample_negative,
    sample_positive,
    sample_strings,
    train_formal_language,
)
from nlbook.transformer import TransformerLM

# ---------------------------------------------------------------------------------------------
# Formal languages
# ---------------------------------------------------------------------------------------------


def _cancels_to_empty(string: str, pair: str) -> bool:
    """Dyck-1 by cancellation: delete adjacent ``pair`` until none is left."""
    projected = "".join(char for char in string if char in pair)
    while pair in projected:
        projected = projected.replace(pair, "")
    return projected == ""


def _equal_runs(pattern: str, string: str) -> bool:
    match = re.fullmatch(pattern, string)
    return match is not None and len({len(group) for group in match.groups()}) == 1


#: Recognisers written independently of nlbook.tasks.formal_languages (which uses automata and
#: counters): regular expressions, str.count and cancellation.
INDEPENDENT_RECOGNISERS = {
    "parity": lambda s: s.count("1") % 2 == 0,
    "aa_star": lambda s: re.fullmatch(r"(?:aa)*", s) is not None,
    "abab_star": lambda s: re.fullmatch(r"(?:abab)*", s) is not None,
    "anbn": lambda s: _equal_runs(r"(a+)(b+)", s),
    "anbncn": lambda s: _equal_runs(r"(a+)(b+)(c+)", s),
    "shuffle2": lambda s: _cancels_to_empty(s, "()") and _cancels_to_empty(s, "[]"),
}


def _one_edit_neighbours(string: str, alphabet: str):
    """Every string one substitution, insertion, deletion or transposition away."""
    for i in range(len(string)):
        yield string[:i] + string[i + 1:]
        for char in alphabet:
            yield string[:i] + char + string[i + 1:]
        for j in range(i + 1, len(string)):
            chars = list(string)
            chars[i], chars[j] = chars[j], chars[i]
            yield "".join(chars)
    for i in range(len(string) + 1):
        for char in alphabet:
            yield string[:i] + char + string[i:]


@pytest.mark.parametrize("language", LANGUAGES)
def test_labels_agree_with_an_independent_recogniser(language):
    recogniser = INDEPENDENT_RECOGNISERS[language]
    task = formal_language_task(language)
    generator = np.random.default_rng(7)
    for split in ("train", "bin1"):
        low, high = task.lengths(split)
        strings, labels = sample_strings(language, 300, (low, high), generator=generator)
        assert sum(labels) == 150  # balanced
        for string, label in zip(strings, labels, strict=True):
            assert low <= len(string) <= high
            assert set(string) <= set(ALPHABETS[language])
            assert label == recogniser(string) == is_member(language, string), string
    # Exhaustively on every short string of the alphabet, positives and negatives alike.
    alphabet = ALPHABETS[language]
    for length in range(0, 9 if len(alphabet) <= 2 else 6):
        for digits in np.ndindex(*([len(alphabet)] * length)):
            string = "".join(alphabet[d] for d in digits)
            assert is_member(language, string) == recogniser(string), string


@pytest.mark.parametrize("language", LANGUAGES)
def test_negatives_are_near_misses(language):
    """Each negative is one edit away from a positive string, except (abab)*'s odd number of
    ``ab`` (a period near miss: (ab)^(2k+1) lies between (abab)^k and (abab)^(k+1))."""
    recogniser = INDEPENDENT_RECOGNISERS[language]
    generator = np.random.default_rng(3)
    for _ in range(40):
        negative = sample_negative(language, (2, 16), generator)
        assert not recogniser(negative)
        if language == "abab_star" and re.fullmatch(r"(?:ab)+", negative):
            assert (len(negative) // 2) % 2 == 1
            continue
        assert any(recogniser(neighbour) for neighbour in
                   _one_edit_neighbours(negative, ALPHABETS[language])), negative


@pytest.mark.parametrize("language", LANGUAGES)
def test_generators_are_deterministic_under_a_seed(language):
    task = formal_language_task(language)

    def draw(seed):
        return formal_language_batch(task, "bin1", 16, np.random.default_rng(seed),
                                     supervision="prefix")

    first, again, other = draw(5), draw(5), draw(6)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.targets, again.targets)
    assert first.strings == again.strings and first.strings != other.strings


def test_encoding_layout_end_token_answer_and_padding():
    batch = encode_strings("anbn", ["ab", "aabb", "abb"], supervision="end")
    assert batch.inputs.shape == (3, 5)
    assert FORMAL_VOCABULARY.decode(batch.inputs[0]) == "ab=__"
    assert batch.end_positions.tolist() == [2, 4, 3]
    assert batch.labels.tolist() == [True, True, False]
    assert batch.targets[0].tolist() == [-1, -1, ACCEPT_ID, -1, -1]
    assert batch.targets[2].tolist() == [-1, -1, -1, REJECT_ID, -1]
    assert int((batch.inputs == END_ID).sum()) == 3
    dense = encode_strings("parity", ["0110"], supervision="prefix")
    assert dense.targets[0].tolist() == [ACCEPT_ID, REJECT_ID, ACCEPT_ID, ACCEPT_ID, ACCEPT_ID]
    assert prefix_labels("parity", "0110") == [True, False, True, True]


def test_positive_strings_have_the_requested_length():
    generator = np.random.default_rng(0)
    for language in LANGUAGES:
        for length in (12, 36):
            string = sample_positive(language, length, generator)
            assert len(string) == length and INDEPENDENT_RECOGNISERS[language](string)


def test_tasks_default_to_a_bin1_twice_as_long():
    task = formal_language_task("parity", train_lengths=(1, 20))
    assert (task.lengths("train"), task.lengths("bin0"), task.lengths("bin1")) == \
        ((1, 20), (1, 20), (21, 40))
    assert task.sequence_length == 41


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda: formal_language_task("dyck3"), "language must be one of"),
    (lambda: formal_language_task("parity", train_lengths=(0, 5)), "train_lengths"),
    (lambda: formal_language_task("parity", train_lengths=(9, 5)), "train_lengths"),
    (lambda: formal_language_task("parity", train_lengths=(2, 9.5)), "train_lengths"),
    (lambda: formal_language_task("abab_star", train_lengths=(1, 3)), "train_lengths"),
    (lambda: formal_language_task("aa_star", train_lengths=(2, 2)), "train_lengths"),
    (lambda: formal_language_task("parity", train_lengths=(2, 8), test_lengths=(8, 16)),
     "test_lengths"),
    (lambda: formal_language_task("anbncn", train_lengths=(2, 8), test_lengths=(10, 11)),
     "test_lengths"),
    (lambda: sample_strings("parity", 0, (1, 4), generator=np.random.default_rng(0)), "count"),
    (lambda: sample_strings("parity", 4, (1, 4), generator=0), "generator"),
    (lambda: sample_positive("anbncn", 4, np.random.default_rng(0)), "length"),
    (lambda: is_member("anbn", "abc"), "string must use the anbn alphabet"),
    (lambda: encode_strings("parity", ["01", ""]), "strings must be non-empty"),
    (lambda: encode_strings("parity", ["01"], supervision="dense"), "supervision"),
    (lambda: encode_strings("parity", ["01"], length=2), "length"),
    (lambda: formal_language_task("parity").lengths("bin2"), "split"),
])
def test_formal_language_arguments_are_validated(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


class ParityOracle(nn.Module):
    """A hand-made "model" that computes parity exactly: the harness must score it 100 %."""

    vocab_size = len(FORMAL_VOCABULARY)

    def forward(self, idx, targets=None):
        ones = (idx == FORMAL_VOCABULARY.encode("1")[0]).long().cumsum(dim=1)
        logits = torch.zeros(*idx.shape, self.vocab_size)
        logits[..., ACCEPT_ID] = (ones % 2 == 0).float()
        logits[..., REJECT_ID] = (ones % 2 == 1).float()
        return logits, None


def test_harness_scores_an_exact_recogniser_at_100_and_a_constant_at_chance():
    task = formal_language_task("parity")
    assert evaluate_formal_language(ParityOracle(), task, "bin0") == 1.0
    assert evaluate_formal_language(ParityOracle(), task, "bin1") == 1.0

    class AlwaysAccept(ParityOracle):
        def forward(self, idx, targets=None):
            logits = torch.zeros(*idx.shape, self.vocab_size)
            logits[..., ACCEPT_ID] = 1.0
            return logits, None

    assert evaluate_formal_language(AlwaysAccept(), task, "bin1", examples=200) == 0.5


def test_harness_trains_a_course_model_deterministically():
    task = formal_language_task("anbn", train_lengths=(2, 8))

    def run():
        torch.manual_seed(0)
        model = TransformerLM(len(FORMAL_VOCABULARY), 16, 1, 2, context_length=17)
        result = train_formal_language(model, task, steps=4, batch_size=8, seed=3)
        return result, evaluate_formal_language(model, task, "bin1", examples=64)

    (first, accuracy), (again, accuracy_again) = run(), run()
    assert first.steps == 4 and len(first.losses) == 4 and first.seconds > 0
    assert first.losses == again.losses and accuracy == accuracy_again
    assert 0.0 <= accuracy <= 1.0
    short = TransformerLM(len(FORMAL_VOCABULARY), 16, 1, 2, context_length=16)
    with pytest.raises(ValueError, match="context_length >= 17"):
        train_formal_language(short, task, steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_formal_language(TransformerLM(13, 16, 1, 2, context_length=17), task, steps=0)
    with pytest.raises(ValueError, match="vocab_size"):
        evaluate_formal_language(TransformerLM(5, 16, 1, 2, context_length=17), task, "bin0")
