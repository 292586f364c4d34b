"""Hostile bodies over real HTTP: each is a 422 naming the limit with a short error body, and nothing reaches the
store; a row the database refuses costs only itself in the prediction log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import func, select

from core.store.predictions import PredictionLog
from core.store.schema import feedback, get_engine, predictions
from tests.deployments.test_gateway import rows
from tests.gateway_fixtures import Served


def nested(depth: int) -> str:
    """JSON text of a value nested ``depth`` lists deep (deeper than orjson will write)."""
    return "[" * depth + "1.0" + "]" * depth


def record_with(field: str, raw_value: str) -> bytes:
    """A valid record with one field's value replaced by raw JSON text."""
    record = orjson.dumps({**rows()[0], field: None}).decode()
    return (
        '{"records": ['
        + record.replace(orjson.dumps(field).decode() + ":null", orjson.dumps(field).decode() + ":" + raw_value)
        + "]}"
    ).encode()


def feedback_count(settings: Any) -> int:
    with get_engine(settings.store_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(feedback)).scalar() or 0)


HOSTILE: list[tuple[str, Callable[[], bytes], str]] = [
    ("/v1/predict", lambda: record_with("mean radius", nested(1000)), "nested deeper than 8 levels"),
    ("/v1/feedback", lambda: ('{"request_id": "x", "label": ' + nested(1000) + "}").encode(), "nested deeper than 8"),
    ("/v1/predict", lambda: orjson.dumps({"records": [{**rows()[0], "k" * 900_000: 1}]}), "a key of 900000 characters"),
    (
        "/v1/predict",
        lambda: orjson.dumps({"records": [{**rows()[0], "mean radius": "v" * 50_000}]}),
        "a string of 50000",
    ),
    ("/v1/feedback", lambda: orjson.dumps({"request_id": "r" * 100_000, "label": 1}), "a string of 100000 characters"),
    ("/v1/feedback", lambda: orjson.dumps({"request_id": "r" * 65, "label": 1}), "1 to 64 characters"),
    ("/v1/feedback", lambda: orjson.dumps({"request_id": "abc", "label": "l" * 1000}), "at most 200 characters"),
    ("/v1/feedback", lambda: orjson.dumps({"request_id": "abc", "label": {"a": 1}}), "expected a single value"),
    ("/v1/feedback", lambda: orjson.dumps({"request_id": 7, "label": 1}), "each item needs request_id and label"),
    (
        "/v1/predict",
        lambda: orjson.dumps({"records": [{**rows()[0], **{f"f{i}": 1 for i in range(3000)}}]}),
        "at most 2000 keys",
    ),
]


def test_hostile_bodies_get_a_short_422_naming_the_limit_and_store_nothing(
    settings: Any, two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    served = serve_gateway()
    answers = []
    with served.client() as c:
        for path, body, fragment in HOSTILE:
            payload = body()
            assert len(payload) < served.gateway.max_body_bytes  # the body cap is not what answers
            resp = c.post(path, content=payload, headers={"content-type": "application/json"})
            answers.append((path, fragment, resp.status_code, resp.text))
        ok = c.post("/v1/predict", json={"records": rows()})  # and the gateway still answers
    for path, fragment, status, text in answers:
        assert status == 422, (path, fragment, text[:300])
        assert fragment in text, (path, fragment, text[:300])
        assert len(text) < 2000, f"the error body echoed the input: {text[:300]}"
    assert ok.status_code == 200
    served.gateway.log.flush()
    assert feedback_count(settings) == 0


def test_a_row_the_database_refuses_does_not_drop_the_good_rows_of_its_batch(any_store_url: str) -> None:
    log = PredictionLog(any_store_url)
    for i in range(5):
        log.record(request_id=f"good-{i}", model_name="m", variant="champion", status="ok", served=1)
    log.record(request_id=None, model_name="m", variant="champion", status="ok", served=1)  # NOT NULL column
    log.record_feedback("good-0", "yes")
    log.flush()
    with get_engine(any_store_url).connect() as conn:
        stored = conn.execute(select(predictions.c.request_id)).scalars().all()
        labels = conn.execute(select(func.count()).select_from(feedback)).scalar()
    assert sorted(stored) == [f"good-{i}" for i in range(5)]
    assert labels == 1
    assert (log.written, log.dropped) == (5, 1)
