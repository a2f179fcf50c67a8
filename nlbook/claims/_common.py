"""What the chapter 7 experiments share: model factories, seeds, switches, a training step
that carries HOPE's state, and plain-text tables."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager

import torch
from torch import nn

from nlbook._checks import (
    ArgumentTypeError,
    check_positive_int,
    check_scalar_in_range,
    check_str,
    check_tensor,
    describe,
)
from nlbook.transformer import language_model_loss, parameter_count

__all__ = ["ModelFactory", "Switch", "TextLearner", "build_model", "check_models",
           "check_names", "check_seeds", "check_switches", "format_table", "parameters_of"]

#: Builds a fresh model: ``factory(seed=seed)`` if it has a parameter named ``seed``, else
#: ``factory()``; either way after ``torch.manual_seed(seed)``.
ModelFactory = Callable[..., nn.Module]

#: A test-time variant: (name of the trained model it reads, context manager factory), e.g.
#: ``("HOPE", nlbook.hope.frozen_memories)``: the trained HOPE evaluated inside the switch.
Switch = tuple[str, Callable[[nn.Module], AbstractContextManager]]


def _takes_seed(factory: Callable) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return False
    return "seed" in parameters and parameters["seed"].kind is not \
        inspect.Parameter.POSITIONAL_ONLY


def build_model(factory: ModelFactory, seed: int, name: str = "model") -> nn.Module:
    """A fresh model from ``factory`` for ``seed`` (see :data:`ModelFactory`)."""
    torch.manual_seed(seed)  # for factories that draw from torch's global generator
    model = factory(seed=seed) if _takes_seed(factory) else factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"models[{name!r}] must return a torch.nn.Module, got "
                         f"{type(model).__name__}")
    return model


def check_models(models: Mapping[str, ModelFactory]) -> dict[str, ModelFactory]:
    """A non-empty dict of name -> callable, or ValueError naming ``models``."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"models must be a non-empty dict of name -> model factory, got "
                         f"{models!r}")
    for name, factory in models.items():
        if not isinstance(name, str) or not callable(factory):
            raise ValueError(f"models must map names (str) to callables returning a fresh "
                             f"nn.Module, got {name!r}: {factory!r}")
    return dict(models)


def check_switches(switches: Mapping[str, Switch] | None, models: Mapping[str, ModelFactory]
                   ) -> dict[str, Switch]:
    """Switches whose base model is one of ``models`` (unknown bases are left out: a caller who
    passes other models without switches gets none), or ValueError for a malformed entry."""
    if switches is None:
        return {}
    if not isinstance(switches, Mapping):
        raise ValueError(f"switches must be a dict of name -> (model name, context manager), "
                         f"got {type(switches).__name__}")
    out = {}
    for name, entry in switches.items():
        if not (isinstance(name, str) and isinstance(entry, tuple) and len(entry) == 2
                and isinstance(entry[0], str) and callable(entry[1])):
            raise ValueError(f"switches must map names to (model name, context manager "
                             f"factory) pairs, got {name!r}: {entry!r}")
        if name in models:
            raise ValueError(f"switches[{name!r}] has the name of a trained model")
        if entry[0] in models:
            out[name] = entry
    return out


