"""The project store's migrations against real SQLite and PostgreSQL stores: they build exactly the tables
``core/store/schema.py`` declares, stores made before migrations are recognised by their columns, a stale store is
refused with the command that fixes it (writing nothing), and processes opening a new store together create it
once."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from core.errors import StoreSchemaError
from core.settings import with_installed_driver
from core.store import database
from core.store.requests import ProjectStore
from core.store.schema import close_engine, get_engine, metadata
from tests.store_history import previous_release_store


def _differences(url: str) -> list[object]:
    engine = create_engine(with_installed_driver(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": database.VERSION_TABLE})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _versions(url: str) -> list[str]:
    engine = create_engine(with_installed_driver(url))
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text(f"SELECT version_num FROM {database.VERSION_TABLE}"))]
    finally:
        engine.dispose()


def test_a_new_store_is_created_at_head_with_exactly_the_declared_schema(any_store_url: str) -> None:
    get_engine(any_store_url)
    close_engine(any_store_url)
    assert _versions(any_store_url) == [database.head()]
    assert _differences(any_store_url) == []  # migrations and schema.py agree: tables, columns, types, indexes


def test_the_previous_release_upgraded_has_exactly_the_declared_schema(any_store_url: str) -> None:
    previous_release_store(any_store_url)
    before, after = database.upgrade(any_store_url)
    assert (before.current, before.versioned, after.current, after.versioned) == ("0001", False, database.head(), True)
    assert _differences(any_store_url) == []


def test_a_store_made_by_create_all_before_migrations_is_recorded_as_current_on_open(any_store_url: str) -> None:
    engine = create_engine(with_installed_driver(any_store_url))
    metadata.create_all(engine)  # what every version before migrations did on open
    engine.dispose()
    assert database.status(any_store_url).describe().startswith(f"revision {database.head()} (made before migrations")

    store = ProjectStore(any_store_url)  # opens without a command: its tables are already current
    store.submit("minor", "kept", "")
    close_engine(any_store_url)
    assert _versions(any_store_url) == [database.head()]
    assert [r.title for r in ProjectStore(any_store_url).list()] == ["kept"]
    close_engine(any_store_url)


def test_a_store_between_the_previous_release_and_migrations_is_matched_and_upgraded(any_store_url: str) -> None:
    previous_release_store(any_store_url)
    engine = create_engine(with_installed_driver(any_store_url))
    with engine.begin() as conn:  # what a version between them added on open (issue 8's column, issue 9's table)
        conn.execute(text("ALTER TABLE rollouts ADD COLUMN challenger_request_id INTEGER"))
        conn.execute(
            text("CREATE TABLE journal_marks (journal VARCHAR(64) PRIMARY KEY, last_entry INTEGER NOT NULL, "
                 "at TIMESTAMP WITH TIME ZONE NOT NULL)")
        )  # fmt: skip
        conn.execute(text("INSERT INTO journal_marks VALUES ('j1', 7, '2026-11-29 12:00:00+00')"))
    engine.dispose()

    assert database.status(any_store_url).state == "behind"
    before, after = database.upgrade(any_store_url)
    assert (before.current, after.current) == ("0001", database.head())
    columns = {c["name"] for c in inspect(get_engine(any_store_url)).get_columns("predictions")}
    assert "detail" in columns
    with get_engine(any_store_url).connect() as conn:
        assert conn.execute(text("SELECT journal, last_entry FROM journal_marks")).all() == [("j1", 7)]
    close_engine(any_store_url)


def test_a_stale_store_is_refused_with_the_command_and_nothing_is_written(any_store_url: str) -> None:
    previous_release_store(any_store_url)
    with pytest.raises(StoreSchemaError) as refused:
        ProjectStore(any_store_url)
    assert str(refused.value) == (
        f"the project store at {database.redact(any_store_url)} is at schema revision 0001, this version needs "
        f"{database.head()}: run `mlops db upgrade`"
    )
    assert refused.value.exit_code == 2
    engine = create_engine(with_installed_driver(any_store_url))
    with engine.connect() as conn:
        assert not inspect(conn).has_table(database.VERSION_TABLE)
        assert not inspect(conn).has_table("request_claims")
    engine.dispose()


def _open_store(url: str, start: Any, errors: Any) -> None:
    """One process opening the store (run in a child process)."""
    engine = database.new_engine(url)
    start.wait()
    try:
        database.prepare(engine, url)
    except BaseException as err:
        errors.put(f"{type(err).__name__}: {err}")
    finally:
        engine.dispose()


def test_processes_opening_a_new_store_together_create_it_once(any_store_url: str) -> None:
    """Four processes (gateway replicas, a worker) open a new store at the same moment. Real processes, not threads:
    Alembic keeps its migration context in module globals, which threads of one process would share (threads that
    migrated together once picked up each other's connections here); processes never do."""
    ctx = multiprocessing.get_context("spawn")
    start, errors = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(any_store_url, start, errors)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert _versions(any_store_url) == [database.head()]
    assert _differences(any_store_url) == []


def test_a_store_older_than_the_live_rollout_index_that_breaks_it_is_upgraded_with_a_warning(
    any_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Stores from before the one-live-rollout index could hold two live rollouts of a model: the upgrade keeps
    both, skips the index and says which rollouts to abort."""
    previous_release_store(any_store_url, rows=False)
    engine = create_engine(with_installed_driver(any_store_url))
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX uq_rollouts_one_live_per_model"))
        for challenger in ("2", "3"):
            conn.execute(
                text("INSERT INTO rollouts (model_name, strategy, champion_version, challenger_version, status, "
                     "step_index, weight, started_at, step_started_at, updated_at, reason, steps, policy) VALUES "
                     "('m', 'canary', '1', :c, 'running', 0, 5.0, :at, :at, :at, '', '[]', '{}')"),
                {"c": challenger, "at": "2026-11-29 12:00:00+00:00"},
            )  # fmt: skip
    engine.dispose()

    with caplog.at_level("WARNING", logger="mlops.store"):
        _, after = database.upgrade(any_store_url)
    assert after.current == database.head()
    assert "more than one live rollout of m" in caplog.text
    assert "`mlops rollout abort`" in caplog.text
    with get_engine(any_store_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rollouts WHERE status = 'running'")).scalar() == 2
    close_engine(any_store_url)
