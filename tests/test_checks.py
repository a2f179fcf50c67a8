"""Bad input gets one clear error (issue 17): each reproduction of the issue, as a test, and the
validation layer itself (nlbook._checks, nlbook._cli)."""

from __future__ import annotations

import math

import pytest
import torch
from _fuzz import memory_limit

import nlbook.viz
from nlbook._checks import (
    ArgumentTypeError,
    check_device,
    check_memory,
    check_writable_path,
    data_checks_enabled,
    entry_point,
)
from nlbook.cms import ContinuumMemory, squared_error_loss
from nlbook.data import load_text_file, make_corpus
from nlbook.hope import CausalDepthwiseConv, HopeBlock, HopeLM
from nlbook.memory import delta_rule, linear_attention, titans_memory
from nlbook.selfmod import dgd_step
from nlbook.train import (
    CheckpointError,
    TrainConfig,
    TrainingDivergedError,
    load_checkpoint,
    load_model,
    train,
)
from nlbook.transformer import TransformerLM, language_model_loss, sample_next_token


@pytest.fixture
def corpus_path(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question.\n" * 40, encoding="utf-8")
    return path


def tiny_config(corpus_path, **overrides) -> TrainConfig:
    values = dict(d_model=8, n_layers=1, n_heads=2, context_length=8, batch_size=2, steps=2,
                  warmup_steps=0, eval_interval=2, eval_batches=1, data=str(corpus_path))
    values.update(overrides)
    return TrainConfig(**values)


# ---- the validation layer -----------------------------------------------------------------


def test_type_errors_are_both_type_and_value_errors():
    with pytest.raises(TypeError, match="chunk_size"):
        linear_attention(*[torch.zeros(1, 1, 2, 2)] * 3, chunk_size="4")
    with pytest.raises(ValueError, match="chunk_size"):
        linear_attention(*[torch.zeros(1, 1, 2, 2)] * 3, chunk_size="4")
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


def test_value_checks_run_in_the_outermost_entry_point_only():
    seen = []

    @entry_point
    def inner():
        seen.append(data_checks_enabled())

    @entry_point
    def outer():
        seen.append(data_checks_enabled())
        inner()

    outer()
    inner()
    assert seen == [True, False, True]


def test_memory_device_and_path_checks(tmp_path):
    with pytest.raises(ValueError, match="d_model too large"):
        check_memory("d_model", 10 ** 15)
    with pytest.raises(ValueError, match="device"):
        check_device("device", "bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("device", "cuda")
    assert check_writable_path("path", tmp_path / "new" / "file.png") == tmp_path / "new" / \
        "file.png"
    with pytest.raises(ValueError, match="cannot be written"):
        check_writable_path("path", "/proc/nlbook/file.png")
    with pytest.raises(ValueError, match=r"\.png"):
        check_writable_path("path", tmp_path / "file.xyz", suffixes=["png"])


# ---- 2: train() never returns a non-finite model ------------------------------------------


@pytest.mark.parametrize("checkpoint", [False, True])
def test_an_infinite_learning_rate_diverges_with_a_named_step(corpus_path, tmp_path,
                                                              checkpoint):
    path = str(tmp_path / "run.pt") if checkpoint else None
    config = tiny_config(corpus_path, learning_rate=math.inf, steps=1, checkpoint=path)
    with pytest.raises(TrainingDivergedError, match="step 1") as caught:
        train(config, progress=False, log=None)
    assert caught.value.step == 1
    assert not (tmp_path / "run.pt").exists()  # a non-finite model is never saved


def test_a_huge_learning_rate_diverges_too(corpus_path):
    with pytest.raises(TrainingDivergedError, match="step"):
        train(tiny_config(corpus_path, learning_rate=1e30, steps=3), progress=False, log=None)


# ---- 4: checkpoints -----------------------------------------------------------------------


@pytest.fixture
def checkpoint(corpus_path, tmp_path):
    path = tmp_path / "model.pt"
    train(tiny_config(corpus_path, checkpoint=str(path)), progress=False, log=None)
    return path


def test_a_device_problem_is_reported_as_a_device_problem(checkpoint):
    with pytest.raises(ValueError, match="map_location") as caught:
        load_checkpoint(checkpoint, map_location="bogus")
    assert "pickled" not in str(caught.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available") as caught:
            load_model(checkpoint, device="cuda")
        assert not isinstance(caught.value, CheckpointError)


@pytest.mark.parametrize("key", ["model_config", "model", "vocabulary"])
def test_a_checkpoint_missing_a_key_is_a_checkpoint_error_naming_it(checkpoint, tmp_path, key):
    state = load_checkpoint(checkpoint)
    del state[key]
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match=key):
        load_model(broken)


def test_a_foreign_checkpoint_is_a_checkpoint_error(checkpoint, tmp_path):
    state = load_checkpoint(checkpoint)
    state["model_config"] = dict(state["model_config"], name="hope", options={})
    foreign = tmp_path / "foreign.pt"
    torch.save(state, foreign)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(foreign)
    state["model_config"] = dict(state["model_config"], name="transformer", d_model=16)
    torch.save(state, foreign)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(foreign)


class Payload:
    ran = False

    def __reduce__(self):
        return (Payload.run, ())

    @staticmethod
    def run():
        Payload.ran = True


def test_a_reduce_payload_never_runs(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "nlbook-checkpoint-1", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(path)
    assert not Payload.ran


def test_resuming_a_checkpoint_missing_keys_is_a_checkpoint_error(checkpoint, corpus_path):
    state = load_checkpoint(checkpoint)
    del state["optimizer"]
    torch.save(state, checkpoint)
    with pytest.raises(CheckpointError, match="optimizer"):
        train(tiny_config(corpus_path, checkpoint=str(checkpoint)), resume=True,
              progress=False, log=None)


def test_an_unwritable_checkpoint_is_found_before_training(corpus_path):
    steps = []
    with pytest.raises(ValueError, match="checkpoint"):
        train(tiny_config(corpus_path, checkpoint="/proc/nlbook/run.pt"), progress=False,
              log=None, after_step=lambda step, model: steps.append(step))
    assert steps == []


# ---- 5: the HOPE block --------------------------------------------------------------------


def test_causal_conv_refuses_a_buffer_of_the_wrong_window():
    x = torch.randn(2, 6, 4)
    with pytest.raises(ValueError, match="buffer"):
        CausalDepthwiseConv(4, 3)(x, torch.randn(2, 5, 4))
    y, buffer = CausalDepthwiseConv(4, 3)(x, torch.randn(2, 2, 4))
    assert y.shape == (2, 6, 4) and buffer.shape == (2, 2, 4)


def test_hope_block_arguments_are_named_publicly():
    with pytest.raises(ValueError, match="heads"):
        HopeBlock(8, 0)
    with pytest.raises(ValueError, match="memory_hidden"):
        HopeBlock(8, 2, memory_hidden=0)
    with pytest.raises(ValueError, match="cms_hidden_dim"):
        HopeBlock(8, 2, cms_hidden_dim=0)


def test_float64_input_to_a_float32_block_is_refused_by_name():
    block = HopeBlock(8, 2, chunk_size_memory=4, chunk_size_others=2, cms_chunk_sizes=(4,),
                      cms_learning_rates=(0.0,))
    with pytest.raises(ValueError, match=r"x must have the block's dtype torch\.float32"):
        block(torch.randn(1, 5, 8, dtype=torch.float64))
    assert block.double()(torch.randn(1, 5, 8, dtype=torch.float64)).output.dtype == \
        torch.float64


def test_stream_with_a_state_of_another_batch_is_refused():
    model = HopeLM(7, 8, 1, 2, chunk_size_memory=4, chunk_size_others=2, cms_chunk_sizes=(4,),
                   cms_learning_rates=(0.0,))
    _, state = model.stream(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="state"):
        model.stream(torch.zeros(3, 3, dtype=torch.int64), state)


def test_unknown_hope_options_are_named():
    with pytest.raises(TypeError, match="bogus"):
        HopeLM(7, 8, 1, 2, bogus=1)
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig(model="hope", model_options={"bogus": 1})


# ---- 6: DGD step sizes --------------------------------------------------------------------


def test_dgd_step_refuses_an_lr_that_would_broadcast_or_is_nan():
    W, x, grad_y = torch.randn(3, 4), torch.randn(4), torch.randn(3)
    with pytest.raises(ValueError, match="lr"):
        dgd_step(W, x, grad_y, torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="lr"):
        dgd_step(W, x, grad_y, math.nan)
    with pytest.raises(ValueError, match="retention"):
        dgd_step(W, x, grad_y, 0.5, retention=math.nan)
    assert dgd_step(W, x, grad_y, torch.tensor(0.5)).shape == (3, 4)


# ---- 7: a loss with no counted target -----------------------------------------------------


@pytest.mark.parametrize("targets", [torch.full((2, 3), -1), torch.zeros(2, 0, dtype=torch.int64),
                                     torch.zeros(0, 3, dtype=torch.int64)])
def test_a_loss_without_counted_targets_raises(targets):
    logits = torch.randn(*targets.shape, 5)
    with pytest.raises(ValueError, match="targets"):
        language_model_loss(logits, targets)
    model = TransformerLM(5, 8, 1, 2, context_length=8)
    if targets.numel():
        with pytest.raises(ValueError, match="targets"):
            model(torch.zeros_like(targets), targets)


# ---- 8: chunk sizes larger than T ---------------------------------------------------------


def test_chunks_longer_than_the_sequence_cost_what_the_sequence_costs():
    q = torch.randn(1, 1, 5, 3, dtype=torch.float64)
    gate = torch.full((1, 1, 5), 0.5, dtype=torch.float64)
    with memory_limit(2 * 1024 ** 3):  # the old C x C mask of C = 100000 was 10 GB
        for chunk in (100000, 5):
            linear_out, _ = linear_attention(q, q, q, chunk_size=chunk)
            delta_out, _ = delta_rule(q, q, q, gate, chunk_size=chunk)
            titans_out, _ = titans_memory(q, q, q, gate, gate, 0.1 * gate, chunk_size=chunk)
            if chunk == 100000:
                reference = (linear_out, delta_out, titans_out)
    for big, exact in zip(reference, (linear_out, delta_out, titans_out), strict=True):
        torch.testing.assert_close(big, exact)


# ---- 9: sampling, TrainConfig, bools, the byte-order mark, viz.__all__ -------------------------


def test_sampling_with_a_tiny_temperature_is_greedy():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 0.5]])
    token = sample_next_token(logits, temperature=1e-40,
                              generator=torch.Generator().manual_seed(0))
    assert token.view(-1).tolist() == [1, 0]


