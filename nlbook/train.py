"""Training loop, checkpoints and evaluation for the character language models of chapter 6.

Used by the notebook (``nlbook.train.train(TrainConfig(...))``) and by the command line::

    python -m nlbook.train --model transformer --preset tiny --steps 2000
    python -m nlbook.train --model hope --minutes 5 --data my_text.txt --device cuda
    python -m nlbook.train --checkpoint checkpoints/transformer-tiny.pt --resume

What the loop does, step by step (one *step* is one optimizer update on one random batch):

* batches are random windows of the training split (first 90%, nanoGPT's split), drawn from an
  explicit ``torch.Generator`` seeded by ``config.seed``;
* the learning rate warms up linearly for ``warmup_steps`` and then follows a cosine down to
  ``min_learning_rate`` at the last step (nanoGPT's schedule);
* the optimizer is AdamW (weight decay on matrices only) unless ``config.optimizer`` names a
  torch optimizer (``adam``, ``sgd``) or a chapter-2 optimizer of :mod:`nlbook.optim`;
* validation loss is estimated every ``eval_interval`` steps on ``eval_batches`` fixed random
  windows of the validation split (a separate generator, so evaluating never changes training),
  reported in nats and bits per character (bits = nats / ln 2);
* a checkpoint is written atomically (temporary file, then ``os.replace``) every
  ``checkpoint_interval`` steps. It holds only tensors and plain containers, is loaded with
  ``torch.load(weights_only=True)``, and stores everything a resumed run needs to continue
  exactly as an uninterrupted one: model, optimizer, step, number of steps, the data
  generator's state, torch's RNG state (dropout) and the loss history (a ``--minutes`` run
  also stores the time spent, and its schedule follows the clock, so its resume is exact in
  everything but timing);
* a non-finite loss or gradient stops training with :class:`TrainingDivergedError`, naming the
  step, before the bad update is applied or saved: the last checkpoint stays the last good one.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlbook.data import CharCorpus, CharVocabulary, DataFileError, load_corpus, random_batch
from nlbook.data import sequential_windows as _sequential_windows

__all__ = [
    "MODEL_REGISTRY",
    "PRESETS",
    "CheckpointError",
    "ModelUnavailableError",
    "OptimizerPair",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "build_model",
    "build_optimizer",
    "estimate_loss",
    "evaluate_all",
    "learning_rate_at",
    "load_checkpoint",
    "load_model",
    "main",
    "save_checkpoint",
    "save_loss_figure",
    "train",
]

CHECKPOINT_FORMAT = "nlbook-checkpoint-1"
LN2 = math.log(2.0)

#: name -> "module:ClassName"; imported only when used, so a model still being written (HOPE)
#: does not break the others.
MODEL_REGISTRY: dict[str, str] = {
    "transformer": "nlbook.transformer:TransformerLM",
    "hope": "nlbook.hope:HopeLM",
}

#: Chapter-2 optimizers of nlbook.optim, selectable by name (case, '-' and '_' ignored).
NLBOOK_OPTIMIZERS = ("MomentumMemory", "AdamMemory", "PreconditionedMomentum", "DeltaMomentum",
                     "DeepMomentum", "Muon", "M3")

#: Tested size presets. "tiny" (0.11M parameters) trains in about 1.5 minutes on one core of a
#: 2-core laptop (measured: val 1.85 nats/char after 3000 steps, 79 s); "small" is nanoGPT's
#: CPU "baby GPT" recipe (0.8M parameters, val 1.88 after 2000 steps, about 3 minutes);
#: "base" is nanoGPT's shakespeare_char GPU recipe (10.7M parameters, val 1.47), for a GPU.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, context_length=64, batch_size=16,
                 steps=3000, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=100,
                 eval_interval=250, eval_batches=20),
    "small": dict(d_model=128, n_layers=4, n_heads=4, context_length=64, batch_size=12,
                  steps=2000, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                  eval_interval=250, eval_batches=20),
    "base": dict(d_model=384, n_layers=6, n_heads=6, context_length=256, batch_size=64,
                 steps=5000, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                 eval_interval=250, eval_batches=200, model_options={"dropout": 0.2}),
}


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient became NaN or infinite; the message names the step."""

    def __init__(self, message: str, step: int, last_good_step: int | None) -> None:
        super().__init__(message)
        self.step = step
        self.last_good_step = last_good_step


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, not an nlbook checkpoint, or holds pickled objects."""


class ModelUnavailableError(ImportError):
    """A registered model's module cannot be imported yet (e.g. ``nlbook.hope``)."""


