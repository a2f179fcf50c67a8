"""nlbook.optim: optimizers as memories, against torch.optim and against slow float64 loops."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from nlbook import optim
from nlbook.exercises import nested_optimizers as exercises

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# helpers


def _mlp(bias: bool) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12, bias=bias), torch.nn.Tanh(),
                                torch.nn.Linear(12, 3, bias=bias)).double()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=generator, dtype=torch.float64))
    return model


def _train(make, bias: bool, steps: int = 100, reload_at: int | None = 50) -> torch.Tensor:
    """Train the MLP on random data; at ``reload_at`` rebuild the optimizer from a state dict."""
    model = _mlp(bias)
    optimizer = make(model.parameters())
    data = torch.Generator().manual_seed(1)
    for step in range(steps):
        if step == reload_at:
            saved = copy.deepcopy(optimizer.state_dict())
            optimizer = make(model.parameters())
            optimizer.load_state_dict(saved)
        inputs = torch.randn(16, 6, generator=data, dtype=torch.float64)
        targets = torch.randn(16, 3, generator=data, dtype=torch.float64)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
    return torch.cat([param.detach().flatten() for param in model.parameters()])


def _gradient_stream(steps: int, shape: tuple[int, ...], seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.2, 3.0, steps, dtype=torch.float64)  # norms above and below 1
    stream = torch.randn((steps, *shape), generator=generator, dtype=torch.float64)
    return stream * scales.reshape(-1, *([1] * len(shape)))


def _apply_stream(optimizer_class, gradients: torch.Tensor, **kwargs) -> torch.Tensor:
    """Feed a fixed gradient stream (independent of the parameter) and return the parameter."""
    param = torch.zeros(gradients.shape[1:], dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_class([param], **kwargs)
    for gradient in gradients:
        param.grad = gradient.clone()
        optimizer.step()
    return param.detach()


# --------------------------------------------------------------------------------------------
# must show: equal to torch.optim over 100 steps, with a state_dict save/load halfway


@pytest.mark.parametrize("ours, theirs, bias", [
    (lambda p: optim.MomentumMemory(p, lr=0.05, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), True),
    (lambda p: optim.AdamMemory(p, lr=0.01, betas=(0.8, 0.99), eps=1e-8),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-8), True),
    (lambda p: optim.Muon(p, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5,
                          weight_decay=0.1),
     lambda p: torch.optim.Muon(p, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5,
                                weight_decay=0.1), False),
    (lambda p: optim.Muon(p, lr=0.02, momentum=0.9, nesterov=False, ns_steps=3,
                          weight_decay=0.0, adjust_lr_fn="match_rms_adamw"),
     lambda p: torch.optim.Muon(p, lr=0.02, momentum=0.9, nesterov=False, ns_steps=3,
                                weight_decay=0.0, adjust_lr_fn="match_rms_adamw"), False),
], ids=["sgd-momentum", "adam", "muon", "muon-plain-rms"])
def test_matches_torch_optim_with_state_dict_round_trip(ours, theirs, bias):
    start = torch.cat([param.detach().flatten() for param in _mlp(bias).parameters()])
    mine, reference = _train(ours, bias), _train(theirs, bias)
    assert (mine - start).abs().max() > 1e-2  # it really trained
    assert (mine - reference).abs().max().item() < 1e-6


ALL_OPTIMIZERS = {
    "momentum": lambda p: optim.MomentumMemory(p, lr=0.02),
    "adam": lambda p: optim.AdamMemory(p, lr=0.02),
    "adam-sums": lambda p: optim.AdamMemory(p, lr=0.002, moments="sum"),
    "preconditioned-rms": lambda p: optim.PreconditionedMomentum(p, lr=0.002),
    "delta": lambda p: optim.DeltaMomentum(p, lr=0.02),
    "deep": lambda p: optim.DeepMomentum(p, lr=0.02, hidden=4),
    "muon": lambda p: optim.Muon(p, lr=0.02, weight_decay=0.0),
    "m3-sums": lambda p: optim.M3(p, lr=0.5, slow_every=5),
    "m3-ema": lambda p: optim.M3(p, lr=0.02, slow_every=5, moments="ema"),
}


@pytest.mark.parametrize("name", list(ALL_OPTIMIZERS))
def test_state_dict_round_trip_continues_identically(name):
    make = ALL_OPTIMIZERS[name]
    uninterrupted = _train(make, bias=False, steps=30, reload_at=None)
    reloaded = _train(make, bias=False, steps=30, reload_at=15)
    assert torch.equal(uninterrupted, reloaded)


@pytest.mark.parametrize("name", list(ALL_OPTIMIZERS))
def test_every_optimizer_lowers_a_convex_quadratic(name):
    generator = torch.Generator().manual_seed(5)
    design = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    target = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    weight = torch.full((4, 3), 2.0, dtype=torch.float64, requires_grad=True)  # fixed start

    def loss() -> torch.Tensor:
        return 0.5 * (design @ weight - target).square().mean()

    optimizer = ALL_OPTIMIZERS[name]([weight])
    start = loss().item()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    for _ in range(60):
        optimizer.step(closure)
    assert loss().item() < 0.9 * start, f"{name}: {start:.4f} -> {loss().item():.4f}"


def test_closure_returns_the_loss_and_param_groups_keep_their_own_lr():
    first = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    second = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimizer = optim.MomentumMemory([{"params": [first]}, {"params": [second], "lr": 0.5}],
                                     lr=0.1, momentum=0.0)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = (first.sum() + second.sum())
        value.backward()
        return value

    assert optimizer.step(closure).item() == 0.0
    assert torch.allclose(first, torch.full((3,), -0.1, dtype=torch.float64))
    assert torch.allclose(second, torch.full((3,), -0.5, dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# every update rule against a slow float64 loop of its equation


def test_momentum_memory_is_the_unrolled_sum():
    gradients = _gradient_stream(25, (5,))
    param = _apply_stream(optim.MomentumMemory, gradients, lr=0.1, momentum=0.8)
    reference = torch.zeros(5, dtype=torch.float64)
    for step in range(1, 26):  # W_T = Σ_t m_t, m_t = −η Σ_{j≤t} α^{t−j} g_j
        reference += optim.momentum_weighted_sum(gradients[:step], 0.1, 0.8)
    assert torch.allclose(param, reference, atol=1e-12)


def test_adam_memory_sums_is_the_paper_closed_form():
    gradients = _gradient_stream(20, (6,))
    param = _apply_stream(optim.AdamMemory, gradients, lr=0.1, betas=(0.5, 0.25),
                          moments="sum", eps=1e-8)
    reference = torch.zeros(6, dtype=torch.float64)
    for step in range(1, 21):
        first = 0.5 * gradients[:step].sum(0)
        second = 0.25 * gradients[:step].square().sum(0)
        reference -= 0.1 * first / (second.sqrt() + 1e-8)
    assert torch.allclose(param, reference, atol=1e-12)


def test_preconditioned_momentum_loop_and_identity_case():
    gradients = _gradient_stream(20, (3, 2))
    param = _apply_stream(optim.PreconditionedMomentum, gradients, lr=0.05, momentum=0.7,
                          beta2=0.9, eps=1e-6)
    memory = torch.zeros(3, 2, dtype=torch.float64)
    second = torch.zeros(3, 2, dtype=torch.float64)
    reference = torch.zeros(3, 2, dtype=torch.float64)
    for step, gradient in enumerate(gradients, start=1):
        second = 0.9 * second + 0.1 * gradient**2
        preconditioned = gradient / ((second / (1 - 0.9**step)).sqrt() + 1e-6)
        memory = 0.7 * memory - 0.05 * preconditioned
        reference = reference + memory
    assert torch.allclose(param, reference, atol=1e-12)
    plain = _apply_stream(optim.MomentumMemory, gradients, lr=0.05, momentum=0.7)
    identity = _apply_stream(optim.PreconditionedMomentum, gradients, lr=0.05, momentum=0.7,
                             preconditioner="identity")
    assert torch.equal(plain, identity)


def test_delta_momentum_loop_and_its_stability():
    gradients = _gradient_stream(30, (4, 3))
    param = _apply_stream(optim.DeltaMomentum, gradients, lr=0.05, momentum=0.9)
    memory = torch.zeros(12, dtype=torch.float64)
    reference = torch.zeros(12, dtype=torch.float64)
    for gradient in gradients:
        g = gradient.flatten()
        unit = g / g.norm()
        memory = 0.9 * memory - (memory @ unit) * unit - 0.05 * g  # normalised ĝ in the decay
        reference = reference + memory
    assert torch.allclose(param, reference.reshape(4, 3), atol=1e-12)
    # with the normalised ĝ the recurrence m ← (αI − ĝĝᵀ) m contracts for any gradient scale
    huge = _gradient_stream(200, (4,)) * 1e3
    param = _apply_stream(optim.DeltaMomentum, huge, lr=0.0, momentum=0.9)
    assert torch.equal(param, torch.zeros(4, dtype=torch.float64))
    # and its write has the descent sign: from an empty memory the step is exactly −η g
    single = _apply_stream(optim.DeltaMomentum, huge[:1], lr=0.1, momentum=0.0)
    assert torch.allclose(single, -0.1 * huge[0])


def test_deep_momentum_loop_with_the_analytic_inner_gradient():
    gradients = _gradient_stream(15, (3, 4))
    lr, memory_lr, momentum, hidden = 0.05, 0.2, 0.8, 5
    param = _apply_stream(optim.DeepMomentum, gradients, lr=lr, momentum=momentum,
                          hidden=hidden, memory_lr=memory_lr, seed=7)
    keys = torch.randn(hidden, 4, generator=torch.Generator().manual_seed(7),
                       dtype=torch.float64)
    values = torch.zeros(4, hidden, dtype=torch.float64)
    buffer = torch.zeros(3, 4, dtype=torch.float64)
    reference = torch.zeros(3, 4, dtype=torch.float64)
    for gradient in gradients:
        unit = gradient / gradient.norm(dim=1, keepdim=True)
        pre = unit @ keys.T
        features = torch.tanh(pre) / math.sqrt(hidden)
        # ℓ = ⟨B + F Vᵀ, G⟩: ∂ℓ/∂B = G, ∂ℓ/∂V = Gᵀ F, ∂ℓ/∂K = ((G V) ⊙ tanh′/√h)ᵀ Ĝ
        grad_values = gradient.T @ features
        grad_keys = ((gradient @ values) * (1 - torch.tanh(pre) ** 2) / math.sqrt(hidden)).T \
            @ unit
        buffer = momentum * buffer - lr * gradient
        values = momentum * values - memory_lr / 3 * grad_values
        keys = keys - memory_lr / 3 * grad_keys
        reference = reference + buffer + torch.tanh(unit @ keys.T) / math.sqrt(hidden) @ values.T
    assert torch.allclose(param, reference, atol=1e-12)
    plain = _apply_stream(optim.MomentumMemory, gradients, lr=lr, momentum=momentum)
    no_deep = _apply_stream(optim.DeepMomentum, gradients, lr=lr, momentum=momentum,
                            memory_lr=0.0)
    assert torch.allclose(plain, no_deep, atol=1e-14)


def _reference_m3(gradients, lr, betas, alpha, chunk, eps, moments):
    """Algorithm 1 written as its two nested loops (float64, NS in float64)."""
    beta1, beta2, beta3 = betas
    param = torch.zeros(gradients.shape[1:], dtype=torch.float64)
    fast, slow, second = (torch.zeros_like(param) for _ in range(3))
    slow_output = torch.zeros_like(param)

    def orthogonal(x):
        return optim.newton_schulz(x.reshape(x.shape[0], -1)).reshape(x.shape) \
            if x.ndim >= 2 else x

    steps = gradients.shape[0]
    for k in range(math.ceil(steps / chunk)):  # low-frequency loop
        if k > 0:
            previous = gradients[(k - 1) * chunk:k * chunk]
            if moments == "sum":
                slow = slow + beta3 * previous.sum(0)
            else:
                slow = beta3 * slow + (1 - beta3) * previous.mean(0)
            slow_output = orthogonal(slow)
        for t in range(k * chunk, min((k + 1) * chunk, steps)):
            g = gradients[t]
            if moments == "sum":
                fast, second = fast + beta1 * g, second + beta2 * g**2
            else:
                fast = beta1 * fast + (1 - beta1) * g
                second = beta2 * second + (1 - beta2) * g**2
            param = param - lr * (orthogonal(fast) + alpha * slow_output) / (second.sqrt() + eps)
    return param


@pytest.mark.parametrize("moments", ["sum", "ema"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2), (5,)], ids=["2d", "3d", "1d"])
def test_m3_is_algorithm_1(moments, shape):
    gradients = _gradient_stream(23, shape)
    kwargs = {"lr": 0.03, "betas": (0.9, 0.99, 0.5), "alpha": 0.7, "eps": 1e-8}
    param = _apply_stream(optim.M3, gradients, slow_every=5, moments=moments, **kwargs)
    reference = _reference_m3(gradients, chunk=5, moments=moments, **kwargs)
    assert torch.allclose(param, reference, atol=1e-10)


@pytest.mark.parametrize("moments", ["sum", "ema"])
def test_m3_momentum_scale_is_algorithm_1_with_the_momentums_norm(moments):
    """orthogonal_scale="momentum": every O = NS(M) rescaled to ‖M‖_F, nothing else changes."""
    gradients = _gradient_stream(13, (4, 3))
    beta1, beta2, beta3, alpha, lr, eps, chunk = 0.9, 0.99, 0.5, 0.7, 0.03, 1e-8, 5
    param = _apply_stream(optim.M3, gradients, lr=lr, betas=(beta1, beta2, beta3), alpha=alpha,
                          eps=eps, slow_every=chunk, moments=moments,
                          orthogonal_scale="momentum")

    def orthogonal(x):
        direction = optim.newton_schulz(x)
        return direction * x.norm() / direction.norm().clamp(min=1e-300)

    fast, slow, second, chunk_sum, slow_output = (torch.zeros(4, 3, dtype=torch.float64)
                                                  for _ in range(5))
    reference = torch.zeros(4, 3, dtype=torch.float64)
    for step, g in enumerate(gradients, start=1):
        if moments == "sum":
            fast, second = fast + beta1 * g, second + beta2 * g**2
        else:
            fast, second = beta1 * fast + (1 - beta1) * g, beta2 * second + (1 - beta2) * g**2
        chunk_sum = chunk_sum + g
        reference = reference - lr * (orthogonal(fast) + alpha * slow_output) / (
            second.sqrt() + eps)
        if step % chunk == 0:
            slow = (slow + beta3 * chunk_sum if moments == "sum"
                    else beta3 * slow + (1 - beta3) * chunk_sum / chunk)
            slow_output, chunk_sum = orthogonal(slow), torch.zeros_like(chunk_sum)
    assert torch.allclose(param, reference, atol=1e-10)


def test_m3_as_printed_steps_inversely_to_the_gradient_scale_and_the_fix_does_not():
    """Algorithm 1 as printed is homogeneous of degree −1 in g (NS drops |g| from the numerator,
    √V keeps it in the denominator); with the momentum's norm on O and EMAs it has degree 0."""
    gradients = _gradient_stream(12, (5, 4))
    printed = {scale: _apply_stream(optim.M3, scale * gradients, lr=0.01, slow_every=4,
                                    eps=1e-30) for scale in (1.0, 10.0)}
    assert torch.allclose(printed[10.0], printed[1.0] / 10.0, rtol=1e-9)
    fixed = {scale: _apply_stream(optim.M3, scale * gradients, lr=0.01, slow_every=4,
                                  eps=1e-30, moments="ema", orthogonal_scale="momentum")
             for scale in (1.0, 10.0)}
    assert torch.allclose(fixed[10.0], fixed[1.0], rtol=1e-9)


