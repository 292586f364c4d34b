"""Training and scoring: an sklearn pipeline with preprocessing inside the model, and holdout metrics.

Preprocessing lives in the pipeline (imputation, scaling, one-hot encoding with unknown categories ignored), so the
registered model accepts raw records with missing values and unseen categories, exactly as the gateway will get
them. Champion and challenger are scored by the same ``score_model`` on the same holdout rows.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from core.config import ProjectConfig
from core.errors import TrainingError
from core.features import prepare_features


def resolve_estimator(config: ProjectConfig) -> BaseEstimator:
    """Import ``training.estimator`` and apply ``training.params``; errors name the bad path or parameter."""
    path = config.training.estimator
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise TrainingError(f"training.estimator {path!r} must be a full import path like sklearn.svm.SVC.")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise TrainingError(
            f"training.estimator {path!r} cannot be imported; check the spelling and that its package is installed."
        ) from None
    if not inspect.isclass(cls):
        raise TrainingError(f"training.estimator {path!r} is not a class.")
    try:
        estimator = cls()
    except TypeError as err:
        raise TrainingError(f"training.estimator {path!r} cannot be created without arguments: {err}") from None
    if not hasattr(estimator, "fit") or not hasattr(estimator, "get_params"):
        raise TrainingError(f"training.estimator {path!r} is not sklearn-compatible (needs fit/get_params).")
    valid = set(estimator.get_params())
    unknown = sorted(set(config.training.params) - valid)
    if unknown:
        raise TrainingError(
            f"training.params {unknown} are not parameters of {class_name}; valid ones: {', '.join(sorted(valid))}."
        )
    estimator.set_params(**config.training.params)
    problem = config.evaluation.problem_type
    if problem == "classification" and not is_classifier(estimator):
        raise TrainingError(
            f"{class_name} is not a classifier but primary_metric {config.evaluation.primary_metric!r} needs one."
        )
    if problem == "regression" and not is_regressor(estimator):
        raise TrainingError(
            f"{class_name} is not a regressor but primary_metric {config.evaluation.primary_metric!r} needs one."
        )
    return estimator


def build_pipeline(config: ProjectConfig) -> Pipeline:
    data = config.data
    transformers: list[tuple[str, Any, list[str]]] = []
    if data.numeric_features:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if config.training.scale_numeric:
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), data.numeric_features))
    if data.categorical_features:
        # strategy="constant" fills strings with "missing_value" (its own category) and numeric codes with 0.
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=None)),
            ]
        )
        transformers.append(("categorical", categorical, data.categorical_features))
    return Pipeline(
        [
            ("preprocess", ColumnTransformer(transformers, remainder="drop")),
            ("model", resolve_estimator(config)),
        ]
    )


def features_and_target(frame: pd.DataFrame, config: ProjectConfig) -> tuple[pd.DataFrame, pd.Series]:
    return prepare_features(frame, config), frame[config.data.target]


def fit_model(train: pd.DataFrame, config: ProjectConfig, sample_weight: np.ndarray | None = None) -> Pipeline:
    """Fit the configured pipeline; ``sample_weight`` (one per row) goes to the estimator's own fit."""
    pipeline = build_pipeline(config)
    X, y = features_and_target(train, config)
    weights = {} if sample_weight is None else {"model__sample_weight": sample_weight}
    try:
        pipeline.fit(X, y, **weights)
    except (ValueError, TypeError) as err:
        raise TrainingError(f"fitting {config.training.estimator} failed: {err}") from None
    return pipeline


def score_model(model: Any, holdout: pd.DataFrame, config: ProjectConfig) -> dict[str, float]:
    """Every metric of the problem type that the model supports, on ``holdout``."""
    from sklearn import metrics as m

    X, y = features_and_target(holdout, config)
    pred = model.predict(X)
    out: dict[str, float] = {}
    if config.evaluation.problem_type == "regression":
        out["rmse"] = float(math.sqrt(m.mean_squared_error(y, pred)))
        out["mae"] = float(m.mean_absolute_error(y, pred))
        out["r2"] = float(m.r2_score(y, pred))
        return out
    out["accuracy"] = float(m.accuracy_score(y, pred))
    out["balanced_accuracy"] = float(m.balanced_accuracy_score(y, pred))
    classes = list(getattr(model, "classes_", np.unique(y)))
    binary = len(classes) == 2
    if binary:
        out["f1"] = float(m.f1_score(y, pred, pos_label=classes[1]))
    else:
        out["f1"] = float(m.f1_score(y, pred, average="macro"))
    if hasattr(model, "predict_proba"):
        try:
            proba = model.predict_proba(X)
            if binary:
                out["roc_auc"] = float(m.roc_auc_score(y == classes[1], proba[:, 1]))
            else:
                out["roc_auc"] = float(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
            out["log_loss"] = float(m.log_loss(y, proba, labels=classes))
        except (ValueError, AttributeError):
            pass  # e.g. a holdout class the model never saw; the other metrics still stand
    return out


@dataclass(frozen=True)
class TrainedModel:
    model: Pipeline
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int


def train(
    train_rows: pd.DataFrame, holdout: pd.DataFrame, config: ProjectConfig, sample_weight: np.ndarray | None = None
) -> TrainedModel:
    """Fit the configured pipeline on ``train_rows`` (weighted by ``sample_weight``) and score it on ``holdout``."""
    model = fit_model(train_rows, config, sample_weight)
    return TrainedModel(
        model=model,
        metrics=score_model(model, holdout, config),
        train_rows=len(train_rows),
        holdout_rows=len(holdout),
    )
