"""Recall across a gap: facts planted in Shakespeare, queried later, scored on a trained model.

A *fact* is a line ``the key of Bakel is qorv.`` planted in Tiny Shakespeare text; after a gap
of ``G`` characters of Shakespeare the prompt asks ``the key of Bakel is `` and the model must
continue with the answer ``qorv``. Names are made up (a capital and four letters, consonant-vowel
alternating) and answers are ``answer_length`` letters drawn uniformly and independently from
``a``–``z``, so **without the fact no model can do better than chance: 1/26 per character**,
whatever it learned from Shakespeare (the answer is independent of everything else in the prompt).
Every character used is in Tiny Shakespeare's 65-character vocabulary (which has no digits but
``3``, hence letters instead of a numeric passkey).

Layout of one prompt (``gap`` counts the characters between the end of the facts and the start
of the query; the filler is Shakespeare cut at a line start and ending in a newline)::

    <lead: Shakespeare>the key of Bakel is qorv.\\n<gap: Shakespeare>\\nthe key of Bakel is |qorv

``facts > 1`` plants several facts in a row (distinct names, independent answers) and queries one
of them at random: multi-key recall with distractors. Controls: ``control="removed"`` drops the
facts, ``control="replaced"`` gives the queried name another independent answer; both must score
at chance (tested with a copying oracle that scores 100 % when the fact is there).

Two ways to read a long prompt (:func:`recall_accuracy`):

- ``mode="stream"`` (a model with ``stream(idx, state) -> (logits, state)``, e.g. ``HopeLM``):
  the whole prompt is read as a stream with carried state, chunk by chunk (exact for HOPE), so
  any gap is in reach of its memories — whether they *keep* the fact is what is measured;
- ``mode="window"`` (a fixed-context model such as ``TransformerLM``): each answer character is
  predicted from the last ``window`` characters only (its ``context_length``). **Once the fact
  lies outside that window the model cannot see it, and it scores at chance by construction**;
  :attr:`RecallResult.fact_in_window` says for which gaps the fact was visible.

A model trained only on Shakespeare never learned to copy a planted key, so the module also
makes training data in which in-context recall is learnable: :func:`recall_training_batch`
(windows holding a fact and its query, for ordinary window training) and
:func:`recall_training_text` (a long Shakespeare text with facts and queries planted at long
gaps, for stream training or ``python -m nlbook.train --data``).

:func:`mqar_batch` is the token-level multi-query associative recall task (MQAR, Arora et al.
2023, "Zoology"): key-value pairs, then every key again as a query whose target is its value.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nlbook._checks import (
    check_bool,
    check_instance,
    check_memory,
    check_numpy_generator,
    check_positive_int,
    check_scalar_in_range,
    check_str,
)
from nlbook.data import TRAIN_FRACTION, CharVocabulary, load_tiny_shakespeare

__all__ = [
    "ANSWER_ALPHABET",
    "CONTROLS",
    "RecallPrompt",
    "RecallResult",
    "fact_line",
    "induction_guesses",
    "masked_accuracy",
    "mqar_batch",
    "query_text",
    "random_answer",
    "random_name",
    "recall_accuracy",
    "recall_prompt",
    "recall_training_batch",
    "recall_training_text",
    "shakespeare_filler",
]

#: Answers are drawn uniformly from these 26 letters: chance is 1/26 per character.
ANSWER_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
#: ``None`` (the fact is there), ``"removed"`` (no fact), ``"replaced"`` (another answer).
CONTROLS: tuple[str | None, ...] = (None, "removed", "replaced")

_NAME_CONSONANTS = "bdfgklmnprstvz"
_NAME_VOWELS = "aeiou"
_NAME_LENGTH = 5
_TEMPLATE_CHARACTERS = "the key of is.\n"
_DISTINCT_NAMES = len(_NAME_CONSONANTS) ** 3 * len(_NAME_VOWELS) ** 2


def query_text(name: str) -> str:
    """``"the key of {name} is "``: what the prompt ends with, the answer comes next."""
    check_str("name", name)
    return f"the key of {name} is "


def fact_line(name: str, answer: str) -> str:
    """``"the key of {name} is {answer}.\\n"``: one planted fact."""
    check_str("answer", answer)
    return f"{query_text(name)}{answer}.\n"


def random_name(generator: np.random.Generator) -> str:
    """A made-up capitalised name of 5 letters, consonant-vowel alternating (e.g. ``Bakel``)."""
    check_numpy_generator("generator", generator)
    letters = [str(generator.choice(list(_NAME_CONSONANTS if index % 2 == 0 else _NAME_VOWELS)))
               for index in range(_NAME_LENGTH)]
    return "".join(letters).capitalize()


def random_answer(length: int, generator: np.random.Generator) -> str:
    """``length`` letters drawn uniformly and independently from :data:`ANSWER_ALPHABET`."""
    check_positive_int("answer_length", length)
    check_numpy_generator("generator", generator)
    check_memory("answer_length", length, bytes_per_element=16, what="the answer")
    return "".join(ANSWER_ALPHABET[i] for i in generator.integers(0, 26, size=length))


@functools.lru_cache(maxsize=4)
def _line_starts(text: str) -> np.ndarray:
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.concatenate([[0], np.flatnonzero(codes == ord("\n")) + 1])


def shakespeare_filler(length: int, text: str, generator: np.random.Generator) -> str:
    """Exactly ``length`` characters of ``text`` from a random line start, ending in a newline
    (the last character is replaced by one if needed); ``length = 0`` gives ``""``."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a non-negative int, got {length!r}")
    check_str("text", text)
    check_numpy_generator("generator", generator)
    if length == 0:
        return ""
    if len(text) < length + 1:
        raise ValueError(f"text (the filler_text) has {len(text)} characters, fewer than a "
                         f"filler of length {length} needs")
    starts = _line_starts(text)
    starts = starts[starts <= len(text) - length]
    start = int(starts[generator.integers(len(starts))])
    return text[start:start + length - 1] + "\n"


