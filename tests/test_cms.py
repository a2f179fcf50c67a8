"""Tests for nlbook.cms: the Continuum Memory System (chapter 3), float64, small shapes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nlbook.cms import (
    CMSRecord,
    ContinuumMemory,
    MultiRateOptimizer,
    cross_entropy_loss,
    nested_reset_periods,
    parameter_trajectory,
    reference_continuum_memory,
    squared_error_loss,
)

DTYPE = torch.float64


def make_cms(chunk_sizes=(1, 3, 4), rates=(0.02, 0.01, 0.03), seed=0, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    kwargs.setdefault("hidden_dim", 6)
    return ContinuumMemory(4, list(chunk_sizes), list(rates), generator=generator, dtype=DTYPE,
                           **kwargs)


def make_stream(batch=2, length=13, dim=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, dim, generator=generator, dtype=DTYPE)
    y = torch.randn(batch, length, dim, generator=generator, dtype=DTYPE)
    return x, y


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---- the update rule: counts, hand-computed sums, reference loop ----------------------------


@pytest.mark.parametrize("chunk", [1, 3, 4, 5, 13, 20])
def test_block_updates_floor_T_over_C_times(chunk):
    length = 13
    cms = make_cms((chunk,), (0.05,), linear=True, residual=False, pre_norm=False)
    x, y = make_stream(length=length)
    record = CMSRecord(1)
    cms(x, y, loss_fn=squared_error_loss, record=record)
    assert record.update_steps(0) == [chunk * (k + 1) for k in range(length // chunk)]
    assert len(record.update_steps(0)) == math.floor(length / chunk)


def test_each_update_is_the_hand_computed_sum_of_per_token_gradients():
    # One linear block, loss ½‖W x + b − y‖²: per-token gradients (W x_t + b − y_t) x_tᵀ and
    # (W x_t + b − y_t), all at the parameters that entered the chunk; the update is −η·SUM.
    chunk, rate, length = 4, 0.05, 13
    cms = make_cms((chunk,), (rate,), linear=True, residual=False, pre_norm=False)
    x, y = make_stream(length=length)
    record = CMSRecord(1, keep_deltas=True)
    output = cms(x, y, loss_fn=squared_error_loss, record=record)
    weight = cms.blocks[0]["weight"].detach().expand(2, 4, 4).clone()
    bias = cms.blocks[0]["bias"].detach().expand(2, 4).clone()
    for k, step in enumerate(record.update_steps(0)):
        grad_weight = torch.zeros_like(weight)
        grad_bias = torch.zeros_like(bias)
        for t in range(step - chunk, step):
            error = torch.einsum("bij,bj->bi", weight, x[:, t]) + bias - y[:, t]
            grad_weight += torch.einsum("bi,bj->bij", error, x[:, t])
            grad_bias += error
        delta = record.blocks[0].deltas[k]
        assert max_difference(delta["weight"], -rate * grad_weight) < 1e-12
        assert max_difference(delta["bias"], -rate * grad_bias) < 1e-12
        weight, bias = weight - rate * grad_weight, bias - rate * grad_bias
    assert max_difference(output.state.parameters[0]["weight"], weight) < 1e-12
    # a mean would be 4x smaller: make sure the test could tell
    assert record.blocks[0].sizes[0].min() > 0


@pytest.mark.parametrize("variant", ["sequential", "independent", "nested"])
@pytest.mark.parametrize("grad_mode", [True, False])
def test_fast_path_matches_token_loop_reference(variant, grad_mode):
    cms = make_cms(variant=variant)
    x, y = make_stream()
    record = CMSRecord(3, keep_deltas=True)
    with torch.set_grad_enabled(grad_mode):
        fast = cms(x, y, loss_fn=squared_error_loss, record=record)
    outputs, losses, parameters, reference_record = reference_continuum_memory(
        cms, x, y, squared_error_loss)
    assert max_difference(fast.output, outputs) < 1e-10
    assert max_difference(fast.losses, losses) < 1e-10
    for block in range(3):
        for name, value in parameters[block].items():
            assert max_difference(fast.state.parameters[block][name], value) < 1e-10
        assert record.update_steps(block) == reference_record.update_steps(block)
        assert record.blocks[block].resets == reference_record.blocks[block].resets
        for mine, theirs in zip(record.blocks[block].deltas, reference_record.blocks[block].deltas,
                                strict=True):
            assert max(max_difference(mine[k], theirs[k]) for k in mine) < 1e-10


def test_nested_variant_resets_fast_blocks_at_the_end_of_their_context():
    assert nested_reset_periods([1, 4, 16]) == [4, 16, None]
    assert nested_reset_periods([8, 2, 8]) == [None, 8, None]
    cms = make_cms((1, 4), (0.02, 0.01), variant="nested")
    x, y = make_stream(length=9)
    record = CMSRecord(2)
    out = cms(x, y, loss_fn=squared_error_loss, record=record)
    assert record.blocks[0].resets == [4, 8] and record.blocks[1].resets == []
    # after the reset at count 8 and the update at count 9, block 0 is one step from its init
    initial = cms.blocks[0]["w_in"].detach()
    assert max_difference(out.state.parameters[0]["w_in"][0] - initial,
                          torch.zeros_like(initial)) > 0
    assert len([s for s in record.update_steps(0) if s > 8]) == 1


def test_cross_entropy_next_token_loss_matches_reference():
    vocab = 5
    cms = make_cms((2, 3), (0.05, 0.02))
    head = nn.Linear(4, vocab, dtype=DTYPE)
    loss_fn = cross_entropy_loss(head)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 4, generator=generator, dtype=DTYPE)
    targets = torch.randint(0, vocab, (2, 8), generator=generator)
    fast = cms(x, targets, loss_fn=loss_fn)
    outputs, losses, _, _ = reference_continuum_memory(cms, x, targets, cross_entropy_loss(
        lambda h: nn.functional.linear(h, head.weight.detach(), head.bias.detach())))
    assert max_difference(fast.output, outputs) < 1e-10
    assert max_difference(fast.losses, losses) < 1e-10


# ---- frozen chain ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["sequential", "independent"])
def test_zero_learning_rates_give_exactly_the_frozen_mlp_chain(variant):
    cms = make_cms(rates=(0.0, 0.0, 0.0), variant=variant)
    x, y = make_stream()
    record = CMSRecord(3)
    out = cms(x, y, loss_fn=squared_error_loss, record=record)
    norm = nn.LayerNorm(4, elementwise_affine=False, dtype=DTYPE)
    blocks = []
    for parameters in cms.blocks:
        block = nn.Sequential(nn.Linear(4, 6, dtype=DTYPE), nn.GELU(), nn.Linear(6, 4, dtype=DTYPE))
        with torch.no_grad():
            block[0].weight.copy_(parameters["w_in"])
            block[0].bias.copy_(parameters["b_in"])
            block[2].weight.copy_(parameters["w_out"])
            block[2].bias.copy_(parameters["b_out"])
        blocks.append(block)
    with torch.no_grad():
        if variant == "sequential":
            expected = x
            for block in blocks:
                expected = expected + block(norm(expected))
        else:
            expected = x + sum(block(norm(x)) for block in blocks)
    assert max_difference(out.output, expected) < 1e-12
    assert all(record.update_steps(block) == [] for block in range(3))
    for block in range(3):
        for name, value in out.state.parameters[block].items():
            assert torch.equal(value[0], cms.blocks[block][name].detach())


# ---- causality, batch independence, streaming --------------------------------------------


@pytest.mark.parametrize("cut", [0, 3, 4, 7, 11])
def test_in_context_updates_are_causal(cut):
    cms = make_cms(variant="nested")
    x, y = make_stream()
    changed_x, changed_y = x.clone(), y.clone()
    changed_x[:, cut + 1:] += 1.0
    changed_y[:, cut + 1:] -= 2.0
    # next-token style: the target of position t is built from input t+1
    base = cms(x, y, loss_fn=squared_error_loss).output
    other = cms(changed_x, changed_y, loss_fn=squared_error_loss).output
    assert max_difference(base[:, :cut + 1], other[:, :cut + 1]) == 0.0
    assert max_difference(base[:, cut + 1:], other[:, cut + 1:]) > 1e-6
    shifted = torch.cat([x[:, 1:], x[:, :1]], 1)  # target_t = x_{t+1}: changing x_{t+1} is
    changed_shift = torch.cat([changed_x[:, 1:], changed_x[:, :1]], 1)  # allowed to reach t+1 on
    base = cms(x, shifted, loss_fn=squared_error_loss).output
    other = cms(changed_x, changed_shift, loss_fn=squared_error_loss).output
    assert max_difference(base[:, :cut + 1], other[:, :cut + 1]) == 0.0


def test_sequences_in_a_batch_do_not_share_fast_parameters():
    cms = make_cms()
    x, y = make_stream(batch=3)
    base = cms(x, y, loss_fn=squared_error_loss)
    x2, y2 = x.clone(), y.clone()
    x2[1] = torch.randn(13, 4, dtype=DTYPE)
    y2[1] = 5 * torch.randn(13, 4, dtype=DTYPE)
    other = cms(x2, y2, loss_fn=squared_error_loss)
    for sequence in (0, 2):
        assert max_difference(base.output[sequence], other.output[sequence]) == 0.0
        for block in range(3):
            for name in base.state.parameters[block]:
                assert torch.equal(base.state.parameters[block][name][sequence],
                                   other.state.parameters[block][name][sequence])
    assert max_difference(base.output[1], other.output[1]) > 1e-6
    alone = cms(x[2:3], y[2:3], loss_fn=squared_error_loss)  # and equals running it alone
    assert max_difference(alone.output[0], base.output[2]) < 1e-12


@pytest.mark.parametrize("split", [1, 4, 5, 12])
def test_streaming_in_two_pieces_equals_one_pass(split):
    cms = make_cms(variant="nested")
    x, y = make_stream()
    whole = cms(x, y, loss_fn=squared_error_loss)
    first = cms(x[:, :split], y[:, :split], loss_fn=squared_error_loss)
    second = cms(x[:, split:], y[:, split:], loss_fn=squared_error_loss, state=first.state)
    assert max_difference(torch.cat([first.output, second.output], 1), whole.output) < 1e-12
    for block in range(3):
        for name, value in whole.state.parameters[block].items():
            assert max_difference(second.state.parameters[block][name], value) < 1e-12


def test_token_by_token_generation_with_targets_known_one_step_late():
    cms = make_cms(variant="nested")
    x, y = make_stream()
    whole = cms(x, y, loss_fn=squared_error_loss)
    state, outputs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            step = cms(x[:, t:t + 1], y[:, t:t], loss_fn=squared_error_loss, state=state,
                       pending_target=None if t == 0 else y[:, t - 1])
            state = step.state
            outputs.append(step.output)
            assert state.pending_input is not None and state.position == t + 1
            if t > 0:
                assert max_difference(step.pending_loss, whole.losses[:, t - 1]) < 1e-12
    assert max_difference(torch.cat(outputs, 1), whole.output) < 1e-12


# ---- differentiable w.r.t. the initial (meta) parameters -----------------------------------


def test_outer_gradient_flows_through_the_in_context_updates():
    cms = make_cms((1, 2), (0.05, 0.05), hidden_dim=3)
    x, y = make_stream(batch=1, length=5)
    names = [name for name, _ in cms.named_parameters()]

    def outer_loss(*initial):
        parameters = dict(zip(names, initial, strict=True))
        output = torch.func.functional_call(cms, parameters, (x, y),
                                            {"loss_fn": squared_error_loss})
        return output.losses.sum()

    initial = tuple(value.detach().clone().requires_grad_(True)
                    for _, value in cms.named_parameters())
    assert torch.autograd.gradcheck(outer_loss, initial, eps=1e-6, atol=1e-6)
    # the inputs get gradients too (HOPE trains what produces x)
    x.requires_grad_(True)
    cms(x, y, loss_fn=squared_error_loss).losses.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_parameter_trajectory_rebuilds_the_final_parameters():
    cms = make_cms((1, 3), (0.02, 0.02), variant="nested")
    x, y = make_stream(length=10)
    record = CMSRecord(2, keep_deltas=True)
    out = cms(x, y, loss_fn=squared_error_loss, record=record)
    trajectory = parameter_trajectory(record, 1, "w_in", cms.blocks[1]["w_in"], sequence=1)
    assert trajectory.shape == (4, 6, 4)
    assert max_difference(trajectory[-1], out.state.parameters[1]["w_in"][1]) < 1e-12


# ---- multi-rate training --------------------------------------------------------------------


def test_multi_rate_optimizer_steps_group_g_every_C_g_steps_with_the_summed_gradient():
    generator = torch.Generator().manual_seed(0)
    fast = nn.Parameter(torch.randn(3, generator=generator, dtype=DTYPE))
    slow = nn.Parameter(torch.randn(3, generator=generator, dtype=DTYPE))
    sgd = torch.optim.SGD([{"params": [fast], "lr": 0.1}, {"params": [slow], "lr": 0.01}])
    optimizer = MultiRateOptimizer(sgd, [1, 3])
    fast_ref, slow_ref = fast.detach().clone(), slow.detach().clone()
    pending = torch.zeros(3, dtype=DTYPE)
    for step in range(1, 8):
        data = torch.randn(3, generator=generator, dtype=DTYPE)
        optimizer.zero_grad()
        loss = ((fast * slow - data) ** 2).sum()
        loss.backward()
        grad_fast = 2 * (fast_ref * slow_ref - data) * slow_ref
        pending += 2 * (fast_ref * slow_ref - data) * fast_ref
        due = optimizer.step()
        fast_ref = fast_ref - 0.1 * grad_fast
        if step % 3 == 0:
            slow_ref, pending = slow_ref - 0.01 * pending, torch.zeros(3, dtype=DTYPE)
            assert due == [0, 1]
        else:
            assert due == [0]
        assert max_difference(fast, fast_ref) < 1e-12
        assert max_difference(slow, slow_ref) < 1e-12
    assert optimizer.record.update_steps(1) == [3, 6]
    assert optimizer.record.update_steps(0) == list(range(1, 8))


def test_multi_rate_optimizer_with_adamw_leaves_off_groups_untouched():
    fast = nn.Parameter(torch.ones(2, dtype=DTYPE))
    slow = nn.Parameter(torch.ones(2, dtype=DTYPE))
    optimizer = MultiRateOptimizer(torch.optim.AdamW([{"params": [fast]}, {"params": [slow]}],
                                                     lr=0.1, weight_decay=0.5), [1, 4])
    for _ in range(3):
        optimizer.zero_grad()
        (fast.sum() + slow.sum()).backward()
        optimizer.step()
        assert torch.equal(slow.detach(), torch.ones(2, dtype=DTYPE))
    assert not torch.equal(fast.detach(), torch.ones(2, dtype=DTYPE))


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"chunk_sizes": [0, 2]}, "chunk_sizes"),
    ({"chunk_sizes": [2, -1]}, "chunk_sizes"),
    ({"chunk_sizes": []}, "chunk_sizes"),
    ({"chunk_sizes": [2.5]}, "chunk_sizes"),
    ({"chunk_sizes": [1, 2], "learning_rates": [0.1]}, "learning_rates"),
    ({"learning_rates": [-0.1]}, "learning_rates"),
    ({"reset_every": [4, None]}, "reset_every"),
    ({"reset_every": [0]}, "reset_every"),
    ({"variant": "parallel"}, "variant"),
    ({"activation": "swish"}, "activation"),
])
def test_bad_configuration_raises_value_error(kwargs, match):
    arguments = {"dim": 4, "chunk_sizes": [2], "learning_rates": [0.1]} | kwargs
    with pytest.raises(ValueError, match=match):
        ContinuumMemory(**arguments)


def test_bad_calls_raise_value_error():
    cms = make_cms()
    x, y = make_stream()
    with pytest.raises(ValueError, match="x"):
        cms(x[0], y[0], loss_fn=squared_error_loss)
    with pytest.raises(ValueError, match="d = 4"):
        cms(torch.randn(2, 3, 5, dtype=DTYPE))
    with pytest.raises(ValueError, match="targets"):
        cms(x, y[:, :5], loss_fn=squared_error_loss)
    with pytest.raises(ValueError, match="together"):
        cms(x, y)
    with pytest.raises(ValueError, match="loss_fn"):
        cms(x, y, loss_fn=lambda out, target: (out - target).pow(2).sum())
    with pytest.raises(ValueError, match="pending"):
        cms(x, y, loss_fn=squared_error_loss, pending_target=y[:, 0])
    with pytest.raises(ValueError, match="param group"):
        MultiRateOptimizer(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1), [1, 2])
    with pytest.raises(ValueError, match="chunk_sizes"):
        MultiRateOptimizer(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1), [0])


def test_viz_functions_return_figures():
    import matplotlib.figure

    from nlbook.viz import plot_cms_explorer, plot_forgetting, plot_update_ticks

    cms = make_cms((1, 3), (0.02, 0.02), variant="nested")
    x, y = make_stream(length=10)
    record = CMSRecord(2, keep_deltas=True)
    out = cms(x, y, loss_fn=squared_error_loss, record=record)
    figure = plot_update_ticks([record.update_steps(0), record.update_steps(1)], 10,
                               sizes=[record.update_sizes(0)[:, 0], record.update_sizes(1)[:, 0]])
    assert isinstance(figure, matplotlib.figure.Figure)
    trajectories = [parameter_trajectory(record, block, "w_in", cms.blocks[block]["w_in"])
                    for block in range(2)]
    figure = plot_cms_explorer(trajectories, [record.update_steps(0), record.update_steps(1)],
                               out.losses[0], time=5, show="change")
    assert isinstance(figure, matplotlib.figure.Figure)
    figure = plot_forgetting({"one level": [0.1, 2.0, 0.5], "cms": [0.1, 0.2, 0.1]},
                             ["A", "after B", "A again"])
    assert isinstance(figure, matplotlib.figure.Figure)


def test_exercise_checkers_accept_the_solution_and_reject_a_mean():
    from nlbook.exercises import continuum_memory as ex

    def chunk_update(weight, inputs, targets, rate):
        errors = inputs @ weight.T - targets
        return weight - rate * errors.T @ inputs

    def chunk_update_mean(weight, inputs, targets, rate):
        errors = inputs @ weight.T - targets
        return weight - rate * errors.T @ inputs / inputs.shape[0]

    assert ex.check_chunk_update(chunk_update)
    with pytest.raises(AssertionError, match="mean"):
        ex.check_chunk_update(chunk_update_mean)
    assert ex.check_update_steps(lambda length, chunk: list(range(chunk, length + 1, chunk)))
    with pytest.raises(AssertionError):
        ex.check_update_steps(lambda length, chunk: list(range(0, length, chunk)))
