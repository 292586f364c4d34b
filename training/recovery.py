"""Work a dead process left behind: change requests it claimed (``crashed``) and their MLflow runs (``KILLED``).

Run by the next command that would trip over it (``mlops run``, ``mlops request list|show|retry|cancel``), so
nothing stays ``running`` forever and the user is told what happened and what to run."""

from __future__ import annotations

import logging

from mlflow import MlflowClient

from core.names import TAG_DECISION, TAG_DECISION_REASON, TAG_REQUEST_ID
from core.store.requests import ChangeRequest, ProjectStore

log = logging.getLogger("mlops.recovery")


def recover_interrupted(store: ProjectStore, client: MlflowClient) -> list[ChangeRequest]:
    """Mark requests whose process died ``crashed`` and end their MLflow runs left ``RUNNING`` as ``KILLED``."""
    crashed = store.recover_crashed()
    for request in crashed:
        ended = end_interrupted_runs(client, request.id)
        log.warning("change request %s was interrupted; %d MLflow run(s) ended as KILLED", request.label, len(ended))
    return crashed


def end_interrupted_runs(client: MlflowClient, request_id: int) -> list[str]:
    """The request's MLflow runs still ``RUNNING`` (their process is gone), ended as ``KILLED`` with the reason."""
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{TAG_REQUEST_ID}` = '{request_id}' and attributes.status = 'RUNNING'",
    )
    for run in runs:
        client.set_tag(run.info.run_id, TAG_DECISION, "interrupted")
        client.set_tag(run.info.run_id, TAG_DECISION_REASON, "the process running this request died before it finished")
        client.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_id for run in runs]
