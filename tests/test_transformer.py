"""TransformerLM: causality, batch independence, attention against the textbook formula,
gradients, save/load, sampling filters and input validation."""

import pytest
import torch
import torch.nn.functional as F

from nlbook.transformer import (
    TransformerLM,
    generate_tokens,
    parameter_count,
    reference_causal_attention,
    sample_next_token,
)

VOCAB = 11


def small_model(dtype=torch.float64, **kwargs) -> TransformerLM:
    torch.manual_seed(0)
    options = dict(vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2, context_length=12)
    options.update(kwargs)
    return TransformerLM(**options).to(dtype)


def tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_loss_is_mean_cross_entropy():
    model = small_model()
    idx, targets = tokens(3, 10), tokens(3, 10, seed=1)
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, VOCAB)
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    _, no_loss = model(idx)
    assert no_loss is None


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


def test_attention_matches_manual_softmax_attention_in_float64():
    model = small_model()
    attention = model.blocks[0].attention
    x = torch.randn(2, 9, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    q, k, v = attention.heads(x)
    expected = reference_causal_attention(q, k, v).transpose(1, 2).reshape(2, 9, 16)
    torch.testing.assert_close(attention(x), attention.out(expected), rtol=0, atol=1e-12)


def test_tied_embeddings_and_parameter_count():
    model = TransformerLM(65, 128, 4, 4, context_length=64)
    assert model.lm_head.weight is model.token_embedding.weight
    count = parameter_count(model)
    # nanoGPT's CPU baby GPT: 12 d^2 per block = 786,432 plus norms; 0.80M without positions.
    assert count.non_embedding == 4 * 12 * 128 * 128 + (2 * 4 + 1) * 128
    assert count.total == count.non_embedding + 65 * 128 + 64 * 128
    assert abs((count.total - 64 * 128) / 1e6 - 0.80) < 0.01


def test_state_dict_round_trip_gives_identical_logits(tmp_path):
    model = small_model(dtype=torch.float32)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(123)  # a different initialisation, overwritten by the load
    fresh = TransformerLM(VOCAB, 16, 2, 2, context_length=12)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    idx = tokens(2, 12)
    assert torch.equal(model(idx)[0], fresh(idx)[0])


def test_every_parameter_gets_a_gradient_and_changes_after_one_step():
    model = small_model(dtype=torch.float32, bias=True)
    idx = tokens(4, 12)  # T = context_length, so every position embedding is used
    _, loss = model(idx, tokens(4, 12, seed=5))
    loss.backward()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    for name, parameter in model.named_parameters():
        assert not torch.equal(parameter, before[name]), name


def test_short_training_run_lowers_the_loss():
    torch.manual_seed(0)
    model = TransformerLM(VOCAB, 32, 1, 2, context_length=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # A deterministic pattern (next token = current + 1) that attention can learn quickly.
    starts = torch.randint(VOCAB, (16, 1), generator=torch.Generator().manual_seed(0))
    sequence = (starts + torch.arange(17)) % VOCAB
    idx, targets = sequence[:, :-1], sequence[:, 1:]
    first = float(model(idx, targets)[1].detach())
    for _ in range(60):
        _, loss = model(idx, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first


@pytest.mark.parametrize(
    ("make_input", "match"),
    [
        (lambda: tokens(2, 5).float(), "idx must have dtype torch.int64"),
        (lambda: tokens(1, 5)[0], "idx must have 2 dimensions"),
        (lambda: torch.full((1, 5), VOCAB), r"idx must lie in \[0, 11\)"),
        (lambda: torch.full((1, 5), -1), r"idx must lie in \[0, 11\)"),
        (lambda: tokens(1, 13), "idx has T = 13 tokens, more than context_length = 12"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(make_input, match):
    with pytest.raises(ValueError, match=match):
        small_model()(make_input())


def test_bad_targets_and_constructor_arguments():
    model = small_model()
    with pytest.raises(ValueError, match="targets must have the shape of idx"):
        model(tokens(1, 5), tokens(1, 4))
    with pytest.raises(ValueError, match="d_model"):
        TransformerLM(VOCAB, 10, 1, 3)
    with pytest.raises(ValueError, match="dropout"):
        TransformerLM(VOCAB, 8, 1, 2, dropout=1.5)


def test_generate_crops_to_context_and_is_reproducible():
    model = small_model(dtype=torch.float32)
    prompt = tokens(2, 4)
    first = model.generate(prompt, 20, generator=torch.Generator().manual_seed(1))
    second = generate_tokens(model, prompt, 20, generator=torch.Generator().manual_seed(1))
    assert first.shape == (2, 24)  # longer than context_length = 12: the input was cropped
    assert torch.equal(first[:, :4], prompt)
    assert torch.equal(first, second)
    assert int(first.max()) < VOCAB


def test_sampling_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next_token(logits, top_k=2, generator=generator)
                       for _ in range(300)])
    assert set(draws.flatten().tolist()) <= {0, 1}
    draws = torch.cat([sample_next_token(logits, top_p=0.7, generator=generator)
                       for _ in range(300)])
    assert set(draws.flatten().tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3
    draws = torch.cat([sample_next_token(logits, top_p=0.5, generator=generator)
                       for _ in range(50)])
    assert set(draws.flatten().tolist()) == {0}
    assert int(sample_next_token(logits, temperature=0)) == 0
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(logits, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(logits, temperature=-1.0)
