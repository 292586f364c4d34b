"""A request with a search: trials on a real local Dask cluster through Prefect, child runs in MLflow, the best
trial registered through the usual gates."""

from __future__ import annotations

import re
from typing import Any

import pytest
from mlflow import MlflowClient
from prefect.artifacts import Artifact

from core.errors import MlopsError
from core.intake import submit_request
from core.store.requests import ProjectStore
from flows.lifecycle import lifecycle
from tests.conftest import DEMO_CONFIG

SEARCH = {
    "space": {
        "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
        "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
    },
    "n_trials": 4,
    "parallelism": 2,
    "dask_workers": 2,
    "seed": 3,
}


@pytest.mark.slow
def test_a_search_runs_on_dask_and_registers_its_best_trial(settings: Any, store: ProjectStore) -> None:
    req = submit_request(store, DEMO_CONFIG, "major", "Tuned", "search C", {"training.search": SEARCH})
    outcome = lifecycle(config_path=str(DEMO_CONFIG), request_id=req.id)
    assert outcome.status == "registered", outcome.decision

    client = MlflowClient(settings.tracking_uri)
    parent = client.get_run(outcome.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=50
    )
    assert len(children) == 4 and all("cv_accuracy" in c.data.metrics for c in children)
    best = max(children, key=lambda c: c.data.metrics["cv_accuracy"])
    assert parent.data.tags["mlops.search_best_trial"] == best.info.run_name.removeprefix("trial ")
    assert parent.data.metrics["best_cv_accuracy"] == pytest.approx(best.data.metrics["cv_accuracy"])
    assert client.get_model_version("breast-cancer-classifier", outcome.version).run_id == parent.info.run_id
    assert parent.data.params["search.best.C"] == best.data.params["C"]  # the candidate was trained with these
    art = Artifact.get("search-breast-cancer-classifier")
    assert art is not None and "| trial | accuracy |" in art.data


def test_an_unreachable_dask_scheduler_is_a_clear_error(
    settings: Any, store: ProjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DASK_ADDRESS", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    req = submit_request(store, DEMO_CONFIG, "major", "Tuned", "search C", {"training.search": SEARCH})
    with pytest.raises(
        MlopsError, match=re.escape("no Dask scheduler answered at MLOPS_DASK_ADDRESS=tcp://127.0.0.1:9")
    ):
        lifecycle(config_path=str(DEMO_CONFIG), request_id=req.id)
    assert store.get(req.id).status == "failed"
