"""The gateway over real HTTP (uvicorn on 127.0.0.1), real MLflow models, the real prediction log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from core.store.predictions import PredictionLog
from core.store.requests import ProjectStore
from core.store.rollouts import RolloutStore
from deployments.model_loading import ModelHandle
from model_registry.registry import ModelRegistry
from tests.gateway_fixtures import TOKEN, Served, register
from training.datasets import breast_cancer

FEATURES = [c for c in breast_cancer().columns if c != "diagnosis"]


def rows(n: int = 1, start: int = 0) -> list[dict[str, Any]]:
    frame = breast_cancer()
    return [{k: float(v) for k, v in r.items()} for r in frame[FEATURES].iloc[start : start + n].to_dict("records")]


def start_canary(settings: Any, weight: float, models: dict[str, str], strategy: str = "canary") -> int:
    return (
        RolloutStore(settings.store_url)
        .start("breast-cancer-classifier", strategy, models["champion"], models["challenger"], weight, {}, "test")
        .id
    )


def test_predict_feedback_health_and_metrics(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    served = serve_gateway()
    with served.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["ready"] and ready["models"]["champion"]["semver"] == "1.0.0"
        resp = c.post("/v1/predict", json={"records": rows(3)})
        assert resp.status_code == 200
        answers = resp.json()["predictions"]
        assert [a["prediction"] for a in answers] == ["malignant", "malignant", "malignant"]
        assert {a["variant"] for a in answers} == {"champion"}  # no rollout: champion only
        assert len({a["request_id"] for a in answers}) == 3
        assert (
            c.post("/v1/feedback", json={"request_id": answers[0]["request_id"], "label": "malignant"}).status_code
            == 202
        )
        metrics = c.get("/metrics").text
    assert 'mlops_gateway_requests_total{status="ok",variant="champion"} 1.0' in metrics
    assert 'mlops_gateway_predictions_total{variant="champion"} 3.0' in metrics
    assert "mlops_gateway_predict_latency_seconds_bucket" in metrics
    served.gateway.log.flush()
    from sqlalchemy import func, select

    from core.store.schema import feedback, get_engine, predictions

    with get_engine(settings.store_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(feedback)).scalar() == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"records": [{**rows()[0], "mean radius": "big"}]}, "expected a number"),
        ({"records": [{k: v for k, v in rows()[0].items() if k != "mean area"}]}, "missing"),
        ({"records": [{**rows()[0], "patient_name": "x"}]}, "unknown field"),
        ({"records": []}, "non-empty list"),
        ({"rows": rows()}, "non-empty list"),
    ],
)
def test_malformed_payloads_get_422_with_field_errors_and_charge_no_variant(
    two_models: dict[str, str], serve_gateway: Callable[..., Served], body: dict[str, Any], fragment: str
) -> None:
    served = serve_gateway()
    with served.client() as c:
        resp = c.post("/v1/predict", json=body)
        assert resp.status_code == 422
        assert fragment in str(resp.json()["errors"])
        bad_json = c.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert bad_json.status_code == 422
        metrics = c.get("/metrics").text
    assert "mlops_gateway_requests_total{" not in metrics


def test_body_size_limit(two_models: dict[str, str], serve_gateway: Callable[..., Served]) -> None:
    served = serve_gateway(max_body_bytes=2000)
    with served.client() as c:
        assert c.post("/v1/predict", json={"records": rows(20)}).status_code == 413


def test_the_kubernetes_probes_and_method_errors_answer_on_a_real_gateway(
    two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    """The rendered Deployment's probe paths are real endpoints: 200 once the champion is loaded."""
    from core.config import load_config
    from deployments.kubernetes import KubeTarget, render
    from tests.conftest import DEMO_CONFIG

    target = KubeTarget(image="mlops:1", tracking_uri="http://mlflow:5000", database_secret="db")
    gateway = next(d for d in render(load_config(DEMO_CONFIG), DEMO_CONFIG, target) if d["kind"] == "Deployment")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    probes = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    served = serve_gateway()
    with served.client() as c:
        for path in sorted(probes):
            assert c.get(path).status_code == 200, path
        wrong = c.get("/v1/predict")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_weighted_canary_split_and_sticky_routing(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    start_canary(settings, 30.0, two_models)
    served = serve_gateway()
    with served.client() as c:
        variants = [
            c.post("/v1/predict", json={"records": rows(1, i % 50)}).json()["predictions"][0]["variant"]
            for i in range(300)
        ]
        share = variants.count("challenger") / len(variants)
        assert 0.2 < share < 0.4
        sticky = {
            c.post("/v1/predict", json={"records": rows()}, headers={"x-routing-key": "user-7"}).json()["predictions"][
                0
            ]["variant"]
            for _ in range(20)
        }
        assert len(sticky) == 1


def test_shadow_mode_logs_the_challenger_but_never_returns_it(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    rid = start_canary(settings, 0.0, two_models, strategy="shadow")
    served = serve_gateway()
    with served.client() as c:
        variants = {
            c.post("/v1/predict", json={"records": rows(1, i)}).json()["predictions"][0]["variant"] for i in range(40)
        }
    assert variants == {"champion"}
    time.sleep(0.5)
    served.gateway.log.flush()
    stats = PredictionLog(settings.store_url).variant_stats("breast-cancer-classifier", rid)
    assert stats["challenger"].by_status.get("shadow", 0) >= 30
    assert stats["champion"].by_status["ok"] == 40


class Raises:
    def predict(self, frame: Any) -> Any:
        raise RuntimeError("challenger bug")


class Hangs:
    def __init__(self) -> None:
        self.release = threading.Event()

    def predict(self, frame: Any) -> Any:
        self.release.wait(30)
        return np.array(["benign"] * len(frame))


class Garbage:
    def predict(self, frame: Any) -> Any:
        return np.array([np.nan] * (len(frame) + 1))


@pytest.mark.parametrize("faulty", [Raises, Hangs, Garbage])
def test_a_failing_challenger_never_reaches_users_and_its_circuit_opens(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served], faulty: type
) -> None:
    rid = start_canary(settings, 100.0, two_models)  # every request goes to the challenger first
    served = serve_gateway(breaker_threshold=3, breaker_cooldown=60)
    handle = served.gateway.handles["challenger"]
    bad = faulty()
    served.gateway.handles = {
        **served.gateway.handles,
        "challenger": ModelHandle(
            "challenger", handle.version, handle.semver, bad, handle.column_types, handle.loaded_at
        ),
    }
    try:
        with served.client() as c:
            answers = [c.post("/v1/predict", json={"records": rows(1, i)}) for i in range(8)]
            rollout = c.get("/v1/rollout").json()
    finally:
        if isinstance(bad, Hangs):
            bad.release.set()
    assert [a.status_code for a in answers] == [200] * 8
    assert {a.json()["predictions"][0]["variant"] for a in answers} == {"champion"}
    assert rollout["breakers"]["challenger"] == "open"
    served.gateway.log.flush()
    stats = PredictionLog(settings.store_url).variant_stats("breast-cancer-classifier", rid)
    assert stats["challenger"].by_status == {"fallback": 3}  # then the breaker stopped sending


def test_both_variants_down_gives_503_with_retry_after(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    start_canary(settings, 50.0, two_models)
    served = serve_gateway(breaker_threshold=2)
    served.gateway.handles = {
        alias: ModelHandle(alias, h.version, h.semver, Raises(), h.column_types, h.loaded_at)
        for alias, h in served.gateway.handles.items()
    }
    with served.client() as c:
        resp = c.post("/v1/predict", json={"records": rows()})
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    assert "prediction" not in resp.text


def test_alias_move_swaps_the_model_in_place_without_a_failed_request(
    settings: Any, demo_config: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    served = serve_gateway()
    stop = threading.Event()
    seen: list[tuple[int, str]] = []

    def traffic() -> None:
        with served.client() as c:
            while not stop.is_set():
                r = c.post("/v1/predict", json={"records": rows()})
                seen.append(
                    (r.status_code, r.json()["predictions"][0]["model_version"] if r.status_code == 200 else "")
                )

    t = threading.Thread(target=traffic)
    t.start()
    time.sleep(0.5)
    reg = ModelRegistry("breast-cancer-classifier", ProjectStore(settings.store_url))
    reg.promote(two_models["challenger"], actor="test", reason="swap test")
    moved = time.monotonic()
    while time.monotonic() - moved < 10 and (not seen or seen[-1][1] != two_models["challenger"]):
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    t.join()
    assert all(code == 200 for code, _ in seen), "a request failed during the swap"
    assert seen[0][1] == two_models["champion"] and seen[-1][1] == two_models["challenger"]


def test_admin_endpoints_need_the_token(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    start_canary(settings, 10.0, two_models)
    served = serve_gateway()
    with served.client() as c:
        assert c.post("/v1/admin/reload").status_code == 401
        assert c.post("/v1/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/rollout/abort", headers={"authorization": "Bearer nope"}).status_code == 401
        ok = c.post("/v1/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["models"]["champion"] == two_models["champion"]
    no_token = serve_gateway(token=None)
    with no_token.client() as c:
        assert c.post("/v1/admin/reload", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_no_model_loaded_is_not_ready_and_answers_503(settings: Any, serve_gateway: Callable[..., Served]) -> None:
    served = serve_gateway()
    with served.client() as c:
        assert c.get("/readyz").status_code == 503
        assert c.post("/v1/predict", json={"records": rows()}).status_code == 503


def test_unreadable_rollout_state_fails_safe_to_the_champion(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    start_canary(settings, 100.0, two_models)
    served = serve_gateway()

    def broken() -> Any:
        raise RuntimeError("database is locked")

    served.gateway.rollouts.live = lambda _name: broken()  # type: ignore[method-assign]
    served.gateway.refresh()
    with served.client() as c:
        variants = {
            c.post("/v1/predict", json={"records": rows()}).json()["predictions"][0]["variant"] for _ in range(10)
        }
    assert variants == {"champion"}
    assert "champion only" in (served.gateway.last_refresh_error or "")


def test_a_registered_third_model_is_not_served_without_an_alias(
    settings: Any, demo_config: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    register(settings, demo_config, "1.2.0", None, C=1.0)
    served = serve_gateway()
    assert {h.version for h in served.gateway.handles.values()} == set(two_models.values())


def test_concurrent_requests_batched_together_each_get_their_own_answers(
    two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    """The batcher joins requests that arrive together into one predict call; every caller must still get the
    answers for its own records, in order."""
    import concurrent.futures

    import mlflow.sklearn

    served = serve_gateway()
    model = mlflow.sklearn.load_model(f"models:/breast-cancer-classifier/{two_models['champion']}")
    frame = breast_cancer()[FEATURES]
    expected = list(model.predict(frame))

    def ask(start: int) -> tuple[int, list[str]]:
        n = 1 + start % 3
        with served.client() as c:
            body = c.post("/v1/predict", json={"records": rows(n, start)}).json()
        return start, [p["prediction"] for p in body["predictions"]]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(ask, range(0, 400, 2)))
    for start, answers in results:
        assert answers == expected[start : start + len(answers)]
        assert len(answers) == 1 + start % 3
