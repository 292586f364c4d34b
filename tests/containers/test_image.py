"""The image as an operator runs it: the gateway from the image against a mounted home, over PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from core.config import load_config
from core.settings import Settings
from deployments.serve import free_port
from tests.conftest import DEMO_CONFIG
from tests.containers.conftest import predict_one, wait_ready
from tests.helpers import train_and_register

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]  # the first includes building the image


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def test_the_gateway_serves_from_the_image_as_a_non_root_healthy_container(
    image: str, settings: Settings, home: Path, postgres_on_the_bridge: int
) -> None:
    train_and_register(settings, load_config(DEMO_CONFIG), "1.0.0", "champion", actor="test", description="t")
    for path in [home, *home.rglob("*")]:  # the container's user (uid 10001) reads the home and writes SQLite's journal
        path.chmod(0o777 if path.is_dir() else 0o666)
    port, name = free_port(), f"mlops-test-{uuid.uuid4().hex[:8]}"
    database = f"postgresql://postgres@host.docker.internal:{postgres_on_the_bridge}/test"
    run = docker(
        "run", "-d", "--name", name, "--add-host", "host.docker.internal:host-gateway",
        "-p", f"127.0.0.1:{port}:8080",  # the image's own command: `mlops serve` on 8080, which its HEALTHCHECK probes
        "-v", f"{home}:{home}",
        "-e", f"MLOPS_HOME={home}",
        "-e", f"MLOPS_DATABASE_URL={database}",
        image,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        ready = wait_ready(url)
        assert ready is not None and ready.status_code == 200, docker("logs", name).stderr[-3000:]
        assert ready.json()["models"]["champion"]["semver"] == "1.0.0"
        answer = predict_one(url)
        assert answer["variant"] == "champion" and answer["prediction"] in ("benign", "malignant")
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        health = ""
        while time.monotonic() < deadline + 60:
            state = json.loads(docker("inspect", name).stdout)[0]["State"]
            health = state.get("Health", {}).get("Status", "")
            if health in ("healthy", "unhealthy"):
                break
            time.sleep(2)
        assert health == "healthy", state
    finally:
        docker("rm", "-f", name)
    assert name not in docker("ps", "-a", "--format", "{{.Names}}").stdout


def test_the_image_is_labelled_with_its_code_and_champion(image: str) -> None:
    labels = json.loads(docker("inspect", image).stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"].startswith(("git:", "mlops-orchestrator=="))
    assert labels["io.mlops.model"] == "breast-cancer-classifier" and "io.mlops.champion" in labels
    assert shutil.which("docker")
