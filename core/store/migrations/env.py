"""Alembic's environment for the project store: runs on the connection ``core.store.database`` hands it (already
in a transaction that holds the store's migration lock), recording the revision in ``mlops_schema_version``."""

from __future__ import annotations

from alembic import context

from core.store.database import VERSION_TABLE
from core.store.schema import metadata

if context.is_offline_mode():
    raise SystemExit("the project store's migrations run online only: use `mlops db upgrade`")

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
