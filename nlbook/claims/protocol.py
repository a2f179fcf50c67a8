"""The one protocol every chapter-7 experiment follows, as pure functions.

Declared before any run (so no threshold is chosen after seeing a result):

1. **Budget.** The primary budget is **equal tokens**: every model takes the same optimizer
   steps on batches of the same size (the paper's axis: equal parameters, equal tokens).
   **Equal time** is a second column only: each model's step budget is the time budget divided
   by its per-step time, the per-step times measured **interleaved** (the models alternate,
   one step each, several rounds; medians), never from two sequential wall-clock runs on a
   shared machine (:func:`interleaved_step_seconds`, :func:`equal_time_steps`).
2. **Seeds and spreads.** At least :data:`MIN_SEEDS` seeds per cell. Losses are reported as
   mean ± std over seeds (sample std, n - 1); accuracies with a 95 % binomial interval (Wilson,
   :func:`wilson_interval`) for each seed and for the seeds pooled.
3. **Findings.** A difference between two cells is a finding only when it exceeds **twice the
   spread** (the larger of the two cells' spreads: the std over seeds, and for accuracies at
   least the pooled interval's half-width) **and** the pre-declared minimum
   (:data:`MIN_ACCURACY_DIFFERENCE`, :data:`MIN_LOSS_DIFFERENCE`); :func:`compare`.
4. **Positive control.** Every experiment names a model known to solve its task at its budget;
   it must pass before any verdict is printed (:class:`Control`). A failed control means the
   budget or the task is wrong: the verdict is "not tested at this budget", never
   "does not hold".
5. **Verdicts** come from one vocabulary, :data:`VERDICTS` (:func:`verdict`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from nlbook._checks import (
    ArgumentTypeError,
    check_bool,
    check_int,
    check_positive_int,
    check_scalar_in_range,
    check_str,
    describe,
)

__all__ = [
    "MIN_ACCURACY_DIFFERENCE",
    "MIN_LOSS_DIFFERENCE",
    "MIN_SEEDS",
    "VERDICTS",
    "AccuracyCell",
    "Comparison",
    "Control",
    "LossCell",
    "Verdict",
    "accuracy_cell",
    "compare",
    "equal_time_steps",
    "interleaved_step_seconds",
    "loss_cell",
    "verdict",
    "wilson_interval",
]

#: The only verdicts a claim may get.
VERDICTS: tuple[str, ...] = ("holds", "does not hold", "mixed", "not tested at this budget",
                             "not testable on a CPU")
#: Seeds per cell.
MIN_SEEDS = 3
#: Smallest difference in accuracy (a fraction) read as a finding, whatever the spread
#: (Wahaha-huhu/Nested-Learning's "2 points" rule).
MIN_ACCURACY_DIFFERENCE = 0.02
#: Smallest difference in loss (nats per character or token) read as a finding.
MIN_LOSS_DIFFERENCE = 0.01
_Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


def _check_values(name: str, values: Sequence[float]) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ArgumentTypeError(f"{name} must be a non-empty list of numbers, got "
                                f"{describe(values)}")
    out = []
    for index, value in enumerate(values):
        check_scalar_in_range(f"{name}[{index}]", value, -math.inf, math.inf,
                              low_inclusive=False, high_inclusive=False)
        out.append(float(value))
    return out


def wilson_interval(correct: int, total: int, *, z: float = _Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion correct / total (Wilson 1927).

    p̂ = c/n; centre (p̂ + z²/2n) / (1 + z²/n), half-width z sqrt(p̂(1-p̂)/n + z²/4n²) / (1 + z²/n).
    Unlike the normal interval p̂ ± z sqrt(p̂(1-p̂)/n) it is never empty at 0 % or 100 %.

    Returns:
        (low, high), fractions in [0, 1].
    """
    check_int("total", total, low=1)
    check_int("correct", correct, low=0, high=total)
    check_scalar_in_range("z", z, 0.0, math.inf, low_inclusive=False, high_inclusive=False)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # At 0 % and 100 % the bound is exact (0, 1): rounding would otherwise leave 1e-17.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class LossCell:
    """Losses of one model over seeds: mean ± std (sample std; 0 for one seed)."""

    values: tuple[float, ...]
    mean: float
    std: float

    @property
    def spread(self) -> float:
        return self.std

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


