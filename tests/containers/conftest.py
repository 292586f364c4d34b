"""Container tests run against a real Docker engine (`make test-containers`; `.ci/run` starts one with
../shared/tools/container-engine first). Where no engine answers they skip and say so: nothing here pretends."""

from __future__ import annotations

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
