"""Sample text from a trained checkpoint: ``python -m nlbook.sample --checkpoint PATH``.

Temperature divides the logits (lower: more conservative; 0: greedy), top-k keeps the k most
likely characters, top-p (nucleus) keeps the smallest set whose probability reaches p.
Sampling uses an explicit ``torch.Generator`` seeded by ``--seed``, so a sample is reproducible.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from nlbook._checks import check_instance, check_memory, check_positive_int, check_str
from nlbook._cli import (
    Parser,
    Stopwatch,
    error_line,
    non_negative_float,
    non_negative_int,
    positive_int,
    probability,
    run_command,
    seed_int,
    thread_count,
)
from nlbook.data import CharVocabulary

__all__ = ["main", "sample_text"]


def sample_text(model: nn.Module, vocabulary: CharVocabulary, prompt: str = "\n",
                max_new_tokens: int = 500, *, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None, num_samples: int = 1) -> list[str]:
    """Continue ``prompt`` with ``max_new_tokens`` sampled characters.

    Works for any model with ``model(idx) -> (logits, loss)`` and ``context_length``.

    Returns:
        ``num_samples`` strings, each the prompt followed by its continuation.

    Raises:
        ValueError: if the prompt is empty or holds a character outside the vocabulary.
    """
    check_instance("model", model, nn.Module, expected="a torch.nn.Module language model")
    check_instance("vocabulary", vocabulary, CharVocabulary,
                   expected="an nlbook.data.CharVocabulary")
    check_str("prompt", prompt, allow_empty=True)
    if not prompt:
        raise ValueError("prompt must hold at least one character (e.g. '\\n')")
    check_positive_int("num_samples", num_samples)
    model_vocab = getattr(model, "vocab_size", None)
    if model_vocab is not None and model_vocab != len(vocabulary):
        raise ValueError(f"vocabulary has {len(vocabulary)} characters, the model "
                         f"{model_vocab}: pass the model's own vocabulary")
    if isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool):
        check_memory("num_samples and max_new_tokens",
                     num_samples * (len(prompt) + max(max_new_tokens, 0)), bytes_per_element=8)
    from nlbook.transformer import generate_tokens

    device = next(model.parameters()).device
    ids = vocabulary.encode(prompt, name="prompt").to(device)
    idx = ids.unsqueeze(0).repeat(num_samples, 1)
    out = generate_tokens(model, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, generator=generator)
    return [vocabulary.decode(row.cpu()) for row in out]


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m nlbook.sample",
                    description="Sample text from an nlbook checkpoint: the characters are "
                                "written as they are generated.")
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint file written by python -m nlbook.train (required)")
    parser.add_argument("--prompt", default="\n",
                        help="the text the samples continue (characters of the vocabulary)")
    parser.add_argument("--max-new-tokens", type=non_negative_int, default=500,
                        help="characters generated per sample")
    parser.add_argument("--temperature", type=non_negative_float, default=0.8,
                        help="divides the logits: lower is more conservative, 0 is greedy")
    parser.add_argument("--top-k", type=positive_int,
                        help="keep only the k most likely characters (default: all)")
    parser.add_argument("--top-p", type=probability,
                        help="keep the smallest set of characters whose probability reaches p, "
                             "in (0, 1] (default: all)")
    parser.add_argument("--num-samples", type=positive_int, default=1,
                        help="samples, one after the other, each under a '--- sample N' line")
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seed of the sampling generator (same seed, same text)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from nlbook.train import CheckpointError, ModelUnavailableError, load_model

    args = _parser().parse_args(argv)
    return run_command(lambda: _run(args, CheckpointError, ModelUnavailableError, load_model))


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _run(args: argparse.Namespace, CheckpointError, ModelUnavailableError,
         load_model) -> int:
    from nlbook.transformer import generate_tokens

    clock = Stopwatch()
    try:
        torch.set_num_threads(args.threads)
        model, vocabulary, state = load_model(args.checkpoint, device=args.device)
        # Everything sample_text checks, checked before the first character is written.
        sample_text(model, vocabulary, args.prompt, 0, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p)
    except (CheckpointError, ModelUnavailableError, ValueError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    _write(f"# {args.checkpoint}: {state['model_config']['name']}, step "
           f"{state.get('step', '?')}\n")
    device = next(model.parameters()).device
    prompt = vocabulary.encode(args.prompt, name="prompt").to(device)[None]
    # One generator for every sample, drawn from in order: one character per call is the same
    # computation as generate_tokens(..., max_new_tokens) (it crops, runs, samples per step).
    generator = torch.Generator().manual_seed(args.seed)
    for index in range(args.num_samples):
        if args.num_samples > 1:
            _write(f"--- sample {index + 1}\n")
        _write(args.prompt)
        idx = prompt
        for _ in range(args.max_new_tokens):
            idx = generate_tokens(model, idx, 1, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, generator=generator)
            _write(vocabulary.decode(idx[0, -1:].cpu()))
        _write("\n")
    print(clock.line(f"sampled {args.num_samples * args.max_new_tokens:,} characters"),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
