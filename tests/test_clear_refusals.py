"""Results that used to be silently wrong, and refusals that used to be unclear: each is now a
ValueError/TypeError naming the argument (or one ``error:`` line of a command)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nlbook
from nlbook import cms, recall, selfmod
from nlbook.optim import PreconditionedMomentum
from nlbook.train import TrainConfig


def test_dgd_closed_forms_refuse_an_lr_that_makes_the_system_singular():
    generator = torch.Generator().manual_seed(0)
    W, x, grad = (torch.randn(*shape, generator=generator) for shape in ((3, 4), (4,), (3,)))
    with pytest.raises(ValueError, match=r"lr and x are too large"):
        selfmod.dgd_proximal_closed_form(W, x, grad, lr=1e30)
    with pytest.raises(ValueError, match=r"lr and X are too large"):
        selfmod.dgd_step_rank_k(W, x[None], grad[None], lr=1e30)
    # In range: still the exact proximal step (dgd_step computes it without an inverse).
    torch.testing.assert_close(selfmod.dgd_proximal_closed_form(W, x, grad, lr=0.5),
                               selfmod.dgd_step(W, x, grad, 0.5), rtol=1e-4, atol=1e-5)


def test_continuum_memory_refuses_a_diverging_state_and_a_nan_loss():
    torch.manual_seed(0)
    memory = cms.ContinuumMemory(8, [1, 4], [0.1, 0.05])
    x = torch.randn(2, 1000, 8)
    with pytest.raises(ValueError, match="in-context state became non-finite"):
        memory(x, torch.randn(2, 1000, 8), loss_fn=cms.squared_error_loss)

    def nan_loss(outputs, targets):
        return ((outputs - targets) ** 2).sum(-1) * float("nan")

    with pytest.raises(ValueError, match="loss_fn returned non-finite"):
        memory(x[:, :10], x[:, :10], loss_fn=nan_loss)
    finite = memory(x[:, :10], x[:, :10], loss_fn=cms.squared_error_loss)
    assert torch.isfinite(finite.output).all()


def _chunk(lead=(2,), length=5, key_dim=3, value_dim=4):
    generator = torch.Generator().manual_seed(0)
    return dict(state=torch.randn(*lead, key_dim, value_dim, generator=generator),
                keys=F.normalize(torch.randn(*lead, length, key_dim, generator=generator), dim=-1),
                values=torch.randn(*lead, length, value_dim, generator=generator),
                beta=torch.rand(*lead, length, generator=generator),
                log_alpha=-0.1 * torch.rand(*lead, length, generator=generator))


@pytest.mark.parametrize("name", ["keys", "values", "beta", "log_alpha"])
def test_gated_delta_chunk_refuses_an_axis_more_or_fewer(name):
    arguments = _chunk()
    for changed in (arguments[name][None], arguments[name][0]):
        with pytest.raises(ValueError, match=name):
            selfmod.gated_delta_chunk(**dict(arguments, **{name: changed}))
    state, _ = selfmod.gated_delta_chunk(**arguments)
    assert state.shape == arguments["state"].shape


def test_gated_delta_chunk_refuses_beta_above_one():
    arguments = _chunk()
    with pytest.raises(ValueError, match="beta"):
        selfmod.gated_delta_chunk(**dict(arguments, beta=arguments["beta"] + 1.0))


def test_preconditioned_momentum_refuses_a_preconditioner_of_another_shape():
    weight = torch.nn.Parameter(torch.ones(3, 4))
    optimizer = PreconditionedMomentum([weight], lr=0.1,
                                       preconditioner=lambda grad, state: grad.sum(0))
    weight.grad = torch.ones(3, 4)
    with pytest.raises(ValueError, match="preconditioner must return"):
        optimizer.step()


def test_train_config_from_dict_refuses_an_unknown_key_with_close_matches():
    values = TrainConfig().to_dict()
    values["learning_rte"] = values.pop("learning_rate")
    with pytest.raises(ValueError, match=r"'learning_rte'.*did you mean 'learning_rate'"):
        TrainConfig.from_dict(values)
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_recall_stream_and_cms_record_check_their_indices():
    stream = recall.key_overwrite_stream(n_keys=3, n_writes=6, dim=4, seed=0)
    for step in (-1, 6, 1.5, "3"):
        with pytest.raises((ValueError, TypeError), match="step"):
            stream.latest_value_index(step)
    assert stream.latest_value_index(5).shape == (3,)
    record = cms.CMSRecord(2)
    for block in (-1, 2, None):
        with pytest.raises((ValueError, TypeError), match="block"):
            record.update_sizes(block)


def test_cross_entropy_loss_checks_outputs_and_readout():
    loss = cms.cross_entropy_loss(torch.nn.Linear(4, 7))
    targets = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="outputs"):
        loss(torch.randn(2, 5), targets)
    with pytest.raises(ValueError, match="readout"):
        loss(torch.randn(2, 5, 4, dtype=torch.float64), targets)
    with pytest.raises(ValueError, match="readout"):
        cms.cross_entropy_loss(lambda outputs: outputs[..., 0])(torch.randn(2, 5, 4), targets)
    assert loss(torch.randn(2, 5, 4), targets).shape == (2, 5)


def test_render_functions_check_their_arguments(tmp_path):
    from nlbook import render

    with pytest.raises(FileNotFoundError, match="notebook_path"):
        render.render_notebook(tmp_path / "missing.ipynb", tmp_path)
    text = tmp_path / "a.txt"
    text.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="notebook_path"):
        render.render_notebook(text, tmp_path)
    with pytest.raises(ValueError, match="output_dir"):
        render.render_book([], text)
    with pytest.raises(ValueError, match="notebooks"):
        render.render_book("notebooks/00_x.ipynb", tmp_path)
    with pytest.raises((ValueError, TypeError), match="timeout"):
        render.render_book([], tmp_path, timeout=0)


def test_exercise_helpers_check_their_arguments():
    from nlbook.data import CharVocabulary
    from nlbook.exercises import continuum_memory, hope_block, what_memory_buys

    vocabulary = CharVocabulary("abcde\n ")
    copier = what_memory_buys.WindowCopier(vocabulary)
    with pytest.raises(ValueError, match="idx"):
        copier(torch.full((2, 4), 9))
    with pytest.raises((ValueError, TypeError), match="vocabulary"):
        what_memory_buys.WindowCopier("abc")
    with pytest.raises(ValueError, match="weight"):
        continuum_memory.reference_chunk_update(torch.eye(3), torch.rand(4, 2),
                                                torch.rand(4, 2), 0.1)
    with pytest.raises(ValueError, match="weight"):
        hope_block.reference_causal_conv(torch.rand(2, 5, 3), torch.rand(4, 2))


def test_numpy_seeds_are_refused_by_name():
    with pytest.raises(TypeError, match="seed must be a Python int"):
        recall.key_overwrite_stream(n_keys=3, n_writes=6, dim=4, seed=np.int64(0))
    # numpy sizes are still fine (torch takes them)
    assert recall.key_overwrite_stream(n_keys=np.int64(3), n_writes=6, dim=4).keys.shape == (6, 4)


def test_a_corpus_too_short_for_the_context_is_refused_before_training(tmp_path):
    from nlbook.data import load_corpus
    from nlbook.train import train

    path = tmp_path / "short.txt"
    path.write_text("to be or not to be " * 4, encoding="utf-8")
    config = TrainConfig(d_model=8, n_layers=1, n_heads=2, context_length=64, batch_size=2,
                         steps=2, data=str(path))
    with pytest.raises(ValueError, match=r"corpus .*short\.txt is too short for context_length"):
        train(config, corpus=load_corpus(str(path)), progress=False, log=None)


def test_sample_positive_refuses_a_billion_characters():
    from nlbook.tasks.formal_languages import sample_positive

    with pytest.raises(ValueError, match="length"):
        sample_positive("anbn", 10 ** 9, np.random.default_rng(0))
    assert len(sample_positive("anbn", 8, np.random.default_rng(0))) == 8


def test_a_plain_pickle_checkpoint_gets_one_line_without_torch_warnings(tmp_path, recwarn):
    from test_fuzz import run_command_line

    from nlbook import sample

    path = tmp_path / "plain.pt"
    with open(path, "wb") as file:
        pickle.dump({"format": "nlbook-checkpoint-1", "model": {}}, file)
    status, _, err = run_command_line(sample.main, ["--checkpoint", str(path)])
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: refusing")
    assert not [warning for warning in recwarn if "pickle" in str(warning.message)]


def _course_copy(tmp_path: Path) -> Path:
    root = Path(nlbook.__file__).parents[1]
    copy = tmp_path / "course"
    (copy / "notebooks").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, copy / name)
    for source in sorted((root / "notebooks").glob("0[01]_*.py")):
        shutil.copy(source, copy / "notebooks" / source.name)
        shutil.copy(source.with_suffix(".ipynb"), copy / "notebooks" / f"{source.stem}.ipynb")
    return copy


def test_course_check_names_a_broken_notebook(tmp_path):
    from nlbook import course

    copy = _course_copy(tmp_path)
    notebook = sorted((copy / "notebooks").glob("*.ipynb"))[0]
    notebook.write_text("{ not json", encoding="utf-8")
    with pytest.raises(course.CourseError, match=notebook.name):
        course.check(copy)
    notebook.unlink()
    with pytest.raises(course.CourseError, match=f"{notebook.name} is missing"):
        course.check(copy)
