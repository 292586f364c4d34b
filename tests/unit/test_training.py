from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import load_config
from core.errors import TrainingError
from tests.conftest import write_synthetic_project
from training.data import load_data, split_holdout
from training.datasets import synthetic
from training.fit import fit_model, score_model


def test_pipeline_handles_missing_values_and_unseen_categories(churn_project: Path) -> None:
    cfg = load_config(churn_project)
    split = split_holdout(load_data(cfg).frame, cfg)
    model = fit_model(split.train, cfg)
    metrics = score_model(model, split.holdout, cfg)
    assert set(metrics) == {"accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss"}
    assert metrics["roc_auc"] > 0.75  # the label really depends on the features
    odd = split.holdout.head(3).copy()
    odd["region"] = ["atlantis", None, "north"]
    odd["tenure_months"] = np.nan
    assert len(model.predict(odd[cfg.data.features])) == 3


def test_label_noise_makes_a_measurably_worse_model(tmp_path: Path) -> None:
    clean = load_config(write_synthetic_project(tmp_path / "clean"))
    noisy = load_config(write_synthetic_project(tmp_path / "noisy", label_noise=0.3))
    holdout = split_holdout(load_data(clean).frame, clean).holdout
    good = score_model(fit_model(split_holdout(load_data(clean).frame, clean).train, clean), holdout, clean)
    bad = score_model(fit_model(split_holdout(load_data(noisy).frame, noisy).train, noisy), holdout, noisy)
    assert bad["accuracy"] < good["accuracy"] - 0.03


def test_regression_and_multiclass_metrics(tmp_path: Path) -> None:
    frame = synthetic(n_rows=600, seed=3)
    frame["spend_next_month"] = frame["monthly_spend"] * 1.1 + frame["usage_score"] * 5
    frame["segment"] = pd.cut(frame["usage_score"], [-np.inf, -0.5, 0.5, np.inf], labels=["low", "mid", "high"]).astype(
        str
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    base = {"data.numeric_features": ["monthly_spend", "usage_score"], "data.categorical_features": ["region"]}
    project = write_synthetic_project(tmp_path / "r", config=base)
    reg = load_config(
        project,
        {
            "data.source": str(tmp_path / "d.csv"),
            "data.target": "spend_next_month",
            "data.allow_extra_columns": True,
            "training.estimator": "sklearn.linear_model.Ridge",
            "training.params": {},
            "evaluation.primary_metric": "rmse",
        },
    )
    split = split_holdout(load_data(reg).frame, reg)
    metrics = score_model(fit_model(split.train, reg), split.holdout, reg)
    assert set(metrics) == {"rmse", "mae", "r2"} and metrics["r2"] > 0.9
    multi = load_config(
        project,
        {
            "data.source": str(tmp_path / "d.csv"),
            "data.target": "segment",
            "data.allow_extra_columns": True,
            "data.numeric_features": ["usage_score", "tenure_months"],
        },
    )
    split = split_holdout(load_data(multi).frame, multi)
    metrics = score_model(fit_model(split.train, multi), split.holdout, multi)
    assert metrics["accuracy"] > 0.9 and 0 < metrics["roc_auc"] <= 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training.estimator": "sklearn.linear_model.NoSuchModel"}, "cannot be imported"),
        ({"training.estimator": "LogisticRegression"}, "full import path"),
        ({"training.params.Cee": 1.0}, r"\['Cee'\] are not parameters of LogisticRegression"),
        ({"training.estimator": "sklearn.linear_model.Ridge", "training.params": {}}, "is not a classifier"),
    ],
)
def test_estimator_problems_are_named(churn_project: Path, overrides: dict[str, object], message: str) -> None:
    cfg = load_config(churn_project, overrides)
    with pytest.raises(TrainingError, match=message):
        fit_model(load_data(cfg).frame, cfg)


def test_boolean_and_numeric_coded_categories_with_missing_values(tmp_path: Path) -> None:
    frame = synthetic(n_rows=800, seed=5, missing_fraction=0.05)
    rng = np.random.default_rng(0)
    frame["has_phone"] = rng.choice([True, False, None], len(frame))  # object column mixing bools and None
    frame["zone"] = rng.choice([1.0, 2.0, 3.0, np.nan], len(frame))  # numeric codes read as float with NaN
    frame.to_csv(tmp_path / "d.csv", index=False)
    project = write_synthetic_project(tmp_path / "p")
    cfg = load_config(
        project,
        {"data.source": str(tmp_path / "d.csv"), "data.categorical_features": ["region", "plan", "has_phone", "zone"]},
    )
    split = split_holdout(load_data(cfg).frame, cfg)
    model = fit_model(split.train, cfg)
    assert score_model(model, split.holdout, cfg)["roc_auc"] > 0.7


def test_recency_weights_halve_per_half_life_and_count_source_rows_as_old_as_the_window(churn_project: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from training.window import TrainingData, Window, recency_weights

    cfg = load_config(churn_project, {"retraining.include_production": True, "retraining.recency_half_life_days": 2})
    until = datetime(2026, 11, 30, tzinfo=UTC)
    frame = pd.DataFrame({"x": range(4)})
    at = pd.Series(pd.to_datetime([until - timedelta(days=2), until], utc=True), index=[2, 3])
    data = TrainingData(frame, "x.csv", "", 2, "", Window(until - timedelta(days=4), until), at)
    weights = recency_weights(frame, data, cfg)
    assert weights is not None and weights.mean() == pytest.approx(1.0)
    # source rows: 4 days old (the window's start); production rows: 2 days and 0 days old
    assert weights / weights[3] == pytest.approx([0.25, 0.25, 0.5, 1.0])
    assert data.from_production(frame.iloc[[3, 0]]).tolist() == [True, False]
    assert recency_weights(frame, data, load_config(churn_project)) is None  # no half-life: unweighted
