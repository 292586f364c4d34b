"""The lifecycle flow end to end: real Prefect API (test harness), real MLflow store on SQLite, real GX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from prefect.artifacts import Artifact

from core.errors import ConfigError, DataError, ValidationFailed
from core.intake import submit_request
from core.store.requests import ProjectStore
from flows.lifecycle import lifecycle
from model_registry.registry import ModelRegistry
from tasks.reporting import artifact_key
from tests.conftest import DEMO_CONFIG
from training.datasets import corrupt_breast_cancer

MODEL = "breast-cancer-classifier"


def _registry(settings: Any) -> ModelRegistry:
    return ModelRegistry(MODEL, ProjectStore(settings.store_url), MlflowClient(settings.tracking_uri))


def _run(
    store: ProjectStore, kind: str, title: str, overrides: dict[str, Any] | None = None, config: Path = DEMO_CONFIG
) -> Any:
    req = submit_request(store, config, kind, title, f"reason for {title}", overrides)
    return lifecycle(config_path=str(config), request_id=req.id)


@pytest.fixture
def bootstrapped(settings: Any, store: ProjectStore) -> ModelRegistry:
    outcome = _run(store, "major", "Bootstrap")
    assert outcome.status == "registered"
    return _registry(settings)


def test_bootstrap_then_minor_request_gives_champion_and_challenger(
    settings: Any, store: ProjectStore, bootstrapped: ModelRegistry
) -> None:
    outcome = _run(store, "minor", "Weaker regularisation", {"training.params.C": 0.5})

    assert (outcome.status, outcome.semver, outcome.aliases) == ("registered", "1.1.0", ["challenger"])
    reg = bootstrapped
    assert reg.aliases() == {"champion": "1", "challenger": "2"}
    v1, v2 = reg.versions()
    assert (v1.semver, v2.semver) == ("1.0.0", "1.1.0")
    assert v2.tags["mlops.request_kind"] == "minor" and v2.tags["mlops.request_id"] == str(outcome.request_id)
    assert v2.tags["mlops.data_fingerprint"] == v1.tags["mlops.data_fingerprint"]
    assert v2.tags["mlops.data_fingerprint"].startswith("sha256:")
    assert v2.tags["mlops.code_version"]
    assert v2.tags["mlops.gate.max_regression"].startswith("pass: accuracy")
    assert "1.1.0 from minor change request" in v2.description and "vs champion 1.0.0" in v2.description

    # champion and challenger scored on the same rows, both visible on the challenger's MLflow run
    run = MlflowClient(settings.tracking_uri).get_run(v2.run_id)
    assert run.data.metrics["champion_holdout_accuracy"] == pytest.approx(v1.metrics["accuracy"])
    assert run.data.metrics["holdout_accuracy"] == pytest.approx(v2.metrics["accuracy"])
    assert run.data.tags["mlflow.runName"] == f"{MODEL} 1.1.0 (minor #{outcome.request_id})"
    assert run.data.tags["mlops.decision"] == "challenger"
    assert run.inputs.dataset_inputs, "the training data is the run's input (lineage)"
    artifacts = {a.path for a in MlflowClient(settings.tracking_uri).list_artifacts(v2.run_id, "validation")}
    assert artifacts == {"validation/gx_validation_result.json", "validation/report.html"}

    # the registered model serves: loadable by alias, with a signature
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@challenger")
    assert model.metadata.signature is not None
    from training.datasets import breast_cancer

    assert set(model.predict(breast_cancer().drop(columns=["diagnosis"]).head(5))) <= {"benign", "malignant"}

    # alias history: who moved what, when and why
    history = [(e.alias, e.from_version, e.to_version) for e in reg.history()]
    assert history == [("champion", None, "1"), ("challenger", None, "2")]
    assert all("lifecycle flow for request" in e.actor for e in reg.history())

    # request traced to the model it produced
    req = store.get(outcome.request_id)
    assert (req.status, req.semver, req.model_version) == ("succeeded", "1.1.0", "2")

    # the Prefect artifact explains the decision with the comparison
    art = Artifact.get(artifact_key(MODEL))
    assert art is not None and "Registered" in art.data and "champion 1.0.0" in art.data and "accuracy" in art.data


def test_corrupted_data_fails_with_a_gx_report_and_registers_nothing(
    settings: Any, store: ProjectStore, bootstrapped: ModelRegistry, tmp_path: Path
) -> None:
    bad = corrupt_breast_cancer(tmp_path / "export.csv")
    req = submit_request(store, DEMO_CONFIG, "hotfix", "Retrain on export", "", {"data.source": str(bad)})
    with pytest.raises(ValidationFailed) as info:
        lifecycle(config_path=str(DEMO_CONFIG), request_id=req.id)

    failures = "\n".join(info.value.failures)
    assert "undeclared columns ['export_batch_id']" in failures
    assert "column 'mean radius'" in failures and "column 'diagnosis'" in failures
    assert "column 'mean texture': expected numbers" in failures
    assert [v.semver for v in bootstrapped.versions()] == ["1.0.0"]
    assert bootstrapped.aliases() == {"champion": "1"}
    failed = store.get(req.id)
    assert failed.status == "failed" and "data validation failed" in failed.status_reason
    run = MlflowClient(settings.tracking_uri).get_run(failed.mlflow_run_id)
    assert run.info.status == "FAILED" and run.data.tags["mlops.decision"] == "failed"
    report = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="validation/report.html")
    assert "Data validation FAILED" in Path(report).read_text()
    result = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="validation/gx_validation_result.json"
            )
        ).read_text()
    )
    assert result["success"] is False
    art = Artifact.get(artifact_key(MODEL))
    assert art is not None and "Failed expectations" in art.data


def test_a_model_failing_the_gates_is_logged_but_not_registered(
    settings: Any, store: ProjectStore, bootstrapped: ModelRegistry
) -> None:
    outcome = _run(store, "minor", "Far too much regularisation", {"training.params.C": 0.0001})

    assert outcome.status == "rejected" and "max_regression" in outcome.decision
    assert [v.semver for v in bootstrapped.versions()] == ["1.0.0"]
    req = store.get(outcome.request_id)
    assert req.status == "rejected" and "Not registered" in req.status_reason
    run = MlflowClient(settings.tracking_uri).get_run(outcome.mlflow_run_id)
    assert run.data.tags["mlops.decision"] == "rejected"
    logged = MlflowClient(settings.tracking_uri).search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id='{run.info.run_id}'"
    )
    assert len(logged) == 1, "the rejected model is still logged for inspection"


def test_hotfix_bumps_the_patch_and_takes_over_the_challenger_alias(
    store: ProjectStore, bootstrapped: ModelRegistry
) -> None:
    _run(store, "minor", "Minor", {"training.params.C": 0.5})
    outcome = _run(store, "hotfix", "Hotfix", {"training.params.C": 0.06})
    assert outcome.semver == "1.0.1"
    assert bootstrapped.aliases() == {"champion": "1", "challenger": "3"}
    assert [(e.alias, e.from_version, e.to_version) for e in bootstrapped.history()][-1] == ("challenger", "2", "3")
    bootstrapped.promote("3", actor="test", reason="canary passed")
    assert bootstrapped.aliases() == {"champion": "3", "previous": "1"}
    cmp = bootstrapped.compare("1.0.0", "champion")
    assert cmp.same_data and {r[0] for r in cmp.rows} >= {"accuracy", "roc_auc"}


def test_a_new_dataset_with_categories_missing_values_and_a_time_split(
    settings: Any, store: ProjectStore, churn_project: Path
) -> None:
    outcome = _run(store, "major", "First churn model", config=churn_project)
    assert (outcome.status, outcome.semver, outcome.metric) == ("registered", "1.0.0", "roc_auc")
    assert outcome.metrics["roc_auc"] > 0.75
    reg = ModelRegistry("churn", ProjectStore(settings.store_url), MlflowClient(settings.tracking_uri))
    assert reg.aliases() == {"champion": "1"}
    model = mlflow.sklearn.load_model("models:/churn@champion")
    assert hasattr(model, "predict_proba")


def test_no_queued_request_is_a_quiet_no_op(settings: Any) -> None:
    assert lifecycle(config_path=str(DEMO_CONFIG)).status == "idle"


def test_bad_configuration_and_unreadable_data_fail_the_request_cleanly(
    settings: Any, store: ProjectStore, bootstrapped: ModelRegistry, tmp_path: Path
) -> None:
    sneaky = store.submit("minor", "bypassed intake", "", {"gates.min_scor": 0.5})  # as if the schema changed since
    with pytest.raises(ConfigError, match="min_scor"):
        lifecycle(config_path=str(DEMO_CONFIG), request_id=sneaky.id)
    assert store.get(sneaky.id).status == "failed"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    req = submit_request(store, DEMO_CONFIG, "hotfix", "empty export", "", {"data.source": str(empty)})
    with pytest.raises(DataError, match="is empty"):
        lifecycle(config_path=str(DEMO_CONFIG), request_id=req.id)
    assert "data error" in store.get(req.id).status_reason
    assert [v.semver for v in bootstrapped.versions()] == ["1.0.0"]
