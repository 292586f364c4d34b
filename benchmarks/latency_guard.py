"""Benchmark: does the latency guard roll back an equally fast challenger when the host's load is unequal over the
rollout, and does it catch a challenger twice as slow? The old guard (a p95 ratio of the two variants' pooled
latencies) against the new one (same-conditions pairs and an always-valid test, ``deployments.statistics.latency``),
on exactly the same simulated traffic.

Each simulated rollout is 120 s of Poisson traffic at 150 requests/s through a canary at 10% for 60 s and 50% for
the next 60 s. A request's latency is a base time (log-normal, median 20 ms, sigma 0.25) times the host's load when
it starts, times the challenger's slowness factor if the challenger answered. Load profiles:

- ``steady``: no load change (the control);
- ``busier later``: from the step change on, another job makes every request 2.5x slower: the challenger's answers
  are mostly in the busy half, the champion's mostly in the quiet half, which is what rolled back healthy
  challengers on a busy host (pooled percentiles compare the moments as much as the models);
- ``bursts + polls``: random bursts (4x, about 0.5 s long, every 3 s on average) and, every 0.5 s, 50 ms during
  which requests are 3x slower (a rollout flow polling in the gateway's own process).

Challengers: ``equal`` (as fast), ``at the limit`` (its latency is ``max(1.5 x, x + 5 ms)`` of a champion-like draw
``x``: exactly the tolerated effect, where the new test's false-rollback bound is tight), and ``2x slower``.
Both guards are evaluated every 0.5 s (the demo's poll); the new one also after every pair (continuous monitoring,
the case its bound is stated for). At a poll the new guard uses the pairs whose two answers had both started (the
real flow re-pairs the prediction log from scratch; the two differ only in the last second).

Usage (from the repository root)::

    .venv/bin/python benchmarks/latency_guard.py [--rollouts 200] [--seed 0]

Prints a markdown table and writes it with the raw figures to ``benchmarks/results/latency_guard.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deployments.statistics import LatencyGuard, pair_by_start_time, wilson_interval  # noqa: E402

RATE = 150.0
SECONDS = 120.0
STEP_AT = 60.0
WEIGHTS = (0.10, 0.50)
POLL = 0.5
BASE_MS, SIGMA = 20.0, 0.25
RATIO, EXTRA_MS, ALPHA = 1.5, 5.0, 0.05
OLD_MIN_SAMPLES = 50
GUARD = LatencyGuard(alpha=ALPHA, max_ratio=RATIO, min_increase_ms=EXTRA_MS)

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scenario:
    load: str
    challenger: str


def load_factor(profile: str, start: Floats, rng: np.random.Generator) -> Floats:
    if profile == "steady":
        return np.ones_like(start)
    if profile == "busier later":
        return np.where(start >= STEP_AT, 2.5, 1.0)
    if profile == "bursts + polls":
        factor = np.ones_like(start)
        t = rng.exponential(3.0)
        while t < SECONDS:
            length = rng.exponential(0.5)
            factor[(start >= t) & (start < t + length)] = 4.0
            t += length + rng.exponential(3.0)
        factor[np.mod(start, POLL) < 0.05] *= 3.0
        return factor
    raise ValueError(profile)


def traffic(scenario: Scenario, rng: np.random.Generator) -> tuple[Floats, Floats, npt.NDArray[np.bool_]]:
    n = rng.poisson(RATE * SECONDS)
    start = np.sort(rng.uniform(0.0, SECONDS, n))
    weight = np.where(start < STEP_AT, WEIGHTS[0], WEIGHTS[1])
    chall = rng.random(n) < weight
    base = BASE_MS * rng.lognormal(0.0, SIGMA, n)
    if scenario.challenger == "2x slower":
        base = np.where(chall, base * 2.0, base)
    elif scenario.challenger == "at the limit":
        base = np.where(chall, np.maximum(base * RATIO, base + EXTRA_MS), base)
    latency = base * load_factor(scenario.load, start, rng)
    return start, latency, chall


def old_guard_first_abort(start: Floats, latency: Floats, chall: npt.NDArray[np.bool_]) -> float | None:
    """The guard this replaces: p95 of the last 5000 latencies of each variant, ratio > 1.5 and 5 ms more, once
    both have 50; evaluated at every poll on the answers completed by then."""
    done = start + latency / 1000.0
    by_variant = []
    for mask in (chall, ~chall):
        order = np.argsort(done[mask])
        by_variant.append((done[mask][order], latency[mask][order]))
    (done_c, lat_c), (done_a, lat_a) = by_variant
    for t in np.arange(POLL, SECONDS + POLL, POLL):
        kc, ka = int(np.searchsorted(done_c, t)), int(np.searchsorted(done_a, t))
        if kc < OLD_MIN_SAMPLES or ka < OLD_MIN_SAMPLES:
            continue
        pc = np.percentile(lat_c[max(0, kc - 5000) : kc], 95)
        pa = np.percentile(lat_a[max(0, ka - 5000) : ka], 95)
        if pc / max(pa, 1e-3) > RATIO and pc - pa > EXTRA_MS:
            return float(t)
    return None


def new_guard_first_abort(
    start: Floats, latency: Floats, chall: npt.NDArray[np.bool_]
) -> tuple[float | None, float | None, int]:
    """(first abort at a poll, first abort after any pair, pairs): pairs of the whole rollout, counted by when their
    later member started."""
    ids = np.arange(start.size)
    pairs_c, pairs_a = _pairs_with_index(start, latency, chall, ids)
    if not pairs_c.size:
        return None, None, 0
    when = np.maximum(start[pairs_c], start[pairs_a])
    order = np.argsort(when, kind="stable")
    when = when[order]
    c, a = latency[pairs_c][order], latency[pairs_a][order]
    slow = c > np.maximum(a * RATIO, a + EXTRA_MS)
    cum_slow, cum_n = np.cumsum(slow), np.arange(1, slow.size + 1)
    aborts = GUARD.decision_codes(cum_slow, cum_n)
    continuous = float(when[np.argmax(aborts)]) if aborts.any() else None
    polls = np.arange(POLL, SECONDS + POLL, POLL)
    k = np.searchsorted(when, polls, side="right")
    seen = k > 0
    at_poll = np.zeros(polls.size, dtype=bool)
    at_poll[seen] = GUARD.decision_codes(cum_slow[k[seen] - 1], cum_n[k[seen] - 1])
    polled = float(polls[np.argmax(at_poll)]) if at_poll.any() else None
    return polled, continuous, int(pairs_c.size)


def _pairs_with_index(
    start: Floats, latency: Floats, chall: npt.NDArray[np.bool_], ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The production pairing, run on row numbers as "latencies" to recover which rows were paired."""
    pairs = pair_by_start_time(start, ids.astype(np.float64), chall)
    return pairs.challenger_ms.astype(np.int64), pairs.champion_ms.astype(np.int64)


