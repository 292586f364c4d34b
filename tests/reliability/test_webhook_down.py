"""The webhook endpoint down (a closed port) or failing (HTTP 500) while ``mlops rollback`` notifies: the rollback is
done all the same, and the command's output says the notice was not delivered, where to, and what to do."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from core.config import ProjectConfig
from core.names import CHAMPION, PREVIOUS
from services.context import open_context
from tests.conftest import REPO
from tests.gateway_fixtures import register
from tests.reliability.test_interrupted_request import environment


@pytest.fixture
def failing_endpoint() -> Iterator[tuple[str, list[int]]]:
    """A webhook answering every notice with HTTP 500; yields its URL and how many posts it received."""
    posts: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(1)
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/s3cret-token", posts
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(240)
@pytest.mark.parametrize("endpoint", ["closed port", "HTTP 500"])
def test_a_dead_webhook_does_not_stop_the_rollback_and_the_user_is_told(
    settings: Any,
    demo_config: ProjectConfig,
    prefect_api_url: str,
    failing_endpoint: tuple[str, list[int]],
    endpoint: str,
) -> None:
    first = register(settings, demo_config, "1.0.0", "champion")
    second = register(settings, demo_config, "1.1.0", None)
    context = open_context(settings, config=demo_config)
    context.registry.promote(second, actor="test", reason="a promotion that goes bad")
    url = f"http://127.0.0.1:{closed_port()}/hooks/s3cret-token" if endpoint == "closed port" else failing_endpoint[0]

    env = environment(settings.home_dir, PREFECT_API_URL=prefect_api_url, MLOPS_WEBHOOK_URL=url, COLUMNS="1000")
    done = subprocess.run(
        [sys.executable, "-m", "mlops.cli", "rollback", "--in-process", "--reason", "p95 over SLO"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    assert context.registry.aliases().get(CHAMPION) == first and PREVIOUS not in context.registry.aliases()
    assert "rolled back" in done.stdout
    host = url.split("/hooks")[0]
    line = next((ln for ln in said.splitlines() if "notice was not delivered" in ln), "")
    assert f"the model.rolled_back notice was not delivered to the webhook at {host}" in line, said[-3000:]
    assert ("HTTP Error 500" if endpoint == "HTTP 500" else "Connection refused") in line
    assert "MLOPS_WEBHOOK_URL" in line and "the work itself is done" in line
    assert "s3cret-token" not in said, "the webhook's secret path was printed"
    if endpoint == "HTTP 500":
        assert len(failing_endpoint[1]) == 2  # one retry, then given up
