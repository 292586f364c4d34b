"""How many pairs the latency guard needs before a rollout may leave its reach (``rollout.min_latency_pairs``).

The guard's test (``deployments.statistics.latency``) only ever rolls back; a canary at 100% leaves it no champion
answers to pair with. This simulates the test the policy runs (``LatencyGuard.decision_codes``, checked after every
pair) on streams of pairs each too slow with probability ``q``, and prints the share of streams rolled back within
50, 100, 150, 200 and 400 pairs, and the median number of pairs to the rollback, per alpha.

Usage (from the repository root; a few seconds)::

    .venv/bin/python benchmarks/latency_min_pairs.py [--streams 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deployments.statistics import LatencyGuard  # noqa: E402

HORIZONS = (50, 100, 150, 200, 400)
SHARES = (0.6, 0.65, 0.7, 0.75, 0.8, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n = np.arange(1, max(HORIZONS) + 1)
    print("| alpha | too slow in | " + " | ".join(f"within {h}" for h in HORIZONS) + " | median pairs |")
    print("|---|---:|" + "---:|" * (len(HORIZONS) + 1))
    for alpha in (0.01, 0.05):
        guard = LatencyGuard(alpha=alpha)
        for q in SHARES:
            slow = np.cumsum(rng.random((args.streams, n.size)) < q, axis=1)
            aborts = guard.decision_codes(slow, np.broadcast_to(n, slow.shape))
            first = np.where(aborts.any(axis=1), aborts.argmax(axis=1) + 1, np.iinfo(np.int64).max)
            shares = " | ".join(f"{np.mean(first <= h):.1%}" for h in HORIZONS)
            median = np.median(first)
            print(
                f"| {alpha:g} | {q:.0%} | {shares} | {median:g} |"
                if median < n.size
                else f"| {alpha:g} | {q:.0%} | {shares} | > {n.size} |"
            )


if __name__ == "__main__":
    main()
