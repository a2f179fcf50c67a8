"""MQAR, the course's recall yardstick: multi-query associative recall (Arora et al. 2023,
"Zoology"), the test on which the Based, GLA, DeltaNet and Gated DeltaNet papers rank memory
rules.

:func:`run_mqar` trains every model on the *same* batches (equal tokens: same steps, same
batch), one optimizer step of each model in turn, so that the per-step times it reports are
measured interleaved (a load change on a shared CPU hits every model alike). It reports, per
model and seed:

- the accuracy on a fixed test set (``test_size`` sequences, every query scored), with a 95 %
  binomial (Wilson) interval over its ``test_size × kv_pairs`` queries;
- the first step at which the accuracy on a held-out set passed 90 % (the measure that does not
  move with the learning-rate schedule; run it with ``constant_learning_rate=True`` too);
- the median milliseconds per training step.

A model that answers with any of the n values present, without binding it to its key, scores
1/n ("in-context chance").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import matplotlib.figure
import torch
from torch import nn

from nlbook._checks import (
    check_bool,
    check_memory,
    check_positive_int,
    check_scalar_in_range,
    check_str,
)
from nlbook.claims._common import (
    ModelFactory,
    build_model,
    check_models,
    check_names,
    check_seeds,
    format_table,
    interleaved_steps,
    parameters_of,
)
from nlbook.claims.protocol import (
    AccuracyCell,
    Control,
    Verdict,
    accuracy_cell,
    compare,
    verdict,
    wilson_interval,
)
from nlbook.tasks.recall import mqar_batch

__all__ = ["MQAR_HOPE_VARIANTS", "MQAR_MODELS", "MQARResult", "MQARRun",
           "load_mqar_results", "mqar_headline", "mqar_models", "run_mqar"]

#: HOPE with one of the three changes that made it bind undone (chapter 5, "what was wrong"),
#: and with all three undone (HOPE as it was before): name → HopeLM options.
MQAR_HOPE_VARIANTS: dict[str, dict[str, object]] = {
    "hope-identity-conv": {"conv_init": "identity"},
    "hope-shared-input": {"shared_generator_input": True},
    "hope-fan-in-memory": {"memory_first_std": None},
    "hope-before": {"conv_init": "identity", "shared_generator_input": True,
                    "memory_first_std": None},
}

#: The models ``python -m nlbook.bench mqar --models`` knows, in the order they are printed.
MQAR_MODELS = ("hope", "delta", "linear_attention", "transformer", "transformer++",
               *MQAR_HOPE_VARIANTS)

#: Held-out accuracy that counts as "solved" for the steps-to-threshold measure.
SOLVED = 0.9
#: Mean test accuracy at which a model is at the ceiling: a ranking of models all above it
#: cannot be read (every difference is inside the spread).
CEILING = 0.98


def mqar_models(vocab_size: int = 64, *, d_model: int = 64, n_layers: int = 2, n_heads: int = 2,
                sequence_length: int = 32, names: Sequence[str] = MQAR_MODELS,
                hope_options: Mapping[str, object] | None = None
                ) -> dict[str, ModelFactory]:
    """Factories ``factory(seed=)`` of the MQAR models, each ``d_model`` wide with ``n_layers``
    layers (104-111k parameters at the defaults):

    - ``hope``: :class:`nlbook.hope.HopeLM` as the course builds it (``hope_options`` added);
    - ``delta``: the same HOPE block with the gated delta rule in place of self-modifying
      Titans (``mixer="delta"``), the positive control of the memory rules;
    - ``linear_attention``: the same block with gated linear attention;
    - ``transformer``: the nanoGPT-style :class:`nlbook.transformer.TransformerLM` (learned
      absolute positions, GELU MLP, LayerNorm);
    - ``transformer++``: the paper's Transformer++ baseline (rotary positions, SwiGLU,
      RMSNorm), the positive control of attention;
    - the ``hope-…`` names of :data:`MQAR_HOPE_VARIANTS`: HOPE with a change undone.
    """
    from nlbook.hope import HopeLM
    from nlbook.train.building import build_model as build_named

    for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                        ("n_layers", n_layers), ("n_heads", n_heads),
                        ("sequence_length", sequence_length)):
        check_positive_int(name, value)
    check_names("names", names, MQAR_MODELS)
    if hope_options is not None and (not isinstance(hope_options, Mapping) or not all(
            isinstance(key, str) for key in hope_options)):
        raise ValueError(f"hope_options must be a dict of HopeLM option name -> value or None, "
                         f"got {hope_options!r}")
    check_memory("sequence_length, d_model and n_layers", 8 * sequence_length * d_model * n_layers,
                 what="the activations of one sequence")
    hope_options = dict(hope_options or {})
    mixers = {"hope": {}, "delta": {"mixer": "delta"},
              "linear_attention": {"mixer": "linear_attention"}} | MQAR_HOPE_VARIANTS

    def hope(options: dict) -> ModelFactory:
        def factory(seed: int = 0) -> nn.Module:
            return HopeLM(vocab_size, d_model, n_layers, n_heads,
                          context_length=sequence_length, seed=seed, **options)
        return factory

    def named(name: str) -> ModelFactory:
        def factory(seed: int = 0) -> nn.Module:
            torch.manual_seed(seed)
            return build_named(name, vocab_size, d_model, n_layers, n_heads,
                               context_length=sequence_length)
        return factory

    factories: dict[str, ModelFactory] = {}
    for name in names:
        if name in mixers:
            options = hope_options | mixers[name] if name.startswith("hope") else mixers[name]
            factories[name] = hope(options)
        else:
            factories[name] = named(name)
    return factories


@dataclass
class MQARRun:
    """One model, one seed: test accuracy (over ``queries`` scored queries), its 95 % Wilson
    interval, the first step whose held-out accuracy reached 90 % (None: never), the held-out
    accuracy curve [(step, accuracy)], the median ms per step and the parameter count."""

    accuracy: float
    correct: int
    queries: int
    interval: tuple[float, float]
    first_solved_step: int | None
    curve: list[tuple[int, float]]
    ms_per_step: float
    parameters: int
    diverged_at: int | None = None


@dataclass
class MQARResult:
    """Per model name, one :class:`MQARRun` per seed, with the setting that produced them."""

    runs: dict[str, list[MQARRun]]
    seeds: list[int]
    setting: dict[str, object] = field(default_factory=dict)
    #: The trained models, one per seed, with ``run_mqar(..., keep_models=True)`` (not saved).
    models: dict[str, list[nn.Module]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, dict[str, object]]:
        """Per model: accuracies per seed, mean, min, max, the first solved step per seed and
        the median ms per step over seeds."""
        out = {}
        for name, runs in self.runs.items():
            accuracies = [run.accuracy for run in runs]
            out[name] = {
                "accuracies": accuracies, "mean": statistics.fmean(accuracies),
                "min": min(accuracies), "max": max(accuracies),
                "intervals": [run.interval for run in runs],
                "first_solved": [run.first_solved_step for run in runs],
                "ms_per_step": statistics.median(run.ms_per_step for run in runs),
                "parameters": runs[0].parameters}
        return out

    def to_dict(self) -> dict[str, object]:
        """Plain data (JSON-ready): the setting, the seeds and every run."""
        return {"setting": dict(self.setting), "seeds": list(self.seeds),
                "runs": {name: [asdict(run) for run in runs]
                         for name, runs in self.runs.items()}}

    def save(self, path: str, *, command: str = "") -> None:
        """Write :meth:`to_dict` with the git commit and ``command`` to ``path`` (JSON),
        atomically (a temporary file, then a rename)."""
        from nlbook.claims.results import git_commit, write_json_atomically

        write_json_atomically(path, {"commit": git_commit(), "command": command,
                                     **self.to_dict()})

    @classmethod
    def combine(cls, results: Sequence[MQARResult]) -> MQARResult:
        """One result from results of the same setting and models (e.g. one per seed), seeds
        in order. ValueError if their settings or models differ."""
        if isinstance(results, (str, bytes)) or not isinstance(results, Sequence) \
                or not results or not all(isinstance(item, MQARResult) for item in results):
            raise ValueError(f"results must be a non-empty list of MQARResult, got {results!r}")
        first = results[0]
        combined = cls({name: list(runs) for name, runs in first.runs.items()},
                       list(first.seeds), dict(first.setting))
        for index, result in enumerate(results[1:], start=1):
            if result.setting != first.setting or list(result.runs) != list(first.runs):
                raise ValueError(f"results[{index}] differs from results[0] in its setting or "
                                 f"models")
            for name, runs in result.runs.items():
                combined.runs[name].extend(runs)
            combined.seeds.extend(result.seeds)
        return combined

    def cell(self, model: str) -> AccuracyCell:
        """``model``'s test accuracy over seeds (:func:`~nlbook.claims.protocol.accuracy_cell`:
        mean ± std, pooled 95 % interval)."""
        if model not in self.runs:
            raise ValueError(f"model must be one of {list(self.runs)}, got {model!r}")
        runs = self.runs[model]
        return accuracy_cell([run.correct for run in runs], [run.queries for run in runs])

    def control(self, model: str = "transformer++", threshold: float = SOLVED) -> Control:
        """The positive control: ``model``'s lowest test accuracy over seeds must reach
        ``threshold``."""
        if model not in self.runs:
            raise ValueError(f"model must be one of {list(self.runs)}, got {model!r}")
        return Control(model, "MQAR test accuracy (lowest seed)",
                       min(run.accuracy for run in self.runs[model]), threshold)

    def recall_verdict(self) -> Verdict:
        """The claim of arXiv Table 3 read on MQAR: HOPE is the best attention-free model
        (above linear attention and the gated delta rule beyond twice the spread) and below
        the Transformer (Transformer++, the control). A tie is no support; when every ranked
        model is at the ceiling (:data:`CEILING`) the setting cannot rank them: "not tested
        at this budget"."""
        hope = self.cell("hope")
        compared = [name for name in ("hope", "delta", "linear_attention", "transformer++")
                    if name in self.runs]
        judged = verdict(self.control(), [None], seeds=len(self.seeds))
        if judged.verdict != "does not hold":  # a failed control or too few seeds
            return judged
        if all(self.cell(name).mean >= CEILING for name in compared):
            # A ranking needs a task on which the ranked models differ: at the ceiling every
            # difference is inside the spread whatever the models are.
            return Verdict("not tested at this budget",
                           f"every ranked model is at the ceiling (mean >= "
                           f"{100 * CEILING:.0f} %: {', '.join(compared)}), so this setting "
                           f"cannot rank them")
        outcomes: list[bool | None] = []
        for other in ("delta", "linear_attention"):
            if other in self.runs:
                outcomes.append({1: True, -1: False}.get(compare(hope, self.cell(other))
                                                         .direction))
        outcomes.append({-1: True, 1: False}.get(compare(hope, self.cell("transformer++"))
                                                 .direction))
        return verdict(self.control(), outcomes, seeds=len(self.seeds))

    def recall_summary(self) -> str:
        """One sentence for the claims map."""
        cells = ", ".join(f"{name} {self.cell(name)}" for name in self.runs)
        return (f"test accuracy %, {len(self.seeds)} seeds, {self.setting.get('steps')} steps, "
                f"T = {self.setting.get('sequence_length')}, {self.setting.get('kv_pairs')} "
                f"pairs: {cells}")

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MQARResult:
        """The inverse of :meth:`to_dict` (also reads what :meth:`save` wrote)."""
        if not isinstance(data, Mapping) or not {"setting", "seeds", "runs"} <= set(data):
            raise ValueError("data must be a dict with 'setting', 'seeds' and 'runs' (what "
                             "MQARResult.to_dict returns)")
        runs = {}
        for name, items in data["runs"].items():
            runs[name] = [MQARRun(**(dict(item) | {
                "interval": tuple(item["interval"]),
                "curve": [tuple(point) for point in item["curve"]]})) for item in items]
        return cls(runs, list(data["seeds"]), dict(data["setting"]))

    def markdown(self) -> str:
        """:meth:`table` as a Markdown table (the results page)."""
        lines = self.table().splitlines()
        header = [cell.strip() for cell in _split_columns(lines[0], lines[1])]
        rows = [[cell.strip() for cell in _split_columns(line, lines[1])] for line in lines[2:]]
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)

    def plot(self, title: str = "") -> matplotlib.figure.Figure:
        """Held-out accuracy curves of every model and seed, with in-context chance and the
        90 % threshold (:func:`nlbook.viz.plot_mqar_curves`)."""
        from nlbook import viz

        return viz.plot_mqar_curves(
            {name: [run.curve for run in runs] for name, runs in self.runs.items()},
            chance=1 / int(self.setting["kv_pairs"]), threshold=SOLVED, title=title)

    def table(self) -> str:
        """The plain-text table ``python -m nlbook.bench mqar`` prints."""
        rows = []
        for name, item in self.summary().items():
            per_seed = ", ".join(
                f"{100 * accuracy:.1f} [{100 * low:.1f}-{100 * high:.1f}]"
                for accuracy, (low, high) in zip(item["accuracies"], item["intervals"],
                                                 strict=True))
            solved = ", ".join("-" if step is None else str(step)
                               for step in item["first_solved"])
            rows.append([name, f"{item['parameters']:,}", per_seed,
                         f"{100 * item['mean']:.1f} ({100 * item['min']:.1f}-"
                         f"{100 * item['max']:.1f})", solved, f"{item['ms_per_step']:.0f}"])
        return format_table(["model", "params", "test accuracy % per seed [95 % interval]",
                             "mean (range)", f"first step >= {100 * SOLVED:.0f} %",
                             "ms/step"], rows)


