"""The gateway's HTTP surface. ``POST /v1/predict`` and ``/v1/feedback`` are answered by a small ASGI front
(``GatewayApp``) that skips FastAPI's per-request layers; ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/rollout``
and the token-protected admin endpoints are a FastAPI app behind it."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from starlette.requests import ClientDisconnect

from core import logs
from core.names import CHAMPION
from core.store.rollouts import Rollout
from deployments.gateway import Gateway, Unavailable, bearer_matches
from deployments.inputs import InvalidInput, feedback_item_problem, parse_json

# ---- HTTP ------------------------------------------------------------------------------------------------------
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers


Receive = Callable[[], Awaitable[dict[str, Any]]]


Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


async def answer_predict(gateway: Gateway, body: bytes, routing_key: str | None) -> Answer:
    parsed = parse_json(body)
    records = parsed.get("records") if isinstance(parsed, dict) else None
    return 200, orjson.dumps(await gateway.predict(records, routing_key)), []


MAX_FEEDBACK_ITEMS = 1000


async def answer_feedback(gateway: Gateway, body: bytes, authorization: bytes | None = None) -> Answer:
    """Labels for answers this gateway gave. A single ``{request_id, label}`` gets its own status (202, or 404 for
    an id the gateway never issued, 409 for a second label, 422 for a label of the wrong type); a batch
    (``{"feedback": [...]}`` or a list) stores its good items and answers 202, or 207 listing each refused one."""
    if gateway.feedback_token and not bearer_matches(authorization, gateway.feedback_token):
        detail = "feedback needs the header Authorization: Bearer <MLOPS_FEEDBACK_TOKEN>"
        return 401, orjson.dumps({"detail": detail}), [(b"www-authenticate", b"Bearer")]
    parsed = parse_json(body)
    single = isinstance(parsed, dict) and "feedback" not in parsed
    items = [parsed] if single else parsed.get("feedback") if isinstance(parsed, dict) else parsed
    if single and isinstance(parsed.get("request_id"), str):
        logs.annotate(prediction_id=parsed["request_id"])  # follow one answer from predict to its label
    if not isinstance(items, list) or not items:
        raise InvalidInput([{"field": "feedback", "error": "expected {request_id, label} or a list of them"}])
    if len(items) > MAX_FEEDBACK_ITEMS:
        raise InvalidInput([{"field": "feedback", "error": f"at most {MAX_FEEDBACK_ITEMS} labels per request"}])

    refused: dict[int, dict[str, Any]] = {}
    ready: list[int] = []
    for i, item in enumerate(items):
        rid = item.get("request_id") if isinstance(item, dict) else None
        if (stored_as := feedback_item_problem(item)) is not None:
            field, error = stored_as
            refused[i] = _refusal(i, rid if field == "label" else None, 422, field, error)
        elif (problem := gateway.label_problem(item["label"])) is not None:
            refused[i] = _refusal(i, rid, 422, "label", problem)
        else:
            ready.append(i)

    # Ids this process did not answer recently may have been answered by another worker or before a restart: ask
    # the prediction log (off the event loop), once more after a flush interval for answers still in a buffer.
    remote = sorted({items[i]["request_id"] for i in ready if not gateway.known_locally(items[i]["request_id"])[0]})
    issued: set[str] = set()
    stored: dict[str, str] = {}
    if remote:
        loop = asyncio.get_running_loop()
        issued, stored = await loop.run_in_executor(None, gateway.log.lookup, remote)
        if missing := [rid for rid in remote if rid not in issued]:
            await asyncio.sleep(2 * gateway.log.flush_interval + 0.1)
            more, more_labels = await loop.run_in_executor(None, gateway.log.lookup, missing)
            issued |= more
            stored.update(more_labels)
    for rid, encoded in stored.items():
        gateway.note_stored_label(rid, encoded)

    accepted = 0
    for i in ready:
        rid, label = items[i]["request_id"], items[i]["label"]
        if not gateway.known_locally(rid)[0] and rid not in issued:
            refused[i] = _refusal(
                i, rid, 404, "request_id", f"unknown request id {rid!r}: this gateway never answered it (or it expired)"
            )
            continue
        first = gateway.accept_label(rid, label)
        if first is not None:
            refused[i] = _refusal(
                i,
                rid,
                409,
                "label",
                f"request id {rid!r} already has the label {orjson.loads(first)!r}, which counts; a second label is "
                "refused (set MLOPS_FEEDBACK_CORRECTIONS=true to let the last label count instead)",
            )
            continue
        accepted += 1
    if single and refused:
        item = refused[0]
        detail = {404: "unknown request id", 409: "already labelled", 422: "invalid input"}[item["status"]]
        return item["status"], orjson.dumps({"detail": detail, "errors": [item]}), []
    if refused:
        body_out = {"accepted": accepted, "rejected": [refused[i] for i in sorted(refused)]}
        return 207, orjson.dumps(body_out), []
    return 202, orjson.dumps({"accepted": accepted}), []


def _refusal(index: int, request_id: str | None, status: int, field: str | None, error: str) -> dict[str, Any]:
    return {"record": index, "request_id": request_id, "status": status, "field": field, "error": error}


def rollout_summary(rollout: Rollout) -> dict[str, Any]:
    """The live rollout without its per-poll decision log (that needs the admin token): state and last decision."""
    full = rollout.to_json()
    steps = full.pop("steps")
    full.pop("policy")
    last = steps[-1] if steps else {}
    full["last_decision"] = (
        {"at": last.get("at"), "action": last.get("action"), "reason": last.get("reason")} if last else None
    )
    full["decisions_logged"] = len(steps)
    return full


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
    benchmarks/README.md). Their answers and error bodies are the ones the FastAPI routes gave before.

    Every HTTP request gets a request id (the caller's valid ``x-request-id``, else a new one), returned in the
    ``x-request-id`` response header and bound to the log context, so every line logged while handling it carries
    it; with ``access_log`` one structured line per request follows its answer (core/logs.py)."""

    def __init__(self, gateway: Gateway, app: FastAPI, access_log: bool = False) -> None:
        self.gateway = gateway
        self.app = app  # also reachable for tests and docs: /docs lists the admin and status endpoints
        self.access_log = access_log

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        started = time.perf_counter()
        supplied = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id, kept = logs.request_id_from(supplied)
        # uvicorn runs each request in a task of its own, so the context needs no reset: it ends with the task (and
        # uvicorn's own "Exception in ASGI application" line, logged after this returns, still carries the id)
        logs.bind(request_id=request_id)
        id_header = (b"x-request-id", request_id.encode())
        status: int | None = None

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        failed = True
        try:
            await self.route(scope, receive, send_with_id)
            failed = False
        finally:
            if status is None:  # nothing answered: uvicorn answers 500 for an exception; 499: the caller hung up
                status = 500 if failed else 499
            if self.access_log:
                client = scope.get("client")
                extra = {} if kept or supplied is None else {"request_id_replaced": True}
                logs.log_access(scope["method"], scope["path"], status, started, client[0] if client else None, **extra)

    async def route(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if path not in ("/v1/predict", "/v1/feedback"):
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
                status, payload, extra = await answer_feedback(gateway, body, headers.get(b"authorization"))
        except ClientDisconnect:
            return  # the caller hung up mid-body; nothing to answer or log
        except (InvalidInput, Unavailable, BodyTooLarge) as exc:
            status, payload, extra = error_answer(gateway, exc)
        await respond(send, status, payload, extra)


async def respond(send: Send, status: int, payload: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def create_app(
    gateway: Gateway, manage_lifecycle: bool = True, access_log: bool | None = None, own_process: bool = False
) -> GatewayApp:
    """The gateway's ASGI app; ``access_log`` defaults to the settings (MLOPS_ACCESS_LOG, on with json logs).

    ``own_process``: this process serves the gateway and nothing else (``mlops serve``), so once the models are
    loaded its heap is frozen (``gc.freeze``): the million-odd objects of the imported libraries (MLflow, pandas,
    SciPy, scikit-learn) leave the garbage collector's view. Without it, under load, answers in flight promoted
    into the oldest generation set off a full collection about once a second, and each one walked that whole heap
    with the GIL held: 190-260 ms (collecting nothing) at 1,600-2,700 requests/s, every request waiting meanwhile.
    Not done in a shared process (the tests' in-thread gateway): frozen objects are never collected as cyclic
    garbage. It also drains the prediction log's journal from a child process (``core.store.drainer``): in a thread,
    the drain's share of the GIL made the tail of the answers under load."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        if own_process:
            from core.store.drainer import Drainer

            gateway.log.child_drainer = Drainer
        if manage_lifecycle:
            gateway.start()
        if own_process:
            gc.collect()  # what is garbage now is not frozen with the rest
            gc.freeze()
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
            "models": {
                a: {"version": h.version, "semver": h.semver, "fast_path": h.fast_path} for a, h in handles.items()
            },
            "last_refresh_error": gateway.last_refresh_error,
        }
        return JSONResponse(body, status_code=200 if CHAMPION in handles else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(
            generate_latest(gateway.metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/rollout")
    async def rollout(request: Request) -> Response:
        r = gateway.rollout
        full = gateway.authorized(request)
        return JSONResponse(
            {
                "rollout": None if r is None else r.to_json() if full else rollout_summary(r),
                "breakers": {v: b.state for v, b in gateway.breakers.items()},
                "breaker_detail": {v: b.to_json() for v, b in gateway.breakers.items()},
                "decision_log": "included" if full else "omitted: send Authorization: Bearer <MLOPS_GATEWAY_TOKEN>",
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
            None, lambda: decide_by_person(gateway.context, action, reason)
        )
        await asyncio.get_running_loop().run_in_executor(None, gateway.refresh)
        return JSONResponse(result)

    if access_log is None:
        access_log = gateway.context.settings.access_log_enabled
    return GatewayApp(gateway, app, access_log)
