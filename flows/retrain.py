"""The ``retrain`` flow: the event-driven (and weekly) entry into the lifecycle.

It files a change request of kind minor carrying the reason (for example the drift verdict from the
``mlops.drift.detected`` event), runs ``lifecycle`` for it and, when a challenger is registered, ``rollout``.
Guards against storms and loops (``monitoring.policy.retrain_decision``): at most one retrain per
``monitoring.retrain_cooldown_minutes``, and after two automatic retrains in a row that did not succeed it stops and
asks for a person.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from core.intake import submit_request
from core.names import CHALLENGER
from core.notify import notify
from core.store.schema import utcnow
from flows.lifecycle import lifecycle
from flows.rollout import rollout
from monitoring.policy import RETRAIN_ACTOR, RetrainResult, retrain_decision
from services.context import ProjectContext, open_context
from tasks.reporting import publish_report_task, render_retrain

__all__ = ["RETRAIN_ACTOR", "retrain"]


@flow(name="retrain", log_prints=True)
def retrain(
    config_path: str | None = None,
    reason: str = "scheduled weekly retraining",
    run_rollout: bool = True,
    rollout_poll_seconds: float = 5.0,
    rollout_max_minutes: float = 120.0,
) -> RetrainResult:
    """File a minor change request with ``reason``, run the lifecycle for it, then roll the challenger out."""
    context = open_context(config_path=config_path)
    result = _retrain(context, reason, run_rollout, rollout_poll_seconds, rollout_max_minutes)
    summary = f"{result.status}: {result.reason or result.decision}"
    publish_report_task(context.model_name, "retrain", render_retrain(result), summary, result.to_json())
    return result


def _retrain(
    context: ProjectContext, reason: str, run_rollout: bool, poll_seconds: float, max_minutes: float
) -> RetrainResult:
    """The guards, then the lifecycle for a new minor request, then its rollout."""
    logger = get_run_logger()
    path = str(context.config_path)
    guard = retrain_decision(context.store.list(), utcnow(), context.config.monitoring.retrain_cooldown_minutes)
    if guard.action == "skip":
        logger.info(guard.reason)
        return RetrainResult("skipped", guard.reason)
    if guard.action == "pause":
        logger.error(guard.reason)
        notify("retrain.paused", context.model_name, guard.reason, "action-needed")
        return RetrainResult("paused", guard.reason)

    request = submit_request(
        context.store, context.config_path, "minor", "Automatic retrain", reason, submitted_by=RETRAIN_ACTOR
    )
    state = lifecycle(config_path=path, request_id=request.id, return_state=True)
    if state.is_failed():
        return RetrainResult("failed", context.store.get(request.id).status_reason, request_id=request.id)
    outcome = state.result()
    result = RetrainResult(outcome.status, request_id=request.id, decision=outcome.decision)
    if outcome.status == "registered" and run_rollout and CHALLENGER in outcome.aliases:
        result.rollout = rollout(config_path=path, poll_seconds=poll_seconds, max_minutes=max_minutes)
    return result
