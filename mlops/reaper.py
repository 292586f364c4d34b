"""Processes a command starts die with it, even when the command is SIGKILLed.

Prefect starts its temporary API server as a plain subprocess of whoever first needs it (``mlops run``, the demo);
when that command was killed the server kept running, orphaned, at a quarter of a core. A command that may start
such processes calls ``watch_descendants()``: it starts a small watcher process that the kernel signals when the
command dies (``PR_SET_PDEATHSIG``, Linux), which then stops every descendant of the command it has seen (each
checked by its start time, so a reused pid is never hit): SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.5
GRACE_SECONDS = 5.0
READY_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1
_watcher: subprocess.Popen[bytes] | None = None


def watch_descendants() -> None:
    """Start the watcher for this process (once; a no-op where ``/proc`` or ``prctl`` are missing)."""
    global _watcher
    if _watcher is not None or not Path("/proc/self/stat").exists():
        return
    _watcher = subprocess.Popen(
        [sys.executable, "-m", "mlops.reaper", str(os.getpid())],
        preexec_fn=_die_with_parent,  # prctl must run in the child before it execs
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
    )
    # Wait until the watcher runs (a Python start can take seconds on a busy host): a command killed before that
    # would leave the servers it started next unwatched. Bounded, so a broken watcher never blocks the command.
    assert _watcher.stdout is not None
    ready, _, _ = select.select([_watcher.stdout], [], [], READY_TIMEOUT)
    if ready:
        _watcher.stdout.readline()
    _watcher.stdout.close()


def watch_group(pgid: int) -> None:
    """Tell the watcher about a process group this command started (a server started in a session of its own):
    when the command dies the whole group is stopped, children it started a moment ago included, whether or not
    the watcher's scan had seen them yet. A no-op without a watcher."""
    if _watcher is None or _watcher.stdin is None or _watcher.poll() is not None:
        return
    try:
        _watcher.stdin.write(f"{pgid}\n".encode())
        _watcher.stdin.flush()
    except OSError:
        pass


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _started(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every living descendant of ``root`` (this watcher excluded)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid == os.getpid():
            continue
        started = _started(pid)
        if started is not None:
            found[pid] = started
            stack.extend(children.get(pid, []))
    return found


def _stop(seen: dict[int, str], groups: set[int] | None = None) -> None:
    for pgid in groups or ():  # the command's servers, each in a session of its own, with everything they started
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    seen = {**seen, **{pid: started for pgid in groups or () for pid, started in _group(pgid).items()}}
    alive = {pid for pid, started in seen.items() if _started(pid) == started}
    for pid in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + GRACE_SECONDS
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid for pid in alive if _started(pid) == seen[pid]}
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _group(pgid: int) -> dict[int, str]:
    """pid -> start time of every living process in process group ``pgid``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 19 and fields[2] == str(pgid):
            found[int(entry.name)] = fields[19]
    return found


def main(parent: int) -> None:
    seen: dict[int, str] = {}
    groups: set[int] = set()
    parent_died = False

    def on_parent_death(_signum: int, _frame: object) -> None:
        nonlocal parent_died
        parent_died = True

    signal.signal(signal.SIGTERM, on_parent_death)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command; it will tell us when it is gone
    try:
        sys.stdout.write("ready\n")  # the command waits for this before it starts anything
        sys.stdout.flush()
        sys.stdout.close()
    except OSError:
        pass
    orders: int | None = sys.stdin.fileno()  # process groups the command started, one number per line
    while not parent_died and os.getppid() == parent:
        seen.update(_descendants(parent))
        if orders is None:
            time.sleep(POLL_SECONDS)
            continue
        readable, _, _ = select.select([orders], [], [], POLL_SECONDS)
        if readable:
            data = os.read(orders, 4096)
            if not data:  # the command closed its end: it is gone, or it has nothing more to say
                orders = None
            groups.update(int(word) for word in data.split() if word.isdigit())
    _stop(seen, groups)


if __name__ == "__main__":
    main(int(sys.argv[1]))
