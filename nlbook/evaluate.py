"""``python -m nlbook.evaluate --checkpoint FILE [--data FILE]``: the losses of a saved model.

Prints, for any checkpoint written by ``python -m nlbook.train``, the loss in fresh windows of
its training context (every character scored once, each window starting from nothing) and the
streaming loss (:func:`nlbook.train.evaluate_stream`: HOPE reads the text as one stream with
its state carried; a Transformer slides its window with a stride of half a window), each in
nats/char, bits/char and perplexity per character (e^nats).

Which text: the checkpoint's own corpus (Tiny Shakespeare unless it was trained with
``--data``) is scored on its validation split (the last 10%); another file given with
``--data`` is scored whole (``--split val`` scores only its last 10%). Every character must be
in the checkpoint's vocabulary.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

from nlbook._checks import ArgumentTypeError, check_bool, check_device, check_str, describe
from nlbook._cli import (
    Parser,
    Stopwatch,
    error_line,
    positive_int,
    run_command,
    thread_count,
)
from nlbook.data import DataFileError, load_text_file, load_tiny_shakespeare, split_train_val

__all__ = ["evaluate_checkpoint", "main"]


def _text_of(data: str | None) -> str:
    return load_tiny_shakespeare() if data is None else load_text_file(data)


def evaluate_checkpoint(checkpoint: str, *, data: str | None = None, split: str | None = None,
                        window: int = 1024, device: str = "cpu", progress: bool = False
                        ) -> dict[str, float | int | str]:
    """Fresh-window and streaming losses of a saved model (nats/char), as a dict.

    ``data`` None: the checkpoint's own corpus, ``split`` "val" by default; another file:
    ``split`` "all" by default. ``window``: the pieces HOPE's stream is read in (it does not
    change the number) and, capped at its context, the Transformer's sliding window.
    ``progress``: tqdm bars on stderr.
    """
    from hashlib import sha256

    from nlbook.train import evaluate_all, evaluate_stream, load_model
    from nlbook.train.checkpoints import _require_keys

    if isinstance(checkpoint, bytes) or not isinstance(checkpoint, (str, os.PathLike)):
        raise ArgumentTypeError(f"checkpoint must be a file path (str or Path), got "
                                f"{describe(checkpoint)}")
    check_str("data", data, allow_none=True)
    if data is not None and not os.path.isfile(data):
        raise DataFileError(f"data {data!r} is not a file (missing, or a folder)")
    if split not in (None, "val", "all"):
        raise ValueError(f"split must be 'val' or 'all', got {split!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    device = str(check_device("device", device))
    check_bool("progress", progress)
    model, vocabulary, state = load_model(checkpoint, device=device)
    _require_keys(state, checkpoint, {"config": dict, "corpus": dict}, "evaluate its model")
    _require_keys(state["corpus"], f"{checkpoint} (corpus)", {"sha256": str, "source": str},
                 "evaluate its model")
    stored = state["config"].get("data")
    text = _text_of(data if data is not None else stored)
    own = sha256(text.encode("utf-8")).hexdigest() == state["corpus"]["sha256"]
    if split is None:
        split = "val" if own else "all"
    ids = vocabulary.encode(text, name="the evaluated text")
    if split == "val":
        ids = split_train_val(ids)[1]
    context = int(state["model_config"]["context_length"])
    fresh = evaluate_all(model, ids, context_length=context, device=device, progress=progress)
    stream_window = window if hasattr(model, "stream") else min(window, context)
    streaming = evaluate_stream(model, ids, window=stream_window, device=device,
                                progress=progress)
    return {"model": state["model_config"]["name"], "characters": len(ids), "split": split,
            "source": state["corpus"]["source"] if data is None else str(data),
            "context_length": context, "fresh": fresh, "stream": streaming,
            "stream_window": stream_window, "carries_state": hasattr(model, "stream")}


def _line(name: str, nats: float) -> str:
    return (f"{name:<34} {nats:.4f} nats/char = {nats / math.log(2):.4f} bits/char, "
            f"perplexity {math.exp(nats):.3f}")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m nlbook.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint file written by python -m nlbook.train (required)")
    parser.add_argument("--data", help="a UTF-8 text to score (default: the model's corpus)")
    parser.add_argument("--split", choices=("val", "all"),
                        help="val: the last 10%%; all: the whole text (default: val for the "
                             "model's own corpus, all for another file)")
    parser.add_argument("--window", type=positive_int, default=1024,
                        help="characters per stream piece (HOPE) / sliding window, capped at "
                             "the context (Transformer)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are drawn on stderr)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 on success)."""
    from nlbook.train import CheckpointError, ModelUnavailableError

    args = _parser().parse_args(argv)
    return run_command(lambda: _run(args, CheckpointError, ModelUnavailableError))


def _run(args: argparse.Namespace, CheckpointError, ModelUnavailableError) -> int:
    clock = Stopwatch()
    try:
        torch.set_num_threads(args.threads)
        result = evaluate_checkpoint(args.checkpoint, data=args.data, split=args.split,
                                     window=args.window, device=args.device,
                                     progress=not args.no_progress)
    except (CheckpointError, DataFileError, ModelUnavailableError, ValueError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(f"{args.checkpoint}: {result['model']} | {result['source']} ({result['split']}, "
          f"{result['characters']:,} characters)")
    print(_line(f"fresh windows of {result['context_length']}:", result["fresh"]))
    how = ("one stream, state carried" if result["carries_state"]
           else f"sliding window {result['stream_window']}, stride "
                f"{max(1, result['stream_window'] // 2)}")
    print(_line(f"streaming ({how}):", result["stream"]))
    print(clock.line("evaluated"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
