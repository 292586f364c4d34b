"""The prediction log's drainer: a child process of ``mlops serve`` that moves its journal to the store.

Why a process and not the writer thread that tests and in-process gateways use: a thread shares the gateway's GIL.
Draining 500 answers holds it for about 11 ms of Python (decoding the journal rows, SQLAlchemy's parameters), in
slices of the interpreter's 5 ms switch interval, and every time the event loop lets the GIL go (each journal commit
does, two or three times) it waits for the next slice. Under Poisson load the tail of the gateway's answers was the
drain's: 93-99% of the answers slower than the p95 arrived during a drain, and the p95 at 3,800 requests/s was
12.8-13.6 ms with the thread against 2.2 ms with no drain at all (``benchmarks/README.md``, "Capacity"). A process
has its own GIL; the kernel's scheduler, which preempts in favour of a task that wakes up (the event loop on a
socket), shares the core instead.

What it keeps of the journal's guarantees (``core.store.journal``):

* it inherits the journal's lock (the ``flock``'d descriptor), so no other gateway takes the journal for an orphan
  while either process lives, and it drains with the same code and the same store marks (exactly once);
* the gateway's ``flush`` asks it to drain and waits for the answer; at shutdown it is told to stop, drains what is
  left and exits, and the gateway then removes the empty journal as before;
* when the gateway dies (its end of the pipe closes without a stop), it drains what is left, removes the empty
  journal and its mark, and exits: the answers reach the store without waiting for the next gateway to start;
* when it dies, the gateway logs it and starts another: answers stay journaled meanwhile.

It runs at niceness 10 and leaves the deleting of drained entries to the gateway's appends (``Journal.forget_later``):
its own deletes took the journal's write lock, and SQLite's busy handler slept the gateway's event loop.

Protocol, one line each way: the gateway writes ``flush <n>`` or ``stop``; the drainer writes ``status <json>``
(its counters: rows written, rows dropped, store outages, seconds the store has been unreachable, the last journal
entry in the store, its CPU seconds spent draining) after every drain that changed them and ``done <n> <json>``
after a requested one.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from core import faults
from core.store.journal import Journal

if TYPE_CHECKING:
    from core.store.predictions import PredictionLog

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0  # seconds between a drainer's death and the next one
REPLY_TIMEOUT = 60.0  # seconds a flush waits for the drainer's answer
# The drainer yields the core to the gateway: at niceness 10 the kernel gives it about a tenth of a core the gateway
# also wants (weights 110 against 1024), and all of an idle one. Measured at 3,800 requests/s on one core: p95 3.4 ms
# at niceness 10, 6.5-8.2 ms at 0, 12.8-13.6 ms with the writer thread.
NICENESS = 10
QUICK_LOOK = 0.02  # seconds to the next drain after one that wrote something


class Drainer:
    """The gateway's side: the child process, the pipe to it, and the counters it reports into ``owner``."""

    def __init__(self, owner: PredictionLog, journal: Journal) -> None:
        self.owner = owner
        self.journal = journal
        self._proc: subprocess.Popen[bytes] | None = None
        self._cond = threading.Condition()
        self._asked = 0  # the last flush asked for
        self._done = 0  # the last flush answered
        self._generation = 0  # children started so far: a flush waiting on a child that died gives up
        self._stopping = False
        self._base: dict[str, Any] = {}
        self._reader: threading.Thread | None = None

    def start(self) -> Drainer:
        self._spawn()
        self._reader = threading.Thread(target=self._read_loop, name="prediction-log-drainer", daemon=True)
        self._reader.start()
        return self

    def _spawn(self) -> None:
        owner = self.owner
        # What the parent counted before this child (an earlier child's, the recovery's) stays; the child adds to it.
        self._base = {
            "written": owner.written,
            "dropped": owner.dropped,
            "outages": owner.outages,
            "drain_cpu": owner.drain_cpu_seconds,
        }
        fd = self.journal.lock_fd
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.store.drainer",
                "--journal",
                str(self.journal.path),
                "--lock-fd",
                str(fd),
                "--store-url",
                owner.store_url,
                "--interval",
                str(owner.flush_interval),
                "--batch-size",
                str(owner.batch_size),
                *(["--fault-point", owner.fault_point] if owner.fault_point else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(fd,),
        )
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _read_loop(self) -> None:
        while True:
            proc = self._proc
            assert proc is not None and proc.stdout is not None
            for line in proc.stdout:
                kind, _, rest = line.decode().strip().partition(" ")
                if kind == "status":
                    self._take(orjson.loads(rest))
                elif kind == "done":
                    n, _, counters = rest.partition(" ")
                    self._take(orjson.loads(counters))
                    with self._cond:
                        self._done = max(self._done, int(n))
                        self._cond.notify_all()
            code = proc.wait()
            with self._cond:
                if self._stopping:
                    return
            log.error(
                "prediction log: the drainer process exited (code %s); answers stay journaled, starting another in "
                "%.0f s",
                code,
                RESTART_PAUSE,
            )
            time.sleep(RESTART_PAUSE)
            with self._cond:
                if self._stopping:
                    return
                self._spawn()

    def _take(self, counters: dict[str, Any]) -> None:
        owner = self.owner
        owner.written = self._base["written"] + counters["written"]
        owner.dropped = self._base["dropped"] + counters["dropped"]
        owner.outages = self._base["outages"] + counters["outages"]
        owner.drain_cpu_seconds = self._base["drain_cpu"] + counters["drain_cpu"]
        unreachable = counters["unreachable_for"]
        owner.unreachable_since = None if unreachable is None else time.monotonic() - unreachable
        owner.drained_to = max(owner.drained_to, counters["drained_to"])  # a new child starts from 0
        self.journal.forget_later(counters["drained_to"])  # the gateway's appends delete what is in the store

    def _send(self, line: str) -> bool:
        proc = self._proc
        try:
            assert proc is not None and proc.stdin is not None
            proc.stdin.write(f"{line}\n".encode())
            proc.stdin.flush()
            return True
        except (OSError, ValueError):  # the child is gone (its restart is on the way)
            return False

    def flush(self) -> None:
        """Have the drainer write everything journaled so far to the store; returns when it has, or when no drainer
        answered within ``REPLY_TIMEOUT``. A drainer that dies before answering: the one replacing it is asked."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            with self._cond:
                self._asked += 1
                n, generation = self._asked, self._generation
            self._send(f"flush {n}")  # a child already gone is being replaced: the wait sees the next generation
            with self._cond:
                while self._done < n and self._generation == generation and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log.warning("prediction log: the drainer did not answer a flush within %.0f s", REPLY_TIMEOUT)
                        return
                    self._cond.wait(min(remaining, 0.5))
                if self._done >= n or self._stopping:
                    return

    def stop(self, timeout: float = 30.0) -> None:
        """Tell the drainer to drain what is left and exit; wait for it (killed after ``timeout``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        proc = self._proc
        if proc is None:
            return
        self._send("stop")
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error(
                "prediction log: the drainer did not stop within %.0f s; killed (the rest stays journaled)", timeout
            )
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)


