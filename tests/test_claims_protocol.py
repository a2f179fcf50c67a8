"""nlbook.claims.protocol: intervals, summaries, findings, controls, verdicts, equal time."""

import itertools
import math

import pytest

from nlbook.claims import VERDICTS as MAP_VERDICTS
from nlbook.claims.protocol import (
    MIN_ACCURACY_DIFFERENCE,
    VERDICTS,
    AccuracyCell,
    Control,
    accuracy_cell,
    compare,
    equal_time_steps,
    interleaved_step_seconds,
    loss_cell,
    verdict,
    wilson_interval,
)


def test_verdict_vocabulary_is_exactly_the_five_and_the_map_uses_it():
    assert VERDICTS == ("holds", "does not hold", "mixed", "not tested at this budget",
                        "not testable on a CPU")
    assert MAP_VERDICTS == VERDICTS


def test_wilson_interval_known_values_and_edges():
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)  # not empty at 0 %
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and low == pytest.approx(0.8389, abs=1e-4)
    # close to the normal interval for large n and p away from the edges
    p, n = 0.3, 100_000
    low, high = wilson_interval(int(p * n), n)
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    assert (low, high) == pytest.approx((p - half, p + half), abs=1e-5)
    with pytest.raises(ValueError, match="correct"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="total"):
        wilson_interval(0, 0)


def test_loss_cell_mean_and_sample_std():
    cell = loss_cell([1.0, 2.0, 3.0])
    assert cell.mean == 2.0 and cell.std == pytest.approx(1.0) and cell.spread == cell.std
    assert str(cell) == "2.000 ± 1.000"
    assert loss_cell([1.5]).std == 0.0
    with pytest.raises(ValueError, match="values"):
        loss_cell([1.0, math.nan])


def test_accuracy_cell_per_seed_and_pooled_intervals():
    cell = accuracy_cell([90, 95, 100], [100, 100, 100])
    assert isinstance(cell, AccuracyCell)
    assert cell.accuracies == (0.9, 0.95, 1.0)
    assert cell.mean == pytest.approx(0.95) and cell.std == pytest.approx(0.05)
    assert cell.pooled == pytest.approx(0.95)
    assert cell.intervals[1] == wilson_interval(95, 100)
    assert cell.pooled_interval == wilson_interval(285, 300)
    half = (cell.pooled_interval[1] - cell.pooled_interval[0]) / 2
    assert cell.spread == max(cell.std, half)
    assert "95.0 ± 5.0 [" in str(cell)
    with pytest.raises(ValueError, match="correct"):
        accuracy_cell([1, 2], [3])
    with pytest.raises(ValueError, match="correct"):
        accuracy_cell([4], [3])


def test_a_difference_is_a_finding_only_beyond_twice_the_spread():
    a, b = loss_cell([2.00, 2.02, 2.04]), loss_cell([2.10, 2.11, 2.12])
    result = compare(a, b)  # difference -0.09, spread max(0.02, 0.01): bar 0.04
    assert result.direction == -1 and result.is_finding
    assert result.bar == pytest.approx(0.04)
    close = compare(loss_cell([2.00, 2.02, 2.04]), loss_cell([2.03, 2.05, 2.07]))
    assert close.direction == 0 and not close.is_finding  # 0.03 < 0.04
    # the pre-declared minimum applies even with no spread
    tiny = compare(accuracy_cell([1000], [1000]), accuracy_cell([990], [1000]))
    assert tiny.bar >= MIN_ACCURACY_DIFFERENCE and tiny.direction == 0
    big = compare(accuracy_cell([990, 995, 1000], [1000] * 3),
                  accuracy_cell([500, 520, 510], [1000] * 3))
    assert big.direction == 1
    with pytest.raises(ValueError, match="same kind"):
        compare(loss_cell([1.0]), accuracy_cell([1], [1]))


def test_control_passes_by_its_threshold_and_direction():
    assert Control("LSTM", "parity bin 1", 0.97, 0.95).passed
    assert not Control("LSTM", "parity bin 1", 0.90, 0.95).passed
    assert Control("T", "loss", 1.2, 1.5, higher_is_better=False).passed
    assert "FAILED" in str(Control("LSTM", "parity", 0.5, 0.95))
    with pytest.raises(ValueError, match="measured"):
        Control("LSTM", "parity", math.nan, 0.95)


def test_verdict_rules():
    passed, failed = Control("C", "t", 1.0, 0.95), Control("C", "t", 0.5, 0.95)
    assert verdict(passed, [True, True]).verdict == "holds"
    assert verdict(passed, [True, None]).verdict == "mixed"
    assert verdict(passed, [True, False]).verdict == "mixed"
    assert verdict(passed, [False, None]).verdict == "does not hold"
    assert verdict(passed, [None, None]).verdict == "does not hold"
    # a failed or missing control never gives "does not hold"
    for outcomes in ([False, False], [True], []):
        assert verdict(failed, outcomes).verdict == "not tested at this budget"
        assert verdict(None, outcomes).verdict == "not tested at this budget"
    assert verdict(passed, []).verdict == "not tested at this budget"
    assert verdict(passed, [True], mechanism_exercised=False).verdict == \
        "not tested at this budget"
    assert verdict(failed, [True], testable_on_cpu=False).verdict == "not testable on a CPU"
    every = {verdict(control, list(outcomes), testable_on_cpu=cpu).verdict
             for control in (passed, failed, None) for cpu in (True, False)
             for outcomes in itertools.product((True, False, None), repeat=2)}
    assert every <= set(VERDICTS) and len(every) == 5
    assert "FAILED" in verdict(failed, [True]).why
    with pytest.raises(ValueError, match="outcomes"):
        verdict(passed, [1])


def test_interleaved_timing_alternates_and_takes_medians():
    calls = []
    now = [0.0]

    def clock():
        return now[0]

    def step(name, cost):
        def run():
            calls.append(name)
            now[0] += cost
        return run

    result = interleaved_step_seconds({"a": step("a", 1.0), "b": step("b", 3.0),
                                       "c": step("c", 2.0)}, rounds=4, warmup=1, clock=clock)
    assert result == {"a": 1.0, "b": 3.0, "c": 2.0}
    assert len(calls) == 15
    rounds = [calls[i:i + 3] for i in range(0, 15, 3)]
    assert all(sorted(one) == ["a", "b", "c"] for one in rounds)  # every model every round
    assert len({one[0] for one in rounds}) == 3  # the order rotates
    assert equal_time_steps(result, 30.0) == {"a": 30, "b": 10, "c": 15}
    assert equal_time_steps({"a": 100.0}, 1.0) == {"a": 1}
    with pytest.raises(ValueError, match="seconds"):
        equal_time_steps(result, 0.0)
    with pytest.raises(ValueError, match="rounds"):
        interleaved_step_seconds({"a": step("a", 1.0)}, rounds=0)
