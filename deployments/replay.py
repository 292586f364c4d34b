"""Traffic replayer: real HTTP requests to the gateway at a set rate, with the true labels sent back later.

Used by the demo, the tests and the benchmarks, and by users to rehearse a rollout on recorded data. Bounded by
``count`` and ``max_seconds``; it only talks to the URL it is given (keep that on 127.0.0.1 for load tests).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd


@dataclass
class ReplayReport:
    sent: int = 0
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)  # per variant, where a label was known
    labels_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        return {
            "sent": self.sent,
            "answered": self.answered,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "variants": dict(self.variants),
            "versions": dict(self.versions),
            "accuracy_by_variant": {v: self.correct[v] / n for v, n in self.variants.items() if n},
            "labels_sent": self.labels_sent,
            "latency_p50_ms": float(np.nanpercentile(lat, 50)),
            "latency_p95_ms": float(np.nanpercentile(lat, 95)),
            "seconds": round(self.seconds, 2),
            "rate_per_second": round(self.sent / self.seconds, 1) if self.seconds else None,
        }


def _jsonable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def records_from(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in frame[features].to_dict(orient="records")]


async def replay(
    url: str,
    records: list[dict[str, Any]],
    labels: list[Any] | None = None,
    *,
    rate: float = 50.0,
    count: int = 500,
    label_delay: float = 1.0,
    concurrency: int = 8,
    max_seconds: float = 600.0,
    seed: int = 0,
    routing_keys: int = 0,
    stop: threading.Event | None = None,
    on_progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Send ``count`` single-record predictions at about ``rate`` per second, rows drawn with replacement; send
    each row's label to ``/v1/feedback`` ``label_delay`` seconds after its answer (labels arrive late).
    Stops early after ``max_seconds`` or when ``stop`` is set."""
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(records), size=count)
    report = ReplayReport()
    gate = asyncio.Semaphore(concurrency)
    pending_labels: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    base = url.rstrip("/")

    async with httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=concurrency * 2)) as client:

        async def send_label(request_id: str, label: Any) -> None:
            await asyncio.sleep(label_delay)
            try:
                await client.post(f"{base}/v1/feedback", json={"request_id": request_id, "label": _jsonable(label)})
                report.labels_sent += 1
            except httpx.HTTPError:
                pass

        async def one(i: int, row: int) -> None:
            async with gate:
                headers = {"x-routing-key": f"user-{row % routing_keys}"} if routing_keys else {}
                t0 = time.perf_counter()
                report.sent += 1
                try:
                    resp = await client.post(f"{base}/v1/predict", json={"records": [records[row]]}, headers=headers)
                except httpx.HTTPError:
                    report.statuses[0] += 1
                    return
                report.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
                report.statuses[resp.status_code] += 1
                if resp.status_code != 200:
                    return
                answer = resp.json()["predictions"][0]
                report.answered += 1
                report.variants[answer["variant"]] += 1
                report.versions[answer["model_version"]] += 1
                if labels is not None:
                    if answer["prediction"] == _jsonable(labels[row]):
                        report.correct[answer["variant"]] += 1
                    pending_labels.append(asyncio.create_task(send_label(answer["request_id"], labels[row])))
            if on_progress is not None and report.sent % 100 == 0:
                on_progress(report)

        tasks = []
        for i, row in enumerate(order):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() - started > max_seconds or (stop is not None and stop.is_set()):
                break
            tasks.append(asyncio.create_task(one(i, int(row))))
        await asyncio.gather(*tasks)
        await asyncio.gather(*pending_labels)
    report.seconds = time.perf_counter() - started
    return report
