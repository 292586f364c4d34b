"""The project's own durable store: change requests, the registry's alias history, the gateway's prediction log
and feedback, and rollout state.

SQLAlchemy Core on SQLite by default (``<home>/mlops.db``) and PostgreSQL by URL (``MLOPS_DATABASE_URL``); the same
statements run on both. Tables are created on first open, not on import. Writes are single transactions, so an
interrupted command leaves either the old row or the new one, never half of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlops.errors import MlopsError, RequestError

RequestKind = Literal["hotfix", "major", "minor"]
RequestStatus = Literal["queued", "running", "succeeded", "failed", "rejected"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("hotfix", "major", "minor")  # priority order
REQUEST_STATUSES: tuple[RequestStatus, ...] = ("queued", "running", "succeeded", "failed", "rejected")

metadata = MetaData()

change_requests = Table(
    "change_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("overrides", JSON, nullable=False, default=dict),
    Column("submitted_by", String(100), nullable=False, default=""),
    Column("status", String(16), nullable=False, default="queued", index=True),
    Column("status_reason", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(100), nullable=True),
    Column("model_version", String(20), nullable=True),
    Column("semver", String(32), nullable=True),
    Column("mlflow_run_id", String(64), nullable=True),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(100), nullable=False, index=True),
    Column("alias", String(50), nullable=False),
    Column("from_version", String(20), nullable=True),
    Column("to_version", String(20), nullable=True),  # None: alias removed
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Every answer the gateway gives (and every shadow prediction it logs), written in batches off the request path.
predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_name", String(100), nullable=False),
    Column("variant", String(16), nullable=False),  # champion | challenger
    Column("model_version", String(20), nullable=True),
    Column("status", String(16), nullable=False),  # ok | error | fallback | shadow | shadow_error
    Column("served", Integer, nullable=False),  # 1 when this answer was returned to the caller
    Column("features", JSON, nullable=True),
    Column("prediction", String(200), nullable=True),  # JSON-encoded scalar, comparable with feedback.label
    Column("latency_ms", Float, nullable=True),
    Column("rollout_id", Integer, nullable=True, index=True),
)

# Ground truth arriving later for a request id.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("label", String(200), nullable=False),  # JSON-encoded scalar
    Column("at", DateTime(timezone=True), nullable=False),
)

# One row per rollout of a challenger; the gateway reads the live one to route, the rollout flow writes it.
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(100), nullable=False, index=True),
    Column("strategy", String(16), nullable=False),
    Column("champion_version", String(20), nullable=False),
    Column("challenger_version", String(20), nullable=False),
    Column("status", String(16), nullable=False),  # running | paused | promoted | aborted
    Column("step_index", Integer, nullable=False, default=0),
    Column("weight", Float, nullable=False, default=0.0),  # percent of traffic served by the challenger
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("step_started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("steps", JSON, nullable=False, default=list),  # the decision log: one entry per evaluated step
    Column("policy", JSON, nullable=False, default=dict),
)
LIVE_ROLLOUT_STATUSES: tuple[str, ...] = ("running", "paused")
# At most one live rollout per model, enforced by the database (a partial unique index, on SQLite and PostgreSQL):
# two `mlops rollout start` racing each other, or a flow and a person, cannot both win the check-then-insert.
ONE_LIVE_ROLLOUT = Index(
    "uq_rollouts_one_live_per_model",
    rollouts.c.model_name,
    unique=True,
    sqlite_where=rollouts.c.status.in_(LIVE_ROLLOUT_STATUSES),
    postgresql_where=rollouts.c.status.in_(LIVE_ROLLOUT_STATUSES),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone=True columns; everything stored here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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


log = logging.getLogger("mlops.store")
_engines: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine per URL per process, tables created on first use."""
    engine = _engines.get(url)
    if engine is None:
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(engine)
            _add_index(engine, ONE_LIVE_ROLLOUT)  # stores created before the index existed
        except SQLAlchemyError as err:
            cause = getattr(err, "orig", None) or err
            raise MlopsError(
                f"cannot open the project store at {_redact(url)}: {cause}. "
                "Check MLOPS_DATABASE_URL (or MLOPS_HOME for the default SQLite file)."
            ) from None
        _engines[url] = engine
    return engine


def close_engine(url: str) -> None:
    """Dispose of the cached engine for ``url`` (tests dropping a schema, long-lived processes switching stores)."""
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def _add_index(engine: Engine, index: Index) -> None:
    try:
        index.create(engine, checkfirst=True)
    except IntegrityError as err:  # the data already breaks it: keep working, say what to do
        log.warning(
            "the project store already holds two live rollouts of one model, so index %s could not be added (%s); "
            "abort the extra one with `mlops rollout abort`",
            index.name,
            getattr(err, "orig", err),
        )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (CLI, UI) never block the flow writing
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


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
