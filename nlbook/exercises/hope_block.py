"""Chapter 5's exercises: the causal convolution, the block's forward pass, and greedy
generation with a carried state.

Use as ``from nlbook.exercises import hope_block as ex``; ``ex.check_stream_greedy(fn)``,
``ex.answer("causal", prediction)``, ``ex.solution("stream_greedy")``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from nlbook.cms import cross_entropy_loss
from nlbook.exercises import solutions
from nlbook.exercises._core import Chapter, CheckResult, Question, checker, compare, expect_tensor
from nlbook.hope import CausalDepthwiseConv, HopeBlock, HopeLM

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "check_block_forward", "check_causal_conv",
           "check_stream_greedy", "experiment", "reference_causal_conv", "reveal", "solution"]


def reference_causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """nlbook's answer: y_t = Σ_j weight[:, j] ⊙ x_{t−w+1+j} (zeros before the start).
    x (B, T, d), weight (d, w) → (B, T, d)."""
    from nlbook._checks import check_same_dtype_device, check_tensor

    check_tensor("x", x, ndim=3, layout="(B, T, d)", dtype="float")
    check_tensor("weight", weight, ndim=2, layout="(d, w)", dtype="float")
    if weight.shape[0] != x.shape[-1] or weight.shape[1] < 1:
        raise ValueError(f"weight must have shape (d, w) with d = {x.shape[-1]} of x and w >= 1, "
                         f"got {tuple(weight.shape)}")
    check_same_dtype_device("x", x, weight=weight)
    conv = CausalDepthwiseConv(weight.shape[0], weight.shape[1]).to(weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        return conv(x)[0]


@checker("causal_conv")
def check_causal_conv(causal_conv: Callable) -> CheckResult:
    """Check ``causal_conv(x (B, T, d), weight (d, w)) -> y (B, T, d)``: a causal depth-wise
    convolution, the last tap (weight[:, -1]) on the current token, zeros before the start."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 3, dtype=torch.float64, generator=generator)
    weight = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    what = "causal_conv(x (2, 7, 3), weight (3, 4))"
    got = expect_tensor(what, causal_conv(x.clone(), weight.clone()), tuple(x.shape))
    expected = reference_causal_conv(x, weight)
    flipped = reference_causal_conv(x, weight.flip(-1))
    if (got - flipped).abs().max() < 1e-9:
        raise AssertionError(f"{what}: the taps are reversed: weight[:, -1] multiplies the "
                             "current token x_t, weight[:, 0] the oldest one x_{t−w+1}")
    changed = x.clone()
    changed[:, 4:] += 1.0
    again = expect_tensor(f"{what} on another input", causal_conv(changed, weight.clone()),
                          tuple(x.shape))
    if (again[:, :4] - got[:, :4]).abs().max() > 1e-9:
        raise AssertionError(f"{what} is not causal: changing tokens from t = 4 on changed "
                             "outputs before t = 4 (only past tokens may be read)")
    compare(what, got, expected, "Each channel c: y[b, t, c] = Σ_j weight[c, j] "
                                 "x[b, t − w + 1 + j, c], with zeros before the start.")
    return "the causal depth-wise convolution matches nlbook's (and is causal)."


@checker("block_forward")
def check_block_forward(block_forward: Callable) -> CheckResult:
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
    what = "block_forward(block, x (2, 9, 8), targets, loss_fn)"
    got = expect_tensor(what, block_forward(block, x.clone(), targets, loss_fn), tuple(x.shape))
    expected = block(x, targets, loss_fn=loss_fn).output
    no_residual = block.cms(block.titans(block.conv(block.norm(x))[0])[0], targets,
                            loss_fn=loss_fn).output
    if (got - no_residual).abs().max() < 1e-9:
        raise AssertionError(f"{what}: the residual is missing: the CMS reads the block's input "
                             "plus what the Titans wrote")
    compare(what, got, expected, "Use the parts in the block's order (norm, conv, titans, a "
                                 "residual, cms); each of conv, titans and cms also returns a "
                                 "state or a result object: keep only the tensor you need.")
    return "your HOPE block equals nlbook's HopeBlock."


def _same_state(given: object, returned: object) -> bool:
    """True when ``given`` is the state ``returned`` (the object itself, or a copy: a detached
    state holds equal tensors)."""
    if given is returned:
        return True
    if isinstance(returned, torch.Tensor):
        return isinstance(given, torch.Tensor) and torch.equal(given, returned)
    if dataclasses.is_dataclass(returned) and type(given) is type(returned):
        return all(_same_state(getattr(given, field.name), getattr(returned, field.name))
                   for field in dataclasses.fields(returned))
    if isinstance(returned, (list, tuple)):
        return (isinstance(given, (list, tuple)) and len(given) == len(returned)
                and all(map(_same_state, given, returned)))
    if isinstance(returned, dict):
        return (isinstance(given, dict) and given.keys() == returned.keys()
                and all(_same_state(given[key], returned[key]) for key in returned))
    return given == returned


