"""MAD (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures"; the paper's
Table 4), scaled to a CPU: does HOPE match or beat the Transformer on MAD's synthetic tasks?

The claim (arXiv Table 4, MAD at width 128, two layers): HOPE scores Compress 51.2, ICR 100,
Fuzzy-ICR 52.1, selective copy 99.7, memorisation 85.2, against the Transformer's 49.4 / 100 /
47.9 / 96.2 / 83.7 (:data:`PAPER_TABLE4`; Titans' MAD table, which this one follows, labels the
ICR column "noisy ICR": both recall tasks are run here).

The protocol here (declared before any run; :mod:`nlbook.claims.protocol`):

- **Tasks**: MAD's six (:func:`nlbook.tasks.mad_batch`), each at its scaled setting
  (:data:`nlbook.tasks.MAD_SETTINGS`: T ≤ 64 and V ≤ 32, memorisation at MAD's V = 256).
  Compression is read as MAD reads it, through a bottleneck: :class:`CompressionReader`.
- **Models** (:func:`mad_models`): ``hope`` (:class:`nlbook.hope.HopeLM` as
  :func:`nlbook.claims.mqar_models` builds it), ``transformer++`` (the positive control) and
  ``delta`` (the same HOPE block with the gated delta rule), width 64 and two layers (MAD: 128
  and two). Each model is built per task, for the task's vocabulary and length.
- **Budget**: equal tokens: every model takes the same ``steps`` AdamW steps (β = 0.9, 0.98,
  weight decay 0.1, gradients clipped at norm 1) on the *same* batches, the models stepped in
  turn; one learning rate (3e-3: MAD searches {1e-4, 5e-4, 1e-3} × weight decay {0, 0.1} over
  200 epochs and keeps the best run, which a CPU cannot afford) with a linear warm-up then a
  cosine decay. Equal time is a second column, not trained: each model's step budget for the
  time the control took for ``steps`` steps, from per-step times measured interleaved
  (:func:`~nlbook.claims.protocol.interleaved_step_seconds`, before training, per task).
- **Scoring**: the test accuracy over every scored token of a fixed test set (``test_size``
  sequences, MAD's test rows), per seed with a 95 % Wilson interval, and over seeds as an
  :class:`~nlbook.claims.protocol.AccuracyCell`.
- **Scale** (``python -m nlbook.bench mad``): 500 steps of 32 sequences per model and task,
  warm-up 300 steps (the warm-up Transformer++ needed on MQAR, for every model), lr 3e-3,
  3 seeds: about 40 minutes of one CPU core for the six tasks and three models. MAD trains
  200 epochs of 100 batches of 128 (about 160 times the tokens). Measured before the run
  (Transformer++ alone, in-context recall): seed 0 solves it at about step 350-400 with this
  warm-up; seed 1 stays at the in-context-frequency plateau (about 30 %) through 800 steps at
  lr 3e-3 and leaves it only after about 450 steps at lr 1e-3; selective copying reaches 57-85 %
  at 600 steps. So the control may fail at this budget: then no verdict is read.
- **Positive control**: Transformer++ must reach ≥ 90 % on in-context recall **and** selective
  copying on every seed (:data:`CONTROL_THRESHOLD`); otherwise the verdict is "not tested at
  this budget".
- **Claim**: per task, HOPE's cell against Transformer++'s (:func:`~nlbook.claims.protocol.
  compare`): the outcome is True when HOPE is not worse beyond twice the spread (it matches or
  beats), False when it is worse beyond it; :func:`~nlbook.claims.protocol.verdict` over the
  tasks run.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.figure
import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    check_bool,
    check_memory,
    check_positive_int,
    check_scalar_in_range,
)
from nlbook.claims._common import (
    ModelFactory,
    check_models,
    check_names,
    check_seeds,
    format_table,
    interleaved_steps,
    parameters_of,
)
from nlbook.claims.mqar import _accuracy, _schedule
from nlbook.claims.protocol import (
    AccuracyCell,
    Comparison,
    Control,
    Verdict,
    accuracy_cell,
    compare,
    equal_time_steps,
    interleaved_step_seconds,
    verdict,
)
from nlbook.tasks.mad import MAD_SETTINGS, MAD_TASKS, mad_batch, mad_chance

__all__ = ["CLAIM_MODEL", "CONTROL_MODEL", "CONTROL_TASKS", "CONTROL_THRESHOLD", "MAD_MODELS",
           "PAPER_TABLE4", "CompressionReader", "MADResult", "mad_models", "run_mad"]

#: The models ``python -m nlbook.bench mad --models`` knows.
MAD_MODELS = ("hope", "transformer++", "delta")
#: The model the claim is about, and the model it is compared with (the positive control).
CLAIM_MODEL, CONTROL_MODEL = "hope", "transformer++"
#: The control must reach this accuracy on each of these tasks, on every seed.
CONTROL_TASKS, CONTROL_THRESHOLD = ("in-context-recall", "selective-copying"), 0.9
#: arXiv Table 4 (%): task → (HOPE, Transformer). The paper's "ICR" column is put on
#: in-context recall; noisy recall has no column of its own there.
PAPER_TABLE4: dict[str, tuple[float, float]] = {
    "compression": (51.2, 49.4), "in-context-recall": (100.0, 100.0),
    "fuzzy-in-context-recall": (52.1, 47.9), "selective-copying": (99.7, 96.2),
    "memorization": (85.2, 83.7)}
_SHORT = {"in-context-recall": "ICR", "fuzzy-in-context-recall": "fuzzy ICR",
          "noisy-in-context-recall": "noisy ICR", "selective-copying": "sel. copy",
          "compression": "compress", "memorization": "memorise"}


def mad_models(*, d_model: int = 64, n_layers: int = 2, n_heads: int = 2,
               names: Sequence[str] = MAD_MODELS) -> dict[str, ModelFactory]:
    """Factories ``factory(seed=, vocab_size=, sequence_length=)`` of the MAD models, built by
    :func:`nlbook.claims.mqar_models` for each task's vocabulary and length: ``hope``,
    ``transformer++`` and ``delta`` (HOPE's block with the gated delta rule)."""
    from nlbook.claims.mqar import mqar_models

    for name, value in (("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads)):
        check_positive_int(name, value)
    check_names("names", names, MAD_MODELS)

    def make(name: str) -> ModelFactory:
        def factory(seed: int = 0, vocab_size: int = 16, sequence_length: int = 64
                    ) -> nn.Module:
            factories = mqar_models(vocab_size, d_model=d_model, n_layers=n_layers,
                                    n_heads=n_heads, sequence_length=sequence_length,
                                    names=[name])
            return factories[name](seed=seed)
        return factory

    return {name: make(name) for name in names}


def _sinusoids(length: int, width: int) -> torch.Tensor:
    """Fixed sine-cosine position codes (length, width) (Vaswani et al. 2017)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(-math.log(10_000.0) * torch.arange(0, width, 2).float() / width)
    codes = torch.zeros(length, width)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[:width // 2])
    return codes


class CompressionReader(nn.Module):
    """MAD's encoder-decoder reading of compression, around a causal language model.

    The model reads the row (B, T); its last position's hidden state h (B, d) (the input of its
    ``lm_head``, after the final norm) is the *only* thing the decoder sees: for each position
    t, logits_t = W_out LN(MLP(h + p_t)), with p_t a fixed sine-cosine code and the MLP two
    (LN, Linear d → d, GELU) layers, as in MAD's auto-encoder. So every model must squeeze the
    whole row into one d-vector, whatever its mixer; attention cannot copy tokens back.

    ``forward(idx, targets=None)`` → (logits (B, T, V), loss or None), like the models.
    """

    def __init__(self, model: nn.Module, vocab_size: int, sequence_length: int) -> None:
        super().__init__()
        head = getattr(model, "lm_head", None)
        if not isinstance(head, nn.Linear):
            raise ValueError(f"model must have an lm_head (nn.Linear) whose input is the "
                             f"final hidden state, got {type(model).__name__}")
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("sequence_length", sequence_length)
        width = head.in_features
        check_memory("vocab_size", vocab_size * width, what="the decoder's readout")
        check_memory("sequence_length", sequence_length * width, what="the position codes")
        self.model = model
        self.decoder = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                                     nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                                     nn.LayerNorm(width), nn.Linear(width, vocab_size))
        self.register_buffer("positions", _sinusoids(sequence_length, width), persistent=False)
        self._hidden: list[torch.Tensor] = []
        # The last call of lm_head in a forward pass is the final readout (HOPE also calls it
        # inside its blocks, for the CMS's in-context loss).
        # A bound method, not a closure, so that a deep copy of the reader hooks its own list.
        head.register_forward_hook(self._keep_hidden)

    def _keep_hidden(self, module: nn.Module, inputs: tuple[torch.Tensor, ...],
                     output: torch.Tensor) -> None:
        self._hidden.append(inputs[0])

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if idx.shape[1] > self.positions.shape[0]:
            raise ValueError(f"idx must hold at most {self.positions.shape[0]} tokens per row, "
                             f"got {idx.shape[1]}")
        self._hidden.clear()
        self.model(idx)
        state = self._hidden[-1][:, -1]  # (B, d): the whole row, squeezed
        self._hidden.clear()
        logits = self.decoder(state[:, None, :] + self.positions[None, :idx.shape[1]])
        loss = None if targets is None else F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss


def _build(factory: ModelFactory, seed: int, name: str, task: str, vocab: int,
           length: int) -> nn.Module:
    """A fresh model for ``task``: ``factory(seed=, vocab_size=, sequence_length=)`` when it
    takes them (else ``factory(seed=)`` or ``factory()``), wrapped for compression."""
    import inspect

    torch.manual_seed(seed)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    options = {key: value for key, value in (("seed", seed), ("vocab_size", vocab),
                                             ("sequence_length", length)) if key in parameters}
    model = factory(**options)
    if not isinstance(model, nn.Module):
        raise ValueError(f"models[{name!r}] must return a torch.nn.Module, got "
                         f"{type(model).__name__}")
    if task == "compression":
        torch.manual_seed(seed)
        model = CompressionReader(model, vocab, length)
    return model


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                targets: torch.Tensor) -> float:
    _, loss = model(inputs, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def _optimizer(model: nn.Module, learning_rate: float, weight_decay: float
               ) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.98),
                             weight_decay=weight_decay)


@dataclass
class MADResult:
    """Per model, per task, one run per seed (dicts of plain numbers: ``seed``, ``correct``,
    ``total``, ``accuracy``, ``interval``, ``final_loss``, ``ms_per_step`` (median in the
    training loop), ``diverged_at``); per model and task the interleaved ms per step, the
    equal-time step budget and the parameter count; the setting."""

    runs: dict[str, dict[str, list[dict[str, object]]]]
    seeds: list[int]
    tasks: list[str]
    ms_per_step: dict[str, dict[str, float]] = field(default_factory=dict)
    equal_time_steps: dict[str, dict[str, int]] = field(default_factory=dict)
    parameters: dict[str, dict[str, int]] = field(default_factory=dict)
    setting: dict[str, object] = field(default_factory=dict)

    # ---- cells, control, verdict -------------------------------------------------------
    def cell(self, model: str, task: str) -> AccuracyCell:
        """The model's accuracies on the task over seeds (:class:`AccuracyCell`)."""
        runs = self.runs[model][task]
        return accuracy_cell([int(run["correct"]) for run in runs],
                             [int(run["total"]) for run in runs])

    def _has(self, model: str, task: str) -> bool:
        return bool(self.runs.get(model, {}).get(task))

    @property
    def control(self) -> Control | None:
        """Transformer++'s worst seed over in-context recall and selective copying against
        90 % (None when the control model or one of its tasks was not run)."""
        if not all(self._has(CONTROL_MODEL, task) for task in CONTROL_TASKS):
            return None
        worst = min(float(run["accuracy"]) for task in CONTROL_TASKS
                    for run in self.runs[CONTROL_MODEL][task])
        return Control(CONTROL_MODEL, " and ".join(CONTROL_TASKS) + " (worst seed)", worst,
                       CONTROL_THRESHOLD)

    def comparisons(self) -> dict[str, Comparison]:
        """Per task run by both: HOPE's cell against Transformer++'s (:func:`compare`)."""
        return {task: compare(self.cell(CLAIM_MODEL, task), self.cell(CONTROL_MODEL, task))
                for task in self.tasks
                if self._has(CLAIM_MODEL, task) and self._has(CONTROL_MODEL, task)}

    def outcomes(self) -> dict[str, bool]:
        """Per task: True when HOPE matches or beats Transformer++ (not worse beyond twice the
        spread), False when it is worse beyond it."""
        return {task: comparison.direction >= 0
                for task, comparison in self.comparisons().items()}

    def verdict(self) -> Verdict:
        """The claim's verdict (:func:`nlbook.claims.protocol.verdict`)."""
        return verdict(self.control, list(self.outcomes().values()), seeds=len(self.seeds))

    # ---- text --------------------------------------------------------------------------
    def table(self) -> str:
        """The plain-text table ``python -m nlbook.bench mad`` prints: test accuracy % per
        task (mean ± std over seeds [pooled 95 % interval]), chance, the paper's numbers,
        HOPE − Transformer++ against the bar; then ms per step and equal-time steps."""
        models = list(self.runs)
        comparisons = self.comparisons()
        rows = []
        for task in self.tasks:
            paper = PAPER_TABLE4.get(task)
            row: list[object] = [task, f"{100 * self._chance(task):.1f}",
                                 "-" if paper is None else f"{paper[0]:g} / {paper[1]:g}"]
            row += [str(self.cell(model, task)) if self._has(model, task) else "-"
                    for model in models]
            if task in comparisons:
                item = comparisons[task]
                reading = {1: "HOPE higher", -1: "HOPE lower", 0: "no difference"}[
                    item.direction]
                row.append(f"{100 * item.difference:+.1f} (bar {100 * item.bar:.1f}): "
                           f"{reading}")
            else:
                row.append("-")
            rows.append(row)
        accuracy = format_table(
            ["task", "chance %", "paper HOPE / T %", *models, "HOPE - T++ (points)"], rows,
            title=f"MAD at CPU scale: test accuracy % over seeds {self.seeds} "
                  f"(mean ± std [pooled 95 % interval])")
        steps = self.setting.get("steps", "?")
        time_rows = []
        for model in models:
            cells = []
            for task in self.tasks:
                ms = self.ms_per_step.get(model, {}).get(task)
                budget = self.equal_time_steps.get(model, {}).get(task)
                cells.append("-" if ms is None else f"{ms:.0f} ms, {budget} steps")
            params = self.parameters.get(model, {})
            count = params.get(self.tasks[0]) if self.tasks else None
            time_rows.append([model, "-" if count is None else f"{count:,}", *cells])
        timing = format_table(
            ["model", f"params ({_SHORT.get(self.tasks[0], '')})" if self.tasks else "params",
             *[_SHORT.get(task, task) for task in self.tasks]], time_rows,
            title=f"ms per step (interleaved) and the equal-time budget: the steps each model "
                  f"gets in the time {CONTROL_MODEL} takes for {steps} (not trained)")
        control = self.control
        notes = [f"setting: {self._setting_line()}",
                 str(control) if control is not None else "positive control: not run",
                 f"claim 'HOPE matches or beats the Transformer on MAD': {self.verdict()}"]
        return accuracy + "\n\n" + timing + "\n\n" + "\n".join(notes)

    def _chance(self, task: str) -> float:
        options = dict(self.setting.get("tasks", {}).get(task, {}))
        return mad_chance(task, options.get("vocab_size"),
                          noise_vocab_size=options.get("noise_vocab_size"))

    def _setting_line(self) -> str:
        s = self.setting
        schedule = "constant" if s.get("constant_learning_rate") else "cosine"
        return (f"{s.get('steps')} steps x batch {s.get('batch_size')} (equal tokens), AdamW lr "
                f"{s.get('learning_rate')} (warm-up {s.get('warmup_steps')}, {schedule}), weight "
                f"decay {s.get('weight_decay')}, {s.get('test_size')} test sequences per task; "
                f"MAD scaled: width 128 -> {s.get('d_model', '?')}, T <= 64, V <= 32 "
                f"(memorisation V 256), one learning rate instead of MAD's grid")

    def summary(self) -> str:
        """One sentence with the numbers, for the claims map."""
        parts = []
        for task in self.tasks:
            if self._has(CLAIM_MODEL, task) and self._has(CONTROL_MODEL, task):
                parts.append(f"{_SHORT.get(task, task)} "
                             f"{100 * self.cell(CLAIM_MODEL, task).mean:.1f} vs "
                             f"{100 * self.cell(CONTROL_MODEL, task).mean:.1f}")
        control = self.control
        control_text = ("control not run" if control is None else
                        f"control Transformer++ worst seed on ICR and selective copying "
                        f"{100 * control.measured:.1f} % (needs >= "
                        f"{100 * control.threshold:.0f} %: "
                        f"{'passed' if control.passed else 'failed'})")
        return (f"MAD at CPU scale ({len(self.seeds)} seeds, {self.setting.get('steps')} equal "
                f"steps, width {self.setting.get('d_model', '?')}): HOPE vs Transformer++ test "
                f"accuracy % {', '.join(parts) or 'not run'}; {control_text}; verdict: "
                f"{self.verdict().verdict}.")

    # ---- data --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """Plain data (JSON-ready), per-seed numbers included."""
        return {"runs": copy.deepcopy(self.runs), "seeds": list(self.seeds),
                "tasks": list(self.tasks), "ms_per_step": copy.deepcopy(self.ms_per_step),
                "equal_time_steps": copy.deepcopy(self.equal_time_steps),
                "parameters": copy.deepcopy(self.parameters),
                "setting": copy.deepcopy(self.setting)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MADResult:
        """The inverse of :meth:`to_dict` (also reads what :meth:`save` wrote)."""
        keys = {"runs", "seeds", "tasks", "ms_per_step", "equal_time_steps", "parameters",
                "setting"}
        if not isinstance(data, Mapping) or not keys <= set(data):
            raise ValueError(f"data must be a dict with {sorted(keys)} (what MADResult.to_dict "
                             f"returns)")
        runs = {model: {task: [dict(run) | {"interval": tuple(run["interval"])}
                               for run in items] for task, items in tasks.items()}
                for model, tasks in data["runs"].items()}
        return cls(runs, list(data["seeds"]), list(data["tasks"]),
                   copy.deepcopy(dict(data["ms_per_step"])),
                   copy.deepcopy(dict(data["equal_time_steps"])),
                   copy.deepcopy(dict(data["parameters"])), copy.deepcopy(dict(data["setting"])))

    def save(self, path: str, *, command: str = "") -> None:
        """Write :meth:`to_dict` with the git commit, ``command``, the verdict and the summary
        to ``path`` (JSON), atomically."""
        import json
        import os
        import subprocess

        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, check=True,
                                    cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        outcome = self.verdict()
        data = {"commit": commit, "command": command, "verdict": outcome.verdict,
                "why": outcome.why, "summary": self.summary(), **self.to_dict()}
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(temporary, path)

    def plot(self, title: str = "") -> matplotlib.figure.Figure:
        """Grouped bars: each model's mean test accuracy per task, whiskers at the pooled 95 %
        interval, chance marked (:func:`nlbook.viz.plot_mad_accuracy`)."""
        from nlbook import viz

        tasks = [task for task in self.tasks if all(self._has(model, task)
                                                    for model in self.runs)]
        means, lows, highs = {}, {}, {}
        for model in self.runs:
            cells = [self.cell(model, task) for task in tasks]
            means[model] = [cell.mean for cell in cells]
            lows[model] = [cell.pooled_interval[0] for cell in cells]
            highs[model] = [cell.pooled_interval[1] for cell in cells]
        return viz.plot_mad_accuracy([_SHORT.get(task, task) for task in tasks], means,
                                     lows=lows, highs=highs,
                                     chance=[self._chance(task) for task in tasks],
                                     title=title)


def run_mad(models: Mapping[str, ModelFactory], *, tasks: Sequence[str] = MAD_TASKS,
            seeds: Sequence[int] = (0, 1, 2), steps: int = 500, batch_size: int = 32,
            learning_rate: float = 3e-3, weight_decay: float = 0.1,
            warmup_steps: int | None = None, constant_learning_rate: bool = False,
            test_size: int = 256, task_options: Mapping[str, Mapping[str, object]] | None = None,
            timing_rounds: int = 5, on_task: Callable[[MADResult], None] | None = None,
            log: Callable[[str], None] | None = None) -> MADResult:
    """Train every model on every task at equal tokens, interleaved, and score it (see the
    module docstring).

    Args:
        models: name → factory of a fresh language model, called as
            ``factory(seed=, vocab_size=, sequence_length=)`` (the arguments it takes; see
            :func:`mad_models`), taking int64 (B, T) ids and returning (logits (B, T, V), loss)
            with −1 targets ignored; for compression it needs an ``lm_head`` (nn.Linear).
        tasks: names from :data:`nlbook.tasks.MAD_TASKS`.
        seeds: one run of every model per task and seed (initialisation and training
            batches; the test set is the same for every seed).
        steps, batch_size: the budget, equal for every model.
        learning_rate, weight_decay: AdamW; warm-up ``warmup_steps`` (default steps // 4),
            then cosine decay to 0, or a constant rate with ``constant_learning_rate``.
        test_size: test sequences per task (every scored token counted).
        task_options: task → options of :func:`nlbook.tasks.mad_batch` replacing its
            :data:`~nlbook.tasks.MAD_SETTINGS` (e.g. a shorter ``sequence_length``).
        timing_rounds: interleaved timing rounds per task (on copies, before training).
        on_task: called with the result so far after every task (e.g. to save it).
        log: called with a progress line after every (task, seed).
    """
    models = check_models(models)
    seeds = check_seeds(seeds)
    if isinstance(tasks, str) or not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(f"tasks must be a non-empty list of names from {list(MAD_TASKS)}, "
                         f"got {tasks!r}")
    for task in tasks:
        if task not in MAD_TASKS:
            raise ValueError(f"tasks must hold names from {list(MAD_TASKS)}, got {task!r}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must not repeat a task, got {list(tasks)}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("test_size", test_size),
                        ("timing_rounds", timing_rounds)):
        check_positive_int(name, value)
    check_scalar_in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
    check_scalar_in_range("weight_decay", weight_decay, 0.0, 1.0)
    warmup = max(1, steps // 4) if warmup_steps is None else warmup_steps
    check_positive_int("warmup_steps", warmup)
    check_bool("constant_learning_rate", constant_learning_rate)
    if task_options is not None and (not isinstance(task_options, Mapping) or not all(
            isinstance(key, str) and key in MAD_TASKS and isinstance(value, Mapping)
            for key, value in task_options.items())):
        raise ValueError(f"task_options must map task names from {list(MAD_TASKS)} to dicts of "
                         f"mad_batch options, or be None, got {task_options!r}")
    for label, function in (("on_task", on_task), ("log", log)):
        if function is not None and not callable(function):
            raise ValueError(f"{label} must be a callable or None, got {function!r}")
    settings = {}
    for task in tasks:
        options = dict(MAD_SETTINGS[task]) | dict((task_options or {}).get(task, {}))
        try:
            mad_batch(task, 1, generator=torch.Generator().manual_seed(0), **options)
        except (TypeError, ValueError) as error:
            raise ValueError(f"task_options[{task!r}] (over MAD_SETTINGS) give a bad setting: "
                             f"{error}") from None
        settings[task] = options
    result = MADResult({name: {} for name in models}, list(seeds), [], setting=dict(
        steps=steps, batch_size=batch_size, learning_rate=learning_rate,
        weight_decay=weight_decay, warmup_steps=warmup,
        constant_learning_rate=constant_learning_rate, test_size=test_size, tasks=settings))
    for task_index, task in enumerate(tasks):
        options = settings[task]
        vocab, length = int(options["vocab_size"]), int(options["sequence_length"])
        test_inputs, test_targets = mad_batch(
            task, test_size, generator=torch.Generator().manual_seed(10 ** 6 + task_index),
            test=True, **options)
        total = int((test_targets >= 0).sum())
        for seed in seeds:
            built = {name: _build(factory, seed, name, task, vocab, length)
                     for name, factory in models.items()}
            optimizers = {name: _optimizer(model, learning_rate, weight_decay)
                          for name, model in built.items()}
            if seed == seeds[0]:
                _time_models(result, task, built, options, batch_size, learning_rate,
                             weight_decay, steps, timing_rounds)
            times: dict[str, list[float]] = {name: [] for name in built}
            losses: dict[str, float] = dict.fromkeys(built, math.nan)
            diverged: dict[str, int | None] = dict.fromkeys(built)
            data = torch.Generator().manual_seed(1000 * seed + task_index)
            for step in range(steps):
                inputs, targets = mad_batch(task, batch_size, generator=data, **options)
                rate = _schedule(step, steps, learning_rate, warmup, constant_learning_rate)
                # one step of each model in turn: interleaved
                interleaved_steps(built, optimizers, inputs, targets, rate, step, diverged,
                                  times, losses)
            line = []
            for name, model in built.items():
                correct = 0 if diverged[name] is not None else _accuracy(model, test_inputs,
                                                                         test_targets)
                low_high = accuracy_cell([correct], [total]).intervals[0]
                result.runs[name].setdefault(task, []).append(dict(
                    seed=seed, correct=correct, total=total, accuracy=correct / total,
                    interval=low_high, final_loss=losses[name],
                    ms_per_step=1000 * statistics.median(times[name]) if times[name]
                    else math.nan, diverged_at=diverged[name]))
                result.parameters.setdefault(name, {})[task] = parameters_of(model)
                line.append(f"{name} {100 * correct / total:.1f}%")
            if log is not None:
                log(f"{task} seed {seed}: " + ", ".join(line))
        result.tasks.append(task)
        if on_task is not None:
            on_task(result)
    return result


def _time_models(result: MADResult, task: str, built: Mapping[str, nn.Module],
                 options: Mapping[str, object], batch_size: int, learning_rate: float,
                 weight_decay: float, steps: int, rounds: int) -> None:
    """Per-step seconds of every model on ``task``, interleaved, on copies (the models
    themselves are not stepped); the equal-time budgets for the time the control (else the
    first model) takes for ``steps`` steps."""
    inputs, targets = mad_batch(task, batch_size, generator=torch.Generator().manual_seed(7),
                                **options)
    copies = {name: copy.deepcopy(model) for name, model in built.items()}
    optimizers = {name: _optimizer(model, learning_rate, weight_decay)
                  for name, model in copies.items()}

    def stepper(name: str) -> Callable[[], float]:
        return lambda: _train_step(copies[name], optimizers[name], inputs, targets)

    seconds = interleaved_step_seconds({name: stepper(name) for name in copies}, rounds=rounds)
    reference = CONTROL_MODEL if CONTROL_MODEL in seconds else next(iter(seconds))
    budgets = equal_time_steps(seconds, steps * seconds[reference])
    for name, value in seconds.items():
        result.ms_per_step.setdefault(name, {})[task] = 1000 * value
        result.equal_time_steps.setdefault(name, {})[task] = budgets[name]
