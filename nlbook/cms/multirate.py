"""Multi-rate training: an outer optimizer that steps parameter group g every C_g steps."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlbook.cms.state import CMSRecord, _check_chunk_sizes


class MultiRateOptimizer:
    """Wraps a torch optimizer whose ``param_groups[g]`` hold one block each (A-eq 71 across
    training steps): every ``step()`` adds the current gradients to group g's buffer; at steps
    that are multiples of C_g the buffer's SUM is handed to the wrapped optimizer for that group
    only (other groups get ``grad = None`` for that call, so torch optimizers skip them, weight
    decay included) and the buffer is cleared. With ``torch.optim.SGD(lr=η_g)`` per group this
    is exactly θ ← θ − η_g Σ g. Their original ``.grad`` is restored afterwards.

    This is the reading for blocks whose chunk is longer than a training sequence; it does not
    replace the in-context updates of the fast blocks (reducing the in-context rule to outer
    steps would remove the test-time adaptation that A-eq 71 describes).

    ``record`` (a :class:`CMSRecord`) logs, per group, the step counts and the update norm.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, chunk_sizes: Sequence[int]) -> None:
        _check_chunk_sizes(chunk_sizes)
        if len(optimizer.param_groups) != len(chunk_sizes):
            raise ValueError(f"chunk_sizes must have one entry per param group "
                             f"({len(optimizer.param_groups)}), got {len(chunk_sizes)}")
        self.optimizer = optimizer
        self.chunk_sizes = tuple(chunk_sizes)
        self.step_count = 0
        self.buffers: dict[torch.Tensor, torch.Tensor] = {}
        self.record = CMSRecord(len(chunk_sizes))

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> list[int]:
        """One outer step; returns the groups that were updated at this step."""
        self.step_count += 1
        due = [group for group, size in enumerate(self.chunk_sizes)
               if self.step_count % size == 0]
        saved: dict[torch.Tensor, torch.Tensor | None] = {}
        before: dict[torch.Tensor, torch.Tensor] = {}
        for index, group in enumerate(self.optimizer.param_groups):
            for parameter in group["params"]:
                saved[parameter] = parameter.grad
                if parameter.grad is not None:
                    buffer = self.buffers.get(parameter)
                    self.buffers[parameter] = parameter.grad.detach().clone() if buffer is None \
                        else buffer + parameter.grad
                if index in due:
                    parameter.grad = self.buffers.pop(parameter, None)
                    before[parameter] = parameter.detach().clone()
                else:
                    parameter.grad = None
        self.optimizer.step()
        for index in due:
            params = self.optimizer.param_groups[index]["params"]
            delta = {str(i): (p.detach() - before[p]).reshape(1, -1) for i, p in enumerate(params)}
            self.record.log_update(index, self.step_count, delta)
        for parameter, gradient in saved.items():
            parameter.grad = gradient
        return due
