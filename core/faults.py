"""Chosen crash points for the fault suite (``tests/reliability/``): with ``MLOPS_FAULT_POINT=<name>`` a process
SIGKILLs itself when it reaches that point, so a test can kill it exactly between two steps that must not be torn
apart (a store commit and the journal cleanup after it). Unset in production: one string comparison per point."""

from __future__ import annotations

import os
import signal

ALSO_KILL: list[int] = []  # processes that die with this one at a crash point (the gateway, for its drainer)

JOURNAL_DRAINED = "journal-drained"  # answers and labels committed to the store, not yet removed from the journal
LIFECYCLE_RUN_OPENED = "lifecycle-run-opened"  # a request claimed and its MLflow run started, before training
VERSION_CREATED = "version-created"  # a model version created with its tags, before its alias and request link


def crash_point(active: str | None, point: str) -> None:
    """Die here, as a crash would (no cleanup, no flush), when ``active`` names this point."""
    if active == point:
        for pid in ALSO_KILL:
            os.kill(pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
