"""Benchmarks: ``python -m nlbook.bench {memory,...}``.

Every benchmark runs on one torch thread and reports speed as a *ratio* against a baseline
measured in the same run (absolute times depend on the machine and its load). The load average
is printed beside every timing. Timings never appear as assertions in tests.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

import torch

from nlbook._cli import (
    Parser,
    Stopwatch,
    non_negative_int,
    positive_float,
    positive_int,
    run_command,
    seed_int,
)
from nlbook.timing import load_average, time_call

__all__ = ["main", "time_call"]  # time_call lives in nlbook.timing; kept here for old imports


def _header(title: str) -> None:
    load = load_average()
    print(f"== {title} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


# Each benchmark is a pair (add its arguments, run it) registered in BENCHMARKS below.


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=positive_int, default=16, help="sequences per call")
    parser.add_argument("--heads", type=positive_int, default=4, help="memory heads")
    parser.add_argument("--length", type=positive_int, default=256,
                        help="tokens per sequence")
    parser.add_argument("--dim", type=positive_int, default=32,
                        help="features per head (key and value width)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed repetitions (the median counts)")


def bench_memory(args: argparse.Namespace) -> None:
    """Chunkwise vs token-loop forward+backward for the chapter 1 memories."""
    from nlbook.memory import benchmark_memory

    _header("memory: chunkwise vs token loop, forward + backward")
    benchmark_memory(batch=args.batch, heads=args.heads, length=args.length, dim=args.dim,
                     repeats=args.repeats)


def _optim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=positive_int, default=256,
                        help="features of every layer of the timed MLP")
    parser.add_argument("--depth", type=positive_int, default=3, help="layers of the MLP")
    parser.add_argument("--batch", type=positive_int, default=64, help="examples per step")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed repetitions (the median counts)")


def bench_optim(args: argparse.Namespace) -> None:
    """Step time of every chapter 2 optimizer relative to torch.optim.SGD on one model."""
    from nlbook.optim import benchmark_optimizers

    _header("optim: optimizer.step() time relative to torch.optim.SGD(momentum=0.9)")
    benchmark_optimizers(width=args.width, depth=args.depth, batch=args.batch,
                         repeats=args.repeats)


def _shakespeare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=positive_float, default=5.0,
                        help="wall-clock training budget of EACH model, in minutes "
                             "(default 5)")
    parser.add_argument("--d-model", type=positive_int, default=128,
                        help="HOPE's width; the Transformer's is matched by parameter count")
    parser.add_argument("--n-layers", type=positive_int, default=4, help="blocks of each model")
    parser.add_argument("--n-heads", type=positive_int, default=4, help="heads per block")
    parser.add_argument("--context-length", type=positive_int, default=64,
                        help="characters per training window")
    parser.add_argument("--batch-size", type=positive_int, default=12,
                        help="windows per optimizer step")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (both)")
    parser.add_argument("--eval-batches", type=positive_int, default=20,
                        help="batches per validation estimate")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of models and data")
    parser.add_argument("--data", help="any UTF-8 text file (default: Tiny Shakespeare)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the n-gram lines")
    parser.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    parser.add_argument("--stream-length", type=positive_int, default=1024,
                        help="HOPE's carried streams: tokens before a stream restarts "
                             "(default 1024)")
    parser.add_argument("--no-carry-state", action="store_true",
                        help="train HOPE on fresh windows instead (the earlier comparison)")
    parser.add_argument("--position-length", type=positive_int, default=1024,
                        help="HOPE's loss-by-position curve length (the Transformer's is its "
                             "context)")


def shakespeare_configs(args: argparse.Namespace, vocab_size: int) -> dict[str, object]:
    """The two :class:`nlbook.train.TrainConfig` of the equal-time comparison, by model name.

    HOPE gets ``args.d_model``; the Transformer (same depth and heads) gets the width that
    :func:`nlbook.hope.matched_models` picks to match HOPE's total parameter count. Everything
    else is shared and follows nanoGPT's CPU recipe (AdamW, warm-up 100 steps, cosine to lr/10,
    batch 12, context 64); the number of steps comes from the time budget ``args.minutes``.
    HOPE trains statefully (``carry_state``: contiguous streams of ``args.stream_length``
    tokens with its memory carried window to window) unless ``args.no_carry_state``.
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
    carry = not getattr(args, "no_carry_state", False)
    return {"transformer": TrainConfig(model="transformer", d_model=transformer.d_model,
                                       **shared),
            "hope": TrainConfig(model="hope", d_model=args.d_model, carry_state=carry,
                                stream_length=getattr(args, "stream_length", 1024), **shared)}


