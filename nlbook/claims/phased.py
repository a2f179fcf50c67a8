"""Continual learning in context: does HOPE keep set A while it learns set B? (chapter 7)

The paper credits HOPE's continual learning to memories that update at different frequencies
(arXiv §7: the CMS, A-eq 70–71, beside the self-modifying Titans written at every token). Its
own evidence (class-incremental learning, CTNL) is at billions of parameters; this is the
laptop-scale analogue that keeps the mechanism, with the weights frozen: **a phased MQAR**
(:func:`nlbook.tasks.phased_mqar_batch`). One sequence holds key-value set A and its queries,
then set B (other keys, other values) and its queries, then A's queries again. Everything that
happens between A's first and A's last queries happens *in context*: what B overwrites in a
memory is forgotten.

:func:`run_phased_mqar` trains every model on the same batches (equal tokens: same steps, same
batch), one optimizer step of each model in turn (interleaved, so the per-step times compare),
with AdamW, a linear warm-up (the same for every model) and a cosine decay. It then freezes the
weights and scores a fixed test set, per seed:

- accuracy on A's first queries (what was learned in context: plasticity), on B's queries, and
  on A's last queries (what was kept), each with a 95 % Wilson interval, summarised over seeds
  with :func:`nlbook.claims.protocol.accuracy_cell`;
- forgetting = A-last − A-first, and retention = (A-last − c) / (A-first − c) with c = 1/n the
  in-context chance (what was kept, as a fraction of what was learned; None when A-first ≤ c).

The claim tested: **"HOPE forgets less than the other memories"**, read as HOPE's accuracy on A's
last queries against linear attention, the gated delta rule, a sliding-window Transformer++ and
HOPE with its CMS frozen in context (:func:`nlbook.hope.frozen_cms`: does the CMS buy
anything?), each with :func:`nlbook.claims.protocol.compare`, and sliding-window attention in
the HOPE block. A model is compared only if it learned A in every seed (each seed's interval on
A's first queries lies above chance): one that never learned A cannot be said to forget it.
Full softmax attention sees the whole sequence: it is the upper bound and the positive control
(``hope-attention``, ≥ 90 % on A's last queries in its worst seed, else the verdict is "not
tested at this budget"). The control was declared before the full run from a pilot (seed 0,
T = 52): the plain Transformer++ stayed at chance (25 %) on every block after 1,000 steps, at
a peak learning rate of 3e-3 and of 1e-3 (300-step warm-up), while attention in the HOPE block,
whose causal convolution hands each token its predecessor, passed 99 % within 400 steps. Both
Transformer++ rows are still trained and printed.

The models (:func:`phased_models`, 2 layers of width 64 at the defaults):

- ``hope``, ``delta``, ``linear_attention``: the HOPE block with the self-modifying Titans, the
  gated delta rule or gated linear attention as its mixer (as :func:`nlbook.claims.mqar_models`),
  and ``hope-attention`` / ``sliding-window hope-attention``: the same block with causal softmax
  attention over the whole sequence / the last ``window`` tokens (the paper's Hope-Attention),
  every one with the same CMS, whose fast level is written in context every ``cms_chunk``
  tokens (default 2n, the length of one set of pairs: several writes per phase, so the CMS's
  in-context level acts between A and A's last queries; the course's default of 32 would act
  once);
- ``sliding-window transformer++``: Transformer++ whose attention reads the last ``window``
  tokens (default 4n + g: one phase from its first pair to its last query, plus n), shorter than
  the sequence (7n + 3g); ``transformer++``: full causal attention. The same window is used by
  the sliding-window hope-attention. One layer cannot see A's pairs or A's first queries from
  A's last queries; through L layers the reach is L(w − 1) tokens, so a 2-layer model could in
  principle relay A's values through the tokens in between (stated, not prevented: it is what
  such a model can do).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import matplotlib.figure
import torch
from torch import nn

from nlbook._checks import (
    check_int,
    check_positive_int,
    check_scalar_in_range,
    check_str,
)
from nlbook.claims._common import (
    ModelFactory,
    Switch,
    build_model,
    check_models,
    check_names,
    check_seeds,
    check_switches,
    format_table,
    interleaved_steps,
    parameters_of,
)
from nlbook.claims.protocol import (
    AccuracyCell,
    Comparison,
    Control,
    Verdict,
    accuracy_cell,
    compare,
    verdict,
)
from nlbook.tasks.phased_recall import PHASES, phased_mqar_batch, phased_mqar_layout

__all__ = ["PHASED_CLAIM", "PHASED_MODELS", "PhasedMQARResult", "PhasedRun",
           "phased_models", "phased_switches", "run_phased_mqar"]

#: The claim this experiment tests.
PHASED_CLAIM = "HOPE forgets less than the other memories"
#: The models :func:`phased_models` builds, in the order they are printed.
PHASED_MODELS = ("hope", "linear_attention", "delta", "sliding-window hope-attention",
                 "hope-attention", "sliding-window transformer++", "transformer++")
#: HOPE scored with its CMS not written in context (a switch of the trained HOPE).
CMS_FROZEN = "hope (CMS frozen in context)"
#: The models HOPE's A-last accuracy is compared with (those present in a result that learned
#: A: a model that never learned A cannot be said to forget it).
COMPARED = ("linear_attention", "delta", "sliding-window hope-attention",
            "sliding-window transformer++", CMS_FROZEN)
#: The positive control: full softmax attention in the HOPE block (sees the whole sequence).
CONTROL = "hope-attention"
_CONTROL_TASK = "phased MQAR, A's last queries (worst seed)"
#: Seeds a verdict needs (the protocol's minimum).
MIN_SEEDS = 3


def phased_models(vocab_size: int = 64, *, d_model: int = 64, n_layers: int = 2,
                  n_heads: int = 2, pairs_per_phase: int = 4, gap: int = 4,
                  window: int | None = None, cms_chunk: int | None = None,
                  names: Sequence[str] = PHASED_MODELS) -> dict[str, ModelFactory]:
    """Factories ``factory(seed=)`` of the phased-MQAR models (see the module docstring).

    Args:
        vocab_size, d_model, n_layers, n_heads: every model's size.
        pairs_per_phase, gap: the task (n, g); they set the sequence length 7n + 3g and the
            defaults below.
        window: the sliding-window Transformer++'s window (default 4n + g); must be shorter
            than the sequence.
        cms_chunk: tokens between the in-context writes of the CMS's fast level of every
            HOPE-block model (default 2n).
        names: which of :data:`PHASED_MODELS` to build.
    """
    from nlbook.hope import HopeLM
    from nlbook.transformer_plus_plus import TransformerPlusPlusLM

    for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                        ("n_layers", n_layers), ("n_heads", n_heads)):
        check_positive_int(name, value)
    layout = phased_mqar_layout(pairs_per_phase, gap)
    length = layout["sequence"][1]
    window = 4 * pairs_per_phase + gap if window is None else window
    check_positive_int("window", window)
    if window >= length:
        raise ValueError(f"window must be shorter than the sequence (7 × pairs_per_phase + 3 × "
                         f"gap = {length} tokens), got {window}")
    cms_chunk = 2 * pairs_per_phase if cms_chunk is None else cms_chunk
    check_positive_int("cms_chunk", cms_chunk)
    check_names("names", names, PHASED_MODELS)
    mixers = {"hope": ("titans", {}), "delta": ("delta", {}),
              "linear_attention": ("linear_attention", {}),
              "sliding-window hope-attention": ("attention", {"attention_window": window}),
              "hope-attention": ("attention", {"attention_window": length})}

    def hope_block(mixer: str, options: dict[str, int]) -> ModelFactory:
        def factory(seed: int = 0) -> nn.Module:
            return HopeLM(vocab_size, d_model, n_layers, n_heads, context_length=length,
                          seed=seed, mixer=mixer, cms_chunk_sizes=(256, cms_chunk), **options)
        return factory

    def plus_plus(attention_window: int | None) -> ModelFactory:
        def factory(seed: int = 0) -> nn.Module:
            torch.manual_seed(seed)
            return TransformerPlusPlusLM(vocab_size, d_model, n_layers, n_heads,
                                         context_length=length, window=attention_window)
        return factory

    factories: dict[str, ModelFactory] = {}
    for name in names:
        if name in mixers:
            factories[name] = hope_block(*mixers[name])
        else:
            factories[name] = plus_plus(window if name.startswith("sliding") else None)
    return factories


def phased_switches() -> dict[str, Switch]:
    """``{"hope (CMS frozen in context)": ("hope", frozen_cms)}``: the trained HOPE scored with
    the CMS's in-context writes switched off (:func:`nlbook.hope.frozen_cms`)."""
    from nlbook.hope import frozen_cms

    return {CMS_FROZEN: ("hope", frozen_cms)}