def test_m3_slow_level_starts_after_the_first_chunk():
    gradients = torch.ones(3, 1, dtype=torch.float64)
    with_slow = _apply_stream(optim.M3, gradients[:2], lr=1.0, alpha=1.0, slow_every=2,
                              betas=(1.0, 1.0, 1.0))
    without = _apply_stream(optim.M3, gradients[:2], lr=1.0, alpha=0.0, slow_every=2,
                            betas=(1.0, 1.0, 1.0))
    assert torch.equal(with_slow, without)  # O2 is 0 until the first chunk ends
    with_slow = _apply_stream(optim.M3, gradients, lr=1.0, alpha=1.0, slow_every=2,
                              betas=(1.0, 1.0, 1.0))
    without = _apply_stream(optim.M3, gradients, lr=1.0, alpha=0.0, slow_every=2,
                            betas=(1.0, 1.0, 1.0))
    assert not torch.equal(with_slow, without)


def test_newton_schulz_orthogonalises():
    generator = torch.Generator().manual_seed(0)
    for shape in [(6, 10), (10, 6)]:
        matrix = torch.randn(shape, generator=generator, dtype=torch.float64)
        singular = torch.linalg.svdvals(optim.newton_schulz(matrix, steps=10))
        assert singular.min() > 0.6 and singular.max() < 1.25, singular
    with pytest.raises(ValueError, match="matrix"):
        optim.newton_schulz(torch.zeros(3))


