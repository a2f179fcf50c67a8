"""nlbook.setup(), smoke mode, the shared data file and argument checks."""

import random

import numpy as np
import pytest
import torch

import nlbook
from nlbook import data


def test_setup_seeds_everything_and_sets_one_thread(capsys):
    info = nlbook.setup(seed=123)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    nlbook.setup(seed=123, verbose=False)
    second = (random.random(), np.random.rand(), torch.rand(1).item())
    assert first == second
    assert info.threads == 1 == torch.get_num_threads()
    assert "torch" in info.versions
    printed = capsys.readouterr().out
    assert "seed 123" in printed and "torch" in printed


@pytest.mark.parametrize("bad", [{"seed": -1}, {"seed": 1.5}, {"threads": 0}])
def test_setup_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        nlbook.setup(**bad, verbose=False)


def test_smoke_switch(monkeypatch):
    monkeypatch.setenv("NLBOOK_SMOKE", "1")
    assert nlbook.is_smoke() and nlbook.smoke(1000, 10) == 10
    monkeypatch.setenv("NLBOOK_SMOKE", "0")
    assert not nlbook.is_smoke() and nlbook.smoke(1000, 10) == 1000


def test_tiny_shakespeare_is_verified():
    text = data.load_tiny_shakespeare()
    assert len(text) == 1_115_394 and len(set(text)) == 65


def test_tampered_or_missing_data_gives_a_clear_error(tmp_path):
    with pytest.raises(data.DataFileError, match="not found"):
        data.load_tiny_shakespeare(tmp_path)
    original = data.tiny_shakespeare_path().read_text()
    data.tiny_shakespeare_path(tmp_path).write_text(original.replace("ROMEO", "R0MEO", 1))
    with pytest.raises(data.DataFileError, match="sha256"):
        data.load_tiny_shakespeare(tmp_path)


def test_strict_warnings_turn_a_notebooks_own_warning_into_an_error(monkeypatch):
    """The tests set NLBOOK_STRICT_WARNINGS: a warning from a notebook cell (module __main__)
    or from nlbook fails the run instead of being printed to a learner."""
    import warnings

    import nlbook

    monkeypatch.setenv("NLBOOK_STRICT_WARNINGS", "1")
    with warnings.catch_warnings():
        nlbook.setup(verbose=False)
        with pytest.raises(DeprecationWarning):
            warnings.warn_explicit("old name", DeprecationWarning, "cell.py", 1,
                                   module="__main__")
        with pytest.raises(UserWarning):
            warnings.warn_explicit("careful", UserWarning, "x.py", 1, module="nlbook.cms")
        with pytest.warns(UserWarning, match="elsewhere"):  # a library's own: not ours to fix
            warnings.warn_explicit("elsewhere", UserWarning, "y.py", 1, module="matplotlib")
