"""Shared fixtures: every test gets its own project home with real SQLite stores in a temporary folder.

MLflow's migrations run once per session into a template database that each test copies (MLflow's own test
pattern), so a fresh store costs a file copy instead of seconds of migrations.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import QUIET_ENV
from training.datasets import SYNTHETIC_CATEGORICAL, SYNTHETIC_NUMERIC, SYNTHETIC_TARGET, SYNTHETIC_TIME, synthetic

pytest_plugins = ["tests.gateway_fixtures"]
for _var, _value in QUIET_ENV.items():  # the test harness's Prefect server must not phone home either
    os.environ.setdefault(_var, _value)

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "project.yaml"
ISOLATED_ENV = ("MLOPS_HOME", "MLOPS_CONFIG", "MLOPS_DATABASE_URL", "MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_TRACKING_URI")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # runs the migrations
    return path


@pytest.fixture
def home(tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated MLOPS_HOME with a migrated MLflow store; the process-wide MLflow URI is restored after."""
    import mlflow

    for var in ISOLATED_ENV:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
    previous = mlflow.get_tracking_uri()
    yield home
    assert mlflow.active_run() is None, "a test leaked an active MLflow run"
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def settings(home: Path) -> Any:
    from core.settings import get_settings

    s = get_settings()
    s.ensure_home()
    return s


@pytest.fixture
def store(settings: Any) -> Any:
    from core.store.requests import ProjectStore

    return ProjectStore(settings.store_url)


def write_synthetic_project(
    folder: Path,
    *,
    n_rows: int = 1200,
    seed: int = 0,
    label_noise: float = 0.0,
    missing_fraction: float = 0.05,
    config: dict[str, Any] | None = None,
    suite: dict[str, Any] | None = None,
) -> Path:
    """A project nobody tuned for: churn-like CSV with categorical columns, missing values and a time column."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = synthetic(n_rows=n_rows, seed=seed, label_noise=label_noise, missing_fraction=missing_fraction)
    frame.to_csv(folder / "customers.csv", index=False)
    raw: dict[str, Any] = {
        "model_name": "churn",
        "data": {
            "source": "customers.csv",
            "target": SYNTHETIC_TARGET,
            "numeric_features": SYNTHETIC_NUMERIC,
            "categorical_features": SYNTHETIC_CATEGORICAL,
            "time_column": SYNTHETIC_TIME,
        },
        "split": {"method": "time", "test_size": 0.25},
        "training": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        "evaluation": {"primary_metric": "roc_auc"},
        "gates": {"min_score": 0.6, "max_regression": 0.02},
        "validation": {"min_rows": 100, "max_missing_fraction": 0.2},
    }
    if suite is not None:
        (folder / "suite.json").write_text(json.dumps(suite, indent=2))
        raw["validation"]["suite"] = "suite.json"
    for key, value in (config or {}).items():
        section, _, leaf = key.partition(".")
        if leaf:
            raw.setdefault(section, {})[leaf] = value
        else:
            raw[section] = value
    path = folder / "project.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def churn_project(tmp_path: Path) -> Path:
    return write_synthetic_project(tmp_path / "churn")


def postgres_url() -> str | None:
    return os.environ.get("MLOPS_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The project store on SQLite always, and on PostgreSQL (a throw-away schema) with MLOPS_TEST_POSTGRES_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = postgres_url()
    if not base:
        pytest.skip("MLOPS_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = base.replace("postgresql://", "postgresql+psycopg2://", 1)
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    store_url = f"{url}{sep}options=-csearch_path%3D{schema}"
    yield store_url
    from core.store.schema import close_engine

    close_engine(store_url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
