"""The ``rollback`` flow, started by ``mlops.model.degraded``: if the champion was promoted recently and a
``previous`` version exists, put ``previous`` back as champion and record why. Otherwise it explains why it did
nothing (an old champion degrading is a retraining matter, not a rollback; ``monitoring.policy``)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.events import emit_event

from core import logs
from core.names import CHAMPION, EVENT_MODEL_ROLLED_BACK, PREVIOUS, model_resource
from core.notify import notify
from core.settings import get_settings
from core.store.schema import utcnow
from monitoring.policy import RollbackResult, rollback_eligibility
from services.context import open_context
from tasks.reporting import publish_report_task, render_rollback


@flow(name="rollback", log_prints=True)
def rollback(config_path: str | None = None, reason: str = "model degraded") -> RollbackResult:
    """Roll the champion back to ``previous`` when it was promoted within ``monitoring.rollback_window_hours``."""
    with logs.flow_run(get_settings()):
        logger = get_run_logger()
        context = open_context(config_path=config_path)
        registry, model_name = context.registry, context.model_name
        champion = registry.alias_version(CHAMPION)
        logs.annotate(model_version=None if champion is None else str(champion.version))
        previous = registry.alias_version(PREVIOUS)
        eligibility = rollback_eligibility(
            None if previous is None else str(previous.version),
            registry.promoted_at(),
            utcnow(),
            context.config.monitoring.rollback_window_hours,
        )
        if not eligibility.eligible:
            result = RollbackResult("skipped", eligibility.reason)
        else:
            bad, good = registry.rollback_to_previous(actor="rollback flow", reason=reason)
            result = RollbackResult("rolled back", reason, from_version=bad, to_version=good)
            emit_event(event=EVENT_MODEL_ROLLED_BACK, resource=model_resource(model_name), payload=result.to_json())
            notify("model.rolled_back", model_name, f"Champion v{bad} rolled back to v{good}: {reason}", "warning")
        logger.info("%s: %s", result.status, result.reason)
        summary = f"{result.status}: {result.reason}"
        publish_report_task(model_name, "rollback", render_rollback(result), summary, result.to_json())
        return result
