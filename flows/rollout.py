"""The ``rollout`` flow: expose the challenger through the gateway step by step and decide, with nobody watching.

Orchestration only: start (or resume) the persisted rollout, evaluate it every ``poll_seconds`` from the prediction
log, apply the decision, and on promotion or rollback emit a Prefect event and leave a table artifact with a row per
evaluated step. A crashed or cancelled flow resumes from the database on its next run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from deployments.rollout import Evaluation, start_rollout, step
from deployments.rollout_state import Rollout, RolloutStore
from mlops.config import ProjectConfig, load_config
from mlops.events import EVENT_ROLLOUT_ABORTED, EVENT_ROLLOUT_PROMOTED, model_resource
from mlops.notify import notify
from mlops.settings import Settings, get_settings
from tasks.reporting import artifact_key


@task(name="evaluate-rollout-step", cache_policy=NO_CACHE)
def evaluate_step_task(settings: Settings, config: ProjectConfig, rollout_id: int) -> tuple[Rollout, Evaluation]:
    """Read the prediction log, run the guards and sequential tests, apply the decision."""
    return step(settings, config, rollout_id)


def render_rollout_markdown(rollout: Rollout) -> str:
    lines = [
        f"# Rollout #{rollout.id}: {rollout.status}",
        "",
        f"**{rollout.strategy}** of challenger v{rollout.challenger_version} against champion "
        f"v{rollout.champion_version}.",
        "",
        f"**Decision:** {rollout.reason}",
        "",
        "| time (UTC) | step | challenger % | action | challenger answers | labels (challenger) "
        "| accuracy champion / challenger | reason |",
        "|---|---:|---:|---|---:|---:|---|---|",
    ]
    for s in rollout.steps:
        champ = s.get("stats", {}).get("champion", {})
        chall = s.get("stats", {}).get("challenger", {})

        def acc(d: dict[str, Any]) -> str:
            return "-" if d.get("accuracy") is None else f"{d['accuracy']:.3f}"

        lines.append(
            f"| {s['at'][11:19]} | {s['step_index'] + 1} | {s['weight']:g} | {s['action']} "
            f"| {chall.get('requests', 0)} | {chall.get('labelled', 0)} | {acc(champ)} / {acc(chall)} | {s['reason']} |"
        )
    return "\n".join(lines)


@flow(name="rollout", log_prints=True)
def rollout(
    config_path: str | None = None,
    strategy: str | None = None,
    poll_seconds: float = 2.0,
    max_minutes: float = 120.0,
) -> dict[str, Any]:
    """Roll the registered challenger out (canary, A/B or shadow per the config) and promote or roll it back."""
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(Path(config_path) if config_path else settings.config)
    current = RolloutStore(settings.store_url).live(config.model_name)
    if current is None:
        current = start_rollout(settings, config, strategy)
        logger.info("Started rollout #%d: %s", current.id, current.reason)
    else:
        logger.info("Resuming rollout #%d at step %d (%g%%)", current.id, current.step_index + 1, current.weight)
    deadline = time.monotonic() + max_minutes * 60
    last_reason = ""
    while True:
        current, decision = evaluate_step_task(settings, config, current.id)
        if decision.reason != last_reason:
            logger.info("[%s at %g%%] %s", decision.action, current.weight, decision.reason)
            last_reason = decision.reason
        if current.status != "running" or time.monotonic() > deadline:
            break
        time.sleep(poll_seconds)

    create_markdown_artifact(
        key=artifact_key(config.model_name, "rollout"),
        markdown=render_rollout_markdown(current),
        description=f"rollout #{current.id} {current.status}: {current.reason}"[:500],
    )
    if current.status in ("promoted", "aborted", "paused"):
        severity = {"promoted": "info", "aborted": "warning", "paused": "action-needed"}[current.status]
        notify(
            f"rollout.{current.status}",
            config.model_name,
            f"Rollout #{current.id} of v{current.challenger_version} {current.status}: {current.reason}",
            severity,
            rollout_id=current.id,
        )
    if current.status in ("promoted", "aborted"):
        challenger = current.steps[-1]["stats"].get("challenger", {}) if current.steps else {}
        emit_event(
            event=EVENT_ROLLOUT_PROMOTED if current.status == "promoted" else EVENT_ROLLOUT_ABORTED,
            resource=model_resource(config.model_name),
            payload={
                "rollout_id": current.id,
                "challenger_version": current.challenger_version,
                "champion_version": current.champion_version,
                "reason": current.reason,
                "challenger_labels": challenger.get("labelled"),
                "challenger_answers": challenger.get("requests"),
            },
        )
    return current.to_json()
