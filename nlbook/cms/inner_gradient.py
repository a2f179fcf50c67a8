"""The CMS's in-context gradients, written out by hand (arXiv A-eq 71).

Every in-context update needs, at each affine layer of a block, the gradient g_t = ∂L/∂z_t of
the chunk's summed loss L = Σ_t loss_t at the layer's output z_t (the weight's gradient is then
Σ_t g_t x_tᵀ, kept as the factors (G, X), see :class:`nlbook.cms.fast_weights._BlockTensors`).
This module backpropagates it through the chain of blocks with ordinary tensor operations,
so that ``torch.compile`` keeps HOPE's forward as one graph (it cannot trace a call of
``torch.autograd.grad``):

- the loss's gradient at the CMS output (any loss function) comes from
  ``torch.func.grad_and_value`` when compiling (traced into the graph), and in eager from
  ``torch.autograd.grad`` over the loss alone (the same numbers, less overhead);
- then, block by block from the output down: an affine layer z = W x + b (W = dense + Gᵀ X)
  sends ∂L/∂x = ∂L/∂z (dense + Gᵀ X); the activation multiplies by its derivative; the
  pre-norm LayerNorm (no affine) has the usual closed-form backward; a residual adds its
  branch's input gradient to the skip path.

Tested against ``torch.autograd`` in float64 (tests/test_cms_inner_gradient.py), first and
second order.
Under ``first_order`` the gradients are constants and are computed without a graph; for
second-order updates the same operations run with the graph on, so the updates stay
differentiable w.r.t. the initial parameters and the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from nlbook.cms.fast_weights import _BlockTensors
from nlbook.cms.state import LossFn

_LAYER_NORM_EPS = 1e-5  # F.layer_norm's default, which ContinuumMemory._branch uses


@dataclass
class BranchTape:
    """What one block's branch keeps during the forward for its inner gradient.

    ``branch_input`` (B, n, d): the branch's input (before the pre-norm); ``layers``: per affine
    layer in forward order (weight name, bias name, layer input (B, n, d_in), layer output
    (B, n, d_out)).
    """

    branch_input: torch.Tensor | None = None
    layers: list[tuple[str, str, torch.Tensor, torch.Tensor]] = field(default_factory=list)


def check_per_token_losses(losses: object, batch: int, known: int) -> torch.Tensor:
    """``losses`` if it is a (batch, known) tensor, else ValueError naming loss_fn."""
    if not isinstance(losses, torch.Tensor) or losses.shape != (batch, known):
        shape = getattr(losses, "shape", type(losses).__name__)
        raise ValueError(f"loss_fn must return per-token losses of shape (B, n) = "
                         f"({batch}, {known}), got {shape}")
    return losses


def loss_and_output_gradient(loss_fn: LossFn, outputs: torch.Tensor, targets: torch.Tensor,
                             *, create_graph: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses (B, n) = ``loss_fn(outputs, targets)`` and ∂(Σ losses)/∂outputs
    (B, n, d), from one forward of the loss.

    The losses keep the caller's graph (when it records one); ``create_graph``: the gradient
    is differentiable too (second order). Under torch.compile the gradient comes from
    ``torch.func.grad_and_value``, which compiles into the graph; in eager from
    ``torch.autograd.grad`` over the loss alone (the same numbers, 0.5 ms less per call here).

    Raises:
        ValueError: if ``loss_fn`` does not return per-token losses of shape (B, n).
    """
    batch, known = outputs.shape[0], outputs.shape[1]

    def total(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses = check_per_token_losses(loss_fn(values, targets), batch, known)
        return losses.sum(), losses

    if torch.compiler.is_compiling():
        gradient, (_, losses) = torch.func.grad_and_value(total, has_aux=True)(outputs)
        return losses, gradient
    keep = torch.is_grad_enabled() and outputs.requires_grad  # the caller's graph
    with torch.enable_grad():
        values = outputs if keep else outputs.detach().requires_grad_(True)
        summed, losses = total(values)
        (gradient,) = torch.autograd.grad(summed, values, retain_graph=keep or create_graph,
                                          create_graph=create_graph)
    return losses, gradient


def activation_derivative(name: str, inputs: torch.Tensor) -> torch.Tensor:
    """σ'(inputs) for the CMS activations (``"gelu"`` is the exact, erf form of F.gelu)."""
    if name == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(inputs * (1.0 / math.sqrt(2.0))))
        density = torch.exp(-0.5 * inputs * inputs) * (1.0 / math.sqrt(2.0 * math.pi))
        return cdf + inputs * density
    if name == "relu":
        return (inputs > 0).to(inputs.dtype)  # 0 at 0, as autograd
    if name == "silu":
        sigmoid = torch.sigmoid(inputs)
        return sigmoid * (1.0 + inputs * (1.0 - sigmoid))
    if name == "tanh":
        return 1.0 - torch.tanh(inputs).square()
    if name == "identity":
        return torch.ones_like(inputs)
    raise ValueError(f"activation must be one of gelu, relu, silu, tanh, identity, got {name!r}")


