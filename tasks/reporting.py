"""What a person reads in the Prefect UI: the markdown artifact each flow leaves, rendered here and nowhere else.

Lifecycle: the comparison with the champion and the decision. Rollout: a row per evaluated step. Monitor: drift per
column and the EWMA charts. Rollback and retrain: what was done and why. Artifacts are keyed ``<kind>-<model>`` so
the UI shows each model's latest next to its history.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from core.store.requests import ChangeRequest
from core.store.rollouts import Rollout
from monitoring.policy import RetrainResult, RollbackResult
from monitoring.verdict import MonitorResult
from training.outcome import LifecycleOutcome
from training.search import SearchResult


def artifact_key(model_name: str, kind: str = "lifecycle") -> str:
    """``<kind>-<model>``; Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")


def render_lifecycle(outcome: LifecycleOutcome, request: ChangeRequest | None) -> str:
    lines = [f"# Lifecycle: {outcome.status}", "", f"**Decision:** {outcome.decision}", ""]
    if request is not None:
        lines += [
            f"**Change request** #{request.id} ({request.kind}): {request.title}",
            "",
            f"> {request.reason}" if request.reason else "",
            "",
        ]
    if outcome.data:
        lines += [f"**Data:** {outcome.data}", ""]
    if outcome.version:
        lines += [
            f"**Registered:** `{outcome.model_name}` version {outcome.version}, semver **{outcome.semver}**, "
            f"aliases: {', '.join(outcome.aliases) or 'none'}",
            "",
        ]
    if outcome.metrics:
        champ = outcome.champion_metrics or {}
        lines += [
            f"| holdout metric | new model | champion {outcome.champion or '(none)'} | difference |",
            "|---|---:|---:|---:|",
        ]
        for name, value in sorted(outcome.metrics.items()):
            other = champ.get(name)
            diff = f"{value - other:+.4f}" if other is not None else "-"
            star = " (primary)" if name == outcome.metric else ""
            lines.append(f"| {name}{star} | {value:.4f} | {'-' if other is None else f'{other:.4f}'} | {diff} |")
        lines.append("")
    if outcome.gates:
        lines += ["| gate | result | detail |", "|---|---|---|"]
        lines += [f"| {g['name']} | {'pass' if g['passed'] else '**FAIL**'} | {g['detail']} |" for g in outcome.gates]
        lines.append("")
    if outcome.failures:
        lines += ["**Failed expectations:**", ""] + [f"- {f}" for f in outcome.failures] + [""]
    if outcome.mlflow_run_id:
        lines.append(f"MLflow run `{outcome.mlflow_run_id}` ({outcome.mlflow_run_url}, with `mlops ui` running).")
    return "\n".join(lines)


def render_rollout(rollout: Rollout) -> str:
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
        lines.append(
            f"| {s['at'][11:19]} | {s['step_index'] + 1} | {s['weight']:g} | {s['action']} "
            f"| {chall.get('requests', 0)} | {chall.get('labelled', 0)} | {_accuracy(champ)} / {_accuracy(chall)} "
            f"| {s['reason']} |"
        )
    return "\n".join(lines)


def _accuracy(stats: dict[str, Any]) -> str:
    return "-" if stats.get("accuracy") is None else f"{stats['accuracy']:.3f}"


def render_monitor(result: MonitorResult) -> str:
    lines = [f"# Monitoring: {result.verdict}", "", result.summary, ""]
    if result.findings:
        lines += ["**Findings** (the verdict is the worst of them):", ""]
        lines += [f"- {f.check}: **{f.verdict}**, {f.reason}" for f in result.findings] + [""]
    if result.drift is not None:
        lines += ["| column | test | score | threshold | drifted |", "|---|---|---:|---:|---|"]
        lines += [
            f"| {c.column} | {c.method} | {c.score:.4f} | {c.threshold} | {'**yes**' if c.drifted else 'no'} |"
            for c in result.drift.columns
        ]
        lines.append("")
    health = result.health
    if health is not None:
        degraded = result.degraded_metrics
        lines += ["| metric | smoothed | limits | degraded now | time to SLO breach |", "|---|---:|---|---|---|"]
        for name, chart in health.charts.items():
            last = chart.to_json()
            eta = health.forecasts.get(name)
            eta_text = "-" if eta is None else ("now" if eta == 0 else f"{eta / 60:.0f} min")
            lines.append(
                f"| {name} | {last['last_smoothed']:.4f} | {last['last_lower']:.4f} .. {last['last_upper']:.4f} "
                f"| {'**yes**' if name in degraded else 'no'} | {eta_text} |"
            )
    if result.mlflow_run_url:
        lines += ["", f"Evidently report: MLflow run {result.mlflow_run_url} (drift/report.html)."]
    return "\n".join(lines)


