"""Benchmark: how much faster the sampled drift check is than Evidently on the full data, and whether it agrees.

``tasks.drift.detect_drift`` samples each side deterministically down to ``max_rows`` (30,000 by default) before it
runs Evidently's ``DataDriftPreset``. This script measures what that buys and what it costs, on seeded synthetic
data of 20 columns (16 numeric with varied distributions, 4 categorical with 3-10 levels):

1. Speed and memory: (a) the plain ``DataDriftPreset`` on the full data against (b) ``detect_drift(...,
   with_html=False)`` with the default ``max_rows`` (and once with ``with_html=True`` at the largest size). Every
   measurement runs in a fresh subprocess. Time is the wall-clock time of the call alone (imports and data
   generation excluded; the first call in a process, so Evidently's one-off warm-up is included in both), wall
   and CPU. Memory, two ways: the call's own peak (the worker resets the kernel's peak-RSS mark after building the
   data, via ``/proc/self/clear_refs``, and reports peak RSS after the call minus RSS before it), and
   ``ru_maxrss`` of the measurement subprocess minus ``ru_maxrss`` of an "idle" subprocess that does the same
   imports and builds the same data but runs nothing (blind to calls that need less than data generation's own
   transient peak).
2. Agreement: per-column drift verdicts of (b) against (a): the fraction of columns with the same ``drifted`` flag
   and the largest absolute score difference, for 5 sampling seeds. Some columns are shifted clearly, some to
   scores near the 0.1 threshold (designed 0.06-0.14), the rest not at all, so agreement is tested where it can fail.
3. Detection delay and false alarms on a stream: monitoring windows of 2,000 rows sliding in steps of 500 rows are
   checked against a 50,000-row reference with ``detect_drift(..., drift_share=0.3)``; after 100 stationary checks
   three columns shift. The delay is the number of rows that arrived after the shift when a check first reports
   dataset drift.

Usage (from the repository root)::

    .venv/bin/python benchmarks/drift_speed.py [--sizes 100000 1000000] [--quick] [--budget 1800]

``--quick`` uses 20,000 and 100,000 rows and a shorter stream for a smoke run. ``--budget`` bounds the total
wall-clock time: a full-data baseline whose projected time exceeds the remaining budget is skipped (and reported as
skipped), and every subprocess is killed when the budget runs out. Prints markdown tables and writes the figures
to ``benchmarks/results/drift_speed.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from the repository root
    sys.path.insert(0, str(REPO))

THRESHOLD = 0.1  # Evidently's default for both distance tests used on large data
DEFAULT_SIZES = [100_000, 1_000_000]
QUICK_SIZES = [20_000, 100_000]
SEEDS = [0, 1, 2, 3, 4]
TARGET_SPEEDUP = 20.0
TARGET_AGREEMENT = 0.99
TARGET_SIZE = 1_000_000
SMALL_MAX_ROWS = 10_000  # an extra, non-default configuration at the largest size
DATA_SEED = 20240601

# Evidently 0.7 default methods and how each decides (legacy/calculations/stattests/*.py)
DRIFT_RULES: dict[str, Callable[[float, float], bool]] = {
    "Wasserstein distance (normed)": lambda s, t: s >= t,
    "Jensen-Shannon distance": lambda s, t: s >= t,
    "K-S p_value": lambda s, t: s <= t,
    "chi-square p_value": lambda s, t: s < t,
    "Z-test p_value": lambda s, t: s < t,
}

Draw = Callable[[np.random.Generator, int, bool], np.ndarray]


# ---------------------------------------------------------------------------------------------------------------
# Synthetic data: every column knows its distribution, its shift and the score Evidently should give the shift.


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "num" or "cat"
    role: str  # "clear", "borderline" or "none"
    draw: Draw  # (rng, n, shifted) -> values
    designed: float  # population score of the shift (0 when unshifted)
    shift: str  # human-readable description
    probs: tuple[np.ndarray, np.ndarray] | None = None  # categorical: level probabilities before and after the shift


def _location(sample: Callable[[np.random.Generator, int], np.ndarray], offset: float) -> Draw:
    def draw(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
        x = sample(rng, n)
        return x + offset if shifted else x

    return draw


def _scale(sample: Callable[[np.random.Generator, int], np.ndarray], centre: float, factor: float) -> Draw:
    def draw(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
        x = sample(rng, n)
        return centre + factor * (x - centre) if shifted else x

    return draw


def _plain(sample: Callable[[np.random.Generator, int], np.ndarray]) -> Draw:
    return lambda rng, n, shifted: sample(rng, n)


def _js_distance(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.spatial import distance

    return float(distance.jensenshannon(p, q))  # natural log, as Evidently calls it


def _mixture_for_js(p: np.ndarray, towards: np.ndarray, target: float) -> np.ndarray:
    """Probabilities (1 - e) p + e towards whose Jensen-Shannon distance to p is ``target``."""
    from scipy.optimize import brentq

    if _js_distance(p, towards) <= target:
        raise ValueError("target distance not reachable")
    eps = brentq(lambda e: _js_distance(p, (1 - e) * p + e * towards) - target, 0.0, 1.0, xtol=1e-12)
    return (1 - eps) * p + eps * towards


def _categorical(
    levels: int, p: list[float], towards: list[float] | None, target: float
) -> tuple[Draw, float, tuple[np.ndarray, np.ndarray]]:
    names = np.array([f"L{i}" for i in range(levels)], dtype=object)
    base = np.asarray(p, dtype=float) / sum(p)
    shifted_p = base if towards is None else _mixture_for_js(base, np.asarray(towards, dtype=float), target)

    def draw(rng: np.random.Generator, n: int, shifted: bool) -> np.ndarray:
        return names[rng.choice(levels, size=n, p=shifted_p if shifted else base)]

    return draw, (_js_distance(base, shifted_p) if towards is not None else 0.0), (base, shifted_p)


def _poisson_shift(lam: float, lam_shifted: float) -> Draw:
    return lambda rng, n, shifted: rng.poisson(lam_shifted if shifted else lam, n).astype(np.int64)


def build_columns() -> list[Column]:
    """16 numeric and 4 categorical columns. Shifts are exact in distribution, so the population score is known:
    normed Wasserstein of a location shift d*sd is d; of a scale change k about the mean of a normal it is
    |k - 1| sqrt(2/pi); of X -> kX for a positive X it is |k - 1| E[X] / sd[X]."""
    ln_mean, ln_sd = math.exp(0.125), math.sqrt((math.exp(0.25) - 1) * math.exp(0.25))  # lognormal(0, 0.5)
    k_ln = 1.2
    k_norm = 1 + 0.06 / math.sqrt(2 / math.pi)
    c0, c0_score, c0_p = _categorical(3, [0.5, 0.3, 0.2], [0.05, 0.15, 0.8], 0.30)
    c1, c1_score, c1_p = _categorical(5, [0.3, 0.25, 0.2, 0.15, 0.1], [0.1, 0.15, 0.2, 0.25, 0.3], 0.09)
    c2, _, c2_p = _categorical(7, [0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.05], None, 0.0)
    c3, _, c3_p = _categorical(10, [0.25, 0.15, 0.12, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05, 0.03], None, 0.0)
    u_sd = 2 / math.sqrt(12)
    return [
        Column(
            "n00_normal", "num", "clear", _location(lambda r, n: r.normal(50, 10, n), 0.5 * 10), 0.5, "mean +0.5 sd"
        ),
        Column("n01_normal", "num", "none", _plain(lambda r, n: r.normal(0, 1, n)), 0.0, "-"),
        Column(
            "n02_normal",
            "num",
            "borderline",
            _location(lambda r, n: r.normal(100, 15, n), 0.12 * 15),
            0.12,
            "mean +0.12 sd",
        ),
        Column(
            "n03_lognormal",
            "num",
            "clear",
            _scale(lambda r, n: r.lognormal(0, 0.5, n), 0.0, k_ln),
            (k_ln - 1) * ln_mean / ln_sd,
            "values x1.2",
        ),
        Column("n04_lognormal", "num", "none", _plain(lambda r, n: r.lognormal(3, 1, n)), 0.0, "-"),
        Column(
            "n05_gamma",
            "num",
            "borderline",
            _location(lambda r, n: r.gamma(2, 1, n), 0.08 * math.sqrt(2)),
            0.08,
            "mean +0.08 sd",
        ),
        Column("n06_gamma", "num", "none", _plain(lambda r, n: r.gamma(0.5, 2, n)), 0.0, "-"),
        Column("n07_uniform", "num", "none", _plain(lambda r, n: r.uniform(0, 1, n)), 0.0, "-"),
        Column(
            "n08_uniform",
            "num",
            "borderline",
            _location(lambda r, n: r.uniform(-1, 1, n), 0.14 * u_sd),
            0.14,
            "mean +0.14 sd",
        ),
        Column("n09_counts", "num", "clear", _poisson_shift(3, 4), 1 / math.sqrt(3), "Poisson 3 -> 4"),
        Column("n10_counts", "num", "none", _poisson_shift(20, 20), 0.0, "-"),
        Column(
            "n11_normal",
            "num",
            "borderline",
            _scale(lambda r, n: r.normal(0, 2, n), 0.0, k_norm),
            0.06,
            f"sd x{k_norm:.4f}",
        ),
        Column("n12_student_t", "num", "none", _plain(lambda r, n: r.standard_t(5, n)), 0.0, "-"),
        Column("n13_exponential", "num", "none", _plain(lambda r, n: r.exponential(1, n)), 0.0, "-"),
        Column("n14_beta", "num", "none", _plain(lambda r, n: r.beta(2, 5, n)), 0.0, "-"),
        Column(
            "n15_small_counts",
            "num",
            "none",
            _plain(lambda r, n: r.binomial(4, 0.3, n).astype(np.int64)),
            0.0,
            "- (5 values: Evidently uses Jensen-Shannon)",
        ),
        Column("c0_3_levels", "cat", "clear", c0, c0_score, "level mix, JS 0.30", c0_p),
        Column("c1_5_levels", "cat", "borderline", c1, c1_score, "level mix, JS 0.09", c1_p),
        Column("c2_7_levels", "cat", "none", c2, 0.0, "-", c2_p),
        Column("c3_10_levels", "cat", "none", c3, 0.0, "-", c3_p),
    ]


COLUMNS = build_columns()
NUMERIC = [c.name for c in COLUMNS if c.kind == "num"]
CATEGORICAL = [c.name for c in COLUMNS if c.kind == "cat"]
BY_NAME = {c.name: c for c in COLUMNS}

# The stream: 8 monitored columns of which 3 shift, so dataset drift at drift_share 0.3 needs all three (3/8 =
# 0.375; 2/8 = 0.25). With all 20 columns, 3 drifted columns (0.15) could never reach 0.3.
STREAM_COLUMNS = [
    "n00_normal",
    "n03_lognormal",
    "n04_lognormal",
    "n07_uniform",
    "n10_counts",
    "n15_small_counts",
    "c0_3_levels",
    "c2_7_levels",
]
STREAM_SHIFTED = ["n00_normal", "n03_lognormal", "c0_3_levels"]


def make_frame(n: int, seed: int, side: int, shifted: list[str] | None = None, columns: list[str] | None = None):
    """One side (0 reference, 1 current) of ``n`` rows; each column has its own generator, so a column's values
    do not depend on which other columns are built."""
    shifted_set = set(shifted or [])
    data = {}
    for i, col in enumerate(COLUMNS):
        if columns is not None and col.name not in columns:
            continue
        rng = np.random.default_rng([seed, i, side])
        data[col.name] = col.draw(rng, n, col.name in shifted_set)
    return pd.DataFrame(data)


def make_pair(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    ref = make_frame(n, DATA_SEED, 0)
    cur = make_frame(n, DATA_SEED, 1, shifted=[c.name for c in COLUMNS if c.role != "none"])
    return ref, cur


# ---------------------------------------------------------------------------------------------------------------
# Worker side: one measurement per subprocess.


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Return freed heap to the OS and reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5), so that the
    peak after a call is the call's own peak rather than data generation's."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def baseline_columns(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[list[dict[str, Any]], float | None]:
    """Plain Evidently on the given data; per-column verdicts parsed from the metric config (independently of
    tasks/drift.py) and Evidently's own drifted share."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    nums = [c for c in NUMERIC if c in ref.columns]
    cats = [c for c in CATEGORICAL if c in ref.columns]
    dd = DataDefinition(numerical_columns=nums, categorical_columns=cats)
    snap = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=dd),
        reference_data=Dataset.from_pandas(ref, data_definition=dd),
    )
    columns, share = [], None
    for metric in snap.dict()["metrics"]:
        name = metric["metric_name"]
        if name.startswith("ValueDrift("):
            config = metric["config"]
            method, threshold, score = config["method"], float(config["threshold"]), float(metric["value"])
            columns.append(
                {
                    "column": config["column"],
                    "method": method,
                    "threshold": threshold,
                    "score": score,
                    "drifted": bool(DRIFT_RULES[method](score, threshold)),
                }
            )
        elif name.startswith("DriftedColumnsCount("):
            share = float(metric["value"]["share"])
    return columns, share


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    import evidently  # noqa: F401  (same imports in every mode, so the idle process is a fair memory baseline)

    from monitoring.drift import detect_drift

    mode = spec["mode"]
    if mode == "stream":
        return run_stream(spec, detect_drift)
    n = int(spec["n"])
    ref, cur = make_pair(n)
    gc.collect()
    out: dict[str, Any] = {"mode": mode, "n": n, "rss_peak_setup_mb": _rss_mb()}
    out["peak_reset"] = _reset_peak_rss()
    out["rss_before_call_mb"] = _current_rss_mb()
    out["loadavg_before"] = os.getloadavg()[0]
    if mode == "baseline":
        t0, c0 = time.perf_counter(), time.process_time()
        columns, share = baseline_columns(ref, cur)
        out.update(
            seconds=time.perf_counter() - t0,
            cpu_seconds=time.process_time() - c0,
            columns=columns,
            evidently_share=share,
        )
    elif mode == "sampled":
        runs = []
        for seed in spec["seeds"]:
            t0, c0 = time.perf_counter(), time.process_time()
            verdict = detect_drift(
                ref, cur, NUMERIC, CATEGORICAL, seed=seed, with_html=spec["with_html"], **spec.get("kwargs", {})
            )
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            runs.append(
                {
                    "seed": seed,
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "columns": [c.to_json() for c in verdict.columns],
                    "drift_share": verdict.drift_share,
                    "dataset_drift": verdict.dataset_drift,
                    "sampled_rows": [verdict.sampled_reference_rows, verdict.sampled_current_rows],
                    "html_chars": len(verdict.html),
                }
            )
        out["runs"] = runs
    elif mode == "floor":  # Evidently's cost on small inputs: what no sampling can go below
        baseline_columns(ref.iloc[:2000], cur.iloc[:2000])  # warm-up
        out["runs"] = []
        for rows in spec["rows"]:
            t0, c0 = time.perf_counter(), time.process_time()
            baseline_columns(ref.iloc[:rows], cur.iloc[:rows])
            out["runs"].append(
                {"rows": rows, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
            )
    elif mode != "idle":
        raise ValueError(f"unknown mode {mode}")
    out["rss_call_peak_mb"] = _rss_mb()  # since the reset: the call's own peak
    out["rss_peak_mb"] = max(out["rss_peak_setup_mb"], out["rss_call_peak_mb"])  # the whole process's ru_maxrss
    out["loadavg_after"] = os.getloadavg()[0]
    return out


def run_stream(spec: dict[str, Any], detect_drift: Callable[..., Any]) -> dict[str, Any]:
    window, step, checks = int(spec["window"]), int(spec["step"]), int(spec["checks"])
    share, post_limit = float(spec["drift_share"]), int(spec["max_post_checks"])
    nums = [c for c in STREAM_COLUMNS if c in NUMERIC]
    cats = [c for c in STREAM_COLUMNS if c in CATEGORICAL]
    reference = make_frame(int(spec["reference_rows"]), DATA_SEED + 1, 0, columns=STREAM_COLUMNS)
    replicates, stationary, times = [], [], []
    for r in range(int(spec["replicates"])):
        # replicate 0 carries the stationary checks; the others only need one full window before the shift.
        # The shift lands at different phases of the 500-row check grid.
        phase = (r * step) // max(int(spec["replicates"]), 1)
        pre_checks = checks if r == 0 else 1
        shift_row = window + (pre_checks - 1) * step + phase
        total = shift_row + post_limit * step + step
        pre = make_frame(shift_row, DATA_SEED + 2 + r, 1, columns=STREAM_COLUMNS)
        post = make_frame(total - shift_row, DATA_SEED + 2 + r, 2, shifted=STREAM_SHIFTED, columns=STREAM_COLUMNS)
        stream = pd.concat([pre, post], ignore_index=True)
        first_column, first_dataset, post_scores = None, None, []
        for end in range(window, total + 1, step):
            t0 = time.perf_counter()
            v = detect_drift(reference, stream.iloc[end - window : end], nums, cats, drift_share=share, with_html=False)
            times.append(time.perf_counter() - t0)
            scores = {c.column: c.score for c in v.columns}
            drifted = set(v.drifted_columns)
            if end <= shift_row:
                if r == 0:
                    stationary.append(
                        {"end": end, "drifted": sorted(drifted), "dataset_drift": v.dataset_drift, "scores": scores}
                    )
                continue
            post_scores.append(
                {
                    "end": end,
                    "rows_after_shift": end - shift_row,
                    "drifted": sorted(drifted),
                    "dataset_drift": v.dataset_drift,
                    "shifted_scores": {c: round(scores[c], 4) for c in STREAM_SHIFTED},
                }
            )
            if first_column is None and drifted & set(STREAM_SHIFTED):
                first_column = end - shift_row
            if v.dataset_drift:
                first_dataset = end - shift_row
                break
        replicates.append(
            {
                "replicate": r,
                "shift_row": shift_row,
                "phase": phase,
                "rows_to_first_shifted_column": first_column,
                "rows_to_dataset_drift": first_dataset,
                "post_shift_checks": post_scores,
            }
        )
    unshifted = [c for c in STREAM_COLUMNS if c not in STREAM_SHIFTED]
    return {
        "mode": "stream",
        "replicates": replicates,
        "stationary_checks": len(stationary),
        "stationary_any_column_alarms": sum(1 for s in stationary if s["drifted"]),
        "stationary_dataset_alarms": sum(1 for s in stationary if s["dataset_drift"]),
        "stationary_max_score": {c: max(s["scores"][c] for s in stationary) for c in STREAM_COLUMNS},
        "stationary_max_unshifted_score": max(s["scores"][c] for s in stationary for c in unshifted),
        "check_seconds_mean": float(np.mean(times)),
        "check_seconds_max": float(np.max(times)),
        "checks_total": len(times),
    }


def expected_stream_rows(window: int) -> dict[str, int]:
    """Post-shift rows a window must contain before each shifted column's population score reaches 0.1: a window
    holding a fraction f of shifted rows is the mixture (1 - f) P + f Q, whose normed Wasserstein distance to P
    is f times that of Q (both shifts are monotone maps); for categories solve the mixture's JS distance."""
    from scipy.optimize import brentq

    out = {}
    for name in STREAM_SHIFTED:
        col = BY_NAME[name]
        if col.probs is None:
            f = THRESHOLD / col.designed
        else:
            p, q = col.probs
            f = brentq(lambda x, p=p, q=q: _js_distance(p, (1 - x) * p + x * q) - THRESHOLD, 1e-3, 1.0)
        out[name] = math.ceil(f * window)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Orchestrator side.


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def run_worker(spec: dict[str, Any], budget: Budget) -> dict[str, Any]:
    timeout = budget.remaining()
    if timeout <= 5:
        return {"skipped": "time budget exhausted"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"killed after {timeout:.0f} s: time budget exhausted"}
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def compare(base: list[dict[str, Any]], sampled: list[dict[str, Any]]) -> dict[str, Any]:
    b = {c["column"]: c for c in base}
    s = {c["column"]: c for c in sampled}
    names = [c["column"] for c in base]
    same = [b[n]["drifted"] == s[n]["drifted"] for n in names]
    diffs = {n: abs(b[n]["score"] - s[n]["score"]) for n in names}
    worst = max(diffs, key=lambda n: diffs[n])
    return {
        "columns": len(names),
        "agree": sum(same),
        "agreement": sum(same) / len(names),
        "disagreeing": [n for n, ok in zip(names, same, strict=True) if not ok],
        "same_method": all(b[n]["method"] == s[n]["method"] for n in names),
        "max_abs_score_diff": diffs[worst],
        "max_diff_column": worst,
    }


def verdict_consistency(run: dict[str, Any]) -> bool:
    """detect_drift's parsed per-column flags must reproduce Evidently's own drifted share."""
    flags = [c["drifted"] for c in run["columns"]]
    return math.isclose(sum(flags) / len(flags), run["drift_share"], abs_tol=1e-9)


def aggregate_agreement(runs: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum(r["agreement"]["columns"] for r in runs)
    agree = sum(r["agreement"]["agree"] for r in runs)
    return {
        "seeds": [r["seed"] for r in runs],
        "verdicts": total,
        "agree": agree,
        "agreement": agree / total,
        "max_abs_score_diff": max(r["agreement"]["max_abs_score_diff"] for r in runs),
        "same_method_all": all(r["agreement"]["same_method"] for r in runs),
        "disagreeing": sorted({n for r in runs for n in r["agreement"]["disagreeing"]}),
    }


def measure_size(n: int, largest: bool, budget: Budget, baseline_times: dict[int, float], log) -> dict[str, Any]:
    entry: dict[str, Any] = {"n": n}
    idle = run_worker({"mode": "idle", "n": n}, budget)
    entry["idle"] = idle
    log(f"  n={n}: idle process peak RSS {idle.get('rss_peak_mb', float('nan')):.0f} MB")
    sampled = run_worker({"mode": "sampled", "n": n, "seeds": [0], "with_html": False}, budget)
    entry["sampled"] = sampled
    if "runs" in sampled:
        log(f"  n={n}: detect_drift (no html) {sampled['runs'][0]['seconds']:.2f} s")
    more = run_worker({"mode": "sampled", "n": n, "seeds": SEEDS[1:], "with_html": False}, budget)
    entry["sampled_more_seeds"] = more
    if largest:
        entry["sampled_html"] = run_worker({"mode": "sampled", "n": n, "seeds": [0], "with_html": True}, budget)
        if "runs" in entry["sampled_html"]:
            log(f"  n={n}: detect_drift (html) {entry['sampled_html']['runs'][0]['seconds']:.2f} s")
        # the trade-off: a smaller sample is faster but noisier (not the default configuration)
        spec = {"mode": "sampled", "n": n, "seeds": SEEDS, "with_html": False, "kwargs": {"max_rows": SMALL_MAX_ROWS}}
        entry["sampled_small"] = run_worker(spec, budget)
    # the expensive full-data baseline last, projected linearly from a smaller size when one was measured
    smaller = [m for m in baseline_times if m < n]
    projected = baseline_times[max(smaller)] * n / max(smaller) * 1.15 if smaller else None
    if projected is not None and projected > budget.remaining():
        entry["baseline"] = {"skipped": f"projected {projected:.0f} s > remaining budget {budget.remaining():.0f} s"}
    else:
        entry["baseline"] = run_worker({"mode": "baseline", "n": n}, budget)
    if "seconds" in entry["baseline"]:
        baseline_times[n] = entry["baseline"]["seconds"]
        log(f"  n={n}: Evidently on the full data {entry['baseline']['seconds']:.1f} s")
    else:
        log(f"  n={n}: baseline skipped: {entry['baseline']['skipped']}")
    summarise_size(entry)
    return entry


def summarise_size(entry: dict[str, Any]) -> None:
    idle_rss = entry["idle"].get("rss_peak_mb")
    for key in ("baseline", "sampled", "sampled_html", "sampled_small"):
        m = entry.get(key)
        if m and "rss_peak_mb" in m and idle_rss is not None:
            m["peak_mb_over_idle"] = m["rss_peak_mb"] - idle_rss
        if m and m.get("peak_reset") and m.get("rss_before_call_mb") is not None:
            m["call_peak_mb"] = m["rss_call_peak_mb"] - m["rss_before_call_mb"]
    runs = [*entry["sampled"].get("runs", []), *entry["sampled_more_seeds"].get("runs", [])]
    entry["verdicts_consistent_with_evidently_share"] = all(verdict_consistency(r) for r in runs)
    base = entry["baseline"]
    if "columns" not in base:
        return
    base["verdicts_consistent_with_evidently_share"] = math.isclose(
        sum(c["drifted"] for c in base["columns"]) / len(base["columns"]), base["evidently_share"], abs_tol=1e-9
    )
    for r in runs:
        r["agreement"] = compare(base["columns"], r["columns"])
    entry["agreement_all_seeds"] = aggregate_agreement(runs)
    small = entry.get("sampled_small", {}).get("runs")
    if small:
        for r in small:
            r["agreement"] = compare(base["columns"], r["columns"])
        entry["agreement_small_sample"] = aggregate_agreement(small)
        entry["verdicts_consistent_with_evidently_share"] &= all(verdict_consistency(r) for r in small)
    if "runs" in entry["sampled"]:
        entry["speedup"] = base["seconds"] / entry["sampled"]["runs"][0]["seconds"]
        entry["cpu_speedup"] = base["cpu_seconds"] / entry["sampled"]["runs"][0]["cpu_seconds"]
    bscores = {c["column"]: c for c in base["columns"]}
    entry["columns"] = []
    for col in COLUMNS:
        sampled_scores = [next(c["score"] for c in r["columns"] if c["column"] == col.name) for r in runs]
        sampled_flags = [next(c["drifted"] for c in r["columns"] if c["column"] == col.name) for r in runs]
        entry["columns"].append(
            {
                "column": col.name,
                "role": col.role,
                "shift": col.shift,
                "designed_score": col.designed,
                "method": bscores[col.name]["method"],
                "full_score": bscores[col.name]["score"],
                "full_drifted": bscores[col.name]["drifted"],
                "sampled_scores": sampled_scores,
                "sampled_drifted": sampled_flags,
            }
        )


def _fmt_mb(m: dict[str, Any] | None) -> str:
    call = f"{m['call_peak_mb']:.0f}" if m and "call_peak_mb" in m else "-"
    over = f"{m['peak_mb_over_idle']:.0f}" if m and "peak_mb_over_idle" in m else "-"
    return f"{call} | {over}"


def _speed_row(n: str, label: str, m: dict[str, Any] | None, base: dict[str, Any]) -> str | None:
    if not m or "runs" not in m:
        return None
    run = m["runs"][0]
    speed = "-"
    if "seconds" in base:
        speed = f"{base['seconds'] / run['seconds']:.1f}x / {base['cpu_seconds'] / run['cpu_seconds']:.1f}x"
    agr = run.get("agreement")
    agree = f"{agr['agree']}/{agr['columns']}" if agr else "-"
    diff = f"{agr['max_abs_score_diff']:.4f} ({agr['max_diff_column']})" if agr else "-"
    return (
        f"| {n} | {label} | {run['seconds']:.2f} | {run['cpu_seconds']:.2f} | {speed} | {_fmt_mb(m)} | {agree} "
        f"| {diff} | {m['loadavg_before']:.1f} |"
    )


def render(result: dict[str, Any]) -> str:
    lines = [
        "### Speed, memory and agreement (20 columns)",
        "",
        "| Rows per side | Check | Wall time (s) | CPU time (s) | Speed-up vs full, wall / CPU "
        "| Call's peak RSS over RSS before the call (MB) | Process ru_maxrss minus idle process (MB) "
        "| Verdict agreement, seed 0 | Max abs score diff, seed 0 | Load average at start |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in result["sizes"]:
        n = f"{e['n']:,}"
        base = e["baseline"]
        if "seconds" in base:
            lines.append(
                f"| {n} | Evidently `DataDriftPreset`, full data | {base['seconds']:.2f} | {base['cpu_seconds']:.2f} "
                f"| 1 | {_fmt_mb(base)} | reference | reference | {base['loadavg_before']:.1f} |"
            )
        else:
            skip = base["skipped"]
            lines.append(f"| {n} | Evidently `DataDriftPreset`, full data | skipped ({skip}) |" + " - |" * 8)
        for key, label in (
            ("sampled", "`detect_drift`, default max_rows 30,000, no HTML"),
            ("sampled_html", "`detect_drift`, default max_rows 30,000, with HTML"),
            ("sampled_small", f"`detect_drift`, max_rows {SMALL_MAX_ROWS:,} (not default), no HTML"),
        ):
            row = _speed_row(n, label, e.get(key), base)
            if row:
                lines.append(row)
    floor = result.get("floor", {}).get("runs")
    if floor:
        detail = "; ".join(
            f"{r['rows']:,} rows per side {r['seconds']:.2f} s ({r['cpu_seconds']:.2f} s CPU)" for r in floor
        )
        lines += ["", f"Evidently `DataDriftPreset` on small inputs (20 columns, warm process): {detail}."]
    lines += [
        "",
        "### Agreement over 5 sampling seeds",
        "",
        "| Rows per side | max_rows | Column verdicts | Agree | Agreement | Max abs score diff "
        "| Same method everywhere | Disagreeing columns | Warm `detect_drift` wall times after the first call (s) |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for e in result["sizes"]:
        for key, rows, times in (
            ("agreement_all_seeds", 30_000, e["sampled_more_seeds"].get("runs", [])),
            ("agreement_small_sample", SMALL_MAX_ROWS, e.get("sampled_small", {}).get("runs", [])[1:]),
        ):
            a = e.get(key)
            warm = ", ".join(f"{r['seconds']:.2f}" for r in times)
            if a:
                lines.append(
                    f"| {e['n']:,} | {rows:,} | {a['verdicts']} | {a['agree']} | {a['agreement']:.1%} "
                    f"| {a['max_abs_score_diff']:.4f} | {'yes' if a['same_method_all'] else 'no'} "
                    f"| {', '.join(a['disagreeing']) or 'none'} | {warm} |"
                )
            elif key == "agreement_all_seeds":
                lines.append(f"| {e['n']:,} | {rows:,} | - | - | no baseline | - | - | - | {warm} |")
    top = next((e for e in reversed(result["sizes"]) if "columns" in e), None)
    if top:
        lines += [
            "",
            f"### Per-column scores at {top['n']:,} rows, max_rows 30,000 (threshold 0.1)",
            "",
            "| Column (role) | Shift | Method | Designed score | Full-data score | Sampled scores, seeds 0-4 "
            "| Full verdict | Sampled verdicts (D = drift) |",
            "|---|---|---|---:|---:|---|---|---|",
        ]
        for c in top["columns"]:
            if c["role"] == "none":
                continue
            flags = "".join("D" if f else "." for f in c["sampled_drifted"])
            lines.append(
                f"| {c['column']} ({c['role']}) | {c['shift']} | {c['method']} | {c['designed_score']:.3f} "
                f"| {c['full_score']:.4f} | {', '.join(f'{x:.4f}' for x in c['sampled_scores'])} "
                f"| {'drift' if c['full_drifted'] else 'no drift'} | {flags} |"
            )
        none = [c for c in top["columns"] if c["role"] == "none"]
        lines.append(
            f"| {len(none)} unshifted columns | - | - | 0 | max {max(c['full_score'] for c in none):.4f} "
            f"| max {max(max(c['sampled_scores']) for c in none):.4f} | {sum(c['full_drifted'] for c in none)} drifted "
            f"| {sum(sum(c['sampled_drifted']) for c in none)} drifted |"
        )
    lines += render_stream(result)
    lines += ["", "### Targets", "", "| Target | Measured | Met |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    return "\n".join(lines)


def render_stream(result: dict[str, Any]) -> list[str]:
    s = result.get("stream")
    if not s or "replicates" not in s:
        return ["", f"Stream experiment skipped: {(s or {}).get('skipped')}"]
    p = result["stream_params"]
    checks = s["stationary_checks"]
    exp = result.get("stream_expected_rows", {})
    lines = [
        "",
        f"### Stream: windows of {p['window']:,} rows every {p['step']} rows, reference {p['reference_rows']:,} rows "
        f"(sampled to 30,000), {len(STREAM_COLUMNS)} columns, drift_share {p['drift_share']}",
        "",
        "| Figure | Value |",
        "|---|---:|",
        f"| Stationary checks | {checks} |",
        "| False alarms, any column drifted (per 100 checks) | "
        f"{100 * s['stationary_any_column_alarms'] / checks:.1f} |",
        f"| False alarms, dataset drift (per 100 checks) | {100 * s['stationary_dataset_alarms'] / checks:.1f} |",
        f"| Largest score of an unshifted column in stationary checks | {s['stationary_max_unshifted_score']:.4f} |",
        "| Largest score of a later-shifted column before its shift | "
        f"{max(s['stationary_max_score'][c] for c in STREAM_SHIFTED):.4f} |",
    ]
    for r in s["replicates"]:
        lines.append(
            f"| Replicate {r['replicate']} (shift at row {r['shift_row']:,}): rows after the shift until a shifted "
            f"column / dataset drift is reported | {r['rows_to_first_shifted_column']} / {r['rows_to_dataset_drift']} |"
        )
    lines.append(
        "| Post-shift rows a window must hold for each shifted column's population score to reach 0.1 | "
        + ", ".join(f"{k} {v}" for k, v in exp.items())
        + " |"
    )
    lines.append(
        f"| `detect_drift` wall time per window check, mean / max (s) | {s['check_seconds_mean']:.2f} / "
        f"{s['check_seconds_max']:.2f} |"
    )
    return lines


def judge_targets(result: dict[str, Any]) -> list[dict[str, str]]:
    e = next((x for x in result["sizes"] if x["n"] == TARGET_SIZE), None)
    if e is None:
        return [{"target": f"targets are judged at {TARGET_SIZE:,} rows", "measured": "size not run", "met": "n/a"}]
    speed = e.get("speedup")
    agr = e.get("agreement_all_seeds")
    seed0 = e["sampled"].get("runs", [{}])[0].get("agreement")
    return [
        {
            "target": f"`detect_drift` at least {TARGET_SPEEDUP:.0f}x faster than full-data Evidently at 1M rows",
            "measured": f"{speed:.1f}x wall ({e['cpu_speedup']:.1f}x CPU)" if speed else "baseline not run",
            "met": ("yes" if speed >= TARGET_SPEEDUP else "no") if speed else "n/a",
        },
        {
            "target": f"verdict agreement at least {TARGET_AGREEMENT:.0%} at 1M rows, seed 0 (20 verdicts)",
            "measured": f"{seed0['agree']}/{seed0['columns']}" if seed0 else "baseline not run",
            "met": ("yes" if seed0["agreement"] >= TARGET_AGREEMENT else "no") if seed0 else "n/a",
        },
        {
            "target": f"verdict agreement at least {TARGET_AGREEMENT:.0%} at 1M rows, 5 seeds (100 verdicts)",
            "measured": f"{agr['agree']}/{agr['verdicts']}" if agr else "baseline not run",
            "met": ("yes" if agr["agreement"] >= TARGET_AGREEMENT else "no") if agr else "n/a",
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="rows per side (default 100000 1000000)")
    parser.add_argument("--quick", action="store_true", help="20,000 and 100,000 rows and a short stream")
    parser.add_argument("--budget", type=float, default=1800.0, help="total wall-clock budget in seconds")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "drift_speed.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker)), default=float))
        return 0

    started = time.perf_counter()
    load_start = os.getloadavg()
    budget = Budget(args.budget)
    sizes = sorted(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    stream_params = {
        "mode": "stream",
        "window": 2000,
        "step": 500,
        "checks": 20 if args.quick else 100,
        "reference_rows": 50_000,
        "drift_share": 0.3,
        "replicates": 2 if args.quick else 5,
        "max_post_checks": 20,
    }
    log("Evidently on small inputs")
    floor = run_worker({"mode": "floor", "n": 30_000, "rows": [2_000, 30_000]}, budget)
    log("stream experiment")
    stream = run_worker(stream_params, budget)
    log(f"stream done ({stream.get('process_seconds', 0):.0f} s)")
    baseline_times: dict[int, float] = {}
    entries = []
    for n in sizes:
        log(f"size {n:,}")
        entries.append(measure_size(n, n == sizes[-1], budget, baseline_times, log))
    result: dict[str, Any] = {
        "benchmark": "drift_speed",
        "command": " ".join([".venv/bin/python", "benchmarks/drift_speed.py", *(argv or sys.argv[1:])]),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "evidently": _version("evidently"),
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "loadavg_1_5_15_min_at_start": load_start,
            "loadavg_1_5_15_min_at_end": os.getloadavg(),
        },
        "memory_method": "ru_maxrss of the measurement subprocess minus ru_maxrss of an idle subprocess with the "
        "same imports and data",
        "timing_method": "wall clock of the call only, first call in a fresh process (seeds 1-4: warm calls)",
        "budget_seconds": args.budget,
        "threshold": THRESHOLD,
        "columns": [
            {"column": c.name, "kind": c.kind, "role": c.role, "shift": c.shift, "designed_score": c.designed}
            for c in COLUMNS
        ],
        "sizes": entries,
        "stream_params": stream_params,
        "stream_columns": STREAM_COLUMNS,
        "stream_shifted": STREAM_SHIFTED,
        "stream_expected_rows": expected_stream_rows(stream_params["window"]),
        "stream": stream,
        "floor": floor,
    }
    result["targets"] = judge_targets(result)
    result["runtime_seconds"] = time.perf_counter() - started
    table = render(result)
    result["markdown"] = table
    print(table)
    print(f"\nTotal runtime {result['runtime_seconds']:.0f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    raise SystemExit(main())
