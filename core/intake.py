"""Change-request intake (source 14.4): submit, validate against the config schema, claim in priority order.

A request's overrides are validated when it is submitted (so a typo is refused at the door, not an hour later)
and again when it runs (the config file may have changed in between).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from core.config import load_config, parse_override
from core.errors import RequestError
from core.store.requests import ChangeRequest, ProjectStore

REQUEST_FILE_KEYS = {"kind", "title", "reason", "overrides", "submitted_by"}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        overrides[key] = value
    return overrides


def read_request_file(path: Path) -> dict[str, Any]:
    """A request file is YAML or JSON with kind, title, reason and optional overrides (dotted keys)."""
    if not path.is_file():
        raise RequestError(f"request file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f"request file {path} is not readable YAML/JSON: {err}") from None
    if not isinstance(raw, dict):
        raise RequestError(f"request file {path} must be a mapping with kind, title and reason.")
    unknown = sorted(set(raw) - REQUEST_FILE_KEYS)
    if unknown:
        raise RequestError(
            f"request file {path} has unknown keys {unknown}; allowed: {', '.join(sorted(REQUEST_FILE_KEYS))}."
        )
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise RequestError(f"request file {path}: overrides must map dotted keys to values.")
    return {**raw, "overrides": overrides}


def submit_request(
    store: ProjectStore,
    config_path: Path,
    kind: str,
    title: str,
    reason: str,
    overrides: dict[str, Any] | None = None,
    submitted_by: str = "",
) -> ChangeRequest:
    """Validate the overrides against the project's config schema, then queue the request durably."""
    load_config(config_path, overrides or None)  # raises ConfigError naming the bad key
    return store.submit(kind, title, reason, overrides or {}, submitted_by=submitted_by)