@checker("stream_greedy")
def check_stream_greedy(stream_greedy: Callable) -> CheckResult:
    """Check ``stream_greedy(model, prompt (B, T), n) -> (B, T + n)``: greedy decoding that
    reads the prompt once and then feeds one token at a time with ``model.stream``, passing on
    the state each call returns."""
    model = HopeLM(9, 16, 1, 2, chunk_size_memory=4, chunk_size_others=2,
                   cms_chunk_sizes=(8, 3), cms_learning_rates=(0.0, 0.05), seed=0)
    prompt = torch.randint(9, (2, 5), generator=torch.Generator().manual_seed(1))
    new_tokens = 7
    calls: list[tuple[int, object, object]] = []  # (tokens fed, state in, state out)
    original = model.stream

    def recording_stream(idx, state=None, **kwargs):
        result = original(idx, state, **kwargs)
        calls.append((idx.shape[1], state, result[1]))
        return result

    what = f"stream_greedy(model, prompt (2, 5), {new_tokens})"

    def refuse_generate(*args, **kwargs):
        raise AssertionError(f"{what} called model.generate, the function this exercise "
                             "rebuilds: write the loop yourself with model.stream")

    model.stream = recording_stream  # type: ignore[method-assign]
    model.generate = refuse_generate  # type: ignore[method-assign]
    try:
        result = stream_greedy(model, prompt.clone(), new_tokens)
    finally:
        del model.stream, model.generate
    expected = model.generate(prompt, new_tokens, temperature=0.0)
    got = expect_tensor(what, result, tuple(expected.shape))
    if not calls:
        raise AssertionError(f"{what} never called model.stream(idx, state): it returns "
                             "(logits, state) and carries the memories, so nothing is re-read")
    if calls[0][0] != prompt.shape[1] or calls[0][1] is not None:
        raise AssertionError(f"{what}: the first model.stream call must read the whole prompt "
                             f"({prompt.shape[1]} tokens) with no state; it got {calls[0][0]} "
                             "tokens")
    for number, ((length, state_in, _), (_, _, previous_out)) in enumerate(
            zip(calls[1:], calls[:-1], strict=True), start=2):
        if not _same_state(state_in, previous_out):
            raise AssertionError(f"{what}: call {number} of model.stream did not get the state "
                                 "that the previous call returned (it was dropped or an old "
                                 "one was passed): without it the model forgets what it read")
        if length != 1:
            raise AssertionError(f"{what}: call {number} of model.stream fed {length} tokens: "
                                 "after the prompt feed only the new token (the state carries "
                                 "the past)")
    if len(calls) not in (new_tokens, new_tokens + 1):
        raise AssertionError(f"{what} called model.stream {len(calls)} times: once for the "
                             f"prompt, then once per new token ({new_tokens} new tokens)")
    if not torch.equal(got.double(), expected.double()):
        raise AssertionError(f"{what} chose other tokens than greedy decoding: take the most "
                             "likely token at the LAST position of each call's logits and append "
                             "it to the text")
    return f"greedy streaming matches model.generate ({len(calls)} calls of model.stream)."


QUESTIONS = {
    "causal": Question(
        {"a": "the logits at every position",
         "b": "only the logits at the last position",
         "c": "no logits at all",
         "d": "the logits at the last 4 positions (the convolution's window)"},
        "b",
        """Position t's logits may depend on tokens ≤ t only: the convolution pads on the left,
        the Titans read their chunk's starting state, and a CMS chunk's update is applied only
        once its last target has arrived. The last token is seen by the last position (its own)
        and by no earlier one. The convolution's window looks back: token t reaches positions
        t to t + 3, later positions, and here there are none after the last."""),
    "state_size": Question(
        {"a": "about 100 times larger after 1,000 tokens",
         "b": "the same size",
         "c": "about 10 times larger",
         "d": "smaller: the memories compress as they read"},
        "b",
        """HOPE's state is a fixed set of tensors: the convolution's last 3 inputs, the Titans
        memories and their snapshots, the CMS's fast parameters and open gradient sums, and
        one pending position. Its size depends on the model, never on the text read. A
        Transformer's KV cache grows by one key and one value per layer and token: after 1,000
        tokens it holds 1,000 of each."""),
    "dgd_fraction": Question(
        {"a": "all of it: the memory then returns v̂ − k exactly",
         "b": "about 0.84 of it",
         "c": "about 0.16 of it",
         "d": "about 0.19 of it"},
        "c",
        """With the first layer fixed, the written layer is a linear memory of the feature
        x = φ(k), and DGD's step on it is the delta rule with the step η′ = η/(1 + η‖x‖²)
        (A-eq 57). From an empty memory one write gives S = η′ x uᵀ, so the read of the same
        key returns η′‖x‖² u: the fraction η‖x‖²/(1 + η‖x‖²) = 0.19/1.19 ≈ 0.16 of the target
        u. DGD's normalisation keeps the step safe for any ‖x‖ but makes a small feature store
        little; at unit scale ‖φ(k)‖² is several times larger and one write stores most of
        its target."""),
}
SOLUTIONS = solutions.BY_CHAPTER["hope_block"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
