"""How the command line shows things to a person: the registry, the request queue, a comparison, a rollout.

The CLI's commands and the demo both print through these, so neither calls the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from core.names import TAG_PRIMARY_METRIC, TAG_REQUEST_ID, TAG_REQUEST_KIND
from core.store.requests import ChangeRequest
from core.store.rollouts import Rollout
from deployments.capacity import CapacityPlan
from model_registry.registry import Comparison, ModelRegistry

if TYPE_CHECKING:
    from mlops.trail import Trail


def print_registry(console: Console, registry: ModelRegistry) -> None:
    """Versions with semver, aliases and the primary metric, then the alias history."""
    versions = registry.versions()
    if not versions:
        console.print(
            f"Model {registry.name!r} has no registered versions yet. Run `mlops run` after submitting a request."
        )
        return
    table = Table("version", "semver", "aliases", "request", "primary metric", "created (UTC)", title=registry.name)
    for v in versions:
        metric = v.tags.get(TAG_PRIMARY_METRIC, "")
        score = v.metrics.get(metric)
        table.add_row(
            v.version,
            v.semver or "",
            ", ".join(v.aliases),
            f"#{v.tags.get(TAG_REQUEST_ID, '?')} {v.tags.get(TAG_REQUEST_KIND, '')}",
            f"{metric} {score:.4f}" if score is not None else "",
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    hist = Table("when (UTC)", "alias", "from", "to", "by", "why", title="alias history")
    for h in registry.history():
        hist.add_row(
            h.at.strftime("%Y-%m-%d %H:%M:%S"),
            h.alias,
            h.from_version or "-",
            h.to_version or "(removed)",
            h.actor,
            h.reason,
        )
    console.print(hist)


def print_requests(console: Console, requests: list[ChangeRequest]) -> None:
    """The queue in the order it runs: hotfix, major, minor; oldest first within a kind."""
    if not requests:
        console.print("No change requests yet. Submit one with `mlops request submit`.")
        return
    table = Table("id", "kind", "status", "title", "model", "outcome (full text: request show ID)", "created (UTC)")
    for r in requests:
        model = f"{r.semver} (v{r.model_version})" if r.semver else ""
        text = r.status_reason or r.reason
        outcome = text.splitlines()[0] if text else ""
        table.add_row(
            f"#{r.id}", r.kind, r.status, r.title, model, outcome[:160], r.created_at.strftime("%Y-%m-%d %H:%M:%S")
        )
    console.print(table)


def print_comparison(console: Console, cmp: Comparison) -> None:
    lname = f"v{cmp.left.version} {cmp.left.semver or ''} {','.join(cmp.left.aliases)}".strip()
    rname = f"v{cmp.right.version} {cmp.right.semver or ''} {','.join(cmp.right.aliases)}".strip()
    table = Table("metric", lname, rname, "difference")
    for name, a, b in cmp.rows:
        diff = f"{b - a:+.4f}" if a is not None and b is not None else "-"
        table.add_row(name, "-" if a is None else f"{a:.4f}", "-" if b is None else f"{b:.4f}", diff)
    console.print(table)
    if not cmp.same_data:
        console.print(
            "[yellow]Note:[/yellow] the two versions were trained on different data (fingerprints differ); "
            "their holdout metrics come from different rows."
        )


def print_rollout(console: Console, rollout: Rollout, last_steps: int = 15) -> None:
    """The rollout's state and the tail of its decision log."""
    console.print(
        f"Rollout #{rollout.id} [bold]{rollout.status}[/bold] ({rollout.strategy}): challenger "
        f"v{rollout.challenger_version} at {rollout.served_weight:g}% vs champion v{rollout.champion_version}."
        f"\n{rollout.reason}"
    )
    table = Table("time (UTC)", "step", "%", "action", "answers", "labels", "reason")
    for s in rollout.steps[-last_steps:]:
        chall = s.get("stats", {}).get("challenger", {})
        table.add_row(
            s["at"][11:19],
            str(s["step_index"] + 1),
            f"{s['weight']:g}",
            s["action"],
            str(chall.get("requests", "")),
            str(chall.get("labelled", "")),
            s["reason"],
        )
    console.print(table)


