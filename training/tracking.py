"""MLflow tracking for a lifecycle run: one MLflow run per change request, named so the compare view reads well.

Everything is written with an explicit ``run_id`` through ``MlflowClient`` (no reliance on the fluent API's
thread-local "active run"), so tasks may run in any thread. The run holds: the request as tags, parameters, the
Great Expectations result (JSON + HTML), holdout metrics of the new model *and* of the champion on the same rows,
the model with signature and explicit pip requirements, the training data as the run's inputs (lineage: the
configured source and, when retraining includes it, the production window, each with its row count) and a Parquet
snapshot of the training rows (the drift reference for monitoring).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core.config import ProjectConfig
from core.faults import LIFECYCLE_RUN_OPENED, crash_point
from core.features import prepare_features
from core.names import (
    CHAMPION_PREFIX,
    HOLDOUT_ARTIFACT,
    HOLDOUT_PREFIX,
    REFERENCE_ARTIFACT,
    TAG_CODE_VERSION,
    TAG_DATA_FINGERPRINT,
    TAG_DECISION,
    TAG_DECISION_REASON,
    TAG_ORIGIN,
    TAG_PRIMARY_METRIC,
    TAG_PRODUCTION_ROWS,
    TAG_PRODUCTION_WINDOW,
    TAG_REQUEST_ID,
    TAG_REQUEST_KIND,
    TAG_REQUEST_TITLE,
    TAG_ROLE,
    TAG_ROWS,
    TAG_TRAINING_DATA,
)
from core.settings import Settings
from core.store.requests import ChangeRequest
from core.tracking import code_version, ensure_experiment
from model_registry.loading import is_trusted_type
from training.search import SearchResult
from training.validation import ValidationReport, render_html
from training.window import SOURCE_DATASET, TrainingData

log = logging.getLogger("mlops.training")


def start_run(client: MlflowClient, experiment_id: str, config: ProjectConfig, request: ChangeRequest) -> str:
    tags = {
        "mlflow.runName": f"request #{request.id} {request.kind}: {request.title}"[:250],
        "mlflow.note.content": f"Change request #{request.id} ({request.kind}): {request.title}\n\n{request.reason}",
        TAG_REQUEST_ID: str(request.id),
        TAG_REQUEST_KIND: request.kind,
        TAG_REQUEST_TITLE: request.title[:250],
        TAG_PRIMARY_METRIC: config.evaluation.primary_metric,
        TAG_CODE_VERSION: code_version(config.base_dir),
    }
    run = client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"])
    return run.info.run_id


def log_config(client: MlflowClient, run_id: str, config: ProjectConfig, request: ChangeRequest) -> None:
    client.log_dict(run_id, config.to_yaml_dict(), "config/project.json")
    params = {
        "estimator": config.training.estimator,
        "split.method": config.split.method,
        "split.test_size": config.split.test_size,
        "split.seed": config.split.seed,
        "data.source": config.data.source,
        "n_numeric_features": len(config.data.numeric_features),
        "n_categorical_features": len(config.data.categorical_features),
        **{f"param.{k}": v for k, v in config.training.params.items()},
        **{f"override.{k}": v for k, v in request.overrides.items()},
    }
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])


def log_validation(client: MlflowClient, run_id: str, report: ValidationReport, source: str, fingerprint: str) -> None:
    client.log_dict(run_id, report.result, "validation/gx_validation_result.json")
    client.log_text(run_id, render_html(report, source), "validation/report.html")
    client.set_tag(run_id, TAG_DATA_FINGERPRINT, fingerprint)
    client.set_tag(run_id, "mlops.validation", report.summary[:250])
    client.log_metric(run_id, "validation_failed_expectations", report.failed)


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], prefix: str) -> None:
    for key, value in metrics.items():
        client.log_metric(run_id, f"{prefix}{key}", value)


def log_model(
    client: MlflowClient,
    run_id: str,
    model: Any,
    train: pd.DataFrame,
    config: ProjectConfig,
    holdout: pd.DataFrame | None = None,
) -> str:
    """Log the fitted pipeline with signature and pinned requirements; return its ``models:/`` URI.

    The training rows (and the ``holdout``, when given) are logged as parquet: they are the references drift
    monitoring may compare served traffic against (``monitoring.reference``)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    sample = prepare_features(train.head(20), config)
    signature = infer_signature(sample, model.predict(sample))
    with mlflow.start_run(run_id=run_id):
        fmt, trusted = serialization_for(model)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            pip_requirements=_pinned_requirements(fmt),
            serialization_format=fmt,
            skops_trusted_types=trusted,
        )
    with tempfile.TemporaryDirectory() as tmp:
        for artifact, frame in ((REFERENCE_ARTIFACT, train), (HOLDOUT_ARTIFACT, holdout)):
            if frame is not None:
                path = Path(tmp) / Path(artifact).name
                frame.to_parquet(path, index=False)
                client.log_artifact(run_id, str(path), str(Path(artifact).parent))
    return info.model_uri


