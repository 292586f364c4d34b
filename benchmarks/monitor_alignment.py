"""Benchmark: does the monitor's health verdict depend on where the clock's minute boundaries fall?

``monitoring.health.interval_series`` buckets a window into clock intervals (60 s by default); the buckets at either
end are partly filled, the last one still filling. This script builds labelled regressor windows (``--answers``
answers evenly over 30 minutes, errors normal(0, 5), the truth moved by ``shift`` in the last 40%), starts each at
``--offsets`` points of a minute for ``--seeds`` seeds, and counts how often ``health_report`` says ``mae`` is
degraded, per shift. On steady errors (shift 0) every "degraded" is a false alarm. Pure computation: no servers,
and the same figures on a busy host. Usage (repository root)::

    .venv/bin/python benchmarks/monitor_alignment.py [--seeds 100] [--offsets 12]

Writes ``benchmarks/results/monitor_alignment.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import write_json

from core.config import load_config
from monitoring.health import health_report, interval_series
from tests.conftest import write_synthetic_project
from tests.helpers import labelled_window

SHIFTS = (0.0, 1.0, 2.0, 6.0)
MAE_OF_SD_5 = 5 * math.sqrt(2 / math.pi)  # the champion's holdout MAE for normal(0, 5) errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--offsets", type=int, default=12, help="window starts spread evenly over a minute")
    parser.add_argument("--answers", type=int, default=800)
    args = parser.parse_args(argv)
    regressor = {"evaluation": {"primary_metric": "mae"}, "gates.min_score": None}
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_synthetic_project(Path(tmp), config=regressor))
    minute = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    rows = []
    for shift in SHIFTS:
        degraded = 0
        for seed in range(args.seeds):
            for k in range(args.offsets):
                start = minute + timedelta(seconds=60.0 * k / args.offsets)
                series = interval_series(
                    labelled_window(start, seed=seed, n=args.answers, late_bias=shift),
                    config.monitoring.interval_seconds,
                )
                degraded += "mae" in health_report(series, config, None, baseline_mae=MAE_OF_SD_5).degraded
        total = args.seeds * args.offsets
        rows.append({"shift": shift, "windows": total, "degraded": degraded, "share": degraded / total})
        print(f"shift {shift:g}: degraded in {degraded} of {total} windows ({degraded / total:.1%})", flush=True)
    table = "\n".join(
        [
            "| truth moved by (last 40%) | windows | degraded | share |",
            "|---:|---:|---:|---:|",
            *(f"| {r['shift']:g} | {r['windows']:,} | {r['degraded']:,} | {r['share']:.1%} |" for r in rows),
        ]
    )
    print(table)
    write_json("monitor_alignment.json", {"args": vars(args), "results": rows, "table": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
