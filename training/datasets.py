"""Data that needs no download: a real dataset shipped inside scikit-learn, and a synthetic generator.

``breast_cancer`` is the Wisconsin diagnostic data set (569 rows, 30 numeric features) that scikit-learn installs
with itself, so the demo works offline. ``synthetic`` has numeric and categorical features, missing values, a
time column, and knobs for covariate drift and label noise: tests and later stages (rollout, drift monitoring)
use it to create a worse challenger or a drifted stream on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

SYNTHETIC_NUMERIC = ["tenure_months", "monthly_spend", "support_calls", "usage_score"]
SYNTHETIC_CATEGORICAL = ["region", "plan"]
SYNTHETIC_TARGET = "churned"
SYNTHETIC_TIME = "event_time"


def breast_cancer() -> pd.DataFrame:
    """Wisconsin breast cancer data with a readable label column ``diagnosis`` (malignant / benign)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    return frame


def synthetic(
    n_rows: int = 2000,
    seed: int = 0,
    drift: float = 0.0,
    label_noise: float = 0.0,
    missing_fraction: float = 0.0,
    start: str = "2026-01-01",
) -> pd.DataFrame:
    """Customer-churn-like data whose label depends on every feature.

    ``drift`` shifts the numeric features by that many standard deviations and tilts the categorical mix;
    ``label_noise`` flips that fraction of labels (a model trained on it is measurably worse);
    ``missing_fraction`` blanks that share of feature cells.
    """
    if not 0.0 <= label_noise <= 1.0 or not 0.0 <= missing_fraction < 1.0:
        raise ValueError("label_noise must be in [0, 1] and missing_fraction in [0, 1)")
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, n_rows) + drift * 12.0
    spend = rng.normal(60.0, 20.0, n_rows) + drift * 20.0
    calls = rng.poisson(2.0 + max(drift, 0.0), n_rows).astype(float)
    usage = rng.normal(0.0, 1.0, n_rows) + drift
    tilt = min(max(drift, 0.0) * 0.15, 0.3)
    region = rng.choice(["north", "south", "east", "west"], n_rows, p=[0.25 + tilt, 0.25, 0.25, 0.25 - tilt])
    plan = rng.choice(["basic", "plus", "pro"], n_rows, p=[0.5, 0.3, 0.2])
    logit = (
        -0.04 * (tenure - 24.0)
        + 0.03 * (spend - 60.0)
        + 0.6 * (calls - 2.0)
        - 1.1 * usage
        + np.select([region == "south", region == "west"], [0.8, -0.6], 0.0)
        + np.select([plan == "basic", plan == "pro"], [0.7, -0.9], 0.0)
    )
    churned = rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))
    flip = rng.random(n_rows) < label_noise
    churned = np.where(flip, ~churned, churned)
    frame = pd.DataFrame(
        {
            "tenure_months": tenure.round(1),
            "monthly_spend": spend.round(2),
            "support_calls": calls,
            "usage_score": usage.round(4),
            "region": region.astype(object),
            "plan": plan.astype(object),
            SYNTHETIC_TIME: pd.date_range(start, periods=n_rows, freq="h"),
            SYNTHETIC_TARGET: np.where(churned, "yes", "no"),
        }
    )
    if missing_fraction > 0:
        for col in [*SYNTHETIC_NUMERIC, *SYNTHETIC_CATEGORICAL]:
            mask = rng.random(n_rows) < missing_fraction
            frame.loc[mask, col] = np.nan
    return frame


def unit_change(frame: pd.DataFrame, columns: list[str], factor: float = 1.6) -> pd.DataFrame:
    """The demo's drift, a unit change upstream: ``columns`` ``factor`` times as large (1.6: 60% larger). A copy; the
    labels and the other columns are untouched, so the right answer for a row stays what it was."""
    shifted = frame.copy()
    shifted[columns] = shifted[columns] * factor
    return shifted


def corrupt_breast_cancer(path: Path, seed: int = 7) -> Path:
    """A plausible bad export: a unit mix-up (negative radii), text in a numeric column, missing labels,
    and a stray column. Each is something the validation gate must name."""
    rng = np.random.default_rng(seed)
    frame = breast_cancer()
    rows = rng.choice(len(frame), 40, replace=False)
    frame.loc[rows[:20], "mean radius"] = -frame.loc[rows[:20], "mean radius"]
    frame["mean texture"] = frame["mean texture"].astype(object)
    frame.loc[rows[20:25], "mean texture"] = "17,25"  # a decimal comma from a spreadsheet
    frame.loc[rows[25:40], "diagnosis"] = None
    frame["export_batch_id"] = "2026-11-24T00:00"
    return write_frame(frame, path)


def mislabel_breast_cancer(path: Path, fraction: float = 0.35, seed: int = 3) -> Path:
    """An export where a share of malignant cases were recorded as benign: a model trained on it looks fine on its
    own (equally mislabelled) holdout and is about 10 accuracy points worse on the truth."""
    rng = np.random.default_rng(seed)
    frame = breast_cancer()
    flip = (frame["diagnosis"] == "malignant") & (rng.random(len(frame)) < fraction)
    frame.loc[flip, "diagnosis"] = "benign"
    return write_frame(frame, path)


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as CSV or Parquet by suffix (used by the demo to make corrupted copies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


BUILTIN: dict[str, Callable[[], pd.DataFrame]] = {
    "breast_cancer": breast_cancer,
    "synthetic": synthetic,
}