def summarise(scenario: Scenario, rollouts: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, len(scenario.load), len(scenario.challenger)])
    old, polled, continuous = [], [], []
    pairs_seen = []
    for _ in range(rollouts):
        start, latency, chall = traffic(scenario, rng)
        old.append(old_guard_first_abort(start, latency, chall))
        p, c, n = new_guard_first_abort(start, latency, chall)
        polled.append(p)
        continuous.append(c)
        pairs_seen.append(n)

    def rate(times: list[float | None]) -> dict[str, Any]:
        hits = [t for t in times if t is not None]
        low, high = wilson_interval(len(hits), len(times), 0.95)
        return {
            "rollbacks": len(hits),
            "rate": len(hits) / len(times),
            "ci95": [low, high],
            "median_seconds_to_rollback": float(np.median(hits)) if hits else None,
        }

    return {
        "load": scenario.load,
        "challenger": scenario.challenger,
        "rollouts": rollouts,
        "old_p95_ratio_guard": rate(old),
        "new_guard_at_polls": rate(polled),
        "new_guard_continuous": rate(continuous),
        "pairs_per_rollout_mean": float(np.mean(pairs_seen)),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(r: dict[str, Any]) -> str:
        low, high = r["ci95"]
        when = r["median_seconds_to_rollback"]
        t = f"; median {when:.1f} s" if when is not None else ""
        return f"{r['rate']:.1%} ({low:.1%}–{high:.1%}){t}"

    lines = [
        "| Load | Challenger | Rollouts | Old guard (p95 ratio), every 0.5 s | New guard, every 0.5 s | "
        "New guard, after every pair | Pairs per rollout |",
        "|---|---|---:|---|---|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['load']} | {r['challenger']} | {r['rollouts']} | {cell(r['old_p95_ratio_guard'])} | "
            f"{cell(r['new_guard_at_polls'])} | {cell(r['new_guard_continuous'])} | {r['pairs_per_rollout_mean']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "latency_guard.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [
        summarise(Scenario(load, challenger), args.rollouts, args.seed)
        for load in ("steady", "busier later", "bursts + polls")
        for challenger in ("equal", "at the limit", "2x slower")
    ]
    elapsed = time.perf_counter() - started
    table = markdown(rows)
    print(table)
    equal_new = max(r["new_guard_continuous"]["rate"] for r in rows if r["challenger"] != "2x slower")
    slow_new = min(r["new_guard_at_polls"]["rate"] for r in rows if r["challenger"] == "2x slower")
    checks = {"false_rollbacks_le_alpha": equal_new <= ALPHA, "slow_caught_ge_0.95": slow_new >= 0.95}
    print(
        f"\nNew guard: largest false-rollback rate (equal or at-the-limit challenger, continuous) {equal_new:.1%} "
        f"(alpha {ALPHA:.0%}); smallest catch rate of a 2x slower challenger at 0.5 s polls {slow_new:.1%}. "
        f"{len(rows)} rows in {elapsed:.0f} s"
    )
    result = {
        "benchmark": "latency_guard",
        "command": f".venv/bin/python benchmarks/latency_guard.py --rollouts {args.rollouts} --seed {args.seed}",
        "settings": {
            "rate_per_second": RATE,
            "seconds": SECONDS,
            "weights": list(WEIGHTS),
            "step_at_seconds": STEP_AT,
            "poll_seconds": POLL,
            "base_median_ms": BASE_MS,
            "sigma": SIGMA,
            "max_latency_ratio": RATIO,
            "min_latency_increase_ms": EXTRA_MS,
            "alpha": ALPHA,
        },
        "checks": checks,
        "rows": rows,
        "markdown": table,
        "seconds": round(elapsed, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
