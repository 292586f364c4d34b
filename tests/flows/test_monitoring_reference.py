"""The drift reference is a config choice and the verdict says what it covers: the champion's holdout rows, or the
served answers of the window before the monitored one (falling back to the training rows while there are too few)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.config import ProjectConfig
from flows.monitor import monitor
from tests.conftest import DEMO_CONFIG
from tests.flows.test_monitoring import write_traffic
from tests.gateway_fixtures import register


def config_with(tmp_path: Path, **monitoring: Any) -> str:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw.setdefault("monitoring", {}).update(monitoring)
    raw["validation"]["suite"] = str(DEMO_CONFIG.parent / raw["validation"]["suite"])  # relative to the original
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def test_the_verdict_names_the_reference_it_used(settings: Any, demo_config: ProjectConfig, tmp_path: Path) -> None:
    champion = register(settings, demo_config, "1.0.0", "champion")
    write_traffic(settings, champion, scale=1.6)

    holdout = monitor(config_path=config_with(tmp_path, reference="holdout")).to_json()
    assert holdout["verdict"] == "drift" and f"holdout rows of v{champion}" in holdout["summary"]
    assert holdout["drift"]["reference"] == f"holdout rows of v{champion}"

    # nothing was served before the monitored hour: the recent reference falls back, and says so
    recent = monitor(config_path=config_with(tmp_path, reference="recent", reference_window_minutes=120)).to_json()
    assert recent["drift"]["reference"].startswith(f"training rows of v{champion} (the reference window had only 0")
