"""Formal-language recognition: the paper's Table 5 tasks, as accept/reject at an end token.

Behrouz et al. (arXiv 2512.24695) Table 5 reports the benchmark of Irie, Csordás and Schmidhuber
2023 ("Practical computational power of linear transformers and their recurrent and
self-referential extensions", EMNLP), which reuses the languages and length bins of Bhattamishra,
Ahuja and Goyal 2020 ("On the ability and limitations of Transformers to recognize formal
languages", EMNLP):

=============  ===========  ===================================================================
name           alphabet     the language (positive strings)
=============  ===========  ===================================================================
``parity``     ``01``       bit strings with an even number of 1s (Bhattamishra's Parity)
``aa_star``    ``a``        (aa)*: a's of even length
``abab_star``  ``ab``       (abab)*: repetitions of ``abab``
``anbn``       ``ab``       aⁿbⁿ, n ≥ 1
``anbncn``     ``abc``      aⁿbⁿcⁿ, n ≥ 1 (Bhattamishra's Counter-3)
``shuffle2``   ``()[]``     Shuffle-2: strings whose ``()`` letters form a Dyck-1 word and whose
                            ``[]`` letters form a Dyck-1 word, the two interleaved in any way
                            (the shuffle of two Dyck-1 languages, so ``([)]`` is *in* it, unlike
                            Dyck-2; Bhattamishra's ``ShuffleLanguage`` with 2 pairs)
=============  ===========  ===================================================================

**What this module does differently from those papers (so its numbers are not theirs).**
Bhattamishra et al. (and Irie et al. after them) train on *positive strings only* with a
*character-prediction* target: at every step the model predicts which characters may come next
(for Parity, (aa)*, (abab)*: whether the prefix so far is in the language), and a string counts
as correct only if every step is right, so chance is near 0 %. Here a model reads a string and
then an end token ``=``, and answers ``Y`` (accept) or ``N`` (reject) at that end token; the
data are **balanced** (half positives) and the negatives are **near misses** (one bit flipped,
one symbol changed or swapped, a count off by one or two, one bracket turned or retyped), so
**chance is 50 %**. ``supervision="prefix"`` additionally labels every prefix (is the string so
far in the language?), the dense signal of the papers' setup; accuracy is always measured on
the end decision.

Length bins, as in those papers: **Bin0** holds strings of the training lengths (default 2–24
characters; the papers use 1–50) drawn afresh, **Bin1** strings 2× longer (default 25–48; the
papers use 51–100). A model with learned absolute positions (``TransformerLM``) has never trained
the position embeddings of Bin1 — that is part of what Bin1 tests; HOPE has no positions.

Token layout of one example (``FORMAL_VOCABULARY``, 13 tokens)::

    s_1 s_2 … s_n  =  _ _ _          inputs  (B, T): string, end token, padding "_"
    -1  -1  … -1   Y  -1 -1 -1       targets (B, T): the answer at the end token, -1 elsewhere

so ``logits, loss = model(inputs, targets)`` trains any course model; padding comes after the
end token, so a causal model's answer never sees it.

Labels come from :func:`is_member` (automata and counters). The tests check them against
independent recognisers (regular expressions and a cancellation procedure) on many samples.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nlbook._checks import (
    check_int,
    check_memory,
    check_positive_int,
    check_scalar_in_range,
)
from nlbook.data import CharVocabulary

__all__ = [
    "ACCEPT_ID",
    "ALPHABETS",
    "END_ID",
    "FORMAL_VOCABULARY",
    "LANGUAGES",
    "LANGUAGE_ALIASES",
    "PAD_ID",
    "REJECT_ID",
    "SPLITS",
    "FormalBatch",
    "FormalLanguageTask",
    "FormalTrainingResult",
    "encode_strings",
    "evaluate_formal_language",
    "formal_language_batch",
    "formal_language_task",
    "is_member",
    "prefix_labels",
    "sample_negative",
    "sample_positive",
    "sample_strings",
    "train_formal_language",
]

#: The six languages of the paper's Table 5, in its column order.
LANGUAGES: tuple[str, ...] = ("parity", "aa_star", "abab_star", "anbn", "anbncn", "shuffle2")

#: Each language's alphabet (characters of the strings, not counting the special tokens).
ALPHABETS: dict[str, str] = {"parity": "01", "aa_star": "a", "abab_star": "ab", "anbn": "ab",
                             "anbncn": "abc", "shuffle2": "()[]"}

#: Padding ``_``, end ``=``, accept ``Y``, reject ``N``, then every alphabet's characters.
FORMAL_VOCABULARY = CharVocabulary("_=YN01abc()[]")
PAD_ID, END_ID, ACCEPT_ID, REJECT_ID = 0, 1, 2, 3

#: ``train`` and ``bin0`` draw from the training lengths (different seeds); ``bin1`` is longer.
SPLITS: tuple[str, ...] = ("train", "bin0", "bin1")

_MAX_ATTEMPTS = 1000


#: Other spellings accepted for the languages (the paper's and Bhattamishra et al.'s names).
LANGUAGE_ALIASES: dict[str, str] = {
    "(aa)*": "aa_star", "aa*": "aa_star", "(abab)*": "abab_star", "abab*": "abab_star",
    "a^nb^n": "anbn", "aⁿbⁿ": "anbn", "a^nb^nc^n": "anbncn", "aⁿbⁿcⁿ": "anbncn",
    "counter-3": "anbncn", "shuffle-2": "shuffle2", "shuffle_2": "shuffle2",
}


def _language(language: str) -> str:
    """The canonical name of ``language`` (one of :data:`LANGUAGES` or an alias), or raise."""
    if isinstance(language, str):
        key = language.strip().lower()
        key = LANGUAGE_ALIASES.get(key, key)
        if key in LANGUAGES:
            return key
    raise ValueError(f"language must be one of {LANGUAGES} (or an alias: "
                     f"{sorted(LANGUAGE_ALIASES)}), got {language!r}")


def _split(split: str) -> str:
    """``"train"``, ``"bin0"`` or ``"bin1"`` (any case, e.g. the papers' ``"Bin1"``), or raise."""
    if isinstance(split, str) and split.lower() in SPLITS:
        return split.lower()
    raise ValueError(f"split must be one of {SPLITS} (any case), got {split!r}")


def _check_string(language: str, string: str, name: str = "string") -> None:
    if not isinstance(string, str):
        raise ValueError(f"{name} must be a str, got {type(string).__name__}")
    alphabet = ALPHABETS[language]
    for char in string:
        if char not in alphabet:
            raise ValueError(f"{name} must use the {language} alphabet {alphabet!r}, "
                             f"got the character {char!r}")


def _check_generator(generator: np.random.Generator) -> None:
    if not isinstance(generator, np.random.Generator):
        raise ValueError("generator must be a numpy.random.Generator (numpy.random.default_rng"
                         f"(seed)), got {type(generator).__name__}")


# ---------------------------------------------------------------------------------------------
# Membership: finite automata for the regular languages, counters for the others
# ---------------------------------------------------------------------------------------------

# Deterministic automata: state -> {symbol: next state}; a missing entry is the dead state.
_AUTOMATA: dict[str, tuple[dict[int, dict[str, int]], set[int]]] = {
    "parity": ({0: {"0": 0, "1": 1}, 1: {"0": 1, "1": 0}}, {0}),
    "aa_star": ({0: {"a": 1}, 1: {"a": 0}}, {0}),
    "abab_star": ({0: {"a": 1}, 1: {"b": 2}, 2: {"a": 3}, 3: {"b": 0}}, {0}),
}


def _run_automaton(language: str, string: str) -> bool:
    transitions, accepting = _AUTOMATA[language]
    state = 0
    for char in string:
        state = transitions[state].get(char, -1)
        if state < 0:
            return False
    return state in accepting


def _blocks_in_order(string: str, letters: str) -> list[int] | None:
    """Lengths of the runs of ``letters[0]``, ``letters[1]``, … in that order, or None."""
    counts, index = [], 0
    for letter in letters:
        start = index
        while index < len(string) and string[index] == letter:
            index += 1
        counts.append(index - start)
    return counts if index == len(string) else None


def _is_shuffle2(string: str) -> bool:
    depth = {"(": 0, "[": 0}
    opener = {")": "(", "]": "["}
    for char in string:
        if char in depth:
            depth[char] += 1
        else:
            depth[opener[char]] -= 1
            if depth[opener[char]] < 0:
                return False
    return depth["("] == 0 and depth["["] == 0


def is_member(language: str, string: str) -> bool:
    """Whether ``string`` is in ``language`` (the labels every generator here uses).

    The empty string is in parity, (aa)*, (abab)* and Shuffle-2, and not in aⁿbⁿ or aⁿbⁿcⁿ
    (n ≥ 1). Raises ValueError for an unknown language or a character outside its alphabet.
    """
    language = _language(language)
    _check_string(language, string)
    if language in _AUTOMATA:
        return _run_automaton(language, string)
    if language in ("anbn", "anbncn"):
        counts = _blocks_in_order(string, ALPHABETS[language])
        return counts is not None and counts[0] >= 1 and len(set(counts)) == 1
    return _is_shuffle2(string)


def prefix_labels(language: str, string: str) -> list[bool]:
    """``[is_member(language, string[:t + 1]) for t in range(len(string))]``, in one pass."""
    language = _language(language)
    _check_string(language, string)
    labels = []
    if language in _AUTOMATA:
        transitions, accepting = _AUTOMATA[language]
        state = 0
        for char in string:
            state = transitions[state].get(char, -1) if state >= 0 else -1
            labels.append(state in accepting)
        return labels
    if language in ("anbn", "anbncn"):
        alphabet = ALPHABETS[language]
        counts, last, ordered = [0] * len(alphabet), 0, True
        for char in string:
            index = alphabet.index(char)
            ordered = ordered and index >= last
            last = index
            counts[index] += 1
            labels.append(ordered and counts[0] >= 1 and len(set(counts)) == 1)
        return labels
    depth, opener, never_negative = {"(": 0, "[": 0}, {")": "(", "]": "["}, True
    for char in string:
        if char in depth:
            depth[char] += 1
        else:
            depth[opener[char]] -= 1
            never_negative = never_negative and depth[opener[char]] >= 0
        labels.append(never_negative and depth["("] == 0 and depth["["] == 0)
    return labels


# ---------------------------------------------------------------------------------------------
# Positive strings of an exact length, near-miss negatives
# ---------------------------------------------------------------------------------------------


def _positive_length_ok(language: str, length: int) -> bool:
    if language == "parity":
        return length >= 1
    if language in ("aa_star", "anbn", "shuffle2"):
        return length >= 2 and length % 2 == 0
    if language == "abab_star":
        return length >= 4 and length % 4 == 0
    return length >= 3 and length % 3 == 0  # anbncn


def _dyck1(pairs: int, open_char: str, close_char: str, rng: np.random.Generator) -> str:
    """A random Dyck-1 word with ``pairs`` pairs: at each step open or close with probability
    1/2 when both keep the word completable (a simple walk, not uniform over Dyck words)."""
    out, depth, opened = [], 0, 0
    while opened < pairs or depth > 0:
        can_open, can_close = opened < pairs, depth > 0
        if can_open and (not can_close or rng.random() < 0.5):
            out.append(open_char)
            depth, opened = depth + 1, opened + 1
        else:
            out.append(close_char)
            depth -= 1
    return "".join(out)


def sample_positive(language: str, length: int, generator: np.random.Generator) -> str:
    """One random string of ``language`` with exactly ``length`` characters.

    Raises ValueError if the language has no string of that length (e.g. (abab)* needs a
    multiple of 4, aⁿbⁿcⁿ a positive multiple of 3).
    """
    language = _language(language)
    _check_generator(generator)
    check_int("length", length, low=1, high=MAX_STRING_LENGTH)
    if not _positive_length_ok(language, length):
        raise ValueError(f"length must be a length that {language} has positive strings of, "
                         f"got {length}")
    rng = generator
    if language == "parity":
        bits = rng.integers(0, 2, size=length)
        if bits.sum() % 2:
            bits[rng.integers(length)] ^= 1
        return "".join("01"[bit] for bit in bits)
    if language == "aa_star":
        return "a" * length
    if language == "abab_star":
        return "abab" * (length // 4)
    if language == "anbn":
        return "a" * (length // 2) + "b" * (length // 2)
    if language == "anbncn":
        return "a" * (length // 3) + "b" * (length // 3) + "c" * (length // 3)
    pairs = length // 2  # shuffle2: split the pairs between the two bracket types, interleave
    round_pairs = int(rng.integers(0, pairs + 1))
    rounds = list(_dyck1(round_pairs, "(", ")", rng))
    squares = list(_dyck1(pairs - round_pairs, "[", "]", rng))
    is_round = np.zeros(length, dtype=bool)
    is_round[rng.choice(length, size=2 * round_pairs, replace=False)] = True
    rounds.reverse()
    squares.reverse()
    return "".join(rounds.pop() if flag else squares.pop() for flag in is_round)


def _negative_candidate(language: str, length: int, rng: np.random.Generator) -> str:
    """A near miss of about ``length`` characters (maybe off the range, maybe a member: the
    caller checks both)."""
    alphabet = ALPHABETS[language]
    if language == "parity":
        bits = rng.integers(0, 2, size=length)
        if bits.sum() % 2 == 0:
            bits[rng.integers(length)] ^= 1  # one bit away from a positive string
        return "".join("01"[bit] for bit in bits)
    if language == "aa_star":
        return "a" * length  # the only near misses in a one-letter alphabet: odd lengths
    if language in ("anbn", "anbncn"):
        blocks = len(alphabet)
        n = max(1, round(length / blocks))
        counts = [n] * blocks
        kind = rng.integers(3)
        if kind == 0:  # one count off (aⁿbⁿ: by 1 or 2, aⁿbⁿcⁿ: by 1; one edit from a positive)
            offsets = [-2, -1, 1, 2] if blocks == 2 else [-1, 1]
            counts[rng.integers(blocks)] += int(rng.choice(offsets))
            return "".join(letter * count for letter, count in zip(alphabet, counts, strict=True))
        chars = list("".join(letter * n for letter in alphabet))
        if kind == 1:  # the right counts in the wrong order: swap across a block boundary
            boundary = int(rng.integers(1, blocks)) * n
            left = int(rng.integers(boundary - n, boundary))
            right = int(rng.integers(boundary, boundary + n))
            chars[left], chars[right] = chars[right], chars[left]
        else:  # one symbol replaced by another letter of the alphabet
            position = int(rng.integers(len(chars)))
            chars[position] = str(rng.choice([c for c in alphabet if c != chars[position]]))
        return "".join(chars)
    if language == "abab_star":
        kind = rng.integers(4)
        base = max(4, 4 * round(length / 4))
        chars = list("abab" * (base // 4))
        if kind == 0:  # an odd number of "ab": the period-4 count is off
            return "ab" * max(1, (length // 2) | 1)
        if kind == 1:  # one symbol flipped
            position = int(rng.integers(len(chars)))
            chars[position] = "b" if chars[position] == "a" else "a"
        elif kind == 2:  # two neighbours swapped
            position = int(rng.integers(len(chars) - 1))
            chars[position], chars[position + 1] = chars[position + 1], chars[position]
        else:  # one symbol added or removed
            if rng.random() < 0.5:
                del chars[int(rng.integers(len(chars)))]
            else:
                chars.insert(int(rng.integers(len(chars) + 1)), str(rng.choice(list("ab"))))
        return "".join(chars)
    # shuffle2: perturb a positive string in one place
    chars = list(sample_positive(language, max(2, length - length % 2), rng))
    kind = rng.integers(3)
    position = int(rng.integers(len(chars)))
    if kind == 0:  # a bracket turned round: ( <-> ), [ <-> ]
        chars[position] = {"(": ")", ")": "(", "[": "]", "]": "["}[chars[position]]
    elif kind == 1:  # a bracket retyped: ( <-> [, ) <-> ]
        chars[position] = {"(": "[", "[": "(", ")": "]", "]": ")"}[chars[position]]
    else:  # two neighbours swapped (breaks the string when a closer moves before its opener)
        position = min(position, len(chars) - 2)
        chars[position], chars[position + 1] = chars[position + 1], chars[position]
    return "".join(chars)


def _check_lengths(name: str, lengths: Sequence[int]) -> tuple[int, int]:
    if not isinstance(lengths, (tuple, list)) or len(lengths) != 2:
        raise ValueError(f"{name} must be a (shortest, longest) pair of ints, got {lengths!r}")
    low, high = lengths
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a (shortest, longest) pair of ints, got {lengths!r}")
    if not 1 <= low <= high:
        raise ValueError(f"{name} must satisfy 1 <= shortest <= longest, got {lengths!r}")
    if high > MAX_STRING_LENGTH:
        raise ValueError(f"{name} must stay within {MAX_STRING_LENGTH:,} characters (the tasks "
                         f"test lengths up to a few hundred), got {lengths!r}")
    return low, high


#: The longest string the samplers build: the experiments use lengths up to a few hundred;
#: a billion characters (a typo) would be a gigabyte string built character by character.
MAX_STRING_LENGTH = 1_000_000


def _positive_lengths(language: str, low: int, high: int) -> list[int]:
    return [length for length in range(low, high + 1) if _positive_length_ok(language, length)]


def sample_negative(language: str, lengths: Sequence[int], generator: np.random.Generator
                    ) -> str:
    """One near-miss string *not* in ``language``, with a length in ``lengths`` (inclusive).

    Near misses, not random strings: parity flips one bit of a positive string; (aa)* is an odd
    run of a's; (abab)* has an odd number of ``ab``, one symbol flipped, two neighbours swapped,
    or one symbol added or removed; aⁿbⁿ and aⁿbⁿcⁿ have one count off (by 1–2, resp. 1),
    two letters swapped across a block boundary, or one letter replaced; Shuffle-2 has one
    bracket turned round, retyped, or swapped with its neighbour. All but (abab)*'s odd number
    of ``ab`` are one edit (substitution, insertion, deletion, transposition) from a positive.
    """
    language = _language(language)
    _check_generator(generator)
    low, high = _check_lengths("lengths", lengths)
    check_memory("lengths", high, bytes_per_element=16, what="the string")
    for _ in range(_MAX_ATTEMPTS):
        length = int(generator.integers(low, high + 1))
        candidate = _negative_candidate(language, length, generator)
        if low <= len(candidate) <= high and not is_member(language, candidate):
            return candidate
    raise ValueError(f"lengths {lengths!r} admit no near-miss negative of {language} "
                     f"(widen the range)")


def sample_strings(language: str, count: int, lengths: Sequence[int], *,
                   generator: np.random.Generator) -> tuple[list[str], list[bool]]:
    """``count`` strings with lengths in ``lengths`` (inclusive), half of them in the language.

    Positives are drawn at a length uniform over the lengths the language has strings of; the
    order is shuffled. Returns (strings, labels) with labels[i] = is_member(language, strings[i]).
    Deterministic given the generator's state.

    Raises:
        ValueError: naming the argument, for an unknown language, a count < 1, a malformed
            length range, or a range holding no positive string of the language.
    """
    language = _language(language)
    check_positive_int("count", count)
    _check_generator(generator)
    low, high = _check_lengths("lengths", lengths)
    check_memory("count and lengths", count * high + high, bytes_per_element=16,
                 what="the strings")
    positive_lengths = _positive_lengths(language, low, high)
    if not positive_lengths:
        raise ValueError(f"lengths {tuple(lengths)} hold no string of {language} (e.g. (abab)* "
                         f"needs a multiple of 4, aⁿbⁿcⁿ a multiple of 3)")
    labels = [index < (count + 1) // 2 for index in range(count)]
    generator.shuffle(labels)
    strings = []
    for label in labels:
        if label:
            length = positive_lengths[int(generator.integers(len(positive_lengths)))]
            strings.append(sample_positive(language, length, generator))
        else:
            strings.append(sample_negative(language, (low, high), generator))
    return strings, [bool(label) for label in labels]


# ---------------------------------------------------------------------------------------------
# Tensors for a character model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormalBatch:
    """Strings encoded for a character model (see the module docstring for the layout).

    Attributes:
        inputs: int64 (B, T): string, end token ``=``, padding ``_``.
        targets: int64 (B, T): ``Y``/``N`` at the end token (and, with prefix supervision, the
            label of each prefix at each string position), -1 elsewhere.
        labels: bool (B,): whether each string is in the language.
        end_positions: int64 (B,): index of each end token (= the string's length).
        strings: the strings themselves.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    end_positions: torch.Tensor
    strings: tuple[str, ...]


_SUPERVISION = ("end", "prefix")


def encode_strings(language: str, strings: Sequence[str], *, supervision: str = "end",
                   length: int | None = None) -> FormalBatch:
    """Encode strings of ``language`` with their labels (from :func:`is_member`).

    Args:
        language: one of :data:`LANGUAGES`.
        strings: the strings (each non-empty, over the language's alphabet).
        supervision: ``"end"`` (answer only at the end token) or ``"prefix"`` (also label every
            prefix at its last character).
        length: pad every row to this T (≥ longest string + 1); default longest + 1.
    """
    language = _language(language)
    if supervision not in _SUPERVISION:
        raise ValueError(f"supervision must be one of {_SUPERVISION}, got {supervision!r}")
    if isinstance(strings, str) or not isinstance(strings, Sequence) or not strings:
        raise ValueError("strings must be a non-empty sequence of str")
    for index, string in enumerate(strings):
        _check_string(language, string, f"strings[{index}]")
        if not string:
            raise ValueError("strings must be non-empty (the empty string has no end to read)")
    longest = max(len(string) for string in strings) + 1
    if length is None:
        length = longest
    elif isinstance(length, bool) or not isinstance(length, int) or length < longest:
        raise ValueError(f"length must be an int >= longest string + 1 = {longest}, "
                         f"got {length!r}")
    check_memory("length", 2 * len(strings) * length, bytes_per_element=8)
    inputs = torch.full((len(strings), length), PAD_ID, dtype=torch.int64)
    targets = torch.full((len(strings), length), -1, dtype=torch.int64)
    labels = torch.zeros(len(strings), dtype=torch.bool)
    for row, string in enumerate(strings):
        inputs[row, :len(string)] = FORMAL_VOCABULARY.encode(string, name="strings")
        inputs[row, len(string)] = END_ID
        label = is_member(language, string)
        labels[row] = label
        targets[row, len(string)] = ACCEPT_ID if label else REJECT_ID
        if supervision == "prefix":
            prefix = torch.tensor(prefix_labels(language, string))
            targets[row, :len(string)] = torch.where(prefix, ACCEPT_ID, REJECT_ID)
    end_positions = torch.tensor([len(string) for string in strings], dtype=torch.int64)
    return FormalBatch(inputs, targets, labels, end_positions, tuple(strings))


@dataclass(frozen=True)
class FormalLanguageTask:
    """One language with its training lengths (Bin0) and its longer test lengths (Bin1).

    Build with :func:`formal_language_task` (validated). ``sequence_length`` is the longest T
    a batch of any split has (longest string + end token): a fixed-context model needs a
    ``context_length`` at least that long.
    """

    language: str
    train_lengths: tuple[int, int]
    test_lengths: tuple[int, int]

    def lengths(self, split: str) -> tuple[int, int]:
        """The (shortest, longest) string lengths of ``split`` (one of :data:`SPLITS`)."""
        return self.test_lengths if _split(split) == "bin1" else self.train_lengths

    @property
    def sequence_length(self) -> int:
        return max(self.train_lengths[1], self.test_lengths[1]) + 1


def formal_language_task(language: str, *, train_lengths: Sequence[int] = (2, 24),
                         test_lengths: Sequence[int] | None = None) -> FormalLanguageTask:
    """A validated :class:`FormalLanguageTask`.

    Args:
        language: one of :data:`LANGUAGES`.
        train_lengths: (shortest, longest) string lengths of training and Bin0, inclusive.
        test_lengths: (shortest, longest) of Bin1; default (longest + 1, 2 × longest), the
            papers' choice of a bin as wide again (they train on 1–50 and test Bin1 on 51–100).

    Raises:
        ValueError: naming the argument, if a range is malformed, holds no positive string of
            the language, or Bin1 is not longer than training (its shortest must exceed the
            training longest).
    """
    language = _language(language)
    train = _check_lengths("train_lengths", train_lengths)
    test = (train[1] + 1, 2 * train[1]) if test_lengths is None else \
        _check_lengths("test_lengths", test_lengths)
    if test[0] <= train[1]:
        raise ValueError(f"test_lengths must start after the longest training length "
                         f"{train[1]}, got {tuple(test)}")
    for name, (low, high) in (("train_lengths", train), ("test_lengths", test)):
        if not _positive_lengths(language, low, high):
            raise ValueError(f"{name} {(low, high)} hold no string of {language} (e.g. (abab)* "
                             f"needs a multiple of 4, aⁿbⁿcⁿ a multiple of 3)")
        try:  # and a near-miss negative (e.g. (aa)* needs an odd length in the range)
            sample_negative(language, (low, high), np.random.default_rng(0))
        except ValueError:
            raise ValueError(f"{name} {(low, high)} admit no near-miss negative of {language} "
                             f"(widen the range)") from None
    return FormalLanguageTask(language, train, test)


def _task(task: FormalLanguageTask | str) -> FormalLanguageTask:
    """A task, or the default task of a language name."""
    if isinstance(task, FormalLanguageTask):
        return task
    if isinstance(task, str):
        try:
            return formal_language_task(task)
        except ValueError as error:
            raise ValueError(f"task {task!r} is not a language name: {error}") from None
    raise ValueError(f"task must be a FormalLanguageTask or a language name, got "
                     f"{type(task).__name__}")


def formal_language_batch(task: FormalLanguageTask | str, split: str, batch_size: int,
                          generator: np.random.Generator, *, supervision: str = "end"
                          ) -> FormalBatch:
    """A balanced batch of ``split``'s lengths, padded to the batch's longest string + 1."""
    task = _task(task)
    check_positive_int("batch_size", batch_size)
    check_memory("batch_size", 2 * batch_size * task.sequence_length, bytes_per_element=8)
    strings, _ = sample_strings(task.language, batch_size, task.lengths(split),
                                generator=generator)
    return encode_strings(task.language, strings, supervision=supervision)


# ---------------------------------------------------------------------------------------------
# Training and evaluation harness
# ---------------------------------------------------------------------------------------------


@dataclass
class FormalTrainingResult:
    """What :func:`train_formal_language` did: the loss of every step, steps and seconds."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def _check_model(model: nn.Module, task: FormalLanguageTask) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    vocab_size = getattr(model, "vocab_size", None)
    if vocab_size is not None and vocab_size < len(FORMAL_VOCABULARY):
        raise ValueError(f"model must have vocab_size >= {len(FORMAL_VOCABULARY)} "
                         f"(len(FORMAL_VOCABULARY)), got {vocab_size}")
    context = getattr(model, "context_length", None)
    if not hasattr(model, "stream") and context is not None and context < task.sequence_length:
        raise ValueError(f"model has context_length {context}, shorter than the task's longest "
                         f"sequence {task.sequence_length} (longest string + end token): build "
                         f"it with context_length >= {task.sequence_length}")


def train_formal_language(model: nn.Module, task: FormalLanguageTask | str, *, steps: int,
                          batch_size: int = 32, learning_rate: float = 3e-3,
                          weight_decay: float = 0.0, seed: int = 0, supervision: str = "end",
                          grad_clip: float = 1.0) -> FormalTrainingResult:
    """Train ``model`` to accept/reject strings of ``task``'s training lengths.

    ``task``: a :class:`FormalLanguageTask`, or a language name for its default task
    (training lengths 2–24).

    Any model with the course's interface works: ``logits, loss = model(idx, targets)`` with
    logits (B, T, V), targets -1 ignored (``TransformerLM``, ``HopeLM``) and
    ``V >= len(FORMAL_VOCABULARY)``. Each step draws a fresh balanced batch from
    ``numpy.random.default_rng(seed)``; AdamW, constant learning rate, gradient clipping.
    The model's initialisation is the caller's (seed it when building the model).

    Returns:
        :class:`FormalTrainingResult` (per-step losses, steps, wall-clock seconds).
    """
    task = _task(task)
    _check_model(model, task)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_scalar_in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
    check_scalar_in_range("weight_decay", weight_decay, 0.0, 1.0)
    check_scalar_in_range("grad_clip", grad_clip, 0.0, float("inf"), low_inclusive=False)
    check_int("seed", seed, low=0)
    check_memory("batch_size", 64 * batch_size * task.sequence_length * 64,
                 what="the activations")
    if supervision not in _SUPERVISION:
        raise ValueError(f"supervision must be one of {_SUPERVISION}, got {supervision!r}")
    generator = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                  weight_decay=weight_decay)
    result = FormalTrainingResult()
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        batch = formal_language_batch(task, "train", batch_size, generator,
                                      supervision=supervision)
        _, loss = model(batch.inputs, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        result.losses.append(float(loss.detach()))
    result.steps = steps
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate_formal_language(model: nn.Module, task: FormalLanguageTask | str, split: str,
                             *, examples: int = 512, seed: int = 1, batch_size: int = 128
                             ) -> float:
    """Accuracy (0–1) of the accept/reject decision at the end token on ``split``
    (``"bin0"``: the training lengths, ``"bin1"``: the longer ones, ``"train"``; any case).

    ``examples`` balanced strings of the split's lengths are drawn from
    ``numpy.random.default_rng((seed, split index))``, so every model is scored on the same
    strings, drawn from another random stream than training's. The decision is
    ``Y`` if its logit beats ``N``'s (the other tokens are ignored). Chance is 0.5.
    """
    task = _task(task)
    _check_model(model, task)
    split = _split(split)
    check_positive_int("examples", examples)
    check_positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    generator = np.random.default_rng((seed, SPLITS.index(split)))
    strings, _ = sample_strings(task.language, examples, task.lengths(split), generator=generator)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, examples, batch_size):
            batch = encode_strings(task.language, strings[start:start + batch_size])
            logits, _ = model(batch.inputs)
            at_end = logits[torch.arange(len(batch.strings)), batch.end_positions]
            accept = at_end[:, ACCEPT_ID] > at_end[:, REJECT_ID]
            correct += int((accept == batch.labels).sum())
    finally:
        model.train(was_training)
    return correct / examples
