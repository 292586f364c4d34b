"""PostgreSQL drops the gateway's connection in the middle of a journal batch (``pg_terminate_backend`` on the
gateway's own backends while they are inside a write), under load: the gateway keeps answering, no answer or label
it acknowledged is lost or written twice, and its log and ``/metrics`` say the store was unreachable and came back."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from core.config import ProjectConfig
from core.store.schema import feedback, get_engine, predictions
from deployments.serve import free_port
from tests.deployments.test_gateway import rows
from tests.gateway_fixtures import register
from tests.reliability.test_gateway_crash import drive, start_gateway

# The gateway's backends that are inside a write of the journal's drain (not the test's, not other sessions').
MID_BATCH = text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :app "
    "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction') "
    "AND (query ILIKE 'INSERT INTO predictions%' OR query ILIKE 'INSERT INTO feedback%' "
    "OR query ILIKE '%journal_marks%')"
)


def drop_connections_mid_batch(admin_url: str, app: str, wanted: int, done: threading.Event) -> list[int]:
    """Terminate the gateway's connections caught inside a batch until ``wanted`` were (or ``done`` is set)."""
    killed: list[int] = []
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            while len(killed) < wanted and not done.is_set():
                killed += [1 for ok in conn.execute(MID_BATCH, {"app": app}).scalars() if ok]
                time.sleep(0.002)
    finally:
        engine.dispose()
    return killed


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("any_store_url", ["postgres"], indirect=True)
def test_a_connection_dropped_mid_batch_loses_nothing_and_the_gateway_says_so(
    settings: Any, demo_config: ProjectConfig, any_store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DATABASE_URL", any_store_url)
    from core.settings import get_settings

    register(get_settings(), demo_config, "1.0.0", "champion")
    app = f"mlops-gw-{tmp_path.name[-40:]}"[:60]  # names this gateway's backends alone on the shared database
    gateway_url = f"{any_store_url}&application_name={app}"
    port, log = free_port(), tmp_path / "gateway.log"
    url = f"http://127.0.0.1:{port}"
    gateway = start_gateway(settings.home_dir, gateway_url, port, log=log)

    done = threading.Event()
    killed: list[int] = []

    def killer() -> None:
        try:
            killed.extend(drop_connections_mid_batch(any_store_url, app, wanted=3, done=done))
        finally:
            done.set()

    thread = threading.Thread(target=killer)
    thread.start()
    deadline = threading.Timer(150, done.set)  # bounds a failing test; the kills come within seconds
    deadline.start()
    try:
        answered, labelled = drive(url, gateway, kill_after=None, until=done)
    finally:
        done.set()
        deadline.cancel()
        thread.join()
    assert len(killed) == 3, "no batch was caught in flight: the test did not drop a connection"
    assert gateway.poll() is None, "the gateway died"
    with httpx.Client(base_url=url, timeout=30) as client:  # still answering after the drops
        for i in range(20):
            answer = client.post("/v1/predict", json={"records": rows(1, i)})
            assert answer.status_code == 200, answer.text
            answered.add(answer.json()["predictions"][0]["request_id"])

    wait = time.monotonic() + 120  # the next drain reconnects; a wait, not a speed assertion
    while metric(url, "mlops_gateway_store_unreachable") != 0.0 and time.monotonic() < wait:
        time.sleep(0.2)
    assert metric(url, "mlops_gateway_store_unreachable") == 0.0
    assert metric(url, "mlops_gateway_store_outages") >= 1.0
    gateway.send_signal(signal.SIGTERM)  # a clean stop drains the rest
    assert gateway.wait(timeout=60) in (0, -signal.SIGTERM)

    with get_engine(any_store_url).connect() as conn:
        served = Counter(conn.execute(select(predictions.c.request_id).where(predictions.c.served == 1)).scalars())
        labels = Counter(conn.execute(select(feedback.c.request_id)).scalars())
    assert not answered - set(served), f"{len(answered - set(served))} answered requests are not in the log"
    assert not labelled - set(labels), f"{len(labelled - set(labels))} accepted labels are not in the log"
    assert set(served.values()) == {1}, "an answer was logged twice"
    assert set(labels.values()) == {1}, "a label was logged twice"
    said = log.read_text()
    assert "prediction log: the store is unreachable" in said and "stay journaled" in said, said[-3000:]
    assert "prediction log: the store is reachable again" in said, said[-3000:]
    assert "dropped a row" not in said, said[-3000:]