def test_sampling_refuses_nan_and_plus_inf_and_rows_of_minus_inf():
    for bad in ([[math.nan, 0.0]], [[math.inf, 0.0]], [[-math.inf, -math.inf]]):
        with pytest.raises(ValueError, match="logits"):
            sample_next_token(torch.tensor(bad))
    masked = torch.tensor([[-math.inf, 0.0, -math.inf]])
    assert sample_next_token(masked).item() == 1  # -inf masks a token


@pytest.mark.parametrize("field,value", [("weight_decay", -1.0), ("beta1", 1.5), ("beta2", 1.0),
                                         ("minutes", math.inf), ("grad_clip", math.nan),
                                         ("steps", True), ("d_model", True), ("seed", False),
                                         ("device", "bogus"), ("optimizer", "bogus")])
def test_train_config_refuses(field, value):
    values = {field: value}
    if field == "minutes":
        values["steps"] = None
    with pytest.raises(ValueError, match=field):
        TrainConfig(**values)


def test_bools_are_not_ints():
    with pytest.raises(TypeError, match="d_model"):
        HopeLM(7, True, 1, 1)
    with pytest.raises(TypeError, match="dim"):
        ContinuumMemory(True, [1], [0.0])
    with pytest.raises(TypeError, match="chunk_size"):
        linear_attention(*[torch.zeros(1, 1, 2, 2)] * 3, chunk_size=True)


def test_a_byte_order_mark_is_not_a_character(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_text("\ufeffhello\n", encoding="utf-8")
    text = load_text_file(path)
    assert text == "hello\n"
    assert "\ufeff" not in make_corpus("\ufeffhello").vocabulary.chars


def test_viz_exports_every_plot():
    plots = [name for name in dir(nlbook.viz) if name.startswith("plot_")]
    assert plots and set(plots) <= set(nlbook.viz.__all__)


def test_nan_inputs_are_refused_at_the_public_entry_point_only():
    x = torch.randn(1, 4, 4)
    cms = ContinuumMemory(4, [2], [0.1])
    with pytest.raises(ValueError, match="x must hold only finite values"):
        cms(x * math.nan, torch.zeros(1, 4, 4), loss_fn=squared_error_loss)
    # Inside a model the same NaN reaches the loss, where training stops on it.
    model = HopeLM(7, 8, 1, 2, chunk_size_memory=4, chunk_size_others=2, cms_chunk_sizes=(4,),
                   cms_learning_rates=(0.1,))
    with torch.no_grad():
        model.token_embedding.weight.fill_(math.nan)
    _, loss = model(torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, 4, dtype=torch.int64))
    assert torch.isnan(loss)
