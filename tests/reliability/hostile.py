"""Hostile model artifacts for the fault suite: each writes a marker file if anything ever deserializes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from model_registry.registry import ModelRegistry


class PickleBomb:
    """Unpickling this runs ``exec`` (the classic MLflow pickle attack), which here only writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran on load')",))


class SkopsBomb:
    """A type outside numpy/scipy/scikit-learn in a skops file: skops rebuilds it with ``__setstate__``, which here
    writes ``marker``. Its MLmodel file lists it as trusted, as an attacker's would."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        Path(self.marker).write_text("code ran on load")

    def predict(self, frame: Any) -> list[int]:
        return [0] * len(frame)


def register_hostile(
    client: MlflowClient, registry: ModelRegistry, experiment_id: str, semver: str, marker: Path, fmt: str
) -> str:
    """Register a version whose artifact runs code on load (``fmt``: ``pickle`` or ``skops``); returns the version."""
    import mlflow.sklearn

    run_id = client.create_run(experiment_id).info.run_id
    with mlflow.start_run(run_id=run_id):
        if fmt == "pickle":
            info = mlflow.sklearn.log_model(
                PickleBomb(marker), name="model", serialization_format="pickle", pip_requirements=[]
            )
        else:
            info = mlflow.sklearn.log_model(
                SkopsBomb(str(marker)),
                name="model",
                serialization_format="skops",
                skops_trusted_types=[f"{SkopsBomb.__module__}.SkopsBomb"],
                pip_requirements=[],
            )
    marker.unlink(missing_ok=True)  # MLflow's own save-time check loads a skops file once
    mv = registry.register(info.model_uri, run_id, semver, tags={}, description=f"hostile {fmt} artifact")
    return str(mv.version)
