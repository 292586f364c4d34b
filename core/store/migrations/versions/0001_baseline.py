"""Baseline: the project store of the last release before migrations.

``core/store/schema.py`` at commit 39e97e0 (the same tables since the first commit, plus the one-live-rollout index
of 6adc512): change requests, alias history, prediction log, feedback, rollouts.

Written out here rather than taken from ``schema.py``, which moves on with later revisions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LIVE = ("running", "paused")


def upgrade() -> None:
    op.create_table(
        "change_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("overrides", sa.JSON, nullable=False),
        sa.Column("submitted_by", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=True),
        sa.Column("model_version", sa.String(20), nullable=True),
        sa.Column("semver", sa.String(32), nullable=True),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_change_requests_status", "change_requests", ["status"])

    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("alias", sa.String(50), nullable=False),
        sa.Column("from_version", sa.String(20), nullable=True),
        sa.Column("to_version", sa.String(20), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_alias_events_model_name", "alias_events", ["model_name"])

    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("variant", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("served", sa.Integer, nullable=False),
        sa.Column("features", sa.JSON, nullable=True),
        sa.Column("prediction", sa.String(200), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("rollout_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_at", "predictions", ["at"])
    op.create_index("ix_predictions_rollout_id", "predictions", ["rollout_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])

    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("champion_version", sa.String(20), nullable=False),
        sa.Column("challenger_version", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
    )
    op.create_index("ix_rollouts_model_name", "rollouts", ["model_name"])
    live = sa.column("status").in_(LIVE)
    op.create_index(
        "uq_rollouts_one_live_per_model",
        "rollouts",
        ["model_name"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )


def downgrade() -> None:
    for table in ("rollouts", "feedback", "predictions", "alias_events", "change_requests"):
        op.drop_table(table)
