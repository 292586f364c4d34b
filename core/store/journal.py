"""The gateway's durable journal: every answer and label is appended here (SQLite, WAL) before the caller gets it,
then drained to the project store in batches.

Why a local journal rather than writing the store on the request path: the store may be PostgreSQL across a
network, and a commit per request there would cost more than the model. A local SQLite commit in WAL mode with
``synchronous=NORMAL`` is durable against a crash of the process (what a SIGKILL or an OOM kill does); it is not
against losing power before a checkpoint, which the store's own replication is for.

Exactly once: each process writes its own journal file (``<home>/journal/<pid>-<random>.db``) and holds an
exclusive ``flock`` on it while alive. The drain writes a batch to the store and, in the same store transaction,
the highest journal entry written (``journal_marks``); entries up to that mark are then deleted from the journal.
After a crash, the next gateway to start finds the journal no live process holds, skips entries up to its mark
(already in the store) and writes the rest: nothing answered is lost, nothing is written twice.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

PREDICTION = "p"
FEEDBACK = "f"
FORGET_CHUNK = 256  # drained entries an append deletes in its commit: a fraction of a millisecond
CHECKPOINT_EVERY = 0.5  # seconds between two checkpoints of the WAL by the drain


class Journal:
    """One process's append-only journal file (or an orphaned one, opened to drain it)."""

    def __init__(self, path: Path, lock_fd: int, *, appended_elsewhere: bool = False) -> None:
        self.path = path
        # Opened by the gateway's drainer process while the gateway appends: the appender deletes what was drained
        # (``forget_later``), so the two never contend for the journal's write lock (see ``forget``).
        self.appended_elsewhere = appended_elsewhere
        self._forget_up_to = 0  # drained entries the next append deletes (up to FORGET_CHUNK of them)
        self._forgotten = 0
        self._checkpointed_at = 0.0  # monotonic time of the drain's last checkpoint
        self.last_id = 0  # the last entry appended (ids run 1, 2, 3... in a journal its own process appends to)
        self.name = path.stem  # the key of this journal's mark in the store
        self._lock_fd = lock_fd
        # Two connections: appends (the request path) never run a checkpoint, whose fsync could stall the event
        # loop on a busy disk; the drain thread reads, forgets and checkpoints on its own connection.
        self._lock = threading.Lock()
        self._conn = self._connect(path)
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._drain_lock = threading.Lock()
        self._drain_conn = self._connect(path)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable against a process crash
        conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
            "row BLOB NOT NULL)"
        )
        return conn

    @classmethod
    def create(cls, folder: Path) -> Journal:
        """A new journal for this process, locked for as long as the process lives."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.db"
        fd = _try_lock(path)
        assert fd is not None  # a new file nobody else knows
        return cls(path, fd)

    @classmethod
    def orphans(cls, folder: Path) -> list[Journal]:
        """Journals whose process is gone (nobody holds their lock), oldest first, locked for draining."""
        found = []
        for path in sorted(folder.glob("*.db"), key=lambda p: p.stat().st_mtime) if folder.exists() else []:
            fd = _try_lock(path)
            if fd is not None:
                found.append(cls(path, fd))
        return found

    @property
    def lock_fd(self) -> int:
        """The descriptor holding this journal's lock (a child given it holds the lock too, until both close it)."""
        return self._lock_fd

    def append(self, kind: str, rows: list[dict[str, Any]]) -> None:
        """Durably record rows (returns after the commit)."""
        blobs = [(kind, orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)) for r in rows]
        with self._lock:
            forgotten = self._forgotten
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT INTO entries (kind, row) VALUES (?, ?)", blobs)
            if self._forget_up_to > forgotten:
                forgotten = min(self._forget_up_to, forgotten + FORGET_CHUNK)
                self._conn.execute("DELETE FROM entries WHERE id <= ?", (forgotten,))
            self._conn.execute("COMMIT")
            self.last_id += len(blobs)  # counted once committed
            self._forgotten = forgotten

    def forget_later(self, up_to: int) -> None:
        """Entries up to ``up_to`` are in the store: the next appends delete them, a chunk each, in their own commit."""
        self._forget_up_to = max(self._forget_up_to, up_to)

    def read(self, after: int, limit: int) -> list[tuple[int, str, dict[str, Any]]]:
        with self._drain_lock:
            found = self._drain_conn.execute(
                "SELECT id, kind, row FROM entries WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            ).fetchall()
        return [(i, kind, _decode(blob)) for i, kind, blob in found]

    def forget(self, up_to: int) -> None:
        """Delete entries already in the store (up to and including ``up_to``); opened ``appended_elsewhere``, only
        checkpoint: the appending process deletes them (``forget_later``). A delete here took the journal's write
        lock while the gateway appended, and SQLite's busy handler slept the gateway's event loop for 1-9 ms, 50-80
        times in 5 s at 2,800 requests/s."""
        with self._drain_lock:
            if not self.appended_elsewhere:
                self._drain_conn.execute("DELETE FROM entries WHERE id <= ?", (up_to,))
            # keeps the WAL file small, off the request path; not after every drained batch (a few hundred
            # microseconds each, most of the cost of a drain of a few rows)
            if time.monotonic() - self._checkpointed_at >= CHECKPOINT_EVERY:
                self._drain_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._checkpointed_at = time.monotonic()

    def pending(self) -> int:
        with self._drain_lock:
            return int(self._drain_conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    def close(self, *, remove_if_empty: bool = True) -> None:
        empty = self.pending() == 0
        with self._lock, self._drain_lock:
            self._conn.close()
            self._drain_conn.close()
        if remove_if_empty and empty:
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        os.close(self._lock_fd)


def _try_lock(path: Path) -> int | None:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _decode(blob: bytes) -> dict[str, Any]:
    row: dict[str, Any] = orjson.loads(blob)
    if isinstance(row.get("at"), str):
        row["at"] = datetime.fromisoformat(row["at"])
    return row
