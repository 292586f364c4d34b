"""The serving gateway: champion and challenger side by side behind one HTTP API, routed by the live rollout.

Endpoints: ``POST /v1/predict``, ``POST /v1/feedback``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``,
``GET /v1/rollout``, and the token-protected ``POST /v1/admin/reload``, ``POST /v1/rollout/approve|abort``.

Design points:
- Models come only from the configured MLflow registry, by alias, and are swapped in place when an alias moves
  (load the new model first, then replace one reference): in-flight requests finish on the model they started on.
- With no rollout the champion answers through an adaptive batcher (``Batcher``): requests that arrive while a
  predict runs share the next predict call (8 rows cost what 1 row costs). During a rollout both variants run in
  one small thread pool (so their latencies are comparable) and the challenger has a deadline: a hanging or failing
  challenger costs the caller one timeout at most and then the champion's answer. A circuit breaker stops sending
  to a failing variant.
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
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request

from core.errors import UnsafeModelError
from core.names import CHALLENGER, CHAMPION
from core.notify import notify
from core.store.predictions import encode_value
from core.store.rollouts import Rollout
from deployments.batching import Batcher, timed_predict
from deployments.inputs import check_output, records_frame, validate_records
from deployments.metrics import Metrics
from deployments.model_loading import ModelHandle, load_handle
from deployments.router import CircuitBreaker, choose_variant
from services.context import ProjectContext

log = logging.getLogger("mlops.gateway")


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
    ) -> None:
        config = context.config
        self.context = context
        self.config = config
        self.model_name = config.model_name
        self.token = token or context.settings.gateway_token or None
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        self.challenger_timeout = config.rollout.challenger_timeout_ms / 1000.0
        self.client = context.mlflow
        self.rollouts = context.rollouts
        self.log = context.predictions
        self.breakers = {v: CircuitBreaker(breaker_threshold, breaker_cooldown) for v in (CHAMPION, CHALLENGER)}
        self.handles: dict[str, ModelHandle] = {}
        self.refused: set[tuple[str, str]] = set()  # (alias, version) refused by the loader's allowlist
        self.rollout: Rollout | None = None
        self.metrics = Metrics()
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="model")
        self.batcher = Batcher(self.executor)
        self._shadow_in_flight = 0
        self._shadow_lock = threading.Lock()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self.last_refresh_error: str | None = None
        # request ids: a random per-process prefix and a counter (unique across gateways and restarts, and about
        # 10x cheaper than a uuid4 per record, which reads the OS entropy pool every time)
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = itertools.count()

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
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
                        handles[alias] = handle
                        log.info("loaded %s = v%s (%s)", alias, handle.version, handle.semver)
            self.handles = handles  # one reference swap: requests in flight keep the handle they took
            self.metrics.model_info.clear()
            for alias, h in handles.items():
                self.metrics.model_info.labels(alias, h.version, h.semver or "").set(1)

    def _load(self, alias: str, version: str) -> ModelHandle | None:
        """Load the alias's version, or keep serving what is loaded and say why not (``/readyz``, the log)."""
        try:
            return load_handle(self.context.registry, alias)
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
    def new_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

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
        ids = [self.new_id() for _ in records]
        weight = rollout.served_weight if rollout else 0.0
        primary = choose_variant(weight, routing_key, salt=str(rollout.id) if rollout else "")
        order = (
            [(CHALLENGER, challenger), (CHAMPION, champion)]
            if primary == CHALLENGER
            else [(CHAMPION, champion), (CHALLENGER, challenger)]
        )
        rollout_id = rollout.id if rollout else None
        for variant, handle in order:
            if handle is None or not self.breakers[variant].allow():
                continue
            try:
                if handle.column_types != schema_of.column_types:
                    validate_records(records, handle)
                preds, latency = await self._run(variant, handle, records, rollout)
            except Exception as err:
                self.breakers[variant].failure()
                self.metrics.breaker_open.labels(variant).set(1 if self.breakers[variant].state != "closed" else 0)
                self.metrics.requests.labels(variant, "fallback").inc()
                self._log_rows(ids, records, variant, handle, None, None, "fallback", 0, rollout_id)
                log.warning("%s v%s failed (%s); trying the other variant", variant, handle.version, err)
                continue
            self.breakers[variant].success()
            self.metrics.breaker_open.labels(variant).set(0)
            self.metrics.requests.labels(variant, "ok").inc()
            self.metrics.predictions.labels(variant).inc(len(preds))
            self.metrics.latency.labels(variant).observe(latency / 1000.0)
            self._log_rows(ids, records, variant, handle, preds, latency, "ok", 1, rollout_id)
            if rollout is not None and rollout.shadow and challenger is not None and variant == CHAMPION:
                self._shadow(ids, records, challenger, rollout_id)
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

    async def _run(
        self, variant: str, handle: ModelHandle, records: list[dict[str, Any]], rollout: Rollout | None
    ) -> tuple[list[Any], float]:
        """Predict and return (answers, model time in ms).

        With no rollout the champion answers through the batcher (the fast path). During a rollout both variants run
        in the same thread pool, so the latency guard compares the models under the same conditions; only the challenger
        has a deadline, so a hanging challenger costs the caller one timeout and then the champion's answer.
        """
        if rollout is None:
            return await self.batcher.predict(handle, records)
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self.executor, timed_predict, handle.model, records_frame(records, handle))
        timeout = self.challenger_timeout if variant == CHALLENGER else None
        raw, latency = await asyncio.wait_for(call, timeout=timeout)
        return check_output(raw, len(records)), latency

    def _shadow(self, ids: list[str], records: list[Any], handle: ModelHandle, rollout_id: int | None) -> None:
        with self._shadow_lock:
            if self._shadow_in_flight >= 8 or not self.breakers[CHALLENGER].allow():
                return  # shadow scoring is best effort: never let it queue up behind real traffic
            self._shadow_in_flight += 1

        def score() -> None:
            try:
                raw, latency = timed_predict(handle.model, records_frame(records, handle))
                preds = check_output(raw, len(records))
                self.breakers[CHALLENGER].success()
                self.metrics.requests.labels(CHALLENGER, "shadow").inc()
                self._log_rows(ids, records, CHALLENGER, handle, preds, latency, "shadow", 0, rollout_id)
            except Exception:
                self.breakers[CHALLENGER].failure()
                self.metrics.requests.labels(CHALLENGER, "shadow_error").inc()
                self._log_rows(ids, records, CHALLENGER, handle, None, None, "shadow_error", 0, rollout_id)
            finally:
                with self._shadow_lock:
                    self._shadow_in_flight -= 1

        self.executor.submit(score)

    def _log_rows(
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
    ) -> None:
        # one durable journal commit for the request's rows, before its answer is returned
        self.log.record_many(
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
                }
                for i, rid in enumerate(ids)
            ]
        )

    def authorized(self, request: Request) -> bool:
        if not self.token:
            return False
        supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(supplied.encode(), self.token.encode())


class Unavailable(Exception):
    pass
