"""MLflow set-up shared by every domain: the client for the configured store, the experiment per model (with its
artifacts under the project home on the embedded store), links to runs, and the code version written on them.

A home must keep working when its folder is moved, copied or mounted elsewhere, but MLflow stores absolute artifact
URIs (experiments, runs, logged models, model versions). Resolving them relative to the home would mean replacing
MLflow's artifact repositories; instead ``configure_mlflow`` notices that the home was last opened in another folder
(``Settings.home_location_file``) and rewrites the locations under the old ``artifacts/`` to the new one in one
SQLite transaction, before any client reads them. The rewrite is idempotent (a crash before the new location is
recorded redoes nothing), and it only touches the home's own ``mlflow.db``, never a store it shares.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core import __version__
from core.errors import MlopsError
from core.settings import Settings, environment_preserved

log = logging.getLogger("mlops.tracking")

# Columns of MLflow's SQL store that hold artifact locations (MLflow 3.x schema).
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)

# MLflow's Default experiment (created with the database, at ./mlruns of the directory that opened it first) while
# it holds no runs: pointed into the home so nothing this project does can write outside it.
_STRAY_DEFAULT = (
    "experiment_id = 0 AND artifact_location != ? AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.experiment_id = 0)"
)


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow (tracking and registry) at the configured store and return a client for it.

    The process-wide URI is set for MLflow's own helpers (artifact downloads, ``start_run``) without leaving it in
    the environment, where the next ``Settings`` would take it for the user's choice.
    """
    if settings.owns_mlflow_store:
        relocate_home(settings)
    with environment_preserved("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def relocate_home(settings: Settings) -> int:
    """If the home was last opened in another folder, point its stored artifact locations at this one.

    Returns the number of locations rewritten (0 when the home did not move). Also points MLflow's ``Default``
    experiment, which MLflow creates at ``./mlruns`` of whatever directory first opened the database, into the home.
    """
    db = settings.home_dir / "mlflow.db"
    here = str(settings.home_dir)
    marker = settings.home_location_file
    previous = marker.read_text().strip() if marker.exists() else None
    if not db.exists():  # a fresh home: MLflow creates the database on first use
        _write_location(marker, here)
        return 0
    old_root = Path(previous) / "artifacts" if previous and previous != here else None
    try:
        rewritten = _rewrite_locations(db, old_root, settings.artifact_root)
    except sqlite3.Error as err:
        raise MlopsError(
            f"the project home {here} was moved from {previous}, and its MLflow store could not be updated to "
            f"the new folder ({err}); make {db} writable and run the command again."
        ) from None
    if rewritten:
        log.warning("project home moved from %s to %s: %d artifact locations updated", previous, here, rewritten)
    if previous != here:
        _write_location(marker, here)
    return rewritten


def _rewrite_locations(db: Path, old_root: Path | None, new_root: Path) -> int:
    """One transaction: every location under ``old_root`` (URI or path form) moved under ``new_root``."""
    pairs = [] if old_root is None else [(old_root.as_uri() + "/", new_root.as_uri() + "/")]
    if old_root is not None and str(old_root) + "/" != old_root.as_uri() + "/":
        pairs.append((str(old_root) + "/", str(new_root) + "/"))
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            return 0
        default = (new_root / "0").as_uri()
        stray_default = conn.execute(f"SELECT 1 FROM experiments WHERE {_STRAY_DEFAULT}", (default,)).fetchone()
        if not pairs and stray_default is None:
            return 0  # the usual open: nothing moved, nothing to write
        conn.execute("BEGIN IMMEDIATE")
        count = 0
        for table, column in _LOCATION_COLUMNS:
            if table not in tables:
                continue
            for old, new in pairs:
                count += conn.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, len(old), old),
                ).rowcount
        conn.execute(f"UPDATE experiments SET artifact_location = ? WHERE {_STRAY_DEFAULT}", (default, default))
        conn.execute("COMMIT")
        return count
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def _write_location(marker: Path, here: str) -> None:
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(here + "\n")
    tmp.replace(marker)  # atomic: a reader sees the old folder or the new one, never half a path


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """The experiment named after the model; on the embedded store its artifacts live under the project home."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if settings.local_mlflow_store:
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
