"""``python -m nlbook.train``: the command line of the training loop.

Under ``torchrun --nproc_per_node N -m nlbook.train ...`` every process runs this command line;
rank 0 prints, writes the checkpoint and the figure, and scores the trained model afterwards.
"""

from __future__ import annotations

import argparse
import ast
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nlbook._checks import check_writable_path
from nlbook._cli import (
    Parser,
    Stopwatch,
    error_line,
    positive_float,
    positive_int,
    run_command,
    seed_int,
    thread_count,
    unit_interval,
)
from nlbook.data import DataFileError, load_corpus
from nlbook.train.checkpoints import _require_keys, load_checkpoint
from nlbook.train.config import (
    LN2,
    MODEL_REGISTRY,
    PRESETS,
    CheckpointError,
    ModelUnavailableError,
    TrainConfig,
    TrainingDivergedError,
)
from nlbook.train.distributed import launched_rank, launched_world_size
from nlbook.train.evaluation import evaluate_all, evaluate_stream
from nlbook.train.loop import (
    CHECKPOINT_SECONDS,
    TrainingInterrupted,
    _figure_suffixes,
    describe_run,
    save_loss_figure,
    train,
)


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--model-option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key, parsed


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m nlbook.train",
        description="Train a character language model (Tiny Shakespeare by default). Ctrl-C "
                    "or SIGTERM stops after the current step with a checkpoint of it; "
                    "--resume continues exactly.")
    parser.add_argument("--model", choices=sorted(MODEL_REGISTRY), default="transformer",
                        help="the model to train")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                        help="tested size and schedule (default tiny; base is for a GPU)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int,
                        help="optimizer steps (default: the preset's)")
    budget.add_argument("--minutes", type=positive_float,
                        help="wall-clock budget in minutes instead of --steps (default: none)")
    parser.add_argument("--data", help="any UTF-8 text file (default: Tiny Shakespeare)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (default cpu)")
    parser.add_argument("--optimizer", default="adamw",
                        help="adamw (default), adam, sgd or an nlbook.optim name (e.g. muon)")
    parser.add_argument("--lr", type=positive_float,
                        help="peak learning rate (default: the preset's)")
    parser.add_argument("--batch-size", type=positive_int,
                        help="windows per optimizer step (default: the preset's)")
    parser.add_argument("--context-length", type=positive_int,
                        help="characters per training window (default: the preset's)")
    parser.add_argument("--d-model", type=positive_int,
                        help="model width, in features (default: the preset's)")
    parser.add_argument("--n-layers", type=positive_int,
                        help="number of blocks (default: the preset's)")
    parser.add_argument("--n-heads", type=positive_int,
                        help="attention/memory heads per block (default: the preset's)")
    parser.add_argument("--dropout", type=unit_interval,
                        help="dropout rate in [0, 1) (default: the preset's, 0 unless base)")
    parser.add_argument("--model-option", action="append", type=_parse_option, default=[],
                        metavar="KEY=VALUE",
                        help="extra model keyword argument (repeatable; default: none)")
    parser.add_argument("--carry-state", action=argparse.BooleanOptionalAction, default=None,
                        help="stateful training (hope): every batch row reads its own "
                             "contiguous stream and the model's state is carried from window "
                             "to window (truncated backprop); default: the preset's")
    parser.add_argument("--stream-length", type=positive_int,
                        help="with --carry-state: characters a stream reads before it restarts "
                             "at a new random place with a fresh state (default: the preset's)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast of the training forward pass (CUDA only)")
    parser.add_argument("--eval-interval", type=positive_int,
                        help="steps between validation estimates (default: the preset's)")
    parser.add_argument("--eval-batches", type=positive_int,
                        help="batches per validation estimate (default: the preset's)")
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seed of the model's initialisation and of the data order")
    parser.add_argument("--checkpoint", type=_path_text, help="checkpoint file (default "
                        "checkpoints/<model>-<preset>.pt)")
    parser.add_argument("--checkpoint-every", type=positive_int,
                        help="steps between checkpoints (default: --eval-interval; also one "
                             f"every {CHECKPOINT_SECONDS / 60:g} minutes of training, and one "
                             "of the current step on Ctrl-C or SIGTERM)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run stored in --checkpoint exactly where it stopped")
    parser.add_argument("--figure", type=_path_text,
                        help="loss-curve image (default figures/loss-<model>-<preset>.png)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the n-gram reference lines (they take a few seconds)")
    parser.add_argument("--threads", type=thread_count, default=1,
                        help="torch CPU threads (small models gain little from more)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the training step: minutes of compilation (needs a "
                             "C++ compiler), then faster steps; pays on long runs (README)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is drawn on stderr)")
    return parser


def _path_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file path, got {text!r}")
    return text


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides: dict[str, Any] = {"model": args.model, "seed": args.seed, "device": args.device,
                                 "optimizer": args.optimizer, "data": args.data,
                                 "compile": args.compile}
    if args.carry_state is not None:
        overrides["carry_state"] = args.carry_state
    if args.bf16:
        overrides["autocast"] = True
    for argument, name in (("steps", "steps"), ("minutes", "minutes"), ("lr", "learning_rate"),
                           ("batch_size", "batch_size"), ("context_length", "context_length"),
                           ("d_model", "d_model"), ("n_layers", "n_layers"),
                           ("n_heads", "n_heads"), ("eval_interval", "eval_interval"),
                           ("eval_batches", "eval_batches"),
                           ("stream_length", "stream_length")):
        if getattr(args, argument) is not None:
            overrides[name] = getattr(args, argument)
    if args.lr is not None:
        overrides["min_learning_rate"] = min(PRESETS[args.preset]["min_learning_rate"], args.lr)
    options = dict(PRESETS[args.preset].get("model_options", {}))
    if args.dropout is not None:
        options["dropout"] = args.dropout
    options.update(dict(args.model_option))
    overrides["model_options"] = options
    overrides["checkpoint"] = args.checkpoint or f"checkpoints/{args.model}-{args.preset}.pt"
    if args.checkpoint_every is not None:
        overrides["checkpoint_interval"] = args.checkpoint_every
    return TrainConfig.from_preset(args.preset, **overrides)


