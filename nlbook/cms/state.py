"""Per-token losses, the state a stream carries, and the records of every update."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nlbook._checks import (
    check_bool,
    check_callable,
    check_instance,
    check_int,
    check_memory,
    check_ndim,
    check_positive_int,
    check_shape,
    check_tensor,
    data_checks_enabled,
    describe,
    entry_point,
)

VARIANTS = ("sequential", "independent", "nested")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BlockParameters = dict[str, torch.Tensor]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "identity": lambda tensor: tensor,
}


def _check_chunk_sizes(chunk_sizes: Sequence[int]) -> None:
    if isinstance(chunk_sizes, (str, bytes)) or not isinstance(chunk_sizes, Sequence):
        raise ValueError(f"chunk_sizes must be a sequence of positive ints, got {chunk_sizes!r}")
    if len(chunk_sizes) == 0:
        raise ValueError("chunk_sizes must name at least one block, got an empty sequence")
    for index, size in enumerate(chunk_sizes):
        check_positive_int(f"chunk_sizes[{index}]", size)


# --------------------------------------------------------------------------------------------
# Losses (per token: outputs (B, n, d), targets (B, n, ...) -> (B, n))
# --------------------------------------------------------------------------------------------


@entry_point
def squared_error_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """½‖y_t − target_t‖² per token: (B, n, d), (B, n, d) -> (B, n). Its gradient w.r.t. a linear
    block W is (W x_t − target_t) x_tᵀ."""
    check_tensor("outputs", outputs, ndim=3, layout="(B, n, d)", dtype="float")
    check_tensor("targets", targets, ndim=3, layout="(B, n, d)", dtype="float")
    check_shape("targets", targets, tuple(outputs.shape), "(B, n, d) of outputs")
    return 0.5 * (outputs - targets).pow(2).sum(-1)


def cross_entropy_loss(readout: Callable[[torch.Tensor], torch.Tensor]) -> LossFn:
    """Per-token cross-entropy of ``readout(outputs)`` (B, n, V) against integer targets (B, n).

    For a language model ``readout`` is the LM head (closed over, so the outer optimizer trains
    it) and the target of position t is token t+1: the in-context next-token loss of A-eq 71.
    """
    check_callable("readout", readout)

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Values checked in the outermost call only: inside a model a NaN must reach the
        # training loop's own stop (see nlbook._checks.entry_point).
        check_tensor("outputs", outputs, layout="(B, n, d)", dtype="float",
                     finite=data_checks_enabled())
        check_ndim("outputs", outputs, 3, "(B, n, d)")
        check_tensor("targets", targets, dtype="int", finite=False)
        if tuple(targets.shape) != tuple(outputs.shape[:2]):
            raise ValueError(f"targets must have shape (B, n) = {tuple(outputs.shape[:2])} of "
                             f"the outputs, got {tuple(targets.shape)}")
        try:
            logits = readout(outputs)
        except RuntimeError as error:  # e.g. float64 outputs into a float32 layer
            raise ValueError(f"readout failed on outputs of shape {tuple(outputs.shape)} and "
                             f"dtype {outputs.dtype}: {str(error).splitlines()[0][:160]}"
                             ) from None
        if not isinstance(logits, torch.Tensor) or logits.ndim != 3 \
                or tuple(logits.shape[:2]) != tuple(outputs.shape[:2]) \
                or not logits.is_floating_point() or logits.shape[-1] < 1:
            got = (tuple(logits.shape) if isinstance(logits, torch.Tensor)
                   else type(logits).__name__)
            raise ValueError(f"readout must map outputs (B, n, d) = {tuple(outputs.shape)} to "
                             f"float logits (B, n, V), got {got}")
        # Not only in the outermost call: an id out of range would fail inside cross_entropy.
        if not torch.compiler.is_compiling() and targets.numel():
            smallest, largest = int(targets.min()), int(targets.max())
            if smallest < 0 or largest >= logits.shape[-1]:
                raise ValueError(f"targets must lie in [0, {logits.shape[-1]}) (the readout's "
                                 f"classes), got values in [{smallest}, {largest}]")
        flat = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return flat.view(targets.shape)

    return loss


def nested_reset_periods(chunk_sizes: Sequence[int]) -> list[int | None]:
    """Context length of every block in the nested CMS (A-eq 72): the chunk size of the next
    slower block (the smallest larger chunk); the slowest block never resets (``None``)."""
    _check_chunk_sizes(chunk_sizes)
    periods: list[int | None] = []
    for size in chunk_sizes:
        slower = [other for other in chunk_sizes if other > size]
        periods.append(min(slower) if slower else None)
    return periods


# --------------------------------------------------------------------------------------------
# State and update records
# --------------------------------------------------------------------------------------------


@dataclass
class CMSState:
    """What a stream carries from one call to the next (per sequence, never shared in a batch).

    Attributes:
        parameters: per block (chain order), the fast parameters now in force, each
            (B, *shape).
        gradient_sums: per block, the summed per-token gradients of the open (partial) chunk,
            each (B, *shape), or ``None`` when nothing has been accumulated since the last close.
        position: how many tokens the stream has consumed (a pending one included).
        pending_input: (B, 1, d) CMS input of the last position when its target was not known
            yet (next-token LM at generation time); the next call resolves it.
    """

    parameters: list[BlockParameters]
    gradient_sums: list[BlockParameters | None]
    position: int
    pending_input: torch.Tensor | None = None

    def detach(self) -> CMSState:
        """A copy cut from the autograd graph (truncated backprop through the updates)."""

        def cut(block: BlockParameters | None) -> BlockParameters | None:
            return None if block is None else {k: v.detach() for k, v in block.items()}

        pending = None if self.pending_input is None else self.pending_input.detach()
        return CMSState([cut(p) for p in self.parameters],  # type: ignore[misc]
                        [cut(g) for g in self.gradient_sums], self.position, pending)


@dataclass
class BlockRecord:
    """Updates of one block: ``steps[j]`` is the token count i at which update j was applied
    (it is used from 0-based position i on), ``sizes[j]`` its Frobenius norm per sequence (B,),
    ``deltas[j]`` the change itself (only with ``keep_deltas``), ``resets`` the re-inits."""

    steps: list[int] = field(default_factory=list)
    sizes: list[torch.Tensor] = field(default_factory=list)
    deltas: list[BlockParameters] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)


#: Deprecated name of :class:`BlockRecord`.
LevelRecord = BlockRecord


class CMSRecord:
    """Every update of every block (chain order), so that it can be plotted; pass the same
    record to several streaming calls to keep appending. Blocks with η = 0 never change and log
    nothing. ``blocks[j]`` is block j's :class:`BlockRecord`."""

    def __init__(self, num_blocks: int, *, keep_deltas: bool = False) -> None:
        check_positive_int("num_blocks", num_blocks)
        check_bool("keep_deltas", keep_deltas)
        check_memory("num_blocks", num_blocks, bytes_per_element=400, what="the block records")
        self.blocks = [BlockRecord() for _ in range(num_blocks)]
        self.keep_deltas = keep_deltas

    @property
    def levels(self) -> list[BlockRecord]:
        """Deprecated name of :attr:`blocks` (indexed by chain position, not by level)."""
        warnings.warn("CMSRecord.levels is indexed by block and was renamed blocks",
                      DeprecationWarning, stacklevel=2)
        return self.blocks

    def log_update(self, block: int, step: int, delta: BlockParameters) -> None:
        squares = sum(v.detach().pow(2).flatten(1).sum(1) for v in delta.values())
        record = self.blocks[block]
        record.steps.append(step)
        record.sizes.append(squares.sqrt())
        if self.keep_deltas:
            record.deltas.append({k: v.detach().clone() for k, v in delta.items()})

    def log_reset(self, block: int, step: int) -> None:
        self.blocks[block].resets.append(step)

    def update_steps(self, block: int) -> list[int]:
        """The token counts at which ``block`` (chain index) was updated."""
        return list(self.blocks[block].steps)

    def update_sizes(self, block: int) -> torch.Tensor:
        """(n_updates, B) norms of the updates of ``block`` (empty (0, 0) when none)."""
        check_int("block", block, low=0, high=len(self.blocks) - 1)
        sizes = self.blocks[block].sizes
        return torch.stack(sizes) if sizes else torch.zeros(0, 0)