_PLAIN_TYPES = (bool, int, float, str, type(None))


def _check_plain(name: str, value: Any) -> None:
    """Checkpoints load with weights_only=True, so configs may hold only plain values."""
    if isinstance(value, _PLAIN_TYPES):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(name, item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{name} keys must be str, got {key!r}")
            _check_plain(name, item)
        return
    raise ValueError(f"{name} must hold only numbers, strings, bools, None, lists and dicts "
                     f"(checkpoints are loaded with weights_only=True), got {type(value)}")


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint as a plain dict.

    ``steps`` fixes the number of optimizer steps; alternatively ``minutes`` gives a wall-clock
    budget: after the warm-up (counted in steps) the cosine runs over wall-clock time, from the
    end of the warm-up to the deadline, and the run stops at the deadline with the rate at its
    minimum, however the machine's speed drifts. Evaluations count in the budget. (Planning a
    number of steps from the warm-up's speed instead ended runs up to 12% early or late on a
    shared CPU: measured.) ``calibration_steps`` only sizes the progress bar's estimate.
    ``model_options`` are extra keyword arguments of the model (e.g. ``dropout``).
    ``checkpoint`` None trains without writing checkpoints (notebook use).
    """

    model: str = "transformer"
    preset: str | None = None
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    context_length: int = 64
    model_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    steps: int | None = 3000
    minutes: float | None = None
    calibration_steps: int = 10
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    min_learning_rate: float = 2e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float | None = 1.0
    eval_interval: int = 250
    eval_batches: int = 20
    checkpoint_interval: int | None = None
    seed: int = 0
    device: str = "cpu"
    data: str | None = None
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_REGISTRY:
            raise ValueError(f"model must be one of {sorted(MODEL_REGISTRY)}, got {self.model!r}")
        for name in ("d_model", "n_layers", "n_heads", "context_length", "batch_size",
                     "eval_interval", "eval_batches", "calibration_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if (self.steps is None) == (self.minutes is None):
            raise ValueError(f"give exactly one of steps and minutes, got steps={self.steps!r}, "
                             f"minutes={self.minutes!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be positive, got {self.minutes!r}")
        if self.checkpoint_interval is not None and self.checkpoint_interval < 1:
            raise ValueError(f"checkpoint_interval must be positive or None, "
                             f"got {self.checkpoint_interval!r}")
        if not 0 < self.learning_rate or not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(f"need 0 < learning_rate and 0 <= min_learning_rate <= "
                             f"learning_rate, got {self.learning_rate!r}, "
                             f"{self.min_learning_rate!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        _check_plain("model_options", self.model_options)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The configuration named ``preset`` (see :data:`PRESETS`), with ``overrides``."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        values = dict(PRESETS[preset], preset=preset)
        values.update(overrides)
        if overrides.get("minutes") is not None and "steps" not in overrides:
            values["steps"] = None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``history`` holds plain lists: ``train_steps``/``train_loss`` (every step, nats) and
    ``val_steps``/``val_loss`` (every evaluation, nats). ``val_loss`` is the last estimate.
    """

    model: nn.Module
    vocabulary: CharVocabulary
    config: TrainConfig
    history: dict[str, list]
    step: int
    total_steps: int
    seconds: float
    checkpoint: str | None

    @property
    def val_loss(self) -> float:
        return self.history["val_loss"][-1] if self.history["val_loss"] else float("nan")

    @property
    def val_bits_per_char(self) -> float:
        return self.val_loss / LN2


# ----------------------------------------------------------------------------- building blocks