def _validation_text() -> str:
    text = load_tiny_shakespeare()
    return text[int(TRAIN_FRACTION * len(text)):]


def _training_text() -> str:
    text = load_tiny_shakespeare()
    return text[:int(TRAIN_FRACTION * len(text))]


def _check_vocabulary(vocabulary: CharVocabulary) -> None:
    if not isinstance(vocabulary, CharVocabulary):
        raise ValueError(f"vocabulary must be an nlbook.data.CharVocabulary, got "
                         f"{type(vocabulary).__name__}")
    needed = set(ANSWER_ALPHABET + _TEMPLATE_CHARACTERS + _NAME_CONSONANTS.upper())
    missing = sorted(needed - set(vocabulary.chars))
    if missing:
        raise ValueError(f"vocabulary must contain the letters a-z, capitals and ' .\\n' of the "
                         f"facts; it lacks {''.join(missing)!r}")


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# One prompt
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecallPrompt:
    """One recall question.

    Attributes:
        text: what the model reads (lead, facts, gap, query), ending with ``"... is "``.
        answer: what must follow (``answer_length`` letters).
        name: the queried name.
        fact_start: index in ``text`` of the queried fact's line (None when removed).
        answer_distance: characters from the fact's answer to the answer's place (``len(text)``
            minus the index of the fact's answer); None when removed.
    """

    text: str
    answer: str
    name: str
    fact_start: int | None
    answer_distance: int | None