def check_names(name: str, names: object, choices: Sequence[str]) -> list[str]:
    """``names`` as a non-empty list of model names from ``choices``, or ValueError naming
    ``name`` (the model lists of MQAR, phased MQAR and MAD)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"{name} must be a non-empty list of model names from "
                         f"{tuple(choices)}, got {names!r}")
    unknown = [item for item in names if item not in choices]
    if unknown:
        raise ValueError(f"{name} must be model names from {tuple(choices)}, got "
                         f"{unknown[0]!r}")
    return list(names)


def check_seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as a non-empty tuple of non-negative ints (a single int is one seed)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = (seeds,)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-negative int or a non-empty sequence of them, "
                         f"got {seeds!r}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seeds must hold non-negative ints, got {seed!r}")
    return tuple(seeds)


def parameters_of(model: nn.Module) -> int:
    return parameter_count(model).total


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], *,
                 title: str | None = None, notes: Sequence[str] = ()) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    for label, value in (("header", header), ("rows", rows), ("notes", notes)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ArgumentTypeError(f"{label} must be a list, got {describe(value)}")
    if not header:
        raise ValueError("header must name at least one column, got []")
    for index, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise ArgumentTypeError(f"rows[{index}] must be a list of cells, got "
                                    f"{describe(row)}")
        if len(row) != len(header):
            raise ValueError(f"rows[{index}] must have one cell per column of header "
                             f"({len(header)}), got {len(row)}")
    check_str("title", title, allow_none=True, allow_empty=True)
    for index, note in enumerate(notes):
        check_str(f"notes[{index}]", note, allow_empty=True)
    cells = [[str(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [value.rjust(width) for value, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    body = [line(cells[0]), "  ".join("-" * width for width in widths)]
    body += [line(row) for row in cells[1:]]
    return "\n".join(([title] if title else []) + body + list(notes))


class TextLearner:
    """One model, its AdamW optimizer and (for a model that carries a state) the carried state:
    ``step(inputs, targets, restarted)`` is one optimizer step on a batch of text.

    - A model with ``carry_over`` (HOPE) given ``restarted`` (B,) bool trains **statefully**,
      as :func:`nlbook.train.train` with ``carry_state=True`` does: it continues every row's
      stream from the carried state (rows in ``restarted`` start afresh), reads the window with
      ``model.stream(inputs, state, targets=targets)``, and after the backward pass cuts the new
      state from the graph as offsets from θ₀ (``model.carry_over``) before the update.
    - Otherwise (the Transformer, or ``restarted=None``) each batch is a set of fresh windows:
      ``_, loss = model(inputs, targets)``.

    The learning rate warms up linearly over ``warmup_steps`` and then follows a cosine down to
    ``min_learning_rate`` at ``total_steps`` (``total_steps=None``: constant after the warm-up).
    Weight decay on matrices only, gradient clipping at ``grad_clip``
    (:func:`nlbook.train.build_optimizer`'s AdamW).
    """

    def __init__(self, model: nn.Module, *, learning_rate: float, total_steps: int | None,
                 warmup_steps: int = 50, min_learning_rate: float | None = None,
                 weight_decay: float = 0.1, grad_clip: float = 1.0) -> None:
        from nlbook.train import build_optimizer

        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_scalar_in_range("learning_rate", learning_rate, 0.0, 1.0, low_inclusive=False)
        check_positive_int("total_steps", total_steps, allow_none=True)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) \
                or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative int, got {warmup_steps!r}")
        check_scalar_in_range("min_learning_rate", min_learning_rate, 0.0, learning_rate,
                              allow_none=True)
        check_scalar_in_range("weight_decay", weight_decay, 0.0, math.inf)
        check_scalar_in_range("grad_clip", grad_clip, 0.0, math.inf, low_inclusive=False)
        self.model = model
        self.learning_rate = learning_rate
        self.min_learning_rate = learning_rate / 10 if min_learning_rate is None \
            else min_learning_rate
        self.total_steps, self.warmup_steps, self.grad_clip = total_steps, warmup_steps, grad_clip
        self.optimizer = build_optimizer("adamw", model, learning_rate=learning_rate,
                                         weight_decay=weight_decay)
        self.carried = None
        self.steps = 0
        self.seconds = 0.0
        self.stateful = hasattr(model, "carry_over")

    def _check_batch(self, inputs, targets, restarted) -> None:
        check_tensor("inputs", inputs, ndim=2, layout="(B, T)")
        check_tensor("targets", targets, ndim=2, layout="(B, T)")
        for name, value in (("inputs", inputs), ("targets", targets)):
            if value.dtype != torch.int64:
                raise ValueError(f"{name} must have dtype torch.int64, got {value.dtype}")
            if value.shape[0] == 0 or value.shape[1] == 0:
                raise ValueError(f"{name} must hold at least one row and one token, got "
                                 f"shape {tuple(value.shape)}")
        if targets.shape != inputs.shape:
            raise ValueError(f"targets must have the shape of inputs {tuple(inputs.shape)}, "
                             f"got {tuple(targets.shape)}")
        vocab_size = getattr(self.model, "vocab_size", None)
        if isinstance(vocab_size, int):
            for name, value, low in (("inputs", inputs, 0), ("targets", targets, -1)):
                smallest, largest = int(value.min()), int(value.max())
                if smallest < low or largest >= vocab_size:
                    raise ValueError(f"{name} must hold token ids in [{low}, {vocab_size}) "
                                     f"(the model's vocabulary), got values in "
                                     f"[{smallest}, {largest}]")
        if restarted is not None:
            check_tensor("restarted", restarted, ndim=1, layout="(B,)")
            if restarted.dtype != torch.bool or restarted.shape[0] != inputs.shape[0]:
                raise ValueError(f"restarted must be a bool tensor of shape "
                                 f"({inputs.shape[0]},) (one per row of inputs), got "
                                 f"{restarted.dtype} of shape {tuple(restarted.shape)}")

    def rate(self) -> float:
        from nlbook.train import learning_rate_at

        return learning_rate_at(self.steps, learning_rate=self.learning_rate,
                                min_learning_rate=self.min_learning_rate,
                                warmup_steps=self.warmup_steps, total_steps=self.total_steps)

    def forget_state(self) -> None:
        """Drop the carried state: the next stateful step starts every row afresh."""
        self.carried = None

    def step(self, inputs: torch.Tensor, targets: torch.Tensor,
             restarted: torch.Tensor | None = None) -> float:
        """One optimizer step; returns the batch's loss (nats per target)."""
        self._check_batch(inputs, targets, restarted)
        start = time.perf_counter()
        model = self.model
        model.train()
        rate = self.rate()
        for group in self.optimizer.param_groups:
            group["lr"] = group["peak_lr"] * rate / self.learning_rate
        state = None
        if self.stateful and restarted is not None:
            start_state = (None if self.carried is None
                           else model.resume_stream(self.carried, restart=restarted))
            logits, state = model.stream(inputs, start_state, targets=targets)
            loss = language_model_loss(logits, targets)
        else:
            _, loss = model(inputs, targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss is {value} at step {self.steps + 1}; "
                                     f"try a smaller learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        if state is not None:
            self.carried = model.carry_over(state)  # cut before the update (offsets from θ₀)
        self.optimizer.step()
        self.steps += 1
        self.seconds += time.perf_counter() - start
        return value


def interleaved_steps(models: Mapping[str, nn.Module],
                      optimizers: Mapping[str, torch.optim.Optimizer], inputs: torch.Tensor,
                      targets: torch.Tensor, rate: float, step: int,
                      diverged: dict[str, int | None], times: Mapping[str, list[float]],
                      losses: dict[str, float]) -> None:
    """One optimizer step of every model on the same batch, the models in turn (so a change of
    the machine's load hits all alike): AdamW at learning rate ``rate``, gradients clipped at
    norm 1. Appends each step's seconds to ``times[name]``, writes its loss to
    ``losses[name]`` and, when the loss is not finite, ``diverged[name] = step + 1`` (a
    diverged model is skipped from then on). Shared by the MQAR, phased-MQAR and MAD runs."""
    for name, model in models.items():
        if diverged[name] is not None:
            continue
        optimizer = optimizers[name]
        for group in optimizer.param_groups:
            group["lr"] = rate
        start = time.perf_counter()
        _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times[name].append(time.perf_counter() - start)
        losses[name] = float(loss.detach())
        if not math.isfinite(losses[name]):
            diverged[name] = step + 1
