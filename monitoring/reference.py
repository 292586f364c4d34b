"""The champion's reference for monitoring: the training snapshot logged with it, with its own predictions, and the
recent window of served answers from the prediction log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from core.config import ProjectConfig
from core.errors import MlopsError
from core.features import prepare_features
from core.names import CHAMPION, HOLDOUT_ARTIFACT, REFERENCE_ARTIFACT
from core.store.predictions import PredictionLog
from core.store.schema import utcnow
from model_registry.registry import ModelRegistry
from monitoring.drift import PREDICTION_COLUMN


@dataclass
class Reference:
    version: str
    semver: str | None
    frame: pd.DataFrame  # features + the champion's predictions
    holdout_accuracy: float | None
    holdout_mae: float | None = None  # a regressor's quality baseline
    covers: str = "training rows"  # what the reference is, in words the verdict repeats


def load_reference(
    registry: ModelRegistry, config: ProjectConfig, predictions: PredictionLog | None = None
) -> Reference:
    """The reference ``monitoring.reference`` chooses, with the champion's predictions on it: the training rows or
    the holdout logged when the champion was trained, or the served answers of the ``reference_window_minutes``
    before the monitored window (falling back to the training rows, and saying so, while there are too few)."""
    champion = registry.alias_version(CHAMPION)
    if champion is None or not champion.run_id:
        raise MlopsError(f"model {config.model_name!r} has no champion to monitor yet.")
    version, info = str(champion.version), registry.resolve(str(champion.version))
    kind, covers = config.monitoring.reference, ""
    if kind == "recent" and predictions is not None:
        served, covers = _served_reference(predictions, config)
        if len(served) >= config.monitoring.min_rows:
            return Reference(
                version, info.semver, served, info.metrics.get("accuracy"), info.metrics.get("mae"), covers
            )
        covers = f" (the reference window had only {len(served)} served answers, fewer than monitoring.min_rows)"
        kind = "training"
    frame = _logged_rows(champion.run_id, version, kind)
    model = registry.load(version).model
    features = prepare_features(frame, config)
    reference = features.assign(**{PREDICTION_COLUMN: model.predict(features)})
    return Reference(
        version,
        info.semver,
        reference,
        info.metrics.get("accuracy"),
        info.metrics.get("mae"),
        f"{kind} rows of v{version}{covers}",
    )


def _logged_rows(run_id: str, version: str, kind: str) -> pd.DataFrame:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    artifact = HOLDOUT_ARTIFACT if kind == "holdout" else REFERENCE_ARTIFACT
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact)
    except (MlflowException, OSError) as err:
        raise MlopsError(
            f"champion v{version} has no {artifact} logged with it (it was registered before {kind} rows were "
            "logged); set monitoring.reference to 'training' or 'recent', or retrain to log them."
        ) from err
    return pd.read_parquet(path)


def _served_reference(predictions: PredictionLog, config: ProjectConfig) -> tuple[pd.DataFrame, str]:
    """Served answers (features and the prediction given) of the window before the monitored one."""
    m = config.monitoring
    end = utcnow() - timedelta(minutes=m.window_minutes)
    start = end - timedelta(minutes=m.reference_window_minutes)
    served = predictions.recent(config.model_name, start, limit=m.max_rows, until=end)
    return served, f"served answers from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def recent_window(predictions: PredictionLog, config: ProjectConfig) -> pd.DataFrame:
    """Served answers of the last ``monitoring.window_minutes`` from the prediction log (newest ``max_rows``)."""
    since = utcnow() - timedelta(minutes=config.monitoring.window_minutes)
    return predictions.recent(config.model_name, since, limit=config.monitoring.max_rows)
