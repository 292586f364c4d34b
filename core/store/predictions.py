"""The prediction log: every answer and every late label, written in batches off the request path.

The gateway calls ``record``/``record_feedback`` (a deque append, microseconds); a daemon thread writes batches in
one transaction each. The rollout flow and drift monitoring read from the same tables through ``variant_stats``
and ``recent_features``, on SQLite by default or PostgreSQL by URL.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, func, insert, select

from core.store.schema import feedback, get_engine, predictions, utcnow

log = logging.getLogger(__name__)


def encode_value(value: Any) -> str:
    """One canonical text form for predictions and labels, so ``1``, ``1.0`` and ``"1"`` compare as intended."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, default=str)


class PredictionLog:
    """Buffered writer plus the read queries the rollout and monitoring flows need."""

    def __init__(
        self,
        store_url: str,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_buffer: int = 200_000,
        *,
        corrections: bool = False,
    ) -> None:
        self.engine = get_engine(store_url)
        # Which label of a request id counts when it has several (a correction, or two gateway workers racing):
        # the first, or with corrections on the last. Either way an answer counts once.
        self.corrections = corrections
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        # Bounded: if the database is unreachable for long, the oldest rows are dropped (and counted) rather than
        # the gateway running out of memory.
        self._rows: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._labels: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0

    # ---- writing ---------------------------------------------------------------------------------------------
    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._thread.start()
        return self

    def record(self, **row: Any) -> None:
        row = {**_OPTIONAL, **row}  # every row of a batch has the same keys (one executemany)
        if row["at"] is None:
            row["at"] = utcnow()
        self._rows.append(row)

    def record_feedback(self, request_id: str, label: Any) -> None:
        self._labels.append({"request_id": request_id, "label": encode_value(label), "at": utcnow()})

    def lookup(self, request_ids: list[str]) -> tuple[set[str], dict[str, str]]:
        """Of ``request_ids``: those the gateway answered (in the store) and, for those labelled, the label that counts
        (the first, or the last with corrections on), JSON-encoded."""
        if not request_ids:
            return set(), {}
        pick = func.max if self.corrections else func.min
        with self.engine.connect() as conn:
            issued = set(
                conn.execute(
                    select(predictions.c.request_id).where(predictions.c.request_id.in_(request_ids)).distinct()
                ).scalars()
            )
            chosen = (
                select(pick(feedback.c.id))
                .where(feedback.c.request_id.in_(request_ids))
                .group_by(feedback.c.request_id)
            )
            labels = {
                rid: label
                for rid, label in conn.execute(
                    select(feedback.c.request_id, feedback.c.label).where(feedback.c.id.in_(chosen))
                ).all()
            }
        return issued, labels

    def flush(self) -> None:
        """Write everything buffered so far (also called on shutdown)."""
        with self._lock:
            while self._rows or self._labels:
                rows = [self._rows.popleft() for _ in range(min(self.batch_size, len(self._rows)))]
                labels = [self._labels.popleft() for _ in range(min(self.batch_size, len(self._labels)))]
                try:
                    with self.engine.begin() as conn:
                        if rows:
                            conn.execute(insert(predictions), rows)
                        if labels:
                            conn.execute(insert(feedback), labels)
                    self.written += len(rows)
                except Exception:  # the log must never take the gateway down; count and report what was lost
                    self.dropped += len(rows) + len(labels)
                    log.exception("prediction log: dropped a batch of %d rows", len(rows) + len(labels))

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    # ---- reading ---------------------------------------------------------------------------------------------
    def variant_stats(self, model_name: str, rollout_id: int, since: datetime | None = None) -> dict[str, VariantStats]:
        """Per variant (champion / challenger) counts for one rollout, optionally from ``since`` on."""
        conds = [predictions.c.model_name == model_name, predictions.c.rollout_id == rollout_id]
        if since is not None:
            conds.append(predictions.c.at >= since)
        where = and_(*conds)
        stats: dict[str, VariantStats] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(predictions.c.variant, predictions.c.status, func.count())
                .where(where)
                .group_by(predictions.c.variant, predictions.c.status)
            ).all()
            for variant, status, count in rows:
                s = stats.setdefault(variant, VariantStats(variant))
                s.by_status[status] = int(count)
            for variant, s in stats.items():
                lat = conn.execute(
                    select(predictions.c.latency_ms)
                    .where(where, predictions.c.variant == variant, predictions.c.latency_ms.is_not(None))
                    .order_by(predictions.c.id.desc())
                    .limit(5000)
                ).scalars()
                s.latencies_ms = np.fromiter((v for v in lat), dtype=float)
            labelled = conn.execute(
                select(
                    predictions.c.variant,
                    func.count(),
                    func.sum(func.coalesce((predictions.c.prediction == feedback.c.label).cast(_int()), 0)),
                )
                .select_from(predictions.join(feedback, feedback.c.id == self._counted_label(predictions)))
                .where(where, predictions.c.status.in_(ANSWERED))
                .group_by(predictions.c.variant)
            ).all()
            for variant, n, correct in labelled:
                s = stats.setdefault(variant, VariantStats(variant))
                s.labelled, s.correct = int(n), int(correct or 0)
        return stats

    def _counted_label(self, answers: Any) -> Any:
        """The id of the one label that counts for an answer: labelled answers are counted, never label rows."""
        pick = func.max if self.corrections else func.min
        inner = feedback.alias("label_of")
        return select(pick(inner.c.id)).where(inner.c.request_id == answers.c.request_id).scalar_subquery()

    def latency_rows(self, model_name: str, rollout_id: int) -> pd.DataFrame:
        """Every timed answer of a rollout, one per request and variant: request id, variant, start time (seconds
        since the epoch: completion minus latency), latency in ms and whether it was a shadow copy. The latency
        guard pairs them (``deployments.statistics.latency``)."""
        stmt = (
            select(
                predictions.c.request_id,
                predictions.c.variant,
                predictions.c.at,
                predictions.c.latency_ms,
                predictions.c.status,
            )
            .where(
                predictions.c.model_name == model_name,
                predictions.c.rollout_id == rollout_id,
                predictions.c.latency_ms.is_not(None),
                predictions.c.status.in_(TIMED),
            )
            .order_by(predictions.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        frame = pd.DataFrame(rows, columns=["request_id", "variant", "at", "latency_ms", "status"])
        if frame.empty:
            return frame.assign(start=pd.Series(dtype=float), request=pd.Series(dtype=str))
        frame["request"] = frame["request_id"].str.partition("-")[0]  # the records of one request share a prefix
        frame = frame.drop_duplicates(["request", "variant"])
        at = pd.to_datetime(frame["at"], utc=True)
        frame["start"] = (at - pd.Timestamp(0, tz="UTC")).dt.total_seconds() - frame["latency_ms"] / 1000.0
        return frame.reset_index(drop=True)

    def failure_details(self, model_name: str, rollout_id: int, variant: str) -> dict[str, str]:
        """The most recent recorded detail per failure status of a variant ("RuntimeError: ...", "deadline ...")."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for status in FAILED:
                detail = conn.execute(
                    select(predictions.c.detail)
                    .where(
                        predictions.c.model_name == model_name,
                        predictions.c.rollout_id == rollout_id,
                        predictions.c.variant == variant,
                        predictions.c.status == status,
                        predictions.c.detail.is_not(None),
                    )
                    .order_by(predictions.c.id.desc())
                    .limit(1)
                ).scalar()
                if detail:
                    out[status] = str(detail)
        return out

    def agreement(self, model_name: str, rollout_id: int) -> tuple[int, int]:
        """(requests scored by both, requests where they agreed): shadow predictions against the served answers."""
        served = predictions.alias("served")
        shadow = predictions.alias("shadow")
        stmt = (
            select(func.count(), func.sum((served.c.prediction == shadow.c.prediction).cast(_int())))
            .select_from(served.join(shadow, served.c.request_id == shadow.c.request_id))
            .where(
                served.c.model_name == model_name,
                served.c.rollout_id == rollout_id,
                served.c.served == 1,
                shadow.c.status == "shadow",
            )
        )
        with self.engine.connect() as conn:
            n, agreed = conn.execute(stmt).one()
        return int(n or 0), int(agreed or 0)

    def recent(self, model_name: str, since: datetime, limit: int) -> pd.DataFrame:
        """Served answers since ``since`` (newest first, at most ``limit``): features, prediction, version, time,
        latency, status and the label when one arrived."""
        stmt = (
            select(
                predictions.c.at,
                predictions.c.model_version,
                predictions.c.status,
                predictions.c.latency_ms,
                predictions.c.features,
                predictions.c.prediction,
                feedback.c.label,
            )
            .select_from(predictions.outerjoin(feedback, feedback.c.request_id == predictions.c.request_id))
            .where(
                predictions.c.model_name == model_name,
                predictions.c.at >= since,
                predictions.c.status.in_(("ok", "fallback", "error", "timeout")),
            )
            .order_by(predictions.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return pd.DataFrame()
        meta = pd.DataFrame(
            [(r.at, r.model_version, r.status, r.latency_ms, r.prediction, r.label) for r in rows],
            columns=["at", "model_version", "status", "latency_ms", "prediction", "label"],
        )
        features = pd.DataFrame([r.features or {} for r in rows])
        for col in ("prediction", "label"):
            meta[col] = meta[col].map(lambda v: None if v is None else json.loads(v))
        meta["at"] = pd.to_datetime(meta["at"], utc=True)
        return pd.concat([features, meta], axis=1).iloc[::-1].reset_index(drop=True)


def _int() -> Any:
    from sqlalchemy import Integer

    return Integer()


_OPTIONAL: dict[str, Any] = {
    "at": None,
    "model_version": None,
    "features": None,
    "prediction": None,
    "latency_ms": None,
    "rollout_id": None,
    "detail": None,
}
ANSWERED = ("ok", "shadow")  # answers a label can judge
TIMED = ("ok", "timeout", "shadow", "shadow_timeout")  # answers whose latency was measured (a timeout: elapsed)
ERRORS = ("error", "fallback", "shadow_error")  # "fallback": stores written before timeouts were told apart
TIMEOUTS = ("timeout", "shadow_timeout")
FAILED = (*ERRORS, *TIMEOUTS)


@dataclass
class VariantStats:
    variant: str
    by_status: dict[str, int] = field(default_factory=dict)
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    labelled: int = 0
    correct: int = 0

    @property
    def requests(self) -> int:
        """Answers this variant was asked for (served, fallen back, or scored in shadow)."""
        return sum(self.by_status.values())

    @property
    def errors(self) -> int:
        """Failed answers: exceptions and invalid answers (``error``) plus deadline misses (``timeout``)."""
        return self.exceptions + self.timeouts

    @property
    def exceptions(self) -> int:
        return sum(self.by_status.get(s, 0) for s in ERRORS)

    @property
    def timeouts(self) -> int:
        return sum(self.by_status.get(s, 0) for s in TIMEOUTS)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_p(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms.size else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "exceptions": self.exceptions,
            "timeouts": self.timeouts,
            "error_rate": round(self.error_rate, 5),
            "latency_p50_ms": self.latency_p(50),
            "latency_p95_ms": self.latency_p(95),
            "labelled": self.labelled,
            "correct": self.correct,
            "accuracy": self.accuracy,
        }
