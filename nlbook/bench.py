"""Benchmarks: ``python -m nlbook.bench {memory,...}``.

Every benchmark runs on one torch thread and reports speed as a *ratio* against a baseline
measured in the same run (absolute times depend on the machine and its load). The load average
is printed beside every timing. Timings never appear as assertions in tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["main", "time_call"]


def time_call(function: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
              min_seconds: float = 0.0) -> float:
    """Median wall time of ``function()`` in seconds over ``repeats`` runs after ``warmup``.

    Each run loops ``function`` until it has taken at least ``min_seconds`` and reports the
    mean time of one call, so very short calls are not dominated by timer resolution.
    """
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            function()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        samples.append(elapsed / calls)
    return statistics.median(samples)


def _header(title: str) -> None:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"== {title} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


# Each benchmark is a pair (add its arguments, run it) registered in BENCHMARKS below.


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)


def bench_memory(args: argparse.Namespace) -> None:
    """Chunkwise vs token-loop forward+backward for the chapter 1 memories."""
    from nlbook.memory import benchmark_memory

    _header("memory: chunkwise vs token loop, forward + backward")
    benchmark_memory(batch=args.batch, heads=args.heads, length=args.length, dim=args.dim,
                     repeats=args.repeats)


def _optim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)


def bench_optim(args: argparse.Namespace) -> None:
    """Step time of every chapter 2 optimizer relative to torch.optim.SGD on one model."""
    from nlbook.optim import benchmark_optimizers

    _header("optim: optimizer.step() time relative to torch.optim.SGD(momentum=0.9)")
    benchmark_optimizers(width=args.width, depth=args.depth, batch=args.batch,
                         repeats=args.repeats)


def _hope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-model", type=int, default=144,
                        help="HOPE's width (about 1M parameters at 4 layers); the Transformer's "
                             "is matched by parameter count")
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per model")
    parser.add_argument("--second-order", action="store_true",
                        help="also time HOPE with create_graph through the CMS updates")


def bench_hope(args: argparse.Namespace) -> None:
    """Training tokens/s of HopeLM vs TransformerLM at equal parameter count (chapter 5)."""
    from nlbook.hope import benchmark_hope

    _header("hope: training tokens/s (forward + backward + AdamW), HOPE vs Transformer")
    benchmark_hope(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                   batch=args.batch, length=args.length, steps=args.steps,
                   second_order=args.second_order)


BenchmarkEntry = tuple[
    Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None], str
]
BENCHMARKS: dict[str, BenchmarkEntry] = {
    "memory": (_memory_arguments, bench_memory,
               "chapter 1: chunkwise vs token-loop associative memories"),
    "optim": (_optim_arguments, bench_optim,
              "chapter 2: optimizer step time relative to torch.optim.SGD"),
    "hope": (_hope_arguments, bench_hope,
             "chapter 5: training tokens/s of HOPE vs Transformer at equal parameters"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nlbook.bench", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for name, (add_arguments, _, help_text) in BENCHMARKS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    BENCHMARKS[args.benchmark][1](args)


if __name__ == "__main__":
    main()
