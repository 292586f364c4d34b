"""Who runs a change request, seen from any host, and the lock that keeps two registrations of a model apart, on
real SQLite and PostgreSQL stores: a claim from another host is judged by its heartbeat (a running claimant renews
it, a dead one's lapses), a store of the last release upgrades with its running claims kept, and the lock excludes
other threads and processes and is freed when its holder is killed."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text, update

from core.errors import MlopsError
from core.settings import with_installed_driver
from core.store import database
from core.store.locks import store_lock
from core.store.requests import ProjectStore
from core.store.schema import close_engine, get_engine, request_claims, utcnow
from tests.conftest import REPO


def _claimed_elsewhere(store: ProjectStore, request_id: int, silent_for: timedelta | None) -> None:
    """What a worker on another host leaves: its claim, with its last heartbeat ``silent_for`` ago (None: a claim
    made by a release without heartbeats)."""
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            update(request_claims)
            .where(request_claims.c.request_id == request_id)
            .values(host="worker-7.other-host", pid=4242, heartbeat_at=None if silent_for is None else now - silent_for)
        )  # fmt: skip


def test_a_claim_from_another_host_is_crashed_only_once_its_heartbeat_lapses(any_store_url: str) -> None:
    store = ProjectStore(any_store_url, claim_lease_seconds=120)
    dead, alive, old = (store.submit("minor", title, "") for title in ("dead", "alive", "old"))
    for request, silence in ((dead, timedelta(minutes=10)), (alive, timedelta(seconds=20)), (old, None)):
        assert store.claim(request.id) is not None
        _claimed_elsewhere(store, request.id, silence)

    crashed = store.recover_crashed()

    assert [r.id for r in crashed] == [dead.id]
    reason = store.get(dead.id).status_reason
    assert "pid 4242 on worker-7.other-host" in reason
    assert "has not renewed its claim for 600 s (lease 120 s)" in reason
    assert f"`mlops request retry {dead.id}`" in reason
    assert store.get(alive.id).status == "running"  # renewed 20 s ago: its worker is alive
    assert store.get(old.id).status == "running"  # no heartbeat to judge by from here: left alone, as before
    close_engine(any_store_url)


def test_the_claimant_renews_its_heartbeat_while_it_runs_and_stops_when_done(any_store_url: str) -> None:
    store = ProjectStore(any_store_url, claim_lease_seconds=0.4)  # a beat every 0.1 s
    request = store.submit("minor", "long training", "")
    store.claim(request.id)

    def heartbeat() -> object:
        with store.engine.connect() as conn:
            return conn.execute(select(request_claims.c.heartbeat_at)).scalar_one()

    first = heartbeat()
    with store.hold_claim(request.id):
        deadline = time.monotonic() + 20
        while heartbeat() == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heartbeat() != first, "the claim was not renewed within 20 s"
        assert store.recover_crashed() == []
    store.finish(request.id, "succeeded", "done")
    assert store.renew_claim(request.id) is False  # finished: nothing of this process's to renew
    close_engine(any_store_url)


def test_a_store_at_the_last_release_revision_upgrades_with_its_running_claim(any_store_url: str) -> None:
    engine = create_engine(with_installed_driver(any_store_url))
    with engine.begin() as conn:
        database._alembic(conn, "upgrade", "0002")  # what the last release made
    engine.dispose()
    assert database.status(any_store_url).describe() == "revision 0002, this version needs 0003: run `mlops db upgrade`"
    engine, an_hour_ago = database.new_engine(any_store_url), utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO change_requests (kind, title, reason, overrides, submitted_by, status, "
                          "status_reason, created_at, updated_at) VALUES ('minor', 'mid-run', '', '{}', 'ana', "
                          "'running', '', :at, :at)"), {"at": utcnow()})  # fmt: skip
        conn.execute(text("INSERT INTO request_claims (request_id, host, pid, pid_started, claimed_at) VALUES "
                          "(1, 'worker-7.other-host', 4242, '1', :at)"), {"at": an_hour_ago})  # fmt: skip
    engine.dispose()

    before, after = database.upgrade(any_store_url)
    assert (before.current, after.current) == ("0002", "0003")
    store = ProjectStore(any_store_url)
    assert store.recover_crashed() == []  # its claim has no heartbeat yet: judged as the last release did
    assert store.get(1).status == "running"
    with get_engine(any_store_url).connect() as conn:
        assert conn.execute(select(request_claims.c.host, request_claims.c.heartbeat_at)).all() == [
            ("worker-7.other-host", None)
        ]
    close_engine(any_store_url)


def test_the_store_lock_excludes_another_holder_and_names_itself_when_it_times_out(any_store_url: str) -> None:
    engine = get_engine(any_store_url)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with store_lock(engine, "registry:demo"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(30)
    with (
        pytest.raises(MlopsError) as waited,
        store_lock(engine, "registry:demo", timeout=0.3, holder="registering or promoting demo"),
    ):
        pass
    assert "waiting for the project store's lock 'registry:demo'" in str(waited.value)
    assert "(registering or promoting demo)" in str(waited.value)
    with (
        store_lock(engine, "registry:other", timeout=5),  # another model's lock is free
        store_lock(engine, "registry:other", timeout=5),  # and re-entrant in its thread
    ):
        pass
    release.set()
    thread.join()
    with store_lock(engine, "registry:demo", timeout=30):
        pass
    close_engine(any_store_url)


def test_the_store_lock_of_a_killed_process_is_free_at_once(any_store_url: str) -> None:
    code = (
        "import sys, time\n"
        "from core.store.locks import store_lock\n"
        "from core.store.schema import get_engine\n"
        "with store_lock(get_engine(sys.argv[1]), 'registry:demo'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, any_store_url], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(MlopsError), store_lock(get_engine(any_store_url), "registry:demo", timeout=0.3):
            pass
        child.kill()
        child.wait(30)
        with store_lock(get_engine(any_store_url), "registry:demo", timeout=30):
            pass
    finally:
        child.kill()
        child.wait(30)
    close_engine(any_store_url)