def _split_columns(line: str, rule: str) -> list[str]:
    """Cut ``line`` at the columns of :func:`format_table`'s rule line (dashes and spaces)."""
    cells, start = [], 0
    for index, character in enumerate(rule + " "):
        if character == " " and index > start and rule[index - 1:index] == "-":
            cells.append(line[start:index])
            start = index + 1
    return cells


def load_mqar_results(paths: Sequence[str]) -> tuple[MQARResult, list[str]]:
    """One :class:`MQARResult` from files that :meth:`MQARResult.save` wrote for the same
    setting and models (e.g. one file per seed), seeds in file order; with the commits of the
    files (for the record). ValueError if their settings or models differ."""
    import json

    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence) or not paths:
        raise ValueError(f"paths must be a non-empty list of result files, got {paths!r}")
    results, commits = [], []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        results.append(MQARResult.from_dict(data))
        commits.append(str(data.get("commit", "unknown")))
    try:
        combined = MQARResult.combine(results)
    except ValueError as error:
        raise ValueError(f"paths must hold one setting and one list of models: {error}") from None
    return combined, commits


def mqar_headline(name: str = "mqar/t32-cosine") -> str | None:
    """One line per the results files ``data/<name>-seed*.json``: each model's test accuracy
    over seeds as "min-max %", e.g. for the claims map; None when the files are missing."""
    from pathlib import Path

    from nlbook.data import DATA_DIR

    check_str("name", name)
    if not name.strip() or any(part in ("", "..") for part in name.split("/")):
        raise ValueError(f"name must name results files under data/ such as "
                         f"'mqar/t32-cosine', got {name!r}")
    paths = sorted(Path(DATA_DIR).glob(f"{name}-seed*.json"))
    if not paths:
        return None
    result, _ = load_mqar_results([str(path) for path in paths])
    parts = []
    for model, item in result.summary().items():
        low, high = 100 * item["min"], 100 * item["max"]
        span = f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"
        parts.append(f"{model} {span} %")
    return (f"{', '.join(parts)} ({len(result.seeds)} seeds, {result.setting['steps']} steps, "
            f"T = {result.setting['sequence_length']}, {result.setting['kv_pairs']} pairs)")