def render_rollback(result: RollbackResult) -> str:
    lines = [f"# Rollback: {result.status}", "", result.reason]
    if result.from_version:
        lines += ["", f"Champion v{result.from_version} replaced by v{result.to_version} (alias `previous`)."]
    return "\n".join(lines)


def render_retrain(result: RetrainResult) -> str:
    title = "Automatic retraining paused" if result.status == "paused" else f"Retrain: {result.status}"
    lines = [f"# {title}", "", result.reason or result.decision]
    if result.data:
        lines += ["", f"**Data:** {result.data}"]
    if result.request_id is not None:
        lines += ["", f"Change request #{result.request_id}."]
    return "\n".join(lines)


def render_search(result: SearchResult) -> str:
    best = result.best
    lines = [
        f"# Hyperparameter search: best trial {best.number}",
        "",
        f"{len(result.completed)} of {len(result.trials)} trials completed in {result.wall_seconds:.0f} s; "
        f"cross-validated {result.metric} on the training rows ({result.direction}). "
        + (f"Stopped early: {result.stopped_early}." if result.stopped_early else ""),
        "",
        f"| trial | {result.metric} | std | seconds | parameters |",
        "|---:|---:|---:|---:|---|",
    ]
    for t in result.top(10):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        lines.append(f"| {t.number} | {t.score:.4f} | {t.std or 0:.4f} | {t.seconds:.1f} | {params} |")
    failed = [t for t in result.trials if t.score is None]
    if failed:
        lines += ["", f"{len(failed)} trial(s) failed, e.g. trial {failed[0].number}: {failed[0].error[:300]}"]
    return "\n".join(lines)


OUTCOME_SUFFIX = "outcome"  # ``<kind>-outcome-<model>``: the typed result of a run, as one JSON row


def outcome_key(model_name: str, kind: str) -> str:
    """Key of the table artifact holding a run's typed result (what ``mlops <kind> --deployment`` reads back)."""
    return artifact_key(model_name, f"{kind}-{OUTCOME_SUFFIX}")


def start_progress(model_name: str, kind: str, description: str) -> UUID:
    """A progress bar on the flow run in the Prefect UI (artifact ``<kind>-progress-<model>``), at 0%."""
    return create_progress_artifact(0.0, key=artifact_key(model_name, f"{kind}-progress"), description=description)


def report_progress(artifact_id: UUID, done: int, total: int, description: str) -> None:
    """Move that bar to ``done`` of ``total``, with what it means in words."""
    update_progress_artifact(artifact_id, 100.0 * done / max(total, 1), description=description[:500])


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report_task(
    model_name: str, kind: str, markdown: str, summary: str, outcome: dict[str, Any] | None = None
) -> None:
    """Leave ``markdown`` as the flow run's artifact ``<kind>-<model>``; ``summary`` is its description.

    ``outcome`` (the flow's typed result as JSON) is also left as a one-row table artifact: a deployed run's return
    value is not kept by the Prefect API unless results are persisted to storage the caller may not share, so this is
    how the CLI learns the outcome of a run it started on a server.
    """
    create_markdown_artifact(key=artifact_key(model_name, kind), markdown=markdown, description=summary[:500])
    if outcome is not None:
        create_table_artifact(
            table=[outcome], key=outcome_key(model_name, kind), description=f"{kind} outcome (JSON): {summary[:400]}"
        )
