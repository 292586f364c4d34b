"""The serving gateway: champion and challenger side by side behind one HTTP API, routed by the live rollout.

Endpoints: ``POST /v1/predict``, ``POST /v1/feedback``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``,
``GET /v1/rollout``, and the token-protected ``POST /v1/admin/reload``, ``POST /v1/rollout/approve|abort``.

Design points:
- Models come only from the configured MLflow registry, by alias, and are swapped in place when an alias moves
  (load the new model first, then replace one reference): in-flight requests finish on the model they started on.
- Each variant answers through its own adaptive batcher (``Batcher``): requests that arrive while a predict runs
  share the next predict call (8 rows cost what 1 row costs), with or without a rollout, and a hanging variant
  holds up only its own queue. A model compiled to numpy runs on the event loop; others share one thread pool, so
  the variants' latencies are measured under the same conditions. The log rows of the answers finished in one loop
  pass share one journal commit (``GroupCommit``), made before any of them is returned.
- During a rollout the deadline (``rollout.deadline_ms``) applies to both variants alike: an answer later than it
  is recorded as a ``timeout`` (with the deadline, the elapsed time and the host's load), an exception or an
  invalid answer as an ``error`` (with its type and message), and the other variant answers instead. A circuit
  breaker stops sending to a failing variant: exceptions count, and a deadline miss counts only when it is the
  model's fault (the other variant answered in time inside the missed request's window), not the host's stall
  (``deployments.router``).
- Request ids carry 128 random bits (one ``os.urandom`` call per request; its records add ``-<index>``). Feedback
  is accepted only for ids this gateway answered (recent ids in memory, older ones in the prediction log), once per
  id unless corrections are on, and only with a label of the model's target type.
- ``POST /v1/predict`` and ``/v1/feedback`` are answered by a small ASGI front (``GatewayApp``); the other endpoints
  are a FastAPI app behind it.
- Invalid input is the caller's fault: 422 with field-level errors, never counted against a variant.
- Both variants down: 503 with Retry-After, never an invented prediction.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request

from core import logs
from core.errors import UnsafeModelError
from core.names import CHALLENGER, CHAMPION
from core.notify import notify
from core.store.predictions import encode_value
from core.store.rollouts import Rollout
from core.store.schema import utcnow
from deployments.batching import Batcher, DeadlineMissed, GroupCommit, timed_predict
from deployments.inputs import label_error, validate_records
from deployments.metrics import Metrics
from deployments.model_loading import ModelHandle, load_handle
from deployments.router import CircuitBreaker, InTimeAnswers, choose_variant
from services.context import ProjectContext

log = logging.getLogger("mlops.gateway")
LAST_RESORT_SECONDS = 30.0  # the longest a caller waits for the only variant left to answer


class Gateway:
    """State shared by the HTTP handlers: loaded models, the live rollout, breakers, the prediction log."""

    def __init__(
        self,
        context: ProjectContext,
        *,
        token: str | None = None,
        poll_interval: float = 0.5,
        max_body_bytes: int = 1_000_000,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
        recent_ids: int = 100_000,
    ) -> None:
        config = context.config
        self.context = context
        self.config = config
        self.model_name = config.model_name
        self.token = token or context.settings.gateway_token or None
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        deadline_ms = config.rollout.deadline_ms
        self.deadline = None if deadline_ms is None else deadline_ms / 1000.0
        self.feedback_token = context.settings.feedback_token or None
        self.corrections = context.settings.feedback_corrections
        self.client = context.mlflow
        self.rollouts = context.rollouts
        self.log = context.predictions
        self.breakers = {v: CircuitBreaker(breaker_threshold, breaker_cooldown) for v in (CHAMPION, CHALLENGER)}
        self.in_time = {v: InTimeAnswers() for v in (CHAMPION, CHALLENGER)}  # to judge the other's deadline misses
        self.handles: dict[str, ModelHandle] = {}
        self.refused: set[tuple[str, str]] = set()  # (alias, version) refused by the loader's allowlist
        self.rollout: Rollout | None = None
        self.metrics = Metrics(self.log)
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="model")
        # one batcher per variant: a slow or hung challenger never holds up the champion's calls
        self.batchers = {
            v: Batcher(self.executor, observe_rows=self.metrics.batch_rows.labels(v).observe)
            for v in (CHAMPION, CHALLENGER)
        }
        self.log_commits = GroupCommit(self.log.record_many)  # one journal commit per loop pass, not per answer
        self._shadow_in_flight = 0
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._shadow_lock = threading.Lock()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self.last_refresh_error: str | None = None
        # Ids answered recently (id -> model version) and labels received recently (id -> encoded label): feedback
        # is checked here first, because the prediction log reaches the store in batches off the request path.
        self.recent_ids = recent_ids
        self._issued: dict[str, str] = {}
        self._labelled: dict[str, str] = {}
        self._label_classes: list[Any] | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        settings = self.context.settings  # credentials in these URLs are redacted by the log set-up (core/logs.py)
        log.info(
            "gateway for %s: project store %s, MLflow %s", self.model_name, settings.store_url, settings.tracking_uri
        )
        self.log.start()
        self.refresh()
        self._refresher = threading.Thread(target=self._refresh_loop, name="gateway-refresh", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.log.close()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.refresh()

    def refresh(self) -> None:
        """Re-read aliases and the live rollout; load any model whose alias moved, then swap it in."""
        with self._refresh_lock:
            try:
                rollout = self.rollouts.live(self.model_name)
            except Exception as err:  # unreadable state fails safe: champion only
                rollout = None
                self.last_refresh_error = f"rollout state unreadable ({err.__class__.__name__}); champion only"
                log.warning(self.last_refresh_error)
            self.rollout = rollout
            self.metrics.challenger_weight.set(rollout.served_weight if rollout else 0.0)
            handles = dict(self.handles)
            for alias in (CHAMPION, CHALLENGER):
                try:
                    mv = self.client.get_model_version_by_alias(self.model_name, alias)
                    version = str(mv.version)
                except Exception:
                    version = None
                current = handles.get(alias)
                if version is None:
                    handles.pop(alias, None)
                elif (current is None or current.version != version) and (alias, version) not in self.refused:
                    handle = self._load(alias, version)
                    if handle is not None:
                        warm_up(handle)
                        handles[alias] = handle
                        log.info(
                            "loaded %s = v%s (%s); fast path: %s",
                            alias,
                            handle.version,
                            handle.semver,
                            handle.fast_path,
                        )
            self._label_classes = label_classes(handles.values())
            self.handles = handles  # one reference swap: requests in flight keep the handle they took
            self.metrics.model_info.clear()
            for alias, h in handles.items():
                self.metrics.model_info.labels(alias, h.version, h.semver or "").set(1)

    def _load(self, alias: str, version: str) -> ModelHandle | None:
        """Load the alias's version, or keep serving what is loaded and say why not (``/readyz``, the log)."""
        try:
            return load_handle(self.context.registry, alias, compile=self.context.settings.gateway_compile)
        except UnsafeModelError as err:
            # Refused once per (alias, version), not on every poll: the operator is told (log, /readyz, metric,
            # a notice) and the gateway keeps the model it had until the alias moves again.
            self.refused.add((alias, version))
            self.last_refresh_error = f"refused {alias} v{version}: {err}"
            log.error(self.last_refresh_error)
            self.metrics.models_refused.labels(alias, version).inc()
            notify(
                "model_refused",
                self.model_name,
                f"the gateway refused {alias} v{version}: {err.serialization_format} can run code on load",
                severity="error",
                alias=alias,
                version=version,
                serialization_format=err.serialization_format,
                untrusted_types=err.untrusted_types,
                fix="register it again with skops, or set MLOPS_TRUST_PICKLE=1",
            )
        except Exception as err:
            self.last_refresh_error = f"loading {alias} v{version} failed: {err}"
            log.error(self.last_refresh_error)
        return None

    # ---- serving ---------------------------------------------------------------------------------------------
    @staticmethod
    def new_ids(n: int) -> list[str]:
        """Unguessable request ids: 128 random bits per request (one system call), ``-<i>`` per record."""
        base = os.urandom(16).hex()
        return [base] if n == 1 else [f"{base}-{i}" for i in range(n)]

    def _challenger_for(self, rollout: Rollout | None, handles: dict[str, ModelHandle]) -> ModelHandle | None:
        challenger = handles.get(CHALLENGER)
        if rollout is None or challenger is None or challenger.version != rollout.challenger_version:
            return None
        return challenger

    async def predict(self, records: Any, routing_key: str | None) -> dict[str, Any]:
        handles, rollout = self.handles, self.rollout
        champion = handles.get(CHAMPION)
        challenger = self._challenger_for(rollout, handles)
        if champion is None and challenger is None:
            raise Unavailable("no model is loaded yet")
        schema_of = champion or challenger
        assert schema_of is not None
        validate_records(records, schema_of)  # raises InvalidInput: the caller's fault, no variant charged
        ids = self.new_ids(len(records))
        logs.annotate(prediction_id=ids[0], records=len(ids))  # the prediction log's request_id (first record)
        weight = rollout.served_weight if rollout else 0.0
        primary = choose_variant(weight, routing_key, salt=str(rollout.id) if rollout else "")
        if rollout is not None and rollout.shadow:
            order = [(CHAMPION, champion)]  # a shadow challenger's answer is never returned, not even as a fallback
        elif primary == CHALLENGER:
            order = [(CHALLENGER, challenger), (CHAMPION, champion)]
        else:
            order = [(CHAMPION, champion), (CHALLENGER, challenger)]
        rollout_id = rollout.id if rollout else None
        for position, (variant, handle) in enumerate(order):
            if handle is None or not self.breakers[variant].allow():
                continue
            logs.annotate(variant=variant, model_version=handle.version, rollout_id=rollout_id)
            # The deadline applies to both variants alike; the last variant able to answer is waited for (up to
            # LAST_RESORT_SECONDS), because a late answer serves the caller better than a 503. In shadow mode
            # neither can stand in for the other, so both the answer and the shadow copy get LAST_RESORT_SECONDS.
            rest = order[position + 1 :]
            fallback = any(h is not None and self.breakers[v].available() for v, h in rest)
            # the fast path (no rollout) has no deadline
            deadline = None if rollout is None else self.deadline if fallback else LAST_RESORT_SECONDS
            started = time.perf_counter()
            try:
                if handle.column_types != schema_of.column_types:
                    validate_records(records, handle)
                preds, latency = await self._run(variant, handle, records, deadline)
            except Exception as err:
                ended = time.perf_counter()
                elapsed = (ended - started) * 1000.0
                timed_out = isinstance(err, DeadlineMissed)
                status = "timeout" if timed_out else "error"
                if timed_out:
                    detail = deadline_detail(deadline, elapsed) + self._judge_miss(variant, started, ended)
                else:
                    detail = error_detail(err)
                    self.breakers[variant].failure()
                self.metrics.breaker_open.labels(variant).set(1 if self.breakers[variant].state != "closed" else 0)
                self.metrics.requests.labels(variant, status).inc()
                await self._log_rows(
                    ids, records, variant, handle, None, elapsed if timed_out else None, status, 0, rollout_id, detail
                )
                log.warning(
                    "%s v%s %s (%s); %s",
                    variant,
                    handle.version,
                    "missed its deadline" if timed_out else "failed",
                    detail,
                    "the other variant answers instead" if fallback else "no variant left to answer",
                )
                continue
            self.breakers[variant].success()
            self._note_in_time(variant, started)
            self.metrics.breaker_open.labels(variant).set(0)
            self.metrics.requests.labels(variant, "ok").inc()
            self.metrics.predictions.labels(variant).inc(len(preds))
            self.metrics.latency.labels(variant).observe(latency / 1000.0)
            await self._log_rows(ids, records, variant, handle, preds, latency, "ok", 1, rollout_id)
            self._remember(ids, handle.version)
            if rollout is not None and rollout.shadow and challenger is not None and variant == CHAMPION:
                self._shadow(ids, records, challenger, rollout_id, LAST_RESORT_SECONDS)
            return {
                "predictions": [
                    {
                        "request_id": rid,
                        "prediction": p,
                        "variant": variant,
                        "model_version": handle.version,
                        "semver": handle.semver,
                    }
                    for rid, p in zip(ids, preds, strict=True)
                ]
            }
        raise Unavailable("every model variant is failing or its circuit is open")

    def _note_in_time(self, variant: str, started: float) -> None:
        """Remember an answer that met the rollout's deadline: evidence that the host could serve at that moment."""
        if self.deadline is not None and self.rollout is not None:
            ended = time.perf_counter()
            if ended - started <= self.deadline:
                self.in_time[variant].add(started, ended)

    def _judge_miss(self, variant: str, started: float, ended: float) -> str:
        """Charge a deadline miss to the variant's breaker only when it is the model's fault: the other variant
        answered a request from start to finish, in time, while this one waited (``deployments.router``). Returns
        the verdict for the recorded detail."""
        other = CHALLENGER if variant == CHAMPION else CHAMPION
        fault = self.in_time[other].answered_within(started, ended)
        self.breakers[variant].deadline_missed(fault)
        self.metrics.deadline_misses.labels(variant, "model" if fault else "host").inc()
        if fault:
            return f"; the {other} answered in time meanwhile: counted against the circuit"
        return f"; no answer of the {other} in time meanwhile (a host stall?): not counted against the circuit"

    async def _run(
        self, variant: str, handle: ModelHandle, records: list[dict[str, Any]], deadline: float | None
    ) -> tuple[list[Any], float]:
        """Predict through the variant's batcher and return (answers, model time in ms); past ``deadline`` seconds
        (during a rollout, for both variants alike) raise ``DeadlineMissed``."""
        return await self.batchers[variant].predict(handle, records, deadline)

    def _shadow(
        self,
        ids: list[str],
        records: list[Any],
        handle: ModelHandle,
        rollout_id: int | None,
        deadline: float | None,
    ) -> None:
        with self._shadow_lock:
            if self._shadow_in_flight >= 64 or not self.breakers[CHALLENGER].allow():
                return  # shadow scoring is best effort: never let it queue up behind real traffic
            self._shadow_in_flight += 1

        async def score() -> None:
            started = time.perf_counter()
            try:
                preds, latency = await self._run(CHALLENGER, handle, records, deadline)
                self.breakers[CHALLENGER].success()
                self._note_in_time(CHALLENGER, started)
                self.metrics.requests.labels(CHALLENGER, "shadow").inc()
                await self._log_rows(ids, records, CHALLENGER, handle, preds, latency, "shadow", 0, rollout_id)
            except Exception as err:
                ended = time.perf_counter()
                elapsed = (ended - started) * 1000.0
                timed_out = isinstance(err, DeadlineMissed)
                status = "shadow_timeout" if timed_out else "shadow_error"
                if timed_out:
                    detail = deadline_detail(deadline, elapsed) + self._judge_miss(CHALLENGER, started, ended)
                else:
                    detail = error_detail(err)
                    self.breakers[CHALLENGER].failure()
                self.metrics.requests.labels(CHALLENGER, status).inc()
                await self._log_rows(
                    ids, records, CHALLENGER, handle, None, elapsed if timed_out else None, status, 0, rollout_id,
                    detail,
                )  # fmt: skip
                log.warning("shadow challenger v%s %s (%s)", handle.version, status.replace("shadow_", ""), detail)
            finally:
                with self._shadow_lock:
                    self._shadow_in_flight -= 1

        task = asyncio.get_running_loop().create_task(score())
        self._shadow_tasks.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._shadow_tasks.discard)

    async def _log_rows(
        self,
        ids: list[str],
        records: list[Any],
        variant: str,
        handle: ModelHandle,
        preds: list[Any] | None,
        latency: float | None,
        status: str,
        served: int,
        rollout_id: int | None,
        detail: str | None = None,
    ) -> None:
        at = utcnow()  # one completion time per request: the latency guard pairs requests by start time
        # durable before the answer is returned: one journal commit for the rows of every answer of this loop pass
        await self.log_commits.add(
            [
                {
                    "request_id": rid,
                    "model_name": self.model_name,
                    "variant": variant,
                    "model_version": handle.version,
                    "status": status,
                    "served": served,
                    "features": records[i],
                    "prediction": None if preds is None else encode_value(preds[i]),
                    "latency_ms": latency,
                    "rollout_id": rollout_id,
                    "detail": detail,
                    "at": at,
                }
                for i, rid in enumerate(ids)
            ]
        )

    # ---- feedback --------------------------------------------------------------------------------------------
    def _remember(self, ids: list[str], version: str) -> None:
        issued = self._issued
        for rid in ids:
            issued[rid] = version
        if len(issued) > self.recent_ids:
            self._issued = _newest_half(issued)

    def label_problem(self, label: Any) -> str | None:
        """Why ``label`` cannot be a true value of this model's target, or None."""
        return label_error(label, self.config.evaluation.problem_type, self._label_classes)

    def known_locally(self, request_id: str) -> tuple[bool, str | None]:
        """(answered recently by this process, the label that counts if one arrived here)."""
        return request_id in self._issued, self._labelled.get(request_id)

    def accept_label(self, request_id: str, label: Any) -> str | None:
        """Store a label unless one already counts for ``request_id`` (corrections off); return the label that
        already counts (refused) or None (stored). No await in here: the check and the write are one step."""
        first = self._labelled.get(request_id)
        if first is not None and not self.corrections:
            return first
        self._labelled.pop(request_id, None)  # re-inserted last: the newest survive a trim
        self._labelled[request_id] = encode_value(label)
        if len(self._labelled) > self.recent_ids:
            self._labelled = _newest_half(self._labelled)
        self.log.record_feedback(request_id, label)
        return None

    def note_stored_label(self, request_id: str, encoded: str) -> None:
        """Remember a label found in the store (answered by another worker or before a restart)."""
        if request_id not in self._labelled:
            self._labelled[request_id] = encoded
            if len(self._labelled) > self.recent_ids:
                self._labelled = _newest_half(self._labelled)

    def authorized(self, request: Request) -> bool:
        return bearer_matches(request.headers.get("authorization"), self.token)


