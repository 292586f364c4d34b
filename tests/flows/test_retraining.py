"""Retraining on a data window, end to end: a champion from the lifecycle, drifted traffic answered by the real
gateway over HTTP with labels fed back through /v1/feedback, then the ``retrain`` flow (real Prefect test harness,
MLflow on SQLite, GX) training on the configured source plus the labelled production rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from prefect.artifacts import Artifact

from core.config import load_config
from core.intake import submit_request
from core.names import HOLDOUT_ARTIFACT
from core.store.predictions import PredictionLog
from core.store.requests import ProjectStore
from core.store.schema import utcnow
from flows.lifecycle import lifecycle
from flows.retrain import RETRAIN_ACTOR, retrain
from tests.conftest import write_synthetic_project
from tests.gateway_fixtures import Served
from training.datasets import SYNTHETIC_CATEGORICAL, SYNTHETIC_NUMERIC, synthetic

DRIFT_REASON = "retrain after drift verdict 'drift': dataset drift: 3 of 6 columns drifted"


def _project(tmp_path: Path, **retraining: Any) -> Path:
    return write_synthetic_project(
        tmp_path / "churn",
        missing_fraction=0.0,
        config={"retraining": {"include_production": True, "window_days": 7, **retraining}},
    )


def _bootstrap(store: ProjectStore, config: Path) -> None:
    request = submit_request(store, config, "major", "Bootstrap", "first model")
    assert lifecycle(config_path=str(config), request_id=request.id).status == "registered"


def _drifted_traffic(n: int, seed: int = 7) -> pd.DataFrame:
    """Customers after a shift: every numeric feature moved by a standard deviation, and churn now follows support
    calls and the pro plan (a pricing change), not the old mix: the champion's rule is stale."""
    frame = synthetic(n_rows=n, seed=seed, drift=1.0, missing_fraction=0.0)
    frame["churned"] = np.where((frame["support_calls"] >= 4) | (frame["plan"] == "pro"), "yes", "no")
    return frame


def _serve_and_label(served: Served, traffic: pd.DataFrame, batch: int = 100) -> int:
    """Post the traffic to /v1/predict, then its true labels to /v1/feedback; returns the labels accepted."""
    features = [*SYNTHETIC_NUMERIC, *SYNTHETIC_CATEGORICAL]
    accepted = 0
    with served.client() as client:
        for start in range(0, len(traffic), batch):
            part = traffic.iloc[start : start + batch]
            records = [{k: (float(v) if k in SYNTHETIC_NUMERIC else v) for k, v in r.items()} for r in
                       part[features].to_dict("records")]  # fmt: skip
            answers = client.post("/v1/predict", json={"records": records})
            assert answers.status_code == 200, answers.text
            ids = [a["request_id"] for a in answers.json()["predictions"]]
            labels = [{"request_id": rid, "label": label} for rid, label in zip(ids, part["churned"], strict=True)]
            reply = client.post("/v1/feedback", json={"feedback": labels})
            assert reply.status_code == 202, reply.text
            accepted += len(labels)
    served.gateway.log.flush()
    return accepted


def test_a_retrain_after_drift_learns_from_labelled_production_rows_and_beats_the_champion_on_them(
    settings: Any, store: ProjectStore, tmp_path: Path, serve_gateway: Callable[..., Served]
) -> None:
    config = _project(tmp_path, recency_half_life_days=7, holdout_share_of_production=0.3)
    _bootstrap(store, config)
    served = serve_gateway(load_config(config))
    assert _serve_and_label(served, _drifted_traffic(600)) == 600

    result = retrain(config_path=str(config), reason=DRIFT_REASON, run_rollout=False).to_json()

    assert result["status"] == "registered", result
    request = store.get(result["request_id"])
    assert request.submitted_by == RETRAIN_ACTOR
    # the reason names the drift verdict and the window, with row counts
    assert request.reason.startswith(f"{DRIFT_REASON}; data: customers.csv (1200 rows) + production ")
    assert request.reason.endswith(" UTC (600 labelled rows)")
    assert result["data"] == request.reason.split("; data: ")[1]
    # the window is pinned on the request, so the lifecycle (and a rerun) reads the same rows
    assert set(request.overrides) == {"retraining.since", "retraining.until", "retraining.window_days"}

    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(request.mlflow_run_id)
    inputs = {d.dataset.name: {t.key: t.value for t in d.tags} for d in run.inputs.dataset_inputs}
    production = next(name for name in inputs if name.startswith("production window "))
    assert set(inputs) == {"configured source", production}
    assert inputs["configured source"]["mlops.rows"] == "1200" and inputs[production]["mlops.rows"] == "600"
    assert inputs[production]["mlops.origin"] == "production"
    assert run.data.tags["mlops.production_rows"] == "600"
    assert run.data.metrics["data_source_rows"] == 1200 and run.data.metrics["data_production_rows"] == 600

    # the holdout: the source's 300 newest rows plus 30% of the production rows (the newest: a time split)
    assert run.data.metrics["holdout_production_rows"] == 180
    holdout = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=HOLDOUT_ARTIFACT)
    )
    assert len(holdout) == 300 + 180
    assert (holdout["event_time"] >= pd.Timestamp(utcnow() - timedelta(days=1))).sum() == 180

    # on the drifted traffic the retrained challenger is clearly better than the champion it is compared with
    metrics = run.data.metrics
    assert metrics["holdout_production_roc_auc"] > metrics["champion_holdout_production_roc_auc"] + 0.2, metrics
    assert metrics["holdout_production_accuracy"] > metrics["champion_holdout_production_accuracy"] + 0.1, metrics
    assert metrics["holdout_roc_auc"] > metrics["champion_holdout_roc_auc"]  # and so it wins the gate
    art = Artifact.get("retrain-churn")
    assert art is not None and "(600 labelled rows)" in art.data


