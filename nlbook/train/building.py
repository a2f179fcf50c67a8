"""Building blocks of a run: the models and optimizers by name and the learning-rate
schedule."""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any

import torch
from torch import nn

from nlbook.train.config import (
    MODEL_REGISTRY,
    NLBOOK_OPTIMIZERS,
    ModelUnavailableError,
)


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
    the rest (:class:`OptimizerPair`), so that one learning rate serves both: Muon scales its
    update to AdamW's RMS (``adjust_lr_fn="match_rms_adamw"``), and M3 gives its orthogonalised
    momenta the momenta's own size and reads them with EMAs (``orthogonal_scale="momentum"``,
    ``moments="ema"``: Algorithm 1 as printed makes steps inversely proportional to the
    gradient's size and does not train a Transformer; see :class:`nlbook.optim.M3`). A
    chapter-2 optimizer gets ``lr`` and, where it takes one, ``weight_decay``; its other
    arguments keep their defaults. Every parameter group records its ``peak_lr`` for the
    schedule.
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
        if known[key] == "M3":  # Adam's units for (O1 + α O2)/(√V + ε): see nlbook.optim.M3
            kwargs.update(moments="ema", orthogonal_scale="momentum")
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
