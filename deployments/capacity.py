"""Capacity planning for the gateway (source 15.4): how many replicas serve a request rate within a p95 target?

The queueing model is M/M/c with Erlang C: Poisson arrivals at rate ``lambda``, ``c`` identical replicas each
serving one request at a time with mean service time ``1/mu``, one shared queue (what a load balancer in front of
replicas approximates when it sends work to an idle replica first). For ``a = lambda/mu`` and ``rho = a/c < 1``:

- the probability that a request waits, ``P_wait = C(c, a)`` (Erlang C);
- the waiting time is 0 with probability ``1 - P_wait`` and otherwise exponential with rate ``c*mu - lambda``,
  so ``P(W > t) = P_wait * exp(-(c*mu - lambda) * t)`` and the mean wait is ``P_wait / (c*mu - lambda)``.

Measured service times are rarely exponential. Where their squared coefficient of variation ``cv2`` differs from
1, the mean wait is corrected with the Allen-Cunneen approximation for M/G/c,
``Wq ~ Wq(M/M/c) * (1 + cv2) / 2``, keeping the same probability of waiting and an exponential conditional wait
with that mean. The response time is the wait plus a service time drawn from the *measured* distribution, and its
p95 is solved exactly for that model: ``P(T <= t) = (1 - P_wait) * F_S(t) + P_wait * E[1{S <= t} (1 -
exp(-theta (t - S)))]`` over the measured samples.

What the model leaves out, stated in every plan: arrivals burstier than Poisson (raise the headroom), a gateway
that batches under load (a replica then serves faster than its measured one-at-a-time service time, so the plan
errs on the safe side near saturation), and network time between the balancer and the replica.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import MlopsError

MIN_SAMPLES = 200  # service-time samples below which the tail of the distribution is guesswork
MAX_REPLICAS = 512


class CapacityError(MlopsError):
    """The inputs cannot give a plan; the message says what to change."""

    category = "configuration"
    exit_code = 2


@dataclass(frozen=True)
class ServiceTimes:
    """Measured service times of one replica, in milliseconds, and where they came from."""

    samples_ms: np.ndarray
    source: str

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples_ms, dtype=float)
        samples = samples[np.isfinite(samples) & (samples > 0)]
        if samples.size < MIN_SAMPLES:
            raise CapacityError(
                f"{samples.size} service-time measurements from {self.source}; a plan needs at least {MIN_SAMPLES}. "
                f"Serve more traffic first, or measure with `mlops capacity plan --source benchmark`."
            )
        object.__setattr__(self, "samples_ms", np.sort(samples))

    @property
    def mean_ms(self) -> float:
        return float(self.samples_ms.mean())

    @property
    def cv2(self) -> float:
        """Squared coefficient of variation: 1 for exponential service, 0 for constant."""
        return float(self.samples_ms.var() / self.samples_ms.mean() ** 2)

    @property
    def exponential_distance(self) -> float:
        """Kolmogorov-Smirnov distance to the exponential distribution with the same mean (0 = exponential)."""
        x = self.samples_ms
        n = x.size
        model = 1.0 - np.exp(-x / x.mean())
        empirical_hi = np.arange(1, n + 1) / n
        empirical_lo = np.arange(0, n) / n
        return float(max(np.max(empirical_hi - model), np.max(model - empirical_lo)))

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "samples": int(self.samples_ms.size),
            "mean_ms": round(self.mean_ms, 3),
            "p50_ms": round(float(np.percentile(self.samples_ms, 50)), 3),
            "p95_ms": round(float(np.percentile(self.samples_ms, 95)), 3),
            "cv2": round(self.cv2, 3),
            "ks_distance_to_exponential": round(self.exponential_distance, 3),
        }


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c with ``servers`` and offered load ``a = lambda/mu`` (< servers).

    Computed through the Erlang B recursion ``B(k) = a B(k-1) / (k + a B(k-1))``, which stays stable for hundreds of
    servers where the textbook sum of ``a**k / k!`` overflows."""
    if servers < 1:
        raise CapacityError(f"servers must be at least 1, got {servers}")
    if offered_load < 0:
        raise CapacityError(f"the offered load must be >= 0, got {offered_load}")
    if offered_load >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    rho = offered_load / servers
    return blocking / (1.0 - rho + rho * blocking)


