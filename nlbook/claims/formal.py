"""Experiment 2 of chapter 7: formal languages, the smallest faithful version of the paper's
Table 5, under the protocol of :mod:`nlbook.claims.protocol`.

Behrouz et al. (arXiv 2512.24695) Table 5 reports, after Irie, Csordás & Schmidhuber 2023,
accuracy on parity, (aa)*, (abab)*, aⁿbⁿ, aⁿbⁿcⁿ and Shuffle-2 in two length bins (HOPE 100
everywhere; LSTM 100 everywhere; the Transformer 0 on parity's bin 1). The setting here is
Bhattamishra et al.'s (:mod:`nlbook.tasks.next_character`):

- 10,000 positive training strings of lengths 2-50; test bin 0: 2,000 strings of lengths 2-50,
  bin 1: 2,000 of lengths 51-100 (for the languages with one string per length, every
  distinct string of the range once: 12-25 strings);
- next-character-set prediction at every position (k-hot targets, sigmoid outputs, binary
  cross-entropy); a string is correct only if every output at every position is right
  (chance about 0 %);
- every model takes the same optimizer steps on batches of the same size (**equal tokens**),
  AdamW at a constant rate after a short warm-up; ``seeds`` (default 3) each build every model
  afresh and draw their own training strings; the test strings are the same for every model;
- accuracies with 95 % Wilson intervals (each seed's and pooled), mean ± std over seeds;
- the **positive control**: an LSTM (``torch.nn.LSTM``) must reach ``control_threshold``
  (95 %) on bin 1 of parity and (aa)* in every seed before any verdict is printed; if it does
  not, the budget is too small and the verdict is "not tested at this budget";
- the models (:func:`formal_models`): the LSTM, Transformer++ (rotary positions: no learned
  absolute position, so bin 1's positions are not untrained table entries), and HOPE with
  chunks that act inside a training string (Titans memory chunk 8, other self-modified
  projections chunk 4, fast CMS level every 8 tokens); and on parity the delta rule with β in
  (0, 1) against β in (0, 2) (:func:`formal_delta_models`; Grazzi et al. 2024).
- ``switches`` evaluate a trained model with something switched off at test time
  (:func:`formal_switches`: HOPE with its in-context CMS updates frozen). Since the CMS's
  fast level fires every 8 tokens, it acts in training here: the switch is a test-time
  ablation of the trained HOPE, not a model trained without the updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import matplotlib.figure
import numpy as np

from nlbook._checks import check_callable, check_positive_int, check_scalar_in_range
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
from nlbook.claims.protocol import (
    AccuracyCell,
    Control,
    Verdict,
    accuracy_cell,
    compare,
    equal_time_steps,
    interleaved_step_seconds,
    verdict,
)
from nlbook.tasks.formal_languages import FORMAL_VOCABULARY, LANGUAGES, _language
from nlbook.tasks.next_character import (
    TABLE5_TEST_LENGTHS,
    TABLE5_TEST_STRINGS,
    TABLE5_TRAIN_LENGTHS,
    TABLE5_TRAIN_STRINGS,
    prediction_strings,
    strings_correct,
    train_next_character,
)

__all__ = ["FORMAL_TEST_LENGTHS", "FORMAL_TRAIN_LENGTHS", "HOPE_FORMAL_OPTIONS",
           "LANGUAGE_LABELS", "FormalResult", "formal_delta_models", "formal_models",
           "formal_switches", "run_formal"]

#: Training lengths (and bin 0), inclusive: Bhattamishra et al.'s.
FORMAL_TRAIN_LENGTHS = TABLE5_TRAIN_LENGTHS
#: Bin 1 lengths, inclusive.
FORMAL_TEST_LENGTHS = TABLE5_TEST_LENGTHS
#: How the tables and figures write each language (the paper's notation).
LANGUAGE_LABELS = {"parity": "parity", "aa_star": "(aa)*", "abab_star": "(abab)*",
                   "anbn": "aⁿbⁿ", "anbncn": "aⁿbⁿcⁿ", "shuffle2": "Shuffle-2"}
#: HOPE's chunks, all shorter than a training string: the Titans memory updates every 8
#: tokens, the other self-modified projections every 4, the fast CMS level every 8 (the slow
#: level keeps the block's default: no in-context update).
HOPE_FORMAL_OPTIONS = {"chunk_size_memory": 8, "chunk_size_others": 4,
                       "cms_chunk_sizes": (256, 8)}
_SPLITS = ("bin0", "bin1")


def formal_models(*, d_model: int = 32, n_layers: int = 1, n_heads: int = 2,
                  context_length: int = FORMAL_TEST_LENGTHS[1] + 1, **hope_options
                  ) -> dict[str, ModelFactory]:
    """``{"LSTM": f, "Transformer": g, "HOPE": h}``: factories ``f(seed)`` over
    :data:`~nlbook.tasks.formal_languages.FORMAL_VOCABULARY` (13 tokens), all of width
    ``d_model``; the Transformer is Transformer++ (:class:`nlbook.transformer_plus_plus.
    TransformerPlusPlusLM`: rotary positions, SwiGLU, RMSNorm) with ``n_layers`` blocks;
    HOPE has ``n_layers`` blocks with :data:`HOPE_FORMAL_OPTIONS` (``hope_options`` override
    them); the LSTM has one layer (Bhattamishra et al.'s control). ``context_length``: at
    least the longest bin-1 string."""
    from nlbook.claims.baselines import LSTMLM
    from nlbook.hope import HopeLM
    from nlbook.transformer_plus_plus import TransformerPlusPlusLM

    for name, value in (("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads),
                        ("context_length", context_length)):
        check_positive_int(name, value)
    vocab = len(FORMAL_VOCABULARY)
    options = {**HOPE_FORMAL_OPTIONS, **hope_options}
    return {
        "LSTM": lambda seed: LSTMLM(vocab, d_model, 1, context_length=context_length),
        "Transformer": lambda seed: TransformerPlusPlusLM(vocab, d_model, n_layers, n_heads,
                                                          context_length=context_length),
        "HOPE": lambda seed: HopeLM(vocab, d_model, n_layers, n_heads, seed=seed,
                                    context_length=context_length, **options),
    }


def formal_delta_models(*, d_model: int = 32, n_layers: int = 1, n_heads: int = 2,
                        context_length: int = FORMAL_TEST_LENGTHS[1] + 1
                        ) -> dict[str, ModelFactory]:
    """``{"delta β∈(0,1)": f, "delta β∈(0,2)": g}``: the same
    :class:`nlbook.claims.baselines.DeltaRuleLM` with ``beta_max`` 1 and 2 (Grazzi et al.
    2024: only the second can have negative eigenvalues, which parity needs)."""
    from nlbook.claims.baselines import DeltaRuleLM

    for name, value in (("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads),
                        ("context_length", context_length)):
        check_positive_int(name, value)
    vocab = len(FORMAL_VOCABULARY)
    return {f"delta β∈(0,{limit})": (lambda seed, limit=limit: DeltaRuleLM(
        vocab, d_model, n_layers, n_heads, context_length=context_length,
        beta_max=float(limit))) for limit in (1, 2)}


def formal_switches() -> dict[str, Switch]:
    """``{"HOPE without in-context CMS updates": ("HOPE", frozen_cms)}``: the trained HOPE
    scored with its CMS's in-context updates frozen (a test-time ablation)."""
    from nlbook.hope import frozen_cms

    return {"HOPE without in-context CMS updates": ("HOPE", frozen_cms)}


@dataclass
class FormalResult:
    """Strings scored right by every model on every language and bin, and what they mean.

    Attributes:
        languages: the languages, in the paper's column order.
        models: trained models, then switched variants.
        seeds: the seeds.
        correct: model -> {"bin0"/"bin1": (languages, seeds) int arrays of strings right}.
        totals: {"bin0"/"bin1": (languages,) int arrays}: strings in each test bin.
        accuracy: model -> {"bin0"/"bin1": (languages, seeds) accuracies in [0, 1]}.
        train_seconds: model -> training seconds summed over languages and seeds.
        step_ms: model -> median ms per training step, measured interleaved.
        parameters: model -> parameter count.
        steps, batch_size, learning_rate, train_strings, train_lengths, test_lengths: setup.
        control: the positive control (None when its model or languages were not run).
        claim_model: the model whose claim is judged ("HOPE": "100 on every task").
        chance: 0.0 (a string is right only if every position is).
        base: switched variant -> the trained model it reads.
    """

    languages: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    correct: dict[str, dict[str, np.ndarray]]
    totals: dict[str, np.ndarray]
    accuracy: dict[str, dict[str, np.ndarray]]
    train_seconds: dict[str, float]
    step_ms: dict[str, float]
    parameters: dict[str, int]
    steps: int
    batch_size: int
    learning_rate: float
    train_strings: int
    train_lengths: tuple[int, int]
    test_lengths: tuple[int, int]
    control: Control | None
    claim_model: str | None = "HOPE"
    control_threshold: float = 0.95
    chance: float = 0.0
    base: dict[str, str] = field(default_factory=dict)

    def _check(self, model: str, split: str) -> None:
        if model not in self.accuracy:
            raise ValueError(f"model must be one of {list(self.models)}, got {model!r}")
        if split not in _SPLITS:
            raise ValueError(f"split must be 'bin0' or 'bin1', got {split!r}")

    def mean(self, model: str, split: str) -> np.ndarray:
        """(languages,) accuracy of ``model`` on ``split`` ("bin0"/"bin1"), mean over seeds."""
        self._check(model, split)
        return self.accuracy[model][split].mean(axis=1)

    def cell(self, model: str, split: str, language: str) -> AccuracyCell:
        """The :class:`~nlbook.claims.protocol.AccuracyCell` of one model, bin and language."""
        self._check(model, split)
        row = self.languages.index(_language(language))
        total = int(self.totals[split][row])
        return accuracy_cell([int(c) for c in self.correct[model][split][row]],
                             [total] * len(self.seeds))

    def untested(self) -> list[tuple[str, str]]:
        """(language, bin) pairs where the control model itself stays below the control's
        threshold: the budget is too small there, so they test nothing."""
        if self.control is None or self.control.model not in self.accuracy:
            return []
        return [(language, split) for language in self.languages for split in _SPLITS
                if self.cell(self.control.model, split, language).mean < self.control_threshold]

    def outcomes(self) -> list[bool | None]:
        """One per language and bin that the control model solves (:meth:`untested` are left
        out), for :func:`~nlbook.claims.protocol.verdict` on the claim "``claim_model`` solves
        every task": True when its mean accuracy reaches the control's threshold, False when
        it is below the control model by a finding (:func:`~nlbook.claims.protocol.compare`),
        None otherwise."""
        if self.claim_model not in self.accuracy or self.control is None \
                or self.control.model not in self.accuracy:
            return []
        untested = set(self.untested())
        out: list[bool | None] = []
        for language in self.languages:
            for split in _SPLITS:
                if (language, split) in untested:
                    continue
                cell = self.cell(self.claim_model, split, language)
                if cell.mean >= self.control_threshold:
                    out.append(True)
                elif compare(cell, self.cell(self.control.model, split, language)
                             ).direction == -1:
                    out.append(False)
                else:
                    out.append(None)
        return out

    def verdict(self) -> Verdict:
        """The verdict on "``claim_model`` scores 100 on every task" (Table 5): "not tested
        at this budget" unless the control passed."""
        return verdict(self.control, self.outcomes(), seeds=len(self.seeds))

    def equal_time_steps(self) -> dict[str, int]:
        """Each trained model's step budget at equal time: the time the slowest model takes
        for ``steps`` steps, divided by each model's interleaved per-step time."""
        trained = {name: self.step_ms[name] / 1000 for name in self.models
                   if name not in self.base}
        return equal_time_steps(trained, self.steps * max(trained.values()))

    def equal_time_note(self) -> str:
        budgets = ", ".join(f"{name} {steps}" for name, steps in
                            self.equal_time_steps().items())
        return (f"equal time (second column, not trained here): in the slowest model's time "
                f"for {self.steps} steps the models would take {budgets} steps")

    def table(self) -> str:
        """Accuracy (%) per model and bin: mean ± std over seeds [pooled 95 % interval]."""
        header = ["model", "bin", *(LANGUAGE_LABELS[name] for name in self.languages),
                  "ms/step"]
        rows = []
        for model in self.models:
            for split, lengths in zip(_SPLITS, (self.train_lengths, self.test_lengths),
                                      strict=True):
                cells = [str(self.cell(model, split, language)) for language in self.languages]
                timing = f"{self.step_ms[model]:.0f}" if split == "bin0" else ""
                rows.append([model if split == "bin0" else "",
                             f"{split.capitalize()} {lengths[0]}-{lengths[1]}", *cells, timing])
        seeds = ", ".join(str(seed) for seed in self.seeds)
        strings = ", ".join(f"{LANGUAGE_LABELS[name]} {int(self.totals['bin0'][i])}/"
                            f"{int(self.totals['bin1'][i])}"
                            for i, name in enumerate(self.languages))
        notes = [
            f"{self.steps} steps x {self.batch_size} strings for every model (equal tokens), "
            f"AdamW {self.learning_rate:g}; {self.train_strings} training strings of lengths "
            f"{self.train_lengths[0]}-{self.train_lengths[1]}; seeds {seeds}",
            f"test strings per bin (bin0/bin1): {strings}",
            "cells: mean ± std over seeds [95 % Wilson interval of all seeds' strings]; "
            "ms/step: medians of steps measured interleaved (the models in turn)",
            self.equal_time_note(),
            "parameters: " + ", ".join(f"{name} {count:,}" for name, count in
                                       self.parameters.items()),
        ]
        for name, base in self.base.items():
            notes.append(f"{name}: the trained {base}, scored with the switch (no training of "
                         f"its own)")
        notes.append(str(self.control) if self.control is not None
                     else "positive control: not run")
        if self.claim_model in self.accuracy:
            untested = ", ".join(f"{LANGUAGE_LABELS[language]} {split}"
                                 for language, split in self.untested())
            if untested:
                notes.append(f"not tested at this budget (the control model is below "
                             f"{100 * self.control_threshold:.0f} % there): {untested}")
            notes.append(f"verdict on '{self.claim_model} solves every task': {self.verdict()}")
        title = ("Formal languages (next-character-set prediction): strings entirely right, %; "
                 "chance about 0 %")
        return format_table(header, rows, title=title, notes=notes)

    def summary(self) -> str:
        """One sentence for the claims map: the control, then the claim model's and the
        control's mean accuracy per bin over the languages the control solves."""
        if self.control is None:
            return "no positive control was run"
        parts = [f"{self.control.model} control {'passed' if self.control.passed else 'FAILED'}"
                 f" ({100 * self.control.measured:.1f} % lowest seed on its bin-1 cells)"]
        if self.claim_model in self.accuracy:
            untested = set(self.untested())
            for split in _SPLITS:
                cells = [self.cell(self.claim_model, split, language).mean
                         for language in self.languages if (language, split) not in untested]
                if cells:
                    parts.append(f"{self.claim_model} {split} mean {100 * np.mean(cells):.1f} % "
                                 f"over the {len(cells)} languages the control solves")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        """Plain data (JSON-ready): the setting, the seeds and every per-seed count."""
        return {
            "languages": list(self.languages), "models": list(self.models),
            "seeds": list(self.seeds),
            "correct": {model: {split: values.tolist() for split, values in splits.items()}
                        for model, splits in self.correct.items()},
            "totals": {split: values.tolist() for split, values in self.totals.items()},
            "train_seconds": dict(self.train_seconds), "step_ms": dict(self.step_ms),
            "parameters": dict(self.parameters), "steps": self.steps,
            "batch_size": self.batch_size, "learning_rate": self.learning_rate,
            "train_strings": self.train_strings, "train_lengths": list(self.train_lengths),
            "test_lengths": list(self.test_lengths),
            "control": None if self.control is None else asdict(self.control),
            "claim_model": self.claim_model, "control_threshold": self.control_threshold,
            "chance": self.chance, "base": dict(self.base)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FormalResult:
        """The inverse of :meth:`to_dict`."""
        needed = {"languages", "models", "seeds", "correct", "totals", "step_ms"}
        if not isinstance(data, Mapping) or not needed <= set(data):
            raise ValueError(f"data must be a dict with keys {sorted(needed)} (what "
                             f"FormalResult.to_dict returns)")
        correct = {model: {split: np.asarray(values, dtype=np.int64)
                           for split, values in splits.items()}
                   for model, splits in data["correct"].items()}
        totals = {split: np.asarray(values, dtype=np.int64)
                  for split, values in data["totals"].items()}
        accuracy = {model: {split: correct[model][split] / totals[split][:, None]
                            for split in _SPLITS} for model in correct}
        control = None if data["control"] is None else Control(**data["control"])
        return cls(tuple(data["languages"]), tuple(data["models"]), tuple(data["seeds"]),
                   correct, totals, accuracy, dict(data["train_seconds"]),
                   dict(data["step_ms"]), dict(data["parameters"]), int(data["steps"]),
                   int(data["batch_size"]), float(data["learning_rate"]),
                   int(data["train_strings"]), tuple(data["train_lengths"]),
                   tuple(data["test_lengths"]), control, claim_model=data["claim_model"],
                   control_threshold=float(data["control_threshold"]),
                   chance=float(data["chance"]), base=dict(data["base"]))

    def plot(self, models: Sequence[str] | None = None) -> matplotlib.figure.Figure:
        """:func:`nlbook.viz.plot_formal_accuracy` of this result (``models``: a subset)."""
        from nlbook.viz import plot_formal_accuracy

        chosen = list(self.models if models is None else models)
        for name in chosen:
            self._check(name, "bin0")
        return plot_formal_accuracy(
            [LANGUAGE_LABELS[name] for name in self.languages],
            {name: {"bin0": self.mean(name, "bin0"), "bin1": self.mean(name, "bin1")}
             for name in chosen},
            chance=self.chance,
            bins=(f"Bin0: lengths {self.train_lengths[0]}-{self.train_lengths[1]} (trained)",
                  f"Bin1: lengths {self.test_lengths[0]}-{self.test_lengths[1]} (longer)"))


def _check_lengths(name: str, lengths: Sequence[int]) -> tuple[int, int]:
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence) \
            or len(lengths) != 2:
        raise ValueError(f"{name} must be (shortest, longest), got {lengths!r}")
    for value in lengths:
        check_positive_int(name, value)
    if lengths[0] > lengths[1]:
        raise ValueError(f"{name} must be (shortest, longest) with shortest <= longest, got "
                         f"{tuple(lengths)}")
    return int(lengths[0]), int(lengths[1])


def run_formal(models: Mapping[str, ModelFactory] | None = None, *,
               languages: Sequence[str] = LANGUAGES, steps: int = 300, batch_size: int = 32,
               learning_rate: float = 3e-3, seeds: int | Sequence[int] = (0, 1, 2),
               train_lengths: Sequence[int] = FORMAL_TRAIN_LENGTHS,
               test_lengths: Sequence[int] = FORMAL_TEST_LENGTHS,
               train_strings: int = TABLE5_TRAIN_STRINGS, examples: int = TABLE5_TEST_STRINGS,
               switches: Mapping[str, Switch] | None = None, control: str | None = "LSTM",
               control_languages: Sequence[str] = ("parity", "aa_star"),
               control_threshold: float = 0.95, claim_model: str | None = "HOPE",
               log: Callable[[str], None] | None = None) -> FormalResult:
    """Train every model on every language (equal steps and batch) and score both bins.

    Args:
        models: name -> factory of a fresh model (``factory(seed=seed)`` or ``factory()``) with
            the course's interface and a vocabulary of at least
            :data:`~nlbook.tasks.formal_languages.FORMAL_VOCABULARY`; default
            :func:`formal_models` (LSTM, Transformer++, HOPE).
        languages: a subset of :data:`~nlbook.tasks.formal_languages.LANGUAGES` (aliases ok).
        steps, batch_size, learning_rate: of
            :func:`~nlbook.tasks.next_character.train_next_character`, the same for every model.
        seeds: each seed builds the models afresh and draws its own training strings
            (``numpy`` seed ``seed``); the test strings are drawn once (seeds 10,001 and
            10,002), so every model and seed is scored on the same strings.
        train_lengths, test_lengths: bin 0 (training) and bin 1 lengths, inclusive.
        train_strings: the training set's size (strings drawn with replacement per step).
        examples: strings drawn per test bin (kept once each: fewer for languages with one
            string per length).
        switches: name -> (trained model, context manager): variants scored inside the switch
            with no training of their own; default :func:`formal_switches` when ``models`` is
            None.
        control: the positive control's model (its lowest bin-1 accuracy over
            ``control_languages`` and seeds must reach ``control_threshold``); its cells are
            trained first. None: no control (no verdict).
        claim_model: the model whose claim "solves every task" is judged (None: none).
        log: called with one line per trained model and language (e.g. ``print``).

    Returns:
        :class:`FormalResult` (``.table()`` prints the cells, the control and the verdict).
    """
    default = models is None
    models = check_models(formal_models() if default else models)
    switches = check_switches(formal_switches() if default and switches is None else switches,
                              models)
    names = _languages("languages", languages)
    check_callable("log", log, allow_none=True)
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("train_strings", train_strings), ("examples", examples)):
        check_positive_int(name, value)
    check_scalar_in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
    check_scalar_in_range("control_threshold", control_threshold, 0.0, 1.0)
    seeds = check_seeds(seeds)
    train_range = _check_lengths("train_lengths", train_lengths)
    test_range = _check_lengths("test_lengths", test_lengths)
    if control is not None and control not in models:
        raise ValueError(f"control must be one of the models {list(models)} or None, got "
                         f"{control!r}")
    control_names = _languages("control_languages", control_languages)
    for name, value in (("claim_model", claim_model),):
        if value is not None and value not in models:
            raise ValueError(f"{name} must be one of the models {list(models)} or None, got "
                             f"{value!r}")
    longest = test_range[1]
    for model_name, factory in models.items():
        window = getattr(build_model(factory, seeds[0], model_name), "context_length", None)
        if isinstance(window, int) and window < longest:
            raise ValueError(f"models[{model_name!r}] has context_length {window}, shorter than "
                             f"the longest test string (test_lengths up to {longest}): give it "
                             f"a window of at least {longest}")
    tests = {language: {split: prediction_strings(language, examples, lengths, 10_001 + index,
                                                  distinct=True)
                        for index, (split, lengths) in enumerate(zip(
                            _SPLITS, (train_range, test_range), strict=True))}
             for language in names}
    all_models = (*models, *switches)
    correct = {model: {split: np.zeros((len(names), len(seeds)), dtype=np.int64)
                       for split in _SPLITS} for model in all_models}
    totals = {split: np.array([len(tests[language][split]) for language in names])
              for split in _SPLITS}
    seconds = dict.fromkeys(all_models, 0.0)
    parameters: dict[str, int] = {}
    # the control's cells first, so a failed control is seen before the long runs
    order = sorted(((model, language) for model in models for language in names),
                   key=lambda pair: (pair[0] != control or pair[1] not in control_names,))
    training_sets: dict[tuple[str, int], list[str]] = {}
    for model_name, language in order:
        row = names.index(language)
        for column, seed in enumerate(seeds):
            if (language, seed) not in training_sets:
                training_sets[language, seed] = prediction_strings(language, train_strings,
                                                                   train_range, seed)
            training = training_sets[language, seed]
            model = build_model(models[model_name], seed, model_name)
            parameters.setdefault(model_name, parameters_of(model))
            start = time.perf_counter()
            train_next_character(model, language, training, steps=steps,
                                 batch_size=batch_size, learning_rate=learning_rate, seed=seed)
            elapsed = time.perf_counter() - start
            seconds[model_name] += elapsed
            scored = [(model_name, None)] + [(name, switch) for name, (base, switch)
                                             in switches.items() if base == model_name]
            for name, switch in scored:
                for split in _SPLITS:
                    strings = tests[language][split]
                    if switch is None:
                        right = strings_correct(model, language, strings)
                    else:
                        with switch(model):
                            right = strings_correct(model, language, strings)
                    correct[name][split][row, column] = right
            if log is not None:
                log(f"{language:>9} seed {seed} {model_name}: bin0 "
                    f"{100 * correct[model_name]['bin0'][row, column] / totals['bin0'][row]:.1f}"
                    f" % bin1 "
                    f"{100 * correct[model_name]['bin1'][row, column] / totals['bin1'][row]:.1f}"
                    f" % ({elapsed:.0f} s)")
    for name, (base, _) in switches.items():
        seconds[name] = seconds[base]
        parameters[name] = parameters[base]
    timed = _interleaved_ms(models, names[0], training_sets[names[0], seeds[0]], batch_size,
                            learning_rate, seeds[0])
    step_ms = {**timed, **{name: timed[base] for name, (base, _) in switches.items()}}
    accuracy = {model: {split: correct[model][split] / totals[split][:, None]
                        for split in _SPLITS} for model in all_models}
    control_result = None
    tested = [language for language in control_names if language in names]
    if control is not None and tested:
        worst = min(float(accuracy[control]["bin1"][names.index(language)].min())
                    for language in tested)
        label = " and ".join(f"{LANGUAGE_LABELS[language]} bin 1" for language in tested)
        control_result = Control(control, f"{label} (lowest seed)", worst, control_threshold)
    return FormalResult(names, all_models, seeds, correct, totals, accuracy, seconds, step_ms,
                        parameters, steps, batch_size, learning_rate, train_strings,
                        train_range, test_range, control_result,
                        claim_model=claim_model if claim_model in models else None,
                        control_threshold=control_threshold,
                        base={name: base for name, (base, _) in switches.items()})


