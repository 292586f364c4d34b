"""The prediction log: every answer and every late label, written in batches off the request path.

The gateway calls ``record``/``record_feedback`` (a deque append, microseconds); a daemon thread writes batches in
one transaction each. The rollout flow and drift monitoring read from the same tables through ``variant_stats``
and ``recent_features``, on SQLite by default or PostgreSQL by URL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Float, and_, delete, func, insert, select, update

from core.faults import JOURNAL_DRAINED, crash_point
from core.store.journal import FEEDBACK, PREDICTION, Journal
from core.store.schema import feedback, get_engine, journal_marks, predictions, utcnow

log = logging.getLogger(__name__)


def encode_value(value: Any) -> str:
    """One canonical text form for predictions and labels, so ``1``, ``1.0`` and ``"1"`` compare as intended."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, default=str)


class PredictionLog:
    """Durable writer plus the read queries the rollout and monitoring flows need.

    Started with a ``journal_dir`` (the gateway), every answer and label is committed to a local journal before
    ``record_many``/``record_feedback`` return, and a thread drains the journal to the store; journals left by a
    crashed process are replayed (exactly once) when the next one starts. Without a journal (or before ``start``),
    rows wait in memory until ``flush``.
    """

    def __init__(
        self,
        store_url: str,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_buffer: int = 200_000,
        *,
        journal_dir: Path | None = None,
        fault_point: str | None = None,
        corrections: bool = False,
    ) -> None:
        self.store_url = store_url
        self.engine = get_engine(store_url)
        # Which label of a request id counts when it has several (a correction, or two gateway workers racing):
        # the first, or with corrections on the last. Either way an answer counts once.
        self.corrections = corrections
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.journal_dir = journal_dir
        self.fault_point = fault_point
        self._journal: Journal | None = None
        # Bounded: without a journal, if the database is unreachable for long, the oldest rows are dropped (and
        # counted) rather than the process running out of memory.
        self._rows: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._labels: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Drain the journal from a child process instead of a thread: ``core.store.drainer.Drainer``, set by a process
        # that serves the gateway and nothing else (``mlops serve``), where the thread's GIL made the answers' tail.
        self.child_drainer: Callable[[PredictionLog, Journal], Any] | None = None
        self._drainer: Any = None
        self.dropped = 0
        self.written = 0
        self.replayed = 0  # entries of crashed processes' journals written to the store at start
        self.unreachable_since: float | None = None  # monotonic time the store stopped answering, while it does not
        self.outages = 0  # times the store became unreachable (each logged, and its recovery)
        self.drained_to = 0  # the last journal entry written to the store by this process
        self.drain_cpu_seconds = 0.0  # CPU time spent writing the journal to the store (this process or its drainer)
        self._marks: dict[str, int] = {}  # journal -> its last entry in the store (``_mark``)

    # ---- writing ---------------------------------------------------------------------------------------------
    def start(self) -> PredictionLog:
        if self._thread is None and self._drainer is None:  # started once
            if self.journal_dir is not None and self._journal is None:
                self._recover(self.journal_dir)  # before this process answers anything
                self.drained_to = 0  # the orphans' entry ids; this process's own journal starts from 1
                self._journal = Journal.create(self.journal_dir)
            if self.child_drainer is not None and self._journal is not None:
                self._drainer = self.child_drainer(self, self._journal).start()
            else:
                self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
                self._thread.start()
        return self

    @property
    def backlog(self) -> int:
        """Answers and labels logged and not yet in the store (journaled, or waiting in memory)."""
        if self._journal is not None:
            return max(0, self._journal.last_id - self.drained_to)
        return len(self._rows) + len(self._labels)

    def record(self, **row: Any) -> None:
        self.record_many([row])

    def record_many(self, rows: list[dict[str, Any]]) -> None:
        """Log answers; with a journal they are durable when this returns (one local commit for all of them)."""
        now = utcnow()
        rows = [{**_OPTIONAL, **row} for row in rows]  # every row of a batch has the same keys (one executemany)
        for row in rows:
            if row["at"] is None:
                row["at"] = now
        if self._journal is not None:
            self._journal.append(PREDICTION, rows)
        else:
            self._rows.extend(rows)

    def record_feedback(self, request_id: str, label: Any) -> None:
        row = {"request_id": request_id, "label": encode_value(label), "at": utcnow()}
        if self._journal is not None:
            self._journal.append(FEEDBACK, [row])
        else:
            self._labels.append(row)

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
        """Write everything logged so far to the store (also called on shutdown)."""
        with self._lock:
            self._flush_memory()
            if self._drainer is not None:
                self._drainer.flush()
            elif self._journal is not None:
                self._drain(self._journal)

    def _flush_memory(self) -> None:
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
            except Exception as err:  # the log must never take the gateway down
                log.warning(
                    "prediction log: a batch of %d rows failed (%s); writing them one by one",
                    len(rows) + len(labels),
                    _short_error(err),
                )
                self._write_one_by_one(rows, labels)

    def _drain(self, journal: Journal) -> bool:
        """Journal -> store, batch by batch (a transaction each), until a batch finds the journal emptied; False when
        the store is unreachable (the rest stays journaled). Its CPU time is added to ``drain_cpu_seconds``."""
        started = time.thread_time()
        drained = False
        try:
            drained = self._drain_batches(journal)
        finally:
            self.drain_cpu_seconds += time.thread_time() - started
            if not drained:  # a write failed or raised: it may have committed, so the store's mark is read again
                self._marks.pop(journal.name, None)
        return drained

    def _drain_batches(self, journal: Journal) -> bool:
        mark = self._mark(journal.name)
        journal.forget(mark)  # written before a crash, not yet forgotten
        while entries := journal.read(mark, self.batch_size):
            try:
                with self.engine.begin() as conn:
                    self._insert_entries(conn, entries)
                    _set_mark(conn, journal.name, entries[-1][0])
                self.written += sum(1 for _, kind, _ in entries if kind == PREDICTION)
            except Exception as err:
                if self._lost_the_store(err):
                    return False  # retried from the store's mark on the next drain: a batch that did commit is skipped
                log.warning("prediction log: a journal batch failed (%s); writing it row by row", _short_error(err))
                if not self._drain_one_by_one(journal.name, entries):
                    return False
            self._store_is_back()
            mark = self.drained_to = self._marks[journal.name] = entries[-1][0]
            if any(kind == FEEDBACK for _, kind, _ in entries):  # the fault suite's crash needs both kinds stored
                crash_point(self.fault_point, JOURNAL_DRAINED)
            journal.forget(mark)
            if len(entries) < self.batch_size:  # that was all of it
                break
        return True

    def _insert_entries(self, conn: Any, entries: list[tuple[int, str, dict[str, Any]]]) -> None:
        rows = [row for _, kind, row in entries if kind == PREDICTION]
        labels = [row for _, kind, row in entries if kind == FEEDBACK]
        if rows:
            conn.execute(insert(predictions), rows)
        if labels:
            conn.execute(insert(feedback), labels)

    def _drain_one_by_one(self, name: str, entries: list[tuple[int, str, dict[str, Any]]]) -> bool:
        for entry in entries:
            try:
                with self.engine.begin() as conn:
                    self._insert_entries(conn, [entry])
                    _set_mark(conn, name, entry[0])
                self.written += entry[1] == PREDICTION
            except Exception as err:
                if self._lost_the_store(err):
                    return False
                with self.engine.begin() as conn:  # a row the store refuses: skip it, say so
                    _set_mark(conn, name, entry[0])
                self.dropped += 1
                log.error(
                    "prediction log: dropped a row the store refuses (request id %.64s): %s",
                    str(entry[2].get("request_id")),
                    _short_error(err),
                )
        return True

    def _lost_the_store(self, err: Exception) -> bool:
        """True when ``err`` is the store going away (a dropped connection, a server down), not a row it refuses:
        the rows stay journaled for the next drain, and the first failure of an outage is logged."""
        # A dropped connection is an outage even when a reconnect works at once: the row was not refused, and the
        # commit may even have landed (the next drain starts from the mark the store holds, so it is not repeated).
        if not getattr(err, "connection_invalidated", False) and self._store_reachable():
            return False
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()
            self.outages += 1
            log.error(
                "prediction log: the store is unreachable (%s); answers and labels stay journaled until it is back",
                _short_error(err),
            )
        return True

    def _store_is_back(self) -> None:
        if self.unreachable_since is not None:
            log.warning(
                "prediction log: the store is reachable again after %.1f s; writing the journaled answers and labels",
                time.monotonic() - self.unreachable_since,
            )
            self.unreachable_since = None

    def _store_reachable(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            return True
        except Exception:
            return False

    def _mark(self, name: str) -> int:
        """The journal's last entry in the store: read once, then kept as this process commits more (the journal's
        lock makes it the only writer of that mark), and read again after a failed write, which may have
        committed."""
        if name not in self._marks:
            with self.engine.connect() as conn:
                found = conn.execute(select(journal_marks.c.last_entry).where(journal_marks.c.journal == name)).scalar()
            self._marks[name] = int(found or 0)
        return self._marks[name]

    def _recover(self, folder: Path) -> None:
        """Replay the journals of processes that died (nobody holds their lock) before answering anything."""
        for orphan in Journal.orphans(folder):
            pending = orphan.pending()
            drained = self._drain(orphan)
            if drained:
                self.replayed += pending
                log.warning("prediction log: replayed %d entries journaled by a process that died", pending)
                with self.engine.begin() as conn:
                    conn.execute(delete(journal_marks).where(journal_marks.c.journal == orphan.name))
            orphan.close(remove_if_empty=drained)

    def _write_one_by_one(self, rows: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
        """After a failed batch: each row in its own transaction, so one bad row (a value the database refuses)
        costs only itself. Dropped rows are counted and named in the log."""
        failures_in_a_row = 0
        for table, items in ((predictions, rows), (feedback, labels)):
            for n, item in enumerate(items):
                if failures_in_a_row >= 10:  # not a bad row: the store itself is failing
                    self.dropped += len(items) - n
                    log.error("prediction log: the store refuses every row; dropped %d more", len(items) - n)
                    break
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(table), [item])
                    failures_in_a_row = 0
                    if table is predictions:
                        self.written += 1
                except Exception as err:
                    failures_in_a_row += 1
                    self.dropped += 1
                    log.error(
                        "prediction log: dropped a %s row (request id %.64s): %s",
                        table.name,
                        str(item.get("request_id")),
                        _short_error(err),
                    )

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # the writer thread must outlive a bad moment of the store
                log.exception("prediction log: flush failed; retrying")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.stop()  # it drains what is left; anything it could not is drained below, in this process
        self.flush()
        journal, self._journal = self._journal, None
        if journal is not None:
            self.forget_journal(journal)

    def forget_journal(self, journal: Journal) -> None:
        """Close ``journal``; when everything in it is in the store, remove it and its mark."""
        empty = journal.pending() == 0
        journal.close(remove_if_empty=empty)
        if empty:
            with self.engine.begin() as conn:
                conn.execute(delete(journal_marks).where(journal_marks.c.journal == journal.name))

    # ---- reading ---------------------------------------------------------------------------------------------
    def variant_stats(
        self, model_name: str, rollout_id: int, since: datetime | None = None, *, regression: bool = False
    ) -> dict[str, VariantStats]:
        """Per variant (champion / challenger) counts for one rollout, optionally from ``since`` on; with
        ``regression`` also the sums of absolute errors of the labelled answers (labels and predictions numeric)."""
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
            if regression:
                error = func.abs(predictions.c.prediction.cast(Float()) - feedback.c.label.cast(Float()))
                sums = conn.execute(
                    select(predictions.c.variant, func.count(), func.sum(error), func.sum(error * error))
                    .select_from(predictions.join(feedback, feedback.c.id == self._counted_label(predictions)))
                    .where(where, predictions.c.status.in_(ANSWERED))
                    .group_by(predictions.c.variant)
                ).all()
                for variant, n, total, total_sq in sums:
                    s = stats.setdefault(variant, VariantStats(variant))
                    s.abs_errors = (int(n), float(total or 0.0), float(total_sq or 0.0))
        return stats

    def _counted_label(self, answers: Any) -> Any:
        """The id of the one label that counts for an answer: labelled answers are counted, never label rows."""
        pick = func.max if self.corrections else func.min
        inner = feedback.alias("label_of")
        return select(pick(inner.c.id)).where(inner.c.request_id == answers.c.request_id).scalar_subquery()

    def latency_rows(self, model_name: str, rollout_id: int) -> pd.DataFrame:
        """Every timed answer of a rollout, one per model call and variant (requests batched together count once):
        request id, variant, start time (seconds since the epoch: completion minus latency), latency in ms and
        status. The latency guard pairs them (``deployments.statistics.latency``)."""
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
        # requests batched into one model call share its time: one observation per call, not one per request
        # (a timeout's elapsed time is its own); keeps the pairs independent, as the latency test assumes
        answered = frame["status"].isin(("ok", "shadow"))
        frame = pd.concat([frame[answered].drop_duplicates(["variant", "latency_ms"]), frame[~answered]])
        frame = frame.sort_index()
        at = pd.to_datetime(frame["at"], utc=True)
        frame["start"] = (at - pd.Timestamp(0, tz="UTC")).dt.total_seconds() - frame["latency_ms"] / 1000.0
        return frame.reset_index(drop=True)

    def deadline_misses(self, model_name: str, rollout_id: int) -> pd.DataFrame:
        """Every deadline miss of a rollout, one row per record: variant, start and give-up time (seconds since the
        epoch; start is the give-up time minus the elapsed time). The error guard tells the host's stalls from the
        models' own misses with them (``deployments.statistics.deadline_misses``)."""
        stmt = (
            select(predictions.c.variant, predictions.c.at, predictions.c.latency_ms)
            .where(
                predictions.c.model_name == model_name,
                predictions.c.rollout_id == rollout_id,
                predictions.c.status.in_(TIMEOUTS),
            )
            .order_by(predictions.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        frame = pd.DataFrame(rows, columns=["variant", "at", "latency_ms"])
        if frame.empty:
            return pd.DataFrame(
                {"variant": pd.Series(dtype=str), "start": pd.Series(dtype=float), "end": pd.Series(dtype=float)}
            )
        at = pd.to_datetime(frame["at"], utc=True)
        end = (at - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        start = end - frame["latency_ms"].fillna(0.0).astype(float) / 1000.0
        return pd.DataFrame({"variant": frame["variant"], "start": start, "end": end})

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

    def recent(self, model_name: str, since: datetime, limit: int, until: datetime | None = None) -> pd.DataFrame:
        """Served answers since ``since`` (and before ``until``; the newest ``limit``, returned oldest first):
        features, prediction, version, time, latency, status and the label when one arrived."""
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
                *([predictions.c.at < until] if until is not None else []),
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

    def labelled_rows(
        self, model_name: str, since: datetime, until: datetime, limit: int | None = None
    ) -> pd.DataFrame:
        """Labelled answers of ``model_name`` given in [``since``, ``until``), for training: one row per request id
        (its first logged answer, whose features are the validated input record; a shadow copy of the same request
        is not a second row) with the label that counts (the first, or the last with corrections on) among labels
        that arrived before ``until``, so the same window reads the same rows later. The newest ``limit`` rows,
        returned oldest first, as columns ``request_id``, ``at``, ``features`` (the input record) and ``label``."""
        pick = func.max if self.corrections else func.min
        first_answer = (
            select(func.min(predictions.c.id))
            .where(predictions.c.model_name == model_name, predictions.c.at >= since, predictions.c.at < until)
            .group_by(predictions.c.request_id)
        )
        counted_label = select(pick(feedback.c.id)).where(feedback.c.at < until).group_by(feedback.c.request_id)
        stmt = (
            select(predictions.c.request_id, predictions.c.at, predictions.c.features, feedback.c.label)
            .select_from(predictions.join(feedback, feedback.c.request_id == predictions.c.request_id))
            .where(predictions.c.id.in_(first_answer), feedback.c.id.in_(counted_label))
            .order_by(predictions.c.at.desc(), predictions.c.id.desc())
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            rows = [r for r in conn.execute(stmt).all() if r.features]  # an answer logged without its input
        frame = pd.DataFrame(
            [(r.request_id, r.at, r.features, json.loads(r.label)) for r in reversed(rows)],
            columns=["request_id", "at", "features", "label"],
        )
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame


def _set_mark(conn: Any, name: str, last_entry: int) -> None:
    """Record in the store transaction that wrote them how far journal ``name`` is in the store."""
    moved = conn.execute(
        update(journal_marks).where(journal_marks.c.journal == name).values(last_entry=last_entry, at=utcnow())
    )
    if moved.rowcount == 0:
        conn.execute(insert(journal_marks).values(journal=name, last_entry=last_entry, at=utcnow()))


def _short_error(err: Exception) -> str:
    cause = getattr(err, "orig", None) or err
    return f"{cause.__class__.__name__}: {str(cause).splitlines()[0][:300] if str(cause) else ''}"


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
    abs_errors: tuple[int, float, float] = (0, 0.0, 0.0)  # regression: labelled answers, sum |error|, sum error**2

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
            **({"mean_absolute_error": self.abs_errors[1] / self.abs_errors[0]} if self.abs_errors[0] else {}),
        }
