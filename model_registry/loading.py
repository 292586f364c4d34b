"""Loading a registered version's model: the one place every caller (lifecycle scoring, monitoring, the gateway)
goes through, so what may be loaded is decided once."""

from __future__ import annotations

from typing import Any


def model_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


def load_model(model_name: str, version: str) -> Any:
    """The fitted pipeline of ``model_name`` version ``version`` from the configured MLflow registry."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(model_uri(model_name, version))
