"""The capacity planner's queueing model against closed forms and against a simulated queue."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from deployments.capacity import (
    BatchCost,
    CapacityError,
    ServiceTimes,
    batched_queue_at,
    erlang_c,
    mean_batch_size,
    plan_capacity,
    queue_at,
)


def exponential(mean_ms: float, n: int = 20_000, seed: int = 0) -> ServiceTimes:
    return ServiceTimes(np.random.default_rng(seed).exponential(mean_ms, n), "a test generator")


def test_erlang_c_matches_closed_forms() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # a**2/2 / (1 + a + a**2/2 * 2) for c=2, rho=0.5
    assert erlang_c(3, 3.5) == 1.0  # beyond saturation everyone waits
    assert 0 < erlang_c(400, 380.0) < 1  # no overflow with hundreds of servers


def test_mm1_p95_response_is_the_exponential_quantile() -> None:
    service = exponential(10.0, n=200_000)
    row = queue_at(1, 50.0, service)  # mu = 100/s, lambda = 50/s: T ~ Exp(mu - lambda)
    assert row.utilisation == pytest.approx(0.5, rel=0.01)
    assert row.p95_response_ms == pytest.approx(1000 * math.log(20) / 50.0, rel=0.03)


def simulate_p95(replicas: int, rate: float, service_ms: np.ndarray, n: int = 60_000, seed: int = 1) -> float:
    """FIFO M/G/c with one shared queue: the 95th percentile of the response time, in ms."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1000.0 / rate, n))
    services = rng.choice(service_ms, n)
    free = [0.0] * replicas
    responses = np.empty(n)
    for i, (t, s) in enumerate(zip(arrivals, services, strict=True)):
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + s)
        responses[i] = start + s - t
    return float(np.percentile(responses[n // 10 :], 95))


@pytest.mark.parametrize(("replicas", "rate"), [(1, 70.0), (2, 150.0), (4, 320.0)])
def test_predicted_p95_agrees_with_a_simulated_queue(replicas: int, rate: float) -> None:
    service = exponential(10.0)
    predicted = queue_at(replicas, rate, service).p95_response_ms
    assert predicted == pytest.approx(simulate_p95(replicas, rate, service.samples_ms), rel=0.1)


def test_non_exponential_service_uses_the_allen_cunneen_correction() -> None:
    rng = np.random.default_rng(3)
    steady = ServiceTimes(rng.normal(10.0, 1.0, 20_000).clip(1), "a steady model")  # cv2 ~ 0.01
    assert steady.cv2 < 0.05 and steady.exponential_distance > 0.2
    predicted = queue_at(2, 160.0, steady).p95_response_ms
    assert predicted == pytest.approx(simulate_p95(2, 160.0, steady.samples_ms), rel=0.15)


def test_the_plan_is_the_smallest_count_meeting_the_target_with_headroom() -> None:
    plan = plan_capacity(400.0, 50.0, exponential(10.0), headroom=0.2)
    chosen = next(r for r in plan.rows if r.replicas == plan.replicas)
    below = [r for r in plan.rows if r.replicas == plan.replicas - 1]
    assert chosen.p95_response_ms <= 50.0 and chosen.rate == pytest.approx(480.0)
    assert below and (below[0].saturated or below[0].p95_response_ms > 50.0)
    assert "Poisson arrivals" in plan.assumptions[0] and f"{plan.replicas} replica(s)" in plan.summary


def test_bad_inputs_say_what_to_change() -> None:
    with pytest.raises(CapacityError, match="at least 200"):
        ServiceTimes(np.ones(50), "the prediction log")
    with pytest.raises(CapacityError, match="no replica count can meet it"):
        plan_capacity(10.0, 5.0, exponential(10.0))
    with pytest.raises(CapacityError, match=r"saturates every count up to 4 replicas.*at least 10"):
        plan_capacity(1000.0, 500.0, exponential(10.0), headroom=0.0, max_replicas=4)


# ---- adaptive batching ---------------------------------------------------------------------------------------


def simulate_batching(
    rate: float, fixed_ms: float, per_request_ms: float, noise_ms: np.ndarray, n: int = 30_000, seed: int = 1
) -> tuple[float, float]:
    """One replica batching as the gateway does (a lone arrival at an idle replica is predicted at once; the
    requests that arrived during a batch are the next batch), batch time ``fixed + per_request * b + noise``:
    (p95 response ms, mean batch size)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1000.0 / rate, n))
    responses = np.empty(n)
    sizes = []
    i, free = 0, 0.0
    while i < n:
        start = max(free, arrivals[i])
        j = max(int(np.searchsorted(arrivals, start, side="right")), i + 1)
        free = start + max(1e-3, fixed_ms + per_request_ms * (j - i) + rng.choice(noise_ms))
        responses[i:j] = free - arrivals[i:j]
        sizes.append(j - i)
        i = j
    return float(np.percentile(responses[n // 10 :], 95)), float(np.mean(sizes))


def steady(mean_ms: float, n: int = 5_000, seed: int = 0) -> ServiceTimes:
    return ServiceTimes(np.random.default_rng(seed).normal(mean_ms, 0.15 * mean_ms, n).clip(0.01), "a test generator")


def test_a_batch_cost_is_fitted_from_burst_times_and_sets_the_saturation_rate() -> None:
    times = {b: [3.0 + 0.5 * b + e for e in (-0.1, 0.0, 0.1)] for b in (1, 2, 4, 8, 16)}
    cost = BatchCost.fit(times, "bursts")
    assert cost.fixed_ms == pytest.approx(3.0) and cost.per_request_ms == pytest.approx(0.5)
    assert cost.saturation_rate == pytest.approx(2000.0)  # 1/per_request, not 1/S(1) = 286/s
    same = BatchCost.fit({1: [2.0], 4: [7.5], 8: [16.5]}, "no batching gain")  # the line would cross below 0
    assert same.fixed_ms == 0.0 and same.per_request_ms == pytest.approx(164.0 / 81.0)


def test_the_batch_size_fixed_point_grows_from_one_to_unbounded_at_saturation() -> None:
    cost = BatchCost(fixed_ms=5.0, per_request_ms=5.0, source="a test")  # saturates at 200/s
    assert mean_batch_size(1.0, cost) == pytest.approx(1.0, abs=0.02)
    sizes = [mean_batch_size(r, cost) for r in (40.0, 100.0, 160.0, 190.0)]
    assert sizes == sorted(sizes) and sizes[-1] > 15
    b = mean_batch_size(160.0, cost)  # b = lam S(b) + exp(-lam S(b))
    assert b == pytest.approx(0.16 * cost.batch_ms(b) + math.exp(-0.16 * cost.batch_ms(b)), rel=1e-6)
    with pytest.raises(CapacityError, match="saturates a replica that sustains 200/s"):
        mean_batch_size(200.0, cost)


@pytest.mark.parametrize(("fixed_ms", "per_request_ms"), [(0.5, 0.5), (10.0, 5.0), (2.0, 8.0), (5.0, 0.5)], ids=str)
@pytest.mark.parametrize("share", [0.3, 0.5, 0.7, 0.85])
def test_batched_p95_and_batch_size_agree_with_a_simulated_batching_replica(
    fixed_ms: float, per_request_ms: float, share: float
) -> None:
    cost = BatchCost(fixed_ms, per_request_ms, "a test")
    service = steady(fixed_ms + per_request_ms)
    rate = share * cost.saturation_rate
    row = batched_queue_at(1, rate, service, cost)
    noise = service.samples_ms - service.mean_ms
    p95, batch = simulate_batching(rate, fixed_ms, per_request_ms, noise)
    assert row.utilisation == pytest.approx(share)
    assert row.batch_size == pytest.approx(batch, rel=0.2)  # the fixed point of the mean: low by <20% near saturation
    assert row.p95_response_ms == pytest.approx(p95, rel=0.2)


def test_batching_replicas_sustain_more_than_one_at_a_time_and_split_the_load() -> None:
    cost = BatchCost(fixed_ms=6.0, per_request_ms=4.0, source="a test")
    service = steady(10.0)
    assert queue_at(1, 120.0, service).saturated  # one at a time: 100/s per replica
    one = batched_queue_at(1, 120.0, service, cost)
    two = batched_queue_at(2, 240.0, service, cost)  # each replica takes half: the same queue
    assert not one.saturated and one.p95_response_ms == pytest.approx(two.p95_response_ms)
    assert batched_queue_at(1, 250.0, service, cost).saturated


def test_a_plan_with_batching_needs_fewer_replicas_and_states_the_model() -> None:
    service = steady(10.0)
    cost = BatchCost(fixed_ms=6.0, per_request_ms=4.0, source="bursts on a test gateway")
    batched = plan_capacity(400.0, 60.0, service, headroom=0.2, batching=cost)
    alone = plan_capacity(400.0, 60.0, service, headroom=0.2)
    assert batched.replicas < alone.replicas and batched.saturation_rate_per_replica == pytest.approx(250.0)
    text = " ".join(batched.assumptions)
    assert "6.00 + 4.00 * b ms" in text and "fixed point" in text and "not modelled" in text
    assert batched.to_json()["batch_cost"]["per_request_ms"] == 4.0
    with pytest.raises(CapacityError, match=r"saturates every count up to 3 replicas.*at least 4"):
        plan_capacity(1000.0, 500.0, service, headroom=0.0, max_replicas=3, batching=cost)


def test_a_batch_fit_that_does_not_grow_says_to_measure_again() -> None:
    with pytest.raises(CapacityError, match="does not grow with the batch size"):
        BatchCost.fit({1: [5.0, 5.1], 8: [4.9, 5.0]}, "a noisy host")
    with pytest.raises(CapacityError, match="at least two sizes"):
        BatchCost.fit({4: [5.0]}, "one size")