@dataclass
class PhasedRun:
    """One model (or switch), one seed: correct answers and scored queries on each block of
    :data:`nlbook.tasks.phased_recall.PHASES` (A first, B, A last), the median ms per training
    step and the last training loss (None for a switch, which is not trained), the parameters,
    and the step at which the loss stopped being finite (None: never)."""

    correct: list[int]
    queries: list[int]
    ms_per_step: float | None
    parameters: int
    final_loss: float | None
    diverged_at: int | None = None

    def accuracy(self, block: int) -> float:
        return self.correct[block] / self.queries[block]


@dataclass
class PhasedMQARResult:
    """Per model name, one :class:`PhasedRun` per seed, with the setting that produced them
    (``setting["pairs_per_phase"]`` sets the chance 1/n; ``setting["control"]`` and
    ``setting["control_threshold"]`` the positive control; ``setting["claim_model"]`` the
    model the claim is about)."""

    runs: dict[str, list[PhasedRun]]
    seeds: list[int]
    setting: dict[str, object] = field(default_factory=dict)

    @property
    def chance(self) -> float:
        """The in-context chance 1/n (any value of the set, unbound to its key)."""
        return 1 / int(self.setting["pairs_per_phase"])

    def cell(self, name: str, block: int) -> AccuracyCell:
        """Accuracy of ``name`` on query block ``block`` (0 A first, 1 B, 2 A last) over the
        seeds (:func:`nlbook.claims.protocol.accuracy_cell`)."""
        if name not in self.runs:
            raise ValueError(f"name must be a model of this result ({', '.join(self.runs)}), "
                             f"got {name!r}")
        check_int("block", block, low=0, high=len(PHASES) - 1)
        runs = self.runs[name]
        return accuracy_cell([run.correct[block] for run in runs],
                             [run.queries[block] for run in runs])

    def forgetting(self, name: str) -> list[float]:
        """Per seed: accuracy on A's last queries minus on A's first (negative: forgotten)."""
        return [run.accuracy(2) - run.accuracy(0) for run in self.runs[name]]

    def retention(self, name: str) -> list[float | None]:
        """Per seed: (A-last − c) / (A-first − c), c the chance: the share of what was learned
        of A that was kept after B (None where A-first ≤ c: nothing was learned)."""
        out: list[float | None] = []
        for run in self.runs[name]:
            learned = run.accuracy(0) - self.chance
            out.append(None if learned <= 0 else (run.accuracy(2) - self.chance) / learned)
        return out

    @property
    def control(self) -> Control | None:
        """The positive control: full attention's worst-seed accuracy on A's last queries
        against the threshold (None when the control model was not run)."""
        model = str(self.setting.get("control", CONTROL))
        if model not in self.runs:
            return None
        worst = min(run.accuracy(2) for run in self.runs[model])
        return Control(model, _CONTROL_TASK, worst, float(self.setting.get("control_threshold",
                                                                           0.9)))

    def learned(self, name: str) -> bool:
        """Whether ``name`` learned A in every seed: each seed's 95 % interval on A's first
        queries lies above the chance. (The pooled interval is not enough: a model that
        learned A in one seed of three would pass it with a mean made of chance-level seeds.)"""
        self.cell(name, 0)  # checks the name
        return all(low > self.chance for low, _ in self.cell(name, 0).intervals)

    def comparisons(self) -> dict[str, Comparison]:
        """HOPE's A-last accuracy against each model of :data:`COMPARED` in this result that
        learned A: :func:`nlbook.claims.protocol.compare` (direction +1: HOPE keeps more)."""
        claim = str(self.setting.get("claim_model", "hope"))
        if claim not in self.runs:
            return {}
        mine = self.cell(claim, 2)
        return {name: compare(mine, self.cell(name, 2)) for name in COMPARED
                if name in self.runs and name != claim and self.learned(name)}

    def not_compared(self) -> list[str]:
        """The models of :data:`COMPARED` in this result that did not learn A in every seed."""
        claim = str(self.setting.get("claim_model", "hope"))
        return [name for name in COMPARED
                if name in self.runs and name != claim and not self.learned(name)]

    def verdict(self) -> Verdict:
        """The verdict on :data:`PHASED_CLAIM` (:func:`nlbook.claims.protocol.verdict`): one
        outcome per comparison (True: HOPE keeps more beyond twice the spread, False: less,
        None: no finding). The mechanism counts as exercised only when HOPE learned A in the
        first place (:meth:`learned`). Fewer than 3
        seeds: "not tested at this budget" (a sketch, not a result)."""
        if len(self.seeds) < MIN_SEEDS:
            return Verdict("not tested at this budget",
                           f"{len(self.seeds)} seed(s): a verdict needs at least {MIN_SEEDS}")
        claim = str(self.setting.get("claim_model", "hope"))
        outcomes = [None if item.direction == 0 else item.direction > 0
                    for item in self.comparisons().values()]
        learned = claim in self.runs and self.learned(claim)
        return verdict(self.control, outcomes, mechanism_exercised=learned)

    def summary(self) -> str:
        """One sentence with the numbers, for the claims map."""
        claim = str(self.setting.get("claim_model", "hope"))
        parts = []
        for name in self.runs:
            first, last = self.cell(name, 0), self.cell(name, 2)
            parts.append(f"{name} {100 * first.mean:.1f} → {100 * last.mean:.1f} %")
        control = self.control
        control_text = ("no control run" if control is None else
                        f"control {control.model} worst seed {100 * control.measured:.1f} % "
                        f"({'passed' if control.passed else 'failed'}, needs "
                        f"{100 * control.threshold:.0f} %)")
        return (f"Phased MQAR ({self.setting['pairs_per_phase']} pairs per phase, T = "
                f"{self.setting['sequence_length']}, {self.setting['steps']} steps, "
                f"{len(self.seeds)} seeds), accuracy on A's first → last queries: "
                f"{', '.join(parts)}; {control_text}; '{PHASED_CLAIM}' ({claim}): "
                f"{self.verdict().verdict}.")

    def table(self) -> str:
        """The plain-text table ``python -m nlbook.bench phased-mqar`` prints: per model the
        three blocks' accuracies (mean ± std over seeds [pooled 95 % interval]), forgetting,
        retention and ms/step; then the control, the comparisons and the verdict."""
        rows = []
        for name, runs in self.runs.items():
            forgetting = self.forgetting(name)
            kept = [value for value in self.retention(name) if value is not None]
            spread = statistics.stdev(forgetting) if len(forgetting) > 1 else 0.0
            times = [run.ms_per_step for run in runs if run.ms_per_step is not None]
            rows.append([name, f"{runs[0].parameters:,}",
                         *(str(self.cell(name, block)) for block in range(len(PHASES))),
                         f"{100 * statistics.fmean(forgetting):+.1f} ± {100 * spread:.1f}",
                         f"{statistics.fmean(kept):.2f}" if len(kept) == len(runs) else "-",
                         f"{statistics.median(times):.0f}" if times else "-"])
        notes = [f"accuracy %: mean ± std over {len(self.seeds)} seeds [pooled 95 % Wilson "
                 f"interval]; in-context chance {100 * self.chance:.1f} %; forgetting = A last "
                 f"- A first (points); retention = (A last - chance) / (A first - chance)"]
        control = self.control
        notes.append(str(control) if control is not None else "no positive control was run")
        for name, item in self.comparisons().items():
            reading = {1: "HOPE keeps more", -1: "HOPE keeps less", 0: "no finding"}
            notes.append(f"A last, hope - {name}: {100 * item.difference:+.1f} points (bar "
                         f"{100 * item.bar:.1f}): {reading[item.direction]}")
        for name in self.not_compared():
            notes.append(f"A last, hope - {name}: not compared ({name} did not learn A in "
                         f"every seed: an interval on A's first queries not above chance)")
        notes.append(f"'{PHASED_CLAIM}': {self.verdict()}")
        return format_table(["model", "params", "A first %", "B %", "A last %",
                             "forgetting", "retention", "ms/step"], rows, notes=notes)

    def to_dict(self) -> dict[str, object]:
        """Plain data (JSON-ready): the setting, the seeds and every run."""
        return {"setting": dict(self.setting), "seeds": list(self.seeds),
                "runs": {name: [asdict(run) for run in runs]
                         for name, runs in self.runs.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PhasedMQARResult:
        """The inverse of :meth:`to_dict` (also reads what :meth:`save` wrote)."""
        if not isinstance(data, Mapping) or not {"setting", "seeds", "runs"} <= set(data) \
                or not isinstance(data["runs"], Mapping):
            raise ValueError("data must be a dict with 'setting', 'seeds' and 'runs' (what "
                             "PhasedMQARResult.to_dict returns)")
        runs = {}
        for name, items in data["runs"].items():
            try:
                runs[name] = [PhasedRun(**dict(item)) for item in items]
            except TypeError as error:
                raise ValueError(f"data['runs'][{name!r}] must hold PhasedRun records: "
                                 f"{error}") from None
        return cls(runs, list(data["seeds"]), dict(data["setting"]))

    def save(self, path: str, *, command: str = "") -> None:
        """Write :meth:`to_dict` with the git commit and ``command`` to ``path`` (JSON),
        atomically (a temporary file, then a rename)."""
        check_str("path", path)
        check_str("command", command, allow_empty=True)
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, check=True,
                                    cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        data = {"commit": commit, "command": command, **self.to_dict()}
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(temporary, path)

    def plot(self, title: str = "") -> matplotlib.figure.Figure:
        """Accuracy on A's first, B's and A's last queries per model with interval whiskers
        (:func:`nlbook.viz.plot_phased_recall`)."""
        from nlbook import viz

        accuracy, intervals = {}, {}
        for name in self.runs:
            cells = [self.cell(name, block) for block in range(len(PHASES))]
            accuracy[name] = [cell.mean for cell in cells]
            intervals[name] = [list(cell.pooled_interval) for cell in cells]
        return viz.plot_phased_recall(accuracy, intervals, chance=self.chance, title=title)


def _schedule(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def _block_counts(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  phase: torch.Tensor, batch: int = 128) -> list[int]:
    """Correct answers on each query block (phase 0, 1, 2), the model in eval mode."""
    was_training = model.training
    model.eval()
    correct = [0] * len(PHASES)
    for start in range(0, inputs.shape[0], batch):
        logits, _ = model(inputs[start:start + batch])
        right = logits.argmax(dim=-1) == targets[start:start + batch]
        for block in range(len(PHASES)):
            correct[block] += int(right[phase[start:start + batch] == block].sum())
    model.train(was_training)
    return correct


def run_phased_mqar(models: Mapping[str, ModelFactory], *, seeds: int | Sequence[int] = (0, 1, 2),
                    steps: int = 600, batch_size: int = 32, vocab_size: int = 64,
                    pairs_per_phase: int = 4, gap: int = 4, learning_rate: float = 3e-3,
                    weight_decay: float = 0.1, warmup_steps: int = 200, test_size: int = 512,
                    switches: Mapping[str, Switch] | None = None,
                    control: str = CONTROL, control_threshold: float = 0.9,
                    claim_model: str = "hope", log_every: int = 100,
                    log: Callable[[str], None] | None = None) -> PhasedMQARResult:
    """Train every model on phased MQAR at equal tokens, interleaved, freeze it and score A's
    first, B's and A's last queries (see the module docstring).

    Args:
        models: name → factory of a fresh language model (``factory(seed=)``) taking int64
            (B, T) ids and returning (logits (B, T, V), loss) with −1 targets ignored
            (:func:`phased_models`).
        seeds: one run of every model per seed (initialisation and training batches; the test
            set is the same for every seed).
        steps, batch_size: the budget, equal for every model.
        vocab_size, pairs_per_phase, gap: the task (:func:`nlbook.tasks.phased_mqar_batch`).
        learning_rate, weight_decay: AdamW (β = 0.9, 0.98), gradients clipped at norm 1.
        warmup_steps: linear warm-up, the same for every model, then cosine decay to 0
            (at most ``steps``).
        test_size: test sequences (every query of every block scored: test_size × n per block).
        switches: test-time variants name → (trained model's name, context manager factory),
            e.g. :func:`phased_switches`; each is scored on the trained model inside the switch.
        control, control_threshold: the positive control (a model name) and the accuracy on
            A's last queries it must reach in its worst seed.
        claim_model: the model the claim is about (compared with the others).
        log_every, log: ``log`` (a callable or None) gets a line with every model's training
            loss every ``log_every`` steps, and one per seed with its test accuracies.
    """
    models = check_models(models)
    seeds = check_seeds(seeds)
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("vocab_size", vocab_size), ("test_size", test_size),
                        ("log_every", log_every)):
        check_positive_int(name, value)
    layout = phased_mqar_layout(pairs_per_phase, gap)
    check_scalar_in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
    check_scalar_in_range("weight_decay", weight_decay, 0.0, 1.0)
    check_int("warmup_steps", warmup_steps, low=0)
    warmup = max(1, min(warmup_steps, steps))
    switches = check_switches(switches, models)
    check_str("control", control)
    check_scalar_in_range("control_threshold", control_threshold, 0.0, 1.0)
    check_str("claim_model", claim_model)
    if log is not None and not callable(log):
        raise ValueError(f"log must be a callable or None, got {log!r}")
    task = dict(vocab_size=vocab_size, pairs_per_phase=pairs_per_phase, gap=gap)
    # The test set is fixed (seed 10**6), apart from every training seed's batches.
    test = phased_mqar_batch(test_size, **task, generator=torch.Generator().manual_seed(10 ** 6))
    queries = [int((test[2] == block).sum()) for block in range(len(PHASES))]
    runs: dict[str, list[PhasedRun]] = {name: [] for name in [*models, *switches]}
    for seed in seeds:
        built = {name: build_model(factory, seed, name) for name, factory in models.items()}
        optimizers = {name: torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                              betas=(0.9, 0.98), weight_decay=weight_decay)
                      for name, model in built.items()}
        times: dict[str, list[float]] = {name: [] for name in built}
        losses: dict[str, float] = dict.fromkeys(built, math.nan)
        diverged: dict[str, int | None] = dict.fromkeys(built)
        data = torch.Generator().manual_seed(seed)
        for step in range(steps):
            inputs, targets, _ = phased_mqar_batch(batch_size, **task, generator=data)
            rate = _schedule(step, steps, learning_rate, warmup)
            # one step of each model in turn: interleaved
            interleaved_steps(built, optimizers, inputs, targets, rate, step, diverged, times,
                              losses)
            if log is not None and ((step + 1) % log_every == 0 or step + 1 == steps):
                log(f"seed {seed} step {step + 1}/{steps}: loss " + ", ".join(
                    f"{name} {losses[name]:.3f}" for name in built))
        scored: dict[str, list[int]] = {}
        for name, model in built.items():
            scored[name] = ([0] * len(PHASES) if diverged[name] is not None
                            else _block_counts(model, *test))
            runs[name].append(PhasedRun(
                correct=scored[name], queries=list(queries),
                ms_per_step=1000 * statistics.median(times[name]) if times[name] else None,
                parameters=parameters_of(model),
                final_loss=losses[name] if math.isfinite(losses[name]) else None,
                diverged_at=diverged[name]))
        for name, (base, switch) in switches.items():
            model = built[base]
            if diverged[base] is not None:
                scored[name] = [0] * len(PHASES)
            else:
                with switch(model):
                    scored[name] = _block_counts(model, *test)
            runs[name].append(PhasedRun(
                correct=scored[name], queries=list(queries), ms_per_step=None,
                parameters=parameters_of(model), final_loss=None,
                diverged_at=diverged[base]))
        if log is not None:
            log(f"seed {seed} test accuracy A first / B / A last %: " + "; ".join(
                f"{name} " + " / ".join(f"{100 * right / total:.1f}"
                                        for right, total in zip(counts, queries, strict=True))
                for name, counts in scored.items()))
    setting = dict(task, sequence_length=layout["sequence"][1], steps=steps,
                   batch_size=batch_size, learning_rate=learning_rate,
                   weight_decay=weight_decay, warmup_steps=warmup, test_size=test_size,
                   control=control, control_threshold=control_threshold,
                   claim_model=claim_model, models=list(models), switches=list(switches))
    return PhasedMQARResult(runs, list(seeds), setting)