def bench_shakespeare(args: argparse.Namespace) -> None:
    """HOPE vs Transformer at equal parameters and equal wall-clock time on Tiny Shakespeare:
    fresh windows, streaming, and loss by position."""

    from nlbook.data import load_corpus
    from nlbook.train import evaluate_all, evaluate_stream, loss_by_position, train
    from nlbook.transformer import parameter_count

    _header(f"shakespeare: HOPE vs Transformer, {args.minutes:g} min of training each")
    corpus = load_corpus(args.data)
    configs = shakespeare_configs(args, corpus.vocab_size)
    print(f"data: {corpus.source} | train {len(corpus.train_ids):,} / val "
          f"{len(corpus.val_ids):,} characters | batch {args.batch_size} x context "
          f"{args.context_length} | AdamW lr {args.lr:g} -> {args.lr / 10:g}, seed {args.seed}")
    print(f"hope: {'stateful, streams of ' + str(args.stream_length) + ' tokens' if configs['hope'].carry_state else 'fresh windows'}")  # noqa: E501
    losses: dict[str, dict[str, float]] = {}
    for name, config in configs.items():
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        result = train(config, corpus=corpus, progress=args.progress, log=None)
        model = result.model
        fresh = evaluate_all(model, corpus.val_ids, context_length=config.context_length)
        stateful = hasattr(model, "stream")
        streaming = evaluate_stream(model, corpus.val_ids,
                                    window=1024 if stateful else config.context_length)
        length = args.position_length if stateful else config.context_length
        curve = loss_by_position(model, corpus.val_ids, length=length,
                                 windows=32 if stateful else 128, seed=args.seed)
        last_quarter = float(curve[3 * length // 4:].mean())
        count = parameter_count(model)
        losses[name] = {"fresh": fresh, "stream": streaming, "last_quarter": last_quarter}
        how = "one stream" if stateful else f"sliding window {config.context_length}"
        print(f"{name:>11}: d_model {config.d_model}, {config.n_layers} layers, "
              f"{count.total:,} parameters | {result.step} steps in {result.seconds:.0f} s "
              f"({1e3 * result.seconds / max(1, result.step):.0f} ms/step, load {load:.2f})\n"
              f"{'':13}fresh windows of {config.context_length}: {fresh:.4f} nats/char | "
              f"streaming ({how}): {streaming:.4f} = {streaming / math.log(2):.4f} bits/char | "
              f"loss by position, positions {3 * length // 4}-{length - 1}: {last_quarter:.4f}")
    hope, transformer = losses["hope"], losses["transformer"]
    print(f"ratio HOPE / Transformer: streaming {hope['stream'] / transformer['stream']:.3f}, "
          f"fresh windows {hope['fresh'] / transformer['fresh']:.3f} (below 1: HOPE is better "
          f"at equal time)")
    print("reference: nanoGPT's CPU baby GPT (0.8M parameters, ~3 min): val 1.88 nats/char")
    if not args.no_baselines:
        from nlbook.ngram import ngram_baselines

        baselines = ngram_baselines(corpus.train_ids, corpus.val_ids, corpus.vocab_size,
                                    orders=(5, 7))
        print("n-gram lines (every val char): " + ", ".join(
            f"{name} {values['nats']:.3f}" for name, values in baselines.items()))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


#: The training variants of ``bench stateful``: how a HOPE is trained, as TrainConfig fields.
STATEFUL_VARIANTS: dict[str, dict[str, object]] = {
    "fresh windows": {"carry_state": False},
    "carried, offsets from θ₀, restarts": {"carry_state": True},
    "carried, plain detach, restarts": {"carry_state": True, "carry_relative": False},
    "carried, offsets from θ₀, never restarted": {"carry_state": True, "stream_length": None},
}


def _stateful_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive_int, default=1000,
                        help="optimizer steps per variant")
    parser.add_argument("--preset", default="tiny", help="size and schedule (default tiny)")
    parser.add_argument("--stream-length", type=positive_int, default=1024,
                        help="tokens before a carried stream restarts (default 1024)")
    parser.add_argument("--variants", default=",".join(str(i) for i in
                                                       range(len(STATEFUL_VARIANTS))),
                        help="comma-separated indices of the variants to run (default all): "
                             + "; ".join(f"{i} = {name}" for i, name in
                                         enumerate(STATEFUL_VARIANTS)))
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of models and data")
    parser.add_argument("--data", help="any UTF-8 text file (default: Tiny Shakespeare)")
    parser.add_argument("--position-length", type=positive_int, default=1024,
                        help="length of the loss-by-position windows (default 1024)")
    parser.add_argument("--progress", action="store_true", help="show tqdm progress bars")


def _chosen_variants(names: list[str], indices: str) -> list[str]:
    """The variants named by ``--variants`` (comma-separated indices into ``names``)."""
    try:
        return [names[int(index)] for index in indices.split(",")]
    except (ValueError, IndexError):
        raise SystemExit(f"error: --variants must be comma-separated indices in "
                         f"[0, {len(names)}), got {indices!r}") from None


def bench_stateful(args: argparse.Namespace) -> None:
    """How HOPE is trained decides what its memory can do: the same HOPE trained on fresh
    windows and on carried streams (three ways), each scored in fresh windows, as one stream
    with and without its in-context CMS updates, and by position far past its window."""
    import time

    from nlbook.data import load_corpus
    from nlbook.hope import frozen_cms
    from nlbook.train import TrainConfig, evaluate_all, evaluate_stream, loss_by_position, train

    _header(f"stateful: HOPE trained {args.steps} steps on fresh windows and on carried streams")
    corpus = load_corpus(args.data)
    chosen = _chosen_variants(list(STATEFUL_VARIANTS), args.variants)
    length = args.position_length
    print(f"preset {args.preset}, seed {args.seed}; streams restart every "
          f"{args.stream_length} tokens unless said; stream = the whole validation split "
          f"({len(corpus.val_ids):,} characters) read once; by position: 32 fresh windows of "
          f"{length}")
    quarter = f"by position {3 * length // 4}-{length - 1}"
    print(f"{'variant':44} {'train s':>7} {'fresh':>7} {'stream':>7} {'stream, CMS frozen':>18}"
          f" {quarter:>20}")
    for name in chosen:
        overrides = dict(model="hope", steps=args.steps, seed=args.seed,
                         stream_length=args.stream_length, eval_interval=args.steps)
        overrides.update(STATEFUL_VARIANTS[name])
        config = TrainConfig.from_preset(args.preset, **overrides)
        start = time.perf_counter()
        model = train(config, corpus=corpus, progress=args.progress, log=None).model
        seconds = time.perf_counter() - start
        fresh = evaluate_all(model, corpus.val_ids, context_length=config.context_length)
        streaming = evaluate_stream(model, corpus.val_ids, window=2048)
        with frozen_cms(model):
            frozen = evaluate_stream(model, corpus.val_ids, window=2048)
        curve = loss_by_position(model, corpus.val_ids, length=length, windows=32,
                                 seed=args.seed)
        print(f"{name:44} {seconds:7.0f} {fresh:7.4f} {streaming:7.4f} {frozen:18.4f} "
              f"{float(curve[3 * length // 4:].mean()):20.4f}")


def _ablation_arguments(parser: argparse.ArgumentParser) -> None:
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=positive_float,
                        help="wall-clock budget of EACH variant, in minutes (default 1 when "
                             "neither --minutes nor --steps is given)")
    budget.add_argument("--steps", type=positive_int,
                        help="optimizer steps of each variant instead (default: none, the "
                             "time budget)")
    parser.add_argument("--variants", help="comma-separated indices of the variants (default "
                        "all): " + "; ".join(f"{index} = {name}" for index, name in
                                            enumerate(_ablation_names())))
    parser.add_argument("--scored-characters", type=positive_int, default=None,
                        help="validation characters the fresh and streaming losses use "
                             "(default: the whole split)")
    parser.add_argument("--position-length", type=positive_int, default=1024,
                        help="characters of the loss-by-position windows")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of models and data")
    parser.add_argument("--progress", action="store_true", help="show tqdm progress bars")