def _say_how_to_resume(checkpoint: str | None, what: str) -> None:
    """One line on stderr: what stopped the run and the command that continues it (only when
    its checkpoint exists: a resume of a missing file would fail)."""
    if checkpoint and Path(checkpoint).is_file():
        print(f"\n{what}; resume with: python -m nlbook.train --checkpoint {checkpoint} "
              f"--resume", file=sys.stderr)
    else:
        print(f"\n{what} before the first checkpoint was written: nothing to resume",
              file=sys.stderr)


def _all_but(line: str, say: Callable[[str], None]) -> Callable[[str], None]:
    """``say`` for every message but ``line`` (already printed)."""
    def log(message: str) -> None:
        if message != line:
            say(message)
    return log


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 on success). Every failure is one
    line ``error: ...`` on stderr and a non-zero status, never a traceback; the paths that will
    be written (``--checkpoint``, ``--figure``) are checked before training starts."""
    args = _parser().parse_args(argv)
    previous = _terminate_as_interrupt()
    try:
        return run_command(lambda: _run(args))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_as_interrupt():
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does (train() then writes a checkpoint of
    the current step; before and after training: one line, no traceback). Returns the
    previous handler (None off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(number, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    clock = Stopwatch()
    main_process, error_prefix, config = True, "error:", None
    try:
        world_size = launched_world_size()
        main_process = launched_rank() == 0
        if world_size > 1 and not main_process:
            error_prefix = f"error (rank {launched_rank()} of {world_size}):"
        say = print if main_process else (lambda message: None)
        if args.resume:
            if args.checkpoint is None:
                raise ValueError("--resume needs --checkpoint PATH")
            state = load_checkpoint(args.checkpoint)
            _require_keys(state, args.checkpoint, {"config": dict}, "resume its run")
            try:
                config = TrainConfig.from_dict(dict(state["config"], device=args.device,
                                                    checkpoint=args.checkpoint,
                                                    compile=args.compile))
            except (TypeError, ValueError) as error:
                if "device" in str(error):
                    raise
                raise CheckpointError(f"checkpoint {args.checkpoint} holds a configuration "
                                      f"that is not valid here: {error}") from None
        else:
            config = _config_from_args(args)
        figure = args.figure or f"figures/loss-{config.model}-{config.preset or 'custom'}.png"
        if main_process:  # found unwritable now, not after the run
            check_writable_path("--checkpoint", config.checkpoint)
            check_writable_path("--figure", figure, suffixes=_figure_suffixes())
        # The run's first line names the world size; train() says it first too, so it is
        # printed here, before the data line, and not again.
        first_line = describe_run(config, world_size)
        say(first_line)
        if args.resume:
            say(f"resuming {args.checkpoint}: the stored configuration is used; other "
                f"training options on the command line are ignored")
        corpus = load_corpus(config.data)
        say(f"data: {corpus.source} | {len(corpus.text):,} characters, vocabulary "
            f"{corpus.vocab_size} | train {len(corpus.train_ids):,} / val "
            f"{len(corpus.val_ids):,}")
        result = train(config, corpus=corpus, resume=args.resume,
                       progress=not args.no_progress,
                       log=_all_but(first_line, say))
    except TrainingDivergedError as error:
        print(f"{error_prefix} {error_line(error)}", file=sys.stderr)
        return 1
    except (DataFileError, CheckpointError, ModelUnavailableError, ValueError,
            TypeError) as error:
        print(f"{error_prefix} {error_line(error)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as interrupted:
        if main_process:
            _say_how_to_resume(interrupted.checkpoint, f"{error_line(interrupted)}")
        return 128 + int(interrupted.signal_number)
    except KeyboardInterrupt:
        if main_process:
            _say_how_to_resume(config.checkpoint if config is not None else args.checkpoint,
                               "interrupted")
        return 130
    if not main_process:
        return 0  # rank 0 scores the model and draws the figure
    from nlbook.transformer import parameter_count

    count = parameter_count(result.model)
    full_val = evaluate_all(result.model, corpus.val_ids,
                            context_length=result.config.context_length,
                            device=result.config.device, progress=not args.no_progress)
    print(f"parameters: {count.total:,} ({count.non_embedding:,} non-embedding)")
    print(f"validation (every character, fresh windows of {result.config.context_length}): "
          f"{full_val:.4f} nats/char = {full_val / LN2:.4f} bits/char")
    if hasattr(result.model, "stream"):
        streaming = evaluate_stream(result.model, corpus.val_ids, window=1024,
                                    device=result.config.device,
                                    progress=not args.no_progress)
        print(f"validation (every character, one stream, state carried): {streaming:.4f} "
              f"nats/char = {streaming / LN2:.4f} bits/char")
    references = None
    if not args.no_baselines:
        from nlbook.ngram import ngram_baselines

        baselines = ngram_baselines(corpus.train_ids, corpus.val_ids, corpus.vocab_size,
                                    orders=(5, 7))
        references = {name: values["nats"] for name, values in baselines.items()}
        print("references: " + ", ".join(f"{name} {nats:.3f}"
                                         for name, nats in references.items()))
    print(f"figure: {save_loss_figure(result, figure, references)}")
    print(f"checkpoint: {result.checkpoint}")
    print(clock.line())
    return 0
