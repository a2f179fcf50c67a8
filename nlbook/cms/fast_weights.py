"""Per-sequence fast weights of the CMS blocks: a batched affine map whose weight
gradient stays contiguous, and in-context updates kept as low-rank factors."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nlbook.cms.state import BlockParameters


class _PerSequenceAffine(torch.autograd.Function):
    """inputs (B, n, d_in) @ weight (B, d_out, d_in)ᵀ + bias (B, d_out), with a backward whose
    weight gradient comes out contiguous in the weight's own layout.

    Autograd through ``baddbmm(bias, inputs, weight.transpose(1, 2))`` returns the weight's
    gradient as a transposed view; adding it to the (contiguous) weight in every in-context
    update then reads memory across strides, measured 5-40x slower than a contiguous add.
    The backward is made of differentiable ops, so second-order updates still work.
    """

    @staticmethod
    def forward(ctx, inputs, weight, bias):
        ctx.save_for_backward(inputs, weight)
        return torch.baddbmm(bias[:, None], inputs, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_output):
        inputs, weight = ctx.saved_tensors
        grad_inputs = grad_output @ weight if ctx.needs_input_grad[0] else None
        grad_weight = grad_output.transpose(1, 2) @ inputs if ctx.needs_input_grad[1] else None
        grad_bias = grad_output.sum(1) if ctx.needs_input_grad[2] else None
        return grad_inputs, grad_weight, grad_bias


def _affine(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """inputs (B, n, d_in) @ weight ᵀ + bias, the weight (B, d_out, d_in) per sequence or one
    shared (d_out, d_in), the bias (B, d_out) or shared (d_out,).

    A shared weight (or one expanded over the batch, stride 0) is one matrix product over all
    B·n tokens: the same work as B small ones, several times faster on a CPU.
    """
    if weight.ndim == 2 or weight.stride(0) == 0:
        shared = weight if weight.ndim == 2 else weight[0]
        if bias.ndim == 1 or bias.stride(0) == 0:
            return F.linear(inputs, shared, bias if bias.ndim == 1 else bias[0])
        return F.linear(inputs, shared) + bias[:, None]
    return _PerSequenceAffine.apply(inputs, weight, bias)


@dataclass
class _BlockTensors:
    """One block's per-sequence tensors while a call runs: ``dense`` (name → (B, *shape)) plus,
    for a weight, a low-rank term ``low_rank[name] = (G (B, m, d_out), X (B, m, d_in))`` with
    W = dense + Gᵀ X.

    Why: the in-context gradient of an affine weight over a chunk is Σ_t g_t x_tᵀ (g_t the
    gradient at the layer's output, x_t its input), so every update −η Σ_t g_t x_tᵀ is kept as
    its factors (−η G, X) and applied as (x Xᵀ) G (the "dual form"), never written as a
    (B, d_out, d_in) tensor per sequence. Exact, not an approximation. Measured in
    ``bench hope``: the materialised form spent most of the CMS's time writing those tensors.
    Dense tensors are made only for the returned :class:`CMSState` (:meth:`materialize`).
    A gradient sum may hold only some names densely (a missing name counts as zero).
    """

    dense: dict[str, torch.Tensor]
    low_rank: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    # A dense tensor may also be the block's shared parameter itself, without the batch axis
    # (the start of a stream and every reset): no (B, ...) copy, no per-sequence gradient.

    def plus(self, other: _BlockTensors, scale: float = 1.0) -> _BlockTensors:
        """self + scale · other, keeping weights factored (scale folds into G)."""
        dense = dict(self.dense)
        for name, value in other.dense.items():
            dense[name] = (torch.add(dense[name], value, alpha=scale) if name in dense
                           else scale * value)
        low_rank = dict(self.low_rank)
        for name, (left, right) in other.low_rank.items():
            left = left if scale == 1.0 else scale * left
            if name in low_rank:
                old_left, old_right = low_rank[name]
                left, right = torch.cat([old_left, left], 1), torch.cat([old_right, right], 1)
            low_rank[name] = (left, right)
        return _BlockTensors(dense, low_rank)

    def materialize(self, batch: int, shapes: dict[str, torch.Size]) -> BlockParameters:
        """Dense (B, *shape) tensors: dense + Gᵀ X for every factored weight; shared tensors are
        expanded over the batch. ``shapes``: the parameter shapes, to tell shared from batched."""
        out = dict(self.dense)
        for name, (left, right) in self.low_rank.items():
            product = left.transpose(1, 2) @ right
            out[name] = out[name] + product if name in out else product
        return {name: value.expand(batch, *shapes[name]) if value.shape == shapes[name]
                else value for name, value in out.items()}