# ---- the child ----------------------------------------------------------------------------------------------------
def _counters(writer: PredictionLog) -> dict[str, Any]:
    since = writer.unreachable_since
    return {
        "written": writer.written,
        "dropped": writer.dropped,
        "outages": writer.outages,
        "unreachable_for": None if since is None else time.monotonic() - since,
        "drained_to": writer.drained_to,
        "drain_cpu": round(writer.drain_cpu_seconds, 6),
    }


def _reply(line: str) -> bool:
    """Tell the gateway; False when it is gone (its end of the pipe closed)."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return True
    except (BrokenPipeError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    from core.store.predictions import PredictionLog

    parser = argparse.ArgumentParser(prog="python -m core.store.drainer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--store-url", required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--fault-point")
    args = parser.parse_args(argv)
    from core.logs import configure
    from core.settings import get_settings

    configure(get_settings())  # the gateway's format (text or JSON) and redaction: its environment is inherited
    # A crash point here stands for the gateway dying (the fault suite kills "the gateway" between a store commit
    # and the journal clean-up): the parent dies with it, as both would when a pod is killed.
    faults.ALSO_KILL.append(os.getppid())
    # Its life is the gateway's: it stops when told or when the gateway is gone, after writing what is left. A Ctrl-C
    # or a SIGTERM sent to the whole process group is the gateway's to handle (it then tells this process to stop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICENESS)
    writer = PredictionLog(args.store_url, batch_size=args.batch_size, fault_point=args.fault_point)
    journal = Journal(args.journal, args.lock_fd, appended_elsewhere=True)
    reported = _counters(writer)
    pending = b""
    wait = args.interval
    while True:
        ready, _, _ = select.select([0], [], [], wait)
        asked: list[str] = []
        gone = False
        if ready:
            chunk = os.read(0, 4096)
            gone = not chunk  # the gateway is gone without a stop
            pending += chunk
            *lines, pending = pending.split(b"\n")
            asked = [line.decode().strip() for line in lines if line.strip()]
        try:
            writer._drain(journal)
        except Exception:  # the drainer must outlive a bad moment of the store
            log.exception("draining the journal failed; retrying")
        now = _counters(writer)
        # Found work: look again soon (a backlog is worked off at once, and the backlog gauge reaches 0 when it is);
        # found none: wait the whole interval.
        wait = args.interval if now["drained_to"] == reported["drained_to"] else min(args.interval, QUICK_LOOK)
        for command in asked:
            if command.startswith("flush "):
                gone |= not _reply(f"done {command.split()[1]} {orjson.dumps(now).decode()}")
        if now != reported and not any(c.startswith("flush ") for c in asked):
            gone |= not _reply(f"status {orjson.dumps(now).decode()}")
        reported = now
        if "stop" in asked:
            return 0  # the gateway removes the journal once this process is gone
        if gone:
            break
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the gateway's end is closed: nothing more to tell it)
    journal.appended_elsewhere = False  # nobody appends any more: drained entries are deleted here
    writer._drain(journal)
    writer.forget_journal(journal)  # the gateway died: what it journaled is in the store now, so the journal can go
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
