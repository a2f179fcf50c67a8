"""Levels (arXiv §3.2, Def. 2/3) mean one thing everywhere: ordered by update frequency, level 1
the fastest. The CMS's public level order, the labels its plots and widgets show, and the
diagrams must agree."""

from __future__ import annotations

import re

import matplotlib.figure
import pytest
import torch

from nlbook import levels, viz, widgets
from nlbook.cms import CMSRecord, ContinuumMemory, parameter_trajectory, squared_error_loss
from nlbook.hope import HopeLM, trace_passage
from nlbook.levels import Component, assign_levels, faster


def _level_in(label: str) -> int:
    match = re.search(r"level (\d+)", label)
    assert match, f"no level in the label {label!r}"
    return int(match.group(1))


# ---- Def. 2/3 ---------------------------------------------------------------------------------


def test_sgd_momentum_is_momentum_level_1_and_weights_level_2():
    system = levels.sgd_momentum_components()
    assert assign_levels(system) == {"momentum m": 1, "weights W": 2}
    assert faster("momentum m", "weights W", system)      # same frequency, W needs m at t
    assert not faster("weights W", "momentum m", system)


def test_adam_moments_share_a_level_and_m3s_slow_momentum_is_above_the_weights():
    assert assign_levels(levels.adam_components()) == {
        "first moment m": 1, "second moment v": 1, "weights W": 2}
    assert assign_levels(levels.m3_components(5)) == {
        "fast momentum M1": 1, "second moment V": 1, "weights W": 2, "slow momentum M2": 3}


def test_hope_levels_follow_frequency():
    system = levels.hope_components((256, 32), (0.0, 0.01), tokens_per_step=16 * 64)
    assigned = assign_levels(system)
    assert list(assigned.values()) == [1, 2, 3, 4]
    assert "CMS block 1" in assigned and "CMS block 0" not in assigned  # η = 0: with the weights
    assert "CMS block 0" in system[-1].name


def test_frequency_orders_before_dependencies_and_equal_frequencies_share_a_level():
    system = [Component("slow", 0.1, ()), Component("fast", 1.0, ("slow",)),
              Component("twin", 1.0, ())]
    assert assign_levels(system) == {"slow": 2, "fast": 1, "twin": 1}
    chain = [Component("a", 1.0), Component("b", 1.0, ("a",)), Component("c", 1.0, ("b",))]
    assert assign_levels(chain) == {"a": 1, "b": 2, "c": 3}
    assert faster("a", "c", chain)  # through b


@pytest.mark.parametrize("system, message", [
    ([Component("a", 1.0, ("b",)), Component("b", 1.0, ("a",))], "both ways"),
    ([Component("a", 1.0, ("z",))], "not a component"),
    ([Component("a", 1.0), Component("a", 0.5)], "unique"),
])
def test_bad_systems_raise_naming_the_problem(system, message):
    with pytest.raises(ValueError, match=message):
        assign_levels(system)


def test_bad_components_and_labels_raise():
    with pytest.raises(ValueError, match="frequency"):
        Component("a", -1.0)
    with pytest.raises(ValueError, match="level"):
        levels.level_label(0, 4)
    assert levels.level_label(1, 1) == "level 1 (every token)"
    assert levels.level_label(2, 32) == "level 2 (every 32 tokens)"
    assert levels.level_label(3) == "level 3 (η = 0, outer optimizer only)"


# ---- the CMS's public level order ---------------------------------------------------------------


def test_cms_levels_sort_blocks_by_frequency_not_by_chain_position():
    hope_like = ContinuumMemory(4, [256, 32], [0.0, 0.01], hidden_dim=8)
    assert hope_like.level_of_block == (2, 1)
    assert hope_like.blocks_of_level(1) == (1,) and hope_like.blocks_of_level(2) == (0,)
    assert hope_like.num_blocks == 2 and hope_like.num_levels == 2
    assert hope_like.update_frequencies == (0.0, 1 / 32)
    assert hope_like.block_labels() == ["level 2 (η = 0, outer optimizer only)",
                                        "level 1 (every 32 tokens)"]
    spectrum = ContinuumMemory(4, [1, 4, 16, 64], [0.01, 0.005, 0.002, 0.001], hidden_dim=8)
    assert spectrum.level_of_block == (1, 2, 3, 4)
    shared = ContinuumMemory(4, [8, 8, 2], [0.1, 0.1, 0.1], hidden_dim=8)
    assert shared.level_of_block == (2, 2, 1) and shared.blocks_of_level(2) == (0, 1)
    with pytest.raises(ValueError, match="level"):
        shared.blocks_of_level(3)


def test_the_old_name_levels_still_reaches_the_blocks_with_a_warning():
    cms = ContinuumMemory(4, [2], [0.1], hidden_dim=8)
    with pytest.warns(DeprecationWarning, match="blocks"):
        assert cms.levels is cms.blocks
    record = CMSRecord(1)
    with pytest.warns(DeprecationWarning, match="blocks"):
        assert record.levels is record.blocks


def test_a_state_dict_saved_with_the_old_names_loads():
    cms = ContinuumMemory(4, [2, 3], [0.1, 0.0], hidden_dim=8,
                          generator=torch.Generator().manual_seed(0))
    old = {key.replace("blocks.", "levels.", 1): value for key, value in cms.state_dict().items()}
    fresh = ContinuumMemory(4, [2, 3], [0.1, 0.0], hidden_dim=8)
    fresh.load_state_dict(old)
    for name, value in cms.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


# ---- plots and widgets show the same levels, in the same direction ------------------------------


