"""Fixtures for gateway and rollout tests (loaded by tests/conftest.py): a registry with a champion and a
challenger (trained for real, no Prefect needed) and a real gateway served by uvicorn on a free 127.0.0.1 port in a
background thread."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest

from core.config import ProjectConfig, load_config
from core.notify import WEBHOOK_ENV
from deployments.gateway import Gateway
from deployments.serve import BackgroundServer, serve_in_background
from services.context import open_context
from tests.conftest import DEMO_CONFIG
from tests.helpers import train_and_register

TOKEN = "test-admin-token"


def register(settings: Any, config: ProjectConfig, semver: str, alias: str | None, **params: Any) -> str:
    return train_and_register(
        settings, config, semver, alias, actor="test", description=f"test model {semver}", **params
    )


@pytest.fixture
def demo_config() -> ProjectConfig:
    return load_config(DEMO_CONFIG)


@pytest.fixture
def two_models(settings: Any, demo_config: ProjectConfig) -> dict[str, str]:
    return {
        "champion": register(settings, demo_config, "1.0.0", "champion"),
        "challenger": register(settings, demo_config, "1.1.0", "challenger", C=0.5),
    }


class Served(BackgroundServer):
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@pytest.fixture
def serve_gateway(settings: Any, demo_config: ProjectConfig) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(config: ProjectConfig | None = None, **kwargs: Any) -> Served:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("poll_interval", 0.2)
        gateway = Gateway(open_context(settings, config=config or demo_config), **kwargs)
        bg = serve_in_background(gateway)
        served = Served(bg.url, bg.gateway, bg.server, bg.thread)
        started.append(served)
        return served

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()
