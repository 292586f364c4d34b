"""Change-request intake on the real store: SQLite always, PostgreSQL when MLOPS_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.errors import RequestError
from core.store.requests import AliasEvent, ProjectStore

pytestmark = pytest.mark.postgres


def test_requests_run_in_priority_order_hotfix_major_minor_oldest_first(any_store_url: str) -> None:
    store = ProjectStore(any_store_url)
    minor_old = store.submit("minor", "minor 1", "r")
    major = store.submit("major", "major 1", "r")
    minor_new = store.submit("minor", "minor 2", "r")
    hotfix = store.submit("hotfix", "hotfix 1", "r")

    assert [r.id for r in store.list()] == [hotfix.id, major.id, minor_old.id, minor_new.id]
    claimed = [store.claim().id for _ in range(4)]  # type: ignore[union-attr]
    assert claimed == [hotfix.id, major.id, minor_old.id, minor_new.id]
    assert store.claim() is None
    assert {r.status for r in store.list()} == {"running"}


def test_a_request_is_claimed_once_even_by_concurrent_workers(any_store_url: str) -> None:
    store = ProjectStore(any_store_url)
    for i in range(6):
        store.submit("minor", f"req {i}", "")
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (req := ProjectStore(any_store_url).claim()) is not None:
            with lock:
                claimed.append(req.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(r.id for r in store.list())
    assert len(claimed) == len(set(claimed)) == 6


def test_finish_records_status_reason_and_model(any_store_url: str) -> None:
    store = ProjectStore(any_store_url)
    req = store.submit("hotfix", "fix", "because", {"training.params.C": 0.5})
    store.claim(req.id)
    done = store.finish(req.id, "succeeded", "registered 1.0.1", model_name="m", model_version="3", semver="1.0.1")
    assert (done.status, done.status_reason, done.semver, done.model_version) == (
        "succeeded",
        "registered 1.0.1",
        "1.0.1",
        "3",
    )
    assert done.overrides == {"training.params.C": 0.5}
    assert done.updated_at >= done.created_at
    assert [r.id for r in store.list(status="succeeded")] == [req.id]


def test_claiming_a_request_that_is_not_queued_is_refused(any_store_url: str) -> None:
    store = ProjectStore(any_store_url)
    req = store.submit("minor", "m", "")
    store.claim(req.id)
    with pytest.raises(RequestError, match="is running, not queued"):
        store.claim(req.id)
    with pytest.raises(RequestError, match="does not exist"):
        store.claim(9999)


@pytest.mark.parametrize(
    ("kind", "title", "message"),
    [
        ("urgent", "t", "unknown request kind 'urgent'"),
        ("minor", "  ", "needs a title"),
        ("minor", "x" * 201, "longer"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_stored(
    any_store_url: str, kind: str, title: str, message: str
) -> None:
    store = ProjectStore(any_store_url)
    with pytest.raises(RequestError, match=message):
        store.submit(kind, title, "")
    assert store.list() == []


def test_alias_history_round_trips_in_order(any_store_url: str) -> None:
    store = ProjectStore(any_store_url)
    store.record_alias_event(AliasEvent("m", "champion", None, "1", actor="a", reason="first"))
    store.record_alias_event(AliasEvent("m", "champion", "1", "2", actor="b", reason="promoted"))
    store.record_alias_event(AliasEvent("other", "champion", None, "7", actor="c", reason="x"))
    history = store.alias_history("m")
    assert [(e.from_version, e.to_version, e.reason) for e in history] == [(None, "1", "first"), ("1", "2", "promoted")]
    assert history[0].at.tzinfo is not None


def test_a_store_from_before_the_detail_column_gets_it_by_upgrading(tmp_path: Path) -> None:
    """Stores written by an earlier version lack ``predictions.detail``: `mlops db upgrade` adds the nullable column
    and keeps their rows."""
    from core.store.database import upgrade
    from core.store.predictions import PredictionLog
    from core.store.schema import close_engine
    from tests.store_history import previous_release_store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    previous_release_store(url)  # with a challenger's "fallback" answer in rollout 1
    upgrade(url)
    log = PredictionLog(url)
    assert log.variant_stats("m", 1)["challenger"].errors == 1  # a legacy "fallback" is an error
    log.record(request_id="new", model_name="m", variant="challenger", status="error", served=0, rollout_id=1,
               detail="RuntimeError: boom")  # fmt: skip
    log.flush()
    assert log.failure_details("m", 1, "challenger") == {"error": "RuntimeError: boom"}
    close_engine(url)
