"""The ``rollout`` flow: expose the challenger through the gateway step by step and decide, with nobody watching.

Orchestration only: start (or resume) the persisted rollout, evaluate it every ``poll_seconds`` from the prediction
log, apply the decision, and on promotion or rollback emit a Prefect event and leave a table artifact with a row per
evaluated step. A crashed or cancelled flow resumes from the database on its next run.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.events import emit_event

from core import logs
from core.names import EVENT_ROLLOUT_ABORTED, EVENT_ROLLOUT_PROMOTED, model_resource
from core.notify import notify
from core.settings import get_settings
from core.store.rollouts import Rollout
from deployments.rollout import start_rollout
from services.context import open_context
from tasks.reporting import publish_report_task, render_rollout
from tasks.rollout import evaluate_step_task

SEVERITY = {"promoted": "info", "aborted": "warning", "paused": "action-needed"}


@flow(name="rollout", log_prints=True)
def rollout(
    config_path: str | None = None,
    strategy: str | None = None,
    poll_seconds: float = 2.0,
    max_minutes: float = 120.0,
) -> Rollout:
    """Roll the registered challenger out (canary, A/B or shadow per the config) and promote or roll it back."""
    with logs.flow_run(get_settings()):
        logger = get_run_logger()
        context = open_context(config_path=config_path)
        live = context.rollouts.live(context.model_name)
        current = live or start_rollout(context, strategy)
        logs.annotate(
            model_version=current.challenger_version,
            rollout_id=current.id,
            change_request_id=current.challenger_request_id,
        )
        if live is None:
            logger.info("Started rollout #%d: %s", current.id, current.reason)
        else:
            logger.info("Resuming rollout #%d at step %d (%g%%)", current.id, current.step_index + 1, current.weight)
        deadline = time.monotonic() + max_minutes * 60
        last_reason = ""
        while True:
            current, decision = evaluate_step_task(context, current.id)
            if decision.reason != last_reason:
                logger.info("[%s at %g%%] %s", decision.action, current.weight, decision.reason)
                last_reason = decision.reason
            if current.status != "running" or time.monotonic() > deadline:
                break
            time.sleep(poll_seconds)

        summary = f"rollout #{current.id} {current.status}: {current.reason}"
        publish_report_task(context.model_name, "rollout", render_rollout(current), summary)
        _announce(context.model_name, current)
        return current


def _announce(model_name: str, rollout: Rollout) -> None:
    """A notice for people on every end state; an event for the automations on promotion and rollback."""
    if rollout.status in SEVERITY:
        notify(
            f"rollout.{rollout.status}",
            model_name,
            f"Rollout #{rollout.id} of v{rollout.challenger_version} {rollout.status}: {rollout.reason}",
            SEVERITY[rollout.status],
            rollout_id=rollout.id,
        )
    if rollout.status in ("promoted", "aborted"):
        challenger = rollout.steps[-1]["stats"].get("challenger", {}) if rollout.steps else {}
        emit_event(
            event=EVENT_ROLLOUT_PROMOTED if rollout.status == "promoted" else EVENT_ROLLOUT_ABORTED,
            resource=model_resource(model_name),
            payload={
                "rollout_id": rollout.id,
                "challenger_version": rollout.challenger_version,
                "champion_version": rollout.champion_version,
                "reason": rollout.reason,
                "challenger_labels": challenger.get("labelled"),
                "challenger_answers": challenger.get("requests"),
            },
        )
