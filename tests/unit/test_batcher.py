"""The gateway's adaptive batcher: how requests are grouped into model calls (throughput is in the benchmarks)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from deployments.batching import Batcher
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
        batcher = Batcher(ThreadPoolExecutor(2), max_wait=1.0, busy_window=0.2)
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
        batcher = Batcher(ThreadPoolExecutor(2), max_wait=0.05, busy_window=1.0)
        handle = handle_for(model)
        await asyncio.gather(*(batcher.predict(handle, [{"x": i}]) for i in range(4)))
        started = time.perf_counter()
        await batcher.predict(handle, [{"x": 9}])  # three of the four callers went away
        return time.perf_counter() - started

    waited = asyncio.run(scenario())
    assert model.calls == [4, 1]
    assert 0.04 <= waited < 0.9
