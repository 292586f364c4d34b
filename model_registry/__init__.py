"""Everything about the MLflow model registry: semantic versions, aliases with history, comparison, promotion."""

from model_registry.registry import ModelRegistry, VersionInfo
from model_registry.semver import SemVer, next_semver

__all__ = ["ModelRegistry", "SemVer", "VersionInfo", "next_semver"]
