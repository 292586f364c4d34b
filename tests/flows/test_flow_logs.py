"""JSON logs inside Prefect runs (core/logs.py): lines carry the flow and task run, and Prefect's own log shipping
still brings the run's lines (redacted) to the Prefect API the UI reads."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prefect import flow, get_run_logger, task

from core import logs
from core.settings import Settings
from tests.conftest import DEMO_CONFIG, REPO


@pytest.fixture
def json_logs() -> Iterator[None]:
    """JSON logging for this test, the process's logging as it was afterwards."""
    root, project = logging.getLogger(), logging.getLogger(logs.PROJECT_LOGGER)
    handlers, level = list(root.handlers), project.level
    logs.configure(Settings(log_format="json"))
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    project.setLevel(level)


@task(name="probe-task")
def probe_task() -> None:
    logging.getLogger("mlops.probe").info("plain logger inside the task")
    get_run_logger().info("run logger inside the task, store postgresql://mlops:hunter2@db:5432/mlops")


@flow(name="logs-probe")
def probe_flow() -> None:
    logging.getLogger("mlops.probe").info("plain logger inside the flow")
    probe_task()


def api_messages(flow_run_id: Any, wanted: list[str]) -> list[str]:
    """The run's log messages as the Prefect API (and so the UI) has them; Prefect ships them in batches."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    deadline = time.monotonic() + 60  # waiting for delivery, not a speed assertion
    with get_client(sync_client=True) as client:
        while True:
            messages = [log.message for log in client.read_logs(log_filter=log_filter)]
            if all(any(w in m for m in messages) for w in wanted) or time.monotonic() > deadline:
                return messages
            time.sleep(0.5)


def test_lines_inside_runs_carry_the_run_and_still_reach_the_prefect_api(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    state = probe_flow(return_state=True)
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    by_message = {line["message"]: line for line in lines}

    in_flow = by_message["plain logger inside the flow"]
    assert (in_flow["flow_run_id"], in_flow["flow_name"]) == (str(flow_run_id), "logs-probe")
    assert "task_run_id" not in in_flow
    in_task = by_message["plain logger inside the task"]
    assert in_task["flow_run_id"] == str(flow_run_id) and in_task["task_name"] == "probe-task"
    run_logger = by_message["run logger inside the task, store postgresql://mlops:***@db:5432/mlops"]
    assert run_logger["task_run_id"] == in_task["task_run_id"] and run_logger["logger"] == "prefect.task_runs"
    assert all(line["timestamp"].endswith("Z") for line in lines)

    shipped = "run logger inside the task, store postgresql://mlops:***@db:5432/mlops"
    messages = api_messages(flow_run_id, [shipped, "Finished in state Completed"])
    assert shipped in messages, messages
    assert any("Finished in state Completed" in m for m in messages), messages
    assert not any("hunter2" in m for m in messages)


def flow_epilogue(line: dict[str, Any]) -> bool:
    """The engine's "Finished in state" of the flow run, written after the flow function returned."""
    return line["logger"] == "prefect.flow_runs" and line["message"].startswith("Finished in state")


def test_lifecycle_lines_name_their_change_request_and_run(
    json_logs: None, capsys: pytest.CaptureFixture[str], store: Any
) -> None:
    from tests.flows.test_lifecycle import _run

    outcome = _run(store, "major", "Bootstrap with JSON logs")
    assert outcome.status == "registered"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    running = next(line for line in lines if line["message"].startswith("Running change request"))
    assert running["flow_name"] == "lifecycle" and running["change_request_id"] == outcome.request_id
    after_claim = [
        line
        for line in lines[lines.index(running) :]
        if line.get("flow_name") == "lifecycle" and not flow_epilogue(line)
    ]
    assert any(line.get("task_run_id") for line in after_claim), "no line from inside a task"
    assert {line["change_request_id"] for line in after_claim} == {outcome.request_id}
    registered = next(line for line in after_claim if line["message"] == outcome.decision)
    assert registered["model_version"] == outcome.version == "1"
    assert "model_version" not in running, "the version is not known before registration"
    # the run's fields end with the run: nothing of it on the lines the test process writes afterwards
    assert logs.context_fields() == {}

    from flows.rollback import rollback

    assert rollback(config_path=str(DEMO_CONFIG)).status == "skipped"  # no previous champion to go back to
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    skipped = next(line for line in lines if line["message"].startswith("skipped:"))
    assert (skipped["flow_name"], skipped["model_version"]) == ("rollback", "1")
    assert "change_request_id" not in skipped, "the lifecycle's fields leaked into the next run"


def test_a_flow_run_started_as_a_worker_starts_it_sets_up_json_logs_itself(store: Any) -> None:
    """What a process worker does for a deployment of prefect.yaml: ``python -m prefect.engine`` with the run's id,
    no `mlops` CLI in front; MLOPS_LOG_FORMAT=json in the worker's environment alone must give JSON lines."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from core.intake import submit_request

    shipped = next(
        d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"] if d["name"] == "lifecycle"
    )
    request = submit_request(store, DEMO_CONFIG, "major", "Bootstrap from a worker", "worker-run logs")
    with get_client(sync_client=True) as client:
        deployment_id = client.create_deployment(
            flow_id=client.create_flow_from_name("lifecycle"),
            name=f"worker-logs-{uuid.uuid4().hex[:8]}",
            entrypoint=shipped["entrypoint"],
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}],
        )
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"config_path": str(DEMO_CONFIG), "request_id": request.id}
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLOPS_LOG", "MLOPS_ACCESS"))}
    env.update(
        PREFECT_API_URL=PREFECT_API_URL.value(),
        PREFECT__FLOW_RUN_ID=str(run.id),
        PYTHONPATH=str(REPO),
        MLOPS_LOG_FORMAT="json",
    )
    engine = subprocess.run(
        [sys.executable, "-m", "prefect.engine"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert engine.returncode == 0, engine.stderr[-3000:]

    lines = [json.loads(line) for line in engine.stderr.splitlines() if line.startswith("{")]
    by_message = {line["message"]: line for line in lines}
    running = by_message[f"Running change request {request.label}"]
    assert running["flow_run_id"] == str(run.id) and running["flow_name"] == "lifecycle"
    assert running["change_request_id"] == request.id
    registered = next(line for line in lines if line["message"].startswith("1.0.0 from major change request"))
    assert (registered["flow_run_id"], registered["change_request_id"]) == (str(run.id), request.id)
    assert registered["model_version"] == "1"
    from_the_flow = lines[lines.index(running) :]
    assert all(line["level"] and line["timestamp"].endswith("Z") for line in from_the_flow)
    assert not [line for line in engine.stderr.splitlines()[-5:] if not line.startswith("{")], "plain lines at the end"