def test_linear_layer_step_is_gradient_descent_on_the_layer():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    inputs = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    outputs = inputs @ weight.T
    loss = outputs.square().sum()
    surprise = torch.autograd.grad(loss, outputs, retain_graph=True)[0]
    loss.backward()
    new = optim.linear_layer_surprise_step(weight.detach(), inputs, surprise, 0.1)
    assert torch.allclose(new, weight.detach() - 0.1 * weight.grad, atol=1e-14)


def test_momentum_memory_length_exact_numbers():
    assert optim.gradients_for_mass(0.9, 0.5) == 7  # the paper says 6
    assert optim.gradients_for_mass(0.9, 0.99) == 44  # the paper says 43
    assert optim.momentum_cumulative_weight(0.9, 6) < 0.5 < optim.momentum_cumulative_weight(
        0.9, 7)
    weights = optim.momentum_cumulative_weight(0.5, np.arange(4))
    assert np.allclose(weights, [0.0, 0.5, 0.75, 0.875])


# --------------------------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize("build, name", [
    (lambda p: optim.MomentumMemory(p, lr=-0.1), "lr"),
    (lambda p: optim.MomentumMemory(p, lr=0.1, momentum=1.0), "momentum"),
    (lambda p: optim.MomentumMemory(p, lr=0.1, momentum=-0.1), "momentum"),
    (lambda p: optim.AdamMemory(p, betas=(0.9, 1.2)), r"betas\[1\]"),
    (lambda p: optim.AdamMemory(p, eps=0.0), "eps"),
    (lambda p: optim.AdamMemory(p, moments="median"), "moments"),
    (lambda p: optim.PreconditionedMomentum(p, lr=0.1, preconditioner="svd"), "preconditioner"),
    (lambda p: optim.DeltaMomentum(p, lr=float("nan")), "lr"),
    (lambda p: optim.DeepMomentum(p, lr=0.1, hidden=0), "hidden"),
    (lambda p: optim.DeepMomentum(p, lr=0.1, memory_lr=-1.0), "memory_lr"),
    (lambda p: optim.Muon(p, lr=0.1, weight_decay=-0.1), "weight_decay"),
    (lambda p: optim.Muon(p, lr=0.1, ns_steps=0), "ns_steps"),
    (lambda p: optim.M3(p, slow_every=0), "slow_every"),
    (lambda p: optim.M3(p, alpha=-1.0), "alpha"),
    (lambda p: optim.M3(p, betas=(0.9, 0.99, 1.0), moments="ema"), r"betas\[2\]"),
    (lambda p: optim.M3(p, orthogonal_scale="spectral"), "orthogonal_scale"),
])
def test_bad_hyper_parameters_raise_naming_them(build, name):
    with pytest.raises(ValueError, match=name):
        build([torch.zeros(2, 2, requires_grad=True)])


