"""MLflow tracking for a lifecycle run: one MLflow run per change request, named so the compare view reads well.

Everything is written with an explicit ``run_id`` through ``MlflowClient`` (no reliance on the fluent API's
thread-local "active run"), so tasks may run in any thread. The run holds: the request as tags, parameters, the
Great Expectations result (JSON + HTML), holdout metrics of the new model *and* of the champion on the same rows,
the model with signature and explicit pip requirements, the training data as the run's input (lineage) and a
Parquet snapshot of it (the drift reference for monitoring).
"""

from __future__ import annotations

import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops import __version__
from mlops.config import ProjectConfig
from mlops.events import (
    TAG_CODE_VERSION,
    TAG_DATA_FINGERPRINT,
    TAG_DECISION,
    TAG_DECISION_REASON,
    TAG_PRIMARY_METRIC,
    TAG_REQUEST_ID,
    TAG_REQUEST_KIND,
    TAG_REQUEST_TITLE,
)
from mlops.settings import Settings
from mlops.store import ChangeRequest
from model_registry.registry import HOLDOUT_PREFIX
from tasks.training import prepare_features
from tasks.validation import ValidationReport, render_html

CHAMPION_PREFIX = "champion_holdout_"
REFERENCE_ARTIFACT = "reference/train.parquet"


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow (tracking and registry) at the configured store and return a client for it."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """The experiment named after the model; on the embedded store its artifacts live under the project home."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not settings.mlflow_tracking_uri:  # embedded store: keep artifacts inside MLOPS_HOME, not ./mlruns
        location = (settings.artifact_root / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another run
        return client.get_experiment_by_name(name).experiment_id


def code_version(cwd: Path | None = None) -> str:
    """Git commit of the project (``-dirty`` when modified), or the package version outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        return f"mlops-orchestrator=={__version__}"


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
    source: str,
    fingerprint: str,
) -> str:
    """Log the fitted pipeline with signature and pinned requirements; return its ``models:/`` URI."""
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
        try:
            with warnings.catch_warnings():
                # a local path matches two registered LocalArtifactDatasetSource entries; MLflow warns, picks one
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                dataset = mlflow.data.from_pandas(
                    train,
                    source=None if source.startswith("builtin:") else source,
                    name=f"{config.model_name}-train",
                    targets=config.data.target,
                )
            mlflow.log_input(dataset, context="training", tags={TAG_DATA_FINGERPRINT: fingerprint})
        except MlflowException:
            pass  # lineage is best effort: a source MLflow cannot describe must not stop training
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        train.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), str(Path(REFERENCE_ARTIFACT).parent))
    return info.model_uri


# Modules whose types may be loaded from a skops file without running arbitrary code.
_SAFE_TYPE_PREFIXES = ("numpy.", "sklearn.", "scipy.", "builtins.")


def serialization_for(model: Any) -> tuple[str, list[str] | None]:
    """Prefer skops (loading cannot run arbitrary code); fall back to cloudpickle for estimators whose types are
    not from numpy/scipy/scikit-learn (a user's custom class), which skops would refuse to load."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception:  # skops cannot represent the object at all
        return "cloudpickle", None
    if all(t.startswith(_SAFE_TYPE_PREFIXES) for t in untrusted):
        return "skops", list(untrusted)
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


def run_url(client: MlflowClient, experiment_id: str, run_id: str, ui_base: str = "http://127.0.0.1:5000") -> str:
    return f"{ui_base}/#/experiments/{experiment_id}/runs/{run_id}"


__all__ = [
    "CHAMPION_PREFIX",
    "HOLDOUT_PREFIX",
    "REFERENCE_ARTIFACT",
    "configure_mlflow",
    "ensure_experiment",
    "finish_run",
    "log_config",
    "log_metrics",
    "log_model",
    "log_validation",
    "start_run",
]
