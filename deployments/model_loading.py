"""The gateway's models: a loaded registry version with its input schema, by alias."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.names import TAG_SEMVER
from model_registry.loading import load_model, model_uri


@dataclass(frozen=True)
class ModelHandle:
    alias: str
    version: str
    semver: str | None
    model: Any
    column_types: dict[str, str]  # feature -> MLflow signature type (double, long, string, boolean, ...)
    loaded_at: float

    @property
    def features(self) -> list[str]:
        return list(self.column_types)


def load_handle(client: Any, model_name: str, alias: str) -> ModelHandle | None:
    """Load the version an alias points at (``None`` when the alias is not set)."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    model = load_model(model_name, str(mv.version))
    signature = get_model_info(model_uri(model_name, str(mv.version))).signature
    types = {c.name: c.type.name for c in signature.inputs.inputs} if signature else {}
    return ModelHandle(alias, str(mv.version), (mv.tags or {}).get(TAG_SEMVER), model, types, time.time())
