"""Named locks shared by every process on one project store, for the read-decide-write sequences that must not
interleave (registering a model's next version: read the champion, pick the semver, create the version, move the
alias).

PostgreSQL: a session-level advisory lock on a connection of its own, so processes on any host exclude each other,
and the server drops the lock when the holder's connection dies. SQLite (a store on one host): an exclusive
``flock`` on a file beside the database, dropped by the kernel when the holder dies. Either way a killed process
never leaves a lock behind. Re-entrant within a thread: code holding a model's lock may call code that takes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from core.errors import MlopsError

POLL_SECONDS = 0.05
_held: dict[tuple[str, str], tuple[int, int]] = {}  # (store, name) -> (thread, depth) in this process
_held_guard = threading.Lock()
_memory_locks: dict[tuple[str, str], threading.Lock] = {}  # in-memory SQLite: one process, so a thread lock


@contextmanager
def store_lock(engine: Engine, name: str, *, timeout: float = 300.0, holder: str = "") -> Iterator[None]:
    """Hold the lock ``name`` on the store behind ``engine`` for the block; waits up to ``timeout`` seconds, then
    raises :class:`MlopsError` naming the lock (``holder`` says, in the message, what usually holds it)."""
    key = (str(engine.url), name)
    me = threading.get_ident()
    with _held_guard:
        owner, depth = _held.get(key, (0, 0))
        if owner == me:
            _held[key] = (me, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] = (me, _held[key][1] - 1)
        return
    with _acquire(engine, name, timeout, holder):
        with _held_guard:
            _held[key] = (me, 1)
        try:
            yield
        finally:
            with _held_guard:
                del _held[key]


def _acquire(engine: Engine, name: str, timeout: float, holder: str) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        return _advisory(engine, name, timeout, holder)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        return _flock(Path(database), name, timeout, holder)
    return _thread_lock((str(engine.url), name), timeout, holder)


def _deadline_error(name: str, timeout: float, holder: str) -> MlopsError:
    busy = f" ({holder})" if holder else ""
    return MlopsError(
        f"timed out after {timeout:.0f} s waiting for the project store's lock {name!r}: another process holds it"
        f"{busy}. Wait for it to finish and run the command again."
    )


@contextmanager
def _advisory(engine: Engine, name: str, timeout: float, holder: str) -> Iterator[None]:
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        # one key per store (database and schema: stores may share a server), whatever URL spelling reached it
        where = conn.execute(text("SELECT current_database() || '.' || current_schema()")).scalar()
        key = int.from_bytes(hashlib.sha256(f"mlops:{where}:{name}".encode()).digest()[:8], "big", signed=True)
        while not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            conn.rollback()  # do not sit in an open transaction while waiting
            if time.monotonic() > deadline:
                raise _deadline_error(name, timeout, holder)
            time.sleep(POLL_SECONDS)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


@contextmanager
def _flock(database: Path, name: str, timeout: float, holder: str) -> Iterator[None]:
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    fd = os.open(f"{database}.lock-{digest}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _deadline_error(name, timeout, holder) from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _thread_lock(key: tuple[str, str], timeout: float, holder: str) -> Iterator[None]:
    with _held_guard:
        lock = _memory_locks.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise _deadline_error(key[1], timeout, holder)
    try:
        yield
    finally:
        lock.release()
