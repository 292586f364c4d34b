"""The CLI tests' own project home: a migrated MLflow store copied in, nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def cli_home(tmp_path: Path, mlflow_template: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    return home
