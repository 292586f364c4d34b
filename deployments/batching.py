"""Adaptive batching of the gateway's fast path (no rollout live): requests that arrive while a predict runs share
the next predict call."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deployments.inputs import check_output, numeric_matrix, records_frame
from deployments.model_loading import ModelHandle


def timed_predict(handle: ModelHandle, records: list[dict[str, Any]]) -> tuple[Any, float]:
    """The model's answers for validated records and the model's time in ms (building its input not included):
    through the proven fast path on a float matrix when the handle has one, else ``predict`` on a DataFrame."""
    if handle.fast_predict is not None:
        matrix = numeric_matrix(records, handle.features)
        started = time.perf_counter()
        raw = handle.fast_predict(matrix)
    else:
        frame = records_frame(records, handle)
        started = time.perf_counter()
        raw = handle.model.predict(frame)
    return raw, (time.perf_counter() - started) * 1000.0


class Batcher:
    """Adaptive batching for the fast path: requests that arrive while a ``predict`` runs share the next single
    ``predict`` call (8 rows cost about what 1 row costs: most of a scikit-learn pipeline's time is per call).

    An idle gateway predicts a lone request at once, so sparse traffic and a single client see no added latency.
    Under sustained load (a batch finished within the last ``busy_window`` seconds) the next batch waits at most
    ``max_wait`` seconds for as many requests as the largest of the last ``memory`` batches, so callers that are
    answered together and come back together keep sharing calls instead of splitting into a batch of one and a
    batch of the rest.
    """

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        max_rows: int = 256,
        max_wait: float = 0.002,
        busy_window: float = 0.05,
        memory: int = 16,
        observe_rows: Callable[[int], None] | None = None,
    ) -> None:
        self.executor = executor
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.busy_window = busy_window
        self.pending: list[tuple[ModelHandle, list[dict[str, Any]], asyncio.Future[tuple[list[Any], float]]]] = []
        self.draining = False
        self.recent: collections.deque[int] = collections.deque(maxlen=memory)  # requests per recent batch
        self.last_done = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._filled: asyncio.Future[None] | None = None
        self._want = 1
        self.observe_rows = observe_rows  # e.g. the gateway's batch-size histogram

    async def predict(self, handle: ModelHandle, records: list[dict[str, Any]]) -> tuple[list[Any], float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[Any], float]] = loop.create_future()
        self.pending.append((handle, records, future))
        if not self.draining:
            self.draining = True
            self._task = loop.create_task(self._drain())  # keep a reference: the loop holds tasks weakly
        elif self._filled is not None and len(self.pending) >= self._want:
            _resolve(self._filled)
        return await future

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Under load, give the callers answered by the last batch ``max_wait`` to come back (see the class doc)."""
        want = max(self.recent, default=1)
        if len(self.pending) >= want or loop.time() - self.last_done > self.busy_window:
            return
        self._want, self._filled = want, loop.create_future()
        timer = loop.call_later(self.max_wait, _resolve, self._filled)
        try:
            await self._filled
        finally:
            timer.cancel()
            self._filled = None

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                await self._gather(loop)
                handle = self.pending[0][0]
                batch, rest, rows = [], [], 0
                for item in self.pending:  # one model per call, bounded size; the rest waits for the next call
                    if item[0] is handle and rows + len(item[1]) <= max(self.max_rows, len(self.pending[0][1])):
                        batch.append(item)
                        rows += len(item[1])
                    else:
                        rest.append(item)
                self.pending = rest
                self.recent.append(len(batch))
                joined = [record for _, records, _ in batch for record in records]
                if self.observe_rows is not None:
                    self.observe_rows(len(joined))
                try:  # one model input per batch, built in the executor with the call
                    raw, latency = await loop.run_in_executor(self.executor, timed_predict, handle, joined)
                    answers = check_output(raw, len(joined))
                except Exception as err:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(err)
                    continue
                start = 0
                for _, f, fut in batch:
                    if not fut.done():
                        fut.set_result((answers[start : start + len(f)], latency))
                    start += len(f)
                self.last_done = loop.time()
        finally:
            self.draining = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