def print_capacity_plan(console: Console, plan: CapacityPlan) -> None:
    """The table per replica count, the answer, and the assumptions it rests on."""
    service = plan.service.describe()
    console.print(
        f"Service time per request: mean {service['mean_ms']} ms, p95 {service['p95_ms']} ms over "
        f"{service['samples']} measurements from {service['source']}."
    )
    if plan.batching is not None:
        cost = plan.batching
        console.print(
            f"Batch of b requests: {cost.fixed_ms:.2f} + {cost.per_request_ms:.2f} * b ms (a replica saturates at "
            f"{cost.saturation_rate:.0f} requests/s)."
        )

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    table = Table(
        "replicas",
        "utilisation",
        "P(wait)",
        "mean wait ms",
        "p95 wait ms",
        "mean response ms",
        "p95 response ms",
        "mean batch",
        title=f"{plan.planned_rate:g} requests/s ({plan.rate:g} + {plan.headroom:.0%} headroom)",
    )
    for row in plan.rows:
        if row.saturated:
            table.add_row(str(row.replicas), f"{row.utilisation:.0%}", "saturated", "-", "-", "-", "-", "-")
            continue
        marker = " <" if row.replicas == plan.replicas else ""
        table.add_row(
            f"{row.replicas}{marker}",
            f"{row.utilisation:.0%}",
            f"{row.p_wait:.3f}",
            ms(row.mean_wait_ms),
            ms(row.p95_wait_ms),
            ms(row.mean_response_ms),
            ms(row.p95_response_ms),
            "1" if row.batch_size is None else f"{row.batch_size:.1f}",
        )
    console.print(table)
    console.print(f"[bold]{plan.summary}[/bold]")
    console.print("Assumptions: " + "; ".join(plan.assumptions) + ".")


def print_flow_outcome(console: Console, flow_name: str, outcome: dict[str, Any]) -> None:
    """A monitor, retrain or rollback run's result (in-process or deployed: both arrive as the flow's JSON)."""
    if flow_name == "monitor":
        _print_monitor(console, outcome)
        return
    status = outcome.get("status", "?")
    console.print(
        f"[bold]{flow_name} {status}[/bold]: {outcome.get('reason') or outcome.get('decision') or '-'}", highlight=False
    )
    if flow_name == "rollback" and outcome.get("from_version"):
        console.print(f"Champion v{outcome['from_version']} replaced by v{outcome['to_version']}.")
    if flow_name == "retrain":
        if outcome.get("data"):
            console.print(f"Data: {outcome['data']}", highlight=False)
        if outcome.get("request_id") is not None:
            console.print(f"Change request #{outcome['request_id']}: {outcome.get('decision') or status}")
        rollout = outcome.get("rollout")
        if rollout:
            console.print(f"Rollout #{rollout['id']} {rollout['status']}: {rollout['reason']}")


def _print_monitor(console: Console, outcome: dict[str, Any]) -> None:
    console.print(
        f"[bold]{outcome['verdict']}[/bold] (champion v{outcome.get('champion') or '-'}, {outcome['rows']} recent "
        f"answers): {outcome['summary']}",
        highlight=False,
    )
    drift = outcome.get("drift") or {}
    drifted = [c for c in drift.get("columns", []) if c["drifted"]]
    if drifted:
        table = Table("drifted column", "test", "score", "threshold")
        for c in drifted:
            table.add_row(c["column"], c["method"], f"{c['score']:.4g}", f"{c['threshold']:g}")
        console.print(table)
    health = outcome.get("health") or {}
    if health.get("charts"):
        table = Table("metric", "smoothed", "limits", "degraded now")
        for name, chart in health["charts"].items():
            lower, upper, last = chart.get("last_lower"), chart.get("last_upper"), chart.get("last_smoothed")
            limits = "-" if lower is None or upper is None else f"{lower:.4g} .. {upper:.4g}"
            table.add_row(
                name,
                "-" if last is None else f"{last:.4g}",
                limits,
                "yes" if name in outcome.get("degraded", health["degraded"]) else "no",
            )
        console.print(table)
    if outcome.get("mlflow_run_url"):
        console.print(f"Evidently report: MLflow run {outcome['mlflow_run_url']} (drift/report.html).")


def print_trail(console: Console, trail: Trail) -> None:
    """One line per recorded event, oldest first."""
    who = f"v{trail.version} ({trail.semver})" if trail.version else f"request #{trail.request_id}"
    table = Table("time (UTC)", "what", "event", title=f"{trail.model} {who}")
    for e in trail.events:
        table.add_row(e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.summary)
    console.print(table)