def recall_prompt(gap: int, *, generator: np.random.Generator, filler_text: str | None = None,
                  lead: int = 64, answer_length: int = 4, facts: int = 1,
                  control: str | None = None) -> RecallPrompt:
    """A prompt whose queried fact ends ``gap`` characters before the query starts.

    Args:
        gap: characters of Shakespeare between the facts and the query (≥ 0).
        generator: numpy Generator (the only source of randomness).
        filler_text: where lead and gap come from (default: Tiny Shakespeare's validation
            split, text a model trained on the training split has not seen).
        lead: characters of Shakespeare before the facts (≥ 0).
        answer_length: letters per answer.
        facts: how many facts are planted in a row; one of them is queried.
        control: one of :data:`CONTROLS`.
    """
    _check_int("gap", gap, 0)
    _check_int("lead", lead, 0)
    check_positive_int("answer_length", answer_length)
    check_positive_int("facts", facts)
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
    if not isinstance(generator, np.random.Generator):
        raise ValueError(f"generator must be a numpy.random.Generator, got "
                         f"{type(generator).__name__}")
    check_str("filler_text", filler_text, allow_none=True)
    check_memory("answer_length", answer_length, bytes_per_element=16, what="the answer")
    if facts > _DISTINCT_NAMES:
        raise ValueError(f"facts must be at most {_DISTINCT_NAMES} (the distinct made-up names), "
                         f"got {facts}")
    filler_text = _validation_text() if filler_text is None else filler_text
    for name, value in (("lead", lead), ("gap", gap)):
        if value and len(filler_text) < value + 1:
            raise ValueError(f"{name} = {value} needs a filler_text of more than {value} "
                             f"characters, got {len(filler_text)}")
    names: list[str] = []
    while len(names) < facts:
        name = random_name(generator)
        if name not in names:
            names.append(name)
    answers = [random_answer(answer_length, generator) for _ in names]
    queried = int(generator.integers(facts))
    lead_text = shakespeare_filler(lead, filler_text, generator)
    gap_text = shakespeare_filler(gap, filler_text, generator)
    if control == "replaced":
        planted = list(answers)
        planted[queried] = random_answer(answer_length, generator)
    else:
        planted = answers
    lines = [fact_line(name, answer) for name, answer in zip(names, planted, strict=True)]
    block = "" if control == "removed" else "".join(lines)
    text = lead_text + block + gap_text + query_text(names[queried])
    if control == "removed":
        fact_start = distance = None
    else:
        fact_start = len(lead_text) + sum(len(line) for line in lines[:queried])
        distance = len(text) - (fact_start + len(query_text(names[queried])))
    return RecallPrompt(text, answers[queried], names[queried], fact_start, distance)


# ---------------------------------------------------------------------------------------------
# Scoring a model at each gap
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecallResult:
    """Recall of a model at each gap (all dicts are keyed by gap).

    Attributes:
        accuracy: fraction of answer characters the model's greedy (argmax) prediction gets
            right, teacher-forced (the earlier answer characters are given).
        exact_match: fraction of prompts whose whole answer greedy decoding reproduces.
        log_likelihood: mean log-probability of an answer character (nats; chance
            −ln 26 = −3.26 for a model spreading its mass over the 26 letters).
        chance: 1/26, the expected ``accuracy`` of any model that cannot see the fact.
        mode: ``"stream"`` or ``"window"``; window: the window of ``"window"`` mode.
        fact_in_window: in window mode, whether the queried fact's line lay inside the window
            of the first answer prediction (False: unreachable by construction); None in stream
            mode or for the removed control.
        answer_distance: characters between the fact's answer and the answer's place.
    """

    gaps: tuple[int, ...]
    accuracy: dict[int, float]
    exact_match: dict[int, float]
    log_likelihood: dict[int, float]
    chance: float
    mode: str
    window: int | None
    fact_in_window: dict[int, bool | None]
    answer_distance: dict[int, int | None]


def _answer_logits_stream(model: nn.Module, ids: torch.Tensor, first: int, chunk_length: int
                          ) -> torch.Tensor:
    """Logits (B, L, V) at input positions first.. of ids (B, N), read as one stream."""
    state, kept = None, []
    for start in range(0, ids.shape[1], chunk_length):
        chunk = ids[:, start:start + chunk_length]
        logits, state = model.stream(chunk, state)
        low = max(first, start)
        if low < start + chunk.shape[1]:
            kept.append(logits[:, low - start:])
    return torch.cat(kept, dim=1)


def _answer_logits_window(model: nn.Module, ids: torch.Tensor, first: int, window: int
                          ) -> torch.Tensor:
    """Logits (B, L, V): position p predicted from ids[:, p - window + 1 : p + 1] only."""
    out = []
    for position in range(first, ids.shape[1]):
        context = ids[:, max(0, position - window + 1):position + 1]
        logits, _ = model(context)
        out.append(logits[:, -1])
    return torch.stack(out, dim=1)


