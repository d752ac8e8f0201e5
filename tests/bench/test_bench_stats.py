"""sparse24.bench.stats: percentiles, summaries, spread and noise verdicts on chosen samples."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparse24.bench.stats import Summary, percentile, relative_spread, summarize, verdict


def test_percentile_interpolates_between_order_statistics() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)  # position 2.7 -> 3 + 0.7 * (4 - 3)
    assert percentile([7.0], 99) == 7.0


@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=50), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotone_and_within_range(values: list[float], a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)


def test_summary_of_runs() -> None:
    summary = summarize([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [3.0, 3.0, 4.0]])
    assert summary.n == 9 and summary.runs == 3
    assert summary.median == 2.0
    assert summary.mean == pytest.approx(22 / 9)
    assert summary.min == 1.0 and summary.max == 4.0
    assert summary.run_medians == (2.0, 2.0, 3.0)
    assert summary.spread == pytest.approx((3.0 - 2.0) / 2.0)  # run medians' range over their median
    assert summary.p99 == pytest.approx(percentile([1, 2, 3, 2, 2, 2, 3, 3, 4], 99))
    assert summary.stdev == pytest.approx(statistics.stdev([1, 2, 3, 2, 2, 2, 3, 3, 4]))
    assert Summary.from_dict(summary.to_dict()) == summary


def test_one_run_spread_is_its_interquartile_range() -> None:
    samples = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert relative_spread([samples]) == pytest.approx((4.0 - 2.0) / 3.0)
    assert relative_spread([[2.0, 2.0], [2.0, 2.0]]) == 0.0


def test_summarize_rejects_empty_and_negative_samples() -> None:
    with pytest.raises(ValueError, match="no timing samples"):
        summarize([[], []])
    with pytest.raises(ValueError, match="finite and non-negative"):
        summarize([[1.0, -1.0]])
    with pytest.raises(ValueError, match="finite"):
        summarize([[float("nan")]])


def _summary(median: float, spread: float) -> Summary:
    return summarize([[median * (1 - spread / 2)] * 5, [median] * 5, [median * (1 + spread / 2)] * 5])


def test_a_difference_within_the_spread_is_noise() -> None:
    base = _summary(10.0, 0.05)
    assert verdict(base, _summary(10.3, 0.02)).label == "noise"  # +3% < 5% spread
    faster = verdict(base, _summary(8.0, 0.02))
    assert faster.label == "faster" and faster.ratio == pytest.approx(1.25) and faster.change == pytest.approx(-0.2)
    assert verdict(base, _summary(12.0, 0.02)).label == "slower"
    assert verdict(base, _summary(11.0, 0.2)).label == "noise"  # the noisier measurement sets the band
    assert verdict(_summary(10.0, 0.0), _summary(10.3, 0.0), floor=0.05).label == "noise"
    assert verdict(_summary(10.0, 0.0), _summary(10.3, 0.0)).label == "slower"
