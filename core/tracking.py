"""MLflow set-up shared by every domain: the client for the configured store, the experiment per model (with its
artifacts under the project home on the embedded store), links to runs, and the code version written on them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core import __version__
from core.settings import Settings


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
    if not settings.tracking_uri.startswith(("http://", "https://", "databricks")):
        # a store this process writes directly (SQLite, or PostgreSQL under `mlops up --database-url`) has no
        # server to keep artifacts: keep them inside MLOPS_HOME, not in ./mlruns of whatever the current folder is
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


def run_url(client: MlflowClient, run_id: str, ui_base: str = "http://127.0.0.1:5000") -> str:
    """Where the run is in the MLflow UI (``mlops ui`` serves it on port 5000)."""
    experiment_id = client.get_run(run_id).info.experiment_id
    return f"{ui_base}/#/experiments/{experiment_id}/runs/{run_id}"
