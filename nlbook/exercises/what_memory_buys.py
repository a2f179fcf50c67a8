"""Checkers for chapter 7's exercises: an independent recogniser for aⁿbⁿ, and the forgetting
and recovery of a continual-learning run.

Each ``check_*`` calls the learner's function on small inputs, compares with nlbook's answer
and raises ``AssertionError`` with a hint (the empty string, letters out of order, a minimum
instead of the end of a phase, a flipped sign...). Use as
``from nlbook.exercises import what_memory_buys as ex``; ``ex.check_is_anbn(fn)``,
``ex.answer("window_copier", prediction)``, ``ex.solution("is_anbn")``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from nlbook.exercises import solutions
from nlbook.exercises._core import Chapter, CheckResult, Question, checker, expect_number
from nlbook.tasks.recall import induction_guesses

__all__ = ["QUESTIONS", "SOLUTIONS", "WindowCopier", "answer", "check_forgetting_and_recovery",
           "check_is_anbn", "experiment", "reveal", "solution"]


# ------------------------------------------------------------------------------ aⁿbⁿ

def _expect_bool(what: str, got: object) -> bool:
    if got is None or (isinstance(got, float) and math.isnan(got)):
        expect_number(what, got)  # raises with the hint for a missing return or NaN
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, (bool, int, float)) and got in (0, 1):  # True, False, 1, 0
        return bool(got)
    if type(got).__name__ == "bool_":  # numpy's bool
        return bool(got)
    raise AssertionError(f"{what} returned {got!r}: return True or False")


@checker("is_anbn")
def check_is_anbn(is_anbn: Callable[[str], bool]) -> CheckResult:
    """Check ``is_anbn(string) -> bool``: True exactly for a…ab…b with n ≥ 1 a's followed by
    the same number of b's. Compared with :func:`nlbook.tasks.is_member` (automata and
    counters) on every string of a and b up to 10 letters and on long ones."""
    from nlbook.tasks import is_member

    cases = ["".join(letters) for length in range(1, 11)
             for letters in itertools.product("ab", repeat=length)]
    cases += ["a" * 40 + "b" * 40, "a" * 40 + "b" * 39, "a" * 39 + "b" * 40,
              "a" * 20 + "b" * 20 + "ab"]
    # The telling mistakes first, so the hint names the cause.
    cases = ["ab", "ba", "abab", "aabb", "abba", "aab", "abb", *cases]
    for string in cases:
        expected = is_member("anbn", string)
        got = _expect_bool(f"is_anbn({string!r})", is_anbn(string))
        if got == expected:
            continue
        if not expected and string.count("a") == string.count("b"):
            hint = ("as many a's as b's is not enough: every a must come before every b "
                    "(order matters)")
        elif not expected and string.startswith("a") and string.endswith("b"):
            hint = "a's then b's is not enough: the two counts must be equal"
        elif expected:
            hint = f"{string!r} is a^{len(string) // 2} b^{len(string) // 2}: accept it"
        else:
            hint = "reject it"
        raise AssertionError(f"is_anbn({string!r}) returned {got}, expected {expected}: {hint}")
    got = _expect_bool("is_anbn('')", is_anbn(""))
    if got:
        raise AssertionError("is_anbn('') returned True, expected False: n ≥ 1 here (the "
                             "empty string is not in aⁿbⁿ, as nlbook.tasks.is_member says)")
    return "it agrees with nlbook's automaton on all 2,046 strings up to 10 letters."


# ------------------------------------------------------------------------------ forgetting

def _history(seed: int) -> tuple[list[int], list[float], tuple[int, int, int]]:
    """A made-up evaluation history of A's loss along A → B → A (3 phases of 20 steps)."""
    generator = torch.Generator().manual_seed(seed)
    steps = list(range(0, 61, 5))
    noise = (0.05 * torch.randn(len(steps), generator=generator, dtype=torch.float64)).tolist()
    # The lowest A loss of the first phase and the highest of the B phase are not at the
    # phases' ends, so that a minimum or a maximum in place of the end value shows.
    base = [4.2, 3.0, 2.3, 1.9, 2.2, 2.5, 3.1, 3.4, 2.9, 2.4, 2.0, 2.1, 1.95]
    return steps, [round(value + jitter, 4) for value, jitter in
                   zip(base, noise, strict=True)], (20, 40, 60)


def _reference(steps, loss_a, phase_ends):
    from nlbook.claims import continual_metrics

    metric = continual_metrics(steps, loss_a, loss_a, phase_ends)
    return metric.forgetting, metric.recovery