@torch.no_grad()
def recall_accuracy(model: nn.Module, vocabulary: CharVocabulary, *, gaps: Sequence[int],
                    trials: int = 32, seed: int = 0, lead: int = 64, answer_length: int = 4,
                    facts: int = 1, control: str | None = None, filler_text: str | None = None,
                    mode: str | None = None, window: int | None = None,
                    chunk_length: int = 256) -> RecallResult:
    """Score a trained character model's recall of a planted fact at each gap.

    Args:
        model: ``logits, loss = model(idx)`` with logits (B, T, V) over ``vocabulary``.
        vocabulary: the model's :class:`~nlbook.data.CharVocabulary` (must hold a-z, the
            capitals of the names and ``' .\\n'``; Tiny Shakespeare's does).
        gaps: characters between the facts and the query, e.g. ``(32, 64, 128, 256, 512, 1024)``.
        trials: prompts per gap (the same prompts for every model under the same seed).
        seed: seeds ``numpy.random.default_rng((seed, gap))``.
        lead, answer_length, facts, control, filler_text: as :func:`recall_prompt`.
        mode: ``"stream"`` (needs ``model.stream``) or ``"window"``; default: ``"stream"`` when
            the model has ``stream``, else ``"window"``.
        window: context of ``"window"`` mode; default ``model.context_length``.
        chunk_length: characters per ``stream`` call (bounds memory; HOPE is exact for any).

    Returns:
        :class:`RecallResult`; ``result.accuracy[gap]`` is the per-gap accuracy.
    """
    _check_vocabulary(vocabulary)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model_vocab = getattr(model, "vocab_size", None)
    if model_vocab is not None and model_vocab != len(vocabulary):
        raise ValueError(f"model has vocab_size {model_vocab}, but vocabulary has "
                         f"{len(vocabulary)} characters: pass the model's own vocabulary")
    if isinstance(gaps, (str, bytes)) or not isinstance(gaps, Sequence) or not gaps:
        raise ValueError(f"gaps must be a non-empty sequence of ints >= 0, got {gaps!r}")
    for gap in gaps:
        _check_int("gaps", gap, 0)
    check_positive_int("trials", trials)
    check_positive_int("chunk_length", chunk_length)
    _check_int("seed", seed, 0)
    if mode is None:
        mode = "stream" if hasattr(model, "stream") else "window"
    if mode not in ("stream", "window"):
        raise ValueError(f"mode must be 'stream', 'window' or None, got {mode!r}")
    if mode == "stream" and not hasattr(model, "stream"):
        raise ValueError("mode='stream' needs a model with a stream(idx, state) method")
    check_str("filler_text", filler_text, allow_none=True)
    if mode == "window":
        window = getattr(model, "context_length", None) if window is None else window
        if window is None:
            raise ValueError("mode='window' needs window=... or a model with context_length")
        check_positive_int("window", window)
        context = getattr(model, "context_length", None)
        if context is not None and not hasattr(model, "stream") and window > context:
            raise ValueError(f"window must be at most the model's context_length {context}, "
                             f"got {window}")
    else:
        window = None
    filler_text = _validation_text() if filler_text is None else filler_text

    accuracy, exact, likelihood, visible, distances = {}, {}, {}, {}, {}
    was_training = model.training
    model.eval()
    try:
        for gap in gaps:
            generator = np.random.default_rng((seed, gap))
            prompts = [recall_prompt(gap, generator=generator, filler_text=filler_text,
                                     lead=lead, answer_length=answer_length, facts=facts,
                                     control=control) for _ in range(trials)]
            full = torch.stack([vocabulary.encode(p.text + p.answer, name="prompt")
                                for p in prompts])
            ids, targets = full[:, :-1], full[:, -answer_length:]
            first = len(prompts[0].text) - 1
            if mode == "stream":
                logits = _answer_logits_stream(model, ids, first, chunk_length)
            else:
                logits = _answer_logits_window(model, ids, first, window)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            right = log_probs.argmax(dim=-1) == targets
            accuracy[gap] = float(right.float().mean())
            exact[gap] = float(right.all(dim=1).float().mean())
            likelihood[gap] = float(log_probs.gather(-1, targets[..., None]).mean())
            distances[gap] = prompts[0].answer_distance
            if mode == "window" and prompts[0].fact_start is not None:
                visible[gap] = all(p.fact_start >= first - window + 1 for p in prompts)
            else:
                visible[gap] = None
    finally:
        model.train(was_training)
    return RecallResult(tuple(gaps), accuracy, exact, likelihood, 1 / len(ANSWER_ALPHABET),
                        mode, window, visible, distances)


# ---------------------------------------------------------------------------------------------
# Training data in which in-context recall is learnable
# ---------------------------------------------------------------------------------------------


