"""Work a dead process left behind: change requests it claimed (``crashed``) and their MLflow runs (``KILLED``).

Run by the next command that would trip over it (``mlops run``, ``mlops request list|show|retry|cancel``), so
nothing stays ``running`` forever and the user is told what happened and what to run."""

from __future__ import annotations

import logging

from mlflow import MlflowClient

from core.names import DECISION_ABANDONED, TAG_DECISION, TAG_DECISION_REASON, TAG_REQUEST_ID, TAG_SEMVER
from core.store.requests import ChangeRequest, ProjectStore

log = logging.getLogger("mlops.recovery")


def recover_interrupted(store: ProjectStore, client: MlflowClient) -> list[ChangeRequest]:
    """Mark requests whose process died ``crashed`` and end their MLflow runs left ``RUNNING`` as ``KILLED``."""
    crashed = store.recover_crashed()
    found = []
    for request in crashed:
        ended = end_interrupted_runs(client, request.id)
        log.warning("change request %s was interrupted; %d MLflow run(s) ended as KILLED", request.label, len(ended))
        abandoned = abandon_unfinished_versions(client, request.id)
        if abandoned:
            request = store.add_reason(
                request.id,
                "Its registration was interrupted: "
                + ", ".join(f"{name} v{version} ({semver})" for name, version, semver in abandoned)
                + " was created without its alias and is marked abandoned; its semver stays taken (semvers are "
                "never reused), so a retry registers the next one.",
            )
        found.append(request)
    return found


def abandon_unfinished_versions(client: MlflowClient, request_id: int) -> list[tuple[str, str, str]]:
    """Versions the request created that no alias points at: tagged abandoned with the reason.
    Returns (model, version, semver) of each."""
    versions = client.search_model_versions(f"tags.`{TAG_REQUEST_ID}` = '{request_id}'")
    abandoned = []
    for mv in versions:
        aliased = {str(v) for v in client.get_registered_model(mv.name).aliases.values()}  # not mv.aliases: see
        if str(mv.version) in aliased or (mv.tags or {}).get(TAG_DECISION) == DECISION_ABANDONED:  # registry.py
            continue
        client.set_model_version_tag(mv.name, str(mv.version), TAG_DECISION, DECISION_ABANDONED)
        client.set_model_version_tag(
            mv.name,
            str(mv.version),
            TAG_DECISION_REASON,
            f"the process registering it for request #{request_id} died before it got its alias; never served",
        )
        abandoned.append((mv.name, str(mv.version), (mv.tags or {}).get(TAG_SEMVER, "?")))
    return abandoned


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
