"""Traffic replayer: real HTTP requests to the gateway at a set rate, with the true labels sent back later.

Used by the demo, the tests and the benchmarks, and by users to rehearse a rollout on recorded data. Bounded by
``count`` and ``max_seconds``; it only talks to the URL it is given (keep that on 127.0.0.1 for load tests).

Which rows: replaying rows a model was trained on favours the model that fits its training data most closely (a
less regularised challenger looks better than it is, a more regularised one worse). By default ``mlops replay``
sends only the rows of the config's data that *neither* the champion nor the challenger trained on: every
registered version carries the snapshot of its training rows (``reference/train.parquet``, logged by the lifecycle
for drift monitoring), and rows whose feature values appear in either snapshot are left out (``unseen_rows``).
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


@dataclass(frozen=True)
class ReplaySource:
    """The rows a replay sends, and where they came from in words (the report repeats it)."""

    frame: pd.DataFrame
    description: str


def _row_keys(frame: pd.DataFrame, features: list[str]) -> pd.Series:
    """One hash per row of feature values, insensitive to how the file typed them (int vs float, object vs str)."""
    normalised = pd.DataFrame(
        {
            f: pd.to_numeric(frame[f], errors="coerce").astype(float)
            if pd.api.types.is_numeric_dtype(frame[f])
            else frame[f].astype(str)
            for f in features
        }
    )
    return pd.util.hash_pandas_object(normalised, index=False)


def unseen_rows(
    frame: pd.DataFrame, features: list[str], snapshots: dict[str, pd.DataFrame | None], source: str
) -> ReplaySource:
    """The rows of ``frame`` whose features appear in none of the training ``snapshots`` (name -> training rows,
    None when that model logged none)."""
    missing = [name for name, snap in snapshots.items() if snap is None]
    if missing:
        raise ValueError(
            f"no training snapshot is logged for {', '.join(missing)}, so the rows it trained on are unknown; "
            "name the rows to replay with --source (a file neither model trained on)"
        )
    seen: set[int] = set()
    for snap in snapshots.values():
        assert snap is not None
        seen.update(_row_keys(snap, features).tolist())
    keep = ~_row_keys(frame, features).isin(seen)
    unseen = frame[keep.to_numpy()].reset_index(drop=True)
    listed = list(snapshots)
    names = f"neither {listed[0]} nor {' nor '.join(listed[1:])}" if len(listed) > 1 else f"not {listed[0]}"
    if unseen.empty:
        raise ValueError(
            f"every row of {source} is in the training data of {' or '.join(listed)}; name rows neither model "
            "trained on with --source"
        )
    return ReplaySource(
        unseen,
        f"{len(unseen)} of {len(frame)} rows of {source}, those {names} trained on (rows whose feature values are in "
        "a model's logged training snapshot are left out)",
    )


def training_snapshots(registry: Any) -> dict[str, pd.DataFrame | None]:
    """The logged training rows of the champion and the challenger (whichever exist), by a readable name."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from core.names import CHALLENGER, CHAMPION, REFERENCE_ARTIFACT

    out: dict[str, pd.DataFrame | None] = {}
    for alias in (CHAMPION, CHALLENGER):
        mv = registry.alias_version(alias)
        if mv is None:
            continue
        name = f"{alias} {registry.semver_of(mv) or ''} (v{mv.version})".replace("  ", " ")
        try:
            path = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=REFERENCE_ARTIFACT)
            out[name] = pd.read_parquet(path)
        except (MlflowException, OSError):
            out[name] = None
    return out


@dataclass
class ReplayReport:
    sent: int = 0
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)  # per variant, where a label was known
    labels_sent: int = 0
    labels_refused: Counter[int] = field(default_factory=Counter)  # by HTTP status (0: no answer)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    rows: str = ""  # which rows were replayed, in words

    def to_json(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.asarray([np.nan])
        return {
            "rows": self.rows,
            "sent": self.sent,
            "answered": self.answered,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "variants": dict(self.variants),
            "versions": dict(self.versions),
            "accuracy_by_variant": {v: self.correct[v] / n for v, n in self.variants.items() if n},
            "labels_sent": self.labels_sent,
            "labels_refused": {str(k): v for k, v in self.labels_refused.items()},
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
    feedback_token: str | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Send ``count`` single-record predictions at about ``rate`` per second, rows drawn with replacement; send
    each row's label to ``/v1/feedback`` ``label_delay`` seconds after its answer (labels arrive late).
    Stops early after ``max_seconds`` or when ``stop`` is set: requests already scheduled but still waiting for a
    connection (a gateway slower than ``rate``) are then not sent; answers already received still get their labels."""
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(records), size=count)
    report = ReplayReport()
    gate = asyncio.Semaphore(concurrency)
    pending_labels: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    base = url.rstrip("/")

    label_headers = {"authorization": f"Bearer {feedback_token}"} if feedback_token else {}

    async with httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=concurrency * 2)) as client:

        async def send_label(request_id: str, label: Any) -> None:
            await asyncio.sleep(label_delay)
            try:
                resp = await client.post(
                    f"{base}/v1/feedback",
                    json={"request_id": request_id, "label": _jsonable(label)},
                    headers=label_headers,
                )
                if resp.status_code == 202:
                    report.labels_sent += 1
                else:
                    report.labels_refused[resp.status_code] += 1
            except httpx.HTTPError:
                report.labels_refused[0] += 1

        def over() -> bool:
            return time.perf_counter() - started > max_seconds or (stop is not None and stop.is_set())

        async def one(i: int, row: int) -> None:
            async with gate:
                if over():  # scheduled, but queued behind a slower gateway until the run ended
                    return
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
            if over():
                break
            tasks.append(asyncio.create_task(one(i, int(row))))
        await asyncio.gather(*tasks)
        await asyncio.gather(*pending_labels)
    report.seconds = time.perf_counter() - started
    return report
