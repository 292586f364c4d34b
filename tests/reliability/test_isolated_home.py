"""A home keeps everything it owns inside its folder, and still serves its champion after the folder is moved."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.names import CHAMPION
from tests.conftest import DEMO_CONFIG, ISOLATED_ENV, REPO
from tests.deployments.test_gateway import rows

# What a command does: apply the settings to the environment, then build Settings again (the CLI's callback and
# its command each build one), then train and register a champion.
TRAIN = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from core.config import load_config
from core.settings import get_settings
from tests.helpers import train_and_register
get_settings().apply_to_environment()
print(train_and_register(get_settings(), load_config({str(DEMO_CONFIG)!r}), "1.0.0", "champion", actor="test",
                         description="champion"))
"""


def train_in(home: Path, cwd: Path) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    env.update(MLOPS_HOME=str(home), MLOPS_CONFIG=str(DEMO_CONFIG), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", TRAIN], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_a_moved_home_serves_its_champion_and_nothing_is_written_outside_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    origin = tmp_path / "origin" / "home"
    version = train_in(origin, workdir)
    assert list(workdir.iterdir()) == [], "MLflow wrote into the working directory (./mlruns)"
    assert any((origin / "artifacts").rglob("model.skops")), "the model is not under MLOPS_HOME/artifacts"

    moved = tmp_path / "elsewhere" / "renamed home"  # a space: file URIs are percent-encoded
    moved.parent.mkdir()
    shutil.move(origin, moved)

    monkeypatch.setenv("MLOPS_HOME", str(moved))
    from core.settings import get_settings
    from deployments.gateway import Gateway
    from deployments.serve import serve_in_background
    from services.context import open_context
    from tests.gateway_fixtures import Served

    settings: Any = get_settings()
    context = open_context(settings, config_path=DEMO_CONFIG)
    assert (moved / "home-location").read_text().strip() == str(moved)
    assert context.registry.alias_version(CHAMPION) is not None
    loaded = context.registry.load(version)  # reads the artifact from the moved folder
    assert loaded.version == version
    bg = serve_in_background(Gateway(context, poll_interval=0.2))
    served = Served(bg.url, bg.gateway, bg.server, bg.thread)
    try:
        with served.client() as c:
            answer = c.post("/v1/predict", json={"records": rows(2)})
    finally:
        served.stop()
    assert answer.status_code == 200, answer.text
    assert {p["model_version"] for p in answer.json()["predictions"]} == {version}
    assert not origin.exists() and list(workdir.iterdir()) == []
