"""Checkers for chapter 5's exercises: the causal convolution, the block's forward pass, and
greedy generation with a carried state."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nlbook.cms import cross_entropy_loss
from nlbook.hope import CausalDepthwiseConv, HopeBlock, HopeLM

__all__ = ["check_block_forward", "check_causal_conv", "check_stream_greedy",
           "reference_causal_conv"]


def reference_causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """nlbook's answer: y_t = Σ_j weight[:, j] ⊙ x_{t−w+1+j} (zeros before the start).
    x (B, T, d), weight (d, w) → (B, T, d)."""
    conv = CausalDepthwiseConv(weight.shape[0], weight.shape[1]).to(weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        return conv(x)[0]


def check_causal_conv(causal_conv: Callable) -> bool:
    """Check ``causal_conv(x (B, T, d), weight (d, w)) -> y (B, T, d)``: a causal depth-wise
    convolution, the last tap (weight[:, -1]) on the current token, zeros before the start."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 3, dtype=torch.float64, generator=generator)
    weight = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    got = causal_conv(x, weight)
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        raise AssertionError(f"expected a tensor of shape {tuple(x.shape)}, got "
                             f"{getattr(got, 'shape', type(got).__name__)}")
    expected = reference_causal_conv(x, weight)
    flipped = reference_causal_conv(x, weight.flip(-1))
    if (got - flipped).abs().max() < 1e-9:
        raise AssertionError("your taps are reversed: weight[:, -1] multiplies the current "
                             "token x_t, weight[:, 0] the oldest one x_{t−w+1}")
    changed = x.clone()
    changed[:, 4:] += 1.0
    if (causal_conv(changed, weight)[:, :4] - got[:, :4]).abs().max() > 1e-9:
        raise AssertionError("not causal: changing tokens from t = 4 on changed outputs before "
                             "t = 4 (pad on the left only)")
    error = (got - expected).abs().max().item()
    if error > 1e-9:
        raise AssertionError(f"wrong values (max error {error:.3g}). Each channel c: "
                             "y[b, t, c] = Σ_j weight[c, j] x[b, t − w + 1 + j, c]")
    print("✓ causal depth-wise convolution matches nlbook (and is causal).")
    return True


def check_block_forward(block_forward: Callable) -> bool:
    """Check ``block_forward(block, x, targets, loss_fn) -> output (B, T, d)``: the HOPE block
    assembled from its parts (norm → conv → self-modifying Titans → residual → CMS)."""
    generator = torch.Generator().manual_seed(0)
    block = HopeBlock(8, 2, chunk_size_memory=4, chunk_size_others=2, cms_chunk_sizes=(8, 3),
                      cms_learning_rates=(0.0, 0.05), cms_hidden_dim=12,
                      generator=generator).double()
    with torch.no_grad():
        block.conv.weight.normal_(0.0, 0.5, generator=generator)
    x = torch.randn(2, 9, 8, dtype=torch.float64, generator=generator)
    targets = torch.randint(7, (2, 8), generator=generator)
    readout = torch.nn.Linear(8, 7).double()
    loss_fn = cross_entropy_loss(readout)
    got = block_forward(block, x, targets, loss_fn)
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        raise AssertionError(f"return the block's output, a tensor of shape {tuple(x.shape)}, "
                             f"got {getattr(got, 'shape', type(got).__name__)}")
    expected = block(x, targets, loss_fn=loss_fn).output
    no_residual = block.cms(block.titans(block.conv(block.norm(x))[0])[0], targets,
                            loss_fn=loss_fn).output
    if (got - no_residual).abs().max() < 1e-9:
        raise AssertionError("the residual is missing: the CMS reads x + Titans(conv(norm(x)))")
    error = (got - expected).abs().max().item()
    if error > 1e-9:
        raise AssertionError(f"wrong output (max error {error:.3g}). Order: h = block.norm(x); "
                             "h, _ = block.conv(h); y, _ = block.titans(h); "
                             "block.cms(x + y, targets, loss_fn=loss_fn).output")
    print("✓ your HOPE block equals nlbook's HopeBlock.")
    return True


def check_stream_greedy(stream_greedy: Callable) -> bool:
    """Check ``stream_greedy(model, prompt (B, T), n) -> (B, T + n)``: greedy decoding that
    reads the prompt once and then feeds one token at a time with ``model.stream``."""
    model = HopeLM(9, 16, 1, 2, chunk_size_memory=4, chunk_size_others=2,
                   cms_chunk_sizes=(8, 3), cms_learning_rates=(0.0, 0.05), seed=0)
    prompt = torch.randint(9, (2, 5), generator=torch.Generator().manual_seed(1))
    calls = []
    original = model.stream

    def counting_stream(idx, state=None, **kwargs):
        calls.append(idx.shape[1])
        return original(idx, state, **kwargs)

    model.stream = counting_stream  # type: ignore[method-assign]
    try:
        got = stream_greedy(model, prompt, 7)
    finally:
        del model.stream
    expected = model.generate(prompt, 7, temperature=0.0)
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        raise AssertionError(f"expected a tensor of shape {tuple(expected.shape)} (prompt + new "
                             f"tokens), got {getattr(got, 'shape', type(got).__name__)}")
    if not torch.equal(got, expected):
        raise AssertionError("different tokens from model.generate(temperature=0): take the "
                             "argmax of the LAST position's logits, append it, and pass it with "
                             "the returned state to the next model.stream call")
    if not calls:
        raise AssertionError("use model.stream(idx, state): it returns (logits, state) and "
                             "carries the memories, so nothing is re-read")
    if max(calls[1:], default=1) > 1:
        raise AssertionError(f"model.stream was called with {calls} tokens: after the prompt, "
                             "feed only the new token (the state carries the past)")
    print(f"✓ greedy streaming matches model.generate ({len(calls)} calls of model.stream).")
    return True
