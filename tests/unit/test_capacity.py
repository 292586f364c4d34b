"""The capacity planner's queueing model against closed forms and against a simulated queue."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from deployments.capacity import CapacityError, ServiceTimes, erlang_c, plan_capacity, queue_at


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
