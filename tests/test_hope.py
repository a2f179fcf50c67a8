"""Tests for nlbook.hope: the HOPE block and language model (chapter 5). Small shapes."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from nlbook.cms import CMSRecord, ContinuumMemory, cross_entropy_loss, reference_continuum_memory
from nlbook.hope import (
    CausalDepthwiseConv,
    HopeBlock,
    HopeLM,
    TransformerLM,
    matched_models,
    trace_passage,
)
from nlbook.selfmod import reference_self_modifying_titans
from nlbook.transformer import parameter_count

VOCAB = 11
# Small chunks so that an 11–19 token input crosses every kind of chunk boundary.
SMALL = dict(chunk_size_memory=4, chunk_size_others=2, cms_chunk_sizes=(8, 3),
             cms_learning_rates=(0.0, 0.05), cms_hidden_dim=12)


def tiny_model(dtype=torch.float64, seed=0, **options) -> HopeLM:
    values = dict(SMALL)
    values.update(options)
    return HopeLM(VOCAB, 16, 2, 2, context_length=32, seed=seed, **values).to(dtype)


def tokens(batch=2, length=13, seed=1) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


# ---- pieces against slow references ---------------------------------------------------------


def test_causal_conv_matches_a_loop_and_streams():
    conv = CausalDepthwiseConv(3, window=4).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(3, 4, dtype=torch.float64,
                                      generator=torch.Generator().manual_seed(0)))
    x = torch.randn(2, 9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, _ = conv(x)
    expected = torch.zeros_like(x)
    for t in range(9):
        for j in range(4):
            source = t - 3 + j
            if source >= 0:
                expected[:, t] += conv.weight[:, j] * x[:, source]
    assert (y - expected).abs().max() < 1e-12
    first, buffer = conv(x[:, :2])
    second, _ = conv(x[:, 2:], buffer)
    assert (torch.cat([first, second], 1) - y).abs().max() < 1e-12
    identity = CausalDepthwiseConv(3, init="identity")
    assert torch.equal(identity(x.float())[0], x.float())  # initialised to the identity
    random = CausalDepthwiseConv(3, generator=torch.Generator().manual_seed(0))
    assert float(random.weight.detach().abs().max()) <= 0.5  # uniform in ±1/√w
    assert bool((random.weight.detach()[:, :-1] != 0).all())  # previous tokens from the start
    with pytest.raises(ValueError, match="init"):
        CausalDepthwiseConv(3, init="zeros")


def test_block_equals_the_composition_of_the_slow_references():
    # HopeBlock = CMS(x + Titans(conv(norm(x)))): compare with the two float64 token loops.
    generator = torch.Generator().manual_seed(0)
    block = HopeBlock(8, 2, memory_hidden=6, chunk_size_memory=4, chunk_size_others=2,
                      cms_chunk_sizes=(5, 3), cms_learning_rates=(0.02, 0.05), cms_hidden_dim=6,
                      generator=generator).double()
    with torch.no_grad():
        block.conv.weight.normal_(0.0, 0.5, generator=generator)
    x = torch.randn(2, 11, 8, dtype=torch.float64, generator=generator)
    targets = torch.randint(VOCAB, (2, 11), generator=generator)
    readout = torch.nn.Linear(8, VOCAB).double()
    loss_fn = cross_entropy_loss(readout)
    out = block(x, targets, loss_fn=loss_fn)
    hidden, _ = block.conv(block.norm(x))
    titans = reference_self_modifying_titans(block.titans, hidden, 4, 2)
    expected, losses, _, _ = reference_continuum_memory(block.cms, x + titans, targets, loss_fn)
    assert (out.output - expected).abs().max() < 1e-9
    assert (out.cms_losses - losses).abs().max() < 1e-9


@pytest.mark.parametrize("rates", [(0.0, 0.05), (0.03, 0.05)])
def test_first_order_cms_treats_updates_as_constants(rates):
    # Same forward values; the gradient equals that of θ_0 + stopgrad(Σ updates) token by token.
    def make(first_order):
        return ContinuumMemory(4, [3, 2], list(rates), hidden_dim=5, first_order=first_order,
                               generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    x = torch.randn(2, 7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    targets = torch.randint(VOCAB, (2, 6), generator=torch.Generator().manual_seed(2))
    readout = torch.nn.Linear(4, VOCAB).double()
    loss_fn = cross_entropy_loss(readout)
    first, second = make(True), make(False)
    out_first = first(x, targets, loss_fn=loss_fn)
    out_second = second(x, targets, loss_fn=loss_fn)
    assert (out_first.output - out_second.output).abs().max() < 1e-12
    out_first.output.pow(2).sum().backward()
    record = CMSRecord(2, keep_deltas=True)
    with torch.no_grad():
        first(x, targets, loss_fn=loss_fn, record=record)
    manual = make(True)
    rows = []
    for t in range(7):
        parameters = []
        for block in range(2):
            current = dict(manual.initial_parameters(block, 2))
            for step, delta in zip(record.blocks[block].steps, record.blocks[block].deltas,
                                   strict=True):
                if step <= t:
                    current = {name: value + delta[name] for name, value in current.items()}
            parameters.append(current)
        rows.append(manual.apply_parameters(parameters, x[:, t:t + 1]))
    torch.cat(rows, 1).pow(2).sum().backward()
    for (name, a), (_, b) in zip(first.named_parameters(), manual.named_parameters(),
                                 strict=True):
        assert (a.grad - b.grad).abs().max() < 1e-10, name
    out_second.output.pow(2).sum().backward()
    differs = any((a.grad - b.grad).abs().max() > 1e-8 for a, b in
                  zip(first.parameters(), second.parameters(), strict=True))
    assert differs  # second order really differentiates through the updates


# ---- the language model ---------------------------------------------------------------------


def test_shapes_loss_and_any_length_or_batch():
    model = tiny_model()
    for batch, length in [(1, 1), (3, 5), (2, 19), (1, 40)]:  # 40 > context_length: no limit
        idx = tokens(batch, length)
        logits, loss = model(idx, idx)
        assert logits.shape == (batch, length, VOCAB) and logits.dtype == torch.float64
        expected = F.cross_entropy(logits.reshape(-1, VOCAB), idx.reshape(-1))
        assert torch.isclose(loss, expected)
        assert model(idx)[1] is None


def test_causality():
    model = tiny_model()
    idx = tokens(1, 15)
    logits, _ = model(idx)
    for t in (0, 3, 7, 12):
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1 + torch.arange(14 - t)) % VOCAB
        other, _ = model(changed)
        assert (other[:, :t + 1] - logits[:, :t + 1]).abs().max() < 1e-12, t
        assert (other[:, t + 1:] - logits[:, t + 1:]).abs().max() > 1e-6  # the future differs


def test_batch_independence():
    model = tiny_model()
    idx = tokens(3, 13)
    logits, _ = model(idx)
    for row in range(3):
        alone, _ = model(idx[row:row + 1])
        assert (alone - logits[row:row + 1]).abs().max() < 1e-12
    changed = idx.clone()
    changed[1] = (changed[1] + 3) % VOCAB
    other, _ = model(changed)
    assert torch.equal(other[0], logits[0]) and torch.equal(other[2], logits[2])


@pytest.mark.parametrize("split", [[1, 12], [5, 5, 3], [2, 1, 3, 7], [1] * 13])
def test_streaming_any_split_equals_one_pass(split):
    model = tiny_model()
    idx = tokens(2, 13)
    full, _ = model(idx)
    parts, state, start = [], None, 0
    for size in split:
        logits, state = model.stream(idx[:, start:start + size], state)
        parts.append(logits)
        start += size
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-10
    assert state.position == 13


def test_training_pass_without_state_equals_the_stream():
    # forward() passes keep_state=False: it skips the work only the state needs (the last
    # generator writes, the last CMS segment's inner gradients). Same logits, same gradients.
    model = tiny_model()
    idx = tokens(2, 13)
    with_state, state = model.stream(idx)
    without_state, no_state = model.stream(idx, keep_state=False)
    assert state is not None and no_state is None
    assert (with_state - without_state).abs().max() < 1e-12
    with_state.square().sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    without_state.square().sum().backward()
    for name, parameter in model.named_parameters():
        assert (parameter.grad - grads[name]).abs().max() < 1e-10, name


def test_generation_logits_equal_the_full_forward_pass_float32():
    model = tiny_model(torch.float32)
    prompt = tokens(2, 5)
    out, logits = model.generate(prompt, 20, temperature=0.0, return_logits=True)
    assert out.shape == (2, 25) and torch.equal(out[:, :5], prompt)
    full, _ = model(out[:, :-1])
    assert (logits - full[:, 4:]).abs().max() < 1e-5
    assert torch.equal(out[:, 5:], full[:, 4:].argmax(-1))  # greedy picks the argmax
    sampled = model.generate(prompt, 6, temperature=0.8, top_k=5, top_p=0.9,
                             generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 11) and int(sampled.max()) < VOCAB


def test_state_dict_round_trip_gives_identical_logits():
    model = tiny_model(torch.float32)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = tiny_model(torch.float32, seed=5)
    idx = tokens(2, 13)
    assert not torch.equal(fresh(idx)[0], model(idx)[0])
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh(idx)[0], model(idx)[0])


def test_every_parameter_gets_a_gradient_and_moves():
    model = tiny_model(torch.float32)
    idx = tokens(2, 13)
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} receives no gradient"
        assert parameter.grad.abs().max() > 0, f"{name} receives a zero gradient"
    torch.optim.AdamW(model.parameters(), lr=1e-2).step()
    for name, parameter in model.named_parameters():
        assert not torch.equal(parameter, before[name]), f"{name} did not change"


def test_short_training_lowers_the_loss():
    model = tiny_model(torch.float32)
    text = torch.tensor([[0, 1, 2, 3, 4, 5, 4, 3, 2, 1] * 4])  # a periodic sequence
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        starts = torch.randint(0, 20, (4,), generator=generator)
        batch = torch.stack([text[0, s:s + 17] for s in starts.tolist()])
        _, loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_bad_input_raises_value_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="idx must lie in"):
        model(torch.tensor([[0, VOCAB]]))
    with pytest.raises(ValueError, match="idx must lie in"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match=r"dtype torch\.int64"):
        model(torch.zeros(1, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"dtype torch\.int64"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="2 dimensions"):
        model(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="targets must have the shape"):
        model(tokens(2, 5), tokens(2, 4))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(tokens(1, 3), -1)
    with pytest.raises(ValueError, match="divisible"):
        HopeLM(VOCAB, 10, 1, 3)
    with pytest.raises(ValueError, match="at least one token"):
        model(torch.zeros(1, 0, dtype=torch.int64))


def test_matched_models_have_close_parameter_counts():
    hope, transformer = matched_models(65, 64, 2, 4, context_length=64)
    assert isinstance(transformer, TransformerLM) and transformer.n_layers == 2
    hope_count, transformer_count = parameter_count(hope).total, parameter_count(transformer).total
    assert abs(hope_count - transformer_count) / hope_count < 0.05
    # A shared idx runs through both with the same interface.
    idx = tokens(1, 9)
    assert hope(idx)[0].shape == transformer(idx)[0].shape == (1, 9, 65)


def test_trace_passage_records_every_memory():
    model = tiny_model(torch.float32)
    idx = tokens(1, 10)
    trace = trace_passage(model, idx)
    assert len(trace.lr) == 2 and trace.lr[0].shape == (10, 2)
    assert trace.memory_drift[1].shape == (10, 2) and trace.cms_drift[0].shape == (10, 2)
    assert (trace.retention[0] > 0).all() and (trace.retention[0] < 1).all()
    # The fast CMS block (chunk 3) updates at token counts 3, 6, 9; the slow one (η = 0) never.
    assert trace.cms_updates[0] == [[], [3, 6, 9]]
    assert trace.cms_drift[0][:, 0].abs().max() == 0 and trace.cms_drift[0][-1, 1] > 0
    assert torch.isnan(trace.token_loss[-1]) and torch.isfinite(trace.token_loss[:-1]).all()


def test_train_presets_build_hope_at_the_transformers_size():
    from nlbook.train import PRESETS, build_model

    for preset in ("tiny", "small"):
        values = PRESETS[preset]
        sizes = {}
        for name in ("hope", "transformer"):
            model = build_model(name, 65, values["d_model"], values["n_layers"],
                                values["n_heads"], context_length=values["context_length"])
            sizes[name] = parameter_count(model).total
        assert isinstance(model, TransformerLM)
        assert abs(sizes["hope"] / sizes["transformer"] - 1) < 0.1, (preset, sizes)
    tiny = build_model("hope", 65, 64, 2, 4, context_length=64)
    assert isinstance(tiny, HopeLM) and tiny.context_length == 64


# ---- carrying a stream's state between training steps (nlbook.hope.carry) --------------------

def test_carried_state_continues_the_stream_exactly_and_restarts_fresh():
    model = tiny_model(cms_learning_rates=(0.02, 0.05))   # both CMS levels write in context
    ids = tokens(batch=3, length=2 * 24 + 1, seed=3)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    with torch.no_grad():
        whole, _ = model.stream(inputs)
        first, state = model.stream(inputs[:, :24], targets=targets[:, :24])
        carried = model.carry_over(state)
        second, _ = model.stream(inputs[:, 24:], model.resume_stream(carried),
                                 targets=targets[:, 24:])
        assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-12)
        assert 24 % model.stream_alignment() == 0
        restarted = model.resume_stream(carried, restart=torch.tensor([False, True, False]))
        mixed, _ = model.stream(inputs[:, 24:], restarted, targets=targets[:, 24:])
        fresh, _ = model.stream(inputs[1:2, 24:])
    assert torch.allclose(mixed[1], fresh[0], atol=1e-12)
    assert torch.equal(mixed[0], second[0]) and torch.equal(mixed[2], second[2])


def test_carried_state_keeps_the_path_to_the_initial_parameters():
    """Relative carry (the default): θ = θ₀ + Δ, so θ₀ gets a gradient in every later window and
    its updates reach the carried stream; the plain detach (relative=False) cuts both."""
    from nlbook.hope.carry import carry_over

    model = tiny_model(cms_learning_rates=(0.0, 0.05))
    ids = tokens(batch=2, length=17, seed=4)
    _, state = model.stream(ids[:, :8], targets=ids[:, 1:9])
    fast_level = model.blocks[0].cms.blocks[1]["w_in"]
    for relative in (True, False):
        carried = carry_over(model, state, relative=relative)
        logits, _ = model.stream(ids[:, 8:16], model.resume_stream(carried),
                                 targets=ids[:, 9:17])
        grad = torch.autograd.grad(logits.sum(), fast_level, allow_unused=True)[0]
        assert (grad is not None and bool(grad.abs().sum() > 0)) == relative
    carried = model.carry_over(state)
    before, _ = model.stream(ids[:, 8:16], model.resume_stream(carried), targets=ids[:, 9:17])
    with torch.no_grad():
        fast_level.add_(0.1 * torch.randn_like(fast_level))  # (a constant is normalised away)
    after, _ = model.stream(ids[:, 8:16], model.resume_stream(carried), targets=ids[:, 9:17])
    assert not torch.allclose(before, after)


def test_carried_state_round_trips_through_plain_tensors(tmp_path):
    from nlbook.hope.carry import CarriedState

    model = tiny_model()
    ids = tokens(batch=2, length=17, seed=5)
    with torch.no_grad():
        _, state = model.stream(ids[:, :8], targets=ids[:, 1:9])
        carried = model.carry_over(state)
        torch.save(carried.to_tensors(), tmp_path / "state.pt")
        loaded = CarriedState.from_tensors(torch.load(tmp_path / "state.pt", weights_only=True))
        a, _ = model.stream(ids[:, 8:16], model.resume_stream(carried))
        b, _ = model.stream(ids[:, 8:16], model.resume_stream(loaded))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="restart"):
        model.resume_stream(carried, restart=torch.tensor([True]))
    with pytest.raises(ValueError, match="carried"):
        model.resume_stream(state)
    with pytest.raises(ValueError, match="targets"):
        model.stream(ids[:, :8], targets=ids[:, :7])


# ---- the variants of chapter 7's ablation ----------------------------------------------------

VARIANTS = {
    "without DGD": dict(dgd=False),
    "without self-modification": dict(self_modifying=False),
    "Hope-Attention": dict(mixer="attention", attention_window=5),
    "linear attention": dict(mixer="linear_attention"),
    "gated delta rule": dict(mixer="delta"),
    "without in-context CMS updates": dict(cms_learning_rates=(0.0, 0.0)),
    "without CMS": dict(cms_chunk_sizes=(1,), cms_learning_rates=(0.0,), cms_hidden_dim=24),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_are_causal_batch_independent_and_stream_exactly(name):
    model = tiny_model(**VARIANTS[name])
    ids = tokens(batch=2, length=19, seed=6)
    with torch.no_grad():
        logits, _ = model(ids)
        changed = ids.clone()
        changed[:, 10:] = (changed[:, 10:] + 1) % VOCAB
        other, _ = model(changed)
        assert torch.equal(other[:, :10], logits[:, :10])              # causal
        swapped = ids.clone()
        swapped[1] = tokens(batch=1, length=19, seed=9)[0]
        assert torch.equal(model(swapped)[0][0], logits[0])             # batch independent
        first, state = model.stream(ids[:, :7])
        second, state = model.stream(ids[:, 7:12], state)
        third, _ = model.stream(ids[:, 12:], state)
    assert torch.allclose(torch.cat([first, second, third], 1), logits, atol=1e-12)


def test_sliding_window_attention_equals_masked_softmax():
    from nlbook.hope.mixers import SlidingWindowAttention

    mixer = SlidingWindowAttention(8, 2, window=4, generator=torch.Generator().manual_seed(0))
    mixer = mixer.double()
    x = torch.randn(2, 11, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, _ = mixer(x)
    q, k, v, _ = mixer.project(x)
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)
    distance = torch.arange(11)[:, None] - torch.arange(11)[None, :]
    scores = scores.masked_fill(~((distance >= 0) & (distance < 4)), -math.inf)
    assert torch.allclose(y, mixer.output(torch.softmax(scores, -1) @ v), atol=1e-12)


def test_gated_linear_attention_equals_its_token_loop():
    from nlbook.hope.mixers import GatedLinearAttention

    mixer = GatedLinearAttention(8, 2, chunk_size=3,
                                 generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(2, 10, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y, state = mixer(x)
    q, k, v, gate = mixer.project(x)
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    alpha = torch.sigmoid(gate + mixer.retention_bias).transpose(1, 2)
    memory, reads = torch.zeros(2, 2, 4, 4, dtype=torch.float64), []
    for t in range(10):
        memory = alpha[..., t, None, None] * memory + k[..., t, :, None] * v[..., t, None, :]
        reads.append((memory * q[..., t, :, None]).sum(-2))
    assert torch.allclose(y, mixer.output(torch.stack(reads, 2)), atol=1e-12)
    assert torch.allclose(state.memory, memory, atol=1e-12)
    with pytest.raises(ValueError, match="mixer"):
        HopeBlock(16, 2, mixer="lstm")


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_gated_delta_rule_mixer_equals_its_float64_token_loop(chunk_size):
    """HopeBlock(mixer="delta"): S_t = α_t (I − β_t k kᵀ) S_{t−1} + β_t k vᵀ, o_t = S_tᵀ q_t,
    chunked and not, the state carried across calls (a stream in three pieces)."""
    from nlbook.hope.mixers import GatedDeltaRule

    mixer = GatedDeltaRule(8, 2, chunk_size=chunk_size,
                           generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():  # gates that vary from token to token
        mixer.input_projection[:, 24:].normal_(0, 1, generator=torch.Generator().manual_seed(5))
    x = torch.randn(2, 10, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y_whole, state_whole = mixer(x)
    pieces, state = [], None
    for part in x.split([4, 1, 5], dim=1):
        y_part, state = mixer(part, state)
        pieces.append(y_part)
    q, k, v, gates = mixer.project(x)
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    beta = torch.sigmoid(gates[..., :2]).transpose(1, 2)
    alpha = torch.sigmoid(gates[..., 2:] + mixer.retention_bias).transpose(1, 2)
    memory, reads = torch.zeros(2, 2, 4, 4, dtype=torch.float64), []
    for t in range(10):
        key, value = k[..., t, :], v[..., t, :]
        memory = alpha[..., t, None, None] * memory
        error = value - (memory * key[..., :, None]).sum(-2)
        memory = memory + beta[..., t, None, None] * key[..., :, None] * error[..., None, :]
        reads.append((memory * q[..., t, :, None]).sum(-2))
    expected = mixer.output(torch.stack(reads, 2))
    assert torch.allclose(y_whole, expected, atol=1e-12)
    assert torch.allclose(torch.cat(pieces, 1), expected, atol=1e-12)
    assert torch.allclose(state_whole.memory, memory, atol=1e-12)
    assert torch.allclose(state.memory, memory, atol=1e-12)
    assert 0 < float(beta.detach().min()) and float(beta.detach().max()) < 1
