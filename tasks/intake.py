"""Prefect tasks for change requests: claim the next one and record its outcome. Intake itself is ``core.intake``."""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.store.requests import ChangeRequest, ProjectStore, RequestStatus
from training.recovery import recover_interrupted


@task(name="claim-change-request", cache_policy=NO_CACHE)
def claim_request_task(
    store: ProjectStore, request_id: int | None = None, client: MlflowClient | None = None
) -> ChangeRequest | None:
    """Take the named request, or the next queued one by priority (hotfix, major, minor; oldest first); first mark
    requests whose process died ``crashed`` (and end their MLflow runs), so none stays ``running`` forever."""
    if client is not None:
        recover_interrupted(store, client)
    return store.claim(request_id)


@task(name="finish-change-request", cache_policy=NO_CACHE)
def finish_request_task(
    store: ProjectStore, request_id: int, status: RequestStatus, reason: str, **fields: Any
) -> ChangeRequest:
    """Record the outcome and its reason on the request."""
    return store.finish(request_id, status, reason, **fields)
