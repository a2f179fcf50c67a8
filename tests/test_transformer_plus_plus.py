"""Transformer++: causality, batch independence, rotary embedding relative, attention against
the textbook formula, training, the registry, and input validation."""

import math

import pytest
import torch
import torch.nn.functional as F

from nlbook.train import TrainConfig, build_model
from nlbook.train.checkpoints import _build_from_model_config
from nlbook.transformer import parameter_count, reference_causal_attention
from nlbook.transformer_plus_plus import (
    TransformerPlusPlusLM,
    apply_rotary,
    rotary_angles,
    swiglu_hidden_width,
)

VOCAB = 11


def small_model(dtype=torch.float64, **kwargs) -> TransformerPlusPlusLM:
    torch.manual_seed(0)
    options = dict(vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2, context_length=12)
    options.update(kwargs)
    return TransformerPlusPlusLM(**options).to(dtype)


def tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_shapes_loss_and_no_biases_no_positions():
    model = small_model()
    idx, targets = tokens(3, 10), tokens(3, 10, seed=1)
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, VOCAB)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, VOCAB),
                                                     targets.reshape(-1)))
    assert model(idx)[1] is None
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("bias") for name in names)
    assert not any("position" in name for name in names)  # rotary: no position table
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())


def test_causality_future_tokens_never_change_past_logits():
    model = small_model()
    idx = tokens(2, 12)
    logits, _ = model(idx)
    for t in range(12):
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1 + t) % VOCAB
        changed_logits, _ = model(changed)
        torch.testing.assert_close(changed_logits[:, :t + 1], logits[:, :t + 1],
                                   rtol=0, atol=1e-12)


def test_batch_independence():
    model = small_model()
    idx = tokens(4, 12)
    together, _ = model(idx)
    for row in range(4):
        alone, _ = model(idx[row:row + 1])
        torch.testing.assert_close(alone[0], together[row], rtol=0, atol=1e-12)


def test_rotary_is_a_rotation_of_each_pair_by_position_times_theta():
    x = torch.randn(3, 8, dtype=torch.float64)
    positions = torch.tensor([0.0, 1.0, 5.0])
    rotated = apply_rotary(x, positions)
    for t in range(3):
        for i in range(4):
            angle = positions[t].item() * 10000.0 ** (-2 * i / 8)
            a, b = x[t, 2 * i].item(), x[t, 2 * i + 1].item()
            assert rotated[t, 2 * i].item() == pytest.approx(a * math.cos(angle)
                                                             - b * math.sin(angle))
            assert rotated[t, 2 * i + 1].item() == pytest.approx(a * math.sin(angle)
                                                                 + b * math.cos(angle))
    torch.testing.assert_close(rotated[0], x[0])  # position 0: no rotation
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))  # a rotation
    assert rotary_angles(positions, 8).shape == (3, 4)


@pytest.mark.parametrize("offset", [1.0, 7.0, 1000.0])
def test_rotary_scores_depend_only_on_relative_position(offset):
    """q_t . k_s after rotation is unchanged when every position moves by the same offset."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 16, dtype=torch.float64, generator=generator)
    k = torch.randn(2, 6, 16, dtype=torch.float64, generator=generator)
    positions = torch.arange(6, dtype=torch.float64)
    scores = apply_rotary(q, positions) @ apply_rotary(k, positions).transpose(-1, -2)
    shifted = (apply_rotary(q, positions + offset)
               @ apply_rotary(k, positions + offset).transpose(-1, -2))
    torch.testing.assert_close(shifted, scores, rtol=1e-9, atol=1e-9)
    # ... and it does depend on the relative position (not a no-op)
    moved = apply_rotary(q, positions + offset) @ apply_rotary(k, positions).transpose(-1, -2)
    assert not torch.allclose(moved, scores)


def test_attention_matches_the_textbook_formula():
    """The block's SDPA attention equals softmax(q k^T / sqrt(d)) v with rotated q, k."""
    model = small_model()
    attention = model.blocks[0].attention
    x = torch.randn(2, 9, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    q, k, v = attention.qkv(x).split(16, dim=-1)
    heads = [t.view(2, 9, 2, 8).transpose(1, 2) for t in (q, k, v)]
    positions = torch.arange(9)
    expected = reference_causal_attention(apply_rotary(heads[0], positions),
                                          apply_rotary(heads[1], positions), heads[2])
    expected = attention.out(expected.transpose(1, 2).reshape(2, 9, 16))
    torch.testing.assert_close(attention(x), expected, rtol=1e-10, atol=1e-12)


def test_swiglu_width_matches_gelu_mlp_parameters():
    assert swiglu_hidden_width(48, 4) == 128
    model = small_model(n_layers=1, d_model=48, n_heads=4)
    mlp = model.blocks[0].mlp
    assert mlp.gate.weight.shape == (128, 48) and mlp.down.weight.shape == (48, 128)
    count = parameter_count(model)
    assert count.total == VOCAB * 48 + 4 * 48 * 48 + 3 * 128 * 48 + 3 * 48


def test_trains_loss_goes_down():
    torch.manual_seed(0)
    model = TransformerPlusPlusLM(VOCAB, 16, 1, 2, context_length=12)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    idx = tokens(8, 12)
    targets = torch.roll(idx, -1, dims=1)
    first = None
    for _ in range(40):
        _, loss = model(idx, targets)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first - 0.5


def test_generate_and_registry():
    model = small_model(dtype=torch.float32)
    out = model.generate(tokens(2, 3), 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 8)
    built = build_model("transformer++", VOCAB, 16, 1, 2, context_length=8, dropout=0.1)
    assert isinstance(built, TransformerPlusPlusLM) and built.context_length == 8
    config = TrainConfig.from_preset("tiny", model="transformer++", steps=1)
    assert config.model == "transformer++" and not config.carry_state
    rebuilt = _build_from_model_config({"name": "transformer++", "vocab_size": VOCAB,
                                        "d_model": 16, "n_layers": 1, "n_heads": 2,
                                        "context_length": 8, "options": {}})
    assert isinstance(rebuilt, TransformerPlusPlusLM)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(d_model=12, n_heads=2), "even head width"),     # d_head 6: fine; 12/4 = 3 below
    (dict(d_model=12, n_heads=4), "even head width"),
    (dict(d_model=10, n_heads=4), "even head width"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(rotary_base=0.5), "rotary_base"),
])
def test_bad_construction_raises_value_error(kwargs, needle):
    options = dict(vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2)
    options.update(kwargs)
    if kwargs == dict(d_model=12, n_heads=2):
        TransformerPlusPlusLM(**options)  # d_head = 6 is even: accepted
        return
    with pytest.raises(ValueError, match=needle):
        TransformerPlusPlusLM(**options)


def test_bad_input_raises_value_error():
    model = small_model()
    with pytest.raises(ValueError, match="context_length"):
        model(tokens(1, 13))
    with pytest.raises(ValueError, match="idx"):
        model(torch.full((1, 4), VOCAB))
    with pytest.raises(ValueError, match="targets"):
        model(tokens(1, 4), tokens(1, 5))
    with pytest.raises(ValueError, match="even"):
        apply_rotary(torch.randn(2, 5), torch.arange(2))
    with pytest.raises(ValueError, match="positions"):
        apply_rotary(torch.randn(3, 4), torch.arange(2))
    with pytest.raises(ValueError, match="positions"):
        rotary_angles(torch.tensor([0.0, math.nan]), 4)
