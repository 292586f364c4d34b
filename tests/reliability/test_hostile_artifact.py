"""A registered version whose artifact runs code when loaded: refused by default everywhere a model is loaded (the
lifecycle's champion scoring, monitoring, the gateway), loaded only with MLOPS_TRUST_PICKLE=1."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import ProjectConfig
from core.errors import UnsafeModelError
from core.names import CHAMPION
from core.tracking import ensure_experiment
from services.context import open_context
from tests.deployments.test_gateway import rows
from tests.gateway_fixtures import Served, register
from tests.reliability.hostile import register_hostile
from training.data import load_data, split_holdout
from training.registration import score_champion


@pytest.mark.parametrize("fmt", ["pickle", "skops"])
def test_a_hostile_artifact_is_refused_by_default_and_nothing_runs(
    settings: Any, demo_config: ProjectConfig, tmp_path: Path, fmt: str
) -> None:
    context = open_context(settings, config=demo_config)
    marker = tmp_path / "pwned"
    exp = ensure_experiment(context.mlflow, demo_config.model_name, settings)
    version = register_hostile(context.mlflow, context.registry, exp, "6.6.6", marker, fmt)
    context.registry.set_alias(CHAMPION, version, actor="attacker", reason="hostile")

    with pytest.raises(UnsafeModelError) as refused:
        context.registry.load(version)
    message = str(refused.value)
    assert f"version {version}" in message and "MLOPS_TRUST_PICKLE=1" in message
    assert ("'pickle'" in message) if fmt == "pickle" else ("SkopsBomb" in message)

    # the lifecycle scores the champion before its gates: refused, reported in the note, nothing executed
    split = split_holdout(load_data(demo_config).frame, demo_config)
    score = score_champion(context.registry, split.holdout, demo_config)
    assert score.metrics is None and "MLOPS_TRUST_PICKLE=1" in score.note
    assert not marker.exists(), "loading a refused version ran its code"


def test_trust_pickle_setting_loads_it(
    settings: Any, demo_config: ProjectConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_TRUST_PICKLE", "1")
    from core.settings import get_settings

    context = open_context(get_settings(), config=demo_config)
    assert context.registry.trust_pickle
    marker = tmp_path / "pwned"
    exp = ensure_experiment(context.mlflow, demo_config.model_name, settings)
    version = register_hostile(context.mlflow, context.registry, exp, "6.6.6", marker, "pickle")
    context.registry.load(version)
    assert marker.read_text() == "code ran on load"  # the operator asked for it


def test_the_gateway_refuses_a_hostile_champion_and_keeps_serving_its_model(
    settings: Any, demo_config: ProjectConfig, serve_gateway: Callable[..., Served], tmp_path: Path
) -> None:
    good = register(settings, demo_config, "1.0.0", "champion")
    served = serve_gateway()
    context = open_context(settings, config=demo_config)
    marker = tmp_path / "pwned"
    exp = ensure_experiment(context.mlflow, demo_config.model_name, settings)
    hostile = register_hostile(context.mlflow, context.registry, exp, "6.6.6", marker, "pickle")
    context.registry.promote(hostile, actor="attacker", reason="hostile")

    deadline = time.monotonic() + 60  # a wait for the poller, not a speed assertion
    while (CHAMPION, hostile) not in served.gateway.refused and time.monotonic() < deadline:
        time.sleep(0.05)
    with served.client() as c:
        answer = c.post("/v1/predict", json={"records": rows()})
        ready = c.get("/readyz").json()
        metrics = c.get("/metrics").text
    assert answer.status_code == 200 and answer.json()["predictions"][0]["model_version"] == good
    assert ready["models"]["champion"]["version"] == good
    assert f"refused champion v{hostile}" in ready["last_refresh_error"]
    assert "MLOPS_TRUST_PICKLE=1" in ready["last_refresh_error"]
    assert f'mlops_gateway_models_refused_total{{alias="champion",version="{hostile}"}} 1.0' in metrics
    assert not marker.exists(), "the gateway ran the hostile artifact's code"