def log_training_data(client: MlflowClient, run_id: str, data: TrainingData, config: ProjectConfig) -> None:
    """The run's data lineage: one MLflow dataset input per part (the configured source, the production window),
    each with its row count and fingerprint; the data in words and the row counts as tags and metrics."""
    import mlflow.data

    parts = [(SOURCE_DATASET, data.source_part, data.source, data.source_fingerprint)]
    if data.production_rows:
        parts.append((data.production_name, data.production_part, None, data.production_fingerprint))
    with mlflow.start_run(run_id=run_id):
        for name, frame, source, fingerprint in parts:
            try:
                with warnings.catch_warnings():
                    # a local path matches two registered LocalArtifactDatasetSource entries; MLflow warns, picks one
                    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                    dataset = mlflow.data.from_pandas(
                        frame,
                        source=None if source is None or source.startswith("builtin:") else source,
                        name=name,
                        targets=config.data.target,
                    )
                origin = "configured source" if source is not None else "production"
                tags = {TAG_DATA_FINGERPRINT: fingerprint or "", TAG_ROWS: str(len(frame)), TAG_ORIGIN: origin}
                mlflow.log_input(dataset, context="training", tags=tags)
            except MlflowException:
                pass  # lineage is best effort: a source MLflow cannot describe must not stop training
    client.set_tag(run_id, TAG_TRAINING_DATA, data.description[:5000])
    client.set_tag(run_id, TAG_PRODUCTION_WINDOW, data.window.label if data.window else "none")
    client.set_tag(run_id, TAG_PRODUCTION_ROWS, str(data.production_rows))
    client.log_metric(run_id, "data_source_rows", data.source_rows)
    client.log_metric(run_id, "data_production_rows", data.production_rows)


def serialization_for(model: Any) -> tuple[str, list[str] | None]:
    """Prefer skops (loading cannot run arbitrary code); fall back to cloudpickle for estimators whose types are
    not from numpy/scipy/scikit-learn (a user's custom class), which skops would refuse to load. The check is the
    loader's own (``model_registry.loading.is_trusted_type``), so what is saved as skops is what loads by default;
    a cloudpickled version loads only with MLOPS_TRUST_PICKLE=1."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception:  # skops cannot represent the object at all
        return "cloudpickle", None
    if all(is_trusted_type(t) for t in untrusted):
        return "skops", list(untrusted)
    log.warning(
        "saving the model with cloudpickle: skops cannot vouch for %s; it will load only with MLOPS_TRUST_PICKLE=1",
        ", ".join(sorted(t for t in untrusted if not is_trusted_type(t)))[:300],
    )
    return "cloudpickle", None


def _pinned_requirements(serialization: str) -> list[str]:
    """Exact versions of what the serialized pipeline needs; MLflow's own inference of these takes seconds."""
    from importlib.metadata import version

    extra = "skops" if serialization == "skops" else "cloudpickle"
    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "pandas", "numpy", extra)]


def finish_run(client: MlflowClient, run_id: str, decision: str, reason: str, failed: bool = False) -> None:
    client.set_tag(run_id, TAG_DECISION, decision)
    client.set_tag(run_id, TAG_DECISION_REASON, reason[:5000])
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")


def open_lifecycle_run(client: MlflowClient, settings: Settings, config: ProjectConfig, request: ChangeRequest) -> str:
    """The MLflow run of one change request, in the model's experiment, with the config and request logged."""
    experiment_id = ensure_experiment(client, config.model_name, settings)
    run_id = start_run(client, experiment_id, config, request)
    log_config(client, run_id, config, request)
    crash_point(settings.fault_point, LIFECYCLE_RUN_OPENED)
    return run_id


def log_comparison(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    prefix: str = HOLDOUT_PREFIX,
    champion_prefix: str = CHAMPION_PREFIX,
) -> None:
    """The new model's holdout metrics and, next to them, the champion's on the same rows (MLflow's compare view)."""
    log_metrics(client, run_id, metrics, prefix)
    if champion_metrics:
        log_metrics(client, run_id, champion_metrics, champion_prefix)


def name_registered_run(
    client: MlflowClient, run_id: str, model_name: str, semver: str, request: ChangeRequest
) -> None:
    client.set_tag(run_id, "mlflow.runName", f"{model_name} {semver} ({request.kind} #{request.id})")


def log_search(client: MlflowClient, parent_run_id: str, result: SearchResult) -> None:
    """Each trial as a child run of the lifecycle run (MLflow's compare and parallel-coordinates views show the
    search), and the search's summary on the parent."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    metric = f"cv_{result.metric}"
    for trial in result.trials:
        child = client.create_run(
            experiment_id,
            run_name=f"trial {trial.number}",
            tags={"mlflow.parentRunId": parent_run_id, TAG_ROLE: "search-trial"},
        )
        run_id = child.info.run_id
        for key, value in trial.params.items():
            client.log_param(run_id, key, str(value))
        if trial.score is not None:
            client.log_metric(run_id, metric, trial.score)
            client.log_metric(run_id, f"{metric}_std", trial.std or 0.0)
        client.log_metric(run_id, "trial_seconds", trial.seconds)
        if trial.error:
            client.set_tag(run_id, "mlops.trial_error", trial.error[:500])
        client.set_terminated(run_id, status="FINISHED" if trial.score is not None else "FAILED")
    best = result.best
    client.log_metric(parent_run_id, f"best_{metric}", best.score or 0.0)
    client.log_metric(parent_run_id, "search_trials", len(result.trials))
    client.log_metric(parent_run_id, "search_wall_seconds", result.wall_seconds)
    client.set_tag(parent_run_id, "mlops.search_best_trial", str(best.number))
    for key, value in best.params.items():  # what the candidate was trained with, next to the configured param.*
        client.log_param(parent_run_id, f"search.best.{key}", str(value))
