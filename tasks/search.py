"""Prefect task for one search trial (it runs on a Dask worker); the work is ``training.search.cross_validate``."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from training.search import CrossValidation, cross_validate


@task(name="search-trial", cache_policy=NO_CACHE)
def evaluate_trial_task(params: dict[str, Any], train_rows: pd.DataFrame, config: ProjectConfig) -> CrossValidation:
    """Cross-validate the pipeline with ``params`` on the training rows (never the holdout)."""
    return cross_validate(params, train_rows, config)
