"""Upgrading the project store as a user does: a store the previous release made, with rows in it, is refused by
the commands until `mlops db upgrade` migrates it, which keeps its rows and gives it the new tables and columns; a
store a newer release migrated is refused, and `mlops db upgrade` does not touch it. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from core.settings import with_installed_driver
from core.store.database import VERSION_TABLE, head
from core.store.predictions import PredictionLog
from core.store.requests import ProjectStore
from core.store.rollouts import RolloutStore
from core.store.schema import close_engine
from tests.cli.test_cli import mlops
from tests.store_history import previous_release_store


def test_a_previous_release_store_is_refused_until_mlops_db_upgrade_keeps_its_rows(
    any_store_url: str, cli_home: Path, tmp_path: Path
) -> None:
    previous_release_store(any_store_url)
    on_it = {"MLOPS_DATABASE_URL": any_store_url}

    refused = mlops("request", "list", "--json", home=cli_home, **on_it)
    assert refused.returncode == 2, refused.stderr
    assert "is at schema revision 0001, this version needs 0003: run `mlops db upgrade`" in refused.stderr
    assert "Traceback" not in refused.stderr
    current = mlops("db", "current", home=cli_home, **on_it)
    assert current.returncode == 2
    assert "revision 0001 (made before migrations" in current.stdout
    assert _version_rows(any_store_url) is None  # refusing wrote nothing

    upgraded = mlops("db", "upgrade", home=cli_home, **on_it)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "from schema revision 0001 (made before migrations) to 0003" in upgraded.stdout
    assert _version_rows(any_store_url) == [head()]
    again = mlops("db", "upgrade", home=cli_home, **on_it)
    assert "already at schema revision 0003: nothing to do" in again.stdout
    assert json.loads(mlops("db", "current", "--json", home=cli_home, **on_it).stdout)["state"] == "current"

    # the rows of the previous release, read by this one
    listed = json.loads(mlops("request", "list", "--json", home=cli_home, **on_it).stdout)
    assert [(r["title"], r["status"], r["semver"], r["overrides"]) for r in listed] == [
        ("Tune C", "succeeded", "1.1.0", {"C": 0.5})
    ]
    store = ProjectStore(any_store_url)
    assert [(e.from_version, e.to_version, e.actor) for e in store.alias_history("m")] == [("1", "2", "ana")]
    rollouts = RolloutStore(any_store_url)
    assert (rollouts.get(1).status, rollouts.get(1).challenger_request_id) == ("aborted", None)
    log = PredictionLog(any_store_url)
    stats = log.variant_stats("m", 1)
    assert stats["challenger"].errors == 1  # the previous release's "fallback" counts as an error
    assert log.lookup(["old-2"]) == ({"old-2"}, {"old-2": "1"})

    # and the new tables and columns work
    request = store.submit("hotfix", "after the upgrade", "")
    assert store.claim(request.id) is not None  # a request_claims row
    new = rollouts.start("m", "canary", "2", "3", 5.0, {}, "after", challenger_request_id=request.id)
    assert rollouts.get(new.id).challenger_request_id == request.id
    journaled = PredictionLog(any_store_url, journal_dir=tmp_path / "journal").start()  # journal_marks
    journaled.record(request_id="new-1", model_name="m", variant="challenger", status="error", served=0,
                     rollout_id=new.id, detail="RuntimeError: boom")  # fmt: skip
    journaled.close()
    assert log.failure_details("m", new.id, "challenger") == {"error": "RuntimeError: boom"}
    close_engine(any_store_url)


def test_a_store_a_newer_release_migrated_is_refused_and_left_alone(any_store_url: str, cli_home: Path) -> None:
    ProjectStore(any_store_url).submit("minor", "made by this release", "")
    close_engine(any_store_url)
    engine = create_engine(with_installed_driver(any_store_url))
    with engine.begin() as conn:  # what a release with a revision 0099 would leave
        conn.execute(text("ALTER TABLE change_requests ADD COLUMN priority INTEGER"))
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()
    on_it = {"MLOPS_DATABASE_URL": any_store_url}

    refusal = (
        "is at schema revision 0099, which this version does not know (it knows up to 0003): upgrade "
        "mlops-orchestrator to a version that knows revision 0099"
    )
    for command in (("request", "list"), ("db", "upgrade")):
        refused = mlops(*command, home=cli_home, **on_it)
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        assert refusal in refused.stderr
        assert "Traceback" not in refused.stderr
    current = mlops("db", "current", home=cli_home, **on_it)
    assert current.returncode == 2
    assert "revision 0099, newer than this version knows (up to 0003)" in current.stdout
    assert _version_rows(any_store_url) == ["0099"]


def test_a_new_home_needs_no_command(cli_home: Path) -> None:
    before = mlops("db", "current", home=cli_home)
    assert before.returncode == 0
    assert "no tables yet: created at revision 0003 on first use" in before.stdout
    assert mlops("request", "submit", "-k", "minor", "-t", "first", home=cli_home).returncode == 0
    after = mlops("db", "current", home=cli_home)
    assert "revision 0003, the one this version needs" in after.stdout


def test_an_unreachable_store_is_named_without_its_password(cli_home: Path) -> None:
    result = mlops("db", "upgrade", "--database-url", "postgresql://ana:s3cret@127.0.0.1:1/mlops", home=cli_home)
    assert result.returncode == 1
    assert "cannot open the project store at postgresql+psycopg2://ana:***@127.0.0.1:1/mlops" in result.stderr
    assert "Check MLOPS_DATABASE_URL" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def _version_rows(url: str) -> list[str] | None:
    engine = create_engine(with_installed_driver(url))
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            return [row[0] for row in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    finally:
        engine.dispose()