def _ablation_names() -> list[str]:
    from nlbook.claims.ablation import ABLATION_VARIANTS

    return list(ABLATION_VARIANTS)


def bench_ablation(args: argparse.Namespace) -> None:
    """Chapter 7's ablation (the paper's Table 6, small): every variant for the same budget."""
    from nlbook.claims.ablation import run_ablation

    minutes = args.minutes if args.minutes is not None or args.steps is not None else 1.0
    variants = _chosen_variants(_ablation_names(), args.variants) if args.variants else None
    budget = f"{minutes:g} min" if args.steps is None else f"{args.steps} steps"
    _header(f"ablation: HOPE with one part removed, {budget} of training each (tiny preset)")
    result = run_ablation(minutes=None if args.steps is not None else minutes,
                          steps=args.steps, variants=variants,
                          scored_characters=args.scored_characters,
                          position_length=args.position_length, seed=args.seed,
                          progress=args.progress)
    print(result.table())


def _hope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-model", type=positive_int, default=144,
                        help="HOPE's width (about 1M parameters at 4 layers); the Transformer's "
                             "is matched by parameter count")
    parser.add_argument("--n-layers", type=positive_int, default=4, help="blocks of each model")
    parser.add_argument("--n-heads", type=positive_int, default=4, help="heads per block")
    parser.add_argument("--batch", type=positive_int, default=16, help="sequences per step")
    parser.add_argument("--length", type=positive_int, default=128,
                        help="characters per sequence")
    parser.add_argument("--steps", type=positive_int, default=5,
                        help="timed training steps per model (interleaved; the median counts)")
    parser.add_argument("--context", type=_int_list, default=None,
                        help="comma-separated context lengths, e.g. 64,256,1024: one timing "
                             "per length, with batch = --tokens-per-step / length (default: "
                             "one timing at --length and --batch)")
    parser.add_argument("--tokens-per-step", type=positive_int, default=2048,
                        help="with --context: tokens in every training step (default 2048)")
    parser.add_argument("--second-order", action="store_true",
                        help="also time HOPE with create_graph through the CMS updates")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd copies of both models (needs a C++ "
                             "compiler; compiling HOPE takes minutes, reported apart)")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got "
                                         f"{text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return values


def bench_hope(args: argparse.Namespace) -> None:
    """Training tokens/s of HopeLM vs TransformerLM at equal parameter count (chapter 5); with
    ``--context``, at each context length with the same tokens per step (attention's cost grows
    with the context, HOPE's does not)."""
    from nlbook.hope import benchmark_hope

    _header("hope: training tokens/s (forward + backward + AdamW), HOPE vs Transformer")
    if args.context is None:
        benchmark_hope(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                       batch=args.batch, length=args.length, steps=args.steps,
                       second_order=args.second_order, compile=args.compile)
        return
    ratios = []
    for length in args.context:
        batch = max(1, args.tokens_per_step // length)
        print(f"-- context {length}, batch {batch}")
        results = benchmark_hope(d_model=args.d_model, n_layers=args.n_layers,
                                 n_heads=args.n_heads, batch=batch, length=length,
                                 steps=args.steps, second_order=args.second_order,
                                 compile=args.compile)
        ratios.append((length, batch, results))
    print("context  batch  HOPE tokens/s  Transformer tokens/s  ratio")
    for length, batch, results in ratios:
        print(f"{length:7d}  {batch:5d}  {results['hope']:13.0f}  {results['transformer']:20.0f}"
              f"  {results['ratio']:5.2f}")


# Chapter 7: the experiments of nlbook.claims, at a larger size than the notebook's.


def _claims_arguments(parser: argparse.ArgumentParser, *, steps: int, layers: int,
                      steps_help: str) -> None:
    parser.add_argument("--steps", type=positive_int, default=steps, help=steps_help)
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seed of models and data (default 0)")
    parser.add_argument("--d-model", type=positive_int, default=32,
                        help="HOPE's width; the Transformer's is matched by parameter count")
    parser.add_argument("--n-layers", type=positive_int, default=layers,
                        help="blocks of each model")
    parser.add_argument("--n-heads", type=positive_int, default=2, help="heads per block")
    parser.add_argument("--progress", action="store_true", help="print a line per model")


def _formal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive_int, default=300,
                        help="optimizer steps per model, language and seed, equal for every "
                             "model (default 300)")
    parser.add_argument("--batch", type=positive_int, default=32,
                        help="strings per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=3e-3,
                        help="AdamW learning rate of every model (default 3e-3)")
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                        help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--d-model", type=positive_int, default=32,
                        help="width of every model (default 32)")
    parser.add_argument("--n-layers", type=positive_int, default=1,
                        help="blocks of HOPE, Transformer++ and the delta rule (default 1)")
    parser.add_argument("--n-heads", type=positive_int, default=2,
                        help="heads of Transformer++ and HOPE (default 2)")
    parser.add_argument("--languages", default="parity,aa_star,abab_star,anbn,anbncn,shuffle2",
                        help="comma-separated languages (default all six)")
    parser.add_argument("--train-strings", type=positive_int, default=10_000,
                        help="training strings of lengths 2-50 (default 10,000)")
    parser.add_argument("--examples", type=positive_int, default=2000,
                        help="test strings drawn per bin (default 2,000; kept once each)")
    parser.add_argument("--no-delta", action="store_true",
                        help="skip the delta rule's beta (0,1) against (0,2) on parity")
    parser.add_argument("--ignore-control", action="store_true",
                        help="go on after a failed positive control (no verdict is printed)")
    parser.add_argument("--progress", action="store_true", help="print a line per model")


