"""Monitor, rollback and retrain flows on real stores: prediction log rows, the champion's logged reference,
Evidently, EWMA, the registry, Prefect (test harness)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from prefect.artifacts import Artifact

from core.config import ProjectConfig
from core.store.predictions import PredictionLog, encode_value
from core.store.requests import ProjectStore
from core.store.schema import utcnow
from flows.monitor import monitor
from flows.retrain import RETRAIN_ACTOR, retrain
from flows.rollback import rollback
from model_registry.registry import ModelRegistry
from tests.conftest import DEMO_CONFIG
from tests.gateway_fixtures import register
from training.datasets import breast_cancer

MODEL = "breast-cancer-classifier"


def write_traffic(
    settings: Any,
    version: str,
    n: int = 600,
    *,
    scale: float = 1.0,
    wrong: float = 0.0,
    minutes: float = 30,
    latency_ms: float = 1.0,
) -> None:
    """Served answers spread over the last ``minutes``, features optionally scaled (drift), labels optionally
    wrong for a share of answers (degradation late in the window), latencies from ``latency_ms`` up."""
    frame = breast_cancer()
    rng = np.random.default_rng(0)
    rows = frame.sample(n, replace=True, random_state=1).reset_index(drop=True)
    log = PredictionLog(settings.store_url)
    start = utcnow() - timedelta(minutes=minutes)
    for i, row in rows.iterrows():
        features = {k: float(v) * scale for k, v in row.items() if k != "diagnosis"}
        at = start + timedelta(minutes=minutes * i / n)
        truth = row["diagnosis"]
        late = i > n * 0.6
        pred = ("benign" if truth == "malignant" else "malignant") if late and rng.random() < wrong else truth
        log.record(
            request_id=f"r{i}",
            model_name=MODEL,
            variant="champion",
            model_version=version,
            status="ok",
            served=1,
            features=features,
            prediction=encode_value(pred),
            latency_ms=latency_ms + rng.random(),
            at=at,
        )
        log.record_feedback(f"r{i}", truth)
    log.flush()


@pytest.fixture
def champion(settings: Any, demo_config: ProjectConfig) -> str:
    return register(settings, demo_config, "1.0.0", "champion")


def test_stable_traffic_is_healthy(settings: Any, champion: str) -> None:
    write_traffic(settings, champion)
    result = monitor(config_path=str(DEMO_CONFIG)).to_json()
    assert result["verdict"] == "healthy", result["summary"]
    assert result["drift"]["drifted_columns"] == []
    assert result["health"]["degraded"] == []


def test_drifted_inputs_are_detected_named_and_reported(settings: Any, champion: str) -> None:
    write_traffic(settings, champion, scale=1.6)
    result = monitor(config_path=str(DEMO_CONFIG)).to_json()
    assert result["verdict"] == "drift"
    drifted = {c["column"]: c for c in result["drift"]["columns"] if c["drifted"]}
    # an effect size by default, whatever the reference's size (p-values would shrink with the sample)
    assert "mean radius" in drifted and drifted["mean radius"]["method"] == "Wasserstein distance (normed)"
    assert drifted["mean radius"]["threshold"] > 0.1  # 0.1 raised to the noise floor of a few hundred rows per side
    assert "mean radius (Wasserstein distance (normed)" in result["summary"]
    run = MlflowClient(settings.tracking_uri).get_run(result["mlflow_run_id"])
    assert run.data.tags["mlops.role"] == "monitor" and "drift" in run.data.tags["mlops.drift"]
    html = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="drift/report.html")
    page = Path(html).read_text()
    assert "<html" in page and "mean radius" in page and len(page) > 100_000  # Evidently's self-contained report
    art = Artifact.get("monitor-breast-cancer-classifier")
    assert art is not None and "| mean radius |" in art.data


def test_wrong_answers_late_in_the_window_degrade_the_accuracy_chart(settings: Any, champion: str) -> None:
    write_traffic(settings, champion, n=900, wrong=0.5)
    result = monitor(config_path=str(DEMO_CONFIG)).to_json()
    assert "accuracy" in result["health"]["degraded"], result["health"]
    assert result["verdict"] == "degraded"


def test_a_latency_already_over_its_slo_is_degraded_not_healthy(settings: Any, champion: str) -> None:
    write_traffic(settings, champion, latency_ms=84.0)  # steady, so no control chart breaches: only the SLO does
    result = monitor(config_path=str(DEMO_CONFIG)).to_json()
    assert result["verdict"] == "degraded" and result["degraded"] == ["latency_p95_ms"], result["summary"]
    assert "latency_p95_ms 84" in result["summary"] and "SLO 50" in result["summary"]
    assert [f["check"] for f in result["findings"]] == ["slo"]
    run = MlflowClient(settings.tracking_uri).get_run(result["mlflow_run_id"])
    assert run.data.tags["mlops.degraded"] == "latency_p95_ms"
    art = Artifact.get("monitor-breast-cancer-classifier")
    assert art is not None and "slo: **degraded**, latency_p95_ms" in art.data


def test_too_little_traffic_gives_no_verdict(settings: Any, champion: str) -> None:
    write_traffic(settings, champion, n=50)
    assert monitor(config_path=str(DEMO_CONFIG)).to_json()["verdict"] == "insufficient data"


def test_rollback_restores_previous_only_after_a_recent_promotion(
    settings: Any, demo_config: ProjectConfig, champion: str, webhook: list[dict[str, Any]]
) -> None:
    assert rollback(config_path=str(DEMO_CONFIG)).to_json()["status"] == "skipped"  # no previous yet
    newer = register(settings, demo_config, "1.1.0", "challenger", C=0.5)
    reg = ModelRegistry(MODEL, ProjectStore(settings.store_url))
    reg.promote(newer, actor="test", reason="canary passed")
    result = rollback(config_path=str(DEMO_CONFIG), reason="accuracy EWMA breached").to_json()
    assert result == {
        "status": "rolled back",
        "from_version": newer,
        "to_version": champion,
        "reason": "accuracy EWMA breached",
    }
    assert reg.aliases() == {"champion": champion}
    assert reg.resolve(newer).tags["mlops.decision"] == "rolled back"
    assert rollback(config_path=str(DEMO_CONFIG)).to_json()["status"] == "skipped"  # no bouncing back
    assert [(n["kind"], n["severity"]) for n in webhook] == [("model.rolled_back", "warning")]


def test_retrain_files_a_request_respects_the_cooldown_and_escalates(settings: Any, champion: str) -> None:
    first = retrain(config_path=str(DEMO_CONFIG), reason="drift: mean radius", run_rollout=False).to_json()
    assert first["status"] == "registered"
    store = ProjectStore(settings.store_url)
    req = store.get(first["request_id"])
    assert (req.kind, req.submitted_by, req.semver) == ("minor", RETRAIN_ACTOR, "1.1.0")
    # the reason names the data: no labels came back, so the configured source alone (config/project.yaml)
    assert req.reason.startswith("drift: mean radius; data: builtin:breast_cancer (569 rows); no labelled production")
    assert req.reason.endswith("so the configured source only") and first["data"] in req.reason
    assert retrain(config_path=str(DEMO_CONFIG)).to_json()["status"] == "skipped"  # a storm of events: one retrain

    # two automatic retrains in a row that failed: the loop stops and asks for a person
    for _ in range(2):
        bad = store.submit("minor", "Automatic retrain", "x", submitted_by=RETRAIN_ACTOR)
        store.claim(bad.id)
        store.finish(bad.id, "failed", "data error: validation failed")
    cfg_no_cooldown = str(DEMO_CONFIG)
    from core.store.schema import change_requests, get_engine

    with get_engine(settings.store_url).begin() as conn:  # age the requests past the cooldown
        conn.execute(change_requests.update().values(created_at=utcnow() - timedelta(hours=2)))
    paused = retrain(config_path=cfg_no_cooldown).to_json()
    assert paused["status"] == "paused" and "a person must look" in paused["reason"]
