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
import collections
import hmac
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import ClientDisconnect

from deployments.prediction_log import PredictionLog, encode_value
from deployments.rollout_state import Rollout, RolloutStore
from deployments.router import CHALLENGER, CHAMPION, CircuitBreaker, choose_variant
from mlops.config import ProjectConfig
from mlops.settings import Settings

log = logging.getLogger("mlops.gateway")
NUMERIC_TYPES = {"double", "float", "long", "integer"}
MAX_RECORDS = 1000


@dataclass(frozen=True)
class ModelHandle:
    alias: str
    version: str
    semver: str | None
    model: Any
    column_types: dict[str, str]  # feature -> MLflow signature type (double, long, string, boolean, ...)
    loaded_at: float

    @property
    def features(self) -> list[str]:
        return list(self.column_types)


def load_handle(client: Any, model_name: str, alias: str) -> ModelHandle | None:
    """Load the version an alias points at (``None`` when the alias is not set)."""
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    uri = f"models:/{model_name}/{mv.version}"
    model = mlflow.sklearn.load_model(uri)
    signature = get_model_info(uri).signature
    types = {c.name: c.type.name for c in signature.inputs.inputs} if signature else {}
    return ModelHandle(alias, str(mv.version), (mv.tags or {}).get("mlops.semver"), model, types, time.time())


