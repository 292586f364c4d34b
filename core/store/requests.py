"""Change requests (intake, priority queue, status) and the registry's alias history, over the project store.

Writes are single transactions, so an interrupted command leaves either the old row or the new one, never half of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import case, insert, select, update

from core.errors import RequestError
from core.store.schema import alias_events, as_utc, change_requests, get_engine, utcnow

RequestKind = Literal["hotfix", "major", "minor"]
RequestStatus = Literal["queued", "running", "succeeded", "failed", "rejected"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("hotfix", "major", "minor")  # priority order
REQUEST_STATUSES: tuple[RequestStatus, ...] = ("queued", "running", "succeeded", "failed", "rejected")


@dataclass(frozen=True)
class ChangeRequest:
    id: int
    kind: RequestKind
    title: str
    reason: str
    overrides: dict[str, Any]
    status: RequestStatus
    status_reason: str
    created_at: datetime
    updated_at: datetime
    submitted_by: str = ""
    model_name: str | None = None
    model_version: str | None = None
    semver: str | None = None
    mlflow_run_id: str | None = None

    @property
    def label(self) -> str:
        return f"#{self.id} {self.kind} '{self.title}'"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data


@dataclass(frozen=True)
class AliasEvent:
    model_name: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    reason: str
    at: datetime = field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


class ProjectStore:
    """Change requests (intake, priority queue, status) and alias history."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self.engine.begin() as conn:
            yield conn

    # ---- change requests -------------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        title: str,
        reason: str,
        overrides: dict[str, Any] | None = None,
        submitted_by: str = "",
    ) -> ChangeRequest:
        if kind not in REQUEST_KINDS:
            raise RequestError(f"unknown request kind {kind!r}; use one of: {', '.join(REQUEST_KINDS)}.")
        title = (title or "").strip()
        if not title:
            raise RequestError("a change request needs a title (--title), saying what should change.")
        if len(title) > 200:
            raise RequestError("the title is longer than 200 characters; put the detail in --reason.")
        overrides = overrides or {}
        json.dumps(overrides)  # must be storable as JSON; raises TypeError early otherwise
        now = utcnow()
        with self._tx() as conn:
            result = conn.execute(
                insert(change_requests).values(
                    kind=kind,
                    title=title,
                    reason=reason or "",
                    overrides=overrides,
                    submitted_by=submitted_by,
                    status="queued",
                    status_reason="",
                    created_at=now,
                    updated_at=now,
                )
            )
            new_id = result.inserted_primary_key[0]
        return self.get(new_id)

    def get(self, request_id: int) -> ChangeRequest:
        with self._tx() as conn:
            row = conn.execute(select(change_requests).where(change_requests.c.id == request_id)).first()
        if row is None:
            raise RequestError(f"change request #{request_id} does not exist; `mlops request list` shows them.")
        return _to_request(row)

    def list(self, status: str | None = None) -> list[ChangeRequest]:
        """All requests in priority order: hotfix, major, minor; oldest first within a kind."""
        stmt = select(change_requests).order_by(_priority(), change_requests.c.created_at, change_requests.c.id)
        if status:
            if status not in REQUEST_STATUSES:
                raise RequestError(f"unknown status {status!r}; use one of: {', '.join(REQUEST_STATUSES)}.")
            stmt = stmt.where(change_requests.c.status == status)
        with self._tx() as conn:
            return [_to_request(r) for r in conn.execute(stmt)]

    def claim(self, request_id: int | None = None) -> ChangeRequest | None:
        """Move the next queued request (or the named one) to ``running`` and return it.

        Compare-and-set on the status, so two workers never run the same request, on SQLite and PostgreSQL alike.
        """
        for _ in range(20):
            if request_id is not None:
                candidate = self.get(request_id)
                if candidate.status != "queued":
                    raise RequestError(
                        f"change request #{request_id} is {candidate.status}, not queued; only queued requests "
                        "run. Submit a new request to try again."
                    )
            else:
                queued = self.list(status="queued")
                if not queued:
                    return None
                candidate = queued[0]
            with self._tx() as conn:
                updated = conn.execute(
                    update(change_requests)
                    .where(change_requests.c.id == candidate.id, change_requests.c.status == "queued")
                    .values(status="running", status_reason="", updated_at=utcnow())
                ).rowcount
            if updated == 1:
                return self.get(candidate.id)
        return None

    def finish(
        self,
        request_id: int,
        status: RequestStatus,
        reason: str,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        semver: str | None = None,
        mlflow_run_id: str | None = None,
    ) -> ChangeRequest:
        if status not in ("succeeded", "failed", "rejected"):
            raise RequestError(f"a request cannot finish as {status!r}")
        values: dict[str, Any] = {"status": status, "status_reason": reason, "updated_at": utcnow()}
        for key, value in (
            ("model_name", model_name),
            ("model_version", model_version),
            ("semver", semver),
            ("mlflow_run_id", mlflow_run_id),
        ):
            if value is not None:
                values[key] = value
        with self._tx() as conn:
            conn.execute(update(change_requests).where(change_requests.c.id == request_id).values(**values))
        return self.get(request_id)

    # ---- alias history -----------------------------------------------------------------------------------
    def record_alias_event(self, ev: AliasEvent) -> None:
        with self._tx() as conn:
            conn.execute(insert(alias_events).values(**asdict(ev)))

    def alias_history(self, model_name: str) -> list[AliasEvent]:
        stmt = (
            select(alias_events)
            .where(alias_events.c.model_name == model_name)
            .order_by(alias_events.c.at, alias_events.c.id)
        )
        with self._tx() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [AliasEvent(**{k: (as_utc(v) if k == "at" else v) for k, v in r.items() if k != "id"}) for r in rows]


def _priority() -> Any:
    return case({kind: rank for rank, kind in enumerate(REQUEST_KINDS)}, value=change_requests.c.kind, else_=99)


def _to_request(row: Any) -> ChangeRequest:
    m = dict(row._mapping)
    m["created_at"] = as_utc(m["created_at"])
    m["updated_at"] = as_utc(m["updated_at"])
    m["overrides"] = m["overrides"] or {}
    return ChangeRequest(**m)