def activation_backward(name: str, d_output: torch.Tensor, inputs: torch.Tensor
                        ) -> torch.Tensor:
    """d_output ⊙ σ'(inputs): GELU and SiLU through PyTorch's fused backward kernels (one pass
    instead of the six of :func:`activation_derivative`'s formula; the same values, tested),
    which are differentiable again for second-order updates."""
    if name == "gelu":
        return torch.ops.aten.gelu_backward(d_output, inputs)
    if name == "silu":
        return torch.ops.aten.silu_backward(d_output, inputs)
    if name == "identity":
        return d_output
    return d_output * activation_derivative(name, inputs)


def layer_norm_backward(inputs: torch.Tensor, d_normalized: torch.Tensor) -> torch.Tensor:
    """∂L/∂h of n = LayerNorm(h) without affine over the last axis: (..., d) -> (..., d).

    With r = 1/√(var(h) + ε): ∂L/∂h = r (∂L/∂n − mean(∂L/∂n) − n · mean(∂L/∂n ⊙ n)).
    """
    centered = inputs - inputs.mean(-1, keepdim=True)
    rstd = torch.rsqrt(centered.square().mean(-1, keepdim=True) + _LAYER_NORM_EPS)
    normalized = centered * rstd
    return rstd * (d_normalized - d_normalized.mean(-1, keepdim=True)
                   - normalized * (d_normalized * normalized).mean(-1, keepdim=True))


def affine_input_gradient(block: _BlockTensors, weight: str, d_output: torch.Tensor
                          ) -> torch.Tensor:
    """∂L/∂x of z = x Wᵀ + b with W = dense + Gᵀ X: ∂L/∂z (B, n, d_out) -> (B, n, d_in)."""
    dense = block.dense[weight]
    if dense.ndim == 3 and dense.stride(0) == 0:  # one matrix expanded over the batch
        dense = dense[0]
    d_input = d_output @ dense                     # (d_out, d_in) shared or (B, d_out, d_in)
    if weight in block.low_rank:
        left, right = block.low_rank[weight]       # G (B, m, d_out), X (B, m, d_in)
        d_input = d_input + (d_output @ left.transpose(1, 2)) @ right
    return d_input


def _branch_backward(activation: str, pre_norm: bool, block: _BlockTensors, tape: BranchTape,
                     d_branch_output: torch.Tensor, known: int, need_input: bool
                     ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Gradients at every affine layer's output of one branch (first ``known`` positions), and
    at the branch input when ``need_input``."""
    layers = tape.layers
    gradients: list[torch.Tensor] = [d_branch_output] * len(layers)
    gradient = d_branch_output
    for index in range(len(layers) - 1, -1, -1):
        gradients[index] = gradient
        if index == 0 and not need_input:
            return gradients, None
        gradient = affine_input_gradient(block, layers[index][0], gradient)
        if index > 0:  # the activation sits between the two layers of an MLP block
            gradient = activation_backward(activation, gradient,
                                           layers[index - 1][3][:, :known])
    if pre_norm:
        assert tape.branch_input is not None
        gradient = layer_norm_backward(tape.branch_input[:, :known], gradient)
    return gradients, gradient


def layer_output_gradients(cms, blocks: list[_BlockTensors], tapes: dict[int, BranchTape],
                           d_output: torch.Tensor, active: list[int]
                           ) -> dict[int, list[torch.Tensor]]:
    """Per active block, the gradients (B, n, d_out) at its affine layers' outputs (in the
    order of ``tapes[block].layers``), given d_output = ∂L/∂(CMS output) (B, n, d) of the first
    n positions.

    ``cms`` is the :class:`nlbook.cms.ContinuumMemory` whose forward filled ``tapes``: for the
    ``"independent"`` variant one tape per active block, for a chain one per block from the
    first active block on (the gradient passes through the blocks above it).
    """
    known = d_output.shape[1]
    gradients: dict[int, list[torch.Tensor]] = {}
    if cms.variant == "independent":
        for block in active:
            d_branch = cms.aggregation[block] * d_output
            gradients[block], _ = _branch_backward(cms.activation, cms.pre_norm, blocks[block],
                                                   tapes[block], d_branch, known, False)
        return gradients
    first = min(active)
    d_hidden = d_output
    for block in range(len(blocks) - 1, first - 1, -1):
        layer_gradients, d_input = _branch_backward(cms.activation, cms.pre_norm,
                                                    blocks[block], tapes[block], d_hidden,
                                                    known, need_input=block > first)
        if block in active:
            gradients[block] = layer_gradients
        if block > first:
            assert d_input is not None
            d_hidden = d_hidden + d_input if cms.residual else d_input
    return gradients
