"""Real servers as a user starts them: ``mlops ui`` (Prefect server + MLflow server on 127.0.0.1), then
``prefect.yaml`` deployed to that Prefect server and run by a real process worker.

Bounded in time; every process started here is stopped, and the test checks that the ports are closed again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ISOLATED_ENV, REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, data: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        url, data=None if data is None else json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def wait_for(url: str, timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mlops ui exited early: {proc.communicate()[0][-2000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def ui(tmp_path: Path, mlflow_template: Path) -> Iterator[dict[str, Any]]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    env["MLOPS_HOME"] = str(home)
    pp, mp = free_port(), free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlops"), "ui", "--prefect-port", str(pp), "--mlflow-port", str(mp)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{pp}/api/health", 180, proc)
        wait_for(f"http://127.0.0.1:{mp}/health", 60, proc)
        yield {"home": home, "env": env, "prefect_port": pp, "mlflow_port": mp, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does
            try:
                proc.wait(timeout=150)  # how long servers take to stop on a busy host is not what is checked
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    deadline = time.monotonic() + 15
    while (port_open(pp) or port_open(mp)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not port_open(pp) and not port_open(mp), "mlops ui left a server listening after Ctrl-C"


def run(cmd: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_prefect_yaml_deploys_and_a_worker_runs_the_lifecycle(ui: dict[str, Any]) -> None:
    api = f"http://127.0.0.1:{ui['prefect_port']}/api"
    env = {**ui["env"], "PREFECT_API_URL": api, "PWD": str(REPO)}
    prefect = str(BIN / "prefect")
    run([prefect, "work-pool", "create", "--type", "process", "mlops-process"], env)
    deployed = run([prefect, "--no-prompt", "deploy", "--all"], env)
    out = deployed.stdout + deployed.stderr
    assert "lifecycle/lifecycle" in out and "rollout/rollout" in out

    run([str(BIN / "mlops"), "request", "submit", "--kind", "major", "--title", "Deployed bootstrap"], env)
    run([prefect, "deployment", "run", "lifecycle/lifecycle"], env)
    run([prefect, "worker", "start", "--pool", "mlops-process", "--run-once"], env, timeout=300)

    flow_runs = get_json(f"{api}/flow_runs/filter", {"limit": 5})
    assert [r["state_type"] for r in flow_runs] == ["COMPLETED"], flow_runs
    requests = json.loads(run([str(BIN / "mlops"), "request", "list", "--json"], env).stdout)
    assert [(r["status"], r["semver"]) for r in requests] == [("succeeded", "1.0.0")]

    # the MLflow server started by `mlops ui` serves the same registry the worker wrote to
    model = get_json(
        f"http://127.0.0.1:{ui['mlflow_port']}/api/2.0/mlflow/registered-models/get?name=breast-cancer-classifier"
    )
    assert {a["alias"]: a["version"] for a in model["registered_model"]["aliases"]} == {"champion": "1"}
    artifacts = get_json(
        f"{api}/artifacts/filter", {"artifacts": {"key": {"any_": ["lifecycle-breast-cancer-classifier"]}}}
    )
    assert artifacts and "Registered" in artifacts[0]["data"]
