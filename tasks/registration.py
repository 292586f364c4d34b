"""Prefect tasks for scoring the champion and registering a candidate; the work is ``training.registration``."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from model_registry.registry import ModelRegistry
from training.registration import Candidate, ChampionScore, Registration, register_version, score_champion


@task(name="score-champion", cache_policy=NO_CACHE)
def score_champion_task(
    registry: ModelRegistry, holdout: pd.DataFrame, config: ProjectConfig, recent: pd.DataFrame | None = None
) -> ChampionScore:
    """Score the current champion on the same holdout rows as the new model (and on the holdout's recent rows)."""
    return score_champion(registry, holdout, config, recent)


@task(name="register-model", cache_policy=NO_CACHE)
def register_task(
    registry: ModelRegistry, candidate: Candidate, actor: str, fault_point: str | None = None
) -> Registration:
    """Register the candidate with the next semver and alias it ``challenger`` (``champion`` when it is the first)."""
    return register_version(registry, candidate, actor, fault_point)
