"""Prefect tasks of the ``monitor`` flow that do I/O: the champion's reference and the recent window. The work is
in ``monitoring.reference``."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from core.store.predictions import PredictionLog
from model_registry.registry import ModelRegistry
from monitoring.reference import Reference, load_reference, recent_window


@task(name="load-champion-reference", cache_policy=NO_CACHE)
def load_reference_task(
    registry: ModelRegistry, config: ProjectConfig, predictions: PredictionLog | None = None
) -> Reference:
    """The reference ``monitoring.reference`` chooses (training rows, holdout, or recent served answers)."""
    return load_reference(registry, config, predictions)


@task(name="read-recent-predictions", cache_policy=NO_CACHE)
def recent_window_task(predictions: PredictionLog, config: ProjectConfig) -> pd.DataFrame:
    """Served answers of the last ``monitoring.window_minutes`` from the prediction log."""
    return recent_window(predictions, config)
