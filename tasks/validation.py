"""Prefect task for the data gate: Great Expectations validation, done in ``training.validation``."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from training.validation import ValidationReport, validate_frame


@task(name="validate-data", cache_policy=NO_CACHE)
def validate_data_task(frame: pd.DataFrame, config: ProjectConfig) -> ValidationReport:
    """Validate the training data with Great Expectations; the flow decides what a failure means."""
    return validate_frame(frame, config)
