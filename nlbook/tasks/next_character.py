"""Formal languages as next-character-set prediction: the setting of the paper's Table 5.

Bhattamishra, Ahuja & Goyal 2020 (EMNLP; used by Irie, Csordás & Schmidhuber 2023, whose numbers
the Nested Learning paper's Table 5 reports): a model reads a **positive** string of the
language, and after every character predicts the **set** of characters that may come next,
with "the string may end here" as one more symbol. Targets are k-hot vectors over the
language's alphabet plus the end symbol ``=``; outputs are independent sigmoids, trained with
binary cross-entropy; a string counts as correct only if **every output at every position** is
right (sigmoid > 1/2 exactly where the target is 1), so chance is near 0 %.

For parity and (aa)* every character may always follow; what is predicted is the end symbol,
i.e. whether the prefix read so far is in the language, at every position: the model must
count parity (or length mod 2) along the whole string.

The data follow Bhattamishra et al.: 10,000 training strings of lengths 2-50, and two test
bins of 2,000 strings each, bin 0 of lengths 2-50 and bin 1 of lengths 51-100
(:data:`TABLE5_TRAIN_LENGTHS`, :data:`TABLE5_TEST_LENGTHS`). A length is drawn uniformly among
the lengths the language has positive strings of, then a string of that length
(:func:`nlbook.tasks.formal_languages.sample_positive`). Languages with one string per length
((aa)*, (abab)*, aⁿbⁿ, aⁿbⁿcⁿ) have only 12-25 distinct strings in a bin: a test bin holds
each distinct string once (:func:`prediction_strings` with ``distinct=True``), so its accuracy
is over that many strings and its interval says so.

Any course model works (``logits, _ = model(idx)`` with logits (B, T, V),
V >= ``len(FORMAL_VOCABULARY)``): the k outputs are read from the logits of the vocabulary ids
of the k symbols (:func:`output_ids`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    ArgumentTypeError,
    check_bool,
    check_instance,
    check_int,
    check_int_sequence,
    check_positive_int,
    check_scalar_in_range,
    check_tensor,
    describe,
)
from nlbook.tasks.formal_languages import (
    ALPHABETS,
    END_ID,
    FORMAL_VOCABULARY,
    PAD_ID,
    _check_string,
    _language,
    _positive_length_ok,
    sample_positive,
)

__all__ = [
    "END_SYMBOL",
    "TABLE5_TEST_LENGTHS",
    "TABLE5_TEST_STRINGS",
    "TABLE5_TRAIN_LENGTHS",
    "TABLE5_TRAIN_STRINGS",
    "PredictionBatch",
    "encode_prediction_batch",
    "next_character_sets",
    "output_ids",
    "output_symbols",
    "prediction_loss",
    "prediction_strings",
    "strings_correct",
    "train_next_character",
]

#: The symbol that stands for "the string may end here" (the end token of the vocabulary).
END_SYMBOL = "="
#: Bhattamishra et al.'s training lengths (and bin 0), inclusive.
TABLE5_TRAIN_LENGTHS = (2, 50)
#: Their bin 1 lengths, inclusive.
TABLE5_TEST_LENGTHS = (51, 100)
#: Training strings and strings per test bin in their setting.
TABLE5_TRAIN_STRINGS = 10_000
TABLE5_TEST_STRINGS = 2_000


def output_symbols(language: str) -> str:
    """The k predicted symbols of ``language``: its alphabet, then the end symbol ``=``."""
    return ALPHABETS[_language(language)] + END_SYMBOL


def output_ids(language: str) -> torch.Tensor:
    """(k,) int64: the vocabulary ids (:data:`FORMAL_VOCABULARY`) of :func:`output_symbols`."""
    symbols = output_symbols(language)
    ids = [END_ID if symbol == END_SYMBOL else int(FORMAL_VOCABULARY.encode(symbol)[0])
           for symbol in symbols]
    return torch.tensor(ids, dtype=torch.int64)


def next_character_sets(language: str, string: str) -> np.ndarray:
    """k-hot targets of a positive string: (n, k) bool, row t = what may follow string[:t+1].

    Column j < k - 1: the alphabet's j-th character can follow (the prefix stays a prefix of
    some string of the language); the last column: the prefix is itself in the language.
    Raises ValueError unless ``string`` is a non-empty prefix of the language.
    """
    language = _language(language)
    _check_string(language, string)
    if not string:
        raise ValueError("string must hold at least one character, got ''")
    alphabet = ALPHABETS[language]
    rows = np.zeros((len(string), len(alphabet) + 1), dtype=bool)
    counts = dict.fromkeys(alphabet, 0)
    for t, char in enumerate(string):
        if not _allowed(language, counts, t)[alphabet.index(char)]:
            raise ValueError(f"string must be a prefix of a string of {language}, got "
                             f"{string!r} (character {t} {char!r} cannot follow)")
        counts[char] += 1
        rows[t] = _allowed(language, counts, t + 1)
    return rows


def _allowed(language: str, counts: dict[str, int], length: int) -> list[bool]:
    """What may follow a valid prefix with these character counts and length: one flag per
    character of the alphabet, then "may end"."""
    if language == "parity":
        return [True, True, counts["1"] % 2 == 0]
    if language == "aa_star":
        return [True, length % 2 == 0]
    if language == "abab_star":
        return ["abab"[length % 4] == "a", "abab"[length % 4] == "b", length % 4 == 0]
    if language == "anbn":
        a, b = counts["a"], counts["b"]
        return [b == 0, 0 < a and b < a, a >= 1 and a == b]
    if language == "anbncn":
        a, b, c = counts["a"], counts["b"], counts["c"]
        return [b == 0 and c == 0, c == 0 and b < a, a >= 1 and b == a and c < b,
                a >= 1 and a == b == c]
    # shuffle2: each bracket type must stay balanced-or-open; ends when both are closed
    round_open = counts["("] - counts[")"]
    square_open = counts["["] - counts["]"]
    return [True, round_open > 0, True, square_open > 0, round_open == 0 and square_open == 0]


def prediction_strings(language: str, count: int, lengths: Sequence[int], seed: int, *,
                       distinct: bool = False) -> list[str]:
    """``count`` positive strings of ``language`` with lengths in ``lengths`` (inclusive).

    Each string: a length drawn uniformly among the lengths in range that the language has
    positive strings of, then a string of that length, from
    ``numpy.random.default_rng(seed)``. ``distinct``: keep each string once (a test bin; for
    languages with one string per length this is every string of the range).
    """
    language = _language(language)
    check_positive_int("count", count)
    check_int("seed", seed, low=0)
    check_bool("distinct", distinct)
    low, high = _check_lengths("lengths", lengths)
    valid = [n for n in range(low, high + 1) if _positive_length_ok(language, n)]
    if not valid:
        raise ValueError(f"lengths must contain a length that {language} has positive strings "
                         f"of, got {tuple(lengths)}")
    check_int("count", count, high=10_000_000)
    rng = np.random.default_rng(seed)
    strings = [sample_positive(language, int(valid[rng.integers(len(valid))]), rng)
               for _ in range(count)]
    return list(dict.fromkeys(strings)) if distinct else strings


def _check_lengths(name: str, lengths: Sequence[int]) -> tuple[int, int]:
    values = check_int_sequence(name, lengths, low=1)
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be (shortest, longest) with shortest <= longest, got "
                         f"{tuple(values)}")
    check_int(f"{name}[1]", values[1], high=100_000)
    return values[0], values[1]


@dataclass
class PredictionBatch:
    """Strings encoded for next-character-set prediction.

    Attributes:
        inputs: (B, T) int64 vocabulary ids, padded with ``PAD_ID`` after each string.
        targets: (B, T, k) float 0/1, the k-hot sets (:func:`next_character_sets`); 0 on padding.
        mask: (B, T) bool, True at the string's positions.
        output_ids: (k,) int64 vocabulary ids whose logits are the k outputs.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    output_ids: torch.Tensor


