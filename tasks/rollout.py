"""Prefect task for one rollout evaluation; the work is ``deployments.rollout.step``."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.store.rollouts import Rollout
from deployments.rollout import step
from deployments.rollout_policy import Evaluation
from services.context import ProjectContext


@task(name="evaluate-rollout-step", cache_policy=NO_CACHE)
def evaluate_step_task(context: ProjectContext, rollout_id: int) -> tuple[Rollout, Evaluation]:
    """Read the prediction log, run the guards and sequential tests, apply the decision."""
    return step(context, rollout_id)
