from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.drift import detect_drift, deterministic_sample
from monitoring.ewma import ewma_chart, time_to_breach
from training.datasets import SYNTHETIC_CATEGORICAL, SYNTHETIC_NUMERIC, synthetic


def test_ewma_recursion_and_exact_limits() -> None:
    chart = ewma_chart([10.0, 12.0, 11.0], "m", alpha=0.5, width=3, mean=10.0, sigma=2.0)
    assert list(chart.smoothed) == [10.0, 11.0, 11.0]  # S_t = a*x_t + (1-a)*S_(t-1), S_0 = mean
    sigma_1 = 2.0 * math.sqrt(0.5 / 1.5 * (1 - 0.5**2))
    assert chart.upper[0] == pytest.approx(10 + 3 * sigma_1)
    assert chart.upper[-1] > chart.upper[0]  # limits widen towards the asymptote
    assert chart.upper[-1] < 10 + 3 * 2.0 * math.sqrt(0.5 / 1.5) + 1e-9


def test_false_alarms_are_rare_and_a_shift_is_caught_within_a_few_points() -> None:
    rng = np.random.default_rng(0)
    # In control, lambda=0.2 and L=3 give an average run length of about 540 points, so roughly one 100-point
    # series in six has a false alarm somewhere; a 2-sigma shift is caught in about 5 points (Lucas & Saccucci).
    alarms, delays = 0, []
    for _ in range(300):
        stable = rng.normal(100, 5, 100)
        alarms += ewma_chart(stable, "latency", alpha=0.2, mean=100, sigma=5).breached
        shifted = np.concatenate([stable[:50], rng.normal(110, 5, 30)])
        late = [b for b in ewma_chart(shifted, "latency", alpha=0.2, mean=100, sigma=5).breaches if b >= 50]
        delays.append(late[0] - 50 + 1 if late else 99)
    assert 0.05 < alarms / 300 < 0.35
    assert np.median(delays) <= 6
    low = ewma_chart(np.concatenate([np.full(20, 0.9), np.full(10, 0.6)]), "accuracy", mean=0.9, sigma=0.03, bad="low")
    assert low.breaches and low.breaches[0] == 20


def test_time_to_breach_extrapolates_the_recent_slope() -> None:
    rising = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    assert time_to_breach(rising, slo=20.0, interval_seconds=60) == pytest.approx(6 * 60)
    assert time_to_breach(rising, slo=12.0, interval_seconds=60) == 0.0
    assert time_to_breach(rising[::-1], slo=20.0, interval_seconds=60) is None
    with pytest.raises(ValueError, match="alpha"):
        ewma_chart([1.0], "m", alpha=0)


def test_sampling_is_deterministic_and_keeps_the_verdict() -> None:
    ref, cur = synthetic(8000, seed=1), synthetic(8000, seed=2, drift=1.5)  # region far from its threshold
    a, b = deterministic_sample(ref, 2000, seed=3), deterministic_sample(ref, 2000, seed=3)
    assert a.index.equals(b.index) and len(a) == 2000
    full = detect_drift(ref, cur, SYNTHETIC_NUMERIC, SYNTHETIC_CATEGORICAL, max_rows=8000, with_html=False)
    sampled = detect_drift(ref, cur, SYNTHETIC_NUMERIC, SYNTHETIC_CATEGORICAL, max_rows=2000, with_html=False)
    assert [c.drifted for c in full.columns] == [c.drifted for c in sampled.columns]
    assert {c.method for c in sampled.columns} == {"Wasserstein distance (normed)", "Jensen-Shannon distance"}
    assert full.drifted_columns and "Wasserstein" in full.summary
    same = detect_drift(ref, synthetic(8000, seed=5), SYNTHETIC_NUMERIC, SYNTHETIC_CATEGORICAL, with_html=False)
    assert same.drifted_columns == [] and not same.dataset_drift


def test_integer_coded_categories_with_a_missing_value_are_not_drift() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=5000), "plan": rng.integers(1, 4, 5000)})
    cur = pd.DataFrame({"x": rng.normal(size=5000), "plan": rng.integers(1, 4, 5000).astype(float)})
    cur.loc[0, "plan"] = np.nan  # an int column with one missing value reads as float
    verdict = detect_drift(ref, cur, ["x"], ["plan"], with_html=False)
    assert verdict.drifted_columns == [], verdict.summary


def test_intervals_weigh_what_their_answers_weigh() -> None:
    values = [10.0, 12.0, 11.0, 9.0]
    even = ewma_chart(values, "m", alpha=0.3, mean=10.0, sigma=2.0, counts=[40, 40, 40, 40])
    plain = ewma_chart(values, "m", alpha=0.3, mean=10.0, sigma=2.0)
    np.testing.assert_allclose(even.smoothed, plain.smoothed)
    np.testing.assert_allclose(even.upper, plain.upper)  # equal counts: Roberts' limits exactly
    # a last interval of 2 answers (of 40 usual) far off: it moves the average by its share and is no alarm
    sparse = ewma_chart([10.0] * 10 + [30.0], "m", alpha=0.3, mean=10.0, sigma=2.0, counts=[40] * 10 + [2])
    assert 10.0 < sparse.smoothed[-1] < 10.5 and not sparse.breached
    # an empty interval leaves the chart where it was
    gap = ewma_chart([11.0, float("nan"), 11.0], "m", mean=10.0, sigma=1.0, counts=[5, 0, 5])
    assert gap.smoothed[1] == gap.smoothed[0] and gap.upper[1] == gap.upper[0]