def test_muon_refuses_non_matrix_parameters():
    with pytest.raises(ValueError, match="2-D"):
        optim.Muon([torch.zeros(3, requires_grad=True)], lr=0.1)


# --------------------------------------------------------------------------------------------
# toys, experiment, plots, exercises


def test_toy_problems_and_continual_stream_run():
    path, losses = optim.run_toy_problem("momentum", "quadratic", lr=0.02, steps=50)
    assert path.shape == (51, 2) and losses.shape == (51,) and losses[-1] < losses[0]
    path, losses = optim.run_toy_problem("momentum", "rosenbrock", lr=0.5, steps=20)
    assert np.isnan(losses[-1])  # diverged runs stop and leave NaN
    results = optim.continual_stream(
        {"sgd": lambda p: optim.MomentumMemory(p, lr=0.05)}, steps=30, switch_every=10)
    assert results["sgd"]["loss"].shape == (30,) and results["task"][25] == 2
    assert results["sgd"]["final_task_losses"].shape == (3,)


def test_plots_return_figures():
    import matplotlib.figure

    from nlbook import viz

    runs = {name: optim.run_toy_problem(name, "quadratic", 0.02, 0.9, 20)
            for name in ("momentum", "adam")}
    figure = viz.plot_optimizer_trajectories(runs, optim.toy_landscape("quadratic", 30))
    assert isinstance(figure, matplotlib.figure.Figure)
    figure = viz.plot_momentum_memory_length(0.9)
    assert isinstance(figure, matplotlib.figure.Figure)
    results = optim.continual_stream(
        {"sgd": lambda p: optim.MomentumMemory(p, lr=0.05)}, steps=20, switch_every=10)
    assert isinstance(viz.plot_continual_stream(results), matplotlib.figure.Figure)


def test_exercise_checkers_accept_the_reference_and_reject_mistakes():
    assert exercises.check_momentum_step(lambda m, g, lr, a: a * m - lr * g)
    with pytest.raises(AssertionError):
        exercises.check_momentum_step(lambda m, g, lr, a: a * m + lr * g)
    assert exercises.check_gradients_for_mass(optim.gradients_for_mass)
    with pytest.raises(AssertionError):
        exercises.check_gradients_for_mass(
            lambda beta, fraction: math.floor(math.log(1 - fraction) / math.log(beta)))
    assert exercises.check_delta_momentum_step(
        lambda m, g, lr, a: a * m - (m @ (g / g.norm())) * (g / g.norm()) - lr * g)
    with pytest.raises(AssertionError):
        exercises.check_delta_momentum_step(lambda m, g, lr, a: a * m - (m @ g) * g - lr * g)
