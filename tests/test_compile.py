"""The opt-in compiled HOPE: the training forward is one graph (no graph breaks), a compiled
copy gives the eager results, and `TrainConfig.compile` / `--compile` reach torch.compile.

Cheap on purpose: dynamo's trace (``torch._dynamo.explain``) and the ``aot_eager`` backend
(the same graph capture and AOT autograd as the default inductor backend, without generating
and compiling C++), on a one-layer model. A real inductor compile takes minutes: that is
measured by ``python -m nlbook.bench hope --compile``, not tested.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nlbook.hope import HopeLM
from nlbook.train import TrainConfig, train
from nlbook.transformer import TransformerLM


def tiny_hope() -> HopeLM:
    # Two CMS segments and one Titans chunk per call: every code path of a training forward.
    return HopeLM(65, 16, 1, 2, context_length=16, cms_chunk_sizes=(16, 8))


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(65, (2, 16), generator=generator),
            torch.randint(65, (2, 16), generator=generator))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("make", [tiny_hope, lambda: TransformerLM(65, 16, 1, 2,
                                                                   context_length=16)],
                         ids=["hope", "transformer"])
def test_training_forward_has_no_graph_breaks(make):
    model = make().train()
    explanation = torch._dynamo.explain(model)(*batch())
    reasons = [reason.reason for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


def test_compiled_hope_gives_the_eager_loss_and_gradients():
    eager = tiny_hope().train()
    compiled_copy = copy.deepcopy(eager)
    compiled = torch.compile(compiled_copy, backend="aot_eager", fullgraph=True)
    inputs, targets = batch()
    _, loss = eager(inputs, targets)
    loss.backward()
    _, compiled_loss = compiled(inputs, targets)
    compiled_loss.backward()
    assert abs(loss.item() - compiled_loss.item()) < 1e-6
    for (name, a), b in zip(eager.named_parameters(), compiled_copy.parameters(), strict=True):
        assert (a.grad - b.grad).abs().max() < 1e-6, name


def test_eager_is_the_default_and_compile_is_checked():
    assert TrainConfig().compile is False
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile="yes")


def test_train_compile_runs_the_training_forward_through_torch_compile(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 40, encoding="utf-8")
    compiled_modules = []
    real_compile = torch.compile

    def compile_cheaply(model, **options):
        compiled_modules.append(model)
        return real_compile(model, backend="aot_eager", fullgraph=True)

    monkeypatch.setattr(torch, "compile", compile_cheaply)
    config = TrainConfig(model="hope", d_model=16, n_layers=1, n_heads=2, context_length=16,
                         batch_size=2, steps=2, warmup_steps=1, eval_interval=2,
                         eval_batches=1, data=str(corpus), checkpoint=str(tmp_path / "h.pt"),
                         compile=True, model_options={"cms_chunk_sizes": [16, 8]})
    result = train(config, progress=False, log=None)
    assert len(compiled_modules) == 1 and compiled_modules[0] is result.model
    checkpoint = torch.load(tmp_path / "h.pt", weights_only=True)
    assert checkpoint["config"]["compile"] is True
    assert not any(key.startswith("_orig_mod") for key in checkpoint["model"])
    eager = train(TrainConfig.from_dict(dict(config.to_dict(), compile=False, checkpoint=None)),
                  progress=False, log=None)
    assert abs(eager.history["train_loss"][-1] - result.history["train_loss"][-1]) < 1e-5


def test_cli_compile_flag_sets_the_config():
    from nlbook.train.cli import _config_from_args, _parser

    assert _config_from_args(_parser().parse_args(["--compile"])).compile is True
    assert _config_from_args(_parser().parse_args([])).compile is False