def encode_prediction_batch(language: str, strings: Sequence[str]) -> PredictionBatch:
    """Encode positive strings of ``language`` (:class:`PredictionBatch`)."""
    language = _language(language)
    if isinstance(strings, (str, bytes)) or not isinstance(strings, Sequence) or not strings:
        raise ArgumentTypeError(f"strings must be a non-empty list of str, got "
                                f"{describe(strings)}")
    sets = []
    for index, string in enumerate(strings):
        if not isinstance(string, str):
            raise ArgumentTypeError(f"strings[{index}] must be a str, got {describe(string)}")
        try:
            sets.append(next_character_sets(language, string))
        except ValueError as error:
            raise ValueError(f"strings[{index}]: {error}") from None
    length = max(len(string) for string in strings)
    k = len(output_symbols(language))
    inputs = torch.full((len(strings), length), PAD_ID, dtype=torch.int64)
    targets = torch.zeros(len(strings), length, k)
    mask = torch.zeros(len(strings), length, dtype=torch.bool)
    for row, (string, rows) in enumerate(zip(strings, sets, strict=True)):
        inputs[row, :len(string)] = torch.as_tensor(FORMAL_VOCABULARY.encode(string))
        targets[row, :len(string)] = torch.from_numpy(rows.astype(np.float32))
        mask[row, :len(string)] = True
    return PredictionBatch(inputs, targets, mask, output_ids(language))