def bench_formal(args: argparse.Namespace) -> None:
    """Chapter 7, experiment 2: formal languages (arXiv Table 5) in Bhattamishra et al.'s
    setting, under nlbook.claims.protocol: the LSTM control first, then LSTM, Transformer++
    and HOPE on every language, then the delta rule's beta range on parity."""
    import time

    from nlbook.claims import formal_models, formal_switches, run_formal
    from nlbook.claims.formal import _languages, formal_delta_models
    from nlbook.claims.protocol import compare, verdict

    languages = _languages("--languages", [name.strip() for name in args.languages.split(",")
                                           if name.strip()])
    common = dict(steps=args.steps, batch_size=args.batch, learning_rate=args.lr,
                  seeds=args.seeds, train_strings=args.train_strings, examples=args.examples,
                  log=print if args.progress else None)
    sizes = dict(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads)
    _header(f"formal: next-character-set prediction, {args.steps} steps x {args.batch} "
            f"strings per model, language and seed; seeds {args.seeds}")
    start = time.perf_counter()
    models = formal_models(**sizes)
    control = run_formal({"LSTM": models["LSTM"]}, languages=("parity", "aa_star"),
                         claim_model=None, **common)
    print(control.control)
    if not control.control.passed and not args.ignore_control:
        print("verdict: not tested at this budget (the positive control failed: raise --steps)")
        print(f"total {time.perf_counter() - start:.0f} s")
        return
    if not args.no_delta:
        delta = run_formal({"LSTM": models["LSTM"], **formal_delta_models(**sizes)},
                           languages=("parity",), claim_model=None, **common)
        print()
        print(delta.table())
        narrow, wide = list(formal_delta_models(**sizes))
        outcomes = []
        for split in ("bin0", "bin1"):
            comparison = compare(delta.cell(wide, split, "parity"),
                                 delta.cell(narrow, split, "parity"))
            print(f"parity {split}: {wide} minus {narrow}: {100 * comparison.difference:+.1f} "
                  f"points (a finding above {100 * comparison.bar:.1f})")
            outcomes.append(True if comparison.direction == 1 else
                            (False if comparison.direction == -1 else None))
        print(f"verdict on 'beta in (0,2) counts parity, beta in (0,1) cannot' (Grazzi et al. "
              f"2024): {verdict(delta.control, outcomes)}")
    result = run_formal(models, languages=languages, switches=formal_switches(), **common)
    print(result.table())
    print(f"total {time.perf_counter() - start:.0f} s (training and evaluation, one thread)")


def _recall_arguments(parser: argparse.ArgumentParser) -> None:
    _claims_arguments(parser, steps=2000, layers=2,
                      steps_help="optimizer steps per model (equal steps; default 2000, the "
                                 "notebook 600)")
    parser.add_argument("--minutes", type=positive_float, default=None,
                        help="instead: a wall-clock training budget per model, in minutes "
                             "(equal time; --steps then only sizes the cosine, give a generous "
                             "bound; default: none, equal steps)")
    parser.add_argument("--trials", type=positive_int, default=64,
                        help="prompts per gap (default 64)")


def bench_recall(args: argparse.Namespace) -> None:
    """Chapter 7, experiment 3: recall of a planted fact across gaps of 8-512 characters,
    HOPE vs the matched Transformer (window 64) vs HOPE without in-context updates."""
    import time

    from nlbook.claims import recall_models, recall_switches, run_recall
    from nlbook.data import load_corpus

    budget = f"{args.minutes:g} min" if args.minutes is not None else f"{args.steps} steps"
    _header(f"recall: facts recalled across a gap, {budget} of training per model")
    start = time.perf_counter()
    vocabulary = load_corpus().vocabulary
    result = run_recall(recall_models(len(vocabulary), d_model=args.d_model,
                                      n_layers=args.n_layers, n_heads=args.n_heads),
                        vocabulary=vocabulary, switches=recall_switches(), steps=args.steps,
                        minutes=args.minutes, trials=args.trials, seeds=(args.seed,),
                        log=print if args.progress else None)
    print(f"HOPE d_model {args.d_model}, {args.n_layers} layers, {args.n_heads} heads")
    print(result.table())
    print(f"total {time.perf_counter() - start:.0f} s (training and evaluation)")


def _continual_arguments(parser: argparse.ArgumentParser) -> None:
    _claims_arguments(parser, steps=1000, layers=2,
                      steps_help="optimizer steps per phase, for every model (equal steps; "
                                 "default 1000, the notebook 300)")
    parser.add_argument("--evaluations", type=positive_int, default=5,
                        help="evaluations per phase (default 5)")


