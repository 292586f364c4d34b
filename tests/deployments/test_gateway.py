"""The gateway over real HTTP (uvicorn on 127.0.0.1), real MLflow models, the real prediction log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from core.config import ProjectConfig
from core.store.predictions import PredictionLog
from core.store.requests import ProjectStore
from core.store.rollouts import RolloutStore
from deployments.model_loading import ModelHandle
from deployments.router import bucket
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
        assert ready["models"]["champion"]["fast_path"].startswith("compiled to numpy (SimpleImputer -> StandardScaler")
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
    assert 'mlops_gateway_batch_rows_sum{variant="champion"} 3.0' in metrics  # one request of 3 records, one call
    assert "mlops_gateway_log_drain_cpu_seconds " in metrics and "mlops_gateway_log_backlog " in metrics
    served.gateway.log.flush()
    assert served.gateway.log.drain_cpu_seconds > 0  # the capacity planner charges it to the answers
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
    settings: Any, demo_config: ProjectConfig, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    start_canary(settings, 30.0, two_models)
    # routing is what is checked, so no deadline: on a busy host a variant past it is answered for by the other one
    served = serve_gateway(
        config=demo_config.model_copy(update={"rollout": demo_config.rollout.model_copy(update={"deadline_ms": None})})
    )
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


def with_model(served: Served, alias: str, model: Any) -> None:
    handle = served.gateway.handles[alias]
    served.gateway.handles = {
        **served.gateway.handles,
        alias: ModelHandle(alias, handle.version, handle.semver, model, handle.column_types, handle.loaded_at),
    }


@pytest.mark.parametrize(
    ("faulty", "status", "detail"),
    [
        (Raises, "error", "RuntimeError: challenger bug"),
        (Garbage, "error", "ValueError: model returned 2 predictions for 1 records"),
    ],
)
def test_a_failing_challenger_never_reaches_users_and_its_circuit_opens(
    settings: Any,
    two_models: dict[str, str],
    serve_gateway: Callable[..., Served],
    faulty: type,
    status: str,
    detail: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception or an invalid answer is an ``error`` recorded with its type and message, the log line says the
    same, and it counts against the variant's circuit whatever the other variant does."""
    rid = start_canary(settings, 100.0, two_models)  # every request goes to the challenger first
    served = serve_gateway(breaker_threshold=3, breaker_cooldown=60)
    with_model(served, "challenger", faulty())
    with served.client() as c:
        answers = [c.post("/v1/predict", json={"records": rows(1, i)}) for i in range(8)]
        rollout = c.get("/v1/rollout").json()
    assert [a.status_code for a in answers] == [200] * 8
    assert {a.json()["predictions"][0]["variant"] for a in answers} == {"champion"}
    assert rollout["breakers"]["challenger"] == "open"
    assert rollout["breaker_detail"]["challenger"]["deadline_misses_charged"] == 0
    served.gateway.log.flush()
    stats = PredictionLog(settings.store_url).variant_stats("breast-cancer-classifier", rid)
    assert stats["challenger"].by_status == {status: 3}  # then the breaker stopped sending
    recorded = PredictionLog(settings.store_url).failure_details("breast-cancer-classifier", rid, "challenger")
    assert recorded[status].startswith(detail), recorded
    assert detail in caplog.text