def _model_class(name: str) -> type[nn.Module]:
    if name not in MODEL_REGISTRY:
        raise ValueError(f"model must be one of {sorted(MODEL_REGISTRY)}, got {name!r}")
    module_name, class_name = MODEL_REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelUnavailableError(
            f"model {name!r} needs {module_name}.{class_name}, which cannot be imported "
            f"({error}). Is that chapter's module written yet? Try --model transformer."
        ) from error
    if not hasattr(module, class_name):
        raise ModelUnavailableError(f"model {name!r}: {module_name} defines no {class_name}")
    return getattr(module, class_name)


def build_model(name: str, vocab_size: int, d_model: int, n_layers: int, n_heads: int, *,
                context_length: int | None = None, **options: Any) -> nn.Module:
    """Construct a registered model: ``Model(vocab_size=, d_model=, n_layers=, n_heads=,
    context_length=, **options)``. ``context_length`` is passed only if the class accepts it.

    Raises:
        ValueError: for an unknown name. ModelUnavailableError: if its module is missing.
    """
    model_class = _model_class(name)
    kwargs = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads)
    if context_length is not None:
        parameters = inspect.signature(model_class).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        if "context_length" in parameters or takes_any:
            kwargs["context_length"] = context_length
    return model_class(**kwargs, **options)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