def bench_continual(args: argparse.Namespace) -> None:
    """Chapter 7, experiment 4: continual learning Tiny Shakespeare -> Python stdlib -> Tiny
    Shakespeare; forgetting and recovery of HOPE, HOPE without in-context CMS updates and the
    Transformer."""
    import time

    from nlbook.claims import continual_models, run_continual
    from nlbook.data import load_corpus_pair

    _header(f"continual: A -> B -> A, {args.steps} steps per phase")
    start = time.perf_counter()
    corpora = load_corpus_pair()
    result = run_continual(continual_models(corpora[0].vocab_size, d_model=args.d_model,
                                            n_layers=args.n_layers, n_heads=args.n_heads),
                           steps_per_phase=args.steps, evaluations_per_phase=args.evaluations,
                           seeds=(args.seed,), corpora=corpora,
                           log=print if args.progress else None)
    print(f"HOPE d_model {args.d_model}, {args.n_layers} layers, {args.n_heads} heads")
    print(result.table())
    print(f"total {time.perf_counter() - start:.0f} s (training and evaluation)")


# Chapters 1, 5 and 7: MQAR, the recall yardstick.


def _names_from(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated distinct names from ``choices`` (MQAR, phased-MQAR
    and MAD models, MAD tasks, the full protocol's experiments)."""

    def names(text: str) -> list[str]:
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        if not chosen or any(name not in choices for name in chosen) \
                or len(set(chosen)) != len(chosen):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated distinct names from {', '.join(choices)}, got "
                f"{text!r}")
        return chosen

    return names


def _seed_list(text: str) -> list[int]:
    """A comma-separated list of seeds >= 0 (argparse type)."""
    seeds = [seed_int(part.strip()) for part in text.split(",") if part.strip()]
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds, got {text!r}")
    return seeds


def _mqar_arguments(parser: argparse.ArgumentParser) -> None:
    from nlbook.claims.mqar import MQAR_MODELS

    default = MQAR_MODELS[:5]
    parser.add_argument("--models", type=_names_from(MQAR_MODELS), default=list(default),
                        help=f"comma-separated models from {','.join(MQAR_MODELS)} (default "
                             f"{','.join(default)}; the hope-... names undo one change)")
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                        help="comma-separated seeds, one run of every model each (default 0,1,2)")
    parser.add_argument("--vocab", type=positive_int, default=64,
                        help="vocabulary size V: keys below V/2, values above (default 64)")
    parser.add_argument("--seq", type=positive_int, default=32,
                        help="sequence length T in tokens (default 32)")
    parser.add_argument("--kv", type=positive_int, default=4,
                        help="key-value pairs per sequence (default 4)")
    parser.add_argument("--steps", type=positive_int, default=1000,
                        help="optimizer steps per model, equal for every model (default 1000)")
    parser.add_argument("--batch", type=positive_int, default=32,
                        help="sequences per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=3e-3,
                        help="AdamW peak learning rate (default 3e-3)")
    parser.add_argument("--warmup", type=positive_int, default=None,
                        help="linear warm-up steps, the same for every model (default: a "
                             "tenth of --steps)")
    parser.add_argument("--constant-lr", action="store_true",
                        help="constant learning rate after the warm-up instead of cosine decay "
                             "(for the steps-to-90%% measure)")
    parser.add_argument("--d-model", type=positive_int, default=64,
                        help="width of every model (default 64)")
    parser.add_argument("--n-layers", type=positive_int, default=2,
                        help="layers of every model (default 2)")
    parser.add_argument("--n-heads", type=positive_int, default=2,
                        help="heads of every model (default 2)")
    parser.add_argument("--test-size", type=positive_int, default=1024,
                        help="test sequences, every query scored (default 1024)")
    parser.add_argument("--eval-every", type=positive_int, default=50,
                        help="steps between held-out evaluations (default 50)")
    parser.add_argument("--power-a", type=positive_float, default=None,
                        help="Zoology's power-law exponent for query positions, e.g. 0.01 "
                             "(default: uniform positions)")
    parser.add_argument("--random-non-queries", action="store_true",
                        help="fill the blanks with random tokens (Zoology's filler)")
    parser.add_argument("--progress", action="store_true",
                        help="print a line after every held-out evaluation")
    parser.add_argument("--json", type=_json_path, default=None, metavar="PATH",
                        help="also write every run (per seed: accuracy, interval, first step "
                             ">= 90 %%, curve, ms/step) and the setting to this JSON file "
                             "(default: none, print only)")


def _json_path(text: str) -> str:
    """A results file path ending in .json (argparse type; checked writable before the run)."""
    if not text.strip() or not text.endswith(".json"):
        raise argparse.ArgumentTypeError(f"expected a file path ending in .json, got {text!r}")
    return text


def bench_mqar(args: argparse.Namespace) -> None:
    """MQAR (Zoology): every model trained on the same batches, interleaved step by step."""
    import time

    from nlbook._checks import check_writable_path
    from nlbook.claims.mqar import mqar_models, run_mqar

    if args.json is not None:
        check_writable_path("--json", args.json, suffixes=("json",))

    schedule = "constant" if args.constant_lr else "cosine"
    _header(f"mqar: V {args.vocab}, T {args.seq}, {args.kv} pairs, {args.steps} steps, "
            f"batch {args.batch}, lr {args.lr:g} ({schedule}), seeds "
            f"{','.join(map(str, args.seeds))}")
    start = time.perf_counter()
    models = mqar_models(args.vocab, d_model=args.d_model, n_layers=args.n_layers,
                         n_heads=args.n_heads, sequence_length=args.seq, names=args.models)
    result = run_mqar(models, seeds=args.seeds, steps=args.steps, batch_size=args.batch,
                      vocab_size=args.vocab, sequence_length=args.seq, kv_pairs=args.kv,
                      learning_rate=args.lr, warmup_steps=args.warmup,
                      constant_learning_rate=args.constant_lr, test_size=args.test_size,
                      eval_every=args.eval_every,
                      power_a=args.power_a, random_non_queries=args.random_non_queries,
                      log=print if args.progress else None)
    print(result.table())
    print(f"in-context chance {100 / args.kv:.1f} % (any value present, unbound); "
          f"total {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        result.save(args.json, command="python -m nlbook.bench mqar " + " ".join(
            f"--{key.replace('_', '-')} {value}" for key, value in (
                ("models", ",".join(args.models)), ("seeds", ",".join(map(str, args.seeds))),
                ("vocab", args.vocab), ("seq", args.seq), ("kv", args.kv),
                ("steps", args.steps), ("batch", args.batch), ("lr", args.lr)))
            + (f" --warmup {args.warmup}" if args.warmup is not None else "")
            + (" --constant-lr" if args.constant_lr else ""))
        print(f"wrote {args.json}")


