"""More than one process: what a training run needs from ``torch.distributed``.

``torchrun --nproc_per_node N -m nlbook.train ...`` starts N copies of the command line; each
finds its rank in the environment that torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and the loop wraps the model in PyTorch's
``DistributedDataParallel`` (gloo on the CPU, nccl on CUDA). Without those variables (or with
``WORLD_SIZE=1``) a run is one process and nothing here starts a process group.

How N processes compute what one process computes:

* **the same global batch.** ``batch_size`` stays the global batch B; every rank draws the
  whole global batch from the same generators (random windows, or the B contiguous streams of
  :class:`nlbook.data.ContiguousStreams`) and keeps its own rows ``r·B/N … (r+1)·B/N``
  (:meth:`World.rows`). The data state is therefore the same on every rank and a checkpoint
  stores it once, globally. B must be a multiple of N (refused otherwise).
* **the same gradient.** A rank's loss is the mean over its B/N rows; DDP averages the ranks'
  gradients, so the result is the gradient of the mean over all B rows, as in one process (up
  to the order of floating-point sums).
* **the same update.** After DDP's all-reduce every rank holds the same gradient, so gradient
  clipping sees the global norm, and the optimizers, fed the same gradients and learning rate,
  stay identical. A time budget (``minutes``) follows rank 0's clock, broadcast, so every rank
  takes the same learning rate and stops at the same step.
* **carried HOPE state.** Each rank carries the state of its own rows; a checkpoint gathers
  the rows into the global batch (:meth:`World.gather_rows`) and a resumed run takes its rows
  back (:func:`take_rows`), whatever the new number of processes.
* **evaluation.** The fixed validation batches are shared out over the ranks and their losses
  summed in the order one process sums them, so the estimate is the one process's, bit for bit.

Not the same: dropout masks are drawn per rank (rank r > 0 reseeds torch's generator), so a
model with dropout follows another, equally random, trajectory on N processes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Environment variables that torchrun sets for every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 when not launched)."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(text)
    except ValueError:
        raise ValueError(f"the environment variable WORLD_SIZE must be a positive int "
                         f"(set by torchrun), got {text!r}") from None
    if size < 1:
        raise ValueError(f"the environment variable WORLD_SIZE must be a positive int, got {size}")
    return size


def launched_rank() -> int:
    """This process's rank (``RANK``; 0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def check_batch_divides(batch_size: int, world_size: int) -> None:
    """Every rank holds the same number of rows of the global batch: refuse a world size that
    does not divide it, naming both numbers."""
    if batch_size % world_size:
        divisors = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        raise ValueError(
            f"batch_size (the global batch) must be a multiple of the number of processes: "
            f"{batch_size} rows cannot be shared equally by {world_size} processes. Use "
            f"--batch-size {world_size * max(1, round(batch_size / world_size))} or "
            f"--nproc_per_node one of {divisors}")


@dataclass
class World:
    """The processes of one run: this one's ``rank`` among ``size`` (1: a single process).

    ``owns_group``: :func:`join_world` started the process group and :meth:`close` ends it
    (a group started by the caller, e.g. a test, stays open).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, shows progress and writes checkpoints."""
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of ``batch_size`` rows."""
        check_batch_divides(batch_size, self.size)
        share = batch_size // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def local(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows (axis 0) of a global batch (the batch itself in one process)."""
        return batch if not self.distributed else batch[self.rows(batch.shape[0])]

    def mean(self, value: torch.Tensor) -> float:
        """The mean over the ranks of a scalar (e.g. each rank's loss): the global value."""
        if not self.distributed:
            return float(value)
        import torch.distributed as dist

        total = value.detach().clone().reshape(1).to(torch.float64)
        dist.all_reduce(total)
        return float(total) / self.size

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (nothing in one process)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's ``value`` on every rank (e.g. its clock)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, 0)
        return float(tensor)

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape on every rank), in rank order."""
        if not self.distributed:
            return [tensor]
        import torch.distributed as dist

        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor)
        return parts

    def gather_rows(self, tree: Any, rows: int) -> Any:
        """The global batch of a structure of per-row tensors: every tensor (axis 0 = this
        rank's ``rows`` rows) concatenated over the ranks in rank order; other values are kept
        (they are the same on every rank). Lists, tuples and dicts are walked."""
        if not self.distributed:
            return tree
        if torch.is_tensor(tree):
            if tree.ndim == 0 or tree.shape[0] != rows:
                raise ValueError(f"every tensor of a per-row state must have this rank's "
                                 f"{rows} rows on axis 0, got shape {tuple(tree.shape)}")
            return torch.cat(self.gather(tree), dim=0)
        if isinstance(tree, dict):
            return {key: self.gather_rows(value, rows) for key, value in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.gather_rows(value, rows) for value in tree)
        return tree

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """End the process group if this run started it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def take_rows(tree: Any, rows: slice) -> Any:
    """The rows ``rows`` (axis 0) of every tensor of a structure (inverse of
    :meth:`World.gather_rows` for one rank)."""
    if torch.is_tensor(tree):
        return tree[rows]
    if isinstance(tree, dict):
        return {key: take_rows(value, rows) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(take_rows(value, rows) for value in tree)
    return tree


def process_device(device: str | torch.device, world: World) -> torch.device:
    """The device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` when distributed (one
    GPU per process, as torchrun's ``--nproc_per_node`` counts them)."""
    device = torch.device(device)
    if not world.distributed or device.type != "cuda":
        return device
    if device.index is not None and device.index != world.local_rank:
        raise ValueError(f"device must be 'cuda' (each process takes the GPU of its local rank) "
                         f"in a run of {world.size} processes, got {str(device)!r}")
    return torch.device("cuda", world.local_rank)


def join_world(device: str | torch.device = "cpu") -> World:
    """This process's place in the run.

    One process (``World()``) unless launched by torchrun with ``WORLD_SIZE`` > 1, or unless
    the caller already started a process group. Otherwise starts the process group from
    torchrun's environment (``env://``; backend nccl for CUDA, gloo otherwise) and returns the
    world that owns it.
    """
    size = launched_world_size()
    import torch.distributed as dist  # imported by torch already: no cost

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_backend())
    if size == 1:
        return World()
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={size} says this process is one of several, but "
                         f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                         f"start the run with torchrun --nproc_per_node {size} -m nlbook.train")
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed: run one process")
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    local_rank = int(os.environ["LOCAL_RANK"])
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    return World(dist.get_rank(), dist.get_world_size(), local_rank, backend, owns_group=True)


def data_parallel(module: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``module`` itself in one process; wrapped in ``DistributedDataParallel`` otherwise (its
    backward pass averages the ranks' gradients)."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def describe_world(world_size: int, batch_size: int, device: str | torch.device,
                   autocast: bool = False) -> str:
    """One line naming the world size, the batch and the device (a run's first log line)."""
    device = torch.device(device)
    precision = ", bf16 autocast" if autocast else ""
    if world_size == 1:
        return f"world size 1 (one process), batch {batch_size}, {device}{precision}"
    backend = "nccl" if device.type == "cuda" else "gloo"
    return (f"world size {world_size} (DistributedDataParallel over {backend}), global batch "
            f"{batch_size} = {world_size} processes x {batch_size // world_size} rows, "
            f"{device.type}{precision}")
