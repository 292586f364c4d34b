"""A heartbeat on request claims, so a claim whose process died on another host is found (issue 9).

``request_claims.heartbeat_at`` is renewed by the process running the request; claims made before this revision
have none and are judged as before (by their pid, on the host that made them).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("request_claims", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("request_claims", "heartbeat_at")
