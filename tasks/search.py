"""Prefect task for a round's search trials (it runs on a Dask worker); the work is ``training.search``.

A round of ``parallelism`` trials runs as a few Prefect tasks (by default one per worker), not one task per trial:
each Prefect task on Dask costs about 0.6 s of orchestration whatever it does (benchmarks/README.md). The tasks
take the round's trials one at a time from a queue the flow fills (``RoundQueue``), each the next trial as soon as
it has finished one, so a task that drew short trials takes more of them and no worker idles while another still
has several to run; this holds for workers of unequal speed too. Each trial keeps its own result, error and MLflow
child run.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from core.config import ProjectConfig
from training.search import Proposal, TrialResult, evaluate_trials

TAKE_TIMEOUT = 0.05  # seconds a task waits on an empty Dask queue before it knows the round has no trial left

_LOCAL_QUEUES: dict[str, queue.SimpleQueue[int]] = {}  # rounds whose tasks run in this process (no Dask)


class RoundQueue(BaseModel):
    """The trial numbers of one round, in the order its tasks take them. On Dask it is a ``distributed.Queue`` on
    the scheduler, which every worker reaches (a local cluster's or the one at ``MLOPS_DASK_ADDRESS``); under a
    task runner that runs tasks in the flow's own process it is a queue in that process."""

    name: str
    on_dask: bool

    @classmethod
    @contextmanager
    def opened(cls, name: str, numbers: list[int], dask_client: Any | None) -> Iterator[RoundQueue]:
        """The queue, filled with ``numbers``, for the round; released from the scheduler (or this process) after."""
        if dask_client is None:
            local: queue.SimpleQueue[int] = queue.SimpleQueue()
            for number in numbers:
                local.put(number)
            _LOCAL_QUEUES[name] = local
            try:
                yield cls(name=name, on_dask=False)
            finally:
                del _LOCAL_QUEUES[name]
            return
        from distributed import Queue

        shared = Queue(name, client=dask_client)
        for number in numbers:
            shared.put(number)
        try:
            yield cls(name=name, on_dask=True)
        finally:
            shared.close()

    def take(self) -> Iterator[int]:
        """The round's trials for this task, one at a time, until none is left."""
        if not self.on_dask:
            local = _LOCAL_QUEUES[self.name]
            while True:
                try:
                    yield local.get_nowait()
                except queue.Empty:
                    return
        from distributed import Queue, get_client

        shared = Queue(self.name, client=get_client())  # the worker's own client
        try:
            while True:
                try:
                    yield int(shared.get(timeout=TAKE_TIMEOUT))
                except TimeoutError:  # the flow filled the queue before any task started: empty is the end
                    return
        finally:
            shared.close()


def trials_span(numbers: list[int]) -> str:
    """Trial numbers as a person reads them: ``4``, ``4-7`` when contiguous, else ``8,9,12,15``."""
    if not numbers:
        return "none"
    if len(numbers) == 1:
        return str(numbers[0])
    ordered = sorted(numbers)
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(str(n) for n in ordered)


def trials_run_name(round_number: int, task: int, tasks: int) -> str:
    """The task run's name in the Prefect UI: its round and place; the trials it ran are in its result and log."""
    return f"search-trials round {round_number} ({task} of {tasks})"


@task(name="search-trials", cache_policy=NO_CACHE)
def evaluate_trials_task(
    round_queue: RoundQueue, proposals: list[Proposal], train_rows: pd.DataFrame, config: ProjectConfig
) -> list[TrialResult]:
    """Take the round's trials from its queue one at a time and cross-validate each on the training rows (never
    the holdout); a trial that raises fails alone, with its error in its result."""
    params = dict(proposals)
    return evaluate_trials(((number, params[number]) for number in round_queue.take()), train_rows, config)