class OptimizerPair:
    """Two optimizers stepped together: an orthogonalising chapter-2 optimizer (Muon, M3) on the
    hidden weight matrices and AdamW on everything else (embeddings, norms, biases), the usual
    way Muon is used (Jordan et al. 2024). ``param_groups`` lists both optimizers' groups so the
    schedule reaches all of them; the state dict holds both."""

    def __init__(self, main: torch.optim.Optimizer, fallback: torch.optim.Optimizer) -> None:
        self.main, self.fallback = main, fallback

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.main.param_groups + self.fallback.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.main.zero_grad(set_to_none=set_to_none)
        self.fallback.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.main.step()
        self.fallback.step()

    def state_dict(self) -> dict[str, Any]:
        return {"main": self.main.state_dict(), "fallback": self.fallback.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.main.load_state_dict(state["main"])
        self.fallback.load_state_dict(state["fallback"])


#: chapter-2 optimizers meant for hidden matrices only (Newton-Schulz orthogonalisation).
_MATRIX_OPTIMIZERS = ("Muon", "M3")


def _is_matrix(parameter: torch.Tensor) -> bool:
    """A weight matrix (or stack of them): at least two axes longer than 1."""
    return sum(size > 1 for size in parameter.shape) >= 2


def build_optimizer(name: str, model: nn.Module, *, learning_rate: float,
                    weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.99)
                    ) -> torch.optim.Optimizer | OptimizerPair:
    """An optimizer by name: ``adamw`` (default of the course), ``adam``, ``sgd``, or a chapter-2
    optimizer of :mod:`nlbook.optim` (``muon``, ``m3``, ``adam_memory``, ``deep_momentum``, ...).

    Weight decay applies to matrices and embeddings only (at least two axes longer than 1), as in
    nanoGPT; biases, norm gains and per-head scalars such as HOPE's (H, 1, 1) gate biases are not
    decayed. Muon and M3 update the hidden weight matrices only, and AdamW
    the rest (:class:`OptimizerPair`); Muon then scales its update to AdamW's RMS
    (``adjust_lr_fn="match_rms_adamw"``) so one learning rate serves both. A chapter-2
    optimizer gets ``lr`` and, where it takes one, ``weight_decay``; its other arguments keep
    their defaults. Every parameter group records its ``peak_lr`` for the schedule.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in parameters if _is_matrix(p)]
    not_decayed = [p for p in parameters if not _is_matrix(p)]
    groups = [{"params": decayed, "weight_decay": weight_decay},
              {"params": not_decayed, "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]
    key = _normalise(name)
    known = {_normalise(class_name): class_name for class_name in NLBOOK_OPTIMIZERS}
    if key == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=betas)
    elif key == "adam":
        optimizer = torch.optim.Adam(parameters, lr=learning_rate, betas=betas)
    elif key == "sgd":
        optimizer = torch.optim.SGD(groups, lr=learning_rate, momentum=0.9)
    elif key in known:
        try:
            optimizer_class = getattr(importlib.import_module("nlbook.optim"), known[key])
        except (ImportError, AttributeError) as error:
            raise ValueError(f"optimizer {name!r} needs nlbook.optim.{known[key]}, which is not "
                             f"available ({error})") from error
        accepted = inspect.signature(optimizer_class).parameters
        kwargs: dict[str, Any] = {}
        if "weight_decay" in accepted:
            kwargs["weight_decay"] = weight_decay
        if "adjust_lr_fn" in accepted:
            kwargs["adjust_lr_fn"] = "match_rms_adamw"
        if known[key] in _MATRIX_OPTIMIZERS:
            embeddings = {id(module.weight) for module in model.modules()
                          if isinstance(module, nn.Embedding)}
            hidden = [p for p in decayed if p.ndim == 2 and id(p) not in embeddings]
            others = [p for p in parameters if all(p is not q for q in hidden)]
            main = optimizer_class(hidden, lr=learning_rate, **kwargs)
            fallback_groups = [
                {"params": [p for p in others if _is_matrix(p)], "weight_decay": weight_decay},
                {"params": [p for p in others if not _is_matrix(p)], "weight_decay": 0.0}]
            fallback = torch.optim.AdamW([g for g in fallback_groups if g["params"]],
                                         lr=learning_rate, betas=betas)
            optimizer = OptimizerPair(main, fallback)
        else:
            optimizer = optimizer_class(parameters, lr=learning_rate, **kwargs)
    else:
        raise ValueError(f"optimizer must be adamw, adam, sgd or one of nlbook.optim's "
                         f"{', '.join(NLBOOK_OPTIMIZERS)}, got {name!r}")
    for group in optimizer.param_groups:
        group["peak_lr"] = group["lr"]
    return optimizer


def learning_rate_at(step: int, *, learning_rate: float, min_learning_rate: float,
                     warmup_steps: int, total_steps: int | None,
                     progress: float | None = None) -> float:
    """Learning rate for the update that follows ``step`` completed steps.

    Linear warm-up ``lr (step + 1) / warmup_steps`` during the first ``warmup_steps`` steps, then
    a cosine from ``learning_rate`` down to ``min_learning_rate``: over the steps up to
    ``total_steps``, or, when ``progress`` (0 → 1) is given, at that point of the cosine (a time
    budget: the fraction of the time left after the warm-up that has passed).
    ``total_steps`` None and no ``progress`` keeps the peak rate after warm-up.
    """
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    if progress is None:
        if total_steps is None:
            return learning_rate
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
    return min_learning_rate + 0.5 * (1.0 + math.cos(math.pi * progress)) * (
        learning_rate - min_learning_rate)


@torch.no_grad()
def estimate_loss(model: nn.Module, ids: torch.Tensor, *, batch_size: int, context_length: int,
                  batches: int, seed: int, device: str | torch.device = "cpu") -> float:
    """Mean cross-entropy (nats/char) over ``batches`` random windows drawn from a fresh
    generator seeded with ``seed`` (the same windows every call), in eval mode.

    Like nanoGPT's ``estimate_loss``: every position of a window counts, so positions see
    0..T-1 characters of context.
    """
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for _ in range(batches):
            inputs, targets = random_batch(ids, batch_size, context_length, generator, device)
            _, loss = model(inputs, targets)
            total += float(loss)
    finally:
        model.train(was_training)
    return total / batches


@torch.no_grad()
def evaluate_all(model: nn.Module, ids: torch.Tensor, *, context_length: int,
                 batch_size: int = 64, device: str | torch.device = "cpu") -> float:
    """Cross-entropy (nats/char) of *every* character of ``ids`` once, in consecutive windows
    of ``context_length`` (the number an n-gram baseline scored on the same text compares with,
    except that a window's first characters see little context)."""
    inputs, targets = _sequential_windows(ids, context_length)
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].to(device)
            y = targets[start:start + batch_size].to(device)
            logits, _ = model(x)
            losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 y.reshape(-1), ignore_index=-1, reduction="sum")
            total += float(losses)
            count += int((y >= 0).sum())
    finally:
        model.train(was_training)
    return total / count


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically: to ``<path>.tmp``, then ``os.replace``, so
    a crash mid-write never leaves a truncated checkpoint in place of the last good one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load an nlbook checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: naming the file, if it is missing, damaged, holds arbitrary pickled
            objects (refused: unpickling runs code), or is not an nlbook checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"refusing to load checkpoint {path}: it cannot be read with "
            f"torch.load(weights_only=True), which allows only tensors and plain containers "
            f"(a checkpoint holding arbitrary pickled objects could run code when loaded). "
            f"Details: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an nlbook checkpoint (format "
                              f"{CHECKPOINT_FORMAT!r} expected)")
    return state


