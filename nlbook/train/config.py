"""What defines a training run: presets, the run's configuration and result, and the
errors training can end with."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nlbook._checks import (
    check_bool,
    check_choice,
    check_device,
    check_int,
    check_scalar_in_range,
    check_str,
)
from nlbook.data import CharVocabulary

CHECKPOINT_FORMAT = "nlbook-checkpoint-1"
LN2 = math.log(2.0)

#: name -> "module:ClassName"; imported only when used, so a model still being written (HOPE)
#: does not break the others.
MODEL_REGISTRY: dict[str, str] = {
    "transformer": "nlbook.transformer:TransformerLM",
    "transformer++": "nlbook.transformer_plus_plus:TransformerPlusPlusLM",
    "hope": "nlbook.hope:HopeLM",
}

#: Models that carry a state from one window to the next (``carry_state=True``).
STATEFUL_MODELS = ("hope",)

#: Chapter-2 optimizers of nlbook.optim, selectable by name (case, '-' and '_' ignored).
NLBOOK_OPTIMIZERS = ("MomentumMemory", "AdamMemory", "PreconditionedMomentum", "DeltaMomentum",
                     "DeepMomentum", "Muon", "M3")

#: Tested size presets. "tiny" (0.11M parameters) trains in about 1.5 minutes on one core of a
#: 2-core laptop (measured: val 1.85 nats/char after 3000 steps, 79 s); "small" is nanoGPT's
#: CPU "baby GPT" recipe (0.8M parameters, val 1.88 after 2000 steps, about 3 minutes);
#: "base" is nanoGPT's shakespeare_char GPU recipe (10.7M parameters, val 1.47), for a GPU.
#: ``carry_state`` applies to the models that carry a state (HOPE trains on carried streams
#: of ``stream_length`` tokens; the Transformer ignores it and reads fresh windows).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, context_length=64, batch_size=16,
                 steps=3000, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=100,
                 eval_interval=250, eval_batches=20, carry_state=True, stream_length=1024),
    "small": dict(d_model=128, n_layers=4, n_heads=4, context_length=64, batch_size=12,
                  steps=2000, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                  eval_interval=250, eval_batches=20, carry_state=True, stream_length=1024),
    "base": dict(d_model=384, n_layers=6, n_heads=6, context_length=256, batch_size=64,
                 steps=5000, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=100,
                 eval_interval=250, eval_batches=200, model_options={"dropout": 0.2},
                 carry_state=True, stream_length=4096),
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
    ``checkpoint`` None trains without writing checkpoints (notebook use). ``compile`` runs
    the training step's forward through ``torch.compile`` (opt-in: it needs a C++ compiler and
    minutes of compilation before the first step; same results; see the README).

    ``carry_state`` (models in :data:`STATEFUL_MODELS`, i.e. HOPE): stateful training. Each
    batch row reads its own contiguous stream of the training text, consecutive optimizer steps
    continue the same streams, and the model's whole fast state is carried from one window to
    the next and cut from the graph between steps (truncated backpropagation through time; see
    :mod:`nlbook.hope.carry` for what is cut and why). A stream restarts at a new random place,
    with a fresh state, after ``stream_length`` tokens (``None``: only at the end of the text);
    restarts are staggered over the rows (see :class:`nlbook.data.ContiguousStreams`).
    Checkpoints hold the stream positions and the carried state, so a resumed run continues
    bit for bit. The Transformer, whose context is a fixed window, refuses ``carry_state``.
    ``carry_relative=False`` cuts the carried fast weights whole instead of as offsets from
    their meta-learned initial values (the plain detach; kept to reproduce the comparison in
    chapter 6, where it trains worse).

    ``autocast``: bf16 autocast of the training forward pass on CUDA (``--bf16``); refused on
    other devices. Across processes (``torchrun``), ``batch_size`` is the global batch, shared
    equally by the processes (see :mod:`nlbook.train.distributed`).
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
    carry_state: bool = False
    stream_length: int | None = 1024
    carry_relative: bool = True
    compile: bool = False
    autocast: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or self.model not in MODEL_REGISTRY:
            raise ValueError(f"model must be one of {sorted(MODEL_REGISTRY)}, got {self.model!r}")
        if self.preset is not None:
            check_choice("preset", self.preset, sorted(PRESETS))
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
        check_int("steps", self.steps, low=1, allow_none=True)
        check_scalar_in_range("minutes", self.minutes, 0.0, math.inf, low_inclusive=False,
                              allow_none=True)
        check_int("checkpoint_interval", self.checkpoint_interval, low=1, allow_none=True)
        # learning_rate=inf is accepted on purpose: a rate that large is a run that diverges,
        # and train() stops it with TrainingDivergedError at its first step (NaN is refused).
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate,
                                                                  (int, float)) \
                or not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be a number > 0, got {self.learning_rate!r}")
        check_scalar_in_range("min_learning_rate", self.min_learning_rate, 0.0, math.inf)
        if not self.min_learning_rate <= self.learning_rate:
            raise ValueError(f"need 0 < learning_rate and 0 <= min_learning_rate <= "
                             f"learning_rate, got {self.learning_rate!r}, "
                             f"{self.min_learning_rate!r}")
        check_scalar_in_range("weight_decay", self.weight_decay, 0.0, math.inf)
        check_scalar_in_range("beta1", self.beta1, 0.0, 1.0, high_inclusive=False)
        check_scalar_in_range("beta2", self.beta2, 0.0, 1.0, high_inclusive=False)
        if self.grad_clip is not None:
            check_scalar_in_range("grad_clip", self.grad_clip, 0.0, math.inf,
                                  low_inclusive=False)
        check_str("optimizer", self.optimizer)
        # Only the name here: a configuration may be written for another machine (a checkpoint
        # trained on a GPU); the device is checked to be here when a run starts.
        check_device("device", self.device, available=False)
        check_str("data", self.data, allow_none=True)
        check_str("checkpoint", self.checkpoint, allow_none=True)
        if not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a dict of keyword arguments, got "
                             f"{type(self.model_options).__name__}")
        _check_plain("model_options", self.model_options)
        from nlbook.train.building import _check_model_options, _check_optimizer_name

        _check_optimizer_name(self.optimizer)
        try:
            _check_model_options(self.model, self.model_options)
        except ModelUnavailableError:
            pass  # reported when the model is built
        check_bool("compile", self.compile)
        for name in ("carry_state", "carry_relative", "autocast"):
            check_bool(name, getattr(self, name))
        if self.carry_state and self.model not in STATEFUL_MODELS:
            raise ValueError(f"carry_state=True needs a model that carries its state from one "
                             f"window to the next ({', '.join(STATEFUL_MODELS)}); model "
                             f"{self.model!r} has a fixed context and no state to carry")
        if self.stream_length is not None:
            if isinstance(self.stream_length, bool) or not isinstance(self.stream_length, int) \
                    or self.stream_length < 1:
                raise ValueError(f"stream_length must be a positive int or None, got "
                                 f"{self.stream_length!r}")
            if self.carry_state and self.stream_length % self.context_length:
                raise ValueError(f"stream_length must be a multiple of context_length "
                                 f"({self.context_length}), got {self.stream_length}")

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The configuration named ``preset`` (see :data:`PRESETS`), with ``overrides``."""
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        values = dict(PRESETS[preset], preset=preset)
        values.update(overrides)
        if "carry_state" not in overrides and values.get("model", "transformer") \
                not in STATEFUL_MODELS:
            values["carry_state"] = False  # the preset's streams are for models with a state
        if overrides.get("minutes") is not None and "steps" not in overrides:
            values["steps"] = None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The configuration ``to_dict`` wrote. An unknown (misspelled) key is refused, naming
        it and the fields it is close to: it is never silently ignored."""
        if not isinstance(values, dict):
            raise ValueError(f"values must be a dict (TrainConfig.to_dict), got "
                             f"{type(values).__name__}")
        known = [item.name for item in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(str(key), known, n=3)
                hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
                raise ValueError(f"values holds the unknown key {key!r}{hint}; TrainConfig "
                                 f"takes {', '.join(known)}")
        return cls(**values)


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