def _check_gap_range(gaps: Sequence[int]) -> tuple[int, int]:
    if not isinstance(gaps, (tuple, list)) or len(gaps) != 2:
        raise ValueError(f"gaps must be a (shortest, longest) pair of ints, got {gaps!r}")
    low, high = gaps
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"gaps must be a (shortest, longest) pair of ints, got {gaps!r}")
    if not 0 <= low <= high:
        raise ValueError(f"gaps must satisfy 0 <= shortest <= longest, got {gaps!r}")
    return low, high


def _torch_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy Generator seeded from one draw of ``generator`` (so a torch.Generator drives
    everything and saving its state reproduces the batch)."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    return np.random.default_rng(seed)


def recall_training_batch(vocabulary: CharVocabulary, batch_size: int, context_length: int,
                          generator: torch.Generator, *, gaps: Sequence[int] = (0, 32),
                          filler_text: str | None = None, answer_length: int = 4,
                          facts: int = 1, answer_only: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of Shakespeare, each holding planted facts and one query with its answer.

    Row layout (``context_length + 1`` characters, then split into inputs and targets like
    :func:`nlbook.data.random_batch`): Shakespeare, ``facts`` fact lines, a gap of
    Shakespeare drawn uniformly from ``gaps`` (clipped so that everything fits), the query and
    its answer and ``.\\n``, Shakespeare to the end. The filler does not start at line starts
    (any window of the training text).

    Args:
        vocabulary: the model's vocabulary.
        batch_size, context_length: B and T.
        generator: a CPU torch.Generator (the only source of randomness).
        gaps: (shortest, longest) gap in characters.
        filler_text: default Tiny Shakespeare's training split.
        answer_only: targets −1 except at the answer characters (else every next character).

    Returns:
        inputs, targets: int64 (B, T).
    """
    _check_vocabulary(vocabulary)
    check_positive_int("batch_size", batch_size)
    check_positive_int("context_length", context_length)
    check_positive_int("answer_length", answer_length)
    check_positive_int("facts", facts)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    low, high = _check_gap_range(gaps)
    check_bool("answer_only", answer_only)
    check_str("filler_text", filler_text, allow_none=True)
    line = len(fact_line("N" * _NAME_LENGTH, "a")) - 1 + answer_length  # a fact or query line
    fixed = (facts + 1) * line
    room = context_length + 1 - fixed
    if room < low:
        raise ValueError(f"context_length {context_length} cannot hold {facts} fact(s) "
                         f"(facts) with answers of answer_length {answer_length}, a gap of "
                         f"{low} and the query: it needs at least {fixed + low - 1}")
    check_memory("batch_size and context_length", 4 * batch_size * (context_length + 1),
                 bytes_per_element=8)
    filler_text = _training_text() if filler_text is None else filler_text
    if len(filler_text) < room + 1:
        raise ValueError(f"filler_text has {len(filler_text)} characters, fewer than a window "
                         f"of context_length {context_length} needs ({room + 1})")
    rng = _torch_rng(generator)
    rows_inputs, rows_targets = [], []
    for _ in range(batch_size):
        gap = int(rng.integers(low, min(high, room) + 1))
        before = int(rng.integers(0, room - gap + 1))
        after = room - gap - before
        prompt = recall_prompt(gap, generator=rng, filler_text=filler_text, lead=0,
                               answer_length=answer_length, facts=facts)

        def piece(length: int) -> str:
            start = int(rng.integers(0, len(filler_text) - length + 1))
            return filler_text[start:start + length]

        query_start = len(prompt.text)
        text = piece(before) + prompt.text + prompt.answer + ".\n" + piece(after)
        ids = vocabulary.encode(text, name="filler_text")
        rows_inputs.append(ids[:-1])
        target = ids[1:].clone()
        if answer_only:
            keep = torch.zeros_like(target, dtype=torch.bool)
            first = before + query_start - 1
            keep[first:first + answer_length] = True
            target[~keep] = -1
        rows_targets.append(target)
    return torch.stack(rows_inputs), torch.stack(rows_targets)


def recall_training_text(text: str | None = None, *, gaps: Sequence[int] = (64, 1024),
                         spacing: int = 512, answer_length: int = 4, seed: int = 0) -> str:
    """A long text with facts and their queries planted at long gaps (for stream training).

    Walks through ``text`` line by line: after about ``spacing`` characters it plants a fact
    line, and once at least a gap drawn uniformly from ``gaps`` has passed (to the next line
    start) it plants the query line with its answer, then the next fact after another
    ``spacing``. Every original line is kept, in order. A model trained on it with the
    next-character loss learns that a query's continuation can be copied from earlier text:
    the only learnable signal at the answer, since answers are random.

    Args:
        text: default Tiny Shakespeare's training split (use its validation split, or
            :func:`recall_accuracy`, to test).
        gaps: (shortest, longest) characters between a fact and its query.
        spacing: characters between a query and the next fact.
        seed: seeds ``numpy.random.default_rng(seed)``.
    """
    low, high = _check_gap_range(gaps)
    _check_int("spacing", spacing, 0)
    check_positive_int("answer_length", answer_length)
    check_memory("answer_length", answer_length, bytes_per_element=16, what="the answers")
    _check_int("seed", seed, 0)
    text = _training_text() if text is None else text
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    pending: tuple[str, str] | None = None  # (name, answer) waiting for its query
    until = spacing  # characters left before the next event
    for line in text.splitlines(keepends=True):
        out.append(line)
        until -= len(line)
        if until > 0:
            continue
        if pending is None:
            name, answer = random_name(rng), random_answer(answer_length, rng)
            out.append(fact_line(name, answer))
            pending = (name, answer)
            until = int(rng.integers(low, high + 1))
        else:
            out.append(fact_line(*pending))
            pending = None
            until = spacing
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# MQAR: multi-query associative recall on abstract tokens
# ---------------------------------------------------------------------------------------------


def mqar_batch(batch_size: int, *, vocab_size: int, sequence_length: int, kv_pairs: int,
               generator: torch.Generator, power_a: float | None = None,
               random_non_queries: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-query associative recall (after Arora et al. 2023, "Zoology"), token level.

    Each row: ``kv_pairs`` pairs ``k_1 v_1 … k_n v_n`` (distinct keys from [1, V/2), distinct
    values from [V/2, V)), then blanks (token 0) in which every key appears once more, as a
    query (so in random order). The target at a query's position is its value; every other
    target is −1. The value is *not* written after the query, so later queries cannot copy it
    from there. A model that answers with one of the n values present, without binding it to
    its key, scores 1/n ("in-context chance").

    Zoology's two options that change what is learned:

    - ``power_a``: None (default) puts the queries at uniformly random positions after the
      pairs. A number a in (0, 1] draws them as Zoology does: the query region holds
      (T − 2n) // 2 slots of two tokens, and slot i (0-based) is picked with probability
      ∝ a·(i + 1)^(a − 1), n distinct slots per row, the query on the slot's first token.
      With Zoology's a = 0.01 most queries come soon after the pairs (short gaps are common,
      long gaps rare).
    - ``random_non_queries``: fill every blank with a token drawn uniformly from [0, V)
      (Zoology's filler: distractors that may repeat a key or a value but are never scored)
      instead of the blank token 0.

    Args:
        batch_size: B.
        vocab_size: V (even split: keys below V/2, values from V/2).
        sequence_length: T ≥ 3 × kv_pairs (pairs, then room for the queries; with
            ``power_a``, T ≥ 4 × kv_pairs: one two-token slot per query).
        kv_pairs: n.
        generator: a CPU torch.Generator (every random draw of the batch).
        power_a: None, or Zoology's power-law exponent a in (0, 1].
        random_non_queries: random filler instead of blanks.

    Returns:
        inputs, targets: int64 (B, T).
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("vocab_size", vocab_size)
    check_positive_int("sequence_length", sequence_length)
    check_positive_int("kv_pairs", kv_pairs)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if power_a is not None:
        check_scalar_in_range("power_a", power_a, 0.0, 1.0, low_inclusive=False)
    check_bool("random_non_queries", random_non_queries)
    check_memory("batch_size, sequence_length and vocab_size",
                 2 * batch_size * sequence_length + 2 * vocab_size, bytes_per_element=8)
    half = vocab_size // 2
    if kv_pairs > half - 1 or kv_pairs > vocab_size - half:
        raise ValueError(f"kv_pairs must be at most {min(half - 1, vocab_size - half)} for "
                         f"vocab_size {vocab_size} (distinct keys in [1, {half}), values in "
                         f"[{half}, {vocab_size})), got {kv_pairs}")
    needed = (4 if power_a is not None else 3) * kv_pairs
    if sequence_length < needed:
        raise ValueError(f"sequence_length must be >= {needed} (= {needed // kv_pairs} * "
                         f"kv_pairs{' with power_a' if power_a is not None else ''}), got "
                         f"{sequence_length}")
    inputs = torch.zeros(batch_size, sequence_length, dtype=torch.int64)
    targets = torch.full((batch_size, sequence_length), -1, dtype=torch.int64)
    context = 2 * kv_pairs
    if power_a is not None:
        slots = (sequence_length - context) // 2
        slot_weights = power_a * torch.arange(1, slots + 1, dtype=torch.float64) ** (power_a - 1)
    for row in range(batch_size):
        keys = 1 + torch.randperm(half - 1, generator=generator)[:kv_pairs]
        values = half + torch.randperm(vocab_size - half, generator=generator)[:kv_pairs]
        inputs[row, 0:context:2], inputs[row, 1:context:2] = keys, values
        if power_a is None:
            positions = context + torch.randperm(sequence_length - context,
                                                 generator=generator)[:kv_pairs]
        else:
            chosen = torch.multinomial(slot_weights, kv_pairs, replacement=False,
                                       generator=generator)
            positions = context + 2 * chosen
        inputs[row, positions] = keys
        targets[row, positions] = values
    if random_non_queries:
        filler = torch.randint(vocab_size, inputs.shape, generator=generator)
        blank = targets < 0
        blank[:, :context] = False
        inputs = torch.where(blank, filler, inputs)
    return inputs, targets


@torch.no_grad()
def induction_guesses(idx: torch.Tensor, *, vocab_size: int, fallback: int,
                      match: int = 12) -> torch.Tensor:
    """The perfect copier's prediction at every position: the token that followed the latest
    earlier occurrence of the last ``match`` tokens (an induction head), else ``fallback``.

    idx (B, T) int64 ids in [0, vocab_size) → (B, T) int64. It recalls every planted fact it
    can see and knows nothing else, so a model built on it separates "the fact is reachable"
    from "it is not" (the recall tests and chapter 7's question use it).
    """
    check_positive_int("match", match)
    check_positive_int("vocab_size", vocab_size)
    if not isinstance(idx, torch.Tensor) or idx.ndim != 2 or idx.dtype != torch.int64:
        raise ValueError(f"idx must be an int64 tensor of shape (B, T), got "
                         f"{getattr(idx, 'shape', type(idx).__name__)}")
    if idx.numel() and not (0 <= int(idx.min()) and int(idx.max()) < vocab_size):
        raise ValueError(f"idx must hold token ids in [0, {vocab_size}), got values in "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    if isinstance(fallback, bool) or not isinstance(fallback, int) or \
            not 0 <= fallback < vocab_size:
        raise ValueError(f"fallback must be a token id in [0, {vocab_size}), got {fallback!r}")
    guesses = torch.full(idx.shape, fallback, dtype=torch.int64)
    for row in range(idx.shape[0]):
        text = "".join(chr(256 + int(token)) for token in idx[row])
        for position in range(match - 1, idx.shape[1]):
            found = text.rfind(text[position + 1 - match:position + 1], 0, position)
            if found >= 0:
                guesses[row, position] = ord(text[found + match]) - 256
    return guesses


def masked_accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of positions with a target (≥ 0) where argmax of ``model(inputs)`` is right
    (MQAR's metric, pooled over every query of the batch)."""
    from nlbook.transformer import check_token_ids

    check_instance("model", model, nn.Module, expected="a torch.nn.Module language model")
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor) \
            or inputs.shape != targets.shape or inputs.ndim != 2:
        raise ValueError("inputs and targets must be int64 tensors of one shape (B, T)")
    vocab_size = getattr(model, "vocab_size", None)
    if vocab_size is not None:
        check_token_ids("inputs", inputs, vocab_size, None)
        check_token_ids("targets", targets, vocab_size, None, allow_ignore_index=True)
    elif inputs.dtype != torch.int64 or targets.dtype != torch.int64:
        raise ValueError("inputs and targets must be int64 tensors of one shape (B, T)")
    mask = targets >= 0
    if not bool(mask.any()):
        raise ValueError("targets must hold at least one position >= 0")
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(inputs)
    finally:
        model.train(was_training)
    return float((logits.argmax(dim=-1)[mask] == targets[mask]).float().mean())
