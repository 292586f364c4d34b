"""JSON logs inside Prefect runs (core/logs.py): lines carry the flow and task run, and Prefect's own log shipping
still brings the run's lines (redacted) to the Prefect API the UI reads."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow, get_run_logger, task

from core import logs
from core.settings import Settings


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
