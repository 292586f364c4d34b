"""`mlops <flow> --deployment` against a real Prefect server: the command creates a run of the deployed flow, a real
process worker runs it, and the command follows it to its end, shows its logs and exits by the flow's outcome.

One flow (rollback: quick, needs no model) stands for all: monitor, retrain and run share the code path. Every process
started here is stopped, with its children (the worker's flow-run subprocess), by process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ISOLATED_ENV, REPO
from tests.integration.test_ui_and_deployment import free_port, run, wait_for

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGINT to the process group we started (what Ctrl-C does), then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent (a served run's engine)
    except ProcessLookupError:
        pass


@pytest.fixture
def server(tmp_path: Path, mlflow_template: Path) -> Iterator[dict[str, Any]]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    env.update(
        {
            "MLOPS_HOME": str(home),
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PYTHONPATH": str(REPO),  # the worker's flow runs and the `mlops` script import this checkout
            "PWD": str(REPO),
            "COLUMNS": "200",
        }
    )
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/health", 240, proc)
        yield {"env": {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}, "home": home}
    finally:
        stop_group(proc)


def test_rollback_deployment_is_run_followed_and_judged_from_the_cli(server: dict[str, Any]) -> None:
    env, prefect = server["env"], str(BIN / "prefect")
    missing = subprocess.run(
        [str(BIN / "mlops"), "rollback", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1 and "deployment 'rollback/rollback' is not on the Prefect server" in missing.stderr
    assert "make deploy" in missing.stderr

    run([prefect, "work-pool", "create", "--type", "process", "mlops-process"], env)
    run([prefect, "--no-prompt", "deploy", "--name", "rollback"], env)
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", "mlops-process"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        # PREFECT_API_URL is set, so the command runs the deployment without being told to
        result = subprocess.run(
            [str(BIN / "mlops"), "rollback", "--reason", "p95 over SLO", "--json"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop_group(worker)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]  # skipped: nothing to return to
    assert json.loads(result.stdout) == {
        "status": "skipped",
        "reason": "no previous version to roll back to",
        "from_version": None,
        "to_version": None,
    }
    assert "Created flow run" in result.stderr and "of deployment rollback/rollback" in result.stderr
    assert "skipped: no previous version to roll back to" in result.stderr  # the run's own log, followed
