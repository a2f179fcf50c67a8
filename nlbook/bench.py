"""Benchmarks: ``python -m nlbook.bench {memory,...}``.

Every benchmark runs on one torch thread and reports speed as a *ratio* against a baseline
measured in the same run (absolute times depend on the machine and its load). The load average
is printed beside every timing. Timings never appear as assertions in tests.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch

from nlbook.timing import load_average, time_call

__all__ = ["main", "time_call"]  # time_call lives in nlbook.timing; kept here for old imports


def _header(title: str) -> None:
    load = load_average()
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


def _shakespeare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="wall-clock training budget of EACH model (default 5)")
    parser.add_argument("--d-model", type=int, default=128,
                        help="HOPE's width; the Transformer's is matched by parameter count")
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--context-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (both)")
    parser.add_argument("--eval-batches", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="any UTF-8 text file (default: Tiny Shakespeare)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the n-gram lines")
    parser.add_argument("--progress", action="store_true", help="show tqdm progress bars")


def shakespeare_configs(args: argparse.Namespace, vocab_size: int) -> dict[str, object]:
    """The two :class:`nlbook.train.TrainConfig` of the equal-time comparison, by model name.

    HOPE gets ``args.d_model``; the Transformer (same depth and heads) gets the width that
    :func:`nlbook.hope.matched_models` picks to match HOPE's total parameter count. Everything
    else is shared and follows nanoGPT's CPU recipe (AdamW, warm-up 100 steps, cosine to lr/10,
    batch 12, context 64); the number of steps comes from the time budget ``args.minutes``.
    """
    from nlbook.hope import matched_models
    from nlbook.train import TrainConfig

    _, transformer = matched_models(vocab_size, args.d_model, args.n_layers, args.n_heads,
                                    context_length=args.context_length, seed=args.seed)
    shared = dict(n_layers=args.n_layers, n_heads=args.n_heads,
                  context_length=args.context_length, batch_size=args.batch_size, steps=None,
                  minutes=args.minutes, learning_rate=args.lr, min_learning_rate=args.lr / 10,
                  warmup_steps=100, eval_interval=250, eval_batches=args.eval_batches,
                  seed=args.seed, data=args.data)
    return {"transformer": TrainConfig(model="transformer", d_model=transformer.d_model,
                                       **shared),
            "hope": TrainConfig(model="hope", d_model=args.d_model, **shared)}


def bench_shakespeare(args: argparse.Namespace) -> None:
    """HOPE vs Transformer at equal parameters and equal wall-clock time on Tiny Shakespeare."""
    import math

    from nlbook.data import load_corpus
    from nlbook.train import evaluate_all, train
    from nlbook.transformer import parameter_count

    _header(f"shakespeare: HOPE vs Transformer, {args.minutes:g} min of training each")
    corpus = load_corpus(args.data)
    configs = shakespeare_configs(args, corpus.vocab_size)
    print(f"data: {corpus.source} | train {len(corpus.train_ids):,} / val "
          f"{len(corpus.val_ids):,} characters | batch {args.batch_size} x context "
          f"{args.context_length} | AdamW lr {args.lr:g} -> {args.lr / 10:g}, seed {args.seed}")
    losses: dict[str, tuple[float, float]] = {}
    for name, config in configs.items():
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        result = train(config, corpus=corpus, progress=args.progress, log=None)
        full = evaluate_all(result.model, corpus.val_ids, context_length=config.context_length)
        count = parameter_count(result.model)
        losses[name] = (result.val_loss, full)
        print(f"{name:>11}: d_model {config.d_model}, {config.n_layers} layers, "
              f"{count.total:,} parameters | {result.step} steps in {result.seconds:.0f} s "
              f"({1e3 * result.seconds / max(1, result.step):.0f} ms/step, load {load:.2f}) | "
              f"val {result.val_loss:.4f} nats/char = {result.val_loss / math.log(2):.4f} "
              f"bits/char | every val char: {full:.4f} nats/char")
    hope, transformer = losses["hope"], losses["transformer"]
    print(f"ratio HOPE / Transformer: val {hope[0] / transformer[0]:.3f}, every val char "
          f"{hope[1] / transformer[1]:.3f} (below 1: HOPE is better at equal time)")
    print("reference: nanoGPT's CPU baby GPT (0.8M parameters, ~3 min): val 1.88 nats/char")
    if not args.no_baselines:
        from nlbook.ngram import ngram_baselines

        baselines = ngram_baselines(corpus.train_ids, corpus.val_ids, corpus.vocab_size,
                                    orders=(5, 7))
        print("n-gram lines (every val char): " + ", ".join(
            f"{name} {values['nats']:.3f}" for name, values in baselines.items()))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _hope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-model", type=int, default=144,
                        help="HOPE's width (about 1M parameters at 4 layers); the Transformer's "
                             "is matched by parameter count")
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5,
                        help="timed training steps per model (interleaved; the median counts)")
    parser.add_argument("--second-order", action="store_true",
                        help="also time HOPE with create_graph through the CMS updates")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd copies of both models (needs a C++ "
                             "compiler; compiling HOPE takes minutes, reported apart)")


def bench_hope(args: argparse.Namespace) -> None:
    """Training tokens/s of HopeLM vs TransformerLM at equal parameter count (chapter 5)."""
    from nlbook.hope import benchmark_hope

    _header("hope: training tokens/s (forward + backward + AdamW), HOPE vs Transformer")
    benchmark_hope(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                   batch=args.batch, length=args.length, steps=args.steps,
                   second_order=args.second_order, compile=args.compile)


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
    "shakespeare": (_shakespeare_arguments, bench_shakespeare,
                    "chapter 6: HOPE vs Transformer at equal parameters and wall-clock time"),
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
