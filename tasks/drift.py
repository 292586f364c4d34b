"""Prefect task for drift detection with Evidently, done in ``monitoring.drift``."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from monitoring.drift import DriftVerdict, detect_model_drift


@task(name="detect-drift", cache_policy=NO_CACHE)
def detect_drift_task(
    reference: pd.DataFrame, current: pd.DataFrame, config: ProjectConfig, covers: str = "training rows"
) -> DriftVerdict:
    """Evidently drift of recent inputs and predictions against the champion's reference (``covers`` says which)."""
    return detect_model_drift(reference, current, config, covers)