#: The phased-MQAR budget sized for one CPU thread (``python -m nlbook.bench phased-mqar``).
PHASED_STEPS, PHASED_LR, PHASED_WARMUP, PHASED_GAP = 600, 3e-3, 200, 4


def _phased_mqar_arguments(parser: argparse.ArgumentParser) -> None:
    from nlbook.claims.phased import PHASED_MODELS

    parser.add_argument("--models", type=_names_from(PHASED_MODELS), default=list(PHASED_MODELS),
                        help=f"comma-separated models from {','.join(PHASED_MODELS)} (default "
                             f"all; HOPE with its CMS frozen in context is scored on the "
                             f"trained hope; the positive control is hope-attention)")
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                        help="comma-separated seeds, one run of every model each (default 0,1,2)")
    parser.add_argument("--steps", type=positive_int, default=PHASED_STEPS,
                        help=f"optimizer steps per model, equal for every model (default "
                             f"{PHASED_STEPS})")
    parser.add_argument("--batch", type=positive_int, default=32,
                        help="sequences per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=PHASED_LR,
                        help=f"AdamW peak learning rate (default {PHASED_LR:g})")
    parser.add_argument("--warmup", type=positive_int, default=PHASED_WARMUP,
                        help=f"linear warm-up steps, the same for every model, then cosine "
                             f"decay (default {PHASED_WARMUP})")
    parser.add_argument("--pairs", type=positive_int, default=4,
                        help="key-value pairs in each of set A and set B (default 4)")
    parser.add_argument("--gap", type=non_negative_int, default=PHASED_GAP,
                        help=f"blanks between a set's pairs and its queries, and before A's last "
                             f"queries (default {PHASED_GAP})")
    parser.add_argument("--vocab", type=positive_int, default=64,
                        help="vocabulary size V: keys below V/2, values above (default 64)")
    parser.add_argument("--d-model", type=positive_int, default=64,
                        help="width of every model (default 64)")
    parser.add_argument("--n-layers", type=positive_int, default=2,
                        help="layers of every model (default 2)")
    parser.add_argument("--test-size", type=positive_int, default=512,
                        help="test sequences, every query of every block scored (default 512)")
    parser.add_argument("--progress", action="store_true",
                        help="print every model's training loss every 100 steps (default: off)")
    parser.add_argument("--json", type=_json_path, default=None, metavar="PATH",
                        help="also write every run (per seed and block: correct answers and "
                             "queries, ms/step) and the setting to this JSON file, rewritten "
                             "after every seed (default: none, print only)")


def bench_phased_mqar(args: argparse.Namespace) -> None:
    """Continual learning in context: phased MQAR (A, B, A's queries again), weights frozen.
    The seeds run one after the other; the JSON file is rewritten after each (a run cut short
    keeps its finished seeds)."""
    import shlex
    import time

    from nlbook._checks import check_writable_path
    from nlbook.claims.phased import (
        PhasedMQARResult,
        phased_models,
        phased_switches,
        run_phased_mqar,
    )
    from nlbook.tasks.phased_recall import phased_mqar_layout

    if args.json is not None:
        check_writable_path("--json", args.json, suffixes=("json",))
    length = phased_mqar_layout(args.pairs, args.gap)["sequence"][1]
    _header(f"phased-mqar: V {args.vocab}, {args.pairs} pairs per phase, gap {args.gap}, "
            f"T {length}, {args.steps} steps (warm-up {args.warmup}, cosine), batch "
            f"{args.batch}, lr {args.lr:g}, seeds {','.join(map(str, args.seeds))}")
    start = time.perf_counter()
    models = phased_models(args.vocab, d_model=args.d_model, n_layers=args.n_layers,
                           pairs_per_phase=args.pairs, gap=args.gap, names=args.models)
    command = "python -m nlbook.bench phased-mqar " + " ".join(
        f"--{key} {shlex.quote(str(value))}" for key, value in (
            ("models", ",".join(args.models)), ("seeds", ",".join(map(str, args.seeds))),
            ("steps", args.steps), ("batch", args.batch), ("lr", args.lr),
            ("warmup", args.warmup), ("pairs", args.pairs), ("gap", args.gap),
            ("vocab", args.vocab), ("d-model", args.d_model), ("n-layers", args.n_layers),
            ("test-size", args.test_size)))
    result: PhasedMQARResult | None = None
    for seed in args.seeds:
        part = run_phased_mqar(models, seeds=(seed,), steps=args.steps, batch_size=args.batch,
                               vocab_size=args.vocab, pairs_per_phase=args.pairs,
                               gap=args.gap, learning_rate=args.lr, warmup_steps=args.warmup,
                               test_size=args.test_size, switches=phased_switches(),
                               log=print if args.progress else None)
        if result is None:
            result = part
        else:
            for name, runs in part.runs.items():
                result.runs[name].extend(runs)
            result.seeds.extend(part.seeds)
        seconds = time.perf_counter() - start
        result.setting.update(d_model=args.d_model, n_layers=args.n_layers, n_heads=2,
                              window=4 * args.pairs + args.gap, cms_chunk=2 * args.pairs,
                              seconds=round(seconds))
        if args.json is not None:
            result.save(args.json, command=command)
            print(f"wrote {args.json} ({len(result.seeds)} of {len(args.seeds)} seeds, "
                  f"{seconds:.0f} s)")
    print(result.table())
    print(result.summary())
    print(f"total {time.perf_counter() - start:.0f} s")


