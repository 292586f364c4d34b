"""The services one model's orchestration shares, built once from ``Settings`` and the project config.

Flows, CLI commands and the gateway receive a ``ProjectContext`` instead of building an MLflow client, a registry
and stores of their own: a rollout poll reuses the context it was given. It sits above the registry (which it
holds) and below the domains (which receive it). A second model served or monitored from the same process is a
second context; contexts on the same store share its database engine (``core.store.schema.get_engine`` keeps one
per URL).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from core.config import ProjectConfig, load_config
from core.settings import Settings, get_settings
from core.store.predictions import PredictionLog
from core.store.requests import ProjectStore
from core.store.rollouts import RolloutStore
from core.tracking import configure_mlflow
from model_registry.registry import ModelRegistry


@dataclass(frozen=True)
class ProjectContext:
    """Settings, config and the services built from them for one registered model."""

    settings: Settings
    config: ProjectConfig
    mlflow: MlflowClient
    store: ProjectStore
    rollouts: RolloutStore
    predictions: PredictionLog
    registry: ModelRegistry

    @property
    def model_name(self) -> str:
        return self.config.model_name

    @property
    def config_path(self) -> Path:
        return self.settings.config

    def registry_for(self, model_name: str | None) -> ModelRegistry:
        """The registry of ``model_name`` (default: the config's model) over the same MLflow client and store."""
        if model_name is None or model_name == self.registry.name:
            return self.registry
        return ModelRegistry(model_name, self.store, self.mlflow, trust_pickle=self.settings.trust_pickle)

    def with_config(self, config: ProjectConfig) -> ProjectContext:
        """The same services under another config (a change request's overrides)."""
        return replace(self, config=config, registry=self.registry_for(config.model_name))


def open_context(
    settings: Settings | None = None,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    config: ProjectConfig | None = None,
) -> ProjectContext:
    """Build the context: MLflow pointed at the configured store, the project store, the rollout store, the
    prediction log (not started: a writer starts it) and the registry of the config's model.

    ``config_path`` (default ``settings.config``) is read with ``overrides`` unless a ``config`` is given.
    """
    settings = settings or get_settings()
    settings.ensure_home()
    if config_path is not None:
        settings = settings.model_copy(update={"config": Path(config_path)})
    if config is None:
        config = load_config(settings.config, overrides)
    client = configure_mlflow(settings)
    store = ProjectStore(settings.store_url, settings.claim_lease_seconds)
    return ProjectContext(
        settings=settings,
        config=config,
        mlflow=client,
        store=store,
        rollouts=RolloutStore(settings.store_url),
        predictions=PredictionLog(
            settings.store_url,
            journal_dir=settings.journal_dir,
            fault_point=settings.fault_point,
            corrections=settings.feedback_corrections,
        ),
        registry=ModelRegistry(config.model_name, store, client, trust_pickle=settings.trust_pickle),
    )