def _hope_like_stream():
    cms = ContinuumMemory(4, [6, 2, 3], [0.0, 0.05, 0.05], hidden_dim=8, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    record = CMSRecord(cms.num_blocks, keep_deltas=True)
    out = cms(x, torch.zeros_like(x), loss_fn=squared_error_loss, record=record)
    return cms, record, out


def _expected_order(cms: ContinuumMemory) -> list[str]:
    """The blocks' labels in the direction every figure uses: level 1 first."""
    labels = cms.block_labels()
    order = sorted(range(cms.num_blocks), key=lambda block: (cms.level_of_block[block], block))
    return [labels[block] for block in order]


def test_update_ticks_and_explorer_label_every_row_by_its_level_level_1_first():
    cms, record, out = _hope_like_stream()
    assert cms.level_of_block == (3, 1, 2)
    steps = [record.update_steps(block) for block in range(cms.num_blocks)]
    figure = viz.plot_update_ticks(steps, 12, labels=cms.block_labels(),
                                   levels=cms.level_of_block)
    ticks = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert ticks == _expected_order(cms)                         # bottom to top
    assert [_level_in(tick) for tick in ticks] == [1, 2, 3]
    trajectories = [parameter_trajectory(record, block, "w_in", cms.blocks[block]["w_in"])
                    for block in range(cms.num_blocks)]
    figure = viz.plot_cms_explorer(trajectories, steps, out.losses[0], time=6,
                                   labels=cms.block_labels(), levels=cms.level_of_block)
    titles = [axis.get_title().split("\n")[0].split(":")[0]  # the title's first line
              for axis in figure.axes[:cms.num_blocks]]
    assert titles == _expected_order(cms)                        # left to right
    # The widget draws the very same call (explore renders it once in headless mode).
    box = widgets.explore(viz.plot_cms_explorer,
                          {"time": widgets.int_slider(6, 0, 11, description="token")},
                          fixed={"trajectories": trajectories, "steps_per_block": steps,
                                 "losses": out.losses[0], "labels": cms.block_labels(),
                                 "levels": cms.level_of_block})
    assert box is not None


def test_without_levels_the_plots_never_invent_level_numbers():
    cms, record, _ = _hope_like_stream()
    steps = [record.update_steps(block) for block in range(cms.num_blocks)]
    figure = viz.plot_update_ticks(steps, 12)
    ticks = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert ticks == ["block 0", "block 1", "block 2"]
    figure = viz.plot_update_ticks(steps, 12, levels=cms.level_of_block)
    ticks = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert ticks == ["level 1 (block 1)", "level 2 (block 2)", "level 3 (block 0)"]
    with pytest.raises(ValueError, match="levels"):
        viz.plot_update_ticks(steps, 12, levels=[1, 2])


def test_hope_trace_and_its_plot_use_the_cms_levels():
    model = HopeLM(11, 16, 1, 2, context_length=16, seed=0, chunk_size_memory=4,
                   chunk_size_others=2, cms_chunk_sizes=(8, 3), cms_learning_rates=(0.0, 0.05),
                   cms_hidden_dim=12)
    idx = torch.randint(11, (1, 10), generator=torch.Generator().manual_seed(0))
    trace = trace_passage(model, idx)
    cms = model.blocks[0].cms
    layer = trace.layer(0)
    assert layer["cms_levels"] == cms.level_of_block == (2, 1)
    assert layer["cms_labels"] == cms.block_labels()
    figure = viz.plot_hope_timescales(**layer, token=5)
    legend = [text.get_text() for text in figure.axes[4].get_legend().get_texts()]
    assert [entry.split(":")[0] for entry in legend] == [f"CMS {label}" for label in
                                                         _expected_order(cms)]
    bars = [label.get_text() for label in figure.axes[5].get_xticklabels()]
    assert bars[-2:] == ["CMS level 1", "CMS level 2"]


def test_diagrams_colour_and_label_blocks_by_level():
    figure = viz.plot_cms_chain((256, 32), (0.0, 0.01))
    texts = [text.get_text() for text in figure.axes[0].texts]
    block_texts = [text for text in texts if text.startswith("block ")]
    assert [_level_in(text) for text in block_texts] == [2, 1]
    assert block_texts[0].split("\n")[1] == "level 2"
    assert viz.level_colour(1) == viz.LEVEL_COLOURS[0]
    patches = [patch for patch in figure.axes[0].patches if patch.get_facecolor()[3] > 0.1]
    colours = {matplotlib.colors.to_hex(patch.get_edgecolor()) for patch in patches}
    assert {viz.level_colour(1), viz.level_colour(2)} <= colours
    figure = viz.plot_level_map(levels.sgd_momentum_components())
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert any(text.startswith("level 1\nevery step") for text in texts)
    rows = {text.split("\n")[0]: text for text in texts if text.startswith(("momentum", "weights"))}
    assert set(rows) == {"momentum m", "weights W"}
    with pytest.raises(ValueError, match="levels"):
        viz.plot_level_map(levels.sgd_momentum_components(),
                           levels={"momentum m": 2, "weights W": 1})
    figure = viz.plot_hope_block(cms_chunk_sizes=(256, 32), cms_learning_rates=(0.0, 0.01))
    assert isinstance(figure, matplotlib.figure.Figure)
    table = figure.axes[1].tables[0]
    cells = {(row, column): cell.get_text().get_text()
             for (row, column), cell in table.get_celld().items()}
    by_memory = {cells[(row, 0)]: cells[(row, 4)] for row in range(1, 7)}
    assert by_memory["main memory"] == "1" and by_memory["CMS block 1"] == "2"
    assert by_memory["CMS block 0"] == "4"
    for figure in (viz.plot_level_map(levels.hope_components(), unit="token"),
                   viz.plot_level_map(levels.m3_components())):
        widgets.render_once(lambda figure=figure: figure)
    with pytest.raises(ValueError, match="chunk_sizes"):
        viz.plot_cms_chain((0,), (0.1,))