def test_with_no_labelled_production_rows_the_retrain_says_so_and_trains_on_the_source(
    settings: Any, store: ProjectStore, tmp_path: Path
) -> None:
    config = _project(tmp_path, min_production_rows=5)
    _bootstrap(store, config)
    log = PredictionLog(settings.store_url)  # answers were given, but no label came back
    for i, row in enumerate(_drifted_traffic(50).to_dict("records")):
        features = {k: row[k] for k in [*SYNTHETIC_NUMERIC, *SYNTHETIC_CATEGORICAL]}
        log.record(request_id=f"r{i}", model_name="churn", variant="champion", model_version="1", status="ok",
                   served=1, features=features, prediction='"no"')  # fmt: skip
    log.flush()

    # configured to require new data: skipped, no request filed
    skipped = retrain(config_path=str(config), reason=DRIFT_REASON, run_rollout=False).to_json()
    assert skipped["status"] == "skipped" and skipped["request_id"] is None
    assert "0 labelled production rows in " in skipped["reason"] and "min_production_rows (5)" in skipped["reason"]
    assert [r.submitted_by for r in store.list()] == [""]

    raw = yaml.safe_load(config.read_text())
    raw["retraining"]["min_production_rows"] = 0
    config.write_text(yaml.safe_dump(raw))
    result = retrain(config_path=str(config), reason=DRIFT_REASON, run_rollout=False).to_json()
    assert result["status"] == "registered", result
    request = store.get(result["request_id"])
    assert "; data: customers.csv (1200 rows); no labelled production rows in " in request.reason
    assert request.reason.endswith("so the configured source only")
    run = MlflowClient(settings.tracking_uri).get_run(request.mlflow_run_id)
    assert run.data.tags["mlops.production_rows"] == "0"
    assert "so the configured source only" in run.data.tags["mlops.training_data"]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["configured source"]
    assert "holdout_production_rows" not in run.data.metrics


def test_a_production_record_that_no_longer_matches_the_config_is_named_by_the_gx_gate(
    settings: Any, store: ProjectStore, tmp_path: Path
) -> None:
    config = _project(tmp_path)
    _bootstrap(store, config)
    log = PredictionLog(settings.store_url)
    for i, row in enumerate(_drifted_traffic(30).to_dict("records")):
        features = {k: row[k] for k in [*SYNTHETIC_NUMERIC, *SYNTHETIC_CATEGORICAL]}
        features["loyalty_tier"] = "gold"  # served by a model with another signature
        log.record(request_id=f"r{i}", model_name="churn", variant="champion", model_version="1", status="ok",
                   served=1, features=features, prediction='"no"')  # fmt: skip
        log.record_feedback(f"r{i}", row["churned"])
    log.flush()

    result = retrain(config_path=str(config), reason=DRIFT_REASON, run_rollout=False).to_json()

    assert result["status"] == "failed"
    assert "loyalty_tier" in result["reason"] and "data validation failed" in result["reason"]
    assert store.get(result["request_id"]).status == "failed"


@pytest.mark.parametrize("corrections", [False, True])
def test_the_window_reads_one_row_per_request_with_the_label_that_counts(settings: Any, corrections: bool) -> None:
    """Shadow copies of an answer are not second rows; a corrected label counts only with corrections on; labels
    after the window's end and answers outside it are left out."""
    log = PredictionLog(settings.store_url, corrections=corrections)
    now = utcnow()
    answer = {"model_name": "churn", "model_version": "1", "features": {"x": 1.0}, "prediction": '"no"'}
    log.record(request_id="a", variant="champion", status="ok", served=1, at=now - timedelta(hours=2), **answer)
    log.record(request_id="a", variant="challenger", status="shadow", served=0, at=now - timedelta(hours=2), **answer)
    log.record(request_id="old", variant="champion", status="ok", served=1, at=now - timedelta(days=9), **answer)
    log.record(request_id="late", variant="champion", status="ok", served=1, at=now - timedelta(hours=1), **answer)
    log.flush()
    log.record_feedback("a", "yes")
    log.record_feedback("old", "yes")
    log.flush()
    log.record_feedback("a", "no")  # a correction
    log.flush()
    until = utcnow()
    log.record_feedback("late", "yes")  # arrives after the window closed
    log.flush()

    rows = log.labelled_rows("churn", now - timedelta(days=7), until)

    assert list(rows["request_id"]) == ["a"]
    assert list(rows["label"]) == (["no"] if corrections else ["yes"])
    assert rows["features"][0] == {"x": 1.0}