def test_a_deadline_miss_with_no_other_answer_meanwhile_leaves_the_circuit_closed(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    """A miss is a ``timeout`` recorded with the deadline, the elapsed time and the host's load. With one request at
    a time and every request sent to the challenger first, the champion answers only after each miss: nothing shows
    that the host could have served in time (a stall looks the same), so the circuit is not charged; the misses are
    still recorded for the rollout's error guard, and /v1/rollout and /metrics say they were excused."""
    rid = start_canary(settings, 100.0, two_models)
    served = serve_gateway(breaker_threshold=3, breaker_cooldown=60)
    hangs = Hangs()
    with_model(served, "challenger", hangs)
    try:
        with served.client() as c:
            answers = [c.post("/v1/predict", json={"records": rows(1, i)}) for i in range(5)]
            rollout = c.get("/v1/rollout").json()
            metrics = c.get("/metrics").text
    finally:
        hangs.release.set()
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.json()["predictions"][0]["variant"] for a in answers} == {"champion"}
    assert rollout["breakers"]["challenger"] == "closed"
    detail = rollout["breaker_detail"]["challenger"]
    assert (detail["deadline_misses_excused"], detail["deadline_misses_charged"], detail["consecutive_failures"]) == (
        5,
        0,
        0,
    )
    assert 'mlops_gateway_deadline_misses_total{blamed="host",variant="challenger"} 5.0' in metrics
    served.gateway.log.flush()
    stats = PredictionLog(settings.store_url).variant_stats("breast-cancer-classifier", rid)
    assert stats["challenger"].by_status == {"timeout": 5}
    recorded = PredictionLog(settings.store_url).failure_details("breast-cancer-classifier", rid, "challenger")
    assert recorded["timeout"].startswith("deadline 250 ms, elapsed 2"), recorded
    assert "host load" in recorded["timeout"] and "not counted against the circuit" in recorded["timeout"]
    assert "not counted against the circuit" in caplog.text


def keys_for(rollout_id: int, weight: float) -> tuple[str, str]:
    """A routing key the sticky split sends to the challenger first, and one it sends to the champion first."""
    keys = [f"caller-{i}" for i in range(200)]
    to_challenger = next(k for k in keys if bucket(k, str(rollout_id)) < weight)
    to_champion = next(k for k in keys if bucket(k, str(rollout_id)) >= weight)
    return to_challenger, to_champion


