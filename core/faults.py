"""Chosen crash points for the fault suite (``tests/reliability/``): with ``MLOPS_FAULT_POINT=<name>`` a process
SIGKILLs itself when it reaches that point, so a test can kill it exactly between two steps that must not be torn
apart (a store commit and the journal cleanup after it). Unset in production: one string comparison per point."""

from __future__ import annotations

import os
import signal

JOURNAL_DRAINED = "journal-drained"  # rows committed to the store, not yet removed from the journal
LIFECYCLE_RUN_OPENED = "lifecycle-run-opened"  # a request claimed and its MLflow run started, before training
VERSION_CREATED = "version-created"  # a model version created with its tags, before its alias and request link


def crash_point(active: str | None, point: str) -> None:
    """Die here, as a crash would (no cleanup, no flush), when ``active`` names this point."""
    if active == point:
        os.kill(os.getpid(), signal.SIGKILL)
