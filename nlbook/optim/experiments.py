"""Toy problems, the landscape explorer, the continual-learning stream and the step-time
benchmark of the chapter-2 optimizers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from nlbook._checks import (
    check_bool,
    check_callable,
    check_instance,
    check_int,
    check_memory,
    check_positive_int,
    check_scalar_in_range,
)
from nlbook.optim._base import _check_choice
from nlbook.optim.momentum import (
    AdamMemory,
    DeepMomentum,
    DeltaMomentum,
    MomentumMemory,
    PreconditionedMomentum,
)
from nlbook.optim.orthogonal import M3, Muon

OPTIMIZER_NAMES = ("momentum", "adam", "preconditioned", "delta", "deep", "muon", "m3")


def make_optimizer(name: str, params: Iterable, lr: float, momentum: float = 0.9) -> Optimizer:
    """Build one of :data:`OPTIMIZER_NAMES` from a learning rate and a momentum.

    ``momentum`` is α for the momentum family, β1 for Adam, μ for Muon (weight decay 0 here)
    and β1 = β3 for M3 (default sums: NS makes O1 scale-free, so β only rescales).
    """
    _check_choice("name", name, OPTIMIZER_NAMES)
    if name == "momentum":
        return MomentumMemory(params, lr, momentum)
    if name == "adam":
        return AdamMemory(params, lr, betas=(momentum, 0.999))
    if name == "preconditioned":
        return PreconditionedMomentum(params, lr, momentum)
    if name == "delta":
        return DeltaMomentum(params, lr, momentum)
    if name == "deep":
        return DeepMomentum(params, lr, momentum)
    if name == "muon":
        return Muon(params, lr, momentum, weight_decay=0.0)
    return M3(params, lr, betas=(momentum, 0.999, momentum))


def _rotated_quadratic(point: torch.Tensor) -> torch.Tensor:
    # Hessian R diag(1, 20) Rᵀ with R a 30° rotation: condition number 20, not axis-aligned
    angle = math.pi / 6
    u = math.cos(angle) * point[..., 0] + math.sin(angle) * point[..., 1]
    v = -math.sin(angle) * point[..., 0] + math.cos(angle) * point[..., 1]
    return 0.5 * (u**2 + 20.0 * v**2)


def _rosenbrock(point: torch.Tensor) -> torch.Tensor:
    return (1 - point[..., 0]) ** 2 + 100.0 * (point[..., 1] - point[..., 0] ** 2) ** 2


# name -> (loss of a (..., 2) tensor, start point, minimum, plot box (x0, x1, y0, y1))
TOY_PROBLEMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], tuple[float, float],
                              tuple[float, float], tuple[float, float, float, float]]] = {
    "quadratic": (_rotated_quadratic, (-2.0, 1.5), (0.0, 0.0), (-2.5, 2.5, -2.0, 2.0)),
    "rosenbrock": (_rosenbrock, (-1.5, 1.5), (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0)),
}


def run_toy_problem(name: str, problem: str = "quadratic", lr: float = 0.01,
                    momentum: float = 0.9, steps: int = 200):
    """Optimise a 2-D toy problem from its fixed start with ``make_optimizer(name, ...)``.

    The point is a (1, 2) float64 parameter (so Muon and M3 see a matrix). A run that leaves
    |p| < 1e3 or turns non-finite stops; the rest is NaN.

    Returns:
        (path (steps + 1, 2), losses (steps + 1,)) as numpy float64 arrays.
    """
    import numpy as np

    _check_choice("problem", problem, list(TOY_PROBLEMS))
    check_positive_int("steps", steps)
    loss_fn, start, _, _ = TOY_PROBLEMS[problem]
    point = torch.tensor([start], dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer(name, [point], lr, momentum)
    path = np.full((steps + 1, 2), np.nan)
    losses = np.full(steps + 1, np.nan)
    for step in range(steps + 1):
        loss = loss_fn(point)[0]
        if not torch.isfinite(loss) or point.detach().abs().max() > 1e3:
            break
        path[step] = point.detach()[0].numpy()
        losses[step] = loss.item()
        if step == steps:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return path, losses


def continual_stream(optimizers: dict[str, Callable[[Iterable], Optimizer]], *,
                     tasks: int = 3, switch_every: int = 50, steps: int = 600,
                     input_dim: int = 8, hidden: int = 32, output_dim: int = 4,
                     batch: int = 32, shared: float = 0.5, seed: int = 0) -> dict:
    r"""A continual-learning stream: the regression task changes every ``switch_every`` steps.

    Tasks are linear teachers y = A_k x/√d with A_k = √s A_shared + √(1−s) A_own,k (s =
    ``shared``: overlapping, not orthogonal, subspaces) visited in the cycle 0, 1, ..., K−1, 0,
    ... A tanh MLP student (d → hidden → output_dim, identical initial weights for every
    optimizer) takes one step per fresh batch of the current task.

    Args:
        optimizers: label -> factory ``params -> Optimizer``.

    Returns:
        ``{"task": (steps,) task index per step, label: {"loss": (steps,) loss on the current
        batch before the step, "final_task_losses": (tasks,) loss of the final model on each
        task}}`` (numpy arrays; test batches of 1024 from a separate generator).
    """
    import numpy as np

    check_instance("optimizers", optimizers, dict, expected="a dict label -> optimizer factory")
    for label, factory in optimizers.items():
        check_callable(f"optimizers[{label!r}]", factory)
    for name, value in (("tasks", tasks), ("switch_every", switch_every), ("steps", steps),
                        ("input_dim", input_dim), ("hidden", hidden),
                        ("output_dim", output_dim), ("batch", batch)):
        check_positive_int(name, value)
    check_scalar_in_range("shared", shared, 0.0, 1.0)
    check_int("seed", seed, low=0)
    check_memory("tasks, input_dim, hidden, output_dim and batch",
                 (tasks + 1) * output_dim * input_dim + 1024 * tasks * input_dim
                 + 4 * hidden * (input_dim + output_dim) + 4 * batch * (input_dim + hidden)
                 + steps)
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn(output_dim, input_dim, generator=generator)
    teachers = [math.sqrt(shared) * common + math.sqrt(1 - shared)
                * torch.randn(output_dim, input_dim, generator=generator) for _ in range(tasks)]
    teachers = [teacher / math.sqrt(input_dim) for teacher in teachers]
    initial = torch.nn.Sequential(torch.nn.Linear(input_dim, hidden), torch.nn.Tanh(),
                                  torch.nn.Linear(hidden, output_dim))
    with torch.no_grad():
        for param in initial.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5
                        / math.sqrt(param.shape[-1]))
    task_of_step = (np.arange(steps) // switch_every) % tasks
    test_generator = torch.Generator().manual_seed(seed + 1)
    test_inputs = [torch.randn(1024, input_dim, generator=test_generator) for _ in teachers]
    results: dict[str, Any] = {"task": task_of_step}
    for label, factory in optimizers.items():
        model = torch.nn.Sequential(torch.nn.Linear(input_dim, hidden), torch.nn.Tanh(),
                                    torch.nn.Linear(hidden, output_dim))
        model.load_state_dict(initial.state_dict())
        optimizer = factory(model.parameters())
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizers[{label!r}] must return a torch.optim.Optimizer, got "
                             f"{type(optimizer).__name__}")
        data = torch.Generator().manual_seed(seed + 2)  # the same stream for every optimizer
        losses = np.empty(steps)
        for step in range(steps):
            inputs = torch.randn(batch, input_dim, generator=data)
            targets = inputs @ teachers[task_of_step[step]].T
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[step] = loss.item()
        with torch.no_grad():
            final = [torch.nn.functional.mse_loss(model(x), x @ teacher.T).item()
                     for x, teacher in zip(test_inputs, teachers, strict=True)]
        results[label] = {"loss": losses, "final_task_losses": np.array(final)}
    return results


def benchmark_optimizers(width: int = 256, depth: int = 3, batch: int = 64,
                         repeats: int = 5, min_seconds: float = 0.2) -> dict[str, float]:
    """Time ``optimizer.step()`` of every optimizer on one bias-free MLP (float32, CPU).

    Gradients are computed once; each timing is the median over ``repeats`` of the mean step
    time in a loop of at least ``min_seconds``. Prints one line per optimizer with its time
    relative to ``torch.optim.SGD(lr, momentum=0.9)`` measured in the same run.

    Returns:
        label -> seconds per step.
    """
    import statistics

    for name, value in (("width", width), ("depth", depth), ("batch", batch),
                        ("repeats", repeats)):
        check_positive_int(name, value)
    check_scalar_in_range("min_seconds", min_seconds, 0.0, math.inf)
    check_memory("width, depth and batch", 12 * depth * width * width + 4 * batch * width)
    generator = torch.Generator().manual_seed(0)
    layers = [torch.nn.Linear(width, width, bias=False) for _ in range(depth)]
    model = torch.nn.Sequential(*[module for layer in layers
                                  for module in (layer, torch.nn.Tanh())])
    inputs = torch.randn(batch, width, generator=generator)
    model(inputs).square().mean().backward()
    params = list(model.parameters())
    factories: dict[str, Callable[[], Optimizer]] = {
        "torch.optim.SGD": lambda: torch.optim.SGD(params, lr=1e-3, momentum=0.9),
        "torch.optim.Adam": lambda: torch.optim.Adam(params, lr=1e-3),
        "torch.optim.Muon": lambda: torch.optim.Muon(params, lr=1e-3),
        "MomentumMemory": lambda: MomentumMemory(params, lr=1e-3),
        "AdamMemory": lambda: AdamMemory(params, lr=1e-3),
        "PreconditionedMomentum": lambda: PreconditionedMomentum(params, lr=1e-3),
        "DeltaMomentum": lambda: DeltaMomentum(params, lr=1e-3),
        "DeepMomentum": lambda: DeepMomentum(params, lr=1e-3),
        "Muon": lambda: Muon(params, lr=1e-3),
        "M3": lambda: M3(params, lr=1e-3),
    }
    seconds: dict[str, float] = {}
    for label, factory in factories.items():
        optimizer = factory()
        optimizer.step()  # warm-up, and creates the state
        samples = []
        for _ in range(repeats):
            calls, start = 0, time.perf_counter()
            while True:
                optimizer.step()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            samples.append(elapsed / calls)
        seconds[label] = statistics.median(samples)
    baseline = seconds["torch.optim.SGD"]
    print(f"model: {depth} bias-free Linear({width}, {width}) + tanh, float32; "
          f"step() only, gradients fixed")
    for label, value in seconds.items():
        print(f"{label:>24}: {value * 1e3:8.3f} ms/step   {value / baseline:6.2f}x SGD")
    return seconds


def toy_landscape(problem: str, resolution: int = 120) -> dict:
    """The loss of a toy problem on a grid over its plot box, for contour plots.

    Returns:
        ``{"x": (resolution,), "y": (resolution,), "loss": (resolution, resolution) indexed
        [y, x], "start": (2,), "minimum": (2,), "name": problem}`` as numpy arrays.
    """
    import numpy as np

    _check_choice("problem", problem, list(TOY_PROBLEMS))
    check_positive_int("resolution", resolution)
    check_memory("resolution", 4 * resolution * resolution, bytes_per_element=8)
    loss_fn, start, minimum, (x0, x1, y0, y1) = TOY_PROBLEMS[problem]
    xs = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    ys = torch.linspace(y0, y1, resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return {"x": xs.numpy(), "y": ys.numpy(), "loss": loss_fn(grid).numpy(),
            "start": np.array(start), "minimum": np.array(minimum), "name": problem}


def max_difference_to_torch(make_ours: Callable[[Iterable], Optimizer],
                            make_torch: Callable[[Iterable], Optimizer], *, steps: int = 100,
                            bias: bool = True, reload_at: int | None = 50,
                            seed: int = 0) -> float:
    """Train two copies of a small float64 MLP (6 → 12 → 3, tanh) on the same random
    regression batches, one with each optimizer, and return the largest parameter difference.

    At ``reload_at`` both optimizers are rebuilt from a deep copy of their ``state_dict()``
    (a save/load halfway). ``bias=False`` keeps every parameter 2-D (for Muon).
    """
    import copy

    check_callable("make_ours", make_ours)
    check_callable("make_torch", make_torch)
    check_positive_int("steps", steps)
    check_bool("bias", bias)
    check_int("reload_at", reload_at, low=0, allow_none=True)
    check_int("seed", seed, low=0)
    finals = []
    for make in (make_ours, make_torch):
        generator = torch.Generator().manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(6, 12, bias=bias), torch.nn.Tanh(),
                                    torch.nn.Linear(12, 3, bias=bias)).double()
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(0.5 * torch.randn(param.shape, generator=generator,
                                              dtype=torch.float64))
        optimizer = make(model.parameters())
        for step in range(steps):
            if step == reload_at:
                saved = copy.deepcopy(optimizer.state_dict())
                optimizer = make(model.parameters())
                optimizer.load_state_dict(saved)
            inputs = torch.randn(16, 6, generator=generator, dtype=torch.float64)
            targets = torch.randn(16, 3, generator=generator, dtype=torch.float64)
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(inputs), targets).backward()
            optimizer.step()
        finals.append(torch.cat([param.detach().flatten() for param in model.parameters()]))
    return (finals[0] - finals[1]).abs().max().item()
