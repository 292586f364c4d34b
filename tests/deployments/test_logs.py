"""Structured logs (core/logs.py): a real ``mlops serve`` process on 127.0.0.1 with json or text logs, read from its
stderr; redaction of credentials through the real logging set-up of a fresh process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.logs import utc_timestamp
from deployments.serve import free_port
from tests.conftest import DEMO_CONFIG, ISOLATED_ENV, REPO
from tests.deployments.test_gateway import rows

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ISOLATED_ENV and not k.startswith(("PREFECT_", "MLOPS_LOG", "MLOPS_ACCESS"))
    }
    env.update(MLOPS_HOME=str(home), MLOPS_CONFIG=str(DEMO_CONFIG), PYTHONPATH=str(REPO), **extra)
    return env


class Gateway:
    """``python -m mlops.cli [--log-format F] serve`` with its stderr in a file, stopped with SIGTERM."""

    def __init__(self, home: Path, log_path: Path, cli_args: list[str], **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "mlops.cli", *cli_args, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with log_path.open("wb") as err, (log_path.parent / (log_path.name + ".out")).open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(home, **env), stdout=out, stderr=err)
        deadline = time.monotonic() + 120  # waiting for start-up, not a speed assertion
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the gateway exited during start-up: {log_path.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the gateway did not become ready: {log_path.read_text()[-2000:]}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log_path.read_text()


@pytest.fixture
def gateways(settings: Any, two_models: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    started: list[Gateway] = []

    def start(*cli_args: str, **env: str) -> Gateway:
        gw = Gateway(settings.home_dir, tmp_path / f"gateway-{len(started)}.log", list(cli_args), **env)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "the gateway wrote no log line"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return parsed


def test_json_access_log_carries_the_callers_request_id_and_what_answered(gateways: Any) -> None:
    gw = gateways(MLOPS_LOG_FORMAT="json", MLOPS_FEEDBACK_TOKEN="feedback-secret-123")
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        resp = c.post("/v1/predict", json={"records": rows(1)}, headers={"x-request-id": "abc-123"})
        assert resp.status_code == 200
        assert resp.headers["x-request-id"] == "abc-123"
        answer = resp.json()["predictions"][0]
        label = c.post(
            "/v1/feedback",
            json={"request_id": answer["request_id"], "label": "malignant"},
            headers={"authorization": "Bearer feedback-secret-123", "x-request-id": "fb-1"},
        )
        assert label.status_code == 202
        assert label.headers["x-request-id"] == "fb-1"
        health = c.get("/healthz")
        generated = health.headers["x-request-id"]
    lines = json_lines(gw.stop())

    access = {line["request_id"]: line for line in lines if line["logger"] == "mlops.access"}
    line = access["abc-123"]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/predict", 200)
    assert (line["variant"], line["model_version"]) == ("champion", answer["model_version"])
    assert line["prediction_id"] == answer["request_id"]  # the prediction log's row and the feedback's key
    assert line["client"] == "127.0.0.1" and line["duration_ms"] > 0
    assert line["level"] == "INFO" and line["timestamp"].endswith("Z")
    assert "T" in line["timestamp"]
    feedback = access["fb-1"]
    assert (feedback["path"], feedback["status"], feedback["prediction_id"]) == (
        "/v1/feedback",
        202,
        answer["request_id"],
    )
    assert GENERATED_ID.fullmatch(generated) and access[generated]["path"] == "/healthz"
    startup = next(line for line in lines if line["message"].startswith("gateway for "))
    assert startup["logger"] == "mlops.gateway" and "project store sqlite:///" in startup["message"]


BAD_IDS = ["x" * 129, "abc 123", "abc;rm -rf", "ü-id", ""]


def test_an_invalid_request_id_is_replaced_by_a_generated_one(gateways: Any) -> None:
    gw = gateways("--log-format", "json")
    replaced = []
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        for bad in BAD_IDS:
            resp = c.post("/v1/predict", json={"records": rows(1)}, headers={"x-request-id": bad.encode()})
            assert resp.status_code == 200
            assert GENERATED_ID.fullmatch(resp.headers["x-request-id"]), bad
            replaced.append(resp.headers["x-request-id"])
        longest = c.post("/v1/predict", json={"records": rows(1)}, headers={"x-request-id": "y" * 128})
        assert longest.headers["x-request-id"] == "y" * 128  # the limit itself is kept
    text = gw.stop()
    access = [line for line in json_lines(text) if line.get("path") == "/v1/predict"]
    assert [(a["request_id"], a.get("request_id_replaced"), a["status"]) for a in access] == [
        *[(rid, True, 200) for rid in replaced],
        ("y" * 128, None, 200),
    ]
    for bad in BAD_IDS[:-1]:
        assert bad not in text  # never echoed


def test_text_logs_stay_plain_lines(gateways: Any) -> None:
    gw = gateways(MLOPS_ACCESS_LOG="true", MLOPS_LOG_LEVEL="info")
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        resp = c.post("/v1/predict", json={"records": rows(1)}, headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    lines = [line for line in gw.stop().splitlines() if line.strip()]
    access = [line for line in lines if "mlops.access" in line and "/v1/predict" in line]
    assert len(access) == 1
    assert '"POST /v1/predict" 200' in access[0] and "request_id=abc-123" in access[0]
    assert "variant=champion" in access[0]
    assert not any(line.lstrip().startswith("{") for line in lines), lines


def test_access_log_is_off_by_default_in_text_and_can_be_switched_off_in_json(gateways: Any) -> None:
    for env in ({}, {"MLOPS_LOG_FORMAT": "json", "MLOPS_ACCESS_LOG": "false"}):
        gw = gateways(**env)
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            assert c.post("/v1/predict", json={"records": rows(1)}).status_code == 200
        assert "mlops.access" not in gw.stop()


REDACTION = """
import logging
from core import logs
from core.settings import get_settings

