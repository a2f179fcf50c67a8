"""The CMS's hand-written inner gradient (nlbook.cms.inner_gradient) against torch.autograd,
float64: every activation, both chain shapes, pre-norm or not, residual or not, parameters
shared, per-sequence and with low-rank in-context terms, first and second order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nlbook.cms import ContinuumMemory, cross_entropy_loss, squared_error_loss
from nlbook.cms.fast_weights import _BlockTensors
from nlbook.cms.inner_gradient import (
    BranchTape,
    activation_backward,
    activation_derivative,
    layer_norm_backward,
    layer_output_gradients,
    loss_and_output_gradient,
)

DTYPE = torch.float64
DIM, HIDDEN, VOCAB = 4, 5, 7


def _levels(cms: ContinuumMemory, batch: int, generator: torch.Generator) -> list:
    """Level 0 at the shared parameters themselves; level 1 per-sequence dense tensors; level 2
    expanded shared weights plus low-rank in-context terms (what a carried state looks like)."""
    def normal(*shape):
        return torch.randn(*shape, generator=generator, dtype=DTYPE)

    levels = [_BlockTensors(dict(cms.blocks[0].items()))]
    levels.append(_BlockTensors({name: value + 0.3 * normal(batch, *value.shape)
                                 for name, value in cms.blocks[1].items()}))
    dense = {name: value.unsqueeze(0).expand(batch, *value.shape)
             for name, value in cms.blocks[2].items()}
    low_rank = {name: (0.3 * normal(batch, 3, value.shape[0]), normal(batch, 3, value.shape[1]))
                for name, value in cms.blocks[2].items() if value.ndim == 2}
    levels.append(_BlockTensors(dense, low_rank))
    return levels


def _loss(kind: str, generator: torch.Generator):
    if kind == "squared":
        return squared_error_loss, lambda b, n: torch.randn(b, n, DIM, generator=generator,
                                                            dtype=DTYPE)
    readout = nn.Sequential(nn.LayerNorm(DIM, bias=False, dtype=DTYPE),
                            nn.Linear(DIM, VOCAB, bias=False, dtype=DTYPE))
    with torch.no_grad():
        readout[0].weight.uniform_(0.5, 1.5, generator=generator)
    return cross_entropy_loss(readout), lambda b, n: torch.randint(VOCAB, (b, n),
                                                                   generator=generator)


def _both_gradients(cms, rates, loss_kind, *, second_order):
    """(hand-written, autograd) gradients at every active layer's output, and the inputs."""
    generator = torch.Generator().manual_seed(5)
    batch, length, known = 2, 6, 5  # the last position has no target yet
    levels = _levels(cms, batch, generator)
    loss_fn, make_targets = _loss(loss_kind, generator)
    x = torch.randn(batch, length, DIM, generator=generator, dtype=DTYPE, requires_grad=True)
    targets = make_targets(batch, known)
    active = [level for level, rate in enumerate(rates) if rate]
    taped = active if cms.variant == "independent" else range(min(active), cms.num_blocks)
    tapes = {level: BranchTape() for level in taped}
    outputs = cms._run_blocks(levels, x, tapes)
    losses, d_output = loss_and_output_gradient(loss_fn, outputs[:, :known], targets,
                                                create_graph=second_order)
    assert torch.equal(losses, loss_fn(outputs[:, :known], targets))
    mine = layer_output_gradients(cms, levels, tapes, d_output, active)
    layer_outputs = [layer[3] for level in active for layer in tapes[level].layers]
    theirs = torch.autograd.grad(loss_fn(outputs[:, :known], targets).sum(), layer_outputs,
                                 create_graph=second_order)
    flat = [gradient for level in active for gradient in mine[level]]
    return flat, [gradient[:, :known] for gradient in theirs], x


@pytest.mark.parametrize("variant", ["sequential", "independent"])
@pytest.mark.parametrize("activation", ["gelu", "relu", "silu", "tanh", "identity"])
@pytest.mark.parametrize(("linear", "pre_norm", "residual"),
                         [(False, True, True), (False, False, False), (True, True, False),
                          (True, False, True)])
@pytest.mark.parametrize("rates", [(0.1, 0.0, 0.2), (0.0, 0.0, 0.1), (0.1, 0.1, 0.1)])
def test_inner_gradient_matches_autograd(variant, activation, linear, pre_norm, residual, rates):
    cms = ContinuumMemory(DIM, [2, 3, 4], list(rates), hidden_dim=HIDDEN, linear=linear,
                          variant=variant, activation=activation, pre_norm=pre_norm,
                          residual=residual, generator=torch.Generator().manual_seed(0),
                          dtype=DTYPE)
    if cms.aggregation is not None:
        with torch.no_grad():
            cms.aggregation.copy_(torch.tensor([0.5, -1.0, 2.0], dtype=DTYPE))
    for loss_kind in ("squared", "cross_entropy"):
        mine, theirs, _ = _both_gradients(cms, rates, loss_kind, second_order=False)
        assert len(mine) == len(theirs) > 0
        for a, b in zip(mine, theirs, strict=True):
            assert a.shape == b.shape
            assert (a - b).abs().max() < 1e-12


def test_inner_gradient_is_differentiable_like_autograd_create_graph():
    # Second order: a function of the inner gradients has the same gradient w.r.t. the
    # inputs and every initial parameter as with autograd.grad(create_graph=True).
    rates = (0.1, 0.0, 0.2)
    cms = ContinuumMemory(DIM, [2, 3, 4], list(rates), hidden_dim=HIDDEN,
                          generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    mine, theirs, x = _both_gradients(cms, rates, "cross_entropy", second_order=True)
    weights = [torch.randn(g.shape, generator=torch.Generator().manual_seed(i), dtype=DTYPE)
               for i, g in enumerate(mine)]
    wrt = [x, *cms.parameters()]

    def outer(gradients):
        total = sum((g * w).sum() for g, w in zip(gradients, weights, strict=True))
        return torch.autograd.grad(total, wrt, retain_graph=True, allow_unused=True)

    for a, b in zip(outer(mine), outer(theirs), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a - b).abs().max() < 1e-12


@pytest.mark.parametrize("name", ["gelu", "relu", "silu", "tanh", "identity"])
def test_activation_derivatives_match_autograd(name):
    from nlbook.cms.state import _ACTIVATIONS

    x = torch.linspace(-4, 4, 81, dtype=DTYPE).requires_grad_(True)
    (expected,) = torch.autograd.grad(_ACTIVATIONS[name](x).sum(), x)
    assert (activation_derivative(name, x.detach()) - expected).abs().max() < 1e-14
    upstream = torch.randn(81, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    (expected,) = torch.autograd.grad(_ACTIVATIONS[name](x), x, upstream)
    fused = activation_backward(name, upstream, x.detach())
    assert (fused - upstream * activation_derivative(name, x.detach())).abs().max() < 1e-14
    assert (fused - expected).abs().max() < 1e-14


def test_layer_norm_backward_matches_autograd():
    generator = torch.Generator().manual_seed(0)
    h = (3 * torch.randn(2, 5, 6, generator=generator, dtype=DTYPE)).requires_grad_(True)
    d = torch.randn(2, 5, 6, generator=generator, dtype=DTYPE)
    (expected,) = torch.autograd.grad(nn.functional.layer_norm(h, (6,)), h, d)
    assert (layer_norm_backward(h.detach(), d) - expected).abs().max() < 1e-13