def _interleaved_ms(models: Mapping[str, ModelFactory], language: str, strings: list[str],
                    batch_size: int, learning_rate: float, seed: int) -> dict[str, float]:
    """Median ms per training step of every model, the models stepping in turn
    (:func:`~nlbook.claims.protocol.interleaved_step_seconds`), fresh models, one language."""
    built = {name: build_model(factory, seed, name) for name, factory in models.items()}

    def one_step(model):
        return lambda: train_next_character(model, language, strings, steps=1,
                                            batch_size=batch_size,
                                            learning_rate=learning_rate, seed=seed)

    seconds = interleaved_step_seconds({name: one_step(model) for name, model in built.items()},
                                       rounds=5, warmup=1)
    return {name: 1000 * value for name, value in seconds.items()}


def _languages(name: str, languages: Sequence[str]) -> tuple[str, ...]:
    if isinstance(languages, str) or not isinstance(languages, Sequence) or not languages:
        raise ValueError(f"{name} must be a non-empty sequence of {LANGUAGES}, got "
                         f"{languages!r}")
    out = []
    for index, language in enumerate(languages):
        try:
            out.append(_language(language))
        except ValueError as error:
            raise ValueError(f"{name}[{index}]: {error}") from None
    return tuple(dict.fromkeys(out))
