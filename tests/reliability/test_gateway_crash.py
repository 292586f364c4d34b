"""SIGKILL the gateway (a real ``mlops serve`` process) under load, restart it: every answer a caller received and
every label accepted is in the store exactly once, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.config import ProjectConfig
from core.faults import JOURNAL_DRAINED
from core.store.schema import feedback, get_engine, predictions
from deployments.serve import free_port
from tests.conftest import DEMO_CONFIG, ISOLATED_ENV, REPO
from tests.deployments.test_gateway import rows
from tests.gateway_fixtures import register

SERVE = (
    "from core.settings import get_settings; from deployments.serve import serve; "
    "serve(get_settings(), '127.0.0.1', {port}, 1)"
)


def start_gateway(
    home: Path, store_url: str, port: int, log: Path | None = None, **extra: str
) -> subprocess.Popen[bytes]:
    """``mlops serve``'s gateway in a process of its own, once ready; its output goes to ``log`` when given."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    env.update(MLOPS_HOME=str(home), MLOPS_CONFIG=str(DEMO_CONFIG), MLOPS_DATABASE_URL=store_url, PYTHONPATH=str(REPO))
    env.update(extra)
    if log is None:
        proc = subprocess.Popen([sys.executable, "-c", SERVE.format(port=port)], cwd=REPO, env=env)
    else:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", SERVE.format(port=port)], cwd=REPO, env=env, stdout=out, stderr=out
            )
    deadline = time.monotonic() + 120  # waiting for start-up, not a speed assertion
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the gateway exited during start-up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the gateway did not become ready")


def drive(
    url: str,
    proc: subprocess.Popen[bytes],
    kill_after: int | None,
    variants: dict[str, str] | None = None,
    until: threading.Event | None = None,
) -> tuple[set[str], set[str]]:
    """Predict + feedback from 4 clients until the gateway dies (or is killed after ``kill_after`` answers, or
    ``until`` is set). Returns the request ids answered (200) and the ids whose label was accepted (202);
    ``variants`` collects which variant gave each answer."""
    answered: set[str] = set()
    labelled: set[str] = set()
    lock = threading.Lock()
    dead = threading.Event()

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as c:
            i = offset
            while not dead.is_set():
                try:
                    r = c.post("/v1/predict", json={"records": rows(1, i % 500)})
                    if r.status_code == 200:
                        answer = r.json()["predictions"][0]
                        rid = answer["request_id"]
                        with lock:
                            answered.add(rid)
                            if variants is not None:
                                variants[rid] = answer["variant"]
                        if c.post("/v1/feedback", json={"request_id": rid, "label": "benign"}).status_code == 202:
                            with lock:
                                labelled.add(rid)
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        return
                i += 4

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while proc.poll() is None and not (until is not None and until.is_set()):
        if kill_after is not None and len(answered) >= kill_after:
            # once: Popen.kill is safe when a client thread's poll() has already reaped the process
            proc.kill()
            proc.wait()
            break
        time.sleep(0.01)
    dead.set()
    for t in threads:
        t.join()
    return answered, labelled


@pytest.mark.parametrize("fault", ["sigkill-under-load", JOURNAL_DRAINED])
def test_a_killed_gateway_loses_no_answer_and_no_label_and_writes_none_twice(
    settings: Any, demo_config: ProjectConfig, any_store_url: str, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DATABASE_URL", any_store_url)
    from core.settings import get_settings

    register(get_settings(), demo_config, "1.0.0", "champion")
    port = free_port()
    if fault == JOURNAL_DRAINED:  # dies by itself between a store commit and the journal clean-up after it
        gateway = start_gateway(settings.home_dir, any_store_url, port, MLOPS_FAULT_POINT=JOURNAL_DRAINED)
        answered, labelled = drive(f"http://127.0.0.1:{port}", gateway, kill_after=None)
    else:
        gateway = start_gateway(settings.home_dir, any_store_url, port)
        answered, labelled = drive(f"http://127.0.0.1:{port}", gateway, kill_after=150)
    assert gateway.wait(timeout=30) == -signal.SIGKILL
    assert answered and labelled

    restarted = start_gateway(settings.home_dir, any_store_url, port)  # replays the dead process's journal
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutting down

    with get_engine(any_store_url).connect() as conn:
        served = Counter(conn.execute(select(predictions.c.request_id).where(predictions.c.served == 1)).scalars())
        labels = Counter(conn.execute(select(feedback.c.request_id)).scalars())
    assert not answered - set(served), f"{len(answered - set(served))} answered requests are not in the log"
    assert not labelled - set(labels), f"{len(labelled - set(labels))} accepted labels are not in the log"
    assert {n for n in served.values()} == {1}, "an answer was logged twice"
    assert {n for n in labels.values()} == {1}, "a label was logged twice"
    assert not list((settings.home_dir / "journal").glob("*.db")), "a drained journal was left behind"
