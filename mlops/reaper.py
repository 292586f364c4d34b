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
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.5
GRACE_SECONDS = 5.0
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
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )


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


def _stop(seen: dict[int, str]) -> None:
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


def main(parent: int) -> None:
    seen: dict[int, str] = {}
    parent_died = False

    def on_parent_death(_signum: int, _frame: object) -> None:
        nonlocal parent_died
        parent_died = True

    signal.signal(signal.SIGTERM, on_parent_death)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command; it will tell us when it is gone
    while not parent_died and os.getppid() == parent:
        seen.update(_descendants(parent))
        time.sleep(POLL_SECONDS)
    _stop(seen)


if __name__ == "__main__":
    main(int(sys.argv[1]))
