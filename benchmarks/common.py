"""What the benchmarks that start servers share: the paths, an isolated project home with registered versions, the
processes a run starts (all stopped on success, error, Ctrl-C or SIGTERM), a gateway started and waited for, a
closed-loop load generator in its own pinned process, and the results file.

A benchmark's ``main`` hands its body to :func:`run_benchmark`: a temporary work folder, a :class:`Processes`, SIGTERM
and SIGINT turned into a clean stop, the folder removed afterwards unless ``--keep``; the body ends with
:meth:`BenchmarkRun.results` (what every results file carries: benchmark, when, command, load, machine) and
:meth:`BenchmarkRun.finish` (the wall time; the file under ``benchmarks/results/``).

Used by gateway_throughput.py, promotion_latency.py, rollout_e2e.py, capacity_check.py and retraining_benefit.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from the repository root
    sys.path.insert(0, str(REPO))

BIN = Path(sys.executable).parent  # the virtualenv's bin: mlops, mlflow, uvicorn
RESULTS = REPO / "benchmarks" / "results"
CONFIG = REPO / "config" / "project.yaml"
MODEL_NAME = "breast-cancer-classifier"
SERVER_CPU, CLIENT_CPU = "0", "1"
LOADGENS: set[subprocess.Popen[bytes]] = set()  # running load generators, killed on interruption
VERSION_RE = re.compile(rb'"model_version":"([^"]*)"')


# ---- processes ---------------------------------------------------------------------------------------------------
def has_taskset() -> bool:
    return shutil.which("taskset") is not None


def pinned(cmd: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if has_taskset() and (os.cpu_count() or 1) > int(cpu) else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started_at: float
    ready_after: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Processes:
    """Every process the benchmark started, so all of them stop on success, error, Ctrl-C or SIGTERM."""

    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        log = log_path.open("ab")
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # one process group per server: stop() signals the server and its children
        )
        log.close()
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM the process group (mlflow's CLI runs uvicorn as a child), then SIGKILL whatever is left."""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout  # the group may outlive its leader (a child uvicorn)
        while _signal_group(proc.pid, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(proc.pid, signal.SIGKILL)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(LOADGENS):
            proc.kill()
            proc.communicate()
            LOADGENS.discard(proc)
        for proc in list(self.running):
            self.stop(proc)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT, even when started with it ignored) into KeyboardInterrupt, so ``finally`` blocks
    stop the servers."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---- one run of a benchmark --------------------------------------------------------------------------------------
