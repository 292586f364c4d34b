"""`mlops monitor | retrain | rollback` as a user runs them: a real subprocess, real stores in a temporary home, the
flow run in-process (each command starts its own temporary Prefect API), exit codes by outcome."""

from __future__ import annotations

import json
import socket
from typing import Any

from core.config import ProjectConfig
from tests.cli.test_cli import mlops
from tests.flows.test_monitoring import write_traffic
from tests.gateway_fixtures import register


def test_monitor_reports_drift_as_json_and_exits_4(settings: Any, demo_config: ProjectConfig) -> None:
    champion = register(settings, demo_config, "1.0.0", "champion")
    write_traffic(settings, champion, scale=1.6)
    result = mlops("monitor", "--json", home=settings.home_dir)
    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "drift" and verdict["champion"] == champion
    assert "mean radius" in verdict["drift"]["drifted_columns"]


def test_rollback_and_retrain_say_what_they_did_and_exit_by_outcome(settings: Any) -> None:
    home = settings.home_dir
    skipped = mlops("rollback", "--reason", "p95 over SLO", home=home)
    assert skipped.returncode == 3, skipped.stderr[-2000:]
    assert "rollback skipped: no previous version to roll back to" in skipped.stdout

    first = mlops("retrain", "--reason", "drift: mean radius", "--no-rollout", "--json", home=home, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    outcome = json.loads(first.stdout)
    assert outcome["status"] == "registered" and outcome["rollout"] is None
    requests = json.loads(mlops("request", "list", "--json", home=home).stdout)
    assert [(r["id"], r["reason"].split("; data: ")[0], r["semver"]) for r in requests] == [
        (outcome["request_id"], "drift: mean radius", "1.0.0")
    ]
    assert "; data: builtin:breast_cancer (569 rows)" in requests[0]["reason"]  # what it trained on
    assert outcome["data"].startswith("builtin:breast_cancer (569 rows); no labelled production rows in ")

    again = mlops("retrain", "--no-rollout", home=home)  # within the cooldown: the guard skips it
    assert again.returncode == 3, again.stderr[-2000:]
    assert "retrain skipped" in again.stdout and "cooldown" in again.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deployment_runs_without_a_server_name_what_to_start(settings: Any) -> None:
    home = settings.home_dir
    no_server = mlops("monitor", "--deployment", home=home)
    assert no_server.returncode == 1 and "mlops up --detach" in no_server.stderr
    assert "Traceback" not in no_server.stderr

    api = f"http://127.0.0.1:{_closed_port()}/api"
    down = mlops("rollback", home=home, PREFECT_API_URL=api)  # PREFECT_API_URL set: deployed by default
    assert down.returncode == 1 and f"the Prefect API at {api} is not answering" in down.stderr
    assert "mlops up" in down.stderr and "Traceback" not in down.stderr
