"""Request claims, journal marks, a rollout's change request, why an answer failed.

``request_claims`` (who runs a change request, issue 9), ``journal_marks`` (how far each gateway journal is
drained, issue 9), ``rollouts.challenger_request_id`` (issue 8) and ``predictions.detail`` (issue 12).

Stores written between the baseline and this revision (before migrations, by versions that added these on first
open) may hold some of them already: each is added only when missing, so such a store is stamped ``0001`` and
upgraded like any other. The same goes for the one-live-rollout index on stores older than the baseline.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("mlops.store")
LIVE = ("running", "paused")
ONE_LIVE = "uq_rollouts_one_live_per_model"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "request_claims" not in tables:
        op.create_table(
            "request_claims",
            sa.Column("request_id", sa.Integer, primary_key=True),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("pid_started", sa.String(32), nullable=False),
            sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        )
    if "journal_marks" not in tables:
        op.create_table(
            "journal_marks",
            sa.Column("journal", sa.String(64), primary_key=True),
            sa.Column("last_entry", sa.Integer, nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        )
    if "challenger_request_id" not in {c["name"] for c in inspector.get_columns("rollouts")}:
        op.add_column("rollouts", sa.Column("challenger_request_id", sa.Integer, nullable=True))
    if "detail" not in {c["name"] for c in inspector.get_columns("predictions")}:
        op.add_column("predictions", sa.Column("detail", sa.String(300), nullable=True))
    if ONE_LIVE not in {i["name"] for i in inspector.get_indexes("rollouts")}:
        _add_one_live_index()


def _add_one_live_index() -> None:
    rollouts = sa.table("rollouts", sa.column("model_name"), sa.column("status"))
    twice = op.get_bind().execute(
        sa.select(rollouts.c.model_name)
        .where(rollouts.c.status.in_(LIVE))
        .group_by(rollouts.c.model_name)
        .having(sa.func.count() > 1)
    )
    models = [row[0] for row in twice]
    if models:  # the data already breaks it: upgrade the rest, say what to do
        log.warning(
            "the project store holds more than one live rollout of %s, so index %s was not added: abort the extra "
            "ones with `mlops rollout abort` (until the index exists, two rollout starts racing could both win)",
            ", ".join(models),
            ONE_LIVE,
        )
        return
    live = sa.column("status").in_(LIVE)
    op.create_index(ONE_LIVE, "rollouts", ["model_name"], unique=True, sqlite_where=live, postgresql_where=live)


def downgrade() -> None:
    op.drop_column("predictions", "detail")
    op.drop_column("rollouts", "challenger_request_id")
    op.drop_table("journal_marks")
    op.drop_table("request_claims")