@dataclass
class BenchmarkRun:
    """A benchmark run: its script (for the results' command line), arguments, work folder and processes."""

    script: str
    argv: list[str]
    workdir: Path
    procs: Processes = field(default_factory=Processes)
    started: float = field(default_factory=time.monotonic)
    load_at_start: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def results(self, benchmark: str, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` led by what every results file carries: the benchmark, when, the command line, the load at the
        start and the machine (with the load now)."""
        return {
            "benchmark": benchmark,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join([f"python benchmarks/{self.script}", *self.argv]),
            "loadavg_at_start": self.load_at_start,
            "machine": machine_facts(),
            **fields,
        }

    def finish(self, results: dict[str, Any], file_name: str, shown: str) -> int:
        """Write ``results`` with the run's wall time to ``benchmarks/results/file_name``; print ``shown`` (a table, a
        summary) and where the file went."""
        results["wall_seconds"] = round(time.monotonic() - self.started, 1)
        path = write_json(file_name, results)
        print()
        print(shown)
        print(f"\nWrote {path.relative_to(REPO)} ({results['wall_seconds']:.0f} s)")
        return 0


def run_benchmark(
    script: str,
    argv: list[str] | None,
    body: Callable[[BenchmarkRun], int],
    *,
    prefix: str = "mlops-bench-",
    keep: bool = False,
    interrupted: Callable[[], str] = lambda: "interrupted: stopping servers",
) -> int:
    """Run ``body`` in a fresh work folder; stop every process it started and remove the folder (unless ``keep``)
    however it ends. Ctrl-C or SIGTERM: ``interrupted()`` on stderr and exit code 130."""
    run = BenchmarkRun(script, list(sys.argv[1:] if argv is None else argv), Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        with interruptible():
            return body(run)
    except KeyboardInterrupt:
        print(interrupted(), file=sys.stderr)
        return 130
    finally:
        run.procs.stop_all()
        if keep:
            print(f"kept {run.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(run.workdir, ignore_errors=True)


# ---- a project home and a server -----------------------------------------------------------------------------------
def isolated_home(home: Path, config_path: Path = CONFIG) -> Any:
    """Point this process (and the servers it starts with :func:`server_env`) at a fresh project home ``home`` and
    the config at ``config_path``: MLOPS_HOME, MLOPS_CONFIG and MLFLOW_TRACKING_URI are set here. Returns its
    settings, the home created."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLOPS_CONFIG"] = str(config_path)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from core.settings import get_settings

    settings = get_settings()
    settings.ensure_home()
    return settings


def make_home(root: Path, config_path: Path = CONFIG) -> dict[str, Any]:
    """A project home with champion v1 (1.0.0) and challenger v2 (1.1.0, C=0.5), trained and registered for real.

    The same steps as ``tests/gateway_fixtures.py::register`` (the project's own functions, no Prefect), so a fresh
    home costs seconds instead of the demo's half minute (:func:`isolated_home`).
    """
    home = root / "home"
    settings = isolated_home(home, config_path)
    from core.config import load_config
    from core.store.requests import ProjectStore
    from core.tracking import configure_mlflow
    from model_registry.registry import ModelRegistry
    from tests.helpers import train_and_register

    config = load_config(config_path)
    client = configure_mlflow(settings)
    registry = ModelRegistry(config.model_name, ProjectStore(settings.store_url), client)
    versions = {
        alias: train_and_register(
            settings, config, semver, alias, actor="benchmark", description=f"benchmark model {semver}", **params
        )
        for semver, params, alias in (("1.0.0", {}, "champion"), ("1.1.0", {"C": 0.5}, "challenger"))
    }
    return {"home": home, "settings": settings, "config": config, "registry": registry, "versions": versions}


def feature_rows(n: int = 64) -> list[dict[str, float]]:
    from training.datasets import breast_cancer

    frame = breast_cancer()
    features = [c for c in frame.columns if c != "diagnosis"]
    return [{k: float(v) for k, v in row.items()} for row in frame[features].head(n).to_dict("records")]


def write_bodies(path: Path, rows: list[dict[str, float]], key: str) -> Path:
    path.write_text("\n".join(json.dumps({key: [row]}, separators=(",", ":")) for row in rows) + "\n")
    return path


def server_env(home: Path, config_path: Path = CONFIG) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLOPS_HOME=str(home),
        MLOPS_CONFIG=str(config_path),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # mlflow's CLI execs `uvicorn` from PATH
        GX_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("MLOPS_GATEWAY_TOKEN", None)
    return env


def post_once(url: str, body: bytes, timeout: float = 2.0) -> tuple[int, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_until_answers(server: Server, path: str, body: bytes, timeout: float = 120.0) -> float:
    """Poll with a real prediction until it answers 200; returns seconds since the process was started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; see {server.log_path}")
        try:
            status, _ = post_once(server.url + path, body, timeout=2.0)
            if status == 200:
                server.ready_after = time.monotonic() - server.started_at
                return server.ready_after
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{server.name} did not answer within {timeout:.0f} s; see {server.log_path}")


def gateway_command(port: int, workers: int = 1) -> list[str]:
    """``mlops serve`` on 127.0.0.1, what an operator runs."""
    return [str(BIN / "mlops"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]


def start_server(
    procs: Processes,
    name: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    log_path: Path,
    path: str,
    body: bytes,
    cpu: str | None = None,
) -> Server:
    """Start a server (pinned to ``cpu`` when given) and wait until it answers ``body`` at ``path`` with a 200; its
    output goes to ``log_path``. ``ready_after`` holds the seconds that took."""
    started = time.monotonic()
    proc = procs.start(pinned(cmd, cpu) if cpu is not None else cmd, env, log_path)
    server = Server(name, proc, port, log_path, started)
    wait_until_answers(server, path, body)
    return server


# ---- load generator (stdlib only; runs in its own pinned process) ------------------------------------------------
def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = None, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        close = True
    return status, body, not close


async def _client(spec: dict[str, Any], index: int, deadline: float, out: dict[str, Any]) -> None:
    host, port, requests = spec["host"], spec["port"], spec["requests"]
    trace = spec.get("trace", False)
    i = index * 7919
    reader = writer = None
    cap = spec.get("max_requests") or float("inf")
    while time.monotonic() < deadline and len(out["latencies"]) < cap:
        request = requests[i % len(requests)]
        i += 1
        started = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            status, body, keep = await asyncio.wait_for(_read_response(reader), timeout=spec.get("timeout", 30))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status, body, keep = 0, b"", False
        done = time.monotonic()
        out["latencies"].append(done - started)
        if status != 200:
            out["errors"] += 1
            out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
        if trace:
            m = VERSION_RE.search(body)
            out["trace"].append((started, done, status, m.group(1).decode() if m else None))
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
            if status == 0:
                await asyncio.sleep(0.01)  # refused or reset: do not spin while a server is down
    if writer is not None:
        writer.close()


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies": [], "errors": 0, "statuses": {}, "trace": []}
    started = time.monotonic()
    deadline = started + spec["seconds"]
    await asyncio.gather(*(_client(spec, k, deadline, out) for k in range(spec["concurrency"])))
    elapsed = time.monotonic() - started
    lat = sorted(x * 1000.0 for x in out["latencies"])
    result = {
        "requests": len(lat),
        "seconds": elapsed,
        "rps": len(lat) / elapsed if elapsed else 0.0,
        "errors": out["errors"],
        "statuses": out["statuses"],
        "p50_ms": _percentile(lat, 50),
        "p95_ms": _percentile(lat, 95),
        "p99_ms": _percentile(lat, 99),
        "max_ms": lat[-1] if lat else None,
        "latencies_ms": [round(x, 4) for x in lat],
    }
    if spec.get("trace"):
        result["trace"] = out["trace"]
    return result


def post_requests(bodies: Path, port: int, path: str = "/v1/predict", host: str = "127.0.0.1") -> list[bytes]:
    """Raw HTTP/1.1 POST requests, one per JSON line of ``bodies``."""
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in (line.encode() for line in bodies.read_text().splitlines() if line)
    ]


def loadgen_main(spec_path: str) -> None:
    """Entry point of the load-generator process: read the spec, run, print JSON on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    spec["requests"] = post_requests(Path(spec["bodies"]), spec["port"], spec["path"], spec["host"])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if spec.get("start_at"):  # a shared monotonic instant (CLOCK_MONOTONIC is system-wide on Linux)
        time.sleep(max(0.0, spec["start_at"] - time.monotonic()))
    result = asyncio.run(_load(spec))
    sys.stdout.write(json.dumps(result))


def run_load(
    port: int,
    path: str,
    bodies: Path,
    seconds: float,
    concurrency: int,
    workdir: Path,
    trace: bool = False,
    start_at: float | None = None,
    max_requests: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start the load generator pinned to the client core; ``finish_load`` collects its JSON. It stops after
    ``seconds`` or ``max_requests`` answers, whichever comes first."""
    spec = {
        "max_requests": max_requests,
        "host": "127.0.0.1",
        "port": port,
        "path": path,
        "bodies": str(bodies),
        "seconds": seconds,
        "concurrency": concurrency,
        "trace": trace,
        "start_at": start_at,
    }
    spec_path = workdir / f"loadgen-{port}-{time.monotonic_ns()}.json"
    spec_path.write_text(json.dumps(spec))
    cmd = pinned([sys.executable, str(Path(__file__).resolve()), "--loadgen", str(spec_path)], CLIENT_CPU)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    LOADGENS.add(proc)
    return proc


def finish_load(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("load generator did not finish in time") from None
    finally:
        LOADGENS.discard(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def load(
    port: int,
    path: str,
    bodies: Path,
    seconds: float,
    concurrency: int,
    workdir: Path,
    max_requests: int | None = None,
) -> dict[str, Any]:
    proc = run_load(port, path, bodies, seconds, concurrency, workdir, max_requests=max_requests)
    return finish_load(proc, timeout=seconds + 60)


# ---- results -----------------------------------------------------------------------------------------------------
def machine_facts() -> dict[str, Any]:
    import fastapi
    import mlflow
    import sklearn
    import uvicorn

    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mlflow": mlflow.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "scikit_learn": sklearn.__version__,
        "loadavg_at_end": os.getloadavg(),  # other work on the machine shares the cores: see the README
        "pinning": (
            f"taskset: servers on core {SERVER_CPU}, load generator on core {CLIENT_CPU}"
            if has_taskset() and (os.cpu_count() or 1) > 1
            else "no taskset (or one core): servers and load generator are not pinned"
        ),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2])
