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
    non_negative_float,
    non_negative_int,
    positive_int,
    probability,
    run_command,
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


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from nlbook.train import CheckpointError, ModelUnavailableError, load_model

    parser = Parser(prog="python -m nlbook.sample",
                    description="Sample text from an nlbook checkpoint.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--prompt", default="\n")
    parser.add_argument("--max-new-tokens", type=non_negative_int, default=500)
    parser.add_argument("--temperature", type=non_negative_float, default=0.8)
    parser.add_argument("--top-k", type=positive_int)
    parser.add_argument("--top-p", type=probability)
    parser.add_argument("--num-samples", type=positive_int, default=1)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    return run_command(lambda: _run(args, CheckpointError, ModelUnavailableError, load_model))


def _run(args: argparse.Namespace, CheckpointError, ModelUnavailableError,
         load_model) -> int:
    try:
        model, vocabulary, state = load_model(args.checkpoint, device=args.device)
        generator = torch.Generator().manual_seed(args.seed)
        samples = sample_text(model, vocabulary, args.prompt, args.max_new_tokens,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              generator=generator, num_samples=args.num_samples)
    except (CheckpointError, ModelUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"# {args.checkpoint}: {state['model_config']['name']}, step {state.get('step', '?')}")
    for index, text in enumerate(samples):
        if len(samples) > 1:
            print(f"--- sample {index + 1}")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