# Chapter 7: MAD (Poli et al. 2024), the paper's Table 4.


#: ``python -m nlbook.bench mad``'s budget: steps per model and task, warm-up steps, and the
#: peak learning rate.
MAD_STEPS, MAD_WARMUP, MAD_LR = 500, 300, 3e-3


def _mad_arguments(parser: argparse.ArgumentParser) -> None:
    from nlbook.claims.mad import MAD_MODELS
    from nlbook.tasks.mad import MAD_TASKS

    parser.add_argument("--models", type=_names_from(MAD_MODELS), default=list(MAD_MODELS),
                        help=f"comma-separated models (default {','.join(MAD_MODELS)})")
    parser.add_argument("--tasks", type=_names_from(MAD_TASKS), default=list(MAD_TASKS),
                        help=f"comma-separated tasks (default {','.join(MAD_TASKS)})")
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                        help="comma-separated seeds, one run of every model on every task each "
                             "(default 0,1,2)")
    parser.add_argument("--steps", type=positive_int, default=MAD_STEPS,
                        help=f"optimizer steps per model and task, equal for every model "
                             f"(default {MAD_STEPS})")
    parser.add_argument("--warmup", type=positive_int, default=MAD_WARMUP,
                        help=f"linear warm-up steps, the same for every model, then cosine "
                             f"decay (default {MAD_WARMUP})")
    parser.add_argument("--constant-lr", action="store_true",
                        help="constant learning rate after the warm-up instead of cosine decay "
                             "(default: cosine)")
    parser.add_argument("--batch", type=positive_int, default=32,
                        help="sequences per step (default 32)")
    parser.add_argument("--lr", type=positive_float, default=MAD_LR,
                        help=f"AdamW peak learning rate (default {MAD_LR:g})")
    parser.add_argument("--d-model", type=positive_int, default=64,
                        help="width of every model (default 64; MAD's is 128)")
    parser.add_argument("--n-layers", type=positive_int, default=2,
                        help="layers of every model (default 2, as MAD)")
    parser.add_argument("--test-size", type=positive_int, default=256,
                        help="test sequences per task (default 256)")
    parser.add_argument("--progress", action="store_true",
                        help="print a line after every task and seed (default: off)")
    parser.add_argument("--json", type=_json_path, default=None, metavar="PATH",
                        help="also write every run (per seed: correct, total, accuracy, "
                             "interval), the timings, the setting and the verdict to this JSON "
                             "file, rewritten after every task (default: none, print only)")


def bench_mad(args: argparse.Namespace) -> None:
    """MAD's six tasks: every model trained on the same batches, interleaved step by step."""
    import time

    from nlbook._checks import check_writable_path
    from nlbook.claims.mad import mad_models, run_mad

    if args.json is not None:
        check_writable_path("--json", args.json, suffixes=("json",))
    if args.warmup > args.steps:
        raise ValueError(f"--warmup must be at most --steps ({args.steps}), got {args.warmup}")
    _header(f"mad: {','.join(args.tasks)}; {args.steps} steps (warm-up {args.warmup}, "
            f"{'constant' if args.constant_lr else 'cosine'}), batch "
            f"{args.batch}, lr {args.lr:g}, width {args.d_model}, {args.n_layers} layers, seeds "
            f"{','.join(map(str, args.seeds))}")
    start = time.perf_counter()
    command = "python -m nlbook.bench mad " + " ".join(
        f"--{key} {value}" for key, value in (
            ("models", ",".join(args.models)), ("tasks", ",".join(args.tasks)),
            ("seeds", ",".join(map(str, args.seeds))), ("steps", args.steps),
            ("warmup", args.warmup), ("batch", args.batch), ("lr", args.lr),
            ("d-model", args.d_model), ("n-layers", args.n_layers),
            ("test-size", args.test_size))) + (" --constant-lr" if args.constant_lr else "")

    def save(result) -> None:
        result.setting.update(d_model=args.d_model, n_layers=args.n_layers,
                              seconds=round(time.perf_counter() - start, 1))
        if args.json is not None:
            result.save(args.json, command=command)

    result = run_mad(mad_models(d_model=args.d_model, n_layers=args.n_layers,
                                names=args.models),
                     tasks=args.tasks, seeds=args.seeds, steps=args.steps,
                     batch_size=args.batch, learning_rate=args.lr, warmup_steps=args.warmup,
                     constant_learning_rate=args.constant_lr, test_size=args.test_size,
                     on_task=save,
                     log=print if args.progress else None)
    save(result)
    print(result.table())
    print(result.summary())
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        print(f"wrote {args.json}")


def _sign_flip_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                        help="comma-separated seeds of the MQAR runs (default 0,1,2)")
    parser.add_argument("--steps", type=positive_int, default=600,
                        help="MQAR training steps of HOPE per seed (default 600)")
    parser.add_argument("--characters", type=positive_int, default=20_000,
                        help="validation characters streamed through the shipped checkpoint "
                             "(default 20,000)")


def bench_sign_flip(args: argparse.Namespace) -> None:
    """Chapter 7: HOPE's in-context writes flipped to gradient ascent (Liu et al. 2026)."""
    import time

    from nlbook.claims.sign_flip import run_sign_flip
    from nlbook.data import DATA_DIR, load_corpus
    from nlbook.train import load_model

    _header(f"sign-flip: MQAR (T 32, 4 pairs, {args.steps} steps, seeds "
            f"{','.join(map(str, args.seeds))}) and the shipped checkpoint's stream")
    start = time.perf_counter()
    model, _, _ = load_model(DATA_DIR / "hope-shakespeare-tiny.pt")
    ids = load_corpus().val_ids[:args.characters]
    result = run_sign_flip(seeds=args.seeds, steps=args.steps, language_model=model,
                           stream_ids=ids, log=print)
    print(result.table())
    print(f"total {time.perf_counter() - start:.0f} s")


