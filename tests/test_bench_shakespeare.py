"""Chapter 6: the equal-time HOPE vs Transformer benchmark and the exercise checkers.

Tiny sizes only (a few seconds); the real 5-minute benchmark is a command, never a test.
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
import pytest
import torch

from nlbook.exercises import tiny_shakespeare as ex
from nlbook.transformer import parameter_count, sample_next_token

# ----------------------------------------------------------------------------- benchmark


def _arguments(*argv: str) -> argparse.Namespace:
    from nlbook.bench import _shakespeare_arguments

    parser = argparse.ArgumentParser()
    _shakespeare_arguments(parser)
    return parser.parse_args(list(argv))


def test_benchmark_is_registered_with_the_issue_defaults():
    from nlbook.bench import BENCHMARKS

    assert "shakespeare" in BENCHMARKS
    args = _arguments()
    assert args.minutes == 5.0 and args.context_length == 64 and args.batch_size == 12


def test_configs_match_parameters_and_share_everything_but_the_width():
    pytest.importorskip("nlbook.hope")
    from nlbook.bench import shakespeare_configs
    from nlbook.train import build_model

    # Widths move in steps of n_heads, so very small models cannot match closely: use d = 96
    # (at d = 64 the closest Transformer width, 60, is 5.3 % smaller than HOPE).
    args = _arguments("--d-model", "96", "--n-layers", "2", "--context-length", "32",
                      "--minutes", "0.5")
    configs = shakespeare_configs(args, vocab_size=65)
    hope, transformer = configs["hope"].to_dict(), configs["transformer"].to_dict()
    assert hope["model"] == "hope" and transformer["model"] == "transformer"
    assert hope["minutes"] == transformer["minutes"] == 0.5
    assert hope["steps"] is None and transformer["steps"] is None
    different = {key for key in hope if hope[key] != transformer[key]}
    assert different <= {"model", "d_model", "carry_state"}
    assert hope["carry_state"] and not transformer["carry_state"]  # HOPE trains statefully
    counts = [parameter_count(build_model(config.model, 65, config.d_model, config.n_layers,
                                          config.n_heads,
                                          context_length=config.context_length)).total
              for config in configs.values()]
    assert abs(counts[0] / counts[1] - 1.0) < 0.05, counts


def test_benchmark_runs_end_to_end_on_a_small_text(tmp_path, capsys):
    pytest.importorskip("nlbook.hope")
    from nlbook.bench import main

    text = "".join(f"To be or not to be, line {index}; that is the question.\n"
                   for index in range(300))
    path = tmp_path / "small.txt"
    path.write_text(text, encoding="utf-8")
    main(["shakespeare", "--data", str(path), "--minutes", "0.002", "--d-model", "16",
          "--n-layers", "1", "--n-heads", "2", "--context-length", "16", "--batch-size", "4",
          "--eval-batches", "1", "--no-baselines", "--stream-length", "64",
          "--position-length", "40"])
    out = capsys.readouterr().out
    assert "load average" in out and "threads 1" in out
    for name in ("transformer:", "hope:", "ratio HOPE / Transformer", "streaming (one stream)",
                 "streaming (sliding window 16)", "positions 30-39", "positions 12-15",
                 "fresh windows of 16"):
        assert name in out
    assert "nats/char" in out and "bits/char" in out


# ----------------------------------------------------------------------------- exercises


def test_bits_per_char_checker():
    assert ex.check_bits_per_char(lambda nats: nats / math.log(2))
    with pytest.raises(AssertionError, match="multiplied"):
        ex.check_bits_per_char(lambda nats: nats * math.log(2))
    with pytest.raises(AssertionError, match="perplexity"):
        ex.check_bits_per_char(math.exp)


def test_reference_top_p_matches_nlbooks_sampler():
    """Every token nlbook's sampler draws lies in the reference nucleus, and with the same seed
    the sampler and multinomial over the reference filter draw the same tokens."""
    generator = torch.Generator().manual_seed(3)
    for top_p in (0.3, 0.7, 0.95):
        logits = 2.0 * torch.randn(32, 20, generator=generator)
        filtered = ex.reference_top_p_filter(logits, top_p)
        kept = torch.isfinite(filtered)
        assert kept.any(dim=-1).all()
        # Minimality: dropping the least likely kept token leaves less than top_p.
        probabilities = torch.softmax(logits.double(), dim=-1)
        mass = (probabilities * kept).sum(-1)
        smallest = probabilities.masked_fill(~kept, math.inf).min(-1).values
        assert (mass >= top_p - 1e-12).all() and (mass - smallest < top_p).all()
        drawn = sample_next_token(logits, top_p=top_p, generator=torch.Generator().manual_seed(5))
        assert kept.gather(1, drawn).all()
        ours = torch.multinomial(torch.softmax(filtered, -1), 1,
                                 generator=torch.Generator().manual_seed(5))
        assert torch.equal(ours, drawn)


def test_top_p_checker_accepts_a_solution_and_names_the_off_by_one():
    assert ex.check_top_p_filter(ex.reference_top_p_filter)

    def drops_crossing_token(logits, top_p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits.double(), -1).cumsum(-1)
        drop = torch.zeros_like(cumulative, dtype=torch.bool).scatter(-1, order, cumulative > top_p)
        return logits.masked_fill(drop, float("-inf"))

    with pytest.raises(AssertionError, match="crosses p"):
        ex.check_top_p_filter(drops_crossing_token)


def _slow_bigram_loss(ids: list[int]) -> float:
    counts: dict[tuple[int, int], int] = {}
    for a, b in itertools.pairwise(ids):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    totals: dict[int, int] = {}
    for (a, _), count in counts.items():
        totals[a] = totals.get(a, 0) + count
    return -sum(math.log(counts[(a, b)] / totals[a])
                for a, b in itertools.pairwise(ids)) / (len(ids) - 1)


def test_bigram_reference_equals_a_pair_by_pair_loop_and_a_fitted_softmax_table():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, 400).tolist()
    assert abs(ex.bigram_count_cross_entropy(ids, 6) - _slow_bigram_loss(ids)) < 1e-12
    # The ML bigram is what a logit table W[a] trained to convergence reaches (in float64).
    table = torch.zeros(6, 6, dtype=torch.float64, requires_grad=True)
    inputs, targets = torch.tensor(ids[:-1]), torch.tensor(ids[1:])
    optimizer = torch.optim.LBFGS([table], max_iter=200, tolerance_grad=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(table[inputs], targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = float(torch.nn.functional.cross_entropy(table.detach()[inputs], targets))
    assert abs(fitted - ex.bigram_count_cross_entropy(ids, 6)) < 1e-6


def test_bigram_checker_hints():
    assert ex.check_bigram_loss(ex.bigram_count_cross_entropy)
    with pytest.raises(AssertionError, match="bits"):
        ex.check_bigram_loss(lambda ids, v: ex.bigram_count_cross_entropy(ids, v) / math.log(2))
    with pytest.raises(AssertionError, match="sign"):
        ex.check_bigram_loss(lambda ids, v: -ex.bigram_count_cross_entropy(ids, v))


# ----------------------------------------------------------------------------- shipped model


def test_shipped_checkpoint_loads_with_the_current_model_and_is_trained():
    """The notebook shows data/hope-shakespeare-tiny.pt at once. If HopeLM changes shape, this
    fails: regenerate it with the command below (about 4 minutes on one CPU thread)."""
    pytest.importorskip("nlbook.hope")
    from nlbook.data import DATA_DIR, load_corpus
    from nlbook.train import estimate_loss, load_model

    path = DATA_DIR / "hope-shakespeare-tiny.pt"
    if not path.is_file():
        pytest.skip(f"{path} is not shipped")
    command = ("python -m nlbook.train --model hope --preset tiny --steps 2000 "
               "--checkpoint data/hope-shakespeare-tiny.pt")
    assert path.stat().st_size < 2_000_000, f"{path} is too large to ship"
    try:
        model, vocabulary, state = load_model(path)
    except Exception as error:  # a stale checkpoint: missing or unexpected keys
        raise AssertionError(f"{path} no longer loads ({error}); regenerate: {command}") from error
    corpus = load_corpus()
    assert vocabulary == corpus.vocabulary and state["step"] == 2000
    loss = estimate_loss(model, corpus.val_ids, batch_size=8, context_length=64, batches=2,
                         seed=1)
    assert loss < 2.2, f"shipped model scores {loss:.3f} nats/char; regenerate: {command}"


def test_stateful_benchmark_runs_the_chosen_variants_on_a_small_text(tmp_path, capsys):
    from nlbook.bench import STATEFUL_VARIANTS, main

    text = "".join(f"Now is the winter of our discontent, line {index}.\n"
                   for index in range(200))
    path = tmp_path / "small.txt"
    path.write_text(text, encoding="utf-8")
    main(["stateful", "--data", str(path), "--steps", "2", "--stream-length", "128",
          "--position-length", "64", "--variants", "0,2"])
    out = capsys.readouterr().out
    names = list(STATEFUL_VARIANTS)
    assert names[0] in out and names[2] in out and names[1] not in out
    assert "stream, CMS frozen" in out and "by position 48-63" in out
