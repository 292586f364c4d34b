"""Container tests run against a real Docker engine (`make test-containers`; `.ci/run` starts one with
../shared/tools/container-engine first). Where no engine answers they skip and say so: nothing here pretends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

MLOPS = str(Path(sys.executable).with_name("mlops"))


def engine_or_skip() -> None:
    from core.errors import MlopsError
    from deployments.image import docker_client

    try:
        docker_client()
    except MlopsError as err:
        pytest.skip(f"no Docker engine here ({err}); run ../shared/tools/container-engine to get one")


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The project image, built by `mlops image build` (the command under test) once per session."""
    engine_or_skip()
    home = tmp_path_factory.mktemp("image-home")
    tag = f"mlops:test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MLOPS_HOME": str(home)}
    done = subprocess.run(
        [MLOPS, "image", "build", "--tag", tag], cwd=REPO, env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield tag
    # keep the parent layers: they are the build cache the next run reuses (the dependency layer takes minutes)
    subprocess.run(["docker", "rmi", "--no-prune", tag], capture_output=True, timeout=120)


def wait_ready(url: str, timeout: float = 180) -> httpx.Response | None:
    """Poll a gateway's /readyz until it answers 200 or ``timeout`` passes; the last answer (None if none came)."""
    deadline, ready = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{url}/readyz", timeout=3)
            if ready.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return ready


def predict_one(url: str) -> dict[str, object]:
    """One answer of the gateway for a record of the demo's features."""
    from core.config import load_config
    from tests.conftest import DEMO_CONFIG

    record = {f: 1.0 for f in load_config(DEMO_CONFIG).data.features}
    answer: dict[str, object] = httpx.post(f"{url}/v1/predict", json={"records": [record]}, timeout=10).json()[
        "predictions"
    ][0]
    return answer


@pytest.fixture
def postgres_on_the_bridge() -> Iterator[int]:
    """A TCP forwarder on the host's Docker-bridge address to the machine's PostgreSQL (which listens on 127.0.0.1
    only), so containers reach it as host.docker.internal; yields its port."""
    import asyncio
    import threading

    bridge = json.loads(
        subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True, text=True).stdout
    )
    device = bridge[0]["Options"].get("com.docker.network.bridge.name", "docker0")
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", device], capture_output=True, text=True).stdout.split()
    address = shown[shown.index("inet") + 1].split("/")[0]  # what host.docker.internal:host-gateway resolves to
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", 5432)
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = loop.run_until_complete(asyncio.start_server(handle, address, 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