def test_a_hanging_challenger_opens_its_circuit_while_the_champion_answers_in_time(
    settings: Any, demo_config: ProjectConfig, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    """The model's fault: while each challenger request waited for its deadline the champion answered other
    requests from start to finish, so the host could serve; three such misses open the challenger's circuit."""
    rid = start_canary(settings, 50.0, two_models)
    config = demo_config.model_copy(update={"rollout": demo_config.rollout.model_copy(update={"deadline_ms": 1000})})
    served = serve_gateway(config, breaker_threshold=3, breaker_cooldown=60)
    hangs = Hangs()
    with_model(served, "challenger", hangs)
    to_challenger, to_champion = keys_for(rid, 50.0)
    done = threading.Event()

    def champion_traffic() -> None:
        with served.client() as c:
            while not done.is_set():
                c.post("/v1/predict", json={"records": rows()}, headers={"x-routing-key": to_champion})

    background = threading.Thread(target=champion_traffic)
    background.start()
    try:
        with served.client() as c:
            answers = [
                c.post("/v1/predict", json={"records": rows()}, headers={"x-routing-key": to_challenger})
                for _ in range(4)
            ]
            rollout = c.get("/v1/rollout").json()
    finally:
        done.set()
        hangs.release.set()
        background.join()
    assert {a.json()["predictions"][0]["variant"] for a in answers} == {"champion"}
    assert rollout["breakers"]["challenger"] == "open"
    assert rollout["breaker_detail"]["challenger"]["deadline_misses_charged"] == 3
    served.gateway.log.flush()
    stats = PredictionLog(settings.store_url).variant_stats("breast-cancer-classifier", rid)
    assert stats["challenger"].by_status == {"timeout": 3}  # the fourth request skipped the open circuit
    recorded = PredictionLog(settings.store_url).failure_details("breast-cancer-classifier", rid, "challenger")
    assert "the champion answered in time meanwhile: counted against the circuit" in recorded["timeout"]


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


# ---- feedback nobody can forge or double-count -----------------------------------------------------------------
def predict_ids(c: Any, n: int = 1, start: int = 0) -> list[str]:
    return [p["request_id"] for p in c.post("/v1/predict", json={"records": rows(n, start)}).json()["predictions"]]


def test_request_ids_carry_128_random_bits_one_prefix_per_request(
    two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    served = serve_gateway()
    with served.client() as c:
        single = [predict_ids(c)[0] for _ in range(20)]
        batch = predict_ids(c, 3)
    assert len(set(single)) == 20 and all(len(r) == 32 and int(r, 16) >= 0 for r in single)
    prefixes = [int(r, 16) for r in single]
    assert len({p >> 64 for p in prefixes}) == 20  # no shared per-process prefix to enumerate from
    base = batch[0].partition("-")[0]
    assert batch == [f"{base}-0", f"{base}-1", f"{base}-2"] and len(base) == 32


def test_feedback_for_unknown_forged_or_repeated_ids_is_refused(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    """Tried as an attacker would: labels for ids nobody issued, a second label for an id, a label of the wrong
    type. Each is refused with a status naming what was wrong; nothing of it reaches the statistics."""
    rid = start_canary(settings, 50.0, two_models)
    served = serve_gateway()
    with served.client() as c:
        ids = predict_ids(c, 1) + predict_ids(c, 1, 1)
        forged = ids[0][:-4] + ("0000" if not ids[0].endswith("0000") else "ffff")
        unknown = c.post("/v1/feedback", json={"request_id": forged, "label": "benign"})
        assert unknown.status_code == 404
        assert unknown.json()["errors"][0]["request_id"] == forged and forged in unknown.json()["errors"][0]["error"]
        assert c.post("/v1/feedback", json={"request_id": ids[0], "label": "malignant"}).status_code == 202
        again = c.post("/v1/feedback", json={"request_id": ids[0], "label": "benign"})
        assert again.status_code == 409 and "'malignant'" in again.json()["errors"][0]["error"]
        wrong = c.post("/v1/feedback", json={"request_id": ids[1], "label": 3.5})
        assert wrong.status_code == 422
        assert wrong.json()["errors"][0]["field"] == "label" and "benign" in wrong.json()["errors"][0]["error"]
        missing = c.post("/v1/feedback", json={"request_id": ids[1]})
        assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "label"
        # a batch: the good items are stored, each bad one is listed
        more = predict_ids(c, 1, 2)
        batch = c.post(
            "/v1/feedback",
            json={
                "feedback": [
                    {"request_id": more[0], "label": "malignant"},
                    {"request_id": forged, "label": "benign"},
                    {"request_id": ids[0], "label": "benign"},
                    {"request_id": ids[1], "label": None},
                    {"request_id": ids[1], "label": "malignant"},
                ]
            },
        )
    assert batch.status_code == 207
    body = batch.json()
    assert body["accepted"] == 2
    assert [(r["record"], r["status"], r["field"]) for r in body["rejected"]] == [
        (1, 404, "request_id"),
        (2, 409, "label"),
        (3, 422, "label"),
    ]
    served.gateway.log.flush()
    stats = PredictionLog(settings.store_url).variant_stats("breast-cancer-classifier", rid)
    assert sum(s.labelled for s in stats.values()) == 3  # ids[0], ids[1], more[0]: one label each


def test_feedback_for_ids_answered_by_another_gateway_process_is_checked_in_the_store(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    first, second = serve_gateway(), serve_gateway()  # two workers over one store
    with first.client() as c:
        ids = predict_ids(c, 2)
        assert c.post("/v1/feedback", json={"request_id": ids[0], "label": "malignant"}).status_code == 202
    first.gateway.log.flush()
    with second.client() as c:
        assert c.post("/v1/feedback", json={"request_id": ids[1], "label": "malignant"}).status_code == 202
        again = c.post("/v1/feedback", json={"request_id": ids[0], "label": "benign"})
        assert again.status_code == 409 and "'malignant'" in again.text
        assert c.post("/v1/feedback", json={"request_id": "f" * 32, "label": "benign"}).status_code == 404


def test_corrections_mode_lets_the_last_label_count_once(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_FEEDBACK_CORRECTIONS", "true")
    from core.settings import get_settings
    from deployments.gateway import Gateway
    from deployments.serve import serve_in_background
    from services.context import open_context

    rid = start_canary(settings, 50.0, two_models)
    bg = serve_in_background(Gateway(open_context(get_settings()), poll_interval=0.2))
    try:
        with httpx.Client(base_url=bg.url, timeout=10) as c:
            ids = predict_ids(c, 1)
            for label in ("benign", "benign", "malignant"):
                assert c.post("/v1/feedback", json={"request_id": ids[0], "label": label}).status_code == 202
        bg.gateway.log.flush()
        stats = bg.gateway.log.variant_stats("breast-cancer-classifier", rid)
    finally:
        bg.stop()
    labelled = [s for s in stats.values() if s.labelled]
    assert len(labelled) == 1 and (labelled[0].labelled, labelled[0].correct) == (1, 1)  # the last: "malignant"


def test_the_feedback_token_is_required_as_a_bearer_header_when_set(
    two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    served = serve_gateway()
    served.gateway.feedback_token = "label-token"
    with served.client() as c:
        rid = predict_ids(c)[0]
        body = {"request_id": rid, "label": "malignant"}
        assert c.post("/v1/feedback", json=body).status_code == 401
        assert c.post("/v1/feedback", json=body, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/feedback", json=body, headers={"authorization": "label-token"}).status_code == 401
        assert c.post("/v1/feedback", json=body, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 401
        assert c.post("/v1/feedback", json=body, headers={"authorization": "Bearer label-token"}).status_code == 202
        # and the feedback token opens no admin endpoint
        assert c.post("/v1/admin/reload", headers={"authorization": "Bearer label-token"}).status_code == 401


def test_rollout_status_shows_the_decision_log_only_to_the_admin(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    rid = start_canary(settings, 10.0, two_models)
    RolloutStore(settings.store_url).update(rid, log_entry={"action": "continue", "reason": "collecting", "at": "t"})
    served = serve_gateway()
    served.gateway.refresh()
    with served.client() as c:
        public = c.get("/v1/rollout").json()
        admin = c.get("/v1/rollout", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert "steps" not in public["rollout"] and public["rollout"]["last_decision"]["reason"] == "collecting"
    assert public["rollout"]["decisions_logged"] == 1 and "omitted" in public["decision_log"]
    assert admin["rollout"]["steps"][0]["reason"] == "collecting" and admin["decision_log"] == "included"


class SlowChampion:
    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, frame: Any) -> Any:
        time.sleep(0.6)
        return self.model.predict(frame)


def test_the_deadline_applies_to_the_champion_too(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    """A deadline applies to both variants or to neither: a champion past it is a timeout and the challenger
    answers, as a challenger past it is and the champion answers."""
    rid = start_canary(settings, 0.001, two_models)  # nearly every request goes to the champion first
    served = serve_gateway()
    handle = served.gateway.handles["champion"]
    served.gateway.handles = {
        **served.gateway.handles,
        "champion": ModelHandle(
            "champion", handle.version, handle.semver, SlowChampion(handle.model), handle.column_types, 0.0
        ),
    }
    with served.client() as c:
        answer = c.post("/v1/predict", json={"records": rows()}).json()["predictions"][0]
    assert answer["variant"] == "challenger"
    served.gateway.log.flush()
    stats = PredictionLog(settings.store_url).variant_stats("breast-cancer-classifier", rid)
    # asyncio fires a timer up to its clock resolution early (BaseEventLoop._clock_resolution): 249.5 ms was seen
    assert stats["champion"].by_status == {"timeout": 1} and stats["champion"].latencies_ms[0] >= 249


def test_a_gateway_in_its_own_process_freezes_its_heap_once_its_models_are_loaded(
    settings: Any, two_models: dict[str, str]
) -> None:
    """``mlops serve`` (own_process): full garbage collections must not walk the libraries' million objects under
    load (each took 190-260 ms with the GIL held); a gateway sharing its process (the tests') leaves the heap as is."""
    import gc

    from fastapi.testclient import TestClient

    from core.settings import get_settings
    from deployments.gateway import Gateway
    from deployments.http import create_app
    from services.context import open_context

    gc.unfreeze()
    try:
        with TestClient(create_app(Gateway(open_context(get_settings()), poll_interval=0.2))) as c:
            assert c.get("/readyz").json()["ready"] and gc.get_freeze_count() == 0
        with TestClient(create_app(Gateway(open_context(get_settings()), poll_interval=0.2), own_process=True)) as c:
            assert c.get("/readyz").json()["ready"]
            assert gc.get_freeze_count() > 100_000  # the loaded libraries, models included
    finally:
        gc.unfreeze()
