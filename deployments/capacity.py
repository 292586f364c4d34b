"""Capacity planning for the gateway (source 15.4): how many replicas serve a request rate within a p95 target?

Two models, chosen by what was measured.

**One request at a time** (service times only, e.g. ``--source log``): M/M/c with Erlang C. Poisson arrivals at
rate ``lambda``, ``c`` identical replicas each serving one request at a time with mean service time ``1/mu``, one
shared queue. For ``a = lambda/mu`` and ``rho = a/c < 1``: ``P_wait = C(c, a)`` (Erlang C); the wait is 0 with
probability ``1 - P_wait`` and otherwise exponential with rate ``c*mu - lambda``. Where the squared coefficient of
variation ``cv2`` of the measured service times differs from 1, the mean wait is corrected with Allen-Cunneen,
``Wq ~ Wq(M/M/c) * (1 + cv2) / 2``. The response time is the wait plus a service time drawn from the *measured*
distribution, and its p95 is solved for that model: ``P(T <= t) = (1 - P_wait) * F_S(t) + P_wait * E[1{S <= t}
(1 - exp(-theta (t - S)))]`` over the measured samples (``_response_quantile``).

**Adaptive batching** (``BatchCost`` measured too, the built-in benchmark's default): the gateway's batcher
answers the requests that queued during one ``predict`` with the next single ``predict``. A batch of ``b``
requests costs ``S(b) = fixed + per_request * b`` ms of a replica: ``fixed`` is what batches (the predict call),
``per_request`` what does not (HTTP, parsing, validation, answer, log row, and a row's share of the predict). Both
are fitted to the mean time of bursts of 1, 2, 4, 8 and 16 concurrent requests, each size sent back to back for a
second or more so that the work deferred per request (the prediction log's writes) is counted, each burst charged
its share of the CPU time the gateway's drainer spent on them (``mlops_gateway_log_drain_cpu_seconds``, read until
``mlops_gateway_log_backlog`` is back at 0). Each
replica has its own batcher and takes ``lambda/c`` of the Poisson arrivals (connections are spread over replicas,
not requests over idle ones). At that rate:

- the mean batch size is the fixed point ``b = lambda S(b) + exp(-lambda S(b))``: the requests that arrive
  during a batch form the next one, and after an idle spell a lone arrival is predicted at once;
- the replica saturates where the marginal cost is used up, ``lambda * per_request = 1`` (``b`` grows without
  bound): ``utilisation`` is ``lambda * per_request``;
- an arrival finds its replica busy with probability ``rho = lambda S(b) / b`` (the busy fraction); it then waits
  for the rest of the batch in progress (length-biased: ``E[S^2] / 2E[S]``) and rides in the next batch, which
  holds the arrivals during the one in progress; batch sizes vary as a branching chain, ``Var(b) = (b +
  lambda^2 var(noise)) / (1 - (lambda per_request)^2)``, which is what makes the tail grow near saturation;
- the wait (conditional on waiting) is taken as exponential with the mean of that rest plus the next batch's
  excess over ``S(b)``, and the service as ``S(b)`` plus the measured one-at-a-time noise; the p95 is solved with
  the same ``_response_quantile`` as above. Against a simulation of this discipline the p95 agrees within about
  20% from 30% to 95% of saturation (``tests/unit/test_capacity.py``).

What the models leave out, stated in every plan: arrivals burstier than Poisson (raise the headroom); the
batcher's gathering pause under load (up to ``Batcher.max_wait``, 2 ms, for as many requests as recent batches
held), which adds latency the burst measurement does not see; a replica sharing its core with other work; and
network time between the balancer and the replica.
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
    batch_size: float | None = None  # with batching: mean requests per predict
    batch_ms: float | None = None  # with batching: time of a batch of that size

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
            "batch_size": r(self.batch_size),
            "batch_ms": r(self.batch_ms),
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


BATCH_SIZES = (1, 2, 4, 8, 16)  # concurrent requests per measured burst
CATCH_UP_LIMIT = 30.0  # seconds the burst measurement waits for the gateway's log to reach the store


@dataclass(frozen=True)
class BatchCost:
    """What a batch of ``b`` requests costs one replica: ``S(b) = fixed_ms + per_request_ms * b``."""

    fixed_ms: float
    per_request_ms: float
    source: str
    measured: dict[int, float] = field(default_factory=dict)  # burst size -> mean time of the burst, ms

    @classmethod
    def fit(cls, times_ms: dict[int, list[float]], source: str) -> BatchCost:
        """Least squares on the mean time per burst size; a negative intercept (batching saves nothing) is 0.

        The mean, not the median, of bursts sent back to back for a second or more (``measure_batch_times``): the
        work a gateway defers per request (its prediction-log rows, written to the store by a background thread or,
        under ``mlops serve``, a drainer process at a lower priority) lands in a few bursts, and the median would
        leave it out. With it left out, the planner put one replica's saturation at 6,500/s where it measured
        4,700/s."""
        means = {int(b): float(np.mean(t)) for b, t in times_ms.items() if len(t)}
        if len(means) < 2:
            raise CapacityError(
                f"batch times for {len(means)} burst size(s) from {source}; the fit needs at least two sizes "
                f"(measure with sizes such as {', '.join(map(str, BATCH_SIZES))})."
            )
        sizes = np.asarray(sorted(means), dtype=float)
        times = np.asarray([means[int(b)] for b in sizes])
        slope, intercept = np.polyfit(sizes, times, 1)
        if slope <= 0:
            raise CapacityError(
                f"the measured batch time does not grow with the batch size ({means} ms from {source}): the "
                "measurement is noise, not the gateway's cost. Measure again on a quieter host."
            )
        if intercept < 0:  # every request costs the same alone or batched: S(b) through the origin
            slope, intercept = float(sizes @ times / (sizes @ sizes)), 0.0
        return cls(float(intercept), float(slope), source, means)

    def batch_ms(self, size: float) -> float:
        return self.fixed_ms + self.per_request_ms * size

    @property
    def saturation_rate(self) -> float:
        """Requests per second one replica sustains: its marginal cost per request used up."""
        return 1000.0 / self.per_request_ms

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fixed_ms": round(self.fixed_ms, 3),
            "per_request_ms": round(self.per_request_ms, 3),
            "measured_ms": {str(b): round(t, 3) for b, t in sorted(self.measured.items())},
        }


@dataclass(frozen=True)
class BatchQueue:
    """One batching replica at ``rate`` requests per second (see the module doc for the formulas)."""

    rate: float
    batch_size: float  # mean requests per predict
    batch_ms: float  # S(batch_size)
    busy: float  # probability that an arrival finds the replica busy
    wait_ms: float  # mean wait of an arrival that finds it busy

    @property
    def per_request_ms(self) -> float:
        """The effective service time per request, ``S(b) / b``."""
        return self.batch_ms / self.batch_size


def mean_batch_size(rate: float, cost: BatchCost) -> float:
    """The fixed point ``b = lam S(b) + exp(-lam S(b))`` for ``rate`` per second below saturation, by bisection
    (the right-hand side minus ``b`` falls as ``b`` grows, so the root is unique)."""
    lam = rate / 1000.0  # per ms
    if lam * cost.per_request_ms >= 1.0:
        raise CapacityError(
            f"{rate:g} requests/s saturates a replica that sustains {cost.saturation_rate:.0f}/s; no batch size "
            "keeps up."
        )

    def excess(b: float) -> float:
        served = lam * cost.batch_ms(b)
        return served + math.exp(-served) - b

    if excess(1.0) <= 0:
        return 1.0
    lo, hi = 1.0, 2.0
    while excess(hi) > 0:
        lo, hi = hi, hi * 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def batch_queue(rate: float, cost: BatchCost, noise_var_ms2: float = 0.0) -> BatchQueue:
    """The batch size, busy fraction and wait of one replica at ``rate`` per second; ``noise_var_ms2`` is the
    variance of a batch's time around ``S(b)`` (from the one-at-a-time measurements)."""
    lam = rate / 1000.0
    b = mean_batch_size(rate, cost)
    s = cost.batch_ms(b)
    marginal = lam * cost.per_request_ms
    var_b = (b + lam**2 * noise_var_ms2) / (1.0 - marginal**2)
    var_s = cost.per_request_ms**2 * var_b + noise_var_ms2
    in_progress = s + var_s / s  # length-biased: an arrival more likely lands in a long batch
    rest = in_progress / 2.0
    next_batch = cost.batch_ms(max(1.0, lam * in_progress))
    return BatchQueue(rate, b, s, min(1.0, lam * s / b), rest + max(0.0, next_batch - s))


