"""The closed loop end to end, as a user runs it: `mlops demo --full` starts a real local stack (`mlops up`: a
Prefect server, MLflow, the deployments with their schedules and triggers, a process worker, the gateway), sends
drifted HTTP traffic, lets the deployed monitor detect it, and watches the drift event start `retrain` (request ->
lifecycle -> canary rollout under replayed traffic -> promotion), then a degradation event roll the champion back
to previous. Then `mlops status` and `mlops down`. Bounded in time; every process is stopped, ports checked closed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ISOLATED_ENV, REPO
from tests.integration.test_ui_and_deployment import BIN, free_port, get_json, port_open

pytestmark = pytest.mark.slow


def mlops(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mlops"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_closed_loop_drift_retrain_rollout_promote_then_degrade_and_roll_back(
    tmp_path: Path, mlflow_template: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    env |= {"MLOPS_HOME": str(home), "COLUMNS": "200"}
    pp, mp, gp = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{pp}/api"
    try:
        demo = mlops(
            "demo",
            "--full",
            "--keep-running",
            "--prefect-port",
            str(pp),
            "--mlflow-port",
            str(mp),
            "--gateway-port",
            str(gp),
            env=env,
            timeout=900,
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        status = json.loads(mlops("status", "--json", env=env).stdout)
        assert {p["name"] for p in status["processes"]} == {"Prefect", "MLflow", "Worker", "Gateway"}
        assert all(p["alive"] and p["healthy"] is not False for p in status["processes"])

        deployments = {d["name"]: d for d in get_json(f"{api}/deployments/filter", {})}
        assert set(deployments) == {"lifecycle", "rollout", "monitor", "retrain", "rollback"}
        schedules = get_json(f"{api}/deployments/{deployments['monitor']['id']}/schedules")
        assert [s["schedule"]["cron"] for s in schedules] == ["*/15 * * * *"]
        automations = get_json(f"{api}/automations/filter", {})
        assert {e for a in automations for e in a["trigger"].get("expect", [])} >= {
            "mlops.drift.detected",
            "mlops.model.degraded",
        }
        runs = {r["name"]: r for r in get_json(f"{api}/flow_runs/filter", {"limit": 50})}
        assert runs, "the deployed flows ran on the stack's Prefect server"

        requests = json.loads(mlops("request", "list", "--json", env=env).stdout)
        retrained = [r for r in requests if r["submitted_by"] == "retrain flow"]
        assert len(retrained) == 1 and retrained[0]["reason"].startswith("retrain after drift verdict '")
        # it learned from the labelled drifted traffic: the configured source plus the production window
        reason = retrained[0]["reason"]
        assert "dataset drift" in reason and "; data: builtin:breast_cancer (569 rows) + production " in reason, reason
        assert (
            re.search(r"\((\d+) labelled rows\)", reason)
            and int(re.findall(r"\((\d+) labelled rows", reason)[0]) >= 300
        )
        assert (retrained[0]["status"], retrained[0]["semver"]) == ("succeeded", "1.1.0")

        shown = json.loads(mlops("registry", "show", "--json", env=env).stdout)
        moves = [(h["alias"], h["from_version"], h["to_version"]) for h in shown["alias_history"]]
        assert moves == [
            ("champion", None, "1"),  # bootstrap
            ("challenger", None, "2"),  # the retrain's challenger
            ("previous", None, "1"),  # canary promotion...
            ("champion", "1", "2"),
            ("challenger", "2", None),
            ("champion", "2", "1"),  # ...then the degradation rollback
            ("previous", "1", None),
        ]
        assert shown["aliases"] == {"champion": "1"}
        assert "rollback flow" in shown["alias_history"][-1]["actor"]
    finally:
        down = mlops("down", env=env)
    assert down.returncode == 0 and "Gateway" in down.stdout
    assert not any(port_open(p) for p in (pp, mp, gp)), "a process of `mlops up` is still listening"
    assert json.loads(mlops("status", "--json", env=env).stdout) == {"running": False, "processes": []}
