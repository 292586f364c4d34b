"""The ``monitor`` flow: recent predictions against the champion's training reference (Evidently) and EWMA charts
on live metrics; emits ``mlops.drift.detected`` and ``mlops.model.degraded`` for the automations to act on."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.events import emit_event

from core import logs
from core.names import EVENT_DRIFT_DETECTED, EVENT_MODEL_DEGRADED, model_resource
from core.settings import get_settings
from core.tracking import ensure_experiment, run_url
from monitoring.health import health_report, interval_series
from monitoring.tracking import log_monitoring_run
from monitoring.verdict import MonitorResult, degraded_metrics, insufficient_data, monitor_verdict
from services.context import open_context
from tasks.drift import detect_drift_task
from tasks.monitoring import load_reference_task, recent_window_task
from tasks.reporting import publish_report_task, render_monitor


@flow(name="monitor", log_prints=True)
def monitor(config_path: str | None = None) -> MonitorResult:
    """Check the champion's recent traffic for drift and degradation; emit events when found."""
    with logs.flow_run(get_settings()):
        logger = get_run_logger()
        context = open_context(config_path=config_path)
        config = context.config
        policy = config.monitoring
        reference = load_reference_task(context.registry, config, context.predictions)
        logs.annotate(model_version=reference.version)
        window = recent_window_task(context.predictions, config)
        if len(window) < policy.min_rows:
            result = insufficient_data(config.model_name, reference.version, len(window), policy.min_rows)
            logger.info(result.summary)
            publish_report_task(config.model_name, "monitor", render_monitor(result), result.summary, result.to_json())
            return result

        # the champion's own answers when there are enough (a version promoted mid-window starts a chart of its own)
        current = window[window["model_version"] == reference.version]
        charted = current if len(current) >= policy.min_rows else window
        drift = detect_drift_task(reference.frame, charted, config, reference.covers)
        series = interval_series(charted, policy.interval_seconds)
        health = health_report(series, config, reference.holdout_accuracy, reference.holdout_mae)
        decision = monitor_verdict(drift, health, policy)
        summary = decision.summary
        experiment_id = ensure_experiment(context.mlflow, config.model_name, context.settings)
        run_id = log_monitoring_run(
            context.mlflow,
            experiment_id,
            drift,
            health,
            summary,
            reference.version,
            degraded_metrics(decision.findings),
            decision.verdict,
        )
        result = MonitorResult(
            model=config.model_name,
            champion=reference.version,
            rows=len(window),
            verdict=decision.verdict,
            summary=summary,
            findings=decision.findings,
            drift=drift,
            health=health,
            mlflow_run_id=run_id,
            mlflow_run_url=run_url(context.mlflow, run_id),
        )
        _announce(result)
        logger.info(summary)
        publish_report_task(config.model_name, "monitor", render_monitor(result), summary, result.to_json())
        return result


def _announce(result: MonitorResult) -> None:
    """Drift and degradation as Prefect events, with the model as the resource: the automations act on them."""
    resource = model_resource(result.model)
    drift, health = result.drift, result.health
    if result.drifted and drift is not None:
        emit_event(
            event=EVENT_DRIFT_DETECTED,
            resource=resource,
            payload={
                "verdict": result.verdict,
                "drift_share": drift.drift_share,
                "columns": [c.to_json() for c in drift.columns if c.drifted],
                "summary": drift.summary,
                "report": result.mlflow_run_url,
                "champion_version": result.champion,
            },
        )
    if result.degraded_metrics and health is not None:
        emit_event(
            event=EVENT_MODEL_DEGRADED,
            resource=resource,
            payload={
                "metrics": result.degraded_metrics,
                "reasons": [f.reason for f in result.findings if f.verdict == "degraded"],
                "health": health.to_json(),
                "champion_version": result.champion,
                "report": result.mlflow_run_url,
            },
        )
