"""One MLflow run per monitoring check: the Evidently report, the verdict and the charts, tagged to filter on."""

from __future__ import annotations

from mlflow import MlflowClient

from core.names import TAG_MONITORED_VERSION, TAG_ROLE, TAG_VERDICT
from core.store.schema import utcnow
from monitoring.drift import DriftVerdict
from monitoring.health import HealthReport


def log_monitoring_run(
    client: MlflowClient,
    experiment_id: str,
    verdict: DriftVerdict | None,
    health: HealthReport | None,
    note: str,
    champion: str,
    degraded: list[str] | None = None,
    verdict_word: str | None = None,
) -> str:
    """One MLflow run per check: the Evidently HTML, the verdict, the charts, tagged so it is easy to filter.

    ``degraded``: every metric the verdict found degraded (EWMA breaches and SLO breaches); default: the EWMA ones."""
    run = client.create_run(
        experiment_id,
        run_name=f"monitor {utcnow():%Y-%m-%d %H:%M} (champion v{champion})",
        tags={TAG_ROLE: "monitor", "mlflow.note.content": note, TAG_MONITORED_VERSION: champion},
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
        client.set_tag(run_id, "mlops.degraded", ", ".join(health.degraded if degraded is None else degraded) or "none")
    if verdict_word is not None:
        client.set_tag(run_id, TAG_VERDICT, verdict_word)
    client.set_terminated(run_id)
    return run_id
