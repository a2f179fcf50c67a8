"""Chapter 1: every fast memory form against its token-by-token float64 reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nlbook.memory import (
    delta_rule,
    linear_attention,
    reference_titans_memory,
    softmax_attention,
    softmax_attention_reference,
    titans_memory,
)

B, H, T, D_K, D_V = 2, 3, 37, 5, 4  # T = 37 is prime: never a multiple of the chunk size
DTYPE = torch.float64
CHUNK_SIZES = [1, 3, 16, T]


def _inputs(seed: int = 0, length: int = T, batch: int = B):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=DTYPE)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=DTYPE)

    return {
        "q": randn(batch, H, length, D_K),
        "k": F.normalize(randn(batch, H, length, D_K), dim=-1),
        "v": randn(batch, H, length, D_V),
        "beta": rand(batch, H, length),
        "decay": 0.7 + 0.3 * rand(batch, H, length),
        "state": randn(batch, H, D_K, D_V),
        "lr": 0.5 * rand(batch, H, length),
        "momentum": rand(batch, H, length),
        "forget": 0.2 * rand(batch, H, length),
    }


def _run(rule: str, x: dict, chunk_size):
    if rule == "linear":
        return linear_attention(x["q"], x["k"], x["v"], initial_state=x["state"],
                                chunk_size=chunk_size, return_states=True)
    if rule == "gated linear":
        return linear_attention(x["q"], x["k"], x["v"], decay=x["decay"],
                                initial_state=x["state"], chunk_size=chunk_size,
                                return_states=True)
    if rule == "delta":
        return delta_rule(x["q"], x["k"], x["v"], x["beta"], initial_state=x["state"],
                          chunk_size=chunk_size, return_states=True)
    if rule == "gated delta":
        return delta_rule(x["q"], x["k"], x["v"], x["beta"], decay=x["decay"],
                          initial_state=x["state"], chunk_size=chunk_size, return_states=True)
    raise AssertionError(rule)


RULES = ["linear", "gated linear", "delta", "gated delta"]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_chunkwise_equals_token_loop(rule, chunk_size):
    x = _inputs()
    out_ref, state_ref, states_ref = _run(rule, x, None)
    out, state, states = _run(rule, x, chunk_size)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(state, state_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(states, states_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(states[:, :, -1], state, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("chunk_size", [3, 16])
def test_chunkwise_gradients_equal_token_loop(rule, chunk_size):
    names = ["q", "k", "v", "beta", "decay", "state"]

    def gradients(chunk):
        x = {name: value.clone().requires_grad_(name in names) for name, value in
             _inputs(seed=1).items()}
        out, state, _ = _run(rule, x, chunk)
        (out.sin().sum() + state.square().sum()).backward()
        return {name: x[name].grad for name in names if x[name].grad is not None}

    reference, fast = gradients(None), gradients(chunk_size)
    assert reference.keys() == fast.keys()
    for name in reference:
        torch.testing.assert_close(fast[name], reference[name], rtol=0, atol=1e-10,
                                   msg=f"gradient of {name}")


def test_chunkwise_delta_rule_passes_gradcheck():
    x = _inputs(seed=2, length=7, batch=1)
    for value in x.values():
        value.requires_grad_()

    def function(q, k, v, beta, decay, state):
        return delta_rule(q, k, v, beta, decay=decay, initial_state=state, chunk_size=3)

    assert torch.autograd.gradcheck(function, tuple(x[n] for n in
                                                    ["q", "k", "v", "beta", "decay", "state"]))


def test_delta_rule_overwrites_and_linear_attention_accumulates():
    """One key written twice: β = 1 recalls the latest value; Hebbian recalls the sum."""
    key = torch.tensor([1.0, 0.0, 0.0], dtype=DTYPE).reshape(1, 1, 1, 3).repeat(1, 1, 2, 1)
    values = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=DTYPE).reshape(1, 1, 2, 2)
    out_delta, _ = delta_rule(key, key, values, torch.ones(1, 1, 2, dtype=DTYPE))
    out_hebb, _ = linear_attention(key, key, values)
    torch.testing.assert_close(out_delta[0, 0, -1], values[0, 0, -1])
    torch.testing.assert_close(out_hebb[0, 0, -1], values[0, 0].sum(0))


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_titans_chunkwise_equals_frozen_gradient_loop(chunk_size):
    x = _inputs(seed=3)
    x["momentum"][..., 4] = 0.0  # no momentum and full forgetting are exact edge cases
    x["forget"][..., 9] = 1.0
    initial = (x["state"], 0.5 * x["state"].flip(-1))
    args = (x["q"], x["k"], x["v"], x["lr"], x["momentum"], x["forget"])
    out_ref, final_ref, states_ref = reference_titans_memory(
        *args, initial_state=initial, frozen_chunk_size=chunk_size, return_states=True)
    out, final, states = titans_memory(*args, initial_state=initial, chunk_size=chunk_size,
                                       return_states=True)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-10)
    for fast, slow in zip((*final, *states), (*final_ref, *states_ref), strict=True):
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-10)


def test_titans_chunk_one_is_the_exact_rule_and_larger_chunks_are_not():
    x = _inputs(seed=4)
    args = (x["q"], x["k"], x["v"], x["lr"], x["momentum"], x["forget"])
    exact, _ = titans_memory(*args, chunk_size=None)
    torch.testing.assert_close(titans_memory(*args, chunk_size=1)[0], exact, rtol=0, atol=1e-12)
    # The frozen-gradient chunk is a different model, not a faster route to the same numbers.
    assert (titans_memory(*args, chunk_size=16)[0] - exact).abs().max() > 1e-3


def test_titans_gradients_equal_frozen_loop():
    names = ["q", "k", "v", "lr", "momentum", "forget"]

    def gradients(fast: bool):
        x = {n: value.clone().requires_grad_(n in names) for n, value in _inputs(5).items()}
        args = tuple(x[n] for n in names)
        if fast:
            out, (memory, _) = titans_memory(*args, chunk_size=8)
        else:
            out, (memory, _) = reference_titans_memory(*args, frozen_chunk_size=8)
        (out.sin().sum() + memory.square().sum()).backward()
        return [x[n].grad for n in names]

    for name, fast, slow in zip(names, gradients(True), gradients(False), strict=True):
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-10, msg=f"gradient of {name}")


def test_titans_without_momentum_or_forgetting_is_the_delta_rule():
    """η = 0 and α = 0 leave M_t = (I - θ k kᵀ) M_{t-1} + θ k vᵀ: DeltaNet with β = θ."""
    x = _inputs(seed=6)
    zeros = torch.zeros_like(x["lr"])
    titans, (memory, _) = titans_memory(x["q"], x["k"], x["v"], x["beta"], zeros, zeros,
                                        initial_state=(x["state"], torch.zeros_like(x["state"])),
                                        chunk_size=None)
    delta, state = delta_rule(x["q"], x["k"], x["v"], x["beta"], initial_state=x["state"])
    torch.testing.assert_close(titans, delta, rtol=0, atol=1e-12)
    torch.testing.assert_close(memory, state, rtol=0, atol=1e-12)


SEQUENCE_MODELS = {
    "linear attention": lambda x, c: linear_attention(x["q"], x["k"], x["v"], decay=x["decay"],
                                                      chunk_size=c)[0],
    "delta rule": lambda x, c: delta_rule(x["q"], x["k"], x["v"], x["beta"], decay=x["decay"],
                                          chunk_size=c)[0],
    "titans": lambda x, c: titans_memory(x["q"], x["k"], x["v"], x["lr"], x["momentum"],
                                         x["forget"], chunk_size=c)[0],
    "softmax attention": lambda x, c: softmax_attention(x["q"], x["k"], x["v"]),
}


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_outputs_never_depend_on_future_tokens(model, chunk_size):
    x = _inputs(seed=7)
    before = SEQUENCE_MODELS[model](x, chunk_size)
    cut = 13  # perturb every input at positions > cut
    for name in ["q", "k", "v", "beta", "decay", "lr", "momentum", "forget"]:
        x[name] = x[name].clone()
        x[name][:, :, cut + 1:] = x[name][:, :, cut + 1:].flip(2) * 0.5
    after = SEQUENCE_MODELS[model](x, chunk_size)
    torch.testing.assert_close(after[:, :, : cut + 1], before[:, :, : cut + 1], rtol=0,
                               atol=1e-12)
    assert (after[:, :, cut + 1:] - before[:, :, cut + 1:]).abs().max() > 1e-6


@pytest.mark.parametrize("model", SEQUENCE_MODELS)
def test_sequences_in_a_batch_are_independent(model):
    x = _inputs(seed=8)
    before = SEQUENCE_MODELS[model](x, 4)
    for name in ["q", "k", "v"]:
        x[name] = x[name].clone()
        x[name][1] = torch.randn_like(x[name][1])
    after = SEQUENCE_MODELS[model](x, 4)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=1e-12)


def test_softmax_attention_matches_the_nadaraya_watson_form():
    x = _inputs(seed=9)
    torch.testing.assert_close(softmax_attention(x["q"], x["k"], x["v"]),
                               softmax_attention_reference(x["q"], x["k"], x["v"]))
    # A window of T is full causal attention; a window of 1 returns the token's own value.
    torch.testing.assert_close(softmax_attention(x["q"], x["k"], x["v"], window=T),
                               softmax_attention(x["q"], x["k"], x["v"]))
    torch.testing.assert_close(softmax_attention(x["q"], x["k"], x["v"], window=1), x["v"])


def test_bad_input_names_the_argument():
    x = _inputs()
    q, k, v, beta = x["q"], x["k"], x["v"], x["beta"]
    nan = float("nan")
    cases = [
        ("k", lambda: delta_rule(q, k[:, :, :-1], v, beta)),
        ("v", lambda: delta_rule(q, k, v[:, :1], beta)),
        ("q", lambda: linear_attention(q[0], k, v)),
        ("q", lambda: linear_attention(q.long(), k, v)),
        ("beta", lambda: delta_rule(q, k, v, beta + 2.5)),
        ("beta", lambda: delta_rule(q, k, v, beta[..., :-1])),
        ("decay", lambda: delta_rule(q, k, v, beta, decay=torch.zeros_like(beta))),
        ("decay", lambda: linear_attention(q, k, v, decay=x["decay"] + 1)),
        ("chunk_size", lambda: delta_rule(q, k, v, beta, chunk_size=0)),
        ("chunk_size", lambda: linear_attention(q, k, v, chunk_size=-3)),
        ("initial_state", lambda: delta_rule(q, k, v, beta, initial_state=x["state"][0])),
        ("lr", lambda: titans_memory(q, k, v, -x["lr"], x["momentum"], x["forget"])),
        ("momentum", lambda: titans_memory(q, k, v, x["lr"], x["momentum"] + 1.5, x["forget"])),
        ("forget", lambda: titans_memory(q, k, v, x["lr"], x["momentum"], x["forget"] * nan)),
        ("initial_state", lambda: titans_memory(q, k, v, x["lr"], x["momentum"], x["forget"],
                                                initial_state=x["state"])),
        ("chunk_size", lambda: titans_memory(q, k, v, x["lr"], x["momentum"], x["forget"],
                                             chunk_size=0)),
        ("window", lambda: softmax_attention(q, k, v, window=0)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()
