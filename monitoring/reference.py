"""The champion's reference for monitoring: the training snapshot logged with it, with its own predictions, and the
recent window of served answers from the prediction log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from core.config import ProjectConfig
from core.errors import MlopsError
from core.features import prepare_features
from core.names import CHAMPION, REFERENCE_ARTIFACT
from core.store.predictions import PredictionLog
from core.store.schema import utcnow
from model_registry.registry import ModelRegistry
from monitoring.drift import PREDICTION_COLUMN


@dataclass
class Reference:
    version: str
    semver: str | None
    frame: pd.DataFrame  # features + prediction of the champion on its own training data
    holdout_accuracy: float | None


def load_reference(registry: ModelRegistry, config: ProjectConfig) -> Reference:
    """The data snapshot logged when the champion was trained, with the champion's predictions on it."""
    import mlflow.artifacts

    champion = registry.alias_version(CHAMPION)
    if champion is None or not champion.run_id:
        raise MlopsError(f"model {config.model_name!r} has no champion to monitor yet.")
    path = mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path=REFERENCE_ARTIFACT)
    frame = pd.read_parquet(path)
    model = registry.load(str(champion.version)).model
    features = prepare_features(frame, config)
    reference = features.assign(**{PREDICTION_COLUMN: model.predict(features)})
    info = registry.resolve(str(champion.version))
    return Reference(str(champion.version), info.semver, reference, info.metrics.get("accuracy"))


def recent_window(predictions: PredictionLog, config: ProjectConfig) -> pd.DataFrame:
    """Served answers of the last ``monitoring.window_minutes`` from the prediction log (newest ``max_rows``)."""
    since = utcnow() - timedelta(minutes=config.monitoring.window_minutes)
    return predictions.recent(config.model_name, since, limit=config.monitoring.max_rows)