@dataclass(frozen=True)
class ReplicaPlan:
    """The queue at ``replicas`` replicas and ``rate`` requests per second."""

    replicas: int
    rate: float
    utilisation: float
    saturated: bool
    p_wait: float | None = None
    mean_wait_ms: float | None = None
    p95_wait_ms: float | None = None
    mean_response_ms: float | None = None
    p95_response_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "replicas": self.replicas,
            "rate": self.rate,
            "utilisation": round(self.utilisation, 4),
            "saturated": self.saturated,
            "p_wait": r(self.p_wait),
            "mean_wait_ms": r(self.mean_wait_ms),
            "p95_wait_ms": r(self.p95_wait_ms),
            "mean_response_ms": r(self.mean_response_ms),
            "p95_response_ms": r(self.p95_response_ms),
        }


def queue_at(replicas: int, rate: float, service: ServiceTimes) -> ReplicaPlan:
    """M/M/c (M/G/c by Allen-Cunneen where service is not exponential) at ``replicas`` and ``rate`` per second."""
    if rate <= 0:
        raise CapacityError(f"the request rate must be > 0 per second, got {rate}")
    mu = 1000.0 / service.mean_ms  # per second per replica
    load = rate / mu
    utilisation = load / replicas
    if utilisation >= 1.0:
        return ReplicaPlan(replicas, rate, utilisation, saturated=True)
    p_wait = erlang_c(replicas, load)
    wait_mmc = p_wait / (replicas * mu - rate)  # seconds
    mean_wait = wait_mmc * (1.0 + service.cv2) / 2.0
    theta = p_wait / mean_wait if mean_wait > 0 else math.inf  # rate of the conditional (exponential) wait, 1/s
    p95_wait = 0.0 if p_wait <= 0.05 else math.log(p_wait / 0.05) / theta
    return ReplicaPlan(
        replicas,
        rate,
        utilisation,
        saturated=False,
        p_wait=p_wait,
        mean_wait_ms=mean_wait * 1000.0,
        p95_wait_ms=p95_wait * 1000.0,
        mean_response_ms=mean_wait * 1000.0 + service.mean_ms,
        p95_response_ms=_response_quantile(0.95, p_wait, theta / 1000.0, service.samples_ms),
    )


def _response_quantile(q: float, p_wait: float, theta_per_ms: float, service_ms: np.ndarray) -> float:
    """The ``q`` quantile of wait + service, with the wait 0 w.p. ``1 - p_wait`` else Exp(theta), by bisection."""

    def cdf(t: float) -> float:
        served = service_ms <= t
        within = np.where(served, 1.0 - np.exp(-theta_per_ms * np.clip(t - service_ms, 0.0, None)), 0.0)
        return float((1.0 - p_wait) * served.mean() + p_wait * within.mean())

    lo, hi = 0.0, float(service_ms[-1])
    while cdf(hi) < q:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cdf(mid) < q:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class CapacityPlan:
    rate: float
    slo_p95_ms: float
    headroom: float
    service: ServiceTimes
    rows: list[ReplicaPlan]  # at rate * (1 + headroom), from 1 replica up to a little past the answer
    replicas: int  # the smallest count meeting the SLO at rate * (1 + headroom)
    saturation_rate_per_replica: float
    assumptions: list[str] = field(default_factory=list)

    @property
    def planned_rate(self) -> float:
        return self.rate * (1.0 + self.headroom)

    @property
    def summary(self) -> str:
        chosen = next(r for r in self.rows if r.replicas == self.replicas)
        return (
            f"{self.replicas} replica(s) serve {self.rate:g} requests/s with {self.headroom:.0%} headroom "
            f"({self.planned_rate:g}/s) at a predicted p95 of {chosen.p95_response_ms:.1f} ms "
            f"(target {self.slo_p95_ms:g} ms, utilisation {chosen.utilisation:.0%}); one replica saturates at "
            f"{self.saturation_rate_per_replica:.0f} requests/s."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "planned_rate": self.planned_rate,
            "slo_p95_ms": self.slo_p95_ms,
            "headroom": self.headroom,
            "replicas": self.replicas,
            "saturation_rate_per_replica": round(self.saturation_rate_per_replica, 1),
            "service_times": self.service.describe(),
            "model": "M/M/c (Erlang C)" if abs(self.service.cv2 - 1.0) <= 0.2 else "M/G/c (Allen-Cunneen)",
            "rows": [r.to_json() for r in self.rows],
            "summary": self.summary,
            "assumptions": self.assumptions,
        }