def _check_strings(strings: Sequence[str], model: nn.Module) -> None:
    """A non-empty list of str, none longer than the model's ``context_length`` (if any)."""
    if isinstance(strings, (str, bytes)) or not isinstance(strings, Sequence) or not strings:
        raise ArgumentTypeError(f"strings must be a non-empty list of str, got "
                                f"{describe(strings)}")
    window = getattr(model, "context_length", None)
    for index, string in enumerate(strings):
        if not isinstance(string, str):
            raise ArgumentTypeError(f"strings[{index}] must be a str, got {describe(string)}")
        if isinstance(window, int) and len(string) > window:
            raise ValueError(f"strings[{index}] has {len(string)} characters, more than the "
                             f"model's context_length {window}")


def _check_batch(batch: PredictionBatch) -> None:
    check_instance("batch", batch, PredictionBatch)


def _outputs(model: nn.Module, batch: PredictionBatch) -> torch.Tensor:
    """The k output logits (B, T, k) of ``model`` on the batch."""
    logits, _ = model(batch.inputs)
    if logits.ndim != 3 or logits.shape[:2] != batch.inputs.shape \
            or logits.shape[-1] <= int(batch.output_ids.max()):
        raise ValueError(f"model must return logits (B, T, V) with V >= "
                         f"{int(batch.output_ids.max()) + 1}, got shape {tuple(logits.shape)}")
    return logits[..., batch.output_ids]


def prediction_loss(outputs: torch.Tensor, batch: PredictionBatch) -> torch.Tensor:
    """Binary cross-entropy of the sigmoid outputs (B, T, k) against the k-hot targets, mean
    over the string positions and the k symbols (padding not counted)."""
    _check_batch(batch)
    check_tensor("outputs", outputs, ndim=3, layout="(B, T, k)", dtype="float")
    if outputs.shape != batch.targets.shape:
        raise ValueError(f"outputs must have the targets' shape {tuple(batch.targets.shape)}, "
                         f"got {tuple(outputs.shape)}")
    losses = F.binary_cross_entropy_with_logits(outputs, batch.targets.to(outputs.dtype),
                                                reduction="none")
    weights = batch.mask[..., None].to(losses.dtype)
    return (losses * weights).sum() / (weights.sum() * outputs.shape[-1])


@torch.no_grad()
def strings_correct(model: nn.Module, language: str, strings: Sequence[str], *,
                    batch_size: int = 250) -> int:
    """How many of ``strings`` the model gets entirely right: at every position every output's
    sigmoid is above 1/2 exactly where the target is 1. Strings are scored in batches of
    similar length (sorted), in eval mode."""
    check_instance("model", model, nn.Module)
    check_positive_int("batch_size", batch_size)
    language = _language(language)
    _check_strings(strings, model)
    was_training = model.training
    model.eval()
    try:
        ordered = sorted(strings, key=len)
        correct = 0
        for start in range(0, len(ordered), batch_size):
            batch = encode_prediction_batch(language, ordered[start:start + batch_size])
            predicted = _outputs(model, batch) > 0
            right = (predicted == (batch.targets > 0.5)).all(dim=-1) | ~batch.mask
            correct += int(right.all(dim=-1).sum())
    finally:
        model.train(was_training)
    return correct


def train_next_character(model: nn.Module, language: str, strings: Sequence[str], *,
                         steps: int, batch_size: int = 32, learning_rate: float = 3e-3,
                         seed: int = 0, grad_clip: float = 1.0) -> list[float]:
    """Train ``model`` on ``strings`` (positive strings of ``language``): ``steps`` AdamW steps
    (no weight decay, constant rate after 20 warm-up steps, gradients clipped at
    ``grad_clip``), each on ``batch_size`` strings drawn with replacement by
    ``numpy.random.default_rng(seed)``. Returns the loss of every step."""
    from nlbook.train import build_optimizer

    check_instance("model", model, nn.Module)
    language = _language(language)
    _check_strings(strings, model)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_scalar_in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
    check_int("seed", seed, low=0)
    check_scalar_in_range("grad_clip", grad_clip, 0.0, math.inf, low_inclusive=False)
    optimizer = build_optimizer("adamw", model, learning_rate=learning_rate, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    model.train()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = group["peak_lr"] * min(1.0, (step + 1) / 20)
        chosen = [strings[int(i)] for i in rng.integers(len(strings), size=batch_size)]
        batch = encode_prediction_batch(language, chosen)
        loss = prediction_loss(_outputs(model, batch), batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss is {value} at step {step + 1}; try a "
                                     f"smaller learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(value)
    return losses
