"""A project store created before rollouts recorded their challenger's request gains the column on first open, and
its rollouts stay readable (with no request id)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from core.store.rollouts import RolloutStore
from core.store.schema import close_engine, get_engine


def test_an_older_store_gains_the_challenger_request_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = RolloutStore(url)
    old = store.start("m", "canary", "1", "2", 5.0, {}, "before the column existed")
    with get_engine(url).begin() as conn:  # the table as older versions created it
        conn.execute(text("ALTER TABLE rollouts DROP COLUMN challenger_request_id"))
    close_engine(url)

    reopened = RolloutStore(url)
    assert "challenger_request_id" in {c["name"] for c in inspect(reopened.engine).get_columns("rollouts")}
    assert reopened.get(old.id).challenger_request_id is None
    reopened.update(old.id, status="aborted", reason="done")
    new = reopened.start("m", "canary", "2", "3", 5.0, {}, "after", challenger_request_id=7)
    assert reopened.get(new.id).challenger_request_id == 7
    assert [r.id for r in reopened.for_version("m", "2")] == [old.id, new.id]
    close_engine(url)
