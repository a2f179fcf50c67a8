"""Experiment 3 of chapter 7: recall of a planted fact across a gap, on trained models.

A fact ``the key of Bakel is qorv.`` is planted in Shakespeare and asked for after a gap of
``G`` characters (:mod:`nlbook.tasks.recall`); answers are 4 random letters, so **chance is
1/26 ≈ 3.8 % per character** for any model that cannot see the fact, whatever it knows.

Each model first trains briefly on text in which in-context recall is learnable, in the way it
reads text (**equal steps**, or equal wall-clock time with ``minutes``):

- HOPE (a model with ``carry_over``) trains **statefully** on carried streams of
  :func:`~nlbook.tasks.recall.recall_training_text`: Tiny Shakespeare's training split with a
  fact and its query planted every few hundred characters, at gaps drawn from
  ``training_gaps`` (default 0–256), so the fact is often far outside any 64-character window;
- the Transformer (a fixed window) trains on fresh windows of
  :func:`~nlbook.tasks.recall.recall_training_batch`, each holding a fact and its query (the
  gap clipped to what fits in its window): in-context recall within its window is all it can
  ever learn, and it gets a fact in every window.

Then :func:`~nlbook.tasks.recall.recall_accuracy` asks new facts planted in the *validation*
text at every gap: HOPE reads each prompt as one stream (its memories must keep the fact across
the gap), the Transformer sees its last 64 characters (once the fact is further back it scores
at chance by construction). **HOPE without in-context updates** is the trained HOPE read
inside :func:`nlbook.hope.frozen_memories` (no Titans memory and no CMS block is written within
the stream). The control ``fact removed`` (the same prompts without the fact) must score at
chance for every model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.figure
import numpy as np
import torch

from nlbook._checks import (
    check_callable,
    check_int,
    check_int_sequence,
    check_positive_int,
    check_scalar_in_range,
)
from nlbook.claims._common import (
    ModelFactory,
    Switch,
    TextLearner,
    build_model,
    check_models,
    check_seeds,
    check_switches,
    format_table,
    parameters_of,
)
from nlbook.data import CharVocabulary, ContiguousStreams

__all__ = ["RECALL_GAPS", "RecallGapResult", "recall_models", "recall_switches", "run_recall",
           "visible_gap"]

#: Gaps (characters between the fact and the query) from inside the Transformer's 64-character
#: window to 8 times its length.
RECALL_GAPS = (8, 16, 32, 64, 128, 256, 512)


def visible_gap(window: int, answer_length: int = 4) -> int:
    """The longest gap at which the whole fact line still lies in a window of ``window``
    characters ending at the first answer prediction (fact line + gap + query ≤ window)."""
    check_positive_int("window", window)
    check_positive_int("answer_length", answer_length)
    if answer_length > window:
        raise ValueError(f"answer_length must fit in the window ({window}), got {answer_length}")
    from nlbook.tasks.recall import fact_line, query_text

    name = "Bakel"  # every name has 5 letters
    return window - len(fact_line(name, "a" * answer_length)) - len(query_text(name))


def recall_models(vocab_size: int, *, d_model: int = 32, n_layers: int = 2, n_heads: int = 2,
                  context_length: int = 64, **hope_options) -> dict[str, ModelFactory]:
    """``{"HOPE": f, "Transformer": g}``: factories ``f(seed)`` of a HopeLM and of the
    TransformerLM :func:`nlbook.hope.matched_models` matches to it (window ``context_length``)."""
    from nlbook.hope import matched_models

    def pair(seed: int):
        return matched_models(vocab_size, d_model, n_layers, n_heads,
                              context_length=context_length, seed=seed, **hope_options)

    return {"HOPE": lambda seed: pair(seed)[0], "Transformer": lambda seed: pair(seed)[1]}


def recall_switches() -> dict[str, Switch]:
    """``{"HOPE without in-context updates": ("HOPE", frozen_memories)}``."""
    from nlbook.hope import frozen_memories

    return {"HOPE without in-context updates": ("HOPE", frozen_memories)}


@dataclass
class RecallGapResult:
    """Recall accuracy of every model at every gap, with the fact and without it.

    Attributes:
        gaps: characters between the fact and the query.
        models: trained models, then switched variants.
        seeds: the seeds.
        accuracy: model -> (seeds, gaps) fraction of answer characters right (greedy,
            teacher-forced), the fact planted.
        control: model -> (seeds, gaps), the same prompts with the fact removed.
        exact_match: model -> (seeds, gaps) fraction of whole answers right.
        log_likelihood: model -> (seeds, gaps) mean log-probability of an answer character.
        modes: model -> "stream" or "window" (how it read the prompts).
        window: the fixed-context models' window; visible: the longest gap at which a fact
            still lies in it (:func:`visible_gap`).
        chance: 1/26.
        train_steps, train_seconds, train_loss: per trained model (last 50 steps' mean loss).
        parameters: per model. trials: prompts per gap and seed.
    """

    gaps: tuple[int, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    accuracy: dict[str, np.ndarray]
    control: dict[str, np.ndarray]
    exact_match: dict[str, np.ndarray]
    log_likelihood: dict[str, np.ndarray]
    modes: dict[str, str]
    window: int
    visible: int
    chance: float
    train_steps: dict[str, int]
    train_seconds: dict[str, float]
    train_loss: dict[str, float]
    parameters: dict[str, int]
    trials: int
    base: dict[str, str] = field(default_factory=dict)

    def mean(self, model: str, what: str = "accuracy") -> np.ndarray:
        """(gaps,) mean over seeds of ``what`` ("accuracy", "control", "exact_match",
        "log_likelihood") for ``model``."""
        tables = {"accuracy": self.accuracy, "control": self.control,
                  "exact_match": self.exact_match, "log_likelihood": self.log_likelihood}
        if what not in tables:
            raise ValueError(f"what must be one of {sorted(tables)}, got {what!r}")
        if model not in tables[what]:
            raise ValueError(f"model must be one of {list(self.models)}, got {model!r}")
        return tables[what][model].mean(axis=0)

    def table(self) -> str:
        header = ["model", "reads", *(f"gap {gap}" for gap in self.gaps), "train steps",
                  "train s"]
        rows = []
        for model in self.models:
            base = self.base.get(model, model)
            reads = "stream" if self.modes[model] == "stream" else f"window {self.window}"
            for label, values in (("", self.mean(model)), ("fact removed",
                                                             self.mean(model, "control"))):
                rows.append([model if not label else f"  {label}", reads if not label else "",
                             *(f"{100 * value:.1f}" for value in values),
                             "" if label else self.train_steps[base],
                             "" if label else f"{self.train_seconds[base]:.0f}"])
        seeds = ", ".join(str(seed) for seed in self.seeds)
        notes = [
            f"{self.trials} prompts per gap and seed (seeds {seeds}), new facts in Tiny "
            f"Shakespeare's validation text; answers of 4 random letters",
            f"a window of {self.window} characters holds the fact only for gaps <= "
            f"{self.visible}: beyond, a window model is at chance by construction",
            "parameters: " + ", ".join(f"{name} {count:,}" for name, count in
                                       self.parameters.items()),
            "training loss (last 50 steps, nats/char): " + ", ".join(
                f"{name} {loss:.3f}" for name, loss in self.train_loss.items()),
        ]
        for name, base in self.base.items():
            notes.append(f"{name}: the trained {base}, read with the switch (no training of "
                         f"its own)")
        title = (f"Recall across a gap: accuracy (%) per answer character; chance "
                 f"{100 * self.chance:.1f} % (1/26)")
        return format_table(header, rows, title=title, notes=notes)

    def plot(self, models: Sequence[str] | None = None, *, what: str = "accuracy",
             controls: bool = True) -> matplotlib.figure.Figure:
        """:func:`nlbook.viz.plot_recall_by_gap` of this result."""
        from nlbook.viz import plot_recall_by_gap

        chosen = list(self.models if models is None else models)
        control_what = "control" if what == "accuracy" else None
        return plot_recall_by_gap(
            self.gaps, {name: self.mean(name, what) for name in chosen},
            controls=({name: self.mean(name, control_what) for name in chosen}
                      if controls and control_what else None),
            chance=self.chance if what == "accuracy" else None, visible_gap=self.visible,
            ylabel="accuracy per answer character" if what == "accuracy" else what)


def _stream_source(text_ids: torch.Tensor, batch_size: int, context_length: int,
                   stream_length: int, seed: int, alignment: int) -> Callable:
    streams = ContiguousStreams(text_ids, batch_size, context_length,
                                stream_length=stream_length,
                                generator=torch.Generator().manual_seed(seed),
                                alignment=alignment)
    return streams.next_batch


def _window_source(vocabulary: CharVocabulary, batch_size: int, context_length: int,
                   seed: int, gaps: tuple[int, int], answer_length: int) -> Callable:
    from nlbook.tasks.recall import recall_training_batch

    generator = torch.Generator().manual_seed(seed)

    def next_batch():
        inputs, targets = recall_training_batch(vocabulary, batch_size, context_length,
                                                generator, gaps=gaps,
                                                answer_length=answer_length)
        return inputs, targets, None

    return next_batch


def run_recall(models: Mapping[str, ModelFactory] | None = None, *,
               vocabulary: CharVocabulary | None = None, gaps: Sequence[int] = RECALL_GAPS,
               steps: int = 600, minutes: float | None = None, batch_size: int = 16,
               context_length: int = 64, learning_rate: float = 2e-3,
               warmup_steps: int = 50, trials: int = 32, seeds: int | Sequence[int] = (0,),
               training_gaps: tuple[int, int] = (0, 256), spacing: int = 32,
               stream_length: int = 1024, answer_length: int = 4,
               switches: Mapping[str, Switch] | None = None,
               log: Callable[[str], None] | None = None) -> RecallGapResult:
    """Train every model briefly on recall data, then score its recall at every gap.

    Args:
        models: name -> factory of a fresh character model over ``vocabulary``; default
            :func:`recall_models` (HOPE and the matched Transformer, window
            ``context_length``).
        vocabulary: default Tiny Shakespeare's 65 characters.
        gaps: the test gaps.
        steps: optimizer steps per model (equal steps; the cosine schedule ends there).
        minutes: instead, a wall-clock budget per model (equal time): each trains until it
            has used ``minutes`` (``steps`` then only sizes its learning-rate schedule, so
            give a generous upper bound).
        batch_size, context_length, learning_rate, warmup_steps: of the training (AdamW,
            warm-up then cosine to lr/10; :class:`~nlbook.claims._common.TextLearner`).
        trials: prompts per gap and seed (the same prompts for every model).
        seeds: each builds the models afresh and draws its own training data.
        training_gaps, spacing: of :func:`~nlbook.tasks.recall.recall_training_text` (HOPE's
            text); the window models train with gaps up to what fits in their window.
        stream_length: HOPE's carried streams restart after this many characters.
        answer_length: letters per answer.
        switches: test-time variants; default :func:`recall_switches` when ``models`` is None.
        log: called with one line per trained model; None: silent.
    """
    from nlbook.data import load_tiny_shakespeare
    from nlbook.tasks.recall import recall_accuracy, recall_training_text

    if vocabulary is None:
        vocabulary = CharVocabulary.from_text(load_tiny_shakespeare())
    default = models is None
    models = check_models(recall_models(len(vocabulary), context_length=context_length)
                          if default else models)
    switches = check_switches(recall_switches() if default and switches is None else switches,
                              models)
    check_callable("log", log, allow_none=True)
    check_positive_int("steps", steps)
    check_positive_int("trials", trials)
    check_positive_int("batch_size", batch_size)
    check_positive_int("context_length", context_length)
    check_scalar_in_range("minutes", minutes, 0.0, math.inf, low_inclusive=False,
                          allow_none=True)
    check_int_sequence("gaps", gaps, low=0)
    shortest, longest = check_int_sequence("training_gaps", training_gaps, low=0, length=2)
    if shortest > longest:
        raise ValueError(f"training_gaps must be (shortest, longest), got {training_gaps!r}")
    check_int("spacing", spacing, low=0)
    check_positive_int("stream_length", stream_length)
    check_positive_int("answer_length", answer_length)
    check_int("warmup_steps", warmup_steps, low=0)
    seeds = check_seeds(seeds)
    gaps = tuple(gaps)
    all_models = (*models, *switches)
    shape = (len(seeds), len(gaps))
    tables = {key: {name: np.zeros(shape) for name in all_models}
              for key in ("accuracy", "control", "exact_match", "log_likelihood")}
    modes: dict[str, str] = {}
    train_steps: dict[str, int] = {}
    train_seconds = dict.fromkeys(models, 0.0)
    train_loss: dict[str, float] = {}
    parameters: dict[str, int] = {}
    for row, seed in enumerate(seeds):
        text_ids = None
        for model_name, factory in models.items():
            model = build_model(factory, seed, model_name)
            parameters.setdefault(model_name, parameters_of(model))
            learner = TextLearner(model, learning_rate=learning_rate, total_steps=steps,
                                  warmup_steps=warmup_steps)
            if learner.stateful:
                if text_ids is None:
                    text = recall_training_text(gaps=training_gaps, spacing=spacing,
                                                answer_length=answer_length, seed=seed)
                    text_ids = vocabulary.encode(text, name="recall training text")
                next_batch = _stream_source(text_ids, batch_size, context_length,
                                            stream_length, seed, model.stream_alignment())
            else:
                next_batch = _window_source(vocabulary, batch_size, context_length, seed,
                                            (0, training_gaps[1]), answer_length)
            losses = []
            deadline = None if minutes is None else time.perf_counter() + 60.0 * minutes
            while learner.steps < steps:
                losses.append(learner.step(*next_batch()))
                if deadline is not None and time.perf_counter() >= deadline:
                    break
            train_steps[model_name] = learner.steps
            train_seconds[model_name] += learner.seconds
            train_loss[model_name] = float(np.mean(losses[-50:]))
            evaluated = [(model_name, None)] + [(name, switch) for name, (base, switch)
                                                in switches.items() if base == model_name]
            for name, switch in evaluated:
                for control, key in ((None, "accuracy"), ("removed", "control")):
                    arguments = dict(gaps=gaps, trials=trials, seed=seed,
                                     answer_length=answer_length, control=control)
                    if switch is None:
                        result = recall_accuracy(model, vocabulary, **arguments)
                    else:
                        with switch(model):
                            result = recall_accuracy(model, vocabulary, **arguments)
                    tables[key][name][row] = [result.accuracy[gap] for gap in gaps]
                    if control is None:
                        tables["exact_match"][name][row] = [result.exact_match[gap]
                                                            for gap in gaps]
                        tables["log_likelihood"][name][row] = [result.log_likelihood[gap]
                                                               for gap in gaps]
                        modes[name] = result.mode
            if log is not None:
                log(f"seed {seed} {model_name}: {learner.steps} steps in {learner.seconds:.0f} "
                    f"s, loss {train_loss[model_name]:.3f}; recall " + ", ".join(
                        f"{gap}: {100 * value:.0f}%" for gap, value in
                        zip(gaps, tables['accuracy'][model_name][row], strict=True)))
    for name, (base, _) in switches.items():
        parameters[name] = parameters[base]
    window = context_length
    return RecallGapResult(gaps, all_models, seeds, tables["accuracy"], tables["control"],
                           tables["exact_match"], tables["log_likelihood"], modes, window,
                           visible_gap(window, answer_length), 1 / 26, train_steps,
                           train_seconds, train_loss, parameters, trials,
                           base={name: base for name, (base, _) in switches.items()})