def loss_cell(values: Sequence[float]) -> LossCell:
    """Summarise per-seed losses: :class:`LossCell` (mean, sample std)."""
    values = _check_values("values", values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return LossCell(tuple(values), statistics.fmean(values), std)


@dataclass(frozen=True)
class AccuracyCell:
    """Accuracies of one model over seeds, each scored on ``totals[i]`` items.

    ``intervals``: each seed's 95 % Wilson interval; ``pooled``: all seeds' items together
    with its interval; ``std``: over the seeds' accuracies (sample std; 0 for one seed)."""

    correct: tuple[int, ...]
    totals: tuple[int, ...]
    accuracies: tuple[float, ...]
    intervals: tuple[tuple[float, float], ...]
    mean: float
    std: float
    pooled: float
    pooled_interval: tuple[float, float]

    @property
    def spread(self) -> float:
        """The larger of the std over seeds and the pooled interval's half-width."""
        low, high = self.pooled_interval
        return max(self.std, (high - low) / 2)

    def __str__(self) -> str:
        low, high = self.pooled_interval
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def accuracy_cell(correct: Sequence[int], totals: Sequence[int]) -> AccuracyCell:
    """Summarise per-seed accuracies ``correct[i] / totals[i]``: :class:`AccuracyCell`."""
    for name, value in (("correct", correct), ("totals", totals)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise ArgumentTypeError(f"{name} must be a non-empty list of ints, got "
                                    f"{describe(value)}")
    if len(correct) != len(totals):
        raise ValueError(f"correct must have one count per entry of totals ({len(totals)}), "
                         f"got {len(correct)}")
    for index, (right, total) in enumerate(zip(correct, totals, strict=True)):
        check_int(f"totals[{index}]", total, low=1)
        check_int(f"correct[{index}]", right, low=0, high=total)
    accuracies = tuple(right / total for right, total in zip(correct, totals, strict=True))
    intervals = tuple(wilson_interval(right, total)
                      for right, total in zip(correct, totals, strict=True))
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    pooled_right, pooled_total = sum(correct), sum(totals)
    return AccuracyCell(tuple(int(c) for c in correct), tuple(int(t) for t in totals),
                        accuracies, intervals, statistics.fmean(accuracies), std,
                        pooled_right / pooled_total, wilson_interval(pooled_right, pooled_total))


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: the difference of their means, the bar it had to clear
    (2 × the larger spread, at least the pre-declared minimum), and the reading:
    ``direction`` +1 (a higher), -1 (a lower) or 0 (no finding)."""

    difference: float
    bar: float
    direction: int

    @property
    def is_finding(self) -> bool:
        return self.direction != 0


def compare(a: LossCell | AccuracyCell, b: LossCell | AccuracyCell, *,
            minimum: float | None = None) -> Comparison:
    """Is mean(a) - mean(b) a finding? Only when |difference| > max(2 × max(spread_a,
    spread_b), minimum). ``minimum`` defaults to :data:`MIN_ACCURACY_DIFFERENCE` for
    accuracies and :data:`MIN_LOSS_DIFFERENCE` for losses."""
    for name, cell in (("a", a), ("b", b)):
        if not isinstance(cell, (LossCell, AccuracyCell)):
            raise ArgumentTypeError(f"{name} must be a LossCell or AccuracyCell, got "
                                    f"{describe(cell)}")
    if type(a) is not type(b):
        raise ValueError(f"a and b must be the same kind of cell, got {type(a).__name__} and "
                         f"{type(b).__name__}")
    if minimum is None:
        minimum = MIN_ACCURACY_DIFFERENCE if isinstance(a, AccuracyCell) else MIN_LOSS_DIFFERENCE
    check_scalar_in_range("minimum", minimum, 0.0, math.inf, high_inclusive=False)
    difference = a.mean - b.mean
    bar = max(2 * max(a.spread, b.spread), minimum)
    direction = 0 if abs(difference) <= bar else (1 if difference > 0 else -1)
    return Comparison(difference, bar, direction)


@dataclass(frozen=True)
class Control:
    """A positive control: ``model`` must reach ``threshold`` on ``task`` (``measured``:
    its worst cell, e.g. the lowest accuracy over the control's tasks and seeds).
    ``higher_is_better=False`` for a loss."""

    model: str
    task: str
    measured: float
    threshold: float
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        check_str("model", self.model)
        check_str("task", self.task)
        for name in ("measured", "threshold"):
            check_scalar_in_range(name, getattr(self, name), -math.inf, math.inf,
                                  low_inclusive=False, high_inclusive=False)
        check_bool("higher_is_better", self.higher_is_better)

    @property
    def passed(self) -> bool:
        return (self.measured >= self.threshold if self.higher_is_better
                else self.measured <= self.threshold)

    def __str__(self) -> str:
        relation = ">=" if self.higher_is_better else "<="
        return (f"positive control {self.model} on {self.task}: {self.measured:.4g} "
                f"(needs {relation} {self.threshold:.4g}) -> "
                f"{'passed' if self.passed else 'FAILED'}")


@dataclass(frozen=True)
class Verdict:
    """A verdict of :data:`VERDICTS` and why."""

    verdict: str
    why: str

    def __str__(self) -> str:
        return f"{self.verdict}: {self.why}"


def verdict(control: Control | None, outcomes: Sequence[bool | None], *,
            testable_on_cpu: bool = True, mechanism_exercised: bool = True,
            seeds: int | None = None) -> Verdict:
    """The verdict on a claim from its control and its per-test outcomes.

    Args:
        control: the positive control (None: no control was run, so no verdict can be
            printed: "not tested at this budget").
        outcomes: one per test of the claim (a task, a length bin, a setting): True when the
            measurement supports the claim beyond the spread (:func:`compare`), False when it
            contradicts it beyond the spread, None when no difference was found.
        testable_on_cpu: False for claims no CPU run can test.
        mechanism_exercised: False when the setup cannot exercise the mechanism the claim
            credits (then "not tested at this budget").
        seeds: how many seeds each cell holds (None: not checked); fewer than
            :data:`MIN_SEEDS` gives "not tested at this budget" (a sketch, not a result).

    Rules, in order: not testable -> "not testable on a CPU"; no control, a failed control,
    the mechanism not exercised, or no outcome -> "not tested at this budget"; every outcome
    True -> "holds"; some True and some not -> "mixed"; otherwise (no test supports the claim,
    whether contradicted or within the spread) -> "does not hold".
    """
    check_bool("testable_on_cpu", testable_on_cpu)
    check_bool("mechanism_exercised", mechanism_exercised)
    check_int("seeds", seeds, low=1, allow_none=True)
    if control is not None and not isinstance(control, Control):
        raise ArgumentTypeError(f"control must be a Control or None, got {describe(control)}")
    if isinstance(outcomes, (str, bytes)) or not isinstance(outcomes, Sequence):
        raise ArgumentTypeError(f"outcomes must be a list of True, False or None, got "
                                f"{describe(outcomes)}")
    for index, outcome in enumerate(outcomes):
        if outcome is not None and not isinstance(outcome, bool):
            raise ValueError(f"outcomes[{index}] must be True, False or None, got {outcome!r}")
    if not testable_on_cpu:
        return Verdict("not testable on a CPU", "the claim needs a scale no CPU run reaches")
    if control is None:
        return Verdict("not tested at this budget", "no positive control was run")
    if not control.passed:
        return Verdict("not tested at this budget", f"{control}")
    if not mechanism_exercised:
        return Verdict("not tested at this budget",
                       "the setup cannot exercise the mechanism the claim credits")
    if seeds is not None and seeds < MIN_SEEDS:
        return Verdict("not tested at this budget",
                       f"{seeds} seed{'s' if seeds > 1 else ''}: a sketch; a verdict needs "
                       f"{MIN_SEEDS}")
    if not outcomes:
        return Verdict("not tested at this budget", "no test of the claim was run")
    supported = sum(outcome is True for outcome in outcomes)
    contradicted = sum(outcome is False for outcome in outcomes)
    flat = len(outcomes) - supported - contradicted
    counts = (f"{supported} of {len(outcomes)} tests support it, {contradicted} contradict "
              f"it, {flat} show no difference beyond twice the spread")
    if supported == len(outcomes):
        return Verdict("holds", counts)
    if supported:
        return Verdict("mixed", counts)
    return Verdict("does not hold", counts)


def interleaved_step_seconds(steps: Mapping[str, Callable[[], object]], *, rounds: int = 7,
                             warmup: int = 1,
                             clock: Callable[[], float] = time.perf_counter
                             ) -> dict[str, float]:
    """Median seconds per call of each function, the functions called in turn.

    Each round calls every function once, in an order that rotates from round to round, so a
    change of the machine's load reaches every model alike; the first ``warmup`` rounds are
    not timed. Use it with one training step of each model (same batch size) to set the
    equal-time budgets (:func:`equal_time_steps`).
    """
    if not isinstance(steps, Mapping) or not steps:
        raise ArgumentTypeError(f"steps must be a non-empty dict of name -> callable, got "
                                f"{describe(steps)}")
    for name, function in steps.items():
        if not isinstance(name, str) or not callable(function):
            raise ValueError(f"steps must map names (str) to callables, got {name!r}: "
                             f"{describe(function)}")
    check_positive_int("rounds", rounds)
    check_int("warmup", warmup, low=0)
    if not callable(clock):
        raise ArgumentTypeError(f"clock must be a callable, got {describe(clock)}")
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            steps[name]()
            if round_index >= warmup:
                times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def equal_time_steps(step_seconds: Mapping[str, float], seconds: float) -> dict[str, int]:
    """Each model's step budget for ``seconds`` of training: floor(seconds / its per-step
    time), at least 1 (per-step times from :func:`interleaved_step_seconds`)."""
    if not isinstance(step_seconds, Mapping) or not step_seconds:
        raise ArgumentTypeError(f"step_seconds must be a non-empty dict of name -> seconds, "
                                f"got {describe(step_seconds)}")
    for name, value in step_seconds.items():
        check_scalar_in_range(f"step_seconds[{name!r}]", value, 0.0, math.inf,
                              low_inclusive=False, high_inclusive=False)
    check_scalar_in_range("seconds", seconds, 0.0, math.inf, low_inclusive=False,
                          high_inclusive=False)
    return {name: max(1, math.floor(seconds / value)) for name, value in step_seconds.items()}
