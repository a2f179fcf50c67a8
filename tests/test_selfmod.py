"""Tests for nlbook.selfmod: DGD, the self-modifying layer and self-modifying Titans."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nlbook import selfmod
from nlbook.selfmod import (
    SelfModifyingLinear,
    SelfModifyingTitans,
    chunk_kernel,
    dgd_proximal_closed_form,
    dgd_step,
    dgd_step_rank_k,
    gated_delta_chunk,
    reference_self_modifying_titans,
    silu_derivative,
)

DTYPE = torch.float64


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _layer(chunk_memory: int = 1, chunk_others: int = 1, **kwargs) -> SelfModifyingTitans:
    return SelfModifyingTitans(8, heads=2, hidden=6, chunk_size_memory=chunk_memory,
                               chunk_size_others=chunk_others, generator=_generator(1),
                               **kwargs).double()


def _inputs(batch: int = 2, length: int = 11, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, length, 8, dtype=DTYPE, generator=_generator(seed))


# ---- DGD ---------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [0.5, 2.0, 3.0])
def test_dgd_step_equals_proximal_closed_form(norm):
    g = _generator()
    W = torch.randn(5, 4, dtype=DTYPE, generator=g)
    x = torch.randn(4, dtype=DTYPE, generator=g)
    x = x / x.norm() * norm
    grad_y = torch.randn(5, dtype=DTYPE, generator=g)
    for lr in (0.1, 1.0, 7.0):
        fast = dgd_step(W, x, grad_y, lr)
        closed = dgd_proximal_closed_form(W, x, grad_y, lr)
        assert (fast - closed).abs().max() < 1e-10


def test_dgd_step_batched_and_the_neurips_typo():
    g = _generator()
    W = torch.randn(3, 5, 4, dtype=DTYPE, generator=g)
    x = torch.randn(3, 4, dtype=DTYPE, generator=g)
    x = 2 * x / x.norm(dim=-1, keepdim=True)
    grad_y = torch.randn(3, 5, dtype=DTYPE, generator=g)
    lr = torch.tensor([0.3, 1.0, 2.0], dtype=DTYPE)
    fast = dgd_step(W, x, grad_y, lr)
    for i in range(3):
        closed = dgd_proximal_closed_form(W[i], x[i], grad_y[i], lr[i].item())
        assert (fast[i] - closed).abs().max() < 1e-10
    # η/(1+η), exact only for ‖x‖ = 1, is far off at ‖x‖ = 2.
    eta = 1.0
    paper = eta / (1 + eta)
    typo = W[0] @ (torch.eye(4, dtype=DTYPE) - paper * torch.outer(x[0], x[0])) - paper * (
        torch.outer(grad_y[0], x[0]))
    assert (typo - dgd_step(W[0], x[0], grad_y[0], eta)).abs().max() > 0.1


def test_dgd_step_retention_and_errors():
    g = _generator()
    W = torch.randn(3, 4, dtype=DTYPE, generator=g)
    x = torch.randn(4, dtype=DTYPE, generator=g)
    grad_y = torch.randn(3, dtype=DTYPE, generator=g)
    lr_prime = 0.5 / (1 + 0.5 * x.dot(x))
    expected = W @ (0.9 * torch.eye(4, dtype=DTYPE) - lr_prime * torch.outer(x, x)) - (
        lr_prime * torch.outer(grad_y, x))
    assert (dgd_step(W, x, grad_y, 0.5, retention=0.9) - expected).abs().max() < 1e-12
    with pytest.raises(ValueError, match="x must have shape"):
        dgd_step(W, x[:3], grad_y, 0.5)
    with pytest.raises(ValueError, match="grad_y"):
        dgd_step(W, x, grad_y[:2], 0.5)
    with pytest.raises(ValueError, match="lr must be positive"):
        dgd_step(W, x, grad_y, -1.0)


def test_rank_k_step_is_the_joint_proximal_solution():
    g = _generator()
    W = torch.randn(5, 6, dtype=DTYPE, generator=g)
    X = torch.randn(3, 6, dtype=DTYPE, generator=g)
    grad_Y = torch.randn(3, 5, dtype=DTYPE, generator=g)
    lr = 0.7
    U = -grad_Y
    closed = (W + lr * U.T @ X) @ torch.linalg.inv(torch.eye(6, dtype=DTYPE) + lr * X.T @ X)
    assert (dgd_step_rank_k(W, X, grad_Y, lr) - closed).abs().max() < 1e-10
    one = dgd_step_rank_k(W, X[:1], grad_Y[:1], lr)
    assert (one - dgd_step(W, X[0], grad_Y[0], lr)).abs().max() < 1e-12


def test_silu_derivative_matches_autograd():
    a = torch.linspace(-4, 4, 33, dtype=DTYPE, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.nn.functional.silu(a).sum(), a)
    assert (silu_derivative(a.detach()) - grad).abs().max() < 1e-12


# ---- self-modifying linear layer ---------------------------------------------------------


@pytest.mark.parametrize("rank", [1, 3])
def test_self_modifying_linear_writes_rank_k_changes(rank):
    layer = SelfModifyingLinear(6, 4, rank=rank, generator=_generator()).double()
    x = torch.randn(2, 5, 6, dtype=DTYPE, generator=_generator(3))
    y, weights = layer(x, return_weights=True)
    assert y.shape == (2, 5, 4) and weights.shape == (2, 5, 4, 6)
    previous = layer.initial_weight.expand(2, -1, -1)
    for t in range(5):
        change = weights[:, t] - previous
        ranks = torch.linalg.matrix_rank(change, atol=1e-9)
        assert bool((ranks == rank).all()), ranks
        assert (y[:, t] - (weights[:, t] @ x[:, t, :, None])[..., 0]).abs().max() < 1e-12
        previous = weights[:, t]


def test_self_modifying_linear_rank_1_is_dgd_loop():
    layer = SelfModifyingLinear(5, 3, rank=1, generator=_generator()).double()
    x = torch.randn(1, 4, 5, dtype=DTYPE, generator=_generator(4))
    y = layer(x)
    weight = layer.initial_weight.detach().clone()
    for t in range(4):
        x_t = x[0, t]
        key = torch.nn.functional.normalize(layer.key_projection[0] @ x_t, dim=0)
        target = weight @ (layer.value_projection[0] @ x_t)
        lr = torch.nn.functional.softplus(layer.lr_weight @ x_t + layer.lr_bias)
        weight = dgd_step(weight, key, -target, lr)
        assert (y[0, t] - weight @ x_t).abs().max() < 1e-12


# ---- chunk kernel ------------------------------------------------------------------------


@pytest.mark.parametrize(("log_alpha_scale", "kernel_block"), [(1.0, 32), (200.0, 32),
                                                                 (1.0, 4), (1.0, 1)])
def test_gated_delta_chunk_matches_loop(monkeypatch, log_alpha_scale, kernel_block):
    # Scale 200: the chunk's total decay passes e^-60, where the kernel switches from the
    # factored decay matrix to the clamped C x C exp (both paths must match the loop).
    # kernel_block < 6: the chunk is solved in consecutive blocks.
    monkeypatch.setattr(chunk_kernel, "KERNEL_BLOCK", kernel_block)
    g = _generator()
    state = torch.randn(2, 4, 3, dtype=DTYPE, generator=g)
    keys = torch.randn(2, 6, 4, dtype=DTYPE, generator=g)
    values = torch.randn(2, 6, 3, dtype=DTYPE, generator=g)
    queries = torch.randn(2, 6, 4, dtype=DTYPE, generator=g)
    beta = torch.rand(2, 6, dtype=DTYPE, generator=g) * 0.2
    log_alpha = log_alpha_scale * torch.log(0.8 + 0.2 * torch.rand(2, 6, dtype=DTYPE,
                                                                     generator=g))
    final, reads = gated_delta_chunk(state, keys, values, beta, log_alpha, queries)
    running = state.clone()
    for t in range(6):
        k, u = keys[:, t], values[:, t]
        erase = log_alpha[:, t].exp()[:, None, None] * torch.eye(4, dtype=DTYPE) - (
            beta[:, t, None, None] * k[:, :, None] * k[:, None, :])
        running = erase @ running + beta[:, t, None, None] * k[:, :, None] * u[:, None, :]
        read = (running.transpose(-1, -2) @ queries[:, t, :, None])[..., 0]
        assert (reads[:, t] - read).abs().max() < 1e-12
    assert (final - running).abs().max() < 1e-12


@pytest.mark.parametrize(("with_queries", "kernel_block"), [(True, 32), (False, 32), (True, 4)])
def test_gated_delta_chunk_backward_is_the_derivative(monkeypatch, with_queries, kernel_block):
    monkeypatch.setattr(chunk_kernel, "KERNEL_BLOCK", kernel_block)
    # The kernel's backward is written by hand: gradcheck against finite differences, and
    # against autograd through the token loop, for every input (state, k, u, β, log α, q).
    g = _generator(3)
    state = torch.randn(2, 4, 3, dtype=DTYPE, generator=g, requires_grad=True)
    keys = torch.randn(2, 6, 4, dtype=DTYPE, generator=g, requires_grad=True)
    values = torch.randn(2, 6, 3, dtype=DTYPE, generator=g, requires_grad=True)
    beta = (torch.rand(2, 6, dtype=DTYPE, generator=g) * 0.3).requires_grad_()
    log_alpha = torch.log(0.7 + 0.3 * torch.rand(2, 6, dtype=DTYPE, generator=g))
    log_alpha.requires_grad_()
    queries = (torch.randn(2, 6, 4, dtype=DTYPE, generator=g, requires_grad=True)
               if with_queries else None)
    inputs = (state, keys, values, beta, log_alpha, queries)
    def outputs(*args):
        return tuple(out for out in gated_delta_chunk(*args) if out is not None)

    assert torch.autograd.gradcheck(outputs, inputs)
    final, reads = gated_delta_chunk(*inputs)
    loss = final.square().sum() + (reads.sin().sum() if with_queries else 0)
    fast = torch.autograd.grad(loss, [t for t in inputs if t is not None])
    running, loop_reads = state, []
    for t in range(6):
        k, u = keys[:, t], values[:, t]
        erase = log_alpha[:, t].exp()[:, None, None] * torch.eye(4, dtype=DTYPE) - (
            beta[:, t, None, None] * k[:, :, None] * k[:, None, :])
        running = erase @ running + beta[:, t, None, None] * k[:, :, None] * u[:, None, :]
        if with_queries:
            loop_reads.append((running.transpose(-1, -2) @ queries[:, t, :, None])[..., 0])
    loop_loss = running.square().sum() + (
        torch.stack(loop_reads, 1).sin().sum() if with_queries else 0)
    slow = torch.autograd.grad(loop_loss, [t for t in inputs if t is not None])
    for fast_grad, slow_grad in zip(fast, slow, strict=True):
        assert (fast_grad - slow_grad).abs().max() < 1e-10


# ---- self-modifying Titans ---------------------------------------------------------------


@pytest.mark.parametrize("retain_toward_initial", [True, False])
def test_titans_chunk_1_equals_token_reference(retain_toward_initial):
    layer = _layer(1, 1, retain_toward_initial=retain_toward_initial)
    x = _inputs()
    y, _ = layer(x)
    reference = reference_self_modifying_titans(layer, x, 1, 1)
    assert (y - reference).abs().max() < 1e-10


@pytest.mark.parametrize("chunks", [(3, 2), (4, 4), (5, 1), (1, 3), (16, 8)])
def test_titans_chunked_equals_frozen_reference(chunks):
    layer = _layer(*chunks)
    x = _inputs(length=11)
    y, _ = layer(x)
    reference = reference_self_modifying_titans(layer, x, *chunks)
    assert (y - reference).abs().max() < 1e-10


@pytest.mark.parametrize("kernel_block", [1, 2, 3])
def test_titans_kernel_blocks_inside_a_chunk_change_nothing(monkeypatch, kernel_block):
    # The main memory's chunks (here 8) are solved in kernel blocks shorter than a chunk.
    monkeypatch.setattr(chunk_kernel, "KERNEL_BLOCK", kernel_block)
    layer = _layer(8, 3)
    x = _inputs(length=19)
    y, state = layer(x)
    assert (y - reference_self_modifying_titans(layer, x, 8, 3)).abs().max() < 1e-10
    streamed, streamed_state = layer(x[:, :5])
    rest, streamed_state = layer(x[:, 5:], streamed_state)
    assert (torch.cat([streamed, rest], 1) - y).abs().max() < 1e-12
    assert (streamed_state.memory_second - state.memory_second).abs().max() < 1e-12


def test_titans_writing_the_first_layer_matches_reference():
    layer = _layer(3, 2, write_first_layer=True)
    x = _inputs(length=7)
    y, _ = layer(x)
    assert (y - reference_self_modifying_titans(layer, x, 3, 2)).abs().max() < 1e-10


@pytest.mark.parametrize("splits", [[3, 8], [4, 4, 3], [1, 1, 9], [8, 3]])
def test_titans_streaming_equals_one_call(splits):
    layer = _layer(4, 3)
    x = _inputs(length=11)
    whole, whole_state = layer(x)
    pieces, state, start = [], None, 0
    for size in splits:
        out, state = layer(x[:, start:start + size], state)
        pieces.append(out)
        start += size
    assert (torch.cat(pieces, 1) - whole).abs().max() < 1e-12
    assert (state.memory_second - whole_state.memory_second).abs().max() < 1e-12
    assert state.position == 11


def test_titans_is_causal_and_batch_independent():
    layer = _layer(4, 2)
    x = _inputs(batch=3, length=10)
    y, _ = layer(x)
    changed = x.clone()
    changed[:, 6:] += 1.0
    y_changed, _ = layer(changed)
    assert (y_changed[:, :6] - y[:, :6]).abs().max() < 1e-12
    assert (y_changed[:, 6:] - y[:, 6:]).abs().max() > 1e-3
    other = x.clone()
    other[1] = torch.randn(10, 8, dtype=DTYPE, generator=_generator(9))
    y_other, _ = layer(other)
    assert (y_other[[0, 2]] - y[[0, 2]]).abs().max() < 1e-12
    single, _ = layer(x[2:3])
    assert (single - y[2:3]).abs().max() < 1e-12


def test_gradients_reach_every_initial_state_and_match_reference():
    layer = _layer(3, 2)
    x = _inputs(length=7)
    y, _ = layer(x)
    (y ** 2).sum().backward()
    fast = {name: p.grad.clone() for name, p in layer.named_parameters()}
    for name, grad in fast.items():
        assert grad.abs().max() > 1e-8, f"no gradient reaches {name}"
    layer.zero_grad()
    (reference_self_modifying_titans(layer, x, 3, 2) ** 2).sum().backward()
    for name, p in layer.named_parameters():
        assert (p.grad - fast[name]).abs().max() < 1e-9, name


def test_every_memory_changes_within_a_context():
    layer = _layer(4, 2)
    x = _inputs(length=16)
    _, state, trace = layer(x, return_trace=True)
    initial = layer.initial_state(2)
    h = layer.hidden
    changes = {
        "k": (state.generator_second[:, :, 0] - initial.generator_second[:, :, 0]).norm(),
        "v": (state.generator_second[:, :, 1] - initial.generator_second[:, :, 1]).norm(),
        "eta": (state.generator_first[..., 2 * h] - initial.generator_first[..., 2 * h]).norm(),
        "alpha": (state.generator_first[..., 2 * h + 1]
                  - initial.generator_first[..., 2 * h + 1]).norm(),
        "memory": (state.memory_second - initial.memory_second).norm(),
    }
    for name, change in changes.items():
        assert change > 1e-3, f"memory {name} did not change: {change}"
    assert trace["lr"].shape == (2, 2, 16) and bool((trace["lr"] > 0).all())
    assert bool(((trace["retention"] > 0) & (trace["retention"] < 1)).all())
    assert trace["lr"].std() > 0 and trace["retention"].std() > 0


def test_titans_float32_long_sequence_is_finite():
    layer = SelfModifyingTitans(32, heads=2, generator=_generator())
    x = torch.randn(2, 300, 32, generator=_generator(5))
    y, state = layer(x)
    assert bool(torch.isfinite(y).all()) and state.memory_second.abs().max() < 100


def test_titans_argument_errors():
    with pytest.raises(ValueError, match="heads must divide"):
        SelfModifyingTitans(10, heads=3)
    with pytest.raises(ValueError, match="chunk_size_memory"):
        SelfModifyingTitans(8, chunk_size_memory=0)
    layer = _layer()
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.zeros(2, 3, 7, dtype=DTYPE))
    _, state = layer(_inputs(batch=2, length=3))
    with pytest.raises(ValueError, match="state must be for batch"):
        layer(_inputs(batch=3, length=3), state)


# ---- the ablation switches of chapter 7 (arXiv Table 6) --------------------------------------


@pytest.mark.parametrize("options", [dict(dgd=False), dict(write_rule="gd"),
                                     dict(write_rule="gd", self_modifying=False),
                                     dict(self_modifying=False),
                                     dict(self_modifying=False, dgd=False),
                                     dict(dgd=False, retain_toward_initial=False),
                                     dict(shared_generator_input=True),
                                     dict(shared_generator_input=True, write_first_layer=True),
                                     dict(memory_first_std=None)])
@pytest.mark.parametrize("chunks", [(1, 1), (4, 3)])
def test_ablated_titans_equal_their_token_reference(options, chunks):
    layer = _layer(*chunks, **options)
    x = _inputs(length=11)
    y, _ = layer(x)
    assert (y - reference_self_modifying_titans(layer, x, *chunks)).abs().max() < 1e-10
    first, state = layer(x[:, :5])
    rest, _ = layer(x[:, 5:], state)
    assert (torch.cat([first, rest], 1) - y).abs().max() < 1e-12


def test_without_self_modification_projections_are_fixed_linear_maps():
    """k, v, η, α are fixed linear maps of x (plain Titans): the generator state never changes
    along a stream, keys and values are normalize(x W), and only the main memory is written."""
    layer = _layer(4, 2, self_modifying=False)
    x = _inputs(length=13)
    _, state, trace = layer(x, return_trace=True)
    initial = layer.initial_state(x.shape[0])
    assert torch.equal(state.generator_first, initial.generator_first)
    assert state.generator_second.numel() == 0
    assert not torch.allclose(state.memory_second, initial.memory_second)
    keys = F.normalize((x @ layer.input_projection).view(*x.shape[:2], layer.heads, -1)
                       .transpose(1, 2), dim=-1)
    values = F.normalize((x @ layer.value_projection).view(*x.shape[:2], layer.heads, -1)
                         .transpose(1, 2), dim=-1)
    assert torch.allclose(trace["keys"], keys) and torch.allclose(trace["values"], values)
    assert not any(name.startswith(("key_memory", "value_memory"))
                   for name, _ in layer.named_parameters())
    with pytest.raises(ValueError, match="write_first_layer"):
        _layer(4, 2, self_modifying=False, write_first_layer=True)
    with pytest.raises(ValueError, match="dgd"):
        _layer(4, 2, dgd=False, write_first_layer=True)
    with pytest.raises(ValueError, match="write_rule"):
        _layer(4, 2, write_rule="gd", write_first_layer=True)
    with pytest.raises(ValueError, match="write_rule"):
        _layer(4, 2, write_rule="adam")
    with pytest.raises(ValueError, match="write_rule"):
        _layer(4, 2, dgd=False, write_rule="gd")


def test_plain_gradient_step_erases_with_its_own_step_and_is_bounded():
    """write_rule="gd" (the paper's "w/o DGD"): one token written into an empty linear memory
    by W ← αW − η(W x − u)xᵀ with η = sigmoid(·) < 1, while DGD's step is η/(1 + η‖x‖²)."""
    layer = _layer(1, 1, write_rule="gd")
    assert layer.write_rule == "gd" and layer._erase and not layer.dgd
    pre = torch.tensor([-50.0, 0.0, 50.0], dtype=DTYPE)
    eta = layer._learning_rate(pre.view(1, 1, 3)).detach()
    assert 0 <= float(eta.min()) and float(eta.max()) <= 1
    norm = torch.tensor(4.0, dtype=DTYPE)
    assert torch.equal(layer._step(eta, norm), eta)
    dgd = _layer(1, 1)
    assert torch.allclose(dgd._step(eta, norm), eta / (1 + 4 * eta))


def test_without_dgd_the_write_has_no_erase_term():
    """With β k kᵀ gone the kernel is gated linear attention: S_t = α_t S_{t−1} + β_t k_t u_tᵀ."""
    from nlbook.memory import linear_attention
    from nlbook.selfmod.chunk_kernel import gated_hebbian_chunk

    generator = torch.Generator().manual_seed(3)
    state = torch.randn(2, 3, 4, 5, generator=generator, dtype=DTYPE)
    keys = torch.randn(2, 3, 9, 4, generator=generator, dtype=DTYPE)
    values = torch.randn(2, 3, 9, 5, generator=generator, dtype=DTYPE)
    queries = torch.randn(2, 3, 9, 4, generator=generator, dtype=DTYPE)
    beta = torch.rand(2, 3, 9, generator=generator, dtype=DTYPE)
    alpha = 0.5 + 0.5 * torch.rand(2, 3, 9, generator=generator, dtype=DTYPE)
    final, reads = gated_hebbian_chunk(state, keys, values, beta, alpha.log(), queries)
    expected_reads, expected_final = linear_attention(queries, keys, values * beta[..., None],
                                                      decay=alpha, initial_state=state)
    assert (final - expected_final).abs().max() < 1e-12
    assert (reads - expected_reads).abs().max() < 1e-12


# --------------------------------------------------------------------------------------------
# DGD as printed (u = −∇_y L) against the course's form (u = y), on the same stream


def test_dgd_as_printed_erases_twice():
    generator = torch.Generator().manual_seed(4)
    W = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    x = torch.randn(4, dtype=torch.float64, generator=generator)
    y = torch.randn(3, dtype=torch.float64, generator=generator)
    lr = 0.7
    lr_prime = lr / (1 + lr * x.dot(x))
    eye = torch.eye(4, dtype=torch.float64)
    printed = selfmod.dgd_step(W, x, W @ x - y, lr)          # u = −∇_y L, L = ½‖W x − y‖²
    assert torch.allclose(printed, W @ (eye - 2 * lr_prime * torch.outer(x, x))
                          + lr_prime * torch.outer(y, x), atol=1e-12)
    course = selfmod.dgd_step(W, x, -y, lr)                   # u = y
    assert torch.allclose(course, selfmod.dgd_proximal_closed_form(W, x, -y, lr), atol=1e-12)
    # Repeating one pair: the course's form goes to W x = y, the printed one to W x = y/2.
    for _ in range(200):
        course = selfmod.dgd_step(course, x, -y, lr)
        printed = selfmod.dgd_step(printed, x, printed @ x - y, lr)
    assert torch.allclose(course @ x, y, atol=1e-9)
    assert torch.allclose(printed @ x, y / 2, atol=1e-9)


def test_correlated_stream_gd_diverges_dgd_converges_and_the_printed_dgd_settles_at_half():
    results = selfmod.correlated_stream_experiment(length=300, dim=16, correlation=0.95,
                                                   lrs=(0.05, 1.0, 10.0))
    assert set(results) == set(selfmod.STREAM_RULES)
    final = {rule: {lr: float(errors[-50:].mean()) for lr, errors in per_lr.items()}
             for rule, per_lr in results.items()}
    assert final["gd"][1.0] >= 1e5 and final["gd"][0.05] < 0.05       # η‖x‖² > 2 diverges
    assert all(error < 0.05 for error in final["dgd"].values())          # every η
    # W x ≈ y/2 gives a relative error of about 1/4, whatever η (more where it oscillates)
    assert all(0.2 < error < 0.5 for error in final["dgd_literal"].values())
    assert all(final["dgd_literal"][lr] > 10 * final["dgd"][lr] for lr in final["dgd"])
    with pytest.raises(ValueError, match="rules"):
        selfmod.correlated_stream_experiment(length=5, rules=("adam",))


def test_gd_vs_dgd_plot_draws_one_panel_per_rule():
    import matplotlib.figure

    from nlbook import viz

    results = selfmod.correlated_stream_experiment(length=20, lrs=(0.1,))
    figure = viz.plot_gd_vs_dgd_stream(results)
    assert isinstance(figure, matplotlib.figure.Figure) and len(figure.axes) == 3
    figure = viz.plot_gd_vs_dgd_stream({rule: results[rule] for rule in ("gd", "dgd")})
    assert len(figure.axes) == 2
    with pytest.raises(ValueError, match="rules"):
        viz.plot_gd_vs_dgd_stream({"sgd": results["gd"]})


def test_generator_memories_read_their_own_inputs():
    """M_v reads x_v = W_v x (default) or x_k = W_x x (shared_generator_input): with one
    input, keys and values start nearly equal; with their own inputs they do not."""
    x = torch.randn(4, 16, 32, generator=_generator(3))
    cosines = {}
    for shared in (True, False):
        layer = SelfModifyingTitans(32, heads=2, generator=_generator(1),
                                    shared_generator_input=shared)
        _, _, trace = layer(x, return_trace=True)
        cosines[shared] = float((trace["keys"] * trace["values"]).sum(-1).mean().detach())
        assert hasattr(layer, "value_projection") is not shared
    assert cosines[True] > 0.8 and abs(cosines[False]) < 0.3
