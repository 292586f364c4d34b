"""The gateway's adaptive batcher and group commit: how requests are grouped into model calls and their log rows
into journal commits (throughput is in the benchmarks)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deployments.batching import Batcher, DeadlineMissed, GroupCommit
from deployments.fast_predict import CompiledPredict
from deployments.model_loading import ModelHandle


class CallRecorder:
    """A model that answers each row with its own ``x`` and remembers how many rows each call carried."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        return frame["x"].to_numpy() * 10


def handle_for(model: CallRecorder) -> ModelHandle:
    return ModelHandle("champion", "1", "1.0.0", model, {"x": "double"}, time.time())


def test_requests_are_grouped_and_each_caller_gets_its_own_answers() -> None:
    model = CallRecorder()

    async def scenario() -> tuple[list[Any], list[Any], float]:
        batcher = Batcher(ThreadPoolExecutor(2), max_wait=1.0, gap=0.1, busy_window=0.2)
        handle = handle_for(model)

        async def ask(x: float, delay: float = 0.0) -> list[Any]:
            await asyncio.sleep(delay)
            answers, _ = await batcher.predict(handle, [{"x": x}])
            return answers

        # four callers arrive together: one model call
        first = await asyncio.gather(*(ask(i) for i in range(4)))
        # they come back one by one within a few ms, as clients do after an answer: the busy batcher waits for the
        # four instead of calling the model for the first one alone and then for the other three
        second = await asyncio.gather(ask(4), ask(5, 0.01), ask(6, 0.02), ask(7, 0.03))
        # after a quiet spell a lone request is answered at once, not after max_wait
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        await ask(8)
        return first, second, time.perf_counter() - started

    first, second, lone_seconds = asyncio.run(scenario())
    assert first == [[0], [10], [20], [30]]
    assert second == [[40], [50], [60], [70]]
    assert model.calls == [4, 4, 1]
    assert lone_seconds < 0.5  # max_wait is 1 s: the idle path must not wait for company


def test_a_shrinking_crowd_is_not_waited_for_longer_than_max_wait() -> None:
    model = CallRecorder()

    async def scenario() -> float:
        batcher = Batcher(ThreadPoolExecutor(2), max_wait=0.05, gap=1.0, busy_window=1.0)
        handle = handle_for(model)
        await asyncio.gather(*(batcher.predict(handle, [{"x": i}]) for i in range(4)))
        started = time.perf_counter()
        await batcher.predict(handle, [{"x": 9}])  # three of the four callers went away
        return time.perf_counter() - started

    waited = asyncio.run(scenario())
    assert model.calls == [4, 1]
    assert 0.04 <= waited < 0.9


def test_a_pause_in_arrivals_ends_the_wait_before_max_wait() -> None:
    """During a canary some callers come back to the other variant: once arrivals pause for ``gap`` the batch goes,
    without waiting ``max_wait`` for callers who are not coming."""
    model = CallRecorder()

    async def scenario() -> float:
        batcher = Batcher(ThreadPoolExecutor(2), max_wait=1.0, gap=0.03, busy_window=1.0)
        handle = handle_for(model)
        await asyncio.gather(*(batcher.predict(handle, [{"x": i}]) for i in range(4)))
        started = time.perf_counter()

        async def late(x: float) -> None:
            await asyncio.sleep(0.01)
            await batcher.predict(handle, [{"x": x}])

        await asyncio.gather(batcher.predict(handle, [{"x": 8}]), late(9))  # two of four come back
        return time.perf_counter() - started

    waited = asyncio.run(scenario())
    assert model.calls == [4, 2]  # the late one still rode along: arrivals had not paused yet
    assert 0.03 <= waited < 0.5


class Hanging(CallRecorder):
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        time.sleep(0.3)
        return super().predict(frame)


def test_a_deadline_fails_only_the_late_callers_and_nothing_is_computed_for_them_later() -> None:
    model = Hanging()

    async def scenario() -> tuple[list[Any], float]:
        batcher = Batcher(ThreadPoolExecutor(2))
        handle = handle_for(model)
        started = time.perf_counter()
        first = asyncio.ensure_future(batcher.predict(handle, [{"x": 1}], 0.05))  # predicted at once, answer late
        await asyncio.sleep(0.01)  # its call is running now
        outcomes = await asyncio.gather(
            first,
            batcher.predict(handle, [{"x": 2}], 0.05),  # waits behind it, missed before its turn: never computed
            batcher.predict(handle, [{"x": 3}], None),  # no deadline: answered
            return_exceptions=True,
        )
        return outcomes, time.perf_counter() - started

    outcomes, seconds = asyncio.run(scenario())
    assert isinstance(outcomes[0], DeadlineMissed) and isinstance(outcomes[1], DeadlineMissed)
    assert outcomes[2] == ([30], pytest.approx(outcomes[2][1]))
    assert model.calls == [1, 1]  # the first alone, then only the caller still waiting
    assert seconds >= 0.6


def test_group_commit_writes_one_pass_of_answers_once_and_fails_them_together() -> None:
    writes: list[list[dict[str, Any]]] = []

    def write(rows: list[dict[str, Any]]) -> None:
        if any(r.get("bad") for r in rows):
            raise OSError("disk full")
        writes.append(rows)

    async def scenario() -> list[Any]:
        commits = GroupCommit(write)
        await asyncio.gather(*(commits.add([{"i": i}]) for i in range(5)))
        await commits.add([{"i": 5}])
        return await asyncio.gather(commits.add([{"i": 6}]), commits.add([{"bad": True}]), return_exceptions=True)

    failed = asyncio.run(scenario())
    assert writes == [[{"i": i} for i in range(5)], [{"i": 5}]]
    assert all(isinstance(f, OSError) and str(f) == "disk full" for f in failed)  # nobody told it was durable


def test_a_compiled_model_is_called_on_the_event_loop_without_waiting_for_company() -> None:
    threads: list[str] = []

    def compiled(matrix: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return matrix[:, 0] * 10

    handle = ModelHandle(
        "champion", "1", "1.0.0", None, {"x": "double"}, time.time(), CompiledPredict(compiled, "test"), "compiled"
    )
    assert handle.inline

    async def scenario() -> tuple[list[Any], float]:
        batcher = Batcher(ThreadPoolExecutor(2), max_wait=1.0, gap=1.0, busy_window=1.0)
        await asyncio.gather(*(batcher.predict(handle, [{"x": i}]) for i in range(4)))
        started = time.perf_counter()
        answers, _ = await batcher.predict(handle, [{"x": 9.0}])  # three of four callers went away
        return answers, time.perf_counter() - started

    answers, waited = asyncio.run(scenario())
    assert answers == [90.0]
    assert waited < 0.5  # max_wait is 1 s: a compiled call does not wait for callers who are not coming
    assert set(threads) == {threading.current_thread().name}  # the loop's own thread, no hand-off