class InvalidInput(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid fields")
        self.errors = errors


def validate_records(records: Any, handle: ModelHandle) -> list[dict[str, Any]]:
    """Check records against the model signature; errors name record and field. ``records_frame`` builds the input
    (once per batch on the fast path: a DataFrame per request cost more than the model's share of a batch)."""
    if not isinstance(records, list) or not records:
        raise InvalidInput([{"field": "records", "error": "expected a non-empty list of objects"}])
    if len(records) > MAX_RECORDS:
        raise InvalidInput([{"field": "records", "error": f"at most {MAX_RECORDS} records per request"}])
    errors: list[dict[str, Any]] = []
    types = handle.column_types
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            errors.append({"record": i, "field": None, "error": "expected an object of feature values"})
            continue
        for name in rec.keys() - types.keys():
            errors.append({"record": i, "field": name, "error": "unknown field (not in the model signature)"})
        for name, kind in types.items():
            if name not in rec:
                errors.append({"record": i, "field": name, "error": "missing (send null for an unknown value)"})
                continue
            value = rec[name]
            if value is None:
                continue
            if kind in NUMERIC_TYPES and (isinstance(value, bool) or not isinstance(value, int | float)):
                errors.append({"record": i, "field": name, "error": f"expected a number, got {value!r}"[:200]})
            elif kind == "string" and not isinstance(value, str):
                errors.append({"record": i, "field": name, "error": f"expected a string, got {value!r}"[:200]})
            elif kind == "boolean" and not isinstance(value, bool):
                errors.append({"record": i, "field": name, "error": f"expected true or false, got {value!r}"[:200]})
        if len(errors) >= 50:
            break
    if errors:
        raise InvalidInput(errors)
    return records


def records_frame(records: list[dict[str, Any]], handle: ModelHandle) -> pd.DataFrame:
    """Build the model input in one step (validated records only). Converting column by column cost more than the
    model's own predict (about 3 ms for 30 columns, measured in benchmarks/gateway_throughput.py)."""
    features = handle.features
    numeric = [n for n, k in handle.column_types.items() if k in NUMERIC_TYPES]
    if len(numeric) == len(features):  # all numeric: one float matrix, null -> NaN
        return pd.DataFrame(np.array([[rec[f] for f in features] for rec in records], dtype=float), columns=features)
    frame = pd.DataFrame.from_records(records, columns=features)
    if numeric:
        frame[numeric] = frame[numeric].astype(float)
    return frame


def check_output(pred: Any, n: int) -> list[Any]:
    """A model answer the gateway will return: one non-missing value per record, or an error."""
    values = list(np.asarray(pred).reshape(-1)) if not isinstance(pred, list) else pred
    if len(values) != n:
        raise ValueError(f"model returned {len(values)} predictions for {n} records")
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            raise ValueError(f"model returned an invalid prediction {v!r}")
        out.append(v)
    return out


def timed_predict(model: Any, frame: pd.DataFrame) -> tuple[Any, float]:
    started = time.perf_counter()
    raw = model.predict(frame)
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
                try:
                    frame = records_frame(joined, handle)  # one frame per batch
                    raw, latency = await loop.run_in_executor(self.executor, timed_predict, handle.model, frame)
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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlops_gateway_requests", "Answers per variant and outcome.", ["variant", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mlops_gateway_predict_latency_seconds",
            "Model predict time per request.",
            ["variant"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.predictions = Counter(
            "mlops_gateway_predictions", "Records predicted per variant.", ["variant"], registry=self.registry
        )
        self.invalid = Counter("mlops_gateway_invalid_requests", "Requests rejected with 422.", registry=self.registry)
        self.model_info = Gauge(
            "mlops_gateway_model_info",
            "Loaded model per alias.",
            ["alias", "version", "semver"],
            registry=self.registry,
        )
        self.breaker_open = Gauge(
            "mlops_gateway_circuit_open", "1 while a variant's circuit is open.", ["variant"], registry=self.registry
        )
        self.challenger_weight = Gauge(
            "mlops_gateway_challenger_weight_percent", "Challenger's traffic share.", registry=self.registry
        )


class Gateway:
    """State shared by the HTTP handlers: loaded models, the live rollout, breakers, the prediction log."""

    def __init__(
        self,
        settings: Settings,
        config: ProjectConfig,
        *,
        token: str | None = None,
        poll_interval: float = 0.5,
        max_body_bytes: int = 1_000_000,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
    ) -> None:
        from tasks.tracking import configure_mlflow

        self.settings = settings
        self.config = config
        self.model_name = config.model_name
        self.token = token or None
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        self.challenger_timeout = config.rollout.challenger_timeout_ms / 1000.0
        self.client = configure_mlflow(settings)
        self.rollouts = RolloutStore(settings.store_url)
        self.log = PredictionLog(settings.store_url)
        self.breakers = {v: CircuitBreaker(breaker_threshold, breaker_cooldown) for v in (CHAMPION, CHALLENGER)}
        self.handles: dict[str, ModelHandle] = {}
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
                elif current is None or current.version != version:
                    try:
                        handle = load_handle(self.client, self.model_name, alias)
                    except Exception as err:
                        self.last_refresh_error = f"loading {alias} v{version} failed: {err}"
                        log.error(self.last_refresh_error)
                        continue
                    if handle is not None:
                        handles[alias] = handle
                        log.info("loaded %s = v%s (%s)", alias, handle.version, handle.semver)
            self.handles = handles  # one reference swap: requests in flight keep the handle they took
            self.metrics.model_info.clear()
            for alias, h in handles.items():
                self.metrics.model_info.labels(alias, h.version, h.semver or "").set(1)

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
        for i, rid in enumerate(ids):
            self.log.record(
                request_id=rid,
                model_name=self.model_name,
                variant=variant,
                model_version=handle.version,
                status=status,
                served=served,
                features=records[i],
                prediction=None if preds is None else encode_value(preds[i]),
                latency_ms=latency,
                rollout_id=rollout_id,
            )

    def authorized(self, request: Request) -> bool:
        if not self.token:
            return False
        supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(supplied.encode(), self.token.encode())


class Unavailable(Exception):
    pass


# ---- HTTP ------------------------------------------------------------------------------------------------------
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput([{"field": None, "error": f"body is not valid JSON: {err}"}]) from None


async def answer_predict(gateway: Gateway, body: bytes, routing_key: str | None) -> Answer:
    parsed = parse_json(body)
    records = parsed.get("records") if isinstance(parsed, dict) else None
    return 200, orjson.dumps(await gateway.predict(records, routing_key)), []


def answer_feedback(gateway: Gateway, body: bytes) -> Answer:
    parsed = parse_json(body)
    items = parsed.get("feedback", [parsed]) if isinstance(parsed, dict) else parsed
    if not isinstance(items, list) or not items:
        raise InvalidInput([{"field": "feedback", "error": "expected {request_id, label} or a list of them"}])
    errors = [
        {"record": i, "field": "request_id/label", "error": "each item needs request_id and label"}
        for i, item in enumerate(items)
        if not isinstance(item, dict) or not isinstance(item.get("request_id"), str) or "label" not in item
    ]
    if errors:
        raise InvalidInput(errors)
    for item in items:
        gateway.log.record_feedback(item["request_id"], item["label"])
    return 202, orjson.dumps({"accepted": len(items)}), []


def error_answer(gateway: Gateway, exc: InvalidInput | Unavailable | BodyTooLarge) -> Answer:
    """The caller-facing answer for the gateway's expected failures (anything else is a 500 and a log line)."""
    if isinstance(exc, InvalidInput):
        gateway.metrics.invalid.inc()
        return 422, orjson.dumps({"detail": "invalid input", "errors": exc.errors}), []
    if isinstance(exc, Unavailable):
        return 503, orjson.dumps({"detail": str(exc)}), [(b"retry-after", b"5")]
    return 413, orjson.dumps({"detail": f"body larger than {gateway.max_body_bytes} bytes"}), []


async def read_body(receive: Receive, content_length: bytes | None, limit: int) -> bytes:
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge()
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class GatewayApp:
    """The ASGI app uvicorn runs: ``POST /v1/predict`` and ``POST /v1/feedback`` are answered here directly, every
    other path by the FastAPI app behind it. The two hot endpoints skip FastAPI's middleware, routing, dependency and
    response layers, which cost about a fifth of the gateway's CPU per request under load (py-spy, see
    benchmarks/README.md). Their answers and error bodies are the ones the FastAPI routes gave before."""

    def __init__(self, gateway: Gateway, app: FastAPI) -> None:
        self.gateway = gateway
        self.app = app  # also reachable for tests and docs: /docs lists the admin and status endpoints

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in ("/v1/predict", "/v1/feedback"):
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        gateway = self.gateway
        if scope["method"] != "POST":
            await respond(send, 405, orjson.dumps({"detail": "use POST"}), [(b"allow", b"POST")])
            return
        headers = dict(scope["headers"])
        try:
            body = await read_body(receive, headers.get(b"content-length"), gateway.max_body_bytes)
            if path == "/v1/predict":
                key = headers.get(b"x-routing-key")
                status, payload, extra = await answer_predict(gateway, body, key.decode("latin-1") if key else None)
            else:
                status, payload, extra = answer_feedback(gateway, body)
        except ClientDisconnect:
            return  # the caller hung up mid-body; nothing to answer or log
        except (InvalidInput, Unavailable, BodyTooLarge) as exc:
            status, payload, extra = error_answer(gateway, exc)
        await respond(send, status, payload, extra)


async def respond(send: Send, status: int, payload: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def create_app(gateway: Gateway, manage_lifecycle: bool = True) -> GatewayApp:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        if manage_lifecycle:
            gateway.start()
        yield
        if manage_lifecycle:
            gateway.stop()

    app = FastAPI(title="mlops gateway", version="1", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        handles = gateway.handles
        body = {
            "ready": CHAMPION in handles,
            "models": {a: {"version": h.version, "semver": h.semver} for a, h in handles.items()},
            "last_refresh_error": gateway.last_refresh_error,
        }
        return JSONResponse(body, status_code=200 if CHAMPION in handles else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(
            generate_latest(gateway.metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/rollout")
    async def rollout() -> Response:
        r = gateway.rollout
        return JSONResponse(
            {
                "rollout": None if r is None else r.to_json(),
                "breakers": {v: b.state for v, b in gateway.breakers.items()},
            }
        )

    def admin(request: Request) -> Response | None:
        if not gateway.token:
            return JSONResponse({"detail": "admin endpoints are disabled: set MLOPS_GATEWAY_TOKEN"}, status_code=403)
        if not gateway.authorized(request):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        return None

    @app.post("/v1/admin/reload")
    async def reload(request: Request) -> Response:
        if (denied := admin(request)) is not None:
            return denied
        await asyncio.get_running_loop().run_in_executor(None, gateway.refresh)
        return JSONResponse({"models": {a: h.version for a, h in gateway.handles.items()}})

    @app.post("/v1/rollout/{action}")
    async def decide(action: str, request: Request) -> Response:
        if (denied := admin(request)) is not None:
            return denied
        if action not in ("approve", "abort"):
            return JSONResponse({"detail": "action must be approve or abort"}, status_code=404)
        from deployments.rollout import decide_by_person

        reason = request.headers.get("x-reason") or f"{action} via the gateway's admin API"
        result = await asyncio.get_running_loop().run_in_executor(
            None, lambda: decide_by_person(gateway.settings, gateway.config, action, reason)
        )
        await asyncio.get_running_loop().run_in_executor(None, gateway.refresh)
        return JSONResponse(result)

    return GatewayApp(gateway, app)
