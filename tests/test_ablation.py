"""Chapter 7's ablation: every switch removes exactly the part it names, and the benchmark's
table is well formed (tiny sizes; the real comparison is ``python -m nlbook.bench ablation``)."""

import pytest
import torch

from nlbook.claims import ABLATION_VARIANTS, ablation_configs, run_ablation
from nlbook.data import make_corpus
from nlbook.train import build_model


def _model(name: str, **overrides):
    config = ablation_configs(steps=1, variants=[name], d_model=16, n_heads=2, n_layers=1,
                              context_length=16)[name]
    options = dict(config.model_options, **overrides)
    return build_model(config.model, 20, config.d_model, config.n_layers, config.n_heads,
                       context_length=config.context_length, **options).double()


def _stream(model, length=70):
    ids = torch.randint(20, (2, length + 1), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.stream(ids[:, :-1], targets=ids[:, 1:])[1]


def test_without_in_context_cms_updates_the_cms_never_changes_in_a_stream():
    model = _model("without in-context CMS updates")
    state = _stream(model)
    for block, layer in zip(model.blocks, state.layers, strict=True):
        for index, level in enumerate(layer.cms.parameters):
            for name, value in level.items():
                assert torch.equal(value, block.cms.blocks[index][name].expand_as(value))
    changed = _stream(_model("HOPE")).layers[0].cms.parameters[1]["w_in"]
    assert not torch.equal(changed, _model("HOPE").blocks[0].cms.blocks[1]["w_in"]
                           .expand_as(changed))


def test_without_cms_is_one_plain_mlp_of_the_same_width():
    model = _model("without CMS (one plain MLP)")
    cms = model.blocks[0].cms
    assert cms.num_blocks == 1 and cms.learning_rates == (0.0,)
    assert cms.hidden_dim == 4 * 16  # as wide as the two CMS blocks of width 2d together


def test_other_switches_reach_the_mixer():
    assert _model("without DGD's erase (gated Hebbian write)").blocks[0].titans.dgd is False
    plain = _model("without DGD (plain gradient step on the L2 objective)").blocks[0].titans
    assert plain.write_rule == "gd" and not plain.dgd
    assert _model("without self-modification (plain Titans)").blocks[0].titans \
        .self_modifying is False
    assert _model("Hope-Attention (softmax attention)").blocks[0].mixer_name == "attention"
    assert _model("linear attention in place of Titans").blocks[0].mixer_name == \
        "linear_attention"
    configs = ablation_configs(steps=5)
    assert set(configs) == set(ABLATION_VARIANTS)
    assert configs["Transformer"].model == "transformer" and not \
        configs["Transformer"].carry_state
    assert configs["Transformer++"].model == "transformer++"
    assert all(config.carry_state for name, config in configs.items()
               if name not in ("Transformer", "Transformer++"))
    assert len({(config.steps, config.seed, config.batch_size, config.context_length)
                for config in configs.values()}) == 1
    with pytest.raises(ValueError, match="variants"):
        ablation_configs(steps=5, variants=["without attention"])
    with pytest.raises(ValueError, match="minutes"):
        ablation_configs(steps=5, minutes=1.0)


def test_run_ablation_end_to_end_on_a_small_text():
    text = "".join(f"To be or not to be, line {index}; that is the question.\n"
                   for index in range(300))
    names = ["HOPE", "without DGD's erase (gated Hebbian write)", "Transformer"]
    result = run_ablation(steps=2, variants=names, corpus=make_corpus(text), d_model=16,
                          n_heads=2, n_layers=1, context_length=16, batch_size=4,
                          stream_length=64, position_length=48, position_windows=2,
                          scored_characters=400, log=None)
    table = result.table()
    for name in names:
        assert name in table
    assert [row.name for row in result.rows] == names
    assert result.row("HOPE").curve.shape == (48,)
    assert result.row("Transformer").curve.shape == (16,)  # its context
    with pytest.raises(ValueError, match="name"):
        result.row("LSTM")


def test_plot_ablation():
    import matplotlib

    from nlbook.viz import plot_ablation

    figure = plot_ablation(["HOPE", "without DGD", "Transformer"], [1.70, 1.75, 1.72],
                           [1.82, 1.85, 1.76])
    assert isinstance(figure, matplotlib.figure.Figure)
    assert len(figure.axes[0].patches) == 6
    with pytest.raises(ValueError, match="stream"):
        plot_ablation(["HOPE"], [1.0, 2.0])
    with pytest.raises(ValueError, match="fresh"):
        plot_ablation(["HOPE"], [1.0], [1.0, 2.0])


def test_claims_map_covers_every_claim_with_a_valid_verdict():
    from nlbook.claims import CLAIMS, VERDICTS, Claim, claims_table

    topics = " ".join(claim.topic for claim in CLAIMS).lower()
    for needed in ("perplexity", "reasoning", "recall", "niah", "babilong", "formal",
                   "continual", "m3", "ablation", "context"):
        assert needed in topics, needed
    assert all(claim.verdict in VERDICTS for claim in CLAIMS)
    table = claims_table()
    assert table.count("\n") == len(CLAIMS) + 1 and "| **does not hold** |" in table
    for claim in CLAIMS:  # nothing left to fill in
        assert "MEASURED" not in claim.measured_here and "WHY" not in claim.why, claim.topic
    with pytest.raises(ValueError, match="verdict"):
        Claim("t", "c", "s", "m", "s", "holds, mostly", "w")


def test_a_diverging_variant_is_a_row_not_a_crash(monkeypatch):
    import nlbook.train as train_module
    from nlbook.train import TrainingDivergedError

    real_train = train_module.train

    def train(config, **kwargs):
        if config.model_options.get("dgd") is False:
            raise TrainingDivergedError("the loss is nan at step 6", 6, None)
        return real_train(config, **kwargs)

    monkeypatch.setattr(train_module, "train", train)
    text = "".join(f"line {index}: to be or not to be.\n" for index in range(300))
    result = run_ablation(steps=2, variants=["HOPE", "without DGD's erase (gated Hebbian write)"],
                          corpus=make_corpus(text), d_model=16, n_heads=2, n_layers=1,
                          context_length=16, batch_size=4, stream_length=64,
                          position_length=32, position_windows=2, scored_characters=300,
                          log=None)
    row = result.row("without DGD's erase (gated Hebbian write)")
    assert row.diverged_at == 6 and row.parameters > 0
    assert "diverged: the loss was not finite at step 6" in result.table()
