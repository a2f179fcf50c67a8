"""Checkpoints: written atomically, loaded with ``weights_only=True``, plain containers
only."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlbook._checks import (
    ArgumentTypeError,
    check_device,
    check_instance,
    check_writable_path,
    describe,
)
from nlbook.data import CharVocabulary
from nlbook.train.building import build_model
from nlbook.train.config import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    ModelUnavailableError,
    TrainConfig,
)

#: What ``torch.load(weights_only=True)`` reads back: tensors and plain containers.
_LOADABLE_SCALARS = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device,
                     torch.Size)


def _check_loadable(value: Any, where: str) -> None:
    """Raise ValueError naming ``where`` for a value ``load_checkpoint`` would refuse."""
    if isinstance(value, (torch.Tensor, *_LOADABLE_SCALARS)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"state{where} has the key {key!r} ({type(key).__name__}); "
                                 f"a checkpoint's keys must be str or int")
            _check_loadable(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_loadable(item, f"{where}[{index}]")
        return
    raise ValueError(f"state{where} holds {describe(value)}: a checkpoint may hold only "
                     f"tensors, numbers, strings, None and lists/tuples/dicts of them "
                     f"(load_checkpoint reads with torch.load(weights_only=True))")


def _temporary_path(path: Path) -> Path:
    """A temporary file next to ``path`` unique to this writer (process and call), so that two
    runs given the same checkpoint path never share one."""
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file of this writer
    (``<path>.<pid>.<random>.tmp``), flushed to disk, then ``os.replace``, so a crash mid-write
    never leaves a truncated checkpoint in place of the last good one.

    ``state`` must be what :func:`load_checkpoint` reads back: a dict with ``"format":
    CHECKPOINT_FORMAT`` holding only tensors and plain containers.

    Raises:
        ValueError: naming ``state`` or ``path`` (a state load_checkpoint would refuse, a path
            that cannot be written).
        OSError: one line naming the file when the write fails (a full disk, a folder that
            became unwritable); the partial temporary file is removed and the previous
            checkpoint at ``path`` is left as it was.
    """
    check_instance("state", state, dict, expected="a dict of tensors and plain containers")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"state['format'] must be {CHECKPOINT_FORMAT!r} (load_checkpoint "
                         f"refuses anything else), got {describe(state.get('format'))}")
    _check_loadable(state, "")
    path = check_writable_path("path", path)
    # Serialised in memory first: a write error is then a plain OSError with its errno (torch's
    # own writer reports a full disk as an opaque "enforce fail at inline_container.cc").
    buffer = io.BytesIO()
    torch.save(state, buffer)
    temporary = _temporary_path(path)
    try:
        with open(temporary, "wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        reason = error.strerror or type(error).__name__
        raise OSError(error.errno, f"cannot write checkpoint {path}: {reason} (nothing was "
                                   f"left behind; a previous checkpoint there is unchanged)"
                      ) from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load an nlbook checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: naming the file, if it is missing, damaged, holds arbitrary pickled
            objects (refused: unpickling runs code), or is not an nlbook checkpoint.
        ValueError: naming ``map_location`` for a device that is not a device name or is not
            available here (a device problem, not the checkpoint's).
    """
    path = _checkpoint_path(path)
    map_location = check_device("map_location", map_location)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch's own warning would precede nlbook's error
            warnings.simplefilter("ignore")
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


def _checkpoint_path(path) -> Path:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ArgumentTypeError(f"path must be a checkpoint file path (str or Path), got "
                                f"{describe(path)}")
    return Path(path)


#: What every part of a checkpoint must be, for the readers that need it.
_MODEL_CONFIG_KEYS = {"name": str, "vocab_size": int, "d_model": int, "n_layers": int,
                      "n_heads": int, "context_length": int, "options": dict}


def _require_keys(state: dict[str, Any], path, keys: dict[str, type | tuple[type, ...]],
                 purpose: str) -> None:
    """Raise CheckpointError naming the file and the key when ``state`` lacks one of ``keys``
    or holds a value of another type (a safe but malformed or foreign checkpoint)."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(map(repr, missing))} needed "
                              f"to {purpose} (not a complete nlbook checkpoint)")
    for key, kind in keys.items():
        value = state[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(
                item.__name__ for item in kind)
            raise CheckpointError(f"checkpoint {path} holds {describe(value)} under {key!r}, "
                                  f"expected {names} (a malformed checkpoint)")


def _check_model_state(state: dict[str, Any], path) -> None:
    """The keys :func:`load_model` reads: ``model_config``, ``model``, ``vocabulary``."""
    _require_keys(state, path, {"model_config": dict, "model": dict, "vocabulary": str},
                 "rebuild its model")
    _require_keys(state["model_config"], f"{path} (model_config)", _MODEL_CONFIG_KEYS,
                 "rebuild its model")
    if not state["vocabulary"]:
        raise CheckpointError(f"checkpoint {path} holds an empty vocabulary")


def _check_finite_weights(state: dict[str, Any], path) -> None:
    """CheckpointError naming the file and the first parameter that holds NaN or inf: a model
    whose training diverged is refused at load, by every command (sampling or scoring it would
    print nonsense, resuming it would train from garbage)."""
    weights = state.get("model")
    if not isinstance(weights, dict):
        return
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() \
                and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"checkpoint {path} holds non-finite weights ({bad} of "
                                  f"{tensor.numel()} values of {name!r} are NaN or inf): its "
                                  f"training diverged; use an earlier checkpoint")


def _build_checkpoint_model(state: dict[str, Any], path) -> nn.Module:
    """The model a checkpoint describes, with its weights; CheckpointError naming what does
    not fit (an unknown model, options it does not take, weights of another shape)."""
    _check_model_state(state, path)
    _check_finite_weights(state, path)
    model_config = state["model_config"]
    try:
        model = _build_from_model_config(model_config)
    except ModelUnavailableError:
        raise
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: its model_config does not build a model: "
                              f"{error}") from None
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the "
                              f"{model_config['name']} model its model_config describes "
                              f"(another model, or another size): {detail[:400]}") from None
    return model


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
    """Rebuild the model of a checkpoint (eval mode) -> (model, vocabulary, checkpoint dict).

    Raises:
        CheckpointError: naming the file and what is missing or wrong (see
            :func:`load_checkpoint`; also a model_config that builds no model, or weights of
            another model). ValueError: naming ``device`` when it is not available here.
    """
    device = check_device("device", device)
    state = load_checkpoint(path, map_location=device)
    model = _build_checkpoint_model(state, path).to(device)
    try:
        vocabulary = CharVocabulary(state["vocabulary"])
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path} holds a malformed vocabulary: {error}"
                              ) from None
    if len(vocabulary) != state["model_config"]["vocab_size"]:
        raise CheckpointError(f"checkpoint {path}: its vocabulary has {len(vocabulary)} "
                              f"characters, its model {state['model_config']['vocab_size']}")
    model.eval()
    return model, vocabulary, state
