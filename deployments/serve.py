"""Running the gateway: ``mlops serve`` (uvicorn on 127.0.0.1 by default) and an app factory for ``--workers``."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from core import logs
from core.settings import Settings, get_settings
from deployments.gateway import Gateway
from deployments.http import GatewayApp, create_app
from services.context import open_context

TOKEN_ENV = "MLOPS_GATEWAY_TOKEN"  # read through Settings.gateway_token


def build_gateway(settings: Settings) -> Gateway:
    return Gateway(open_context(settings))


def app_factory() -> GatewayApp:
    """Used by uvicorn (``factory=True``) so every worker process builds its own gateway from the environment."""
    settings = get_settings()
    logs.configure(settings)  # a worker process of its own: its logging is set up here, once
    settings.apply_to_environment()
    return create_app(build_gateway(settings), own_process=True)


def uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    """With json logs uvicorn installs no handlers of its own: its lines reach the root logger's JSON handler (its
    plain access log stays off; the gateway writes a structured one). With text, uvicorn's usual console lines."""
    return None if settings.log_format == "json" else LOGGING_CONFIG


def serve(settings: Settings, host: str, port: int, workers: int, log_level: str = "warning") -> None:
    settings.export_to_children()  # uvicorn's workers rebuild the settings from the environment
    uvicorn.run(
        "deployments.serve:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        log_config=uvicorn_log_config(settings),
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class BackgroundServer:
    """A gateway served by uvicorn in a thread of this process (the tests use it)."""

    url: str
    gateway: Gateway
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.gateway.stop()


def serve_in_background(gateway: Gateway, host: str = "127.0.0.1", port: int | None = None) -> BackgroundServer:
    gateway.start()
    port = port or free_port(host)
    config = uvicorn.Config(
        create_app(gateway, manage_lifecycle=False),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        log_config=uvicorn_log_config(gateway.context.settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        gateway.stop()
        raise RuntimeError(f"the gateway did not start on {host}:{port}")
    return BackgroundServer(f"http://{host}:{port}", gateway, server, thread)
