"""The ``rollback`` flow, started by ``mlops.model.degraded``: if the champion was promoted recently and a
``previous`` version exists, put ``previous`` back as champion and record why. Otherwise it explains why it did
nothing (an old champion degrading is a retraining matter, not a rollback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from mlops.config import load_config
from mlops.events import EVENT_MODEL_ROLLED_BACK, PREVIOUS, model_resource
from mlops.notify import notify
from mlops.settings import get_settings
from mlops.store import ProjectStore, utcnow
from model_registry.registry import ModelRegistry
from tasks.reporting import artifact_key
from tasks.tracking import configure_mlflow


@flow(name="rollback", log_prints=True)
def rollback(config_path: str | None = None, reason: str = "model degraded") -> dict[str, Any]:
    """Roll the champion back to ``previous`` when it was promoted within ``monitoring.rollback_window_hours``."""
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(Path(config_path) if config_path else settings.config)
    registry = ModelRegistry(config.model_name, ProjectStore(settings.store_url), configure_mlflow(settings))
    promoted = registry.promoted_at()
    window = config.monitoring.rollback_window_hours
    if registry.alias_version(PREVIOUS) is None:
        result = {"status": "skipped", "reason": "no previous version to roll back to"}
    elif promoted is None or (utcnow() - promoted).total_seconds() > window * 3600:
        result = {
            "status": "skipped",
            "reason": f"the champion was not promoted within the last {window:g} h; "
            "degradation of an established champion calls for retraining, not a rollback",
        }
    else:
        bad, good = registry.rollback_to_previous(actor="rollback flow", reason=reason)
        result = {"status": "rolled back", "from_version": bad, "to_version": good, "reason": reason}
        emit_event(
            event=EVENT_MODEL_ROLLED_BACK,
            resource=model_resource(config.model_name),
            payload=result,
        )
    logger.info("%s: %s", result["status"], result["reason"])
    if result["status"] == "rolled back":
        notify(
            "model.rolled_back",
            config.model_name,
            f"Champion v{result['from_version']} rolled back to v{result['to_version']}: {reason}",
            "warning",
        )
    create_markdown_artifact(
        key=artifact_key(config.model_name, "rollback"),
        markdown=f"# Rollback: {result['status']}\n\n{result}",
        description=str(result)[:500],
    )
    return result
