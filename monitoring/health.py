"""The live health of a model: per-interval series from the prediction log and EWMA control charts on them, with a
forecast of the time until an SLO is crossed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.config import ProjectConfig
from monitoring.ewma import ControlChart, ewma_chart, time_to_breach


def interval_series(window: pd.DataFrame, interval_seconds: float) -> pd.DataFrame:
    """Per interval: answers, p95 latency, error rate, labelled answers, accuracy and (where labels and predictions
    are numbers: a regressor's) the mean absolute error."""
    buckets = window["at"].dt.floor(f"{int(interval_seconds)}s")
    labelled = window["label"].notna()
    correct = labelled & (window["label"].astype(str) == window["prediction"].astype(str))
    abs_error = (
        pd.to_numeric(window["label"], errors="coerce") - pd.to_numeric(window["prediction"], errors="coerce")
    ).abs()
    grouped = pd.DataFrame(
        {
            "bucket": buckets,
            "latency_ms": window["latency_ms"],
            "error": window["status"] != "ok",
            "labelled": labelled,
            "correct": correct,
            "abs_error": abs_error,
        }
    ).groupby("bucket")
    out = pd.DataFrame(
        {
            "answers": grouped.size(),
            "latency_p95_ms": grouped["latency_ms"].quantile(0.95),
            "error_rate": grouped["error"].mean(),
            "labelled": grouped["labelled"].sum(),
            "correct": grouped["correct"].sum(),
            "mae": grouped["abs_error"].mean(),  # NaN where no labelled numeric answer
            "scored": grouped["abs_error"].count(),
        }
    )
    out["accuracy"] = np.where(out["labelled"] > 0, out["correct"] / out["labelled"].clip(lower=1), np.nan)
    return out


@dataclass
class HealthReport:
    charts: dict[str, ControlChart]
    forecasts: dict[str, float | None]  # seconds until the SLO is crossed at the current slope
    degraded: list[str]  # metrics whose latest smoothed value is outside the control limits in the bad direction

    def to_json(self) -> dict[str, Any]:
        return {
            "charts": {k: v.to_json() for k, v in self.charts.items()},
            "forecasts": self.forecasts,
            "degraded": self.degraded,
        }


def health_report(
    series: pd.DataFrame,
    config: ProjectConfig,
    baseline_accuracy: float | None,
    baseline_mae: float | None = None,
) -> HealthReport:
    """EWMA charts on latency, error rate and (where labels exist) accuracy for classifiers or mean absolute error
    for regressors; the quality chart is drawn against the champion's holdout figure, the others against their own
    first intervals. Each interval weighs as many answers as it holds (see ``monitoring.ewma``), so the partly filled
    intervals at the ends of the window neither raise nor hide an alarm."""
    m = config.monitoring
    charts: dict[str, ControlChart] = {}
    forecasts: dict[str, float | None] = {}
    if len(series) >= 2:
        answers = series["answers"].to_numpy(dtype=float)
        lat = series["latency_p95_ms"].to_numpy(dtype=float)
        charts["latency_p95_ms"] = ewma_chart(
            lat, "latency_p95_ms", alpha=m.ewma_alpha, width=m.ewma_width, counts=answers
        )
        forecasts["latency_p95_ms"] = time_to_breach(
            charts["latency_p95_ms"].smoothed, m.slo_latency_p95_ms, m.interval_seconds
        )
        err = series["error_rate"].to_numpy(dtype=float)
        n = max(float(series["answers"].mean()), 1.0)
        base_err = max(float(np.nanmean(err[: max(2, min(10, len(err)))])), 1.0 / n)
        charts["error_rate"] = ewma_chart(
            err,
            "error_rate",
            alpha=m.ewma_alpha,
            width=m.ewma_width,
            mean=base_err,
            sigma=math.sqrt(base_err * (1 - base_err) / n),
            counts=answers,
        )
        forecasts["error_rate"] = time_to_breach(charts["error_rate"].smoothed, m.slo_error_rate, m.interval_seconds)
    acc = series["accuracy"].dropna() if "accuracy" in series else pd.Series(dtype=float)
    if len(acc) >= 2 and baseline_accuracy is not None:
        n = max(float(series.loc[acc.index, "labelled"].mean()), 1.0)
        p = min(max(baseline_accuracy, 1e-3), 1 - 1e-3)
        charts["accuracy"] = ewma_chart(
            acc.to_numpy(),
            "accuracy",
            alpha=m.ewma_alpha,
            width=m.ewma_width,
            mean=p,
            sigma=math.sqrt(p * (1 - p) / n),
            bad="low",
            counts=series.loc[acc.index, "labelled"].to_numpy(dtype=float),
        )
        if m.slo_accuracy is not None:
            forecasts["accuracy"] = time_to_breach(
                charts["accuracy"].smoothed, m.slo_accuracy, m.interval_seconds, bad="low"
            )
    if config.evaluation.problem_type == "regression" and baseline_mae is not None:
        _chart_mae(series, config, baseline_mae, charts, forecasts)
    last = {k: len(c.smoothed) - 1 for k, c in charts.items()}
    degraded = [k for k, c in charts.items() if k != "latency_p95_ms" and last[k] in c.breaches]
    return HealthReport(charts, forecasts, degraded)


# sd(|e|) / mean(|e|) for normal errors: |e| is half-normal, mean s*sqrt(2/pi), sd s*sqrt(1-2/pi)
HALF_NORMAL_SD_PER_MEAN = math.sqrt(math.pi / 2 - 1)


def _chart_mae(
    series: pd.DataFrame,
    config: ProjectConfig,
    baseline_mae: float,
    charts: dict[str, ControlChart],
    forecasts: dict[str, float | None],
) -> None:
    """A regressor's quality chart: per-interval MAE of the labelled answers against the champion's holdout MAE.

    The holdout gives the mean, not the spread, of the absolute errors, so the spread is that of normal errors with
    that MAE (half-normal: sd = 0.76 x MAE per answer), divided by the root of the labelled answers per interval."""
    m = config.monitoring
    mae = series["mae"].dropna() if "mae" in series else pd.Series(dtype=float)
    if len(mae) < 2:
        return
    n = max(float(series.loc[mae.index, "scored"].mean()), 1.0)
    base = max(baseline_mae, 1e-9)
    charts["mae"] = ewma_chart(
        mae.to_numpy(dtype=float),
        "mae",
        alpha=m.ewma_alpha,
        width=m.ewma_width,
        mean=base,
        sigma=base * HALF_NORMAL_SD_PER_MEAN / math.sqrt(n),
        bad="high",
        counts=series.loc[mae.index, "scored"].to_numpy(dtype=float),
    )
    if m.slo_mae is not None:
        forecasts["mae"] = time_to_breach(charts["mae"].smoothed, m.slo_mae, m.interval_seconds)
