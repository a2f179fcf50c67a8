"""Checkers for chapter 3's exercises: one CMS chunk update by hand, and when a level updates."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nlbook.cms import CMSRecord, ContinuumMemory, squared_error_loss

__all__ = ["check_chunk_update", "check_update_steps", "reference_chunk_update"]


def reference_chunk_update(weight: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                           rate: float) -> torch.Tensor:
    """nlbook's answer, computed by running one chunk through a one-level linear CMS
    (A-eq 71, loss ½‖W x_t − y_t‖²): W − η Σ_t (W x_t − y_t) x_tᵀ, all at the chunk-start W.

    Args: weight (d_out, d_in) with d_out = d_in, inputs (C, d_in), targets (C, d_out).
    """
    chunk, dim = inputs.shape
    cms = ContinuumMemory(dim, [chunk], [rate], linear=True, residual=False, pre_norm=False,
                          dtype=torch.float64)
    with torch.no_grad():
        cms.levels[0]["weight"].copy_(weight)
        cms.levels[0]["bias"].zero_()
        result = cms(inputs[None].double(), targets[None].double(), loss_fn=squared_error_loss)
    return result.state.parameters[0]["weight"][0]


def _sequential_in_chunk(weight, inputs, targets, rate):
    for x, y in zip(inputs, targets, strict=True):
        weight = weight - rate * torch.outer(weight @ x - y, x)
    return weight


def check_chunk_update(chunk_update: Callable) -> bool:
    """Check ``chunk_update(W, inputs, targets, rate) -> W_new`` for one chunk of C tokens.

    Expected: W_new = W − rate · Σ_{t in chunk} (W x_t − y_t) x_tᵀ, every gradient taken at the
    W that entered the chunk, summed (not averaged), applied once at the end of the chunk.
    """
    generator = torch.Generator().manual_seed(0)
    for chunk, rate in [(1, 0.1), (4, 0.05), (6, 0.02)]:
        weight = torch.randn(3, 3, generator=generator, dtype=torch.float64)
        inputs = torch.randn(chunk, 3, generator=generator, dtype=torch.float64)
        targets = torch.randn(chunk, 3, generator=generator, dtype=torch.float64)
        expected = reference_chunk_update(weight, inputs, targets, rate)
        got = chunk_update(weight.clone(), inputs.clone(), targets.clone(), rate)
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            raise AssertionError(f"chunk_update must return a (3, 3) tensor, got "
                                 f"{getattr(got, 'shape', type(got).__name__)}")
        got = got.double()
        if (got - expected).abs().max() < 1e-9:
            continue
        step = weight - expected
        hints = [
            (weight - step / chunk, "you divided by C: the paper SUMS the chunk's gradients "
                                    "(a mean, not a sum, makes slow levels C times slower)"),
            (weight + step, "the sign is flipped: subtract the gradient"),
            (_sequential_in_chunk(weight, inputs, targets, rate),
             "you updated W inside the chunk: every gradient must use the chunk-start W"),
            (weight, "W did not change: apply the update at the end of the chunk"),
        ]
        for candidate, hint in hints:
            if (got - candidate).abs().max() < 1e-9:
                raise AssertionError(f"C={chunk}, rate={rate}: {hint}")
        difference = (got - expected).abs().max().item()
        raise AssertionError(f"C={chunk}, rate={rate}: off by {difference:.3g}. The gradient of "
                             "½‖W x − y‖² w.r.t. W is (W x − y) xᵀ (an outer product).")
    print("check_chunk_update: correct. W ← W − η Σ_chunk (W x_t − y_t) x_tᵀ, at the chunk-start W")
    return True


def check_update_steps(update_steps: Callable) -> bool:
    """Check ``update_steps(length, chunk) -> list[int]``: the token counts i at which a level
    of chunk size C changes over a stream of ``length`` tokens (i ≡ 0 mod C, 1 ≤ i ≤ T; the new
    parameters are used from 0-based position i on). Compared with a real CMS run's record."""
    for length, chunk in [(10, 1), (10, 3), (12, 4), (5, 8), (16, 16)]:
        cms = ContinuumMemory(2, [chunk], [0.1], linear=True, dtype=torch.float64)
        record = CMSRecord(1)
        stream = torch.randn(1, length, 2, generator=torch.Generator().manual_seed(length),
                             dtype=torch.float64)
        with torch.no_grad():
            cms(stream, stream, loss_fn=squared_error_loss, record=record)
        expected = record.update_steps(0)
        got = list(update_steps(length, chunk))
        if got != expected:
            hint = ""
            if got == [step - 1 for step in expected]:
                hint = " (off by one: count tokens seen, the first update comes after C tokens)"
            elif len(got) > len(expected):
                hint = " (a partial chunk at the end never closes: exactly ⌊T/C⌋ updates)"
            raise AssertionError(f"update_steps({length}, {chunk}) returned {got}, "
                                 f"expected {expected}{hint}")
    print("check_update_steps: correct. A level of chunk C updates ⌊T/C⌋ times, at C, 2C, ...")
    return True
