"""The project store as the last release before migrations made it: ``core/store/schema.py`` at commit 39e97e0,
frozen here (its tables made by ``create_all``, no version table), with a few rows of each kind in it. This is what
users of that release have on disk; the migrations must take it to the current schema with its rows."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, create_engine

from core.settings import with_installed_driver

PREVIOUS_RELEASE_COMMIT = "39e97e0"
AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

previous = MetaData()
change_requests = Table(
    "change_requests",
    previous,
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
    previous,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(100), nullable=False, index=True),
    Column("alias", String(50), nullable=False),
    Column("from_version", String(20), nullable=True),
    Column("to_version", String(20), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
predictions = Table(
    "predictions",
    previous,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_name", String(100), nullable=False),
    Column("variant", String(16), nullable=False),
    Column("model_version", String(20), nullable=True),
    Column("status", String(16), nullable=False),
    Column("served", Integer, nullable=False),
    Column("features", JSON, nullable=True),
    Column("prediction", String(200), nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("rollout_id", Integer, nullable=True, index=True),
)
feedback = Table(
    "feedback",
    previous,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("label", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
rollouts = Table(
    "rollouts",
    previous,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(100), nullable=False, index=True),
    Column("strategy", String(16), nullable=False),
    Column("champion_version", String(20), nullable=False),
    Column("challenger_version", String(20), nullable=False),
    Column("status", String(16), nullable=False),
    Column("step_index", Integer, nullable=False, default=0),
    Column("weight", Float, nullable=False, default=0.0),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("step_started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("steps", JSON, nullable=False, default=list),
    Column("policy", JSON, nullable=False, default=dict),
)
Index(
    "uq_rollouts_one_live_per_model",
    rollouts.c.model_name,
    unique=True,
    sqlite_where=rollouts.c.status.in_(("running", "paused")),
    postgresql_where=rollouts.c.status.in_(("running", "paused")),
)


def previous_release_store(url: str, *, rows: bool = True) -> None:
    """Make the store at ``url`` as the previous release did, with (by default) one row of each kind: a succeeded
    change request, an alias move, an aborted canary rollout (id 1), a legacy ``fallback`` answer of its challenger
    and a served champion answer with its label."""
    engine = create_engine(with_installed_driver(url))
    try:
        previous.create_all(engine)
        if not rows:
            return
        with engine.begin() as conn:
            conn.execute(
                change_requests.insert(),
                {"kind": "minor", "title": "Tune C", "reason": "before migrations", "overrides": {"C": 0.5},
                 "status": "succeeded", "created_at": AT, "updated_at": AT, "model_name": "m", "model_version": "2",
                 "semver": "1.1.0"},
            )  # fmt: skip
            conn.execute(
                alias_events.insert(),
                {"model_name": "m", "alias": "champion", "from_version": "1", "to_version": "2", "actor": "ana",
                 "reason": "promoted", "at": AT},
            )  # fmt: skip
            conn.execute(
                rollouts.insert(),
                {"model_name": "m", "strategy": "canary", "champion_version": "1", "challenger_version": "2",
                 "status": "aborted", "started_at": AT, "step_started_at": AT, "updated_at": AT,
                 "reason": "before migrations"},
            )  # fmt: skip
            conn.execute(
                predictions.insert(),
                {"request_id": "old-1", "at": AT, "model_name": "m", "variant": "challenger", "model_version": "2",
                 "status": "fallback", "served": 0, "rollout_id": 1},
            )  # fmt: skip
            conn.execute(
                predictions.insert(),
                {"request_id": "old-2", "at": AT, "model_name": "m", "variant": "champion", "model_version": "1",
                 "status": "ok", "served": 1, "features": {"x": 1.0}, "prediction": "1", "latency_ms": 3.5},
            )  # fmt: skip
            conn.execute(feedback.insert(), {"request_id": "old-2", "label": "1", "at": AT})
    finally:
        engine.dispose()
