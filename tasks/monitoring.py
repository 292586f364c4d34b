"""Units of work of the ``monitor`` flow: the champion's training reference, the recent window from the prediction
log, EWMA charts per interval, and the monitoring run in MLflow."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from deployments.prediction_log import PredictionLog
from mlops.config import ProjectConfig
from mlops.errors import MlopsError
from mlops.events import CHAMPION, TAG_ROLE
from mlops.store import utcnow
from model_registry.registry import ModelRegistry
from tasks.drift import PREDICTION_COLUMN, DriftVerdict
from tasks.ewma import ControlChart, ewma_chart, time_to_breach
from tasks.tracking import REFERENCE_ARTIFACT
from tasks.training import prepare_features


@dataclass
class Reference:
    version: str
    semver: str | None
    frame: pd.DataFrame  # features + prediction of the champion on its own training data
    holdout_accuracy: float | None


@task(name="load-champion-reference", cache_policy=NO_CACHE)
def load_reference_task(registry: ModelRegistry, config: ProjectConfig) -> Reference:
    """The data snapshot logged when the champion was trained, with the champion's predictions on it."""
    import mlflow.artifacts
    import mlflow.sklearn

    champion = registry.alias_version(CHAMPION)
    if champion is None or not champion.run_id:
        raise MlopsError(f"model {config.model_name!r} has no champion to monitor yet.")
    path = mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path=REFERENCE_ARTIFACT)
    frame = pd.read_parquet(path)
    model = mlflow.sklearn.load_model(f"models:/{registry.name}/{champion.version}")
    features = prepare_features(frame, config)
    reference = features.assign(**{PREDICTION_COLUMN: model.predict(features)})
    info = registry.resolve(str(champion.version))
    return Reference(str(champion.version), info.semver, reference, info.metrics.get("accuracy"))


@task(name="read-recent-predictions", cache_policy=NO_CACHE)
def recent_window_task(store_url: str, config: ProjectConfig) -> pd.DataFrame:
    """Served answers of the last ``monitoring.window_minutes`` from the prediction log (newest ``max_rows``)."""
    since = utcnow() - timedelta(minutes=config.monitoring.window_minutes)
    return PredictionLog(store_url).recent(config.model_name, since, limit=config.monitoring.max_rows)


def interval_series(window: pd.DataFrame, interval_seconds: float) -> pd.DataFrame:
    """Per interval: answers, p95 latency, error rate, labelled answers and accuracy."""
    buckets = window["at"].dt.floor(f"{int(interval_seconds)}s")
    labelled = window["label"].notna()
    correct = labelled & (window["label"].astype(str) == window["prediction"].astype(str))
    grouped = pd.DataFrame(
        {
            "bucket": buckets,
            "latency_ms": window["latency_ms"],
            "error": window["status"] != "ok",
            "labelled": labelled,
            "correct": correct,
        }
    ).groupby("bucket")
    out = pd.DataFrame(
        {
            "answers": grouped.size(),
            "latency_p95_ms": grouped["latency_ms"].quantile(0.95),
            "error_rate": grouped["error"].mean(),
            "labelled": grouped["labelled"].sum(),
            "correct": grouped["correct"].sum(),
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


def health_report(series: pd.DataFrame, config: ProjectConfig, baseline_accuracy: float | None) -> HealthReport:
    """EWMA charts on latency, error rate and (where labels exist) accuracy; accuracy is charted against the
    champion's holdout accuracy with binomial sigma, the others against their own first intervals."""
    m = config.monitoring
    charts: dict[str, ControlChart] = {}
    forecasts: dict[str, float | None] = {}
    if len(series) >= 2:
        lat = series["latency_p95_ms"].to_numpy(dtype=float)
        charts["latency_p95_ms"] = ewma_chart(lat, "latency_p95_ms", alpha=m.ewma_alpha, width=m.ewma_width)
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
        )
        if m.slo_accuracy is not None:
            forecasts["accuracy"] = time_to_breach(
                charts["accuracy"].smoothed, m.slo_accuracy, m.interval_seconds, bad="low"
            )
    last = {k: len(c.smoothed) - 1 for k, c in charts.items()}
    degraded = [k for k, c in charts.items() if k != "latency_p95_ms" and last[k] in c.breaches]
    return HealthReport(charts, forecasts, degraded)


def log_monitoring_run(
    client: MlflowClient,
    experiment_id: str,
    verdict: DriftVerdict | None,
    health: HealthReport | None,
    note: str,
    champion: str,
) -> str:
    """One MLflow run per check: the Evidently HTML, the verdict, the charts, tagged so it is easy to filter."""
    run = client.create_run(
        experiment_id,
        run_name=f"monitor {utcnow():%Y-%m-%d %H:%M} (champion v{champion})",
        tags={TAG_ROLE: "monitor", "mlflow.note.content": note, "mlops.monitored_version": champion},
    )
    run_id = run.info.run_id
    if verdict is not None:
        client.log_text(run_id, verdict.html, "drift/report.html")
        client.log_dict(run_id, verdict.to_json(), "drift/verdict.json")
        client.log_metric(run_id, "drift_share", verdict.drift_share)
        for col in verdict.columns:
            client.log_metric(run_id, f"drift.{col.column}".replace(" ", "_"), col.score)
        client.set_tag(run_id, "mlops.drift", verdict.summary[:5000])
    if health is not None:
        client.log_dict(run_id, health.to_json(), "health/ewma.json")
        client.set_tag(run_id, "mlops.degraded", ", ".join(health.degraded) or "none")
    client.set_terminated(run_id)
    return run_id
