"""The gateway's journal as its drainer process shares it: drained entries are deleted by the appender, a chunk per
commit, so the two never wait on each other for the journal's write lock; and the backlog the gateway reports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from core.store.journal import FORGET_CHUNK, PREDICTION, Journal
from core.store.predictions import PredictionLog


def _rows(n: int) -> list[dict[str, object]]:
    return [{"request_id": f"r{i}", "n": i} for i in range(n)]


def test_a_drainer_beside_the_appender_leaves_the_deleting_to_the_appender(tmp_path: Path) -> None:
    gateway = Journal.create(tmp_path)
    gateway.append(PREDICTION, _rows(FORGET_CHUNK * 2 + 10))
    drainer = Journal(gateway.path, gateway.lock_fd, appended_elsewhere=True)
    assert [i for i, _, _ in drainer.read(0, 3)] == [1, 2, 3]

    drainer.forget(FORGET_CHUNK * 2 + 10)  # everything is in the store: the drainer only checkpoints
    assert drainer.pending() == FORGET_CHUNK * 2 + 10

    gateway.forget_later(FORGET_CHUNK * 2 + 10)  # told by the drainer's status line
    gateway.append(PREDICTION, _rows(1))
    assert drainer.pending() == FORGET_CHUNK + 10 + 1  # one chunk deleted with that append
    gateway.append(PREDICTION, _rows(1))
    gateway.append(PREDICTION, _rows(1))
    remaining = drainer.read(0, 100)
    assert [i for i, _, _ in remaining] == [FORGET_CHUNK * 2 + 11, FORGET_CHUNK * 2 + 12, FORGET_CHUNK * 2 + 13]
    assert gateway.last_id == FORGET_CHUNK * 2 + 13
    drainer._conn.close()
    drainer._drain_conn.close()
    gateway.close(remove_if_empty=False)


def test_the_backlog_counts_what_is_journaled_and_not_yet_in_the_store(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'store.db'}", journal_dir=tmp_path / "journal")
    log._journal = Journal.create(tmp_path / "journal")  # started without its writer thread: nothing drains
    assert log.backlog == 0
    log.record_many(
        [
            {"request_id": f"r{i}", "model_name": "m", "variant": "champion", "status": "ok", "served": 1}
            for i in range(7)
        ]
    )
    log.record_feedback("r1", 1)
    assert log.backlog == 8
    log.flush()
    assert log.backlog == 0
    log.close()
    assert not list((tmp_path / "journal").glob("*.db"))


def test_the_backlog_after_replaying_a_dead_process_journal_counts_only_this_process_rows(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    dead = Journal.create(folder)  # a process that journaled 5 answers and died before draining them
    dead.append(PREDICTION, [_answer(f"dead{i}") for i in range(5)])
    dead.close(remove_if_empty=False)
    log = PredictionLog(f"sqlite:///{tmp_path / 'store.db'}", flush_interval=3600, journal_dir=folder).start()
    assert log.replayed == 5 and log.backlog == 0
    log.record_many([_answer("r1"), _answer("r2")])
    assert log.backlog == 2  # not 2 minus the dead journal's last entry
    log.close()


def _answer(request_id: str) -> dict[str, object]:
    return {"request_id": request_id, "model_name": "m", "variant": "champion", "status": "ok", "served": 1}


def test_a_flush_whose_drainer_died_is_answered_by_the_drainer_replacing_it(tmp_path: Path) -> None:
    """``mlops serve``'s drainer process killed right before a flush: the flush returns once the replacement has
    written the answers, not as soon as it notices the death (a flush means "in the store" to its caller)."""
    import os
    import signal

    from sqlalchemy import func, select

    from core.store.drainer import Drainer
    from core.store.schema import get_engine, predictions

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    log = PredictionLog(store_url, flush_interval=3600, journal_dir=tmp_path / "journal")  # drains when asked only
    log.child_drainer = Drainer
    log.start()
    first = log._drainer._proc
    log.record_many([_answer(f"r{i}") for i in range(20)])
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    log.flush()
    assert log._drainer._proc is not first
    with get_engine(store_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions)).scalar() == 20
    assert log.backlog == 0
    assert log.drain_cpu_seconds > 0  # reported by the drainer process: the capacity planner charges it per answer
    log.close()


def test_the_store_mark_is_read_again_after_a_failed_write(tmp_path: Path) -> None:
    """The drain keeps the journal's mark between drains, but not across a failed write, which may have committed:
    a batch the store already holds is then skipped, not written twice."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    from core.store.predictions import _set_mark
    from core.store.schema import get_engine, predictions

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    log = PredictionLog(store_url, journal_dir=tmp_path / "journal")
    journal = Journal.create(tmp_path / "journal")
    journal.append(PREDICTION, [_journaled(f"r{i}") for i in range(5)])
    assert log._drain(journal)
    assert log._marks[journal.name] == 5
    # The next batch commits, but the connection drops before the drain hears so (the store's answer to COMMIT is
    # lost): the drain sees an outage.
    journal.append(PREDICTION, [_journaled(f"s{i}") for i in range(3)])
    insert = log._insert_entries

    def committed_then_dropped(conn: object, entries: list) -> None:
        with get_engine(store_url).begin() as other:
            insert(other, entries)
            _set_mark(other, journal.name, entries[-1][0])
        err = OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        err.connection_invalidated = True
        raise err

    log._insert_entries = committed_then_dropped  # type: ignore[method-assign]
    assert not log._drain(journal)
    log._insert_entries = insert  # type: ignore[method-assign]
    assert log._drain(journal)  # from the store's mark: the committed batch is not written again
    with get_engine(store_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions)).scalar() == 8
    journal.close(remove_if_empty=False)


def _journaled(request_id: str) -> dict[str, object]:
    """An answer as the gateway journals it (``record_many`` adds the time)."""
    return {**_answer(request_id), "at": datetime.now(UTC)}
