"""Experiment 2 of chapter 7: formal-language recognition (the paper's Table 5), HOPE against a
Transformer of matched size, trained on short strings and tested on longer ones.

Behrouz et al. (arXiv 2512.24695) Table 5 reports, after Irie et al. 2023, accuracy on parity,
(aa)*, (abab)*, aⁿbⁿ, aⁿbⁿcⁿ and Shuffle-2, in two length bins: Bin0 the training lengths and
Bin1 longer strings; HOPE 100 everywhere, the Transformer 0 on parity's longer bin.

This module measures the same comparison with the task harness of
:mod:`nlbook.tasks.formal_languages` (accept/reject at an end token, balanced data with
near-miss negatives, so **chance is 50 %**, not the papers' ~0 %; see that module for how the
formulation differs). Defaults, chosen before any run:

- strings of 2–16 characters for training and Bin0, **Bin1 = 32–64 characters, 2–4× the
  longest training string** (the papers: 1–50 and 51–100);
- every prefix labelled (``supervision="prefix"``, the papers' dense signal), accuracy on the
  end decision only;
- ``steps`` optimizer steps of ``batch_size`` fresh strings for every model (**equal steps**:
  these tasks are small, and a step-matched comparison is reproducible on any machine; the
  seconds each model took are reported beside it), AdamW at a constant learning rate;
- HOPE (the course's :class:`nlbook.hope.HopeLM`, its default block) and the Transformer whose
  width :func:`nlbook.hope.matched_models` picks to match HOPE's parameter count, with a
  context of 65 (the longest Bin1 string and its end token). The Transformer's learned
  positions beyond 17 are never trained: that is part of what Bin1 tests for it;
- **HOPE without in-context CMS updates** is the trained HOPE evaluated inside
  :func:`nlbook.hope.frozen_cms`. On training strings (at most 17 tokens with the end token)
  the CMS's fastest block (level 1, updated every 32 tokens) never fires, so training with
  ``cms_learning_rates`` all 0 would give the very same model: the switch costs no training.
  The two differ only on Bin1, where HOPE's CMS updates at tokens 32 and 64.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.figure
import numpy as np

from nlbook._checks import check_callable, check_positive_int
from nlbook.claims._common import (
    ModelFactory,
    Switch,
    build_model,
    check_models,
    check_seeds,
    check_switches,
    format_table,
    parameters_of,
)
from nlbook.tasks.formal_languages import (
    FORMAL_VOCABULARY,
    LANGUAGES,
    _language,
    evaluate_formal_language,
    formal_language_task,
    train_formal_language,
)

__all__ = ["FORMAL_TEST_LENGTHS", "FORMAL_TRAIN_LENGTHS", "LANGUAGE_LABELS", "FormalResult",
           "formal_models", "formal_switches", "run_formal"]

#: Training lengths (and Bin0), inclusive.
FORMAL_TRAIN_LENGTHS = (2, 16)
#: Bin1 lengths: 2–4× the longest training string.
FORMAL_TEST_LENGTHS = (32, 64)
#: How the tables and figures write each language (the paper's notation).
LANGUAGE_LABELS = {"parity": "parity", "aa_star": "(aa)*", "abab_star": "(abab)*",
                   "anbn": "aⁿbⁿ", "anbncn": "aⁿbⁿcⁿ", "shuffle2": "Shuffle-2"}


def formal_models(*, d_model: int = 32, n_layers: int = 2, n_heads: int = 2,
                  context_length: int = FORMAL_TEST_LENGTHS[1] + 1, **hope_options
                  ) -> dict[str, ModelFactory]:
    """``{"HOPE": f, "Transformer": g}``: factories ``f(seed)`` of a HopeLM of the given size
    over :data:`~nlbook.tasks.formal_languages.FORMAL_VOCABULARY` (13 tokens) and of the
    TransformerLM that :func:`nlbook.hope.matched_models` matches to it (context
    ``context_length``, at least the longest Bin1 string + 1)."""
    from nlbook.hope import matched_models

    def pair(seed: int):
        return matched_models(len(FORMAL_VOCABULARY), d_model, n_layers, n_heads,
                              context_length=context_length, seed=seed, **hope_options)

    return {"HOPE": lambda seed: pair(seed)[0], "Transformer": lambda seed: pair(seed)[1]}


def formal_switches() -> dict[str, Switch]:
    """``{"HOPE without in-context CMS updates": ("HOPE", frozen_cms)}`` (see the module
    docstring for why this switch equals training without the updates here)."""
    from nlbook.hope import frozen_cms

    return {"HOPE without in-context CMS updates": ("HOPE", frozen_cms)}


@dataclass
class FormalResult:
    """Accuracies of every model on every language and bin.

    Attributes:
        languages: the languages, in the paper's column order.
        models: trained models, then switched variants.
        seeds: the seeds (each: its own model initialisation, training strings and test
            strings; under one seed every model is scored on the same test strings).
        accuracy: model -> {"bin0": (languages, seeds), "bin1": (languages, seeds)} arrays of
            accuracies in [0, 1].
        train_seconds: model -> total training seconds over languages and seeds (a switched
            variant: its base model's).
        parameters: model -> parameter count.
        steps, batch_size, train_lengths, test_lengths, examples, supervision: the setup.
        chance: 0.5 (balanced data).
    """

    languages: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    accuracy: dict[str, dict[str, np.ndarray]]
    train_seconds: dict[str, float]
    parameters: dict[str, int]
    steps: int
    batch_size: int
    train_lengths: tuple[int, int]
    test_lengths: tuple[int, int]
    examples: int
    supervision: str
    chance: float = 0.5
    base: dict[str, str] = field(default_factory=dict)

    def mean(self, model: str, split: str) -> np.ndarray:
        """(languages,) accuracy of ``model`` on ``split`` ("bin0"/"bin1"), mean over seeds."""
        if model not in self.accuracy:
            raise ValueError(f"model must be one of {list(self.models)}, got {model!r}")
        if split not in ("bin0", "bin1"):
            raise ValueError(f"split must be 'bin0' or 'bin1', got {split!r}")
        return self.accuracy[model][split].mean(axis=1)

    def table(self) -> str:
        """The table the chapter prints: accuracy in %, one row per model and bin."""
        header = ["model", "bin", *(LANGUAGE_LABELS[name] for name in self.languages),
                  "train s"]
        rows = []
        for model in self.models:
            for split, lengths in (("bin0", self.train_lengths), ("bin1", self.test_lengths)):
                values = self.accuracy[model][split]
                cells = []
                for index in range(len(self.languages)):
                    seeds = values[index]
                    cell = f"{100 * seeds.mean():.1f}"
                    if len(seeds) > 1:
                        cell += f" ±{100 * seeds.std():.1f}"
                    cells.append(cell)
                seconds = f"{self.train_seconds[model]:.0f}" if split == "bin0" else ""
                rows.append([model if split == "bin0" else "",
                             f"{split.capitalize()} {lengths[0]}-{lengths[1]}", *cells, seconds])
        seeds = ", ".join(str(seed) for seed in self.seeds)
        title = (f"Formal languages: accuracy (%) of the accept/reject decision; chance "
                 f"{100 * self.chance:.0f} %")
        notes = [
            f"{self.steps} steps x {self.batch_size} strings per model and language (equal "
            f"steps), trained on lengths {self.train_lengths[0]}-{self.train_lengths[1]}, "
            f"{self.supervision} supervision; {self.examples} balanced test strings per bin; "
            f"seed(s) {seeds}" + (" (mean ± std over seeds)" if len(self.seeds) > 1 else ""),
            "parameters: " + ", ".join(f"{name} {count:,}" for name, count in
                                       self.parameters.items()),
        ]
        for name, base in self.base.items():
            notes.append(f"{name}: the trained {base}, evaluated with the switch (no training "
                         f"of its own; train s is {base}'s)")
        return format_table(header, rows, title=title, notes=notes)

    def plot(self, models: Sequence[str] | None = None) -> matplotlib.figure.Figure:
        """:func:`nlbook.viz.plot_formal_accuracy` of this result (``models``: a subset)."""
        from nlbook.viz import plot_formal_accuracy

        chosen = list(self.models if models is None else models)
        return plot_formal_accuracy(
            [LANGUAGE_LABELS[name] for name in self.languages],
            {name: {"bin0": self.mean(name, "bin0"), "bin1": self.mean(name, "bin1")}
             for name in chosen},
            chance=self.chance,
            bins=(f"Bin0: lengths {self.train_lengths[0]}-{self.train_lengths[1]} (trained)",
                  f"Bin1: lengths {self.test_lengths[0]}-{self.test_lengths[1]} (longer)"))


def run_formal(models: Mapping[str, ModelFactory] | None = None, *,
               languages: Sequence[str] = LANGUAGES, steps: int = 400, batch_size: int = 32,
               learning_rate: float = 3e-3, seeds: int | Sequence[int] = (0,),
               train_lengths: Sequence[int] = FORMAL_TRAIN_LENGTHS,
               test_lengths: Sequence[int] = FORMAL_TEST_LENGTHS, examples: int = 512,
               supervision: str = "prefix", switches: Mapping[str, Switch] | None = None,
               log: Callable[[str], None] | None = None) -> FormalResult:
    """Train every model on every language and score it on Bin0 and Bin1.

    Args:
        models: name -> factory of a fresh model (``factory(seed=seed)`` or ``factory()``) with the
            course's interface (``logits, loss = model(idx, targets)``, vocabulary at least
            :data:`~nlbook.tasks.formal_languages.FORMAL_VOCABULARY`); default
            :func:`formal_models` (HOPE and the matched Transformer).
        languages: a subset of :data:`~nlbook.tasks.formal_languages.LANGUAGES` (aliases ok).
        steps: optimizer steps per model, language and seed (equal steps for every model).
        batch_size, learning_rate, supervision: of
            :func:`~nlbook.tasks.formal_languages.train_formal_language`.
        seeds: each seed builds the models afresh (``factory(seed=seed)``) and draws its own
            training strings; the test strings depend on the seed only, so every model is
            scored on the same strings.
        train_lengths, test_lengths: Bin0 (training) and Bin1 string lengths, inclusive.
        examples: balanced test strings per bin.
        switches: name -> (trained model, context manager): variants evaluated inside the
            switch with no training of their own; default :func:`formal_switches` when
            ``models`` is None (switches whose model is not in ``models`` are left out).
        log: called with one line per trained model (e.g. ``print``); None: silent.

    Returns:
        :class:`FormalResult`.
    """
    default = models is None
    models = check_models(formal_models() if default else models)
    switches = check_switches(formal_switches() if default and switches is None else switches,
                              models)
    if isinstance(languages, str) or not isinstance(languages, Sequence) or not languages:
        raise ValueError(f"languages must be a non-empty sequence of {LANGUAGES}, got "
                         f"{languages!r}")
    names = []
    for index, language in enumerate(languages):
        try:
            names.append(_language(language))
        except ValueError as error:
            raise ValueError(f"languages[{index}]: {error}") from None
    names = tuple(names)
    check_callable("log", log, allow_none=True)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("examples", examples)
    seeds = check_seeds(seeds)
    tasks = {name: formal_language_task(name, train_lengths=train_lengths,
                                        test_lengths=test_lengths) for name in names}
    all_models = (*models, *switches)
    accuracy = {model: {split: np.zeros((len(names), len(seeds))) for split in ("bin0", "bin1")}
                for model in all_models}
    seconds = dict.fromkeys(all_models, 0.0)
    parameters: dict[str, int] = {}
    for column, seed in enumerate(seeds):
        for row, language in enumerate(names):
            task = tasks[language]
            for model_name, factory in models.items():
                model = build_model(factory, seed, model_name)
                parameters.setdefault(model_name, parameters_of(model))
                start = time.perf_counter()
                train_formal_language(model, task, steps=steps, batch_size=batch_size,
                                      learning_rate=learning_rate, seed=seed,
                                      supervision=supervision)
                seconds[model_name] += time.perf_counter() - start
                evaluated = [(model_name, None)] + [(name, switch) for name, (base, switch)
                                                    in switches.items() if base == model_name]
                for name, switch in evaluated:
                    for split in ("bin0", "bin1"):
                        if switch is None:
                            score = evaluate_formal_language(model, task, split,
                                                             examples=examples, seed=seed)
                        else:
                            with switch(model):
                                score = evaluate_formal_language(model, task, split,
                                                                 examples=examples, seed=seed)
                        accuracy[name][split][row, column] = score
                if log is not None:
                    log(f"{language:>9} seed {seed} {model_name}: Bin0 "
                        f"{100 * accuracy[model_name]['bin0'][row, column]:.1f} % Bin1 "
                        f"{100 * accuracy[model_name]['bin1'][row, column]:.1f} %")
    for name, (base, _) in switches.items():
        seconds[name] = seconds[base]
        parameters[name] = parameters[base]
    return FormalResult(names, all_models, seeds, accuracy, seconds, parameters, steps,
                        batch_size, tasks[names[0]].train_lengths, tasks[names[0]].test_lengths,
                        examples, supervision,
                        base={name: base for name, (base, _) in switches.items()})