@checker("forgetting_and_recovery")
def check_forgetting_and_recovery(
        forgetting_and_recovery: Callable[[Sequence[int], Sequence[float], Sequence[int]],
                                          tuple[float, float]]) -> CheckResult:
    """Check ``forgetting_and_recovery(steps, loss_a, phase_ends) -> (forgetting, recovery)``
    against :func:`nlbook.claims.continual_metrics` on made-up A → B → A histories."""
    for seed in range(4):
        steps, loss_a, ends = _history(seed)
        what = f"forgetting_and_recovery(steps, loss_a (history {seed}), {ends})"
        got = forgetting_and_recovery(list(steps), list(loss_a), ends)
        if got is None:
            expect_number(what, got)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"{what} must return a pair (forgetting, recovery), got "
                                 f"{got!r}")
        forgetting = expect_number(f"{what}[0]", got[0])
        recovery = expect_number(f"{what}[1]", got[1])
        expected = _reference(steps, loss_a, ends)
        at = dict(zip(steps, loss_a, strict=True))
        before, after, end = (at[step] for step in ends)
        if math.isclose(forgetting, expected[0], abs_tol=1e-9) and \
                math.isclose(recovery, expected[1], abs_tol=1e-9):
            continue
        b_phase = [loss for step, loss in zip(steps, loss_a, strict=True)
                   if ends[0] < step <= ends[1]]
        a_phase = [loss for step, loss in zip(steps, loss_a, strict=True)
                   if ends[0] >= step]
        if math.isclose(forgetting, -expected[0], abs_tol=1e-9):
            hint = ("forgetting has the wrong sign: it is the loss AFTER the B phase minus the "
                    "loss before it (positive when A got worse)")
        elif math.isclose(forgetting, max(b_phase) - before, abs_tol=1e-9) or \
                math.isclose(forgetting, after - min(a_phase), abs_tol=1e-9):
            hint = ("use the losses at the END of each phase (the steps in phase_ends), not the "
                    "highest or lowest loss of a phase")
        elif math.isclose(recovery, end - before, abs_tol=1e-9) or \
                math.isclose(recovery, before - end, abs_tol=1e-9):
            hint = ("recovery compares the end of the second A phase with the end of the B "
                    "phase (how much the second A phase won back), not with the loss before B")
        elif math.isclose(recovery, -expected[1], abs_tol=1e-9):
            hint = ("recovery has the wrong sign: the loss after B minus the loss at the end "
                    "(positive when the second A phase won some of A back)")
        else:
            hint = (f"expected ({expected[0]:.4f}, {expected[1]:.4f}) from the A losses at the "
                    f"phase ends {before}, {after}, {end}")
        raise AssertionError(f"{what} returned ({forgetting:.4f}, {recovery:.4f}): {hint}")
    return "the same numbers as nlbook.claims.continual_metrics."


# ------------------------------------------------------------------------------ the questions

class WindowCopier(nn.Module):
    """A perfect copier with a fixed window: it predicts the character that followed the latest
    earlier occurrence of its last 12 characters (an induction head), else ``e``. It recalls
    every fact inside its last ``context_length`` characters and has no other knowledge."""

    def __init__(self, vocabulary, context_length: int = 64, match: int = 12) -> None:
        from nlbook._checks import check_instance, check_positive_int
        from nlbook.data import CharVocabulary

        check_instance("vocabulary", vocabulary, CharVocabulary,
                       expected="an nlbook.data.CharVocabulary")
        check_positive_int("context_length", context_length)
        check_positive_int("match", match)
        if "e" not in vocabulary.chars:
            raise ValueError("vocabulary must hold 'e' (the copier's guess without a match)")
        super().__init__()
        self.vocab_size, self.context_length, self.match = len(vocabulary), context_length, match
        self.fallback = vocabulary.chars.index("e")

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        from nlbook.transformer import check_token_ids

        check_token_ids("idx", idx, self.vocab_size, None)
        if targets is not None:
            raise ValueError("targets must be None: the copier predicts, it is not trained")
        guesses = induction_guesses(idx, vocab_size=self.vocab_size, fallback=self.fallback,
                                    match=self.match)
        return torch.nn.functional.one_hot(guesses, self.vocab_size).float(), None


QUESTIONS = {
    "window_copier": Question(
        {"a": "about 100 % at both gaps",
         "b": "about 100 % at gap 8, about 4 % (1/26) at gap 128",
         "c": "about 100 % at gap 8, exactly 0 % at gap 128",
         "d": "about 50 % at both gaps"},
        "b",
        """The copier finds the fact whenever the fact's line lies in its 64-character window:
        at gap 8 the line (26 characters), the gap and the question (20 characters) fit, so it
        copies every answer letter. At gap 128 the fact is outside the window, and the copier
        predicts what it predicts without it; the answers are 4 letters drawn uniformly from
        26, independent of everything else in the prompt, so any guess is right 1 time in 26
        (3.8 %), not 0 %. That is why a Transformer's recall beyond its window is at chance by
        construction, and why the fact-removed control must be at chance for every model."""),
    "finding_or_noise": Question(
        {"a": "yes: A's mean is higher than B's",
         "b": "no: the difference is smaller than twice A's spread over seeds",
         "c": "yes: A reaches 100 % in two seeds of three",
         "d": "no: a difference of accuracies is never a finding"},
        "b",
        """A's three seeds (100 %, 40 %, 100 %) have a mean of 80 % and a standard deviation
        near 35 points; B's (70 %, 72 %, 68 %) 70 % and 2 points. The difference of the means,
        10 points, is far below twice the larger spread (about 69 points): one of A's seeds
        failed outright, and a fourth seed could as well fail again. The protocol reads a
        difference as a finding only beyond twice the spread (and beyond 2 points), so here
        neither "A beats B" nor "B beats A" is read. This is why each cell of chapter 7 has
        three seeds: with one seed, A's first run alone would have "won" by 30 points."""),
}
SOLUTIONS = solutions.BY_CHAPTER["what_memory_buys"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
