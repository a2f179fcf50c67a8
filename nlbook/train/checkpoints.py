"""Checkpoints: written atomically, loaded with ``weights_only=True``, plain containers
only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlbook.data import CharVocabulary
from nlbook.train.building import build_model
from nlbook.train.config import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainConfig,
)


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
