"""The ``retrain`` flow: the event-driven (and weekly) entry into the lifecycle.

It files a change request of kind minor carrying the reason (for example the drift verdict from the
``mlops.drift.detected`` event) and the data it will use: the configured source and, with
``retraining.include_production``, the labelled production rows of the window, pinned on the request as overrides
(``retraining.since``/``until``) and named in its reason with row counts. It runs ``lifecycle`` for it and, when a
challenger is registered, ``rollout``.
Guards against storms and loops (``monitoring.policy.retrain_decision``): at most one retrain per
``monitoring.retrain_cooldown_minutes``, and after two automatic retrains in a row that did not succeed it stops and
asks for a person.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from core import logs
from core.errors import MlopsError
from core.intake import submit_request
from core.names import CHALLENGER
from core.notify import notify
from core.settings import get_settings
from core.store.schema import utcnow
from flows.lifecycle import lifecycle
from flows.rollout import rollout
from monitoring.policy import RETRAIN_ACTOR, RetrainResult, retrain_decision
from services.context import ProjectContext, open_context
from tasks.data import load_training_data_task
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
    with logs.flow_run(get_settings()):
        context = open_context(config_path=config_path)
        result = _retrain(context, reason, run_rollout, rollout_poll_seconds, rollout_max_minutes)
        summary = f"{result.status}: {result.reason or result.decision}"
        publish_report_task(context.model_name, "retrain", render_retrain(result), summary, result.to_json())
        return result


def _plan_data(context: ProjectContext) -> tuple[str, dict[str, Any]] | RetrainResult:
    """What the retrain will train on, read now: its description for the request's reason and the overrides that
    pin the window on the request (so the lifecycle reads the same rows); or a skip when
    ``retraining.min_production_rows`` asks for more labelled rows than the window has."""
    config = context.config
    try:
        data = load_training_data_task(config, context.predictions, utcnow())
    except MlopsError as err:  # the lifecycle meets it again and records it on the request
        return f"{config.data.source} (not readable now: {str(err)[:300]})", {}
    if data.window is None:
        return data.description, {}
    needed = config.retraining.min_production_rows
    if data.production_rows < needed:
        return RetrainResult(
            "skipped",
            f"skipped: {data.production_rows} labelled production rows in {data.window.label}, fewer than "
            f"retraining.min_production_rows ({needed}); no request filed",
            data=data.description,
        )
    return data.description, data.window.overrides()


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

    plan = _plan_data(context)
    if isinstance(plan, RetrainResult):
        logger.info(plan.reason)
        return plan
    description, overrides = plan
    request = submit_request(
        context.store,
        context.config_path,
        "minor",
        "Automatic retrain",
        f"{reason}; data: {description}",
        overrides,
        submitted_by=RETRAIN_ACTOR,
    )
    logs.annotate(change_request_id=request.id)
    logger.info("Change request #%s: %s", request.id, request.reason)
    state = lifecycle(config_path=path, request_id=request.id, return_state=True)
    if state.is_failed():
        status_reason = context.store.get(request.id).status_reason
        return RetrainResult("failed", status_reason, request_id=request.id, data=description)
    outcome = state.result()
    result = RetrainResult(outcome.status, request_id=request.id, decision=outcome.decision, data=outcome.data)
    if outcome.version is not None:
        logs.annotate(model_version=outcome.version)
    if outcome.status == "registered" and run_rollout and CHALLENGER in outcome.aliases:
        result.rollout = rollout(config_path=path, poll_seconds=poll_seconds, max_minutes=max_minutes)
    return result