def _schedule(step: int, steps: int, peak: float, warmup: int, constant: bool) -> float:
    """Linear warm-up to ``peak``, then constant or cosine decay to zero at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if constant:
        return peak
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def _accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
              batch: int = 256) -> int:
    """Correct answers at the scored positions (targets ≥ 0), the model in eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch):
            logits, _ = model(inputs[start:start + batch])
            scored = targets[start:start + batch] >= 0
            guesses = logits.argmax(dim=-1)[scored]
            correct += int((guesses == targets[start:start + batch][scored]).sum())
    model.train(was_training)
    return correct


def run_mqar(models: Mapping[str, ModelFactory], *, seeds: Sequence[int] = (0, 1, 2),
             steps: int = 1000, batch_size: int = 32, vocab_size: int = 64,
             sequence_length: int = 32, kv_pairs: int = 4, learning_rate: float = 3e-3,
             weight_decay: float = 0.1, warmup_steps: int | None = None,
             constant_learning_rate: bool = False, test_size: int = 1024,
             eval_every: int = 50, eval_size: int = 256, power_a: float | None = None,
             random_non_queries: bool = False, keep_models: bool = False,
             log: Callable[[str], None] | None = None) -> MQARResult:
    """Train every model on MQAR at equal tokens, interleaved, and score it (see the module
    docstring).

    Args:
        models: name → factory of a fresh language model (``factory(seed=)``) taking int64
            (B, T) ids and returning (logits (B, T, V), loss) with -1 targets ignored.
        seeds: one run of every model per seed (the seed sets the initialisation and the
            training batches; the test set is the same for every seed).
        steps, batch_size: the budget, equal for every model.
        vocab_size, sequence_length, kv_pairs, power_a, random_non_queries: the task
            (:func:`nlbook.tasks.mqar_batch`).
        learning_rate, weight_decay: AdamW (β = 0.9, 0.98), gradients clipped at norm 1.
        warmup_steps: linear warm-up (default steps // 10), then cosine decay to 0, or a
            constant rate with ``constant_learning_rate``.
        test_size: test sequences (every query scored). eval_every, eval_size: the held-out
            set scored every ``eval_every`` steps for the first step ≥ 90 %.
        keep_models: keep the trained models in ``result.models`` (for switches such as
            :func:`nlbook.hope.ascending_writes`).
        log: called with a progress line after every evaluation.
    """
    models = check_models(models)
    seeds = check_seeds(seeds)
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("vocab_size", vocab_size), ("sequence_length", sequence_length),
                        ("kv_pairs", kv_pairs), ("test_size", test_size),
                        ("eval_every", eval_every), ("eval_size", eval_size)):
        check_positive_int(name, value)
    check_scalar_in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
    check_scalar_in_range("weight_decay", weight_decay, 0.0, 1.0)
    warmup = max(1, steps // 10) if warmup_steps is None else warmup_steps
    check_positive_int("warmup_steps", warmup)
    check_bool("constant_learning_rate", constant_learning_rate)
    check_bool("keep_models", keep_models)
    if log is not None and not callable(log):
        raise ValueError(f"log must be a callable or None, got {log!r}")
    task = dict(vocab_size=vocab_size, sequence_length=sequence_length, kv_pairs=kv_pairs,
                power_a=power_a, random_non_queries=random_non_queries)
    # The test and held-out sets are fixed (seeds 10**6 + …), apart from every training seed.
    test_inputs, test_targets = mqar_batch(test_size, **task,
                                           generator=torch.Generator().manual_seed(10 ** 6))
    held_inputs, held_targets = mqar_batch(eval_size, **task,
                                           generator=torch.Generator().manual_seed(10 ** 6 + 1))
    held_queries = int((held_targets >= 0).sum())
    test_queries = int((test_targets >= 0).sum())
    runs: dict[str, list[MQARRun]] = {name: [] for name in models}
    kept: dict[str, list[nn.Module]] = {name: [] for name in models} if keep_models else {}
    for seed in seeds:
        built = {name: build_model(factory, seed, name) for name, factory in models.items()}
        optimizers = {name: torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                              betas=(0.9, 0.98), weight_decay=weight_decay)
                      for name, model in built.items()}
        times: dict[str, list[float]] = {name: [] for name in built}
        curves: dict[str, list[tuple[int, float]]] = {name: [] for name in built}
        solved: dict[str, int | None] = dict.fromkeys(built)
        diverged: dict[str, int | None] = dict.fromkeys(built)
        last_losses: dict[str, float] = {}
        data = torch.Generator().manual_seed(seed)
        for step in range(steps):
            inputs, targets = mqar_batch(batch_size, **task, generator=data)
            rate = _schedule(step, steps, learning_rate, warmup, constant_learning_rate)
            # one step of each model in turn: interleaved
            interleaved_steps(built, optimizers, inputs, targets, rate, step, diverged, times,
                              last_losses)
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                line = []
                for name, model in built.items():
                    if diverged[name] is not None:
                        continue
                    accuracy = _accuracy(model, held_inputs, held_targets) / held_queries
                    curves[name].append((step + 1, accuracy))
                    if solved[name] is None and accuracy >= SOLVED:
                        solved[name] = step + 1
                    line.append(f"{name} {100 * accuracy:.1f}%")
                if log is not None:
                    log(f"seed {seed} step {step + 1}/{steps}: " + ", ".join(line))
        for name, model in built.items():
            correct = 0 if diverged[name] is not None else _accuracy(model, test_inputs,
                                                                     test_targets)
            runs[name].append(MQARRun(
                accuracy=correct / test_queries, correct=correct, queries=test_queries,
                interval=wilson_interval(correct, test_queries),
                first_solved_step=solved[name], curve=curves[name],
                ms_per_step=1000 * statistics.median(times[name]) if times[name] else math.nan,
                parameters=parameters_of(model), diverged_at=diverged[name]))
            if keep_models:
                kept[name].append(model.eval())
    setting = dict(task, steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                   weight_decay=weight_decay, warmup_steps=warmup,
                   constant_learning_rate=constant_learning_rate, test_size=test_size,
                   eval_every=eval_every, eval_size=eval_size)
    return MQARResult(runs, list(seeds), setting, kept)
