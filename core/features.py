"""The model's input as the config declares it: one encoding for training, scoring, monitoring and serving."""

from __future__ import annotations

import pandas as pd

from core.config import ProjectConfig


def prepare_features(frame: pd.DataFrame, config: ProjectConfig) -> pd.DataFrame:
    """The model's input: declared features only, categorical values as strings (missing stays missing).

    One encoding for every caller (training, champion scoring, the logged signature, serving), so a category
    written ``True``, ``1`` or ``"1"`` in different exports is one category, and one-hot encoding never sees a
    column that mixes booleans, numbers and strings.
    """
    features = frame[config.data.features].copy()
    for col in config.data.categorical_features:
        values = features[col]
        features[col] = values.where(values.isna(), values.astype(str)).astype(object)
    return features
