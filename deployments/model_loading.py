"""The gateway's models: a loaded registry version with its input schema, by alias."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.errors import RegistryError
from core.names import TAG_SEMVER
from deployments.fast_predict import CompiledPredict, FastPredict, numeric_fast_path
from model_registry.registry import ModelRegistry

NUMERIC_TYPES = {"double", "float", "long", "integer"}


@dataclass(frozen=True)
class ModelHandle:
    alias: str
    version: str
    semver: str | None
    model: Any
    column_types: dict[str, str]  # feature -> MLflow signature type (double, long, string, boolean, ...)
    loaded_at: float
    fast_predict: FastPredict | None = None  # same answers from a float matrix (``deployments.fast_predict``)
    fast_path: str = "not tried"  # why the fast path is or is not used

    @property
    def features(self) -> list[str]:
        return list(self.column_types)

    @property
    def inline(self) -> bool:
        """Whether its predict is numpy operations only (cheaper run on the event loop than handed to a thread)."""
        return isinstance(self.fast_predict, CompiledPredict)


def load_handle(registry: ModelRegistry, alias: str, *, compile: bool = True) -> ModelHandle | None:
    """Load the version an alias points at (``None`` when the alias is not set), through the registry's allowlist.

    Raises ``UnsafeModelError`` for a version whose format could run code on load (nothing deserialized), and
    ``RegistryError`` when what was loaded is not the version the alias named.
    """
    mv = registry.alias_version(alias)
    if mv is None:
        return None
    asked = str(mv.version)
    loaded = registry.load(asked)
    if loaded.version != asked or loaded.model_name != registry.name:
        raise RegistryError(f"asked for {registry.name} v{asked} as {alias} but loaded v{loaded.version}")
    signature = loaded.signature
    types = {c.name: c.type.name for c in signature.inputs.inputs} if signature else {}
    fast, why = None, "no input signature" if not types else "some features are not numeric"
    if types and all(kind in NUMERIC_TYPES for kind in types.values()):
        fast, why = numeric_fast_path(loaded.model, list(types), compile=compile)
    return ModelHandle(alias, asked, (mv.tags or {}).get(TAG_SEMVER), loaded.model, types, time.time(), fast, why)
