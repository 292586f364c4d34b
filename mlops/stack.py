"""Local stacks of servers on 127.0.0.1, over the project home's stores.

``mlops ui``: the Prefect UI and the MLflow UI. ``mlops up``: those two, plus ``prefect.yaml`` deployed with its
schedules and event triggers, a process worker that runs them, and the serving gateway. Every server is a child
process in its own process group; Ctrl-C, SIGTERM or ``mlops down`` stops them all, and if one dies the others are
stopped too, so nothing is left listening. ``mlops up --detach`` records the processes in ``<home>/stack.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from core.errors import MlopsError
from core.settings import QUIET_ENV, Settings

STACK_FILE = "stack.json"


@dataclass
class Service:
    name: str
    url: str
    health_url: str | None
    process: subprocess.Popen[bytes]


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def base_env(settings: Settings, prefect_port: int) -> dict[str, str]:
    env = settings.child_environment(**QUIET_ENV, PREFECT_HOME=str(settings.prefect_home))
    env["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
    env.pop("PREFECT_API_URL", None)
    return env


def start_process(
    name: str, cmd: list[str], env: dict[str, str], log_dir: Path, url: str, health: str | None
) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{name.lower()}.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=Path.cwd())
    return Service(name, url, health, proc)


def start_services(settings: Settings, prefect_port: int, mlflow_port: int, log_dir: Path) -> list[Service]:
    """The Prefect server and the MLflow server (tracking + registry UI)."""
    settings.ensure_home()
    env = base_env(settings, prefect_port)
    prefect_url, mlflow_url = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    return [
        start_process(
            "Prefect",
            [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            env,
            log_dir,
            prefect_url,
            f"{prefect_url}/api/health",
        ),
        start_process(
            "MLflow",
            [
                _bin("mlflow"),
                "server",
                "--backend-store-uri",
                settings.tracking_uri,
                "--default-artifact-root",
                settings.artifact_root.as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            # MLflow 3 also starts ~8 huey job consumers for GenAI jobs (prompt optimisation, scorers) that this
            # project never submits; off, the UI starts faster and leaves the CPU to the flows
            {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            log_dir,
            mlflow_url,
            f"{mlflow_url}/health",
        ),
    ]


def wait_healthy(services: list[Service], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    pending = [s for s in services if s.health_url]
    while pending and time.monotonic() < deadline:
        for svc in list(pending):
            if svc.process.poll() is not None:
                raise MlopsError(f"the {svc.name} server exited with code {svc.process.returncode}; see its log.")
            try:
                with urllib.request.urlopen(svc.health_url, timeout=2) as resp:  # type: ignore[arg-type]
                    if resp.status == 200:
                        pending.remove(svc)
            except OSError:
                pass
        time.sleep(0.5)
    if pending:
        raise MlopsError(f"{', '.join(s.name for s in pending)} did not answer within {timeout:.0f} s.")


def stop_pids(pids: list[int], grace: float = 10.0) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone; reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop_services(services: list[Service], grace: float = 10.0) -> None:
    stop_pids([s.process.pid for s in services if s.process.poll() is None], grace)
    for svc in services:
        try:
            svc.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass


def supervise(services: list[Service], console: Console, log_dir: Path) -> None:
    """Block until Ctrl-C/SIGTERM or until one service dies; then stop them all."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        console.print(f"Logs in {log_dir}. Press Ctrl-C to stop everything.")
        while all(s.process.poll() is None for s in services):
            time.sleep(0.5)
        dead = [s.name for s in services if s.process.poll() is not None]
        raise MlopsError(f"{', '.join(dead)} stopped unexpectedly; see the logs in {log_dir}.")
    except KeyboardInterrupt:
        console.print("Stopping...")
    finally:
        stop_services(services)


def run_uis(settings: Settings, console: Console, prefect_port: int, mlflow_port: int) -> None:
    log_dir = settings.home_dir / "logs"
    services = start_services(settings, prefect_port, mlflow_port, log_dir)
    try:
        with console.status("Starting the Prefect and MLflow servers (first start migrates their databases)..."):
            wait_healthy(services)
    except BaseException:
        stop_services(services)
        raise
    for svc in services:
        console.print(f"{svc.name} UI: [bold]{svc.url}[/bold]")
    supervise(services, console, log_dir)