def _newest_half(entries: dict[str, str]) -> dict[str, str]:
    """The newer half of an insertion-ordered dict (amortised O(1) per insert; older ids fall back to the store)."""
    return dict(itertools.islice(entries.items(), len(entries) // 2, None))


def bearer_matches(header: str | bytes | None, token: str | None) -> bool:
    """``Authorization: Bearer <token>`` and nothing else, compared in constant time; False when no token is set."""
    if not token or not header:
        return False
    value = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, supplied = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.strip().encode(), token.encode())


def error_detail(err: BaseException) -> str:
    """An exception as the logs and the prediction log name it: type and message."""
    message = str(err).strip()
    return (f"{type(err).__name__}: {message}" if message else type(err).__name__)[:300]


def deadline_detail(deadline: float | None, elapsed_ms: float) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    limit = "none" if deadline is None else f"{deadline * 1000:g} ms"
    return f"deadline {limit}, elapsed {elapsed_ms:.1f} ms, host load {load:.2f} (1-min average, {os.cpu_count()} CPUs)"


def warm_up(handle: ModelHandle) -> None:
    """One throw-away predict on a neutral record, so the first real answer of a freshly loaded model does not pay
    for lazy initialisation (the latency guard compares it with a warm champion)."""
    neutral = {"string": "", "boolean": False}
    record = {name: neutral.get(kind, 0.0) for name, kind in handle.column_types.items()}
    try:
        timed_predict(handle, [record])
    except Exception as err:  # a model that rejects the neutral record is still served; say so once
        log.info("warm-up of v%s skipped (%s)", handle.version, error_detail(err))


def label_classes(handles: Any) -> list[Any] | None:
    """The classes the loaded models know (scikit-learn's ``classes_``), or None when no model says."""
    classes: list[Any] = []
    for handle in handles:
        known = getattr(handle.model, "classes_", None)
        if known is None:
            continue
        for value in list(known):
            value = value.item() if hasattr(value, "item") else value
            if value not in classes:
                classes.append(value)
    return classes or None


class Unavailable(Exception):
    pass
