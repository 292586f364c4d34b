"""Benchmark: does the drift check alarm on change that matters, and only on that?

``monitoring.drift.detect_drift`` with the project's defaults (normed Wasserstein for numeric columns and
Jensen-Shannon for categorical ones, both at 0.1; dataset drift when ``monitoring.drift_share`` = 30% of the columns
drift) is run on seeded synthetic data of 10 columns (4 normal, 2 gamma, 1 Poisson count, 3 categorical with 3-6
levels). For every current size, ``--checks`` independent checks of each scenario draw a fresh reference
(``--reference-rows``, 5,000 by default) and a fresh current window from the generator:

- ``stationary``: the same generator on both sides. A dataset-drift verdict is a false alarm (target: at most 5 per
  100 checks at every size).
- ``shift``: the mean of 3 of the 10 columns moved by half a standard deviation (two normal, one gamma). Detected when
  the verdict is dataset drift (target: at least 95 per 100 at 1,000 rows and more).
- ``new category``: stationary, plus one row whose ``plan`` is a value the reference never had. It must never be
  dataset drift, and the unseen category must be reported.

The same checks with the p-value tests Evidently picks by itself for small references (Kolmogorov-Smirnov,
chi-square at 0.05) are run for comparison (``--compare-p-values``): their false alarms grow with the current size.

Usage (from the repository root)::

    .venv/bin/python benchmarks/drift_calibration.py [--sizes 200 1000 10000] [--checks 100] [--compare-p-values]

Prints a markdown table and writes ``benchmarks/results/drift_calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from the repository root
    sys.path.insert(0, str(REPO))

NUMERIC = ["n1", "n2", "n3", "n4", "g1", "g2", "count"]
CATEGORICAL = ["region", "plan", "channel"]
SHIFTED = ["n1", "n2", "g1"]  # half a standard deviation each
RESULT = REPO / "benchmarks" / "results" / "drift_calibration.json"


def generate(rows: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    """Ten columns of varied shapes; ``shift`` moves the SHIFTED columns' means by that many standard deviations."""
    frame = pd.DataFrame(
        {
            "n1": rng.normal(0.0, 1.0, rows),
            "n2": rng.normal(50.0, 10.0, rows),
            "n3": rng.normal(-3.0, 0.5, rows),
            "n4": rng.normal(100.0, 25.0, rows),
            "g1": rng.gamma(2.0, 12.0, rows),  # sd = 12 * sqrt(2)
            "g2": rng.gamma(5.0, 1.0, rows),
            "count": rng.poisson(3.0, rows).astype(float),
            "region": rng.choice(["north", "south", "east", "west"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
            "channel": rng.choice(["web", "app", "store", "phone", "partner", "mail"], rows),
        }
    )
    if shift:
        frame["n1"] += shift * 1.0
        frame["n2"] += shift * 10.0
        frame["g1"] += shift * 12.0 * np.sqrt(2.0)
    return frame


def run_checks(size: int, scenario: str, checks: int, reference_rows: int, p_values: bool) -> dict[str, Any]:
    from core.config import MonitoringConfig
    from monitoring.drift import detect_drift

    share = MonitoringConfig().drift_share
    tests: dict[str, Any] = {"numeric_test": ("ks", 0.05), "categorical_test": ("chisquare", 0.05)} if p_values else {}
    alarms, column_flags, unseen_reported, seconds = 0, 0, 0, []
    for i in range(checks):
        rng = np.random.default_rng([size, i, {"stationary": 0, "shift": 1, "new category": 2}[scenario]])
        reference = generate(reference_rows, rng)
        current = generate(size, rng, shift=0.5 if scenario == "shift" else 0.0)
        if scenario == "new category":
            current.loc[0, "plan"] = "enterprise"
        start = time.perf_counter()
        verdict = detect_drift(
            reference, current, NUMERIC, CATEGORICAL, drift_share=share, with_html=False, seed=i, **tests
        )
        seconds.append(time.perf_counter() - start)
        alarms += verdict.dataset_drift
        column_flags += len(verdict.drifted_columns)
        unseen_reported += any(u.column == "plan" for u in verdict.unseen)
    return {
        "size": size,
        "scenario": scenario,
        "tests": "p-values (K-S, chi-square at 0.05)" if p_values else "effect sizes (Wasserstein, Jensen-Shannon 0.1)",
        "checks": checks,
        "dataset_drift": alarms,
        "drifted_columns_per_check": column_flags / checks,
        "unseen_reported": unseen_reported,
        "seconds_per_check": float(np.mean(seconds)),
    }


def verdict_of(row: dict[str, Any]) -> str:
    """Whether a row meets its target (effect sizes only: the p-value rows are the comparison)."""
    per100 = 100 * row["dataset_drift"] / row["checks"]
    if row["scenario"] == "stationary":
        return "met" if per100 <= 5 else "MISSED"
    if row["scenario"] == "shift":
        return "-" if row["size"] < 1000 else ("met" if per100 >= 95 else "MISSED")
    return "met" if row["dataset_drift"] == 0 and row["unseen_reported"] == row["checks"] else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 10_000])
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--reference-rows", type=int, default=5000)
    parser.add_argument("--compare-p-values", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    rows = []
    for size in args.sizes:
        for scenario in ("stationary", "shift", "new category"):
            for p_values in (False, True) if args.compare_p_values else (False,):
                row = run_checks(size, scenario, args.checks, args.reference_rows, p_values)
                row["target"] = "-" if p_values else verdict_of(row)
                rows.append(row)
                print(
                    f"{size:>7} {scenario:<13} {row['tests'][:12]:<12} dataset drift {row['dataset_drift']:>3}/"
                    f"{row['checks']} columns/check {row['drifted_columns_per_check']:.2f} "
                    f"{row['seconds_per_check']:.2f} s/check {row['target']}",
                    flush=True,
                )
    print("\n| current rows | scenario | tests | dataset drift / checks | drifted columns per check | target |")
    print("|---:|---|---|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['scenario']} | {r['tests']} | {r['dataset_drift']} / {r['checks']} "
            f"| {r['drifted_columns_per_check']:.2f} | {r['target']} |"
        )
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(
        json.dumps(
            {
                "command": " ".join(["benchmarks/drift_calibration.py", *sys.argv[1:]]),
                "reference_rows": args.reference_rows,
                "host": {"machine": platform.machine(), "python": platform.python_version()},
                "wall_seconds": time.perf_counter() - started,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
