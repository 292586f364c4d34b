"""The project store's schema: every table the orchestrator keeps (change requests, alias history, the gateway's
prediction log and feedback, rollout state), and the engine that opens it.

SQLAlchemy Core on SQLite by default (``<home>/mlops.db``) and PostgreSQL by URL (``MLOPS_DATABASE_URL``); the same
statements run on both. Nothing is created on import: a new store is created on first open. A change to a table
here is a new revision in ``migrations/versions``, which ``core.store.database`` runs (``mlops db upgrade``). The
queries over these tables live beside them in this package: ``requests`` (change requests, alias history),
``predictions`` (answers and labels) and ``rollouts`` (rollout state).
"""

from __future__ import annotations

from datetime import UTC, datetime

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
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.settings import with_installed_driver
from core.store.database import cannot_open, new_engine, prepare

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
    # ok | error (an exception or an invalid answer) | timeout (past the rollout's deadline) | shadow | shadow_error |
    # shadow_timeout; "fallback" in stores written before timeouts were told apart from errors
    Column("status", String(16), nullable=False),
    Column("served", Integer, nullable=False),  # 1 when this answer was returned to the caller
    Column("features", JSON, nullable=True),
    Column("prediction", String(200), nullable=True),  # JSON-encoded scalar, comparable with feedback.label
    Column("latency_ms", Float, nullable=True),
    Column("rollout_id", Integer, nullable=True, index=True),
    # why an answer failed: "RuntimeError: ..." or "deadline 250 ms, elapsed 263.1 ms, load 1.52"
    Column("detail", String(300), nullable=True),
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

# Who claimed a running change request: host, pid and the pid's start time (so a reused pid is not mistaken for
# the claimant). A request whose claimant is gone is marked ``crashed`` by the next command on that host.
request_claims = Table(
    "request_claims",
    metadata,
    Column("request_id", Integer, primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_started", String(32), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    # renewed while the claimant runs (ProjectStore.hold_claim): a claim from another host whose heartbeat is older
    # than the lease is a dead claimant's (its pid cannot be checked from here)
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
)

# How far each gateway journal has been drained into this store, written in the same transaction as the rows
# (core/store/journal.py): a journal replayed after a crash skips what is already here.
journal_marks = Table(
    "journal_marks",
    metadata,
    Column("journal", String(64), primary_key=True),
    Column("last_entry", Integer, nullable=False),
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
    Column("challenger_request_id", Integer, nullable=True),  # the change request that produced the challenger
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


_engines: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine per URL per process, on a store at the schema revision this code needs: a new store is created,
    a store at another revision is refused with the command that fixes it (``core.store.database.prepare``)."""
    url = with_installed_driver(url)
    engine = _engines.get(url)
    if engine is None:
        engine = new_engine(url)
        try:
            prepare(engine, url)
        except SQLAlchemyError as err:
            engine.dispose()
            raise cannot_open(url, err) from None
        except BaseException:
            engine.dispose()
            raise
        _engines[url] = engine
    return engine


def close_engine(url: str) -> None:
    """Dispose of the cached engine for ``url`` (tests dropping a schema, long-lived processes switching stores)."""
    engine = _engines.pop(with_installed_driver(url), None)
    if engine is not None:
        engine.dispose()