def parameter_trajectory(record: CMSRecord, block: int, name: str, initial: torch.Tensor,
                         sequence: int = 0) -> torch.Tensor:
    """Parameter ``name`` of ``block`` after each recorded update, for one sequence:
    (n_updates + 1, *shape), row 0 = ``initial``. Needs ``keep_deltas=True``; resets restart
    from ``initial``."""
    check_instance("record", record, CMSRecord, expected="a CMSRecord")
    check_int("block", block, low=0, high=len(record.blocks) - 1)
    block_record = record.blocks[block]
    if not record.keep_deltas and block_record.steps:
        raise ValueError("record must be created with keep_deltas=True to rebuild trajectories")
    check_tensor("initial", initial, dtype="float")
    if block_record.deltas:
        names = sorted(block_record.deltas[0])
        if name not in names:
            raise ValueError(f"name must be one of block {block}'s parameters {names}, got "
                             f"{describe(name)}")
        first = block_record.deltas[0][name]
        check_int("sequence", sequence, low=0, high=first.shape[0] - 1)
        check_shape("initial", initial, tuple(first.shape[1:]),
                    f"of parameter {name!r} of block {block}")
    else:
        check_int("sequence", sequence, low=0)
    current = initial.detach().clone()
    rows = [current.clone()]
    resets = sorted(block_record.resets)
    for step, delta in zip(block_record.steps, block_record.deltas, strict=True):
        while resets and resets[0] < step:
            resets.pop(0)
            current = initial.detach().clone()
        current = current + delta[name][sequence]
        rows.append(current.clone())
    return torch.stack(rows)


@dataclass
class CMSOutput:
    """Result of :meth:`ContinuumMemory.forward`.

    Attributes:
        output: (B, T, d) the CMS output.
        losses: (B, T) per-token task loss at the parameters in force (NaN where the target was
            not given or no loss was passed).
        state: the :class:`CMSState` after the call (pass it to the next call to stream);
            ``None`` when called with ``keep_state=False``.
        pending_loss: (B,) loss of the position resolved at the start of the call, or ``None``.
    """

    output: torch.Tensor
    losses: torch.Tensor
    state: CMSState | None
    pending_loss: torch.Tensor | None = None