def _claims_arguments_full(parser: argparse.ArgumentParser) -> None:
    from nlbook.claims.results import CLAIMS_EXPERIMENTS

    parser.add_argument("--experiments", type=_names_from(tuple(CLAIMS_EXPERIMENTS)),
                        default=list(CLAIMS_EXPERIMENTS),
                        help="comma-separated experiments to run; only their entries of the "
                             "results file are replaced (default all: "
                             f"{','.join(CLAIMS_EXPERIMENTS)})")
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2],
                        help="comma-separated seeds, at least 3 for a verdict (default 0,1,2)")
    parser.add_argument("--output", type=_json_path, default=None, metavar="PATH",
                        help="the results file (default data/claims.json)")
    parser.add_argument("--progress", action="store_true",
                        help="print a line per trained model (default off)")
    parser.add_argument("--merge", type=_json_paths, default=None, metavar="PATHS",
                        help="comma-separated results files of the same experiments run on "
                             "other seeds in separate processes: combine them into --output "
                             "instead of running (default: run)")
    parser.add_argument("--rebuild", action="store_true",
                        help="recompute every verdict, table and summary of --output from its "
                             "stored per-seed numbers instead of running (default off)")


def _json_paths(text: str) -> list[str]:
    """Comma-separated existing .json files (argparse type)."""
    import os

    paths = [part.strip() for part in text.split(",") if part.strip()]
    if not paths or any(not path.endswith(".json") or not os.path.isfile(path)
                        for path in paths):
        raise argparse.ArgumentTypeError(f"expected comma-separated existing .json files, got "
                                         f"{text!r}")
    return paths


def bench_claims(args: argparse.Namespace) -> None:
    """Chapter 7's full protocol: every experiment of the claims map, written to the results
    file (nlbook.claims.results)."""
    from nlbook.claims.results import (
        CLAIMS_RESULTS_PATH,
        run_claims_experiment,
        save_claims_record,
    )

    output = CLAIMS_RESULTS_PATH if args.output is None else args.output
    if args.merge is not None or args.rebuild:
        from nlbook.claims.results import (
            load_claims_results,
            merge_claims_records,
            rebuild_claims_record,
        )

        if args.merge is not None:
            parts = [load_claims_results(path) for path in args.merge]
            names = [name for name in args.experiments if any(name in part for part in parts)]
            for name in names:
                record = merge_claims_records(name, [part[name] for part in parts
                                                     if name in part])
                save_claims_record(name, record, output)
                print(f"{name}: seeds {record['seeds']} merged: {record['verdict']}")
        else:
            for name, record in load_claims_results(output).items():
                if name in args.experiments:
                    save_claims_record(name, rebuild_claims_record(name, record), output)
                    print(f"{name}: rebuilt: {load_claims_results(output)[name]['verdict']}")
        return
    _header(f"claims: the full protocol of chapter 7, experiments {','.join(args.experiments)},"
            f" seeds {','.join(map(str, args.seeds))} -> {output}")
    for name in args.experiments:
        record = run_claims_experiment(name, seeds=args.seeds,
                                       log=print if args.progress else None)
        record["command"] = ("python -m nlbook.bench claims --experiments " + name
                             + (" --seeds " + ",".join(map(str, args.seeds))
                                if args.seeds != [0, 1, 2] else ""))
        save_claims_record(name, record, output)
        print(record["table"])
        print(f"{name}: {record['verdict']} ({record['why']}); {record['seconds']:.0f} s; "
              f"written to {output}")


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
    "stateful": (_stateful_arguments, bench_stateful,
                 "chapter 6: HOPE trained on fresh windows vs carried streams"),
    "ablation": (_ablation_arguments, bench_ablation,
                 "earlier chapter 7 sketch (one seed, no control, no verdict): HOPE with one "
                 "part removed, at equal time; the protocol's ablation is `claims`"),
    "formal": (_formal_arguments, bench_formal,
               "chapter 7: formal languages, trained short and tested long (arXiv Table 5)"),
    "recall": (_recall_arguments, bench_recall,
               "earlier chapter 7 sketch (one seed, no verdict): recall of a "
               "planted fact across a gap; the protocol's recall row is MQAR (`claims`)"),
    "continual": (_continual_arguments, bench_continual,
                  "earlier chapter 7 sketch (one seed, no verdict): continual learning in the "
                  "weights A -> B -> A; the protocol's test is `phased-mqar` (`claims`)"),
    "mqar": (_mqar_arguments, bench_mqar,
             "chapters 1, 5, 7: multi-query associative recall (Zoology's MQAR)"),
    "phased-mqar": (_phased_mqar_arguments, bench_phased_mqar,
                    "chapter 7: continual learning in context, phased MQAR (A, B, A again)"),
    "mad": (_mad_arguments, bench_mad,
            "chapter 7: MAD's six synthetic tasks, HOPE vs Transformer++ (arXiv Table 4)"),
    "sign-flip": (_sign_flip_arguments, bench_sign_flip,
                  "chapter 7: HOPE's in-context writes flipped to gradient ascent"),
    "claims": (_claims_arguments_full, bench_claims,
               "chapter 7: the full protocol, every claim's experiment, to data/claims.json"),
}


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m nlbook.bench", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True,
                                help="the benchmark to run (see python -m nlbook.bench NAME "
                                     "--help)")
    for name, (add_arguments, _, help_text) in BENCHMARKS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status. Every failure is one line
    ``error: ...`` on stderr and a non-zero status, never a traceback."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(1)

    def run() -> int:
        clock = Stopwatch()
        BENCHMARKS[args.benchmark][1](args)
        print(clock.line(f"bench {args.benchmark}: done"))
        return 0

    return run_command(run)


if __name__ == "__main__":
    raise SystemExit(main())
