"""The ``monitor`` flow: recent predictions against the champion's training reference (Evidently) and EWMA charts
on live metrics; emits ``mlops.drift.detected`` and ``mlops.model.degraded`` for the automations to act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from mlops.config import load_config
from mlops.events import EVENT_DRIFT_DETECTED, EVENT_MODEL_DEGRADED, model_resource
from mlops.settings import get_settings
from mlops.store import ProjectStore
from model_registry.registry import ModelRegistry
from tasks.drift import detect_drift_task
from tasks.monitoring import (
    health_report,
    interval_series,
    load_reference_task,
    log_monitoring_run,
    recent_window_task,
)
from tasks.reporting import artifact_key
from tasks.tracking import configure_mlflow, ensure_experiment, run_url


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Monitoring: {result['verdict']}", "", result["summary"], ""]
    drift = result.get("drift")
    if drift:
        lines += ["| column | test | score | threshold | drifted |", "|---|---|---:|---:|---|"]
        lines += [
            f"| {c['column']} | {c['method']} | {c['score']:.4f} | {c['threshold']} | "
            f"{'**yes**' if c['drifted'] else 'no'} |"
            for c in drift["columns"]
        ]
        lines.append("")
    health = result.get("health")
    if health:
        lines += ["| metric | smoothed | limits | breached now | time to SLO breach |", "|---|---:|---|---|---|"]
        for name, chart in health["charts"].items():
            eta = health["forecasts"].get(name)
            eta_text = "-" if eta is None else ("now" if eta == 0 else f"{eta / 60:.0f} min")
            lines.append(
                f"| {name} | {chart['last_smoothed']:.4f} | {chart['last_lower']:.4f} .. "
                f"{chart['last_upper']:.4f} | {'**yes**' if name in health['degraded'] else 'no'} "
                f"| {eta_text} |"
            )
    if result.get("mlflow_run_url"):
        lines += ["", f"Evidently report: MLflow run {result['mlflow_run_url']} (drift/report.html)."]
    return "\n".join(lines)


@flow(name="monitor", log_prints=True)
def monitor(config_path: str | None = None) -> dict[str, Any]:
    """Check the champion's recent traffic for drift and degradation; emit events when found."""
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(Path(config_path) if config_path else settings.config)
    client = configure_mlflow(settings)
    registry = ModelRegistry(config.model_name, ProjectStore(settings.store_url), client)
    reference = load_reference_task(registry, config)
    window = recent_window_task(settings.store_url, config)
    resource = model_resource(config.model_name)
    result: dict[str, Any] = {"model": config.model_name, "champion": reference.version, "rows": len(window)}
    if len(window) < config.monitoring.min_rows:
        result |= {
            "verdict": "insufficient data",
            "summary": f"{len(window)} recent answers, fewer than monitoring.min_rows="
            f"{config.monitoring.min_rows}; no verdict.",
        }
        logger.info(result["summary"])
        create_markdown_artifact(
            key=artifact_key(config.model_name, "monitor"),
            markdown=render_markdown(result),
            description=result["summary"],
        )
        return result

    current = window[window["model_version"] == reference.version]
    verdict = detect_drift_task(
        reference.frame, current if len(current) >= config.monitoring.min_rows else window, config
    )
    # the charts follow the champion's own answers (a version promoted mid-window starts a chart of its own)
    charted = current if len(current) >= config.monitoring.min_rows else window
    health = health_report(
        interval_series(charted, config.monitoring.interval_seconds), config, reference.holdout_accuracy
    )
    drifted = verdict.drift_share >= config.monitoring.drift_share
    summary = verdict.summary + (f"; degraded: {', '.join(health.degraded)}" if health.degraded else "")
    experiment_id = ensure_experiment(client, config.model_name, settings)
    run_id = log_monitoring_run(client, experiment_id, verdict, health, summary, reference.version)
    result |= {
        "verdict": "drift" if drifted else ("degraded" if health.degraded else "healthy"),
        "summary": summary,
        "drift": verdict.to_json(),
        "health": health.to_json(),
        "mlflow_run_id": run_id,
        "mlflow_run_url": run_url(client, experiment_id, run_id),
    }
    if drifted:
        emit_event(
            event=EVENT_DRIFT_DETECTED,
            resource=resource,
            payload={
                "drift_share": verdict.drift_share,
                "columns": [c.to_json() for c in verdict.columns if c.drifted],
                "summary": verdict.summary,
                "report": result["mlflow_run_url"],
                "champion_version": reference.version,
            },
        )
    if health.degraded:
        emit_event(
            event=EVENT_MODEL_DEGRADED,
            resource=resource,
            payload={
                "metrics": health.degraded,
                "health": health.to_json(),
                "champion_version": reference.version,
                "report": result["mlflow_run_url"],
            },
        )
    logger.info(summary)
    create_markdown_artifact(
        key=artifact_key(config.model_name, "monitor"), markdown=render_markdown(result), description=summary[:500]
    )
    return result
