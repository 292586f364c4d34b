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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from core.errors import MlopsError
from core.settings import QUIET_ENV, Settings
from core.store.schema import get_engine
from mlops.reaper import watch_descendants, watch_group

STACK_FILE = "stack.json"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class StackStores:
    """Where the three stores of a local stack live: embedded SQLite files under the home, or one PostgreSQL server
    with a database each (the project store's, ``<name>_mlflow`` and ``<name>_prefect``: MLflow and Prefect both
    keep an ``alembic_version`` table, so they cannot share one)."""

    project: str
    mlflow: str
    prefect: str | None  # None: Prefect's own SQLite under <home>/prefect

    @property
    def on_postgres(self) -> bool:
        return self.prefect is not None


def stack_stores(settings: Settings, database_url: str | None) -> StackStores:
    if database_url is None:
        return StackStores(settings.store_url, settings.tracking_uri, None)
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        url = make_url(database_url)
    except ArgumentError:
        raise MlopsError(
            f"--database-url {database_url!r} is not a database URL; use postgresql://user@host/db."
        ) from None
    if url.get_backend_name() != "postgresql" or not url.database:
        raise MlopsError("--database-url must be a PostgreSQL URL with a database name, e.g. postgresql://u@h/mlops.")
    names = {"mlflow": f"{url.database}_mlflow", "prefect": f"{url.database}_prefect"}
    engine = create_engine(url.set(drivername="postgresql+psycopg2"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            existing = {r[0] for r in conn.execute(text("SELECT datname FROM pg_database"))}
            for name in names.values():
                if name not in existing:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as err:
        cause = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise MlopsError(
            f"cannot prepare the stack's databases on {url.render_as_string(hide_password=True)}: {cause}. Check "
            "that the server runs and that this user may create databases (or create "
            f"{' and '.join(names.values())} yourself)."
        ) from None
    finally:
        engine.dispose()
    return StackStores(
        project=database_url,
        # explicit driver: MLflow 3 otherwise picks psycopg (3), which is not installed
        mlflow=url.set(drivername="postgresql+psycopg2", database=names["mlflow"]).render_as_string(
            hide_password=False
        ),
        prefect=url.set(drivername="postgresql+asyncpg", database=names["prefect"]).render_as_string(
            hide_password=False
        ),
    )


@dataclass(frozen=True)
class Credentials:
    """What `mlops up --secure` puts in front of the servers: Prefect's API auth string (``user:password``) and the
    MLflow basic-auth admin. Made once per home, kept in ``<home>/credentials.json`` readable by its owner only."""

    prefect_auth: str
    mlflow_user: str
    mlflow_password: str
    mlflow_secret_key: str  # signs the basic-auth app's CSRF tokens


def stack_credentials(settings: Settings) -> Credentials:
    import secrets

    path = settings.home_dir / CREDENTIALS_FILE
    if path.exists():
        return Credentials(**json.loads(path.read_text()))
    creds = Credentials(
        f"admin:{secrets.token_urlsafe(18)}", "admin", secrets.token_urlsafe(18), secrets.token_urlsafe(32)
    )
    settings.ensure_home()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds.__dict__, f, indent=2)
    return creds


@dataclass
class Service:
    name: str
    url: str
    health_url: str | None
    process: subprocess.Popen[bytes]
    log_path: Path | None = None


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def base_env(
    settings: Settings, prefect_port: int, stores: StackStores | None = None, creds: Credentials | None = None
) -> dict[str, str]:
    env = settings.child_environment(**QUIET_ENV, PREFECT_HOME=str(settings.prefect_home))
    env["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
    if stores is not None and stores.on_postgres:
        env["MLOPS_DATABASE_URL"] = stores.project
        env["MLFLOW_TRACKING_URI"] = stores.mlflow
    if creds is not None:
        env["PREFECT_API_AUTH_STRING"] = creds.prefect_auth
    env.pop("PREFECT_API_URL", None)
    return env


def start_process(
    name: str, cmd: list[str], env: dict[str, str], log_dir: Path, url: str, health: str | None
) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{name.lower()}.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=Path.cwd())
    watch_group(proc.pid)  # its own session: the watcher (if this command runs one) stops the whole group
    return Service(name, url, health, proc, log_dir / f"{name.lower()}.log")


def start_services(
    settings: Settings,
    prefect_port: int,
    mlflow_port: int,
    log_dir: Path,
    stores: StackStores | None = None,
    creds: Credentials | None = None,
) -> list[Service]:
    """The Prefect server and the MLflow server (tracking + registry UI), on the given stores, behind credentials
    when ``creds`` is given."""
    settings.ensure_home()
    stores = stores or stack_stores(settings, None)
    env = base_env(settings, prefect_port, stores, creds)
    prefect_env = dict(env)
    if stores.prefect is not None:
        prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"] = stores.prefect
    mlflow_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_auth: list[str] = []
    if creds is not None:
        prefect_env["PREFECT_SERVER_API_AUTH_STRING"] = creds.prefect_auth
        auth_ini = settings.home_dir / "mlflow-auth.ini"
        auth_ini.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{settings.home_dir / 'mlflow-auth.db'}\n"
            f"admin_username = {creds.mlflow_user}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        mlflow_env |= {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": creds.mlflow_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": creds.mlflow_secret_key,
        }
        mlflow_auth = ["--app-name", "basic-auth"]
    prefect_url, mlflow_url = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    return [
        start_process(
            "Prefect",
            [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            prefect_env,
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
                stores.mlflow,
                "--default-artifact-root",
                settings.artifact_root.as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                *mlflow_auth,
            ],
            # MLflow 3 also starts ~8 huey job consumers for GenAI jobs (prompt optimisation, scorers) that this
            # project never submits; off, the UI starts faster and leaves the CPU to the flows
            mlflow_env,
            log_dir,
            mlflow_url,
            f"{mlflow_url}/health",
        ),
    ]


