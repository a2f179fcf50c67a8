"""Carrying a HOPE stream's state from one training step to the next (truncated backprop).

Stateful training (``TrainConfig(carry_state=True)``) reads every batch row as one contiguous
stream, one window per optimizer step, and carries the model's whole fast state from window to
window: every self-modifying Titans memory (snapshots and running states), every CMS block
with its pending gradient sums, and the convolution buffer. Between steps the state is cut from
the autograd graph (truncated backpropagation through time, as RNN language models,
Transformer-XL and Titans/TTT implementations do).

Open choice: *what* is cut. A fast weight is its meta-learned initial value θ₀ (an
``nn.Parameter``, trained by the outer optimizer) plus what the stream wrote into it,
θ_t = θ₀ + Δ_t. The course cuts Δ_t, not θ_t: the carried state is stored as the offsets
Δ_t = θ_t − θ₀ (:class:`CarriedState`) and rebuilt at the next step as the *current* θ₀ + Δ_t
(:func:`resume_stream`). Why: cutting θ_t whole would also cut the identity path from θ₀ to
every later window, so after the first window of a stream the outer optimizer would no longer
train a block's initial weights at all (the fast CMS block would stay at its random
initialisation, trained only by its in-context updates), and its AdamW updates would never
reach the carried streams. Keeping the identity path is what an un-truncated gradient sees on
the direct path, and it costs nothing. Measured in chapter 6 (both ways).

A row can restart (a fresh stream): its offsets, gradient sums and convolution buffer become
zero, i.e. the meta-learned initial state. Restarts must fall where every in-context memory has
just closed a chunk (a multiple of :meth:`nlbook.hope.HopeLM.stream_alignment` tokens), so a
restarted row is exactly a stream read from its start.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from nlbook.cms import CMSState
from nlbook.hope.block import HopeBlockState

if TYPE_CHECKING:
    from nlbook.hope.language_model import HopeLM, HopeState


def _tensor_fields(state) -> list[str]:
    """The (B, ...) tensor fields of a mixer state (Titans, attention, linear attention)."""
    return [item.name for item in fields(state) if torch.is_tensor(getattr(state, item.name))]


@dataclass
class CarriedState:
    """A HOPE stream state between two training steps: detached, relative to θ₀.

    ``layers[i]`` holds layer i's ``conv`` buffer (B, w−1, d), ``titans`` offsets (one tensor
    per tensor field of the mixer's state, e.g. :class:`nlbook.selfmod.SelfModifyingState`,
    same shapes, and its ``position``), ``cms_offsets`` (per
    CMS block a dict of (B, *shape) offsets, ``None`` for a block with η = 0, which never
    changes in context), ``cms_sums`` (per block the open chunk's gradient sums or ``None``) and
    ``cms_pending`` (the pending input or ``None``). ``position`` counts the tokens read
    (global, shared by the batch: chunk boundaries are aligned to it). ``relative=False``: the
    weights were cut whole (absolute values, no path to θ₀; kept for the comparison that
    chapter 6 shows).
    """

    layers: list[dict[str, Any]]
    position: int
    batch: int
    relative: bool = True

    def to_tensors(self) -> dict[str, Any]:
        """Plain containers of tensors and ints (a checkpoint loads them with
        ``torch.load(weights_only=True)``)."""
        return {"layers": self.layers, "position": self.position, "batch": self.batch,
                "relative": self.relative}

    @classmethod
    def from_tensors(cls, values: dict[str, Any]) -> CarriedState:
        """Inverse of :meth:`to_tensors`."""
        if not isinstance(values, dict) or not {"layers", "position", "batch"} <= set(values):
            raise ValueError("values must be a dict with keys 'layers', 'position' and 'batch' "
                             f"(from CarriedState.to_tensors), got {type(values).__name__}")
        return cls(list(values["layers"]), int(values["position"]), int(values["batch"]),
                   bool(values.get("relative", True)))


def _detached(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach()


def _block_sums(sums: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if sums is None else {name: value.detach() for name, value in sums.items()}


def carry_over(model: HopeLM, state: HopeState, *, relative: bool = True) -> CarriedState:
    """Cut ``state`` from the graph as offsets from the model's current meta-parameters.

    Call it after the backward pass and *before* the optimizer step (the offsets are taken
    against the θ₀ that produced the state). ``relative=False`` cuts every fast weight whole
    instead (the plain detach: the next windows then get no gradient path to θ₀ and do not see
    its updates; for comparison only).
    """
    from nlbook.hope.language_model import HopeState

    if not isinstance(state, HopeState):
        raise ValueError(f"state must be a HopeState (from HopeLM.stream), got "
                         f"{type(state).__name__}")
    if len(state.layers) != model.n_layers:
        raise ValueError(f"state must hold {model.n_layers} layers, got {len(state.layers)}")
    batch = state.layers[0].conv.shape[0]
    layers = []
    with torch.no_grad():
        for block, layer in zip(model.blocks, state.layers, strict=True):
            initial = block.mixer.initial_state(batch)
            titans = {name: (getattr(layer.titans, name) - relative * getattr(initial, name)
                             ).detach() for name in _tensor_fields(initial)}
            titans["position"] = layer.titans.position
            cms = block.cms
            offsets = []
            for index, parameters in enumerate(layer.cms.parameters):
                if cms.learning_rates[index] == 0.0:
                    offsets.append(None)  # never written in context: always θ₀
                    continue
                offsets.append({name: (value - relative * cms.blocks[index][name]
                                       ).detach().contiguous()
                                for name, value in parameters.items()})
            layers.append({"conv": layer.conv.detach(), "titans": titans,
                           "cms_offsets": offsets,
                           "cms_sums": [_block_sums(sums) for sums in layer.cms.gradient_sums],
                           "cms_position": layer.cms.position,
                           "cms_pending": _detached(layer.cms.pending_input)})
    return CarriedState(layers, state.position, batch, relative)


def _keep_rows(tensor: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Zero the rows (axis 0) where ``keep`` is False."""
    if keep is None:
        return tensor
    return tensor * keep.view(-1, *([1] * (tensor.ndim - 1))).to(tensor.dtype)


def _resumed(initial: torch.Tensor, carried: torch.Tensor, keep: torch.Tensor | None,
             relative: bool) -> torch.Tensor:
    """θ₀ + offset (relative), or the carried absolute value, with restarted rows at θ₀."""
    if relative:
        return initial + _keep_rows(carried, keep)
    if keep is None:
        return carried
    mask = keep.view(-1, *([1] * (carried.ndim - 1)))
    return torch.where(mask, carried, initial)


def resume_stream(model: HopeLM, carried: CarriedState, *,
                  restart: torch.Tensor | None = None) -> HopeState:
    """The stream state for the next window: current θ₀ + carried offsets, every fast weight
    differentiable w.r.t. θ₀ through the identity (see the module docstring).

    ``restart`` (B,) bool: rows that start a fresh stream (offsets, sums and buffer zero).
    Raises ValueError when a restart is asked while a CMS target is pending (a pending target
    belongs to the old stream) or when the carried state does not fit the model.
    """
    from nlbook.hope.language_model import HopeState

    if not isinstance(carried, CarriedState):
        raise ValueError(f"carried must be a CarriedState (from carry_over), got "
                         f"{type(carried).__name__}")
    if len(carried.layers) != model.n_layers:
        raise ValueError(f"carried must hold {model.n_layers} layers, got {len(carried.layers)}")
    batch = carried.batch
    keep = None
    if restart is not None:
        if not isinstance(restart, torch.Tensor) or restart.shape != (batch,) or \
                restart.dtype != torch.bool:
            raise ValueError(f"restart must be a bool tensor of shape (B,) = ({batch},), got "
                             f"{getattr(restart, 'shape', type(restart).__name__)}")
        keep = ~restart
    layers = []
    for block, layer in zip(model.blocks, carried.layers, strict=True):
        if keep is not None and bool(restart.any()) and layer["cms_pending"] is not None:
            raise ValueError("cannot restart rows while a CMS target is pending; pass the "
                             "window's targets to HopeLM.stream so that none stays pending")
        initial = block.mixer.initial_state(batch)
        titans = type(initial)(
            **{name: _resumed(getattr(initial, name), layer["titans"][name], keep,
                              carried.relative) for name in _tensor_fields(initial)},
            position=layer["titans"]["position"])
        cms = block.cms
        parameters = []
        for index, offsets in enumerate(layer["cms_offsets"]):
            start = cms.initial_parameters(index, batch)  # θ₀ expanded (stride 0)
            if offsets is None:
                parameters.append(start)
            else:
                parameters.append({name: _resumed(start[name], offsets[name], keep,
                                                  carried.relative) for name in start})
        sums = [None if block_sums is None else
                {name: _keep_rows(value, keep) for name, value in block_sums.items()}
                for block_sums in layer["cms_sums"]]
        cms_state = CMSState(parameters, sums, layer["cms_position"], layer["cms_pending"])
        layers.append(HopeBlockState(_keep_rows(layer["conv"], keep), titans, cms_state))
    return HopeState(layers, carried.position)