def plan_capacity(
    rate: float, slo_p95_ms: float, service: ServiceTimes, headroom: float = 0.2, max_replicas: int = MAX_REPLICAS
) -> CapacityPlan:
    """The smallest replica count whose predicted p95 response time at ``rate * (1 + headroom)`` meets the SLO."""
    if slo_p95_ms <= 0:
        raise CapacityError(f"the p95 target must be > 0 ms, got {slo_p95_ms}")
    if not 0 <= headroom < 10:
        raise CapacityError(f"headroom is a fraction of the rate (0.2 = 20%), got {headroom}")
    floor = float(np.percentile(service.samples_ms, 95))
    if floor > slo_p95_ms:
        raise CapacityError(
            f"one request alone takes {floor:.1f} ms at p95 (service time from {service.source}), above the "
            f"{slo_p95_ms:g} ms target: no replica count can meet it. Make the model faster or relax the target."
        )
    planned = rate * (1.0 + headroom)
    rows: list[ReplicaPlan] = []
    chosen = None
    for replicas in range(1, max_replicas + 1):
        row = queue_at(replicas, planned, service)
        rows.append(row)
        if chosen is None and not row.saturated and (row.p95_response_ms or math.inf) <= slo_p95_ms:
            chosen = replicas
        if chosen is not None and replicas >= chosen + 2:
            break
    if chosen is None:
        raise CapacityError(
            f"{planned:g} requests/s saturates every count up to {max_replicas} replicas (one replica serves about "
            f"{1000.0 / service.mean_ms:.0f}/s); it needs at least {math.ceil(planned * service.mean_ms / 1000.0)} "
            "replicas for stability alone. Raise --max-replicas or lower the rate."
        )
    shown = [r for r in rows if r.replicas >= max(1, chosen - 3)]
    cv2 = service.cv2
    assumptions = [
        "Poisson arrivals (bursty traffic needs more headroom)",
        f"service times measured from {service.source}: cv2 {cv2:.2f} (1 = exponential), Kolmogorov-Smirnov "
        f"distance {service.exponential_distance:.2f} to the exponential with the same mean"
        + ("; M/G/c by Allen-Cunneen's correction of the mean wait" if abs(cv2 - 1.0) > 0.2 else ""),
        "one shared queue in front of identical replicas, each serving one request at a time",
        "adaptive batching under load makes a replica faster than measured one at a time: the plan errs on the "
        "safe side near saturation",
    ]
    return CapacityPlan(rate, slo_p95_ms, headroom, service, shown, chosen, 1000.0 / service.mean_ms, assumptions)


def measure_service_times(url: str, records: list[dict[str, Any]], count: int = 400, warmup: int = 20) -> np.ndarray:
    """Service times of one gateway replica, in ms: ``count`` single-record requests sent one at a time (so none
    waits), timed at the client over a kept-alive connection on 127.0.0.1."""
    import time

    import httpx

    if not records:
        raise CapacityError("no records to send; the config's data source is empty")
    times = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(count + warmup):
            body = {"records": [records[i % len(records)]]}
            started = time.perf_counter()
            response = client.post("/v1/predict", json=body)
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status_code != 200:
                raise CapacityError(
                    f"the gateway answered {response.status_code} while measuring: {response.text[:200]}"
                )
            if i >= warmup:
                times.append(elapsed)
    return np.asarray(times)
