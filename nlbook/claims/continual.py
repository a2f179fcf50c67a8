"""Experiment 4 of chapter 7: continual learning, corpus A → corpus B → corpus A, with the loss
on both tracked throughout (forgetting and recovery).

A = Tiny Shakespeare, B = the CPython standard-library snapshot, one joint 96-character
vocabulary (:mod:`nlbook.tasks.continual`, whose docstring says what "continual" means here
and what it does not test compared with the paper's class-incremental and CTNL experiments).

Every model gets the same schedule: ``steps_per_phase`` optimizer steps on A, then on B, then
on A again (**equal steps**: the same number of updates on the same corpora, so forgetting is
compared for the same amount of training on B; the seconds each model took are reported), with
one AdamW optimizer that is never reset, a linear warm-up over the first ``warmup_steps`` steps
and then a **constant** learning rate (a cosine over the whole run would make the last phase
learn less than the first). HOPE trains statefully on carried streams of the current phase's
corpus (every stream restarts, with a fresh state, when the phase changes); the Transformer on
fresh random windows. After step 0, every ``steps_per_phase / evaluations_per_phase`` steps
and at the end of every phase, the validation loss on both corpora is measured in fixed fresh
windows of ``context_length`` (:meth:`~nlbook.tasks.continual.ContinualSetup.validation_sets`,
the same windows for every model).

The models (default :func:`continual_models`, matched in parameters): HOPE; **HOPE without
in-context CMS updates**, a HopeLM built with ``cms_learning_rates`` all 0, so its CMS blocks
change only through AdamW, trained and evaluated that way; the Transformer.

Metrics (:func:`continual_metrics`), from the A losses at the ends of the three phases
(a₁ after the first A phase, a₂ after B, a₃ after the second A phase):
**forgetting** = a₂ − a₁ (how much of A the B phase cost), **recovery** = a₂ − a₃ (how much the
second A phase won back), **net** = a₃ − a₁ (below 0: better on A than before B), the steps of
the second A phase until the A loss is back at a₁ (at the evaluation resolution), and for B its
loss at the end of the B phase and how much of it the second A phase cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.figure
import numpy as np
import torch

from nlbook._checks import (
    check_callable,
    check_int_sequence,
    check_number_sequence,
    check_positive_int,
)
from nlbook.claims._common import (
    ModelFactory,
    TextLearner,
    build_model,
    check_models,
    check_seeds,
    format_table,
    parameters_of,
)

__all__ = ["ContinualMetrics", "ContinualResult", "continual_metrics", "continual_models",
           "run_continual"]


def continual_models(vocab_size: int, *, d_model: int = 32, n_layers: int = 2,
                     n_heads: int = 2, context_length: int = 64, **hope_options
                     ) -> dict[str, ModelFactory]:
    """``{"HOPE": f, "HOPE without in-context CMS updates": g, "Transformer": h}``: factories
    ``f(seed)``; the second is the same HopeLM with ``cms_learning_rates`` all 0, the third the
    TransformerLM matched to HOPE by :func:`nlbook.hope.matched_models`."""
    from nlbook.hope import HopeLM, matched_models

    def pair(seed: int):
        return matched_models(vocab_size, d_model, n_layers, n_heads,
                              context_length=context_length, seed=seed, **hope_options)

    def frozen(seed: int):
        options = dict(hope_options)
        levels = len(options.get("cms_chunk_sizes", (256, 32)))
        options["cms_learning_rates"] = (0.0,) * levels
        return HopeLM(vocab_size, d_model, n_layers, n_heads, context_length=context_length,
                      seed=seed, **options)

    return {"HOPE": lambda seed: pair(seed)[0], "HOPE without in-context CMS updates": frozen,
            "Transformer": lambda seed: pair(seed)[1]}


@dataclass(frozen=True)
class ContinualMetrics:
    """Forgetting and recovery of one run of A → B → A (nats/char; see the module docstring).

    ``steps_to_recover``: optimizer steps into the second A phase until the A loss is back at
    or below ``a_before_b`` (the first evaluation that is), None if it never is.
    """

    a_before_b: float
    a_after_b: float
    a_end: float
    b_after_b: float
    b_end: float
    forgetting: float
    recovery: float
    net: float
    b_forgetting: float
    steps_to_recover: int | None


def _phase_end_index(steps: np.ndarray, step: int, name: str) -> int:
    where = np.flatnonzero(steps == step)
    if where.size == 0:
        raise ValueError(f"phase_ends must be evaluated steps: {name} must hold an evaluation "
                         f"at the end of every phase; step {step} is missing from "
                         f"{steps.tolist()}")
    return int(where[0])


def continual_metrics(steps: Sequence[int], losses_a: Sequence[float],
                      losses_b: Sequence[float], phase_ends: Sequence[int]) -> ContinualMetrics:
    """Forgetting and recovery from an evaluation history of an A → B → A run.

    Args:
        steps: (N,) increasing optimizer steps at which the losses were measured.
        losses_a, losses_b: (N,) validation loss on A and on B at those steps.
        phase_ends: the 3 steps at which the phases end (e.g. (300, 600, 900)); each must be
            one of ``steps``.

    Returns:
        :class:`ContinualMetrics`: forgetting = A(end of B) − A(end of first A), recovery =
        A(end of B) − A(end of second A), net = A(end) − A(end of first A), b_forgetting =
        B(end) − B(end of B), steps_to_recover.

    Raises:
        ValueError: naming the argument, for histories of different lengths, steps that do not
            increase, a non-finite loss, or phase ends that are not 3 increasing evaluated
            steps.
    """
    for name, values in (("steps", steps), ("losses_a", losses_a), ("losses_b", losses_b)):
        if isinstance(values, (list, tuple)):
            if name == "steps":
                check_int_sequence(name, values, low=0)
            else:
                check_number_sequence(name, values)
        elif not isinstance(values, (np.ndarray, torch.Tensor)):
            raise ValueError(f"{name} must be a list or array, got {type(values).__name__}")
    check_int_sequence("phase_ends", list(phase_ends) if isinstance(phase_ends, np.ndarray)
                       else phase_ends, low=0, length=3)
    steps = np.asarray(steps)
    losses_a = np.asarray(losses_a, dtype=float)
    losses_b = np.asarray(losses_b, dtype=float)
    if steps.ndim != 1 or steps.size < 2 or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError(f"steps must be a 1-D sequence of at least 2 ints, got {steps!r}")
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"steps must increase, got {steps.tolist()}")
    for name, values in (("losses_a", losses_a), ("losses_b", losses_b)):
        if values.shape != steps.shape:
            raise ValueError(f"{name} must have one loss per step ({steps.size}), got shape "
                             f"{values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} must be finite, got {values.tolist()}")
    ends = list(phase_ends)
    if len(ends) != 3 or any(isinstance(end, bool) or not isinstance(end, (int, np.integer))
                             for end in ends) or not ends[0] < ends[1] < ends[2]:
        raise ValueError(f"phase_ends must be 3 increasing steps (ends of A, B, A), got "
                         f"{phase_ends!r}")
    first, second, third = (_phase_end_index(steps, int(end), "steps") for end in ends)
    a_before, a_after, a_end = losses_a[first], losses_a[second], losses_a[third]
    back = [index for index in range(second + 1, third + 1) if losses_a[index] <= a_before]
    steps_to_recover = int(steps[back[0]] - steps[second]) if back else None
    return ContinualMetrics(float(a_before), float(a_after), float(a_end),
                            float(losses_b[second]), float(losses_b[third]),
                            float(a_after - a_before), float(a_after - a_end),
                            float(a_end - a_before), float(losses_b[third] - losses_b[second]),
                            steps_to_recover)


@dataclass
class ContinualResult:
    """The loss on both corpora along A → B → A for every model.

    Attributes:
        models, seeds: as run.
        steps: (N,) optimizer steps of the evaluations (0 first, every phase end included).
        losses: model -> {"A": (seeds, N), "B": (seeds, N)} validation losses (nats/char).
        phase_ends: the step at which each phase ends; order: the corpus of each phase.
        train_seconds: model -> seconds of training (all phases and seeds).
        parameters: model -> parameter count.
        steps_per_phase, batch_size, context_length, validation_windows: the setup.
    """

    models: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: np.ndarray
    losses: dict[str, dict[str, np.ndarray]]
    phase_ends: tuple[int, ...]
    order: tuple[str, ...]
    train_seconds: dict[str, float]
    parameters: dict[str, int]
    steps_per_phase: int
    batch_size: int
    context_length: int
    validation_windows: int

    def mean(self, model: str, corpus: str) -> np.ndarray:
        """(N,) loss of ``model`` on ``corpus`` ("A"/"B"), mean over seeds."""
        if model not in self.losses:
            raise ValueError(f"model must be one of {list(self.models)}, got {model!r}")
        if corpus not in ("A", "B"):
            raise ValueError(f"corpus must be 'A' or 'B', got {corpus!r}")
        return self.losses[model][corpus].mean(axis=0)

    def metrics(self, model: str) -> ContinualMetrics:
        """:func:`continual_metrics` of the seed-averaged history of ``model``."""
        return continual_metrics(self.steps.tolist(), self.mean(model, "A"),
                                 self.mean(model, "B"), self.phase_ends)

    def table(self) -> str:
        ends = self.phase_ends
        header = ["model", f"A @{ends[0]}", f"B @{ends[0]}", f"A @{ends[1]}", f"B @{ends[1]}",
                  f"A @{ends[2]}", f"B @{ends[2]}", "forgetting", "recovery", "net",
                  "steps back", "train s"]
        rows = []
        for model in self.models:
            metric = self.metrics(model)
            a, b = self.mean(model, "A"), self.mean(model, "B")
            index = [int(np.flatnonzero(self.steps == end)[0]) for end in ends]
            rows.append([model, *(f"{values[i]:.3f}" for i in index for values in (a, b)),
                         f"{metric.forgetting:+.3f}", f"{metric.recovery:+.3f}",
                         f"{metric.net:+.3f}",
                         "never" if metric.steps_to_recover is None
                         else str(metric.steps_to_recover),
                         f"{self.train_seconds[model]:.0f}"])
        seeds = ", ".join(str(seed) for seed in self.seeds)
        title = ("Continual learning A -> B -> A (A = Tiny Shakespeare, B = Python stdlib): "
                 "validation loss (nats/char) at the end of each phase")
        notes = [
            f"{self.steps_per_phase} steps per phase x batch {self.batch_size} x window "
            f"{self.context_length} for every model (equal steps), constant learning rate "
            f"after warm-up; loss on {self.validation_windows} fixed fresh windows per corpus; "
            f"seed(s) {seeds}",
            "forgetting = A after B - A before B; recovery = A after B - A at the end; net = "
            "A at the end - A before B; steps back = steps of the second A phase until A is "
            "back at its level before B",
            "parameters: " + ", ".join(f"{name} {count:,}" for name, count in
                                       self.parameters.items()),
        ]
        return format_table(header, rows, title=title, notes=notes)

    def plot(self, models: Sequence[str] | None = None) -> matplotlib.figure.Figure:
        """:func:`nlbook.viz.plot_continual` of this result."""
        from nlbook.viz import plot_continual

        chosen = list(self.models if models is None else models)
        return plot_continual(self.steps, {name: {"A": self.mean(name, "A"),
                                                  "B": self.mean(name, "B")}
                                           for name in chosen},
                              phase_ends=self.phase_ends, order=self.order,
                              corpus_names={"A": "Tiny Shakespeare", "B": "Python stdlib"})


def run_continual(models: Mapping[str, ModelFactory] | None = None, *,
                  steps_per_phase: int = 300, evaluations_per_phase: int = 4,
                  batch_size: int = 16, context_length: int = 64,
                  learning_rate: float = 2e-3, warmup_steps: int = 50,
                  seeds: int | Sequence[int] = (0,), stream_length: int = 1024,
                  validation_windows: int = 32, corpora=None,
                  log: Callable[[str], None] | None = None) -> ContinualResult:
    """Train every model on A, then B, then A, measuring both validation losses as it goes.

    Args:
        models: name -> factory of a fresh character model over the joint vocabulary;
            default :func:`continual_models`.
        steps_per_phase: optimizer steps of each phase (the same for every model).
        evaluations_per_phase: evaluations within each phase (the last one at its end).
        batch_size, context_length, learning_rate, warmup_steps: training (AdamW, warm-up then
            constant).
        seeds: each builds the models afresh and draws its own batches.
        stream_length: HOPE's carried streams restart after this many characters.
        validation_windows: fixed validation windows per corpus.
        corpora: (A, B) sharing one vocabulary (default: :func:`nlbook.data.load_corpus_pair`).
        log: called with one line per model and seed; None: silent.
    """
    from nlbook.data import ContiguousStreams, random_batch
    from nlbook.tasks.continual import continual_losses, continual_setup

    check_positive_int("steps_per_phase", steps_per_phase)
    check_positive_int("evaluations_per_phase", evaluations_per_phase)
    if evaluations_per_phase > steps_per_phase:
        raise ValueError(f"evaluations_per_phase must be at most steps_per_phase "
                         f"({steps_per_phase}), got {evaluations_per_phase}")
    check_positive_int("validation_windows", validation_windows)
    check_positive_int("stream_length", stream_length)
    check_callable("log", log, allow_none=True)
    seeds = check_seeds(seeds)
    setup = continual_setup(steps_per_phase=steps_per_phase, corpora=corpora)
    vocabulary = setup.vocabulary
    models = check_models(continual_models(len(vocabulary), context_length=context_length)
                          if models is None else models)
    evaluate_at = {0}
    for phase in setup.phases:
        for index in range(1, evaluations_per_phase + 1):
            evaluate_at.add(phase.first_step + (index * phase.steps) // evaluations_per_phase)
    eval_steps = np.array(sorted(evaluate_at))
    losses = {name: {corpus: np.zeros((len(seeds), len(eval_steps))) for corpus in "AB"}
              for name in models}
    seconds = dict.fromkeys(models, 0.0)
    parameters: dict[str, int] = {}
    for row, seed in enumerate(seeds):
        validation = setup.validation_sets(context_length=context_length,
                                           windows=validation_windows, seed=seed)
        for name, factory in models.items():
            model = build_model(factory, seed, name)
            parameters.setdefault(name, parameters_of(model))
            learner = TextLearner(model, learning_rate=learning_rate, total_steps=None,
                                  warmup_steps=warmup_steps)
            column = 0

            def record(model=model, name=name, row=row, validation=validation) -> None:
                nonlocal column
                values = continual_losses(model, validation)
                for corpus in "AB":
                    losses[name][corpus][row, column] = values[corpus]
                column += 1

            record()
            generator = torch.Generator().manual_seed(seed)
            for phase in setup.phases:
                ids = setup.corpora[phase.corpus].train_ids
                if learner.stateful:
                    learner.forget_state()  # a new corpus: every stream starts afresh
                    streams = ContiguousStreams(
                        ids, batch_size, context_length, stream_length=stream_length,
                        generator=torch.Generator().manual_seed(seed * 1000 + phase.index),
                        alignment=model.stream_alignment())
                for step in range(phase.first_step, phase.first_step + phase.steps):
                    if learner.stateful:
                        learner.step(*streams.next_batch())
                    else:
                        learner.step(*random_batch(ids, batch_size, context_length, generator))
                    if step + 1 in evaluate_at:
                        record()
            seconds[name] += learner.seconds
            if log is not None:
                a, b = losses[name]["A"][row], losses[name]["B"][row]
                log(f"seed {seed} {name}: {learner.steps} steps in {learner.seconds:.0f} s; "
                    f"A {a[0]:.2f} -> " + " -> ".join(
                        f"{a[np.flatnonzero(eval_steps == phase.last_step + 1)[0]]:.2f}"
                        for phase in setup.phases) + f"; B {b[0]:.2f} -> " + " -> ".join(
                        f"{b[np.flatnonzero(eval_steps == phase.last_step + 1)[0]]:.2f}"
                        for phase in setup.phases))
    phase_ends = tuple(phase.last_step + 1 for phase in setup.phases)
    return ContinualResult(tuple(models), seeds, eval_steps, losses, phase_ends,
                           tuple(phase.corpus for phase in setup.phases), seconds, parameters,
                           steps_per_phase, batch_size, context_length, validation_windows)
