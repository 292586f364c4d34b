"""Prefect task for training: fit and score, done in ``training.fit``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from training.fit import TrainedModel, train


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(
    train_rows: pd.DataFrame, holdout: pd.DataFrame, config: ProjectConfig, sample_weight: np.ndarray | None = None
) -> TrainedModel:
    """Fit the configured pipeline (weighted when ``sample_weight`` is given) and score it on the holdout."""
    return train(train_rows, holdout, config, sample_weight)
