"""A regressor monitored like a classifier: an MAE control chart from labelled traffic against the champion's holdout
MAE, and ``degraded`` when the errors grow. Real stores, a real Ridge model, the monitor flow under the harness."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from core.config import load_config
from core.features import prepare_features
from core.store.predictions import PredictionLog, encode_value
from core.store.schema import utcnow
from flows.monitor import monitor
from model_registry.loading import load_model
from tests.conftest import write_synthetic_project
from tests.gateway_fixtures import register
from training.datasets import synthetic

TARGET = "spend_next_month"


@pytest.fixture
def regressor(settings: Any, tmp_path: Path) -> tuple[Path, str]:
    """A Ridge model of next month's spend (noise sd 5, so its MAE is about 4) registered as champion."""
    rng = np.random.default_rng(7)
    frame = synthetic(n_rows=1500, seed=3)
    frame[TARGET] = frame["monthly_spend"] * 1.1 + frame["usage_score"] * 5 + rng.normal(0, 5, len(frame))
    folder = tmp_path / "spend"
    folder.mkdir()
    frame.to_csv(folder / "spend.csv", index=False)
    path = write_synthetic_project(
        folder,
        config={
            "model_name": "spend",
            "data.source": "spend.csv",
            "data.target": TARGET,
            "data.numeric_features": ["monthly_spend", "usage_score"],
            "data.categorical_features": ["region"],
            "data.allow_extra_columns": True,
            "split": {"method": "random", "test_size": 0.25},
            "training": {"estimator": "sklearn.linear_model.Ridge", "params": {}},
            "evaluation": {"primary_metric": "mae"},
            "gates.min_score": None,
        },
    )
    return path, register(settings, load_config(path), "1.0.0", "champion")


def serve_labelled(settings: Any, config_path: Path, version: str, *, late_bias: float, n: int = 800) -> None:
    """The champion's real answers over the last 30 minutes, each labelled with the truth; in the last 40% of the
    window the truth moves by ``late_bias`` (the world changed, the model did not)."""
    config = load_config(config_path)
    rows = synthetic(n_rows=n, seed=11, missing_fraction=0.0)
    rng = np.random.default_rng(11)
    truth = rows["monthly_spend"] * 1.1 + rows["usage_score"] * 5 + rng.normal(0, 5, n)
    client = MlflowClient(settings.tracking_uri)
    predictions = load_model(client, "spend", version).predict(prepare_features(rows, config))
    log, start = PredictionLog(settings.store_url), utcnow() - timedelta(minutes=30)
    for i in range(n):
        log.record(
            request_id=f"s{i}",
            model_name="spend",
            variant="champion",
            model_version=version,
            status="ok",
            served=1,
            features={c: rows.at[i, c] for c in ("monthly_spend", "usage_score", "region")},
            prediction=encode_value(float(predictions[i])),
            latency_ms=2.0,
            at=start + timedelta(minutes=30 * i / n),
        )
        log.record_feedback(f"s{i}", float(truth[i]) + (late_bias if i > 0.6 * n else 0.0))
    log.flush()


def test_a_regressor_with_steady_errors_is_not_degraded(settings: Any, regressor: tuple[Path, str]) -> None:
    path, version = regressor
    serve_labelled(settings, path, version, late_bias=0.0)
    result = monitor(config_path=str(path)).to_json()
    assert "mae" in result["health"]["charts"], result["health"]
    assert "mae" not in result["degraded"], result["summary"]


def test_growing_errors_breach_the_mae_chart_and_degrade_the_verdict(
    settings: Any, regressor: tuple[Path, str]
) -> None:
    path, version = regressor
    serve_labelled(settings, path, version, late_bias=8.0)  # about twice the holdout MAE
    result = monitor(config_path=str(path)).to_json()
    assert result["verdict"] == "degraded" and "mae" in result["degraded"], result["summary"]
    assert any(f["check"] == "ewma" and f["subject"] == "mae" for f in result["findings"])
