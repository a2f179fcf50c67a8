"""Chapter 7 on Tiny Shakespeare: HOPE against two Transformers (arXiv Table 2's claim), HOPE
with one part removed (Table 6) and the loss against context (Fig. 10), under the protocol of
:mod:`nlbook.claims.protocol`, in one run that trains each model once per seed.

- **Budget.** Every model takes the same optimizer steps on batches of the same size (equal
  tokens, the primary axis): HOPE variants on carried 1,024-character streams, the
  Transformers (window 64, width matched to HOPE's parameter count) on fresh windows.
  Equal time is the second column: the per-step times of every model are measured
  interleaved (:func:`~nlbook.claims.protocol.interleaved_step_seconds`), and the two
  Transformers are trained a second time for the steps they take in the time HOPE takes for
  its budget (:func:`~nlbook.claims.protocol.equal_time_steps`).
- **Scores** (nats/char, validation split): ``stream`` (every character once, in order; HOPE
  carries its state, a Transformer reads a sliding window of its context), ``fresh`` (fresh
  windows of 64), and by position on fresh windows of ``position_length`` (4,096, four times
  the training streams): each variant's *drop* from positions 64-255 to the last quarter.
- **Controls.** The LM rows need a standard model that learns at this budget: Transformer++
  must end below the bigram model's loss. The context row needs a model whose use of context
  is certain: the Transformer's loss must fall by at least 0.1 nats from the first 16
  positions of its window to the last 16.
- **Seeds**: three by default; losses as mean ± std; a difference is a finding only beyond
  twice the spread (:func:`~nlbook.claims.protocol.compare`).

Variants (:data:`LANGUAGE_VARIANTS`): "without DGD" is the paper's row: the plain gradient step
on the same L2 objective, η bounded in (0, 1) (``write_rule="gd"``); the gated Hebbian write
(``dgd=False``: no erase, η unbounded) is kept as a stability note. Momentum and weight decay
(two more rows of Table 6) are not run: the course's HOPE has no momentum in its inner loop,
and its retention α is its weight decay.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import matplotlib.figure
import torch

from nlbook._checks import check_bool, check_callable, check_positive_int
from nlbook.claims._common import check_seeds, format_table
from nlbook.claims.protocol import (
    Control,
    Verdict,
    compare,
    equal_time_steps,
    interleaved_step_seconds,
    loss_cell,
    verdict,
)

__all__ = ["LANGUAGE_VARIANTS", "LanguageResult", "run_language"]

#: The variants trained here, names of :data:`nlbook.claims.ablation.ABLATION_VARIANTS`.
LANGUAGE_VARIANTS: tuple[str, ...] = (
    "HOPE",
    "without DGD (plain gradient step on the L2 objective)",
    "without DGD's erase (gated Hebbian write)",
    "without in-context CMS updates",
    "without CMS (one plain MLP)",
    "without self-modification (plain Titans)",
    "Transformer",
    "Transformer++",
)
_TRANSFORMERS = ("Transformer", "Transformer++")
_WITHOUT_DGD = "without DGD (plain gradient step on the L2 objective)"
_WITHOUT_CMS = "without CMS (one plain MLP)"
#: Positions of the early reading of the context curve (after the Transformers' window).
EARLY = (64, 256)
#: The context control: the Transformer's loss drop over its own window.
CONTEXT_CONTROL_DROP = 0.1


@dataclass
class LanguageResult:
    """Per seed and model: parameters, steps, seconds, losses (nats/char); see the module
    docstring.

    ``runs[seed][model]`` holds ``parameters``, ``steps``, ``seconds``, ``fresh``, ``stream``,
    ``early`` and ``late`` (mean loss over positions 64-255 and over the last quarter of the
    context windows; for the Transformers over positions 0-15 and 48-63 of their window),
    ``diverged_at`` (None, or the step whose loss was not finite), and for the Transformers
    ``equal_time`` (``steps``, ``stream``, ``fresh`` of the second run). ``step_ms[seed]``:
    medians of interleaved steps. ``bigram``: the bigram model's loss on the scored text.
    """

    seeds: list[int]
    runs: dict[str, dict[str, dict[str, object]]]
    step_ms: dict[str, dict[str, float]]
    setting: dict[str, object]
    bigram: float
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)

    # ---- cells -----------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        return list(self.runs[str(self.seeds[0])])

    def values(self, model: str, key: str) -> list[float]:
        """``key`` of ``model`` over the seeds (NaN where a run diverged)."""
        out = []
        for seed in self.seeds:
            run = self.runs[str(seed)].get(model)
            if run is None:
                raise ValueError(f"model must be one of {self.models}, got {model!r}")
            value = run.get(key)
            out.append(float("nan") if value is None else float(value))
        return out

    def drops(self, model: str) -> list[float]:
        return [early - late for early, late in zip(self.values(model, "early"),
                                                    self.values(model, "late"), strict=True)]

    def equal_time(self, model: str, key: str) -> list[float]:
        return [float(self.runs[str(seed)][model]["equal_time"][key]) for seed in self.seeds]

    def _diverged(self, model: str) -> bool:
        return any(self.runs[str(seed)][model].get("diverged_at") is not None
                   for seed in self.seeds)

    # ---- controls and verdicts -------------------------------------------------------------
    def language_control(self) -> Control:
        worst = max(self.values("Transformer++", "stream"))
        return Control("Transformer++", "stream loss below the bigram model's (highest seed)",
                       worst, self.bigram, higher_is_better=False)

    def context_control(self) -> Control:
        return Control("Transformer", "loss drop from positions 0-15 to 48-63 of its window "
                       "(lowest seed)", min(self.drops("Transformer")), CONTEXT_CONTROL_DROP)

    def _outcome(self, better: str, worse: str, key: str = "stream") -> bool | None:
        """True when ``better``'s loss is lower than ``worse``'s beyond twice the spread."""
        if self._diverged(better) or self._diverged(worse):
            return None if self._diverged(better) else True
        direction = compare(loss_cell(self.values(worse, key)),
                            loss_cell(self.values(better, key))).direction
        return {1: True, -1: False}.get(direction)

    def perplexity_verdict(self) -> Verdict:
        """"HOPE has lower perplexity than Transformer++ (and the Transformer)", equal
        tokens."""
        outcomes = [self._outcome("HOPE", name) for name in _TRANSFORMERS]
        return verdict(self.language_control(), outcomes, seeds=len(self.seeds))

    def ablation_verdict(self) -> Verdict:
        """"Removing DGD or the CMS raises the loss" (Table 6), equal tokens."""
        outcomes = [self._outcome("HOPE", name) for name in (_WITHOUT_DGD, _WITHOUT_CMS)]
        return verdict(self.language_control(), outcomes, seeds=len(self.seeds))

    def context_verdict(self) -> Verdict:
        """"HOPE's loss keeps falling with context; without the CMS or DGD it falls less"
        (Fig. 10): HOPE's drop is above 0, and above each ablation's, beyond the spread."""
        hope = loss_cell(self.drops("HOPE"))
        outcomes = [{1: True, -1: False}.get(compare(hope, loss_cell([0.0] * len(self.seeds))
                                                     ).direction)]
        for name in (_WITHOUT_DGD, _WITHOUT_CMS):
            if self._diverged(name):
                outcomes.append(None)
                continue
            outcomes.append({1: True, -1: False}.get(
                compare(hope, loss_cell(self.drops(name))).direction))
        return verdict(self.context_control(), outcomes, seeds=len(self.seeds))

    # ---- text --------------------------------------------------------------------------------
    def _cell(self, values: list[float]) -> str:
        if any(value != value for value in values):  # NaN: a diverged run
            return "diverged"
        return str(loss_cell(values))

    def table(self) -> str:
        """Losses per model (mean ± std over seeds), equal tokens, then the equal-time column
        for the Transformers, the context drops, the controls and the three verdicts."""
        length = self.setting["position_length"]
        header = ["model", "params", "stream (equal tokens)", "fresh 64", "vs HOPE",
                  f"drop {EARLY[0]}-{EARLY[1] - 1} → last quarter", "equal time: steps",
                  "equal time: stream", "ms/step"]
        hope = statistics.fmean(self.values("HOPE", "stream"))
        rows = []
        for model in self.models:
            first = self.runs[str(self.seeds[0])][model]
            stream = self.values(model, "stream")
            diverged = self._diverged(model)
            if diverged:
                steps = [self.runs[str(seed)][model].get("diverged_at") for seed in self.seeds]
                where = ", ".join("-" if step is None else str(step) for step in steps)
                stream_text, versus = f"diverged at steps {where}", ""
            else:
                stream_text = self._cell(stream)
                versus = f"{statistics.fmean(stream) - hope:+.3f}"
            timing = statistics.median(self.step_ms[str(seed)][model] for seed in self.seeds)
            equal_steps = equal_stream = ""
            if model in _TRANSFORMERS:
                equal_steps = "/".join(str(int(step)) for step in
                                       self.equal_time(model, "steps"))
                equal_stream = self._cell(self.equal_time(model, "stream"))
            rows.append([model, f"{int(first['parameters']):,}", stream_text,
                         "" if diverged else self._cell(self.values(model, "fresh")), versus,
                         "" if diverged else self._cell(self.drops(model)), equal_steps,
                         equal_stream, f"{timing:.0f}"])
        seeds = ", ".join(str(seed) for seed in self.seeds)
        notes = [
            f"{self.setting['steps']} steps x {self.setting['batch_size']} x "
            f"{self.setting['context_length']} characters for every model (equal tokens); "
            f"seeds {seeds}; losses in nats/char on {self.setting['scored_characters']:,} "
            f"validation characters, mean ± std over seeds",
            f"drop: loss over positions {EARLY[0]}-{EARLY[1] - 1} minus loss over the last "
            f"quarter of {self.setting['position_windows']} fresh windows of {length} "
            f"characters (the Transformers: positions 0-15 minus 48-63 of their window)",
            "equal time: the Transformers trained again for the steps they take in the time "
            "HOPE takes for its budget (per-step times measured interleaved; per seed)",
            f"bigram model: {self.bigram:.3f} nats/char",
            f"LM rows: {self.language_control()}",
            f"context row: {self.context_control()}",
            f"verdict on 'HOPE has lower perplexity than the Transformers' (equal tokens): "
            f"{self.perplexity_verdict()}",
            f"verdict on 'removing DGD or the CMS raises the loss' (Table 6): "
            f"{self.ablation_verdict()}",
            f"verdict on 'HOPE's loss keeps falling with context, less without CMS or DGD' "
            f"(Fig. 10): {self.context_verdict()}",
        ]
        title = "Tiny Shakespeare: HOPE, HOPE with one part removed, two Transformers"
        return format_table(header, rows, title=title, notes=notes)

    def summary(self, row: str) -> str:
        """One sentence per claims-map row: ``"perplexity"``, ``"ablation"`` or
        ``"context"``."""
        def mean(model: str, key: str = "stream") -> str:
            return f"{statistics.fmean(self.values(model, key)):.3f}"

        if row == "perplexity":
            equal_time = ", ".join(f"{name} {statistics.fmean(self.equal_time(name, 'stream')):.3f}"
                                   for name in _TRANSFORMERS)
            return (f"equal tokens ({self.setting['steps']} steps, {len(self.seeds)} seeds): "
                    f"HOPE {mean('HOPE')} nats/char, Transformer {mean('Transformer')}, "
                    f"Transformer++ {mean('Transformer++')}; equal time: {equal_time}")
        if row == "ablation":
            parts = []
            for model in self.models:
                if model == "HOPE" or model in _TRANSFORMERS:
                    continue
                if self._diverged(model):
                    parts.append(f"{model}: diverged")
                else:
                    difference = (statistics.fmean(self.values(model, "stream"))
                                  - statistics.fmean(self.values("HOPE", "stream")))
                    parts.append(f"{model} {difference:+.3f}")
            return (f"stream loss against HOPE's {mean('HOPE')} nats/char (equal tokens, "
                    f"{len(self.seeds)} seeds): " + "; ".join(parts))
        if row == "context":
            parts = [f"{model} {statistics.fmean(self.drops(model)):.3f}"
                     for model in self.models if model not in _TRANSFORMERS
                     and not self._diverged(model)]
            return (f"drop from positions {EARLY[0]}-{EARLY[1] - 1} to the last quarter of "
                    f"{self.setting['position_length']}-character windows, nats/char: "
                    + ", ".join(parts))
        raise ValueError(f"row must be 'perplexity', 'ablation' or 'context', got {row!r}")

    # ---- data --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {"seeds": list(self.seeds), "runs": self.runs, "step_ms": self.step_ms,
                "setting": dict(self.setting), "bigram": self.bigram, "curves": self.curves}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LanguageResult:
        needed = {"seeds", "runs", "step_ms", "setting", "bigram"}
        if not isinstance(data, Mapping) or not needed <= set(data):
            raise ValueError(f"data must be a dict with keys {sorted(needed)} (what "
                             f"LanguageResult.to_dict returns)")
        return cls(list(data["seeds"]), dict(data["runs"]), dict(data["step_ms"]),
                   dict(data["setting"]), float(data["bigram"]), dict(data.get("curves", {})))

    @classmethod
    def combine(cls, results: Sequence[LanguageResult]) -> LanguageResult:
        """One result from per-seed results of the same setting (separate processes)."""
        if not results:
            raise ValueError("results must hold at least one LanguageResult")
        first = results[0]
        out = cls([], {}, {}, dict(first.setting), first.bigram, {})
        for result in results:
            if result.setting != first.setting:
                raise ValueError("results must share one setting")
            for seed in result.seeds:
                if seed in out.seeds:
                    raise ValueError(f"results must not repeat a seed, got seed {seed} twice")
                out.seeds.append(seed)
                out.runs[str(seed)] = result.runs[str(seed)]
                out.step_ms[str(seed)] = result.step_ms[str(seed)]
                if str(seed) in result.curves:
                    out.curves[str(seed)] = result.curves[str(seed)]
        return out

    def plot(self) -> matplotlib.figure.Figure:
        """Loss against position (first seed's curves, a running mean over 64 positions), one
        line per HOPE variant (:func:`nlbook.viz.plot_loss_by_position`)."""
        from nlbook.viz import plot_loss_by_position

        curves = self.curves[str(self.seeds[0])]
        chosen = {name: torch.tensor(values) for name, values in curves.items()
                  if name not in _TRANSFORMERS}
        return plot_loss_by_position(
            chosen, smoothing=64, training_window=int(self.setting["stream_length"]),
            title=f"Loss against context ({self.setting['position_length']}-character windows,"
                  f" seed {self.seeds[0]}; the line: HOPE's training streams)")


def _bigram(corpus, scored: torch.Tensor) -> float:
    from nlbook.ngram import ngram_baselines

    return float(ngram_baselines(corpus.train_ids, scored, corpus.vocab_size,
                                 orders=())["bigram"]["nats"])


def run_language(*, seeds: Sequence[int] = (0, 1, 2), steps: int = 1000,
                 variants: Sequence[str] | None = None, position_length: int = 4096,
                 position_windows: int = 8, scored_characters: int | None = None,
                 corpus=None, progress: bool = False,
                 log: Callable[[str], None] | None = None, **sizes) -> LanguageResult:
    """Train every variant for ``steps`` (equal tokens) per seed, the Transformers again at
    equal time, and score them (see the module docstring). ``variants``: names of
    :data:`LANGUAGE_VARIANTS` (default all; the verdicts need HOPE, both Transformers, the
    plain-step and the no-CMS variants). ``sizes``: other arguments of
    :func:`nlbook.claims.ablation.ablation_configs` (default: the ``tiny`` preset's)."""
    from nlbook.claims.ablation import ablation_configs
    from nlbook.data import CharCorpus, load_corpus
    from nlbook.hope.speed import _training_step
    from nlbook.train import (
        TrainingDivergedError,
        build_model,
        evaluate_all,
        evaluate_stream,
        loss_by_position,
        train,
    )
    from nlbook.transformer import parameter_count

    seeds = list(check_seeds(seeds))
    check_positive_int("steps", steps)
    check_positive_int("position_length", position_length)
    check_positive_int("position_windows", position_windows)
    check_positive_int("scored_characters", scored_characters, allow_none=True)
    check_bool("progress", progress)
    check_callable("log", log, allow_none=True)
    names = list(LANGUAGE_VARIANTS) if variants is None else list(variants)
    for name in names:
        if name not in LANGUAGE_VARIANTS:
            raise ValueError(f"variants must name entries of LANGUAGE_VARIANTS "
                             f"({list(LANGUAGE_VARIANTS)}), got {name!r}")
    if corpus is not None and not isinstance(corpus, CharCorpus):
        raise ValueError(f"corpus must be an nlbook.data.CharCorpus or None, got {corpus!r}")
    corpus = load_corpus() if corpus is None else corpus
    if len(corpus.val_ids) < position_length + 2:
        raise ValueError(f"position_length must be below the validation split's "
                         f"{len(corpus.val_ids):,} characters, got {position_length}")
    scored = corpus.val_ids if scored_characters is None else corpus.val_ids[:scored_characters]
    bigram = _bigram(corpus, scored)
    runs: dict[str, dict[str, dict[str, object]]] = {}
    step_ms: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    setting: dict[str, object] = {}
    for seed in seeds:
        configs = ablation_configs(steps=steps, seed=seed, vocab_size=corpus.vocab_size,
                                   variants=names, **sizes)
        first = next(iter(configs.values()))
        setting = {"steps": steps, "batch_size": first.batch_size,
                   "context_length": first.context_length,
                   "stream_length": configs.get("HOPE", first).stream_length,
                   "position_length": position_length, "position_windows": position_windows,
                   "scored_characters": len(scored), "learning_rate": first.learning_rate}
        # Per-step times, every model stepping in turn (a load change hits all alike).
        closures = {}
        for name, config in configs.items():
            model = build_model(config.model, corpus.vocab_size, config.d_model,
                                config.n_layers, config.n_heads,
                                context_length=config.context_length, **config.model_options)
            closures[name] = _training_step(model, batch=config.batch_size,
                                            length=config.context_length,
                                            vocab_size=corpus.vocab_size, seed=seed)
        seconds_per_step = interleaved_step_seconds(closures, rounds=5)
        step_ms[str(seed)] = {name: 1000 * value for name, value in seconds_per_step.items()}
        budget_seconds = steps * max((value for name, value in seconds_per_step.items()
                                      if name not in _TRANSFORMERS),
                                     default=max(seconds_per_step.values()))
        equal_steps = equal_time_steps(seconds_per_step, budget_seconds)
        runs[str(seed)], curves[str(seed)] = {}, {}
        for name, config in configs.items():
            start = time.perf_counter()
            try:
                result = train(config, corpus=corpus, progress=progress, log=None)
            except TrainingDivergedError as error:  # a result, not a crash: say where
                count = parameter_count(build_model(
                    config.model, corpus.vocab_size, config.d_model, config.n_layers,
                    config.n_heads, context_length=config.context_length,
                    **config.model_options)).total
                runs[str(seed)][name] = {"parameters": count, "steps": error.step,
                                         "seconds": time.perf_counter() - start,
                                         "diverged_at": error.step}
                if log is not None:
                    log(f"seed {seed} {name}: diverged at step {error.step}")
                continue
            model = result.model
            stateful = hasattr(model, "stream")
            run = _scores(model, config, scored, corpus, position_length, position_windows,
                          seed, stateful, evaluate_all, evaluate_stream, loss_by_position)
            curve = run.pop("curve")
            curves[str(seed)][name] = [round(float(value), 4) for value in curve]
            run |= {"parameters": parameter_count(model).total, "steps": result.step,
                    "seconds": time.perf_counter() - start, "diverged_at": None}
            if name in _TRANSFORMERS:
                timed = replace(config, steps=equal_steps[name])
                again = train(timed, corpus=corpus, progress=progress, log=None).model
                run["equal_time"] = {
                    "steps": equal_steps[name],
                    "stream": evaluate_stream(again, scored, window=config.context_length),
                    "fresh": evaluate_all(again, scored, context_length=config.context_length)}
            runs[str(seed)][name] = run
            if log is not None:
                log(f"seed {seed} {name}: stream {run['stream']:.3f}, fresh {run['fresh']:.3f},"
                    f" drop {run['early'] - run['late']:.3f} ({run['seconds']:.0f} s)")
    return LanguageResult(seeds, runs, step_ms, setting, bigram, curves)


def _scores(model, config, scored, corpus, position_length, position_windows, seed, stateful,
            evaluate_all, evaluate_stream, loss_by_position) -> dict[str, object]:
    fresh = evaluate_all(model, scored, context_length=config.context_length)
    stream = evaluate_stream(model, scored,
                             window=1024 if stateful else config.context_length)
    if stateful:
        curve = loss_by_position(model, corpus.val_ids, length=position_length,
                                 windows=position_windows, seed=seed)
        early = float(curve[EARLY[0]:EARLY[1]].mean())
        late = float(curve[3 * position_length // 4:].mean())
    else:  # the window model: its own positions, proportionally more windows
        length = config.context_length
        windows = position_windows * max(1, position_length // length)
        curve = loss_by_position(model, corpus.val_ids, length=length, windows=windows,
                                 seed=seed)
        early, late = float(curve[:16].mean()), float(curve[-16:].mean())
    return {"fresh": fresh, "stream": stream, "early": early, "late": late, "curve": curve}