def _model_config(config: TrainConfig, vocab_size: int) -> dict[str, Any]:
    return {"name": config.model, "vocab_size": vocab_size, "d_model": config.d_model,
            "n_layers": config.n_layers, "n_heads": config.n_heads,
            "context_length": config.context_length, "options": dict(config.model_options)}


def _build_from_model_config(model_config: dict[str, Any]) -> nn.Module:
    return build_model(model_config["name"], model_config["vocab_size"],
                       model_config["d_model"], model_config["n_layers"],
                       model_config["n_heads"], context_length=model_config["context_length"],
                       **model_config["options"])


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, CharVocabulary, dict[str, Any]]:
    """Rebuild the model of a checkpoint (eval mode) -> (model, vocabulary, checkpoint dict)."""
    state = load_checkpoint(path, map_location=device)
    model = _build_from_model_config(state["model_config"]).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, CharVocabulary(state["vocabulary"]), state


# ----------------------------------------------------------------------------- training loop

def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def train(config: TrainConfig, *, corpus: CharCorpus | None = None, resume: bool = False,
          stop_at_step: int | None = None, progress: bool = True,
          after_step: Callable[[int, nn.Module], None] | None = None,
          log: Callable[[str], None] | None = print) -> TrainResult:
    """Train ``config.model`` on a character corpus; see the module docstring for the loop.

    Args:
        config: the run (``config.checkpoint`` None: no checkpoints).
        corpus: the data; by default ``load_corpus(config.data)`` (Tiny Shakespeare if None).
        resume: continue from ``config.checkpoint`` exactly where it stopped. The stored
            configuration is used (only ``device`` and ``checkpoint`` come from ``config``).
        stop_at_step: stop (and checkpoint) after this many steps, as if interrupted there.
        progress: show a tqdm progress bar with the loss.
        after_step: called as ``after_step(step, model)`` after every optimizer step (for
            notebooks that watch training, and tests that inject faults).
        log: where one-line messages go (None: silent).

    Raises:
        TrainingDivergedError: the loss or gradient became non-finite; names the step, and the
            checkpoint on disk is the last good one.
        CheckpointError, DataFileError: unreadable checkpoint or corpus.
    """
    say = log if log is not None else (lambda message: None)
    device = torch.device(config.device)
    state = None
    if resume:
        if config.checkpoint is None:
            raise ValueError("resume=True needs config.checkpoint (the file to resume from)")
        # On the CPU: RNG states must be CPU tensors; load_state_dict moves the rest.
        state = load_checkpoint(config.checkpoint, map_location="cpu")
        stored = dict(state["config"], device=config.device, checkpoint=config.checkpoint)
        config = TrainConfig.from_dict(stored)
    if corpus is None:
        corpus = load_corpus(config.data)
    if state is not None:
        if state["corpus"]["sha256"] != corpus.sha256:
            raise CheckpointError(f"checkpoint {config.checkpoint} was trained on another text "
                                  f"({state['corpus']['source']}); resume with the same data")
        vocabulary = CharVocabulary(state["vocabulary"])
    else:
        vocabulary = corpus.vocabulary
    if vocabulary != corpus.vocabulary:
        raise ValueError("the corpus vocabulary differs from the checkpoint's")

    torch.manual_seed(config.seed)  # model initialisation
    model_config = _model_config(config, len(vocabulary))
    model = _build_from_model_config(model_config).to(device)
    model.train()
    optimizer = build_optimizer(config.optimizer, model, learning_rate=config.learning_rate,
                                weight_decay=config.weight_decay,
                                betas=(config.beta1, config.beta2))
    data_generator = torch.Generator().manual_seed(config.seed)
    history: dict[str, list] = {"train_steps": [], "train_loss": [], "val_steps": [],
                                "val_loss": []}
    step, total_steps, elapsed_before = 0, config.steps, 0.0
    warmup_end: float | None = None  # seconds of the budget spent when the warm-up ended
    last_good_step: int | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_generator.set_state(state["data_generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history = {key: list(value) for key, value in state["history"].items()}
        step, total_steps = state["step"], state["total_steps"]
        elapsed_before = state["elapsed_seconds"]
        warmup_end = state.get("warmup_end_seconds")
        last_good_step = step
        say(f"resumed {config.checkpoint} at step {step}")

    checkpoint_interval = config.checkpoint_interval or config.eval_interval

    def evaluate() -> float:
        return estimate_loss(model, corpus.val_ids, batch_size=config.batch_size,
                             context_length=config.context_length, batches=config.eval_batches,
                             seed=config.seed + 1, device=device)

    def kept() -> str:
        if last_good_step is None:
            return "No checkpoint had been written yet."
        return (f"The last good checkpoint, {config.checkpoint} (step {last_good_step}), "
                f"was kept.")

    def write_checkpoint() -> None:
        nonlocal last_good_step
        if config.checkpoint is None:
            return
        if not _all_finite(model):  # never overwrite the last good checkpoint with NaN
            raise TrainingDivergedError(
                f"training diverged: parameters are not finite after step {step}. {kept()}",
                step, last_good_step)
        save_checkpoint(config.checkpoint, {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "model_config": model_config,
            "vocabulary": vocabulary.chars,
            "corpus": {"source": corpus.source, "sha256": corpus.sha256},
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "total_steps": total_steps,
            "warmup_end_seconds": warmup_end,
            "data_generator": data_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": history,
            "elapsed_seconds": elapsed_before + time.perf_counter() - start_time,
        })
        last_good_step = step

    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    eval_seconds = 0.0
    if step == 0 and not history["val_steps"]:
        eval_start = time.perf_counter()
        history["val_steps"].append(0)
        history["val_loss"].append(evaluate())
        eval_seconds = time.perf_counter() - eval_start
    calibration_start, calibration_from = None, 0
    budget = None if config.minutes is None else config.minutes * 60.0
    # Time the whole warm-up when it is longer than calibration_steps (early steps are slower
    # than steady state): an estimate of the number of steps, for the progress bar only.
    calibration_window = max(config.calibration_steps, config.warmup_steps - 1)
    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step",
               desc=f"{config.model}", dynamic_ncols=True)
    smoothed = None
    try:
        while total_steps is None or step < total_steps:
            if stop_at_step is not None and step >= stop_at_step:
                break
            if total_steps is None and calibration_start is None and step >= 1:
                # Time from the second step on: the first one includes one-off warm-up costs.
                calibration_start, calibration_from = time.perf_counter(), step
            time_progress = None
            if budget is not None and step >= config.warmup_steps:
                # A time budget runs its cosine over wall-clock time: from the end of the
                # warm-up to the deadline, so the run ends with the rate at its minimum
                # whatever the speed does meanwhile (two models compared get the same time).
                elapsed = elapsed_before + time.perf_counter() - start_time
                if warmup_end is None:
                    warmup_end = elapsed
                time_progress = (elapsed - warmup_end) / max(1e-9, budget - warmup_end)
            learning_rate = learning_rate_at(step, learning_rate=config.learning_rate,
                                             min_learning_rate=config.min_learning_rate,
                                             warmup_steps=config.warmup_steps,
                                             total_steps=total_steps, progress=time_progress)
            for group in optimizer.param_groups:  # every group follows the same schedule
                group["lr"] = group["peak_lr"] * learning_rate / config.learning_rate
            inputs, targets = random_batch(corpus.train_ids, config.batch_size,
                                           config.context_length, data_generator, device)
            _, loss = model(inputs, targets)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"training diverged: the loss is {loss_value} at step {step + 1}; stopped "
                    f"before updating. {kept()} Try a smaller learning rate.",
                    step + 1, last_good_step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gradient_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), config.grad_clip if config.grad_clip else math.inf)
            if not torch.isfinite(gradient_norm):
                raise TrainingDivergedError(
                    f"training diverged: the gradient norm is {float(gradient_norm)} at step "
                    f"{step + 1}; stopped before updating. {kept()} Try a smaller learning "
                    f"rate.", step + 1, last_good_step)
            optimizer.step()
            step += 1
            history["train_steps"].append(step)
            history["train_loss"].append(loss_value)
            if after_step is not None:
                after_step(step, model)
            smoothed = loss_value if smoothed is None else 0.9 * smoothed + 0.1 * loss_value
            bar.update(1)
            if total_steps is None and calibration_start is not None and \
                    step - calibration_from == calibration_window:
                # Only an estimate, for the progress bar: the deadline ends the run.
                seconds_per_step = (time.perf_counter() - calibration_start) / calibration_window
                per_step = seconds_per_step + eval_seconds / config.eval_interval
                remaining = config.minutes * 60.0 - (elapsed_before + time.perf_counter()
                                                     - start_time)
                bar.total = step + max(0, int(remaining / per_step))
                bar.refresh()
                say(f"time budget {config.minutes} min: {seconds_per_step * 1e3:.1f} ms/step "
                    f"-> about {bar.total} steps")
            if config.minutes is not None and (total_steps is None or step < total_steps) \
                    and elapsed_before + time.perf_counter() - start_time >= config.minutes * 60:
                # The budget is wall-clock time: stop at the deadline (two models compared get
                # the same time).
                planned = "" if total_steps is None else f" of the {total_steps} planned"
                say(f"time budget {config.minutes} min reached after {step} steps{planned}")
                total_steps = step
                bar.total = total_steps
            finished = total_steps is not None and step >= total_steps
            if step % config.eval_interval == 0 or finished:
                history["val_steps"].append(step)
                history["val_loss"].append(evaluate())
            bar.set_postfix(loss=f"{smoothed:.3f}", val=f"{history['val_loss'][-1]:.3f}",
                            refresh=False)
            if step % checkpoint_interval == 0 or finished or step == stop_at_step:
                write_checkpoint()
    finally:
        bar.close()
    seconds = elapsed_before + time.perf_counter() - start_time
    if total_steps is not None and step >= total_steps:
        say(f"{config.model}: {step} steps in {seconds:.1f} s; val loss "
            f"{history['val_loss'][-1]:.4f} nats/char = "
            f"{history['val_loss'][-1] / LN2:.4f} bits/char")
    model.eval()
    return TrainResult(model, vocabulary, config, history, step,
                       total_steps if total_steps is not None else step, seconds,
                       config.checkpoint)


