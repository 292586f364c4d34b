"""``mlops run`` SIGKILLed mid-flow (after Prefect's temporary server started and the request's MLflow run opened):
the temporary server dies with it instead of running on orphaned, and the next command marks the request crashed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.faults import LIFECYCLE_RUN_OPENED
from core.intake import submit_request
from services.context import open_context
from tests.conftest import DEMO_CONFIG, REPO
from tests.reliability.test_interrupted_request import environment


def processes_of(home: Path, marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` and whose environment names this home."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and f"MLOPS_HOME={home}\0".encode() in environ:
            found.append(int(entry.name))
    return found


def test_a_killed_mlops_run_takes_its_prefect_server_with_it(settings: Any) -> None:
    context = open_context(settings, config_path=DEMO_CONFIG)
    request = submit_request(context.store, DEMO_CONFIG, "minor", "retrain", "weekly", None, submitted_by="test")
    run = subprocess.Popen(
        [sys.executable, "-m", "mlops.cli", "run"],
        cwd=REPO,
        env=environment(settings.home_dir, MLOPS_FAULT_POINT=LIFECYCLE_RUN_OPENED),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server_seen = False  # the test means something only if the command had started a server
    while run.poll() is None:
        server_seen = server_seen or bool(processes_of(settings.home_dir, "prefect.server.api.server"))
        time.sleep(0.2)
    assert run.returncode == -signal.SIGKILL
    assert server_seen, "mlops run never started Prefect's temporary server"
    assert context.store.get(request.id).status == "running"  # the flow got as far as the fault point

    deadline = time.monotonic() + 60  # the watcher's grace period is 5 s; this only bounds a failing test
    while (servers := processes_of(settings.home_dir, "prefect.server.api.server")) and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        assert servers == [], "Prefect's temporary server outlived the killed command"
    finally:
        for pid in servers:  # never leave one behind, even when the assertion fails
            signal_quietly(pid)
    assert [r.id for r in context.store.recover_crashed()] == [request.id]


def signal_quietly(pid: int) -> None:
    import os

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_killed_mlops_ui_takes_its_servers_with_it(settings: Any) -> None:
    """``mlops ui`` SIGKILLed once its Prefect and MLflow servers run: they stop instead of holding their ports."""
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops.cli",
            "ui",
            "--prefect-port",
            str(free_port()),
            "--mlflow-port",
            str(free_port()),
        ],
        cwd=REPO,
        env=environment(settings.home_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    markers = ("prefect\0server\0start", "mlflow\0server")  # /proc/<pid>/cmdline separates arguments by NULs
    try:
        deadline = time.monotonic() + 120
        while not all(processes_of(settings.home_dir, m) for m in markers) and time.monotonic() < deadline:
            assert ui.poll() is None, "mlops ui exited before its servers started"
            time.sleep(0.2)
        assert all(processes_of(settings.home_dir, m) for m in markers), "mlops ui never started both servers"
    finally:
        ui.kill()
        ui.wait(30)

    deadline = time.monotonic() + 60  # the watcher's grace period is 5 s; this only bounds a failing test
    markers += ("mlflow.server.fastapi",)  # and the uvicorn worker MLflow's server started
    while (left := [p for m in markers for p in processes_of(settings.home_dir, m)]) and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        assert left == [], "servers outlived the killed `mlops ui`"
    finally:
        for pid in left:
            signal_quietly(pid)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
