"""What a person reads in the Prefect UI: one markdown artifact per lifecycle run with the comparison and decision."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops.store import ChangeRequest


@dataclass
class LifecycleOutcome:
    """The result of one lifecycle run; also the flow's return value."""

    status: str  # idle | registered | rejected | failed
    decision: str  # one or two sentences in plain words
    request_id: int | None = None
    model_name: str | None = None
    version: str | None = None
    semver: str | None = None
    aliases: list[str] = field(default_factory=list)
    metric: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    champion: str | None = None
    champion_metrics: dict[str, float] | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None


def artifact_key(model_name: str, kind: str = "lifecycle") -> str:
    """``<kind>-<model>``; Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")


def render_markdown(outcome: LifecycleOutcome, request: ChangeRequest | None) -> str:
    lines = [f"# Lifecycle: {outcome.status}", "", f"**Decision:** {outcome.decision}", ""]
    if request is not None:
        lines += [
            f"**Change request** #{request.id} ({request.kind}): {request.title}",
            "",
            f"> {request.reason}" if request.reason else "",
            "",
        ]
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


@task(name="publish-lifecycle-report", cache_policy=NO_CACHE)
def publish_report_task(outcome: LifecycleOutcome, request: ChangeRequest | None) -> None:
    """Leave the comparison and the decision as a markdown artifact on the flow run."""
    create_markdown_artifact(
        key=artifact_key(outcome.model_name or "unknown"),
        markdown=render_markdown(outcome, request),
        description=outcome.decision[:500],
    )