def batched_queue_at(replicas: int, rate: float, service: ServiceTimes, cost: BatchCost) -> ReplicaPlan:
    """``replicas`` batching replicas, each taking ``rate / replicas`` of Poisson arrivals (module doc)."""
    if rate <= 0:
        raise CapacityError(f"the request rate must be > 0 per second, got {rate}")
    share = rate / replicas
    utilisation = share * cost.per_request_ms / 1000.0
    if utilisation >= 1.0:
        return ReplicaPlan(replicas, rate, utilisation, saturated=True)
    q = batch_queue(share, cost, float(service.samples_ms.var()))
    samples = np.sort(np.clip(service.samples_ms - service.mean_ms + q.batch_ms, 1e-3, None))
    p95_wait = 0.0 if q.busy <= 0.05 else math.log(q.busy / 0.05) * q.wait_ms
    return ReplicaPlan(
        replicas,
        rate,
        utilisation,
        saturated=False,
        p_wait=q.busy,
        mean_wait_ms=q.busy * q.wait_ms,
        p95_wait_ms=p95_wait,
        mean_response_ms=q.busy * q.wait_ms + q.batch_ms,
        p95_response_ms=_response_quantile(0.95, q.busy, 1.0 / q.wait_ms, samples),
        batch_size=q.batch_size,
        batch_ms=q.batch_ms,
    )


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
    batching: BatchCost | None = None

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

    @property
    def model(self) -> str:
        if self.batching is not None:
            return "adaptive batching per replica (batch-size fixed point, residual wait)"
        return "M/M/c (Erlang C)" if abs(self.service.cv2 - 1.0) <= 0.2 else "M/G/c (Allen-Cunneen)"

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "planned_rate": self.planned_rate,
            "slo_p95_ms": self.slo_p95_ms,
            "headroom": self.headroom,
            "replicas": self.replicas,
            "saturation_rate_per_replica": round(self.saturation_rate_per_replica, 1),
            "service_times": self.service.describe(),
            "model": self.model,
            "batch_cost": None if self.batching is None else self.batching.describe(),
            "rows": [r.to_json() for r in self.rows],
            "summary": self.summary,
            "assumptions": self.assumptions,
        }


