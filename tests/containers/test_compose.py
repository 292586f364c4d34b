"""docker/compose.yaml brought up for real (the machine's PostgreSQL standing in for the postgres image, which cannot
be pulled here): a change request runs through the deployed lifecycle flow on the worker container, the gateway
container serves the new champion, and `down` leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from deployments.serve import free_port
from tests.conftest import REPO
from tests.containers.conftest import predict_one, wait_ready

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]  # the first includes building the image
ADMIN = os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _sql(statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def test_the_compose_stack_runs_the_lifecycle_and_serves(
    image: str, tmp_path: Path, postgres_on_the_bridge: int
) -> None:
    project = f"mlops{uuid.uuid4().hex[:6]}"
    databases = {key: f"{project}_{key.lower()}" for key in ("MLOPS_DB", "MLFLOW_DB", "PREFECT_DB")}
    for db in databases.values():
        _sql(f"CREATE DATABASE {db}")
    ports = {"GATEWAY_PORT": str(free_port())}
    bridge_pg = f"postgresql://postgres@host.docker.internal:{postgres_on_the_bridge}/test"
    env_file = tmp_path / ".env"
    env_file.write_text(
        "\n".join(
            f"{k}={v}"
            for k, v in {
                "MLOPS_IMAGE": image,
                "POSTGRES_USER": "postgres",
                "POSTGRES_PASSWORD": "unused-with-trust-auth",
                "POSTGRES_HOST": "host.docker.internal",
                "POSTGRES_PORT": str(postgres_on_the_bridge),
                "PREFECT_AUTH": "admin:compose-test",
                "MLFLOW_ADMIN_PASSWORD": "compose-mlflow-test",
                "MLFLOW_SECRET_KEY": uuid.uuid4().hex,
                "MLOPS_DATABASE_CHECK_URL": bridge_pg,
                **databases,
                **ports,
            }.items()
        )
        + "\n"
    )
    compose = [
        "docker-compose", "-p", project, "--env-file", str(env_file),
        "-f", str(REPO / "docker" / "compose.yaml"), "-f", str(REPO / "docker" / "compose.host-postgres.yaml"),
    ]  # fmt: skip

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)

    started = time.monotonic()
    try:
        up = run("up", "-d", "--no-build")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        submit = run("exec", "-T", "worker", "mlops", "request", "submit", "--kind", "major", "--title", "Compose")
        assert submit.returncode == 0, submit.stderr[-2000:]
        flow = run("exec", "-T", "worker", "prefect", "deployment", "run", "lifecycle/lifecycle", "--watch")
        requests = run("exec", "-T", "worker", "mlops", "request", "list", "--json").stdout
        assert flow.returncode == 0 and "Completed" in flow.stdout, flow.stdout[-1500:] + requests[-2000:]
        url = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        ready = wait_ready(url)
        assert ready is not None and ready.status_code == 200, run("logs", "--tail", "50", "gateway").stdout[-3000:]
        answer = predict_one(url)
        assert answer["semver"] == "1.0.0"
        probe = (
            "import urllib.request, urllib.error\n"
            "for url, body in (('http://prefect:4200/api/flows/filter', b'{}'),"
            " ('http://mlflow:5000/api/2.0/mlflow/registered-models/search', None)):\n"
            "    try: print(urllib.request.urlopen(urllib.request.Request(url, data=body)).status)\n"
            "    except urllib.error.HTTPError as e: print(e.code)"
        )
        unauthenticated = run("exec", "-T", "worker", "python", "-c", probe)
        # both servers take credentials: the flow run and the gateway above got in with the .env ones
        assert unauthenticated.stdout.split() == ["401", "401"], unauthenticated.stdout + unauthenticated.stderr
    finally:
        down = run("down", "-v", "--remove-orphans")
        for db in databases.values():
            _sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        print(f"compose test wall time {time.monotonic() - started:.0f} s")
    assert down.returncode == 0, down.stderr[-2000:]
    left = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert left.stdout.strip() == ""
