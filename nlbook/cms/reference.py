"""The slow, obviously correct float64 token loop that every fast path of
:class:`nlbook.cms.ContinuumMemory` is tested against."""

from __future__ import annotations

import copy

import torch

from nlbook.cms.continuum import ContinuumMemory
from nlbook.cms.state import BlockParameters, CMSRecord, LossFn


def reference_continuum_memory(cms: ContinuumMemory, x: torch.Tensor, targets: torch.Tensor,
                               loss_fn: LossFn) -> tuple[torch.Tensor, torch.Tensor,
                                                         list[BlockParameters], CMSRecord]:
    """Token-by-token loop of A-eq 71–72 in float64 (the twin every fast path is tested against).

    For t = 0..T−1: output and loss of token t at the current parameters; every block with
    η ≠ 0 adds ∇loss_t (taken alone) to its chunk sum; a block whose chunk closes at count t+1
    applies −η·sum; a block whose context ends at t+1 is reset to its initial parameters.

    Args: a module, x (B, T, d), targets (B, T, ...), a per-token loss.
    Returns: outputs (B, T, d), losses (B, T), final per-block parameters (B, *shape) and a
    :class:`CMSRecord` with the deltas.
    """
    model = copy.deepcopy(cms).double()
    x = x.detach().double()
    targets = targets.detach().double() if targets.is_floating_point() else targets.detach()
    batch, length, _ = x.shape
    initial = [{k: v.detach().clone() for k, v in model.initial_parameters(block, batch).items()}
               for block in range(model.num_blocks)]
    parameters = [dict(block) for block in initial]
    sums = [{k: torch.zeros_like(v) for k, v in block.items()} for block in initial]
    record = CMSRecord(model.num_blocks, keep_deltas=True)
    outputs, losses = [], []
    for t in range(length):
        leaves = [{k: v.clone().requires_grad_(True) for k, v in block.items()}
                  for block in parameters]
        output = model.apply_parameters(leaves, x[:, t:t + 1])
        loss = loss_fn(output, targets[:, t:t + 1])
        flat = [value for block in leaves for value in block.values()]
        gradients = torch.autograd.grad(loss.sum(), flat, allow_unused=True)
        outputs.append(output.detach())
        losses.append(loss.detach())
        index = 0
        for block in range(model.num_blocks):
            for name in leaves[block]:
                gradient = gradients[index]
                index += 1
                if gradient is not None:
                    sums[block][name] = sums[block][name] + gradient
        for block in range(model.num_blocks):
            rate = model.learning_rates[block]
            if rate == 0.0:
                continue
            if (t + 1) % model.chunk_sizes[block] == 0:
                delta = {k: -rate * v for k, v in sums[block].items()}
                parameters[block] = {k: v + delta[k] for k, v in parameters[block].items()}
                sums[block] = {k: torch.zeros_like(v) for k, v in sums[block].items()}
                record.log_update(block, t + 1, delta)
            period = model.reset_every[block]
            if period is not None and (t + 1) % period == 0:
                parameters[block] = dict(initial[block])
                sums[block] = {k: torch.zeros_like(v) for k, v in sums[block].items()}
                record.log_reset(block, t + 1)
    return torch.cat(outputs, 1), torch.cat(losses, 1), parameters, record