def plan_capacity(
    rate: float,
    slo_p95_ms: float,
    service: ServiceTimes,
    headroom: float = 0.2,
    max_replicas: int = MAX_REPLICAS,
    batching: BatchCost | None = None,
) -> CapacityPlan:
    """The smallest replica count whose predicted p95 response time at ``rate * (1 + headroom)`` meets the SLO:
    with ``batching``, replicas that batch as the gateway does; without, replicas serving one request at a time."""
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
        row = (
            queue_at(replicas, planned, service)
            if batching is None
            else batched_queue_at(replicas, planned, service, batching)
        )
        rows.append(row)
        if chosen is None and not row.saturated and (row.p95_response_ms or math.inf) <= slo_p95_ms:
            chosen = replicas
        if chosen is not None and replicas >= chosen + 2:
            break
    per_request_ms = service.mean_ms if batching is None else batching.per_request_ms
    if chosen is None:
        raise CapacityError(
            f"{planned:g} requests/s saturates every count up to {max_replicas} replicas (one replica serves about "
            f"{1000.0 / per_request_ms:.0f}/s); it needs at least {math.ceil(planned * per_request_ms / 1000.0)} "
            "replicas for stability alone. Raise --max-replicas or lower the rate."
        )
    shown = [r for r in rows if r.replicas >= max(1, chosen - 3)]
    cv2 = service.cv2
    assumptions = [
        "Poisson arrivals (bursty traffic needs more headroom)",
        f"service times measured from {service.source}: cv2 {cv2:.2f} (1 = exponential), Kolmogorov-Smirnov "
        f"distance {service.exponential_distance:.2f} to the exponential with the same mean"
        + ("; M/G/c by Allen-Cunneen's correction of the mean wait" if abs(cv2 - 1.0) > 0.2 else ""),
    ]
    if batching is None:
        assumptions += [
            "one shared queue in front of identical replicas, each serving one request at a time",
            "adaptive batching under load makes a replica faster than measured one at a time: without batch "
            "measurements the plan errs on the safe side near saturation",
        ]
    else:
        assumptions += [
            f"a batch of b requests costs {batching.fixed_ms:.2f} + {batching.per_request_ms:.2f} * b ms of a "
            f"replica (fitted to bursts of concurrent requests from {batching.source}); a replica saturates where "
            f"the per-request part is used up, {batching.saturation_rate:.0f} requests/s",
            "each replica batches on its own and takes an equal share of the Poisson arrivals; its mean batch is "
            "the fixed point b = lambda S(b) + exp(-lambda S(b)) (the requests arriving during a batch form the "
            "next); an arrival that finds it busy waits for the batch in progress and rides in the next",
            "the batcher's gathering pause under load (up to 2 ms) and a replica sharing its core are not "
            "modelled: both make the real p95 higher than predicted",
        ]
    return CapacityPlan(
        rate, slo_p95_ms, headroom, service, shown, chosen, 1000.0 / per_request_ms, assumptions, batching
    )


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


LOG_GAUGES = {b"mlops_gateway_log_backlog": "backlog", b"mlops_gateway_log_drain_cpu_seconds": "drain_cpu"}


