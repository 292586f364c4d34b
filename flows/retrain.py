"""The ``retrain`` flow: the event-driven (and weekly) entry into the lifecycle.

It files a change request of kind minor carrying the reason (for example the drift verdict from the
``mlops.drift.detected`` event), runs ``lifecycle`` for it and, when a challenger is registered, ``rollout``.
Guards against storms and loops: at most one retrain per ``monitoring.retrain_cooldown_minutes``, and after two
automatic retrains in a row that did not succeed it stops and asks for a person.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.lifecycle import lifecycle
from flows.rollout import rollout
from mlops.config import load_config
from mlops.notify import notify
from mlops.settings import get_settings
from mlops.store import ProjectStore, utcnow
from tasks.intake import submit_request

RETRAIN_ACTOR = "retrain flow"


@flow(name="retrain", log_prints=True)
def retrain(
    config_path: str | None = None,
    reason: str = "scheduled weekly retraining",
    run_rollout: bool = True,
    rollout_poll_seconds: float = 5.0,
    rollout_max_minutes: float = 120.0,
) -> dict[str, Any]:
    """File a minor change request with ``reason``, run the lifecycle for it, then roll the challenger out."""
    logger = get_run_logger()
    settings = get_settings()
    path = Path(config_path) if config_path else settings.config
    config = load_config(path)
    store = ProjectStore(settings.store_url)
    mine = [r for r in store.list() if r.submitted_by == RETRAIN_ACTOR]
    mine.sort(key=lambda r: r.created_at)
    cooldown = timedelta(minutes=config.monitoring.retrain_cooldown_minutes)
    if mine and utcnow() - mine[-1].created_at < cooldown:
        msg = (
            f"skipped: request #{mine[-1].id} was filed by an automatic retrain at {mine[-1].created_at:%H:%M:%S} "
            f"UTC, within the {config.monitoring.retrain_cooldown_minutes:g}-minute cooldown"
        )
        logger.info(msg)
        return {"status": "skipped", "reason": msg}
    finished = [r for r in mine if r.status not in ("queued", "running")]
    if len(finished) >= 2 and all(r.status != "succeeded" for r in finished[-2:]):
        msg = (
            f"paused: the last two automatic retrains (#{finished[-2].id}, #{finished[-1].id}) did not succeed "
            f"({finished[-1].status_reason[:200]}); a person must look. Submit a request by hand "
            "(`mlops request submit`) to resume."
        )
        logger.error(msg)
        notify("retrain.paused", config.model_name, msg, "action-needed")
        create_markdown_artifact(
            key="retrain-needs-a-person", markdown=f"# Automatic retraining paused\n\n{msg}", description=msg[:500]
        )
        return {"status": "paused", "reason": msg}

    request = submit_request(store, path, "minor", "Automatic retrain", reason, submitted_by=RETRAIN_ACTOR)
    outcome = lifecycle(config_path=str(path), request_id=request.id, return_state=True)
    if outcome.is_failed():
        return {"status": "failed", "request_id": request.id, "reason": store.get(request.id).status_reason}
    result = outcome.result()
    summary: dict[str, Any] = {"status": result.status, "request_id": request.id, "decision": result.decision}
    if result.status == "registered" and run_rollout and "challenger" in result.aliases:
        summary["rollout"] = rollout(
            config_path=str(path), poll_seconds=rollout_poll_seconds, max_minutes=rollout_max_minutes
        )
    return summary