# ----------------------------------------------------------------------------- figure

def save_loss_figure(result: TrainResult, path: str | Path,
                     references: dict[str, float] | None = None) -> Path:
    """Save the loss curves of ``result`` (with n-gram reference lines) as an image file."""
    from nlbook.viz.training import plot_training_curves

    history = result.history
    label = f"{result.config.model} ({result.config.preset or 'custom'})"
    figure = plot_training_curves(history["train_steps"], history["train_loss"],
                                  history["val_steps"], history["val_loss"],
                                  references=references, label=label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------------------- command line

def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--model-option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key, parsed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nlbook.train",
        description="Train a character language model (Tiny Shakespeare by default).")
    parser.add_argument("--model", choices=sorted(MODEL_REGISTRY), default="transformer")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                        help="tested size and schedule (default tiny; base is for a GPU)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    budget.add_argument("--minutes", type=float, help="wall-clock budget instead of --steps")
    parser.add_argument("--data", help="any UTF-8 text file (default: Tiny Shakespeare)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (default cpu)")
    parser.add_argument("--optimizer", default="adamw",
                        help="adamw (default), adam, sgd or an nlbook.optim name (e.g. muon)")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--context-length", type=int)
    parser.add_argument("--d-model", type=int)
    parser.add_argument("--n-layers", type=int)
    parser.add_argument("--n-heads", type=int)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--model-option", action="append", type=_parse_option, default=[],
                        metavar="KEY=VALUE", help="extra model keyword argument (repeatable)")
    parser.add_argument("--eval-interval", type=int)
    parser.add_argument("--eval-batches", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="checkpoint file (default "
                        "checkpoints/<model>-<preset>.pt)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run stored in --checkpoint exactly where it stopped")
    parser.add_argument("--figure", help="loss-curve image (default figures/loss-<model>-"
                        "<preset>.png)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the n-gram reference lines (they take a few seconds)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: small models gain little from more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides: dict[str, Any] = {"model": args.model, "seed": args.seed, "device": args.device,
                                 "optimizer": args.optimizer, "data": args.data}
    for argument, name in (("steps", "steps"), ("minutes", "minutes"), ("lr", "learning_rate"),
                           ("batch_size", "batch_size"), ("context_length", "context_length"),
                           ("d_model", "d_model"), ("n_layers", "n_layers"),
                           ("n_heads", "n_heads"), ("eval_interval", "eval_interval"),
                           ("eval_batches", "eval_batches")):
        if getattr(args, argument) is not None:
            overrides[name] = getattr(args, argument)
    if args.lr is not None:
        overrides["min_learning_rate"] = min(PRESETS[args.preset]["min_learning_rate"], args.lr)
    options = dict(PRESETS[args.preset].get("model_options", {}))
    if args.dropout is not None:
        options["dropout"] = args.dropout
    options.update(dict(args.model_option))
    overrides["model_options"] = options
    overrides["checkpoint"] = args.checkpoint or f"checkpoints/{args.model}-{args.preset}.pt"
    return TrainConfig.from_preset(args.preset, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 on success)."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if args.resume:
            if args.checkpoint is None:
                raise ValueError("--resume needs --checkpoint PATH")
            stored = load_checkpoint(args.checkpoint)["config"]
            config = TrainConfig.from_dict(dict(stored, device=args.device,
                                                checkpoint=args.checkpoint))
            print(f"resuming {args.checkpoint}: the stored configuration is used; other "
                  f"training options on the command line are ignored")
        else:
            config = _config_from_args(args)
        corpus = load_corpus(config.data)
        print(f"data: {corpus.source} | {len(corpus.text):,} characters, vocabulary "
              f"{corpus.vocab_size} | train {len(corpus.train_ids):,} / val "
              f"{len(corpus.val_ids):,}")
        result = train(config, corpus=corpus, resume=args.resume,
                       progress=not args.no_progress)
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (DataFileError, CheckpointError, ModelUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: python -m nlbook.train --checkpoint "
              f"{args.checkpoint or 'checkpoints/<model>-<preset>.pt'} --resume", file=sys.stderr)
        return 130
    from nlbook.transformer import parameter_count

    count = parameter_count(result.model)
    full_val = evaluate_all(result.model, corpus.val_ids,
                            context_length=result.config.context_length,
                            device=result.config.device)
    print(f"parameters: {count.total:,} ({count.non_embedding:,} non-embedding)")
    print(f"validation (every character, windows of {result.config.context_length}): "
          f"{full_val:.4f} nats/char = {full_val / LN2:.4f} bits/char")
    references = None
    if not args.no_baselines:
        from nlbook.ngram import ngram_baselines

        baselines = ngram_baselines(corpus.train_ids, corpus.val_ids, corpus.vocab_size,
                                    orders=(5, 7))
        references = {name: values["nats"] for name, values in baselines.items()}
        print("references: " + ", ".join(f"{name} {nats:.3f}"
                                         for name, nats in references.items()))
    figure = args.figure or f"figures/loss-{result.config.model}-" \
                            f"{result.config.preset or 'custom'}.png"
    print(f"figure: {save_loss_figure(result, figure, references)}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