def prediction_log_gauges(metrics: bytes) -> dict[str, float]:
    """A gateway's prediction-log gauges from its ``/metrics`` text: ``backlog`` (answers not yet in the store) and
    ``drain_cpu`` (CPU seconds the drain has taken); a gauge an older release does not report is absent."""
    found = {}
    for line in metrics.splitlines():
        name, _, value = line.partition(b" ")
        if name in LOG_GAUGES:
            found[LOG_GAUGES[name]] = float(value)
    return found


def measure_batch_times(
    host: str,
    port: int,
    records: list[dict[str, Any]],
    sizes: tuple[int, ...] = BATCH_SIZES,
    rounds: int = 30,
    warmup: int = 5,
    min_seconds: float = 1.0,
) -> dict[int, list[float]]:
    """Time, in ms, of bursts of ``size`` single-record requests sent at once on ``size`` kept-alive connections
    (so the gateway's batcher answers them with one predict), from the first byte sent to the last answer read;
    per size, smallest first, after ``warmup`` bursts that let the batcher learn the size: at least ``rounds``
    bursts, back to back for at least ``min_seconds`` (five of the prediction log's writes to the store, whose cost
    belongs to the requests too: see ``BatchCost.fit``), each charged its share of the CPU time the gateway's
    drainer spent on them (read once its ``/metrics`` gauge ``mlops_gateway_log_backlog`` is back at 0; from a
    gateway that does not report ``mlops_gateway_log_drain_cpu_seconds``, the wall time it took to get there).
    The client is a bare HTTP/1.1 writer on asyncio streams: its own cost per request stays small against the
    gateway's."""
    import asyncio
    import json
    import time

    if not records:
        raise CapacityError("no records to send; the config's data source is empty")
    bodies = [json.dumps({"records": [r]}, separators=(",", ":")).encode() for r in records]
    wires = [
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(b)}\r\n\r\n".encode()
        + b
        for b in bodies
    ]

    async def answer(reader: asyncio.StreamReader) -> bytes:
        """The body of the next answer on ``reader``, which must be a 200."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise CapacityError(f"the gateway answered without a Content-Length: {head[:200]!r}")
        body = await reader.readexactly(length)
        if head[9:12] != b"200":
            raise CapacityError(f"the gateway answered {head[9:12].decode()} while measuring: {body[:200]!r}")
        return body

    metrics = f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def log_gauges(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, float]:
        writer.write(metrics)
        return prediction_log_gauges(await answer(reader))

    async def caught_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, float]:
        """The log's gauges once the answers given so far are in the store, and ``wall``: the seconds that took."""
        started = time.perf_counter()
        now = await log_gauges(reader, writer)
        while now.get("backlog") and time.perf_counter() - started < CATCH_UP_LIMIT:
            await asyncio.sleep(0.01)
            now = await log_gauges(reader, writer)
        if now.get("backlog"):
            raise CapacityError(
                f"the gateway's prediction log still had {now['backlog']:.0f} answers to write to the store "
                f"{CATCH_UP_LIMIT:.0f} s after the bursts: the store is slow or unreachable (see the gateway's log)."
            )
        return {**now, "wall": time.perf_counter() - started}

    async def run() -> dict[int, list[float]]:
        streams = [await asyncio.open_connection(host, port) for _ in range(max(sizes))]
        probe = await asyncio.open_connection(host, port)
        times: dict[int, list[float]] = {}
        sent = 0
        try:
            for size in sorted(sizes):
                times[size] = []
                i = 0
                until = math.inf
                start: dict[str, float] = {}
                while i < rounds + warmup or time.perf_counter() < until:
                    if i == warmup:
                        until = time.perf_counter() + min_seconds
                    started = time.perf_counter()
                    for _, writer in streams[:size]:
                        writer.write(wires[sent % len(wires)])
                        sent += 1
                    await asyncio.gather(*(answer(reader) for reader, _ in streams[:size]))
                    if i >= warmup:
                        times[size].append((time.perf_counter() - started) * 1000.0)
                    if i == warmup - 1:  # the warm-up's log rows are not the measured bursts' cost
                        start = await caught_up(*probe)
                    i += 1
                # The log's drain is work every answer costs. The drainer does most of it while the gateway waits
                # for the client's next burst, a gap open-loop traffic near saturation does not leave: all of its
                # CPU time for these bursts is added to them (spread evenly), or, from a gateway that does not
                # report it, the time it takes to catch up afterwards.
                end = await caught_up(*probe)
                if "drain_cpu" in start and "drain_cpu" in end:
                    owed = (end["drain_cpu"] - start["drain_cpu"]) * 1000.0
                else:
                    owed = end["wall"] * 1000.0
                times[size] = [t + owed / len(times[size]) for t in times[size]]
        finally:
            for _, writer in [*streams, probe]:
                writer.close()
        return times

    return asyncio.run(run())