logs.configure(get_settings())
log = logging.getLogger("mlops.store")
log.warning("cannot reach %s", "postgresql://mlops:hunter2@db.internal:5432/mlops")
log.warning("sent Authorization: Bearer admin-secret-456 to %s", "http://127.0.0.1/v1/admin/reload")
log.warning("feedback token is feedback-secret-123")
try:
    raise ConnectionError("could not connect to postgresql://mlops:hunter2@db.internal:5432/mlops")
except ConnectionError:
    log.exception("store unreachable")
"""


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_credentials_never_reach_a_log_line(tmp_path: Path, log_format: str) -> None:
    env = child_env(
        tmp_path,
        MLOPS_LOG_FORMAT=log_format,
        MLOPS_GATEWAY_TOKEN="admin-secret-456",
        MLOPS_FEEDBACK_TOKEN="feedback-secret-123",
    )
    done = subprocess.run(
        [sys.executable, "-c", REDACTION], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    err = done.stderr
    for secret in ("hunter2", "admin-secret-456", "feedback-secret-123"):
        assert secret not in err
    assert err.count("postgresql://mlops:***@db.internal:5432/mlops") == 2  # the message and the traceback
    assert "Bearer ***" in err
    if log_format == "json":
        lines = json_lines(err)
        assert [line["level"] for line in lines] == ["WARNING", "WARNING", "WARNING", "ERROR"]
        assert "ConnectionError" in lines[-1]["exception"]
    else:
        assert (
            err.splitlines()[0].split(" WARNING mlops.store: ")[1]
            == "cannot reach postgresql://mlops:***@db.internal:5432/mlops"
        )


ACCESS_LINES = """
import asyncio, json, logging, sys, time
from core import logs
from core.settings import get_settings


class Counting:  # stderr, counting the writes that carry access lines
    writes = []

    def write(self, text):
        self.writes.append(text.count('"mlops.access"'))
        return sys.__stderr__.write(text)

    def flush(self):
        sys.__stderr__.flush()


sys.stderr = Counting()
logs.configure(get_settings())


async def turn() -> None:
    for i in range(3):  # three answers in one event-loop turn
        logs.bind(request_id=f"r{i}", variant="champion")
        logs.log_access("POST", "/v1/predict", 200, time.perf_counter(), "127.0.0.1", index=i)
    await asyncio.sleep(0)


asyncio.run(turn())
logs.bind(request_id="r9")
logs.log_access("GET", "/x/feedback-secret-123", 404, time.perf_counter(), None)  # no loop: written at once
logs.access_log.info("%s", "through logging", extra={"method": "GET", "path": "/", "status": 200})
print(json.dumps([n for n in Counting.writes if n]))
"""


def test_json_access_lines_are_written_once_per_loop_turn_as_the_formatter_writes_them(tmp_path: Path) -> None:
    """The access lines skip ``logging`` (a tenth of a request's CPU, benchmarks/README.md) and are written together
    after the turn that answered them; each is the JSON object the configured formatter makes, with the request's
    context, and secrets are redacted as in every other line."""
    env = child_env(tmp_path, MLOPS_LOG_FORMAT="json", MLOPS_FEEDBACK_TOKEN="feedback-secret-123")
    done = subprocess.run(
        [sys.executable, "-c", ACCESS_LINES], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    assert [(line.get("request_id"), line["path"]) for line in lines] == [
        ("r0", "/v1/predict"),
        ("r1", "/v1/predict"),
        ("r2", "/v1/predict"),
        ("r9", "/x/***"),
        ("r9", "/"),
    ]
    direct, through_logging = lines[0], lines[-1]
    assert set(through_logging) - {"index", "duration_ms", "client"} <= set(direct)
    assert direct["logger"] == through_logging["logger"] == "mlops.access" and direct["level"] == "INFO"
    assert direct["message"].startswith('127.0.0.1 "POST /v1/predict" 200 ') and direct["variant"] == "champion"
    assert [line["index"] for line in lines[:3]] == [0, 1, 2]
    assert json.loads(done.stdout) == [3, 1, 1]  # the turn's three lines in one write
    assert "feedback-secret-123" not in done.stderr


@pytest.mark.parametrize(
    "created",
    [0.0, 1764633600.0, 1764633600.0005, 1764633600.9994999, 1764633600.9999996, 1764633601.0000004, 4102444799.999],
)
def test_line_timestamps_are_iso_utc_to_the_millisecond(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert utc_timestamp(created) == expected
    assert utc_timestamp(created + 1.25) != expected  # the second's text is not kept past its second