def run_stack(
    settings: Settings, console: Console, prefect_port: int, mlflow_port: int, gateway_port: int, detach: bool
) -> None:
    """Servers, deployments with schedules and triggers, a worker, the gateway."""
    state_file = settings.home_dir / STACK_FILE
    if state_file.exists() and any(_alive(p["pid"]) for p in json.loads(state_file.read_text())["processes"]):
        raise MlopsError(f"a stack from {state_file} is still running; stop it with `mlops down` first.")
    log_dir = settings.home_dir / "logs"
    services = start_services(settings, prefect_port, mlflow_port, log_dir)
    try:
        with console.status("Starting the Prefect and MLflow servers..."):
            wait_healthy(services)
        env = {
            **base_env(settings, prefect_port),
            "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
            "PWD": str(Path.cwd()),
        }
        with console.status("Deploying prefect.yaml (schedules and event triggers)..."):
            _run([_bin("prefect"), "work-pool", "create", "--type", "process", "--overwrite", "mlops-process"], env)
            _run([_bin("prefect"), "--no-prompt", "deploy", "--all"], env)
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        services.append(
            start_process(
                "Worker",
                [_bin("prefect"), "worker", "start", "--pool", "mlops-process"],
                env,
                log_dir,
                "(runs the deployments)",
                None,
            )
        )
        services.append(
            start_process(
                "Gateway",
                [_bin("mlops"), "serve", "--port", str(gateway_port)],
                env,
                log_dir,
                gateway_url,
                f"{gateway_url}/healthz",
            )
        )
        with console.status("Starting the worker and the gateway..."):
            wait_healthy(services)
    except BaseException:
        stop_services(services)
        raise
    for svc in services:
        console.print(f"{svc.name}: [bold]{svc.url}[/bold]")
    state = {
        "processes": [{"name": s.name, "pid": s.process.pid, "url": s.url, "health": s.health_url} for s in services]
    }
    state_file.write_text(json.dumps(state, indent=2))
    if detach:
        console.print(f"Running in the background; `mlops status` shows it, `mlops down` stops it. Logs in {log_dir}.")
        return
    try:
        supervise(services, console, log_dir)
    finally:
        state_file.unlink(missing_ok=True)


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=Path.cwd())
    if result.returncode != 0:
        raise MlopsError(f"`{' '.join(cmd[-3:])}` failed: {(result.stderr or result.stdout)[-800:]}")


def stack_status(settings: Settings) -> dict[str, Any]:
    state_file = settings.home_dir / STACK_FILE
    if not state_file.exists():
        return {"running": False, "processes": []}
    procs = json.loads(state_file.read_text())["processes"]
    for p in procs:
        p["alive"] = _alive(p["pid"])
        p["healthy"] = None
        if p["alive"] and p.get("health"):
            try:
                with urllib.request.urlopen(p["health"], timeout=2) as resp:
                    p["healthy"] = resp.status == 200
            except OSError:
                p["healthy"] = False
    return {"running": any(p["alive"] for p in procs), "processes": procs}


def stack_prefect_api(settings: Settings) -> str | None:
    """The API of the Prefect server `mlops up --detach` started for this home, if it is still alive."""
    state_file = settings.home_dir / STACK_FILE
    if not state_file.exists():
        return None
    for p in json.loads(state_file.read_text())["processes"]:
        if p["name"] == "Prefect" and _alive(p["pid"]):
            return f"{p['url']}/api"
    return None


def stack_down(settings: Settings) -> list[str]:
    state_file = settings.home_dir / STACK_FILE
    if not state_file.exists():
        return []
    procs = json.loads(state_file.read_text())["processes"]
    stop_pids([p["pid"] for p in procs])
    state_file.unlink(missing_ok=True)
    return [p["name"] for p in procs]
