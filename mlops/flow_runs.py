"""Starting a flow from the command line: in-process (the local engine, reporting to Prefect, like ``mlops run``) or
as a run of the flow's deployment on a Prefect server, followed to its end state with its logs.

Either way the command gets the flow's typed result as JSON and exits by outcome (``exit_code``), so a script can
branch on ``mlops monitor`` the way a person reads its verdict. A deployed run's return value is not kept by the
Prefect API, so the flows leave it as a table artifact (``tasks.reporting.outcome_key``) that is read back here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from core.errors import OrchestrationError
from core.names import WORK_POOL, deployment_name
from core.settings import Settings

# Exit codes of `mlops monitor | retrain | rollback`, told in each command's --help.
EXIT_OK = 0  # healthy; registered (and promoted when rolled out); rolled back
EXIT_FAILED = 1  # the run failed or crashed, or it could not be started (the message says why)
EXIT_NOTHING_DONE = 3  # not enough traffic for a verdict; a guard skipped it (cooldown, no recent promotion)
EXIT_ATTENTION = 4  # drift or degradation found; the new model was rejected or its rollout aborted; retraining paused


_ATTENTION = {
    "monitor": {"drift", "degraded"},
    "retrain": {"rejected", "paused"},
    "rollback": set(),
}
_NOTHING_DONE = {
    "monitor": {"insufficient data"},
    "retrain": {"skipped", "idle"},
    "rollback": {"skipped"},
}


def outcome_status(flow_name: str, outcome: dict[str, Any]) -> str:
    """The one word a flow's result is judged by: the monitor's verdict, otherwise its status."""
    return str(outcome["verdict"] if flow_name == "monitor" else outcome["status"])


def exit_code(flow_name: str, outcome: dict[str, Any]) -> int:
    """The command's exit code for a finished run's result (the table above)."""
    status = outcome_status(flow_name, outcome)
    if status == "failed":
        return EXIT_FAILED
    if status in _NOTHING_DONE.get(flow_name, set()):
        return EXIT_NOTHING_DONE
    rollout = outcome.get("rollout") or {}
    if status in _ATTENTION.get(flow_name, set()) or rollout.get("status") == "aborted":
        return EXIT_ATTENTION
    return EXIT_OK


def run_in_process(flow_name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Call the flow here (Prefect's local engine reports the run to the API) and return its result as JSON."""
    if flow_name == "monitor":
        from flows.monitor import monitor

        return monitor(**parameters).to_json()
    if flow_name == "retrain":
        from flows.retrain import retrain

        return retrain(**parameters).to_json()
    if flow_name == "rollback":
        from flows.rollback import rollback

        return rollback(**parameters).to_json()
    raise OrchestrationError(f"no in-process entry for flow {flow_name!r}; use one of monitor, retrain, rollback.")


@dataclass
class DeployedRun:
    """A finished run of a deployment: its id, end state and, when the flow left one, its typed result."""

    flow_run_id: str
    deployment: str
    state_type: str  # COMPLETED, FAILED, CRASHED, CANCELLED, ...
    state_message: str
    outcome: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "flow_run_id": self.flow_run_id,
            "deployment": self.deployment,
            "state": self.state_type,
            "state_message": self.state_message,
            "outcome": self.outcome,
        }


def api_url(settings: Settings) -> str:
    """The Prefect API a deployed run is created on: ``PREFECT_API_URL``, else the one `mlops up --detach` runs."""
    if settings.prefect_api_url:
        return settings.prefect_api_url
    from mlops.stack import stack_prefect_api

    found = stack_prefect_api(settings)
    if found is None:
        raise OrchestrationError(
            "--deployment needs a Prefect server with the deployments on it: start the local stack with "
            "`mlops up --detach` (it deploys prefect.yaml and runs a worker), or set PREFECT_API_URL to your server "
            "and deploy with `make deploy`."
        )
    return found


def run_deployed(
    settings: Settings,
    flow_name: str,
    parameters: dict[str, Any],
    echo: Callable[[str], None],
    *,
    poll_seconds: float = 1.0,
    worker_hint_seconds: float = 30.0,
) -> DeployedRun:
    """Create a run of ``<flow>/<flow>`` with ``parameters``, print its logs as they arrive, wait for its end state.

    Ctrl-C stops the following, not the run (it carries on on the server)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, name = api_url(settings), deployment_name(flow_name)
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        if (problem := client.api_healthcheck()) is not None:
            raise OrchestrationError(
                f"the Prefect API at {url} is not answering ({problem.__class__.__name__}); start it with "
                "`mlops up --detach`, or point PREFECT_API_URL at a running server."
            )
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise OrchestrationError(
                f"deployment {name!r} is not on the Prefect server at {url}; deploy prefect.yaml with `make deploy` "
                f"(or `mlops up`, which deploys it), then run a worker for the {WORK_POOL!r} pool."
            ) from None
        run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        echo(f"Created flow run {run.name} ({run.id}) of deployment {name} on {url}")
        state = _follow(client, run.id, echo, poll_seconds, worker_hint_seconds)
        outcome = _read_outcome(client, run.id, flow_name) if state.type.value == "COMPLETED" else None
    return DeployedRun(str(run.id), name, state.type.value, state.message or "", outcome)


def _follow(
    client: Any, flow_run_id: UUID, echo: Callable[[str], None], poll_seconds: float, worker_hint_seconds: float
) -> Any:
    """Print the run's logs until it reaches a final state; say so once if no worker picks it up."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    shown, started, hinted = 0, time.monotonic(), False

    def show_new_logs() -> int:
        nonlocal shown
        before = shown
        while logs := client.read_logs(log_filter=log_filter, offset=shown, limit=200, sort=LogSort.TIMESTAMP_ASC):
            for log in logs:
                echo(f"{log.timestamp:%H:%M:%S} {log.message}")
            shown += len(logs)
        return shown - before

    while True:
        run = client.read_flow_run(flow_run_id)
        show_new_logs()
        if run.state is not None and run.state.is_final():
            # the run's process ships its last log lines in a batch after it has set the final state: keep reading
            # until 3 quiet seconds (Prefect ships logs every 2 s; at most 15 s in all), so the user sees how the
            # run ended, not only that it did
            deadline, quiet = time.monotonic() + 15, 0
            while quiet < 3 and time.monotonic() < deadline:
                time.sleep(1.0)
                quiet = 0 if show_new_logs() else quiet + 1
            return run.state
        waiting = run.state is not None and run.state.is_scheduled()
        if not hinted and waiting and time.monotonic() - started > worker_hint_seconds:
            echo(
                f"No worker has picked the run up yet; start one with `prefect worker start --pool {WORK_POOL}` "
                "(`mlops up` runs one)."
            )
            hinted = True
        time.sleep(poll_seconds)


def _read_outcome(client: Any, flow_run_id: UUID, flow_name: str) -> dict[str, Any] | None:
    """The typed result the flow left as its outcome artifact (``None`` for flows that leave none)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    from tasks.reporting import OUTCOME_SUFFIX

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["table"])
        )
    )
    for artifact in artifacts:
        if (artifact.key or "").startswith(f"{flow_name}-{OUTCOME_SUFFIX}-"):
            data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            return data[0] if isinstance(data, list) and data else None
    return None
