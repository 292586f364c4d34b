"""Opening the project store's database: the engine, the schema revision the store is at, and the Alembic
migrations (``core/store/migrations``) that move it to the one this code needs.

The revision is recorded in the store's ``mlops_schema_version`` table (not ``alembic_version``, which MLflow and
Prefect keep for their own schemas: a store sharing their database is not mistaken for theirs). On open
(``prepare``, called once per engine by ``core.store.schema.get_engine``):

* an empty store (none of the orchestrator's tables) is created at the newest revision, so a new home needs no
  command;
* a store made before migrations existed (tables, no version table) whose tables already hold the newest schema is
  stamped with it; one with older tables is matched to the newest revision whose tables and columns it holds;
* a store behind this code is refused with :class:`StoreSchemaError` naming ``mlops db upgrade``; one ahead of it
  (a newer release migrated it) is refused naming the upgrade of the package. Nothing is written in either case.

Creating, stamping and upgrading run in one transaction that holds the store's migration lock (``BEGIN
IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL): processes starting together on a new store create it once,
and an interrupted upgrade leaves the store at its old revision.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from core.errors import MlopsError, StoreSchemaError
from core.settings import with_installed_driver

VERSION_TABLE = "mlops_schema_version"
MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK_KEY = 0x6D6C6F7073  # "mlops": the advisory lock migrations take on PostgreSQL

log = logging.getLogger("mlops.store")


def json_text(value: Any) -> str:
    """The text the store's JSON columns hold: orjson, not the standard library's ``json.dumps``.

    The prediction log writes a JSON column per answer (its features) from a thread of the gateway, with the GIL
    held; encoding 30 features took ``json.dumps`` about 16 µs a row, half of the writer's time (20 ms of CPU per 500
    rows, 11 ms with orjson: ``benchmarks/README.md``, "Capacity"). orjson also writes NaN as ``null``, which
    PostgreSQL's JSON accepts and ``json.dumps``'s ``NaN`` is not."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def new_engine(url: str) -> Engine:
    """An engine on the store at ``url`` (no schema check: ``core.store.schema.get_engine`` is the checked one)."""
    url = with_installed_driver(url)
    kwargs: dict[str, Any] = {"future": True, "json_serializer": json_text}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # WAL: readers (CLI, UI) never block the flow writing. Switching a new file to WAL needs its exclusive lock, and
    # SQLite answers "database is locked" at once, without the busy timeout, while another process holds a lock
    # (processes opening a new store together hit it: tests/unit/test_migrations.py): retry for as long.
    deadline = time.monotonic() + 30.0
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    cur.close()


def redact(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def cannot_open(url: str, err: SQLAlchemyError) -> MlopsError:
    """The error for a store that cannot be reached or read, naming the setting to check."""
    cause = " ".join(str(getattr(err, "orig", None) or err).split())  # the driver's lines, as one
    end = "" if cause.endswith((".", "?", "!")) else "."
    return MlopsError(
        f"cannot open the project store at {redact(url)}: {cause}{end} "
        "Check MLOPS_DATABASE_URL (or MLOPS_HOME for the default SQLite file)."
    )


# ---- revisions ------------------------------------------------------------------------------------------------
@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(None))


