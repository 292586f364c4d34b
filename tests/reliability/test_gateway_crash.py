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


def drainers_of(pid: int) -> list[int]:
    """The prediction-log drainer processes (``core.store.drainer``) whose parent is ``pid``, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # exited while listed
            continue
        if int(fields[1]) == pid and b"core.store.drainer" in cmdline:
            found.append(int(stat.parent.name))
    return found


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout  # waiting for a process or a write, not a speed assertion
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def served_counts(store_url: str) -> Counter[str]:
    with get_engine(store_url).connect() as conn:
        return Counter(conn.execute(select(predictions.c.request_id).where(predictions.c.served == 1)).scalars())


def test_mlops_serve_drains_its_journal_from_a_child_process_that_yields_the_core(
    settings: Any, demo_config: ProjectConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drain's GIL made the tail of the answers under load (core/store/drainer.py): ``mlops serve`` drains from a
    child at a lower priority, and what it answers still reaches the store without a flush or a shutdown."""
    store_url = settings.store_url
    from core.settings import get_settings
    from core.store.drainer import NICENESS

    register(get_settings(), demo_config, "1.0.0", "champion")
    port = free_port()
    gateway = start_gateway(settings.home_dir, store_url, port)
    try:
        (drainer,) = wait_for(lambda: drainers_of(gateway.pid), "no drainer process started")
        assert os.getpriority(os.PRIO_PROCESS, drainer) == os.getpriority(os.PRIO_PROCESS, gateway.pid) + NICENESS
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            ids = [
                client.post("/v1/predict", json={"records": rows(1, i)}).json()["predictions"][0]["request_id"]
                for i in range(40)
            ]
        counts = wait_for(lambda: (c := served_counts(store_url)) and set(ids) <= set(c) and c, "answers not stored")
        assert all(counts[rid] == 1 for rid in ids)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
    assert not drainers_of(gateway.pid), "the drainer outlived the gateway's shutdown"
    assert not list((settings.home_dir / "journal").glob("*.db")), "a drained journal was left behind"


def test_a_drainer_that_dies_is_replaced_and_no_answer_is_lost_or_written_twice(
    settings: Any, demo_config: ProjectConfig, any_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DATABASE_URL", any_store_url)
    from core.settings import get_settings

    register(get_settings(), demo_config, "1.0.0", "champion")
    port = free_port()
    log_path = settings.home_dir / "gateway.log"
    gateway = start_gateway(settings.home_dir, any_store_url, port, log=log_path)
    stop = threading.Event()
    driven: dict[str, tuple[set[str], set[str]]] = {}
    driver = threading.Thread(
        target=lambda: driven.setdefault("ids", drive(f"http://127.0.0.1:{port}", gateway, None, until=stop))
    )
    driver.start()
    try:
        (first,) = wait_for(lambda: drainers_of(gateway.pid), "no drainer process started")
        wait_for(lambda: len(served_counts(any_store_url)) >= 50, "no answers stored before the drainer was killed")
        os.kill(first, signal.SIGKILL)  # mid-load: it may die between a store commit and the journal clean-up
        (second,) = wait_for(lambda: [p for p in drainers_of(gateway.pid) if p != first], "the drainer not replaced")
        stored = len(served_counts(any_store_url))
        wait_for(lambda: len(served_counts(any_store_url)) > stored + 50, "no answers stored by the new drainer")
    finally:
        stop.set()
        driver.join()
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=60) in (0, -signal.SIGTERM)
    answered, labelled = driven["ids"]
    assert second != first and answered and labelled
    assert "the drainer process exited" in log_path.read_text()
    served = served_counts(any_store_url)
    with get_engine(any_store_url).connect() as conn:
        labels = Counter(conn.execute(select(feedback.c.request_id)).scalars())
    assert not answered - set(served), f"{len(answered - set(served))} answered requests are not in the log"
    assert not labelled - set(labels), f"{len(labelled - set(labels))} accepted labels are not in the log"
    assert set(served.values()) == {1}, "an answer was logged twice"
    assert set(labels.values()) == {1}, "a label was logged twice"
    assert not list((settings.home_dir / "journal").glob("*.db")), "a drained journal was left behind"
