"""The gateway's HTTP surface. ``POST /v1/predict`` and ``/v1/feedback`` are answered by a small ASGI front
(``GatewayApp``) that skips FastAPI's per-request layers; ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/rollout``
and the token-protected admin endpoints are a FastAPI app behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from starlette.requests import ClientDisconnect

from core.names import CHAMPION
from deployments.gateway import Gateway, Unavailable
from deployments.inputs import InvalidInput, feedback_errors, parse_json

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


def answer_feedback(gateway: Gateway, body: bytes) -> Answer:
    parsed = parse_json(body)
    items = parsed.get("feedback", [parsed]) if isinstance(parsed, dict) else parsed
    if not isinstance(items, list) or not items:
        raise InvalidInput([{"field": "feedback", "error": "expected {request_id, label} or a list of them"}])
    if errors := feedback_errors(items):
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
            None, lambda: decide_by_person(gateway.context, action, reason)
        )
        await asyncio.get_running_loop().run_in_executor(None, gateway.refresh)
        return JSONResponse(result)

    return GatewayApp(gateway, app)