def _config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def revisions() -> list[str]:
    """Every revision this code knows, oldest first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


def head() -> str:
    """The revision this code needs."""
    return revisions()[-1]


@functools.cache
def tables_at(revision: str) -> dict[str, frozenset[str]]:
    """The tables and their columns at ``revision`` (built once in an in-memory SQLite database)."""
    scratch = create_engine("sqlite://", poolclass=NullPool)
    try:
        with scratch.begin() as conn:
            _alembic(conn, "upgrade", revision)
            return _tables(conn)
    finally:
        scratch.dispose()


def _tables(conn: Connection) -> dict[str, frozenset[str]]:
    found = inspect(conn)
    return {
        name: frozenset(c["name"] for c in found.get_columns(name))
        for name in found.get_table_names()
        if name != VERSION_TABLE
    }


def _alembic(conn: Connection, action: str, revision: str) -> None:
    getattr(command, action)(_config(conn), revision)


@dataclass(frozen=True)
class StoreRevision:
    """Where a store stands. ``current`` is the revision recorded in it or, for a store made before migrations
    (``versioned`` false), the newest revision whose tables and columns it holds; None for an empty store or one
    that matches no revision."""

    url: str
    current: str | None
    head: str
    versioned: bool
    has_tables: bool
    known: tuple[str, ...]

    @property
    def state(self) -> str:
        """empty | current | behind | ahead | unrecognised"""
        if not self.has_tables and not self.versioned:
            return "empty"
        if self.current is None:
            return "unrecognised"
        if self.current == self.head:
            return "current"
        return "behind" if self.current in self.known else "ahead"

    def describe(self) -> str:
        """One line: the revision and what it means for this code."""
        made_before = "" if self.versioned else " (made before migrations: no version recorded yet)"
        return {
            "empty": f"no tables yet: created at revision {self.head} on first use",
            "current": f"revision {self.current}{made_before}, the one this version needs",
            "behind": f"revision {self.current}{made_before}, this version needs {self.head}: run `mlops db upgrade`",
            "ahead": f"revision {self.current}, newer than this version knows (up to {self.head})",
            "unrecognised": "tables of the orchestrator matching no schema revision this version knows",
        }[self.state]

    def refusal(self) -> StoreSchemaError | None:
        """The error that keeps this code off the store, or None when it may run on it."""
        state = self.state
        where = f"the project store at {self.url}"
        if state == "behind":
            return StoreSchemaError(
                f"{where} is at schema revision {self.current}, this version needs {self.head}: run `mlops db upgrade`",
                current=self.current,
                needed=self.head,
            )
        if state == "ahead":
            return StoreSchemaError(
                f"{where} is at schema revision {self.current}, which this version does not know (it knows up to "
                f"{self.head}): upgrade mlops-orchestrator to a version that knows revision {self.current}",
                current=self.current,
                needed=self.head,
            )
        if state == "unrecognised":
            return StoreSchemaError(
                f"{where} holds some of the orchestrator's tables but not the tables and columns of any schema "
                f"revision this version knows ({', '.join(self.known)}): point MLOPS_DATABASE_URL (or MLOPS_HOME) "
                "at the store you meant, or at an empty database for a new one",
                current=None,
                needed=self.head,
            )
        return None


def _revision(conn: Connection, url: str) -> StoreRevision:
    known = tuple(revisions())
    found = inspect(conn)
    versioned = found.has_table(VERSION_TABLE)
    current: str | None = None
    if versioned:
        heads = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads()
        current = heads[0] if heads else None
        versioned = bool(heads)
    has_tables = versioned
    if not versioned:  # empty, or made before migrations: what do its tables hold?
        present = _tables(conn)
        has_tables = bool(set(tables_at(known[-1])) & set(present))
        current = _matching_revision(present, known) if has_tables else None
    return StoreRevision(redact(url), current, known[-1], versioned, has_tables, known)


def _matching_revision(present: dict[str, frozenset[str]], known: tuple[str, ...]) -> str | None:
    """The newest revision whose every table and column the store holds."""
    for revision in reversed(known):
        wanted = tables_at(revision)
        if all(name in present and columns <= present[name] for name, columns in wanted.items()):
            return revision
    return None


# ---- opening, upgrading -----------------------------------------------------------------------------------------
def prepare(engine: Engine, url: str) -> None:
    """Make a new store, record the revision of a current store made before migrations, refuse any other."""
    with engine.connect() as conn:
        where = _revision(conn, url)
    if where.state == "empty" or (where.state == "current" and not where.versioned):
        with _migration_transaction(engine) as conn:
            where = _revision(conn, url)  # again, under the lock: another process may have done it
            if where.state == "empty":
                _alembic(conn, "upgrade", "head")
                log.info("created the project store at %s (schema revision %s)", where.url, where.head)
            elif where.state == "current" and not where.versioned:
                _alembic(conn, "stamp", where.head)
                log.info("recorded schema revision %s in the project store at %s", where.head, where.url)
        with engine.connect() as conn:
            where = _revision(conn, url)
    refusal = where.refusal()
    if refusal is not None:
        raise refusal


def status(url: str) -> StoreRevision:
    """Where the store at ``url`` stands (nothing is created or written)."""
    url = with_installed_driver(url)
    known = tuple(revisions())
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return StoreRevision(redact(url), None, known[-1], False, False, known)
    engine = new_engine(url)
    try:
        with engine.connect() as conn:
            return _revision(conn, url)
    except SQLAlchemyError as err:
        raise cannot_open(url, err) from None
    finally:
        engine.dispose()


def upgrade(url: str) -> tuple[StoreRevision, StoreRevision]:
    """Move the store at ``url`` to the newest revision in one transaction; where it stood before, and after."""
    url = with_installed_driver(url)
    engine = new_engine(url)
    try:
        with _migration_transaction(engine) as conn:
            before = _revision(conn, url)
            if before.state in ("ahead", "unrecognised"):
                refusal = before.refusal()
                assert refusal is not None
                raise refusal
            if before.state != "empty" and not before.versioned:
                assert before.current is not None
                _alembic(conn, "stamp", before.current)  # what the tables hold, then the rest of the way
            _alembic(conn, "upgrade", "head")
        with engine.connect() as conn:
            after = _revision(conn, url)
        log.info("upgraded the project store at %s from %s to %s", after.url, before.current, after.current)
        return before, after
    except SQLAlchemyError as err:  # nothing committed: the transaction rolled back
        raise cannot_open(url, err) from None
    finally:
        engine.dispose()


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the store's migration lock, committed at the end of the block."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield conn
        return
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        with engine.begin() as conn:
            yield conn
        return
    # pysqlite runs DDL outside any transaction unless told otherwise: a connection of its own that begins
    # IMMEDIATE (the write lock, waited for up to 30 s) so the whole migration commits or rolls back as one.
    serial = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 30, "isolation_level": None})
    event.listen(serial, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with serial.begin() as conn:
            yield conn
    finally:
        serial.dispose()