@contextmanager
def gateway_process(settings: Settings, log_dir: Path, timeout: float = 120.0) -> Iterator[str]:
    """``mlops serve`` in a process of its own on a free port of 127.0.0.1, ready (its models loaded) when the block
    starts and stopped when it ends; yields its URL. The demo judges its rollouts on it, as production would: a
    flow polling in the command's process then never stalls the answers whose latency the guards compare."""
    from deployments.serve import free_port

    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    port = url.rsplit(":", 1)[1]
    gateway = start_process(
        "Gateway", [_bin("mlops"), "serve", "--port", port], settings.child_environment(), log_dir, url, f"{url}/readyz"
    )
    try:
        wait_healthy([gateway], timeout)
        yield url
    finally:
        stop_services([gateway])


def wait_healthy(services: list[Service], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    pending = [s for s in services if s.health_url]
    while pending and time.monotonic() < deadline:
        for svc in list(pending):
            if svc.process.poll() is not None:
                tail = _last_line(svc.log_path)
                raise MlopsError(
                    f"the {svc.name} server exited with code {svc.process.returncode}"
                    + (f" ({tail})" if tail else "")
                    + f"; its log is {svc.log_path}."
                )
            try:
                with urllib.request.urlopen(svc.health_url, timeout=2) as resp:  # type: ignore[arg-type]
                    if resp.status == 200:
                        pending.remove(svc)
            except OSError:
                pass
        time.sleep(0.5)
    if pending:
        raise MlopsError(f"{', '.join(s.name for s in pending)} did not answer within {timeout:.0f} s.")


def _last_line(path: Path | None) -> str:
    """The last non-empty line of a log: usually the exception that ended the process."""
    if path is None or not path.exists():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line or "Exception:" in line]
    return (errors or lines or [""])[-1][:300]


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
    # a process started with SIGINT ignored (a background job of a script, a pytest-xdist worker's child) would
    # otherwise never see Ctrl-C: Python installs its handler only where SIGINT was not ignored at start
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
    watch_descendants()  # the servers die with this command, even when it is SIGKILLed
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
    settings: Settings,
    console: Console,
    prefect_port: int,
    mlflow_port: int,
    gateway_port: int,
    detach: bool,
    database_url: str | None = None,
    secure: bool = False,
) -> None:
    """Servers, deployments with schedules and triggers, a worker, the gateway; on PostgreSQL with
    ``database_url``, behind credentials with ``secure``."""
    state_file = settings.home_dir / STACK_FILE
    if state_file.exists() and any(_alive(p["pid"]) for p in json.loads(state_file.read_text())["processes"]):
        raise MlopsError(f"a stack from {state_file} is still running; stop it with `mlops down` first.")
    if not detach:  # the stack dies with this command, even when it is SIGKILLed (detached, it outlives it)
        watch_descendants()
    log_dir = settings.home_dir / "logs"
    stores = stack_stores(settings, database_url)
    get_engine(stores.project)  # a project store at another schema revision stops here, before any server starts
    creds = stack_credentials(settings) if secure else None
    services = start_services(settings, prefect_port, mlflow_port, log_dir, stores, creds)
    try:
        with console.status("Starting the Prefect and MLflow servers..."):
            wait_healthy(services)
        env = {
            **base_env(settings, prefect_port, stores, creds),
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
    if stores.on_postgres:
        console.print("Stores: the project store, MLflow and Prefect on PostgreSQL (one database each).")
    if creds is not None:
        console.print(f"Credentials for the Prefect and MLflow servers: {settings.home_dir / CREDENTIALS_FILE}")
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
