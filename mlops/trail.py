"""One audit trail: everything recorded about a model version, in time order, from the four places it is kept (the
change-request table, the MLflow run and version, the alias history, the rollout log) plus the monitor runs that named
the version. ``mlops trail VERSION|SEMVER|#REQUEST`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import NotFoundError
from core.names import TAG_DATA_FINGERPRINT, TAG_GATE_PREFIX, TAG_MONITORED_VERSION, TAG_REQUEST_ID, TAG_VERDICT
from core.store.requests import ChangeRequest
from model_registry.registry import VersionInfo
from services.context import ProjectContext


@dataclass(frozen=True)
class TrailEvent:
    at: datetime
    kind: str  # request | data | run | gate | registration | alias | rollout | monitor
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "summary": self.summary, "detail": self.detail}


@dataclass
class Trail:
    model: str
    version: str | None
    semver: str | None
    request_id: int | None
    events: list[TrailEvent]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "semver": self.semver,
            "request_id": self.request_id,
            "events": [e.to_json() for e in self.events],
        }


def build_trail(context: ProjectContext, ident: str) -> Trail:
    """The trail of a version (``3``), a semver (``1.1.0``) or a change request (``#12``)."""
    request, version = _resolve(context, ident.strip())
    events: list[TrailEvent] = []
    if request is not None:
        events += _request_events(request)
    if version is not None:
        events += _version_events(context, version)
    run_id = (request.mlflow_run_id if request else None) or (version.run_id if version else None)
    if run_id:
        events += _run_events(context, run_id, version)
    events.sort(key=lambda e: e.at)
    return Trail(
        context.model_name,
        version.version if version else None,
        version.semver if version else None,
        request.id if request else None,
        events,
    )


def _resolve(context: ProjectContext, ident: str) -> tuple[ChangeRequest | None, VersionInfo | None]:
    versions = context.registry.versions()
    requests = context.store.list()
    if ident.startswith("#"):
        number = ident[1:]
        request = next((r for r in requests if number.isdigit() and r.id == int(number)), None)
        if request is None:
            raise _unknown(ident, versions, requests)
        version = next((v for v in versions if v.version == request.model_version), None)
        return request, version
    version = next((v for v in versions if ident in (v.version, v.semver)), None)
    if version is None:
        raise _unknown(ident, versions, requests)
    tagged = version.tags.get(TAG_REQUEST_ID, "")
    request = next((r for r in requests if str(r.id) == tagged), None)
    return request, version


def _unknown(ident: str, versions: list[VersionInfo], requests: list[ChangeRequest]) -> NotFoundError:
    known_versions = ", ".join(f"{v.version} ({v.semver or '-'})" for v in versions[-10:]) or "none yet"
    known_requests = ", ".join(f"#{r.id}" for r in sorted(requests, key=lambda r: r.id)[-10:]) or "none yet"
    return NotFoundError(
        f"no version, semver or change request {ident!r}; versions: {known_versions}; requests: {known_requests} "
        "(give a request as #ID)."
    )


def _request_events(request: ChangeRequest) -> list[TrailEvent]:
    events = [
        TrailEvent(
            request.created_at,
            "request",
            f"change request #{request.id} ({request.kind}) '{request.title}' submitted by "
            f"{request.submitted_by or '?'}" + (f": {request.reason}" if request.reason else ""),
            {"overrides": request.overrides},
        )
    ]
    if request.status not in ("queued", "running"):
        events.append(
            TrailEvent(
                request.updated_at, "request", f"request #{request.id} {request.status}: {request.status_reason}"
            )
        )
    return events


def _version_events(context: ProjectContext, version: VersionInfo) -> list[TrailEvent]:
    v = version.version
    events = [
        TrailEvent(
            version.created_at,
            "registration",
            f"registered v{v} as {version.semver or '(no semver)'}: {version.description}".rstrip(": "),
            {"metrics": version.metrics},
        )
    ]
    for move in context.registry.history():
        if v in (move.from_version, move.to_version):
            target = f"v{move.to_version}" if move.to_version else "(removed)"
            events.append(
                TrailEvent(
                    move.at,
                    "alias",
                    f"{move.alias}: {'v' + move.from_version if move.from_version else '-'} -> {target} by "
                    f"{move.actor}: {move.reason}",
                )
            )
    for rollout in context.rollouts.for_version(context.model_name, v):
        role = "challenger" if rollout.challenger_version == v else "champion"
        events.append(
            TrailEvent(
                rollout.started_at,
                "rollout",
                f"rollout #{rollout.id} started ({rollout.strategy}, v{v} as {role}; challenger from request "
                f"#{rollout.challenger_request_id if rollout.challenger_request_id is not None else '?'})",
            )
        )
        if not rollout.live:
            last = rollout.steps[-1] if rollout.steps else {}
            events.append(
                TrailEvent(
                    rollout.updated_at,
                    "rollout",
                    f"rollout #{rollout.id} {rollout.status} after {len(rollout.steps)} steps: {rollout.reason}",
                    {"last_step": last},
                )
            )
    events += _monitor_events(context, v)
    return events


def _run_events(context: ProjectContext, run_id: str, version: VersionInfo | None) -> list[TrailEvent]:
    """The run's start, its data, and the gates (tagged on the version when registered, else on the run)."""
    run = context.mlflow.get_run(run_id)
    at = _ms(run.info.start_time)
    tags = {**run.data.tags, **(version.tags if version else {})}
    events = [TrailEvent(at, "run", f"MLflow run {run_id} ({run.info.run_name}) {run.info.status.lower()}")]
    inputs = getattr(run.inputs, "dataset_inputs", None) or []
    sources = [f"{d.dataset.name} ({d.dataset.source_type}, digest {d.dataset.digest})" for d in inputs]
    events.append(
        TrailEvent(
            at,
            "data",
            f"data fingerprint {tags.get(TAG_DATA_FINGERPRINT, '?')}"
            + (f"; inputs: {', '.join(sources)}" if sources else ""),
        )
    )
    end = _ms(run.info.end_time) if run.info.end_time else at
    for key, value in sorted(tags.items()):
        if key.startswith(TAG_GATE_PREFIX):
            events.append(TrailEvent(end, "gate", f"gate {key[len(TAG_GATE_PREFIX) :]}: {value}"))
    return events


def _monitor_events(context: ProjectContext, version: str) -> list[TrailEvent]:
    experiment = context.mlflow.get_experiment_by_name(context.model_name)
    if experiment is None:
        return []
    runs = context.mlflow.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{TAG_MONITORED_VERSION}` = '{version}'", max_results=200
    )
    return [
        TrailEvent(
            _ms(r.info.start_time),
            "monitor",
            f"monitor: {r.data.tags.get(TAG_VERDICT, '?')}: {r.data.tags.get('mlflow.note.content', '')}"[:600],
            {"mlflow_run_id": r.info.run_id},
        )
        for r in runs
    ]


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)
