"""Benchmark: the serving gateway against ``mlflow models serve``, a minimal hand-written app, and bare ``predict``.

All HTTP targets serve the same registered model (``breast-cancer-classifier@champion``: the project's pipeline,
ColumnTransformer(SimpleImputer + StandardScaler) + LogisticRegression over 30 numeric features) from the same
temporary project home. Each runs as one uvicorn worker pinned to core 0 (``taskset -c 0``); the load generator runs
in its own process pinned to core 1. Every request carries one record (rows of the Wisconsin data, cycled).

The servers are started one after the other (each answering before the next starts; that time is reported), all
warmed up, then measured in ``--rounds`` interleaved rounds of ``--seconds/--rounds`` each at ``--concurrency``
keep-alive connections (throughput and latency under load), so a burst of other work on the machine does not land
on one target only. Then each gets ``--serial-seconds`` with one connection (latency without queueing: the server's
own overhead per request). The server's CPU time is read from /proc, so the table also shows CPU milliseconds per
request on the pinned core.

Targets:
1. ``mlops serve --workers 1`` (no rollout live: the champion answers inline); and, with ``--canary 10`` (the
   default), the same gateway over a copy of the home with a live 10% canary of challenger v2 (each variant batched
   on its own, the deadline applied to both, every answer logged with its variant);
2. ``mlflow models serve -m models:/breast-cancer-classifier@champion --env-manager local --workers 1``;
3. a ~20-line FastAPI app: ``mlflow.sklearn.load_model`` + ``model.predict(pd.DataFrame.from_records(records))``;
4. in-process ``model.predict`` of a one-row DataFrame in a loop (no HTTP), plus two in-process variants that
   attribute the gateway's cost (the minimal app's frame building, the gateway's validation and output check);
5. with ``--mlserver`` (the default) MLServer 1.7.1 + mlserver-sklearn 1.7.1 from its own virtualenv
   (``benchmarks/.venvs/mlserver``, created on first use), serving the same champion pipeline dumped with joblib,
   adaptive batching of 8 rows / 2 ms, ``parallel_workers: 0``, V2 requests of one row decoded to a DataFrame
   (``mlserver_baseline.py``).

The load generator is a small asyncio HTTP/1.1 client over raw streams (stdlib only; uvloop when installed): it
costs far less CPU per request than the servers it measures, so ``wrk`` is not needed.

Usage (from the repository root)::

    .venv/bin/python benchmarks/gateway_throughput.py [--seconds 10] [--concurrency 8]

Prints a markdown table and writes the figures to ``benchmarks/results/gateway_throughput.json``.

``--log-formats`` measures the cost of structured logs instead: the gateway alone, started three times from the same
home (text logs, the default: no access log; json logs with the access log, the image's default; json without the
access log), measured the same way, with the bytes each wrote to its log file per request. Figures go to
``benchmarks/results/gateway_logs.json``.
"""

from __future__ import annotations

import argparse
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
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from the repository root
    sys.path.insert(0, str(REPO))

import mlserver_baseline  # noqa: E402  (benchmarks/ is on the path when run as a script)

BIN = Path(sys.executable).parent  # the virtualenv's bin: mlops, mlflow, uvicorn
RESULTS = REPO / "benchmarks" / "results"
CONFIG = REPO / "config" / "project.yaml"
MODEL_NAME = "breast-cancer-classifier"
SERVER_CPU, CLIENT_CPU = "0", "1"
TARGET_VS_MLFLOW = 10.0
TARGET_VS_MINIMAL = 0.8
TARGET_OVERHEAD_MS = 1.0
TARGET_VS_MLSERVER = 5.0  # issue 12: single-row throughput at 8 clients, with and without a live canary
TARGET_CANARY_SHARE = 0.8  # throughput with a live canary, against no rollout
LOADGENS: set[subprocess.Popen[bytes]] = set()  # running load generators, killed on interruption
VERSION_RE = re.compile(rb'"model_version":"([^"]*)"')

MINIMAL_APP = '''
"""The best you could hand-write: load the model once, predict inline, answer JSON."""
import os

import mlflow.sklearn
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response

model = mlflow.sklearn.load_model(os.environ["BENCH_MODEL_URI"])
app = FastAPI()


@app.post("/v1/predict")
async def predict(request: Request) -> Response:
    records = orjson.loads(await request.body())["records"]
    preds = model.predict(pd.DataFrame.from_records(records))
    return Response(orjson.dumps({"predictions": preds.tolist()}), media_type="application/json")
'''


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


def loadgen_main(spec_path: str) -> None:
    """Entry point of the load-generator process: read the spec, run, print JSON on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    bodies = [line.encode() for line in Path(spec["bodies"]).read_text().splitlines() if line]
    spec["requests"] = [
        (
            f"POST {spec['path']} HTTP/1.1\r\nHost: {spec['host']}:{spec['port']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if spec.get("start_at"):  # a shared monotonic instant (CLOCK_MONOTONIC is system-wide on Linux)
        time.sleep(max(0.0, spec["start_at"] - time.monotonic()))
    result = asyncio.run(_load(spec))
    sys.stdout.write(json.dumps(result))


# ---- orchestration helpers (shared with promotion_latency.py) ----------------------------------------------------
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


def session_cpu_seconds(leader_pid: int) -> float:
    """User + system CPU of every live process in the leader's session (the server and its children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == leader_pid:  # session id (start_new_session: the leader's pid)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def make_home(root: Path, config_path: Path = CONFIG) -> dict[str, Any]:
    """A project home with champion v1 (1.0.0) and challenger v2 (1.1.0, C=0.5), trained and registered for real.

    The same steps as ``tests/gateway_fixtures.py::register`` (the project's own functions, no Prefect), so a fresh
    home costs seconds instead of the demo's half minute. Sets MLOPS_HOME/MLOPS_CONFIG/MLFLOW_TRACKING_URI here.
    """
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLOPS_CONFIG"] = str(config_path)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from core.config import load_config
    from core.settings import get_settings
    from core.store.requests import ProjectStore
    from core.tracking import configure_mlflow
    from model_registry.registry import ModelRegistry
    from tests.helpers import train_and_register

    settings = get_settings()
    settings.ensure_home()
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


def canary_target(setup: dict[str, Any], workdir: Path, percent: float, records: Path) -> list[tuple[Any, ...]]:
    """The gateway over a copy of the home in which a ``percent`` canary of the challenger is live (the copy keeps
    the rollout and its prediction log away from the no-rollout gateway; MLflow's artifacts stay where they are)."""
    if percent <= 0:
        return []
    from core.store.rollouts import RolloutStore

    home: Path = setup["home"]
    copy = workdir / "home-canary"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm", "prefect"))
    versions = setup["versions"]
    policy = setup["config"].rollout.model_dump(mode="json")
    RolloutStore(f"sqlite:///{copy / 'mlops.db'}").start(
        setup["config"].model_name, "canary", versions["champion"], versions["challenger"], percent, policy, "bench"
    )
    port = free_port()
    cmd = [str(BIN / "mlops"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return [(f"mlops gateway, {percent:g}% canary live", cmd, server_env(copy), port, "/v1/predict", records)]


def mlserver_target(workdir: Path, rows: list[dict[str, float]]) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """MLServer 1.7 serving the champion pipeline (``mlserver_baseline``), or no target and the reason why not."""
    import mlflow.sklearn
    import sklearn

    try:
        versions = mlserver_baseline.ensure_venv(sklearn.__version__)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as err:
        print(f"  MLServer left out: {err}", flush=True)
        return [], {"unavailable": f"the MLServer virtualenv could not be set up: {err}"}
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@champion")
    root = mlserver_baseline.write_model_repository(model, workdir / "mlserver", ports)
    bodies = mlserver_baseline.write_bodies(workdir / "v2_bodies.jsonl", rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "PYTHON"))}
    name = "MLServer 1.7 (adaptive batching)"
    spec = (name, mlserver_baseline.command(root), env, ports["http"], mlserver_baseline.INFER_PATH, bodies)
    return [spec], {"versions": versions, "settings": str(root)}


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


# ---- in-process measurements -------------------------------------------------------------------------------------
def in_process(rows: list[dict[str, float]], iterations: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Per-call latency without HTTP, on the servers' core: bare predict, the minimal app's work, the gateway's."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd

    from deployments.inputs import check_output, records_frame, validate_records
    from deployments.model_loading import load_handle
    from services.context import open_context

    handle = load_handle(open_context().registry, "champion")
    assert handle is not None
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@champion")
    frames = [pd.DataFrame([row]) for row in rows]

    def bare(i: int) -> None:
        model.predict(frames[i % len(frames)])

    def minimal(i: int) -> None:
        model.predict(pd.DataFrame.from_records([rows[i % len(rows)]]))

    def gateway_path(i: int) -> None:
        records = [rows[i % len(rows)]]
        check_output(handle.model.predict(records_frame(validate_records(records, handle), handle)), 1)

    previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if previous is not None and has_taskset() and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    try:
        variants = {
            "predict(1-row DataFrame)": bare,
            "from_records + predict (minimal app's work)": minimal,
            "validate_records + predict + check_output (gateway's work)": gateway_path,
        }
        times = {name: [] for name in variants}
        for fn in variants.values():
            for i in range(min(200, iterations)):
                fn(i)
        chunk = max(1, iterations // rounds)
        for r in range(rounds):  # interleaved, like the HTTP targets, so other load on the machine spreads evenly
            for name, fn in variants.items():
                for i in range(r * chunk, (r + 1) * chunk):
                    t0 = time.perf_counter()
                    fn(i)
                    times[name].append(time.perf_counter() - t0)
        out = {}
        for name, values in times.items():
            ms = np.asarray(values) * 1000.0
            out[name] = {
                "calls": int(ms.size),
                "rps": 1000.0 / float(ms.mean()),
                "p50_ms": float(np.percentile(ms, 50)),
                "p95_ms": float(np.percentile(ms, 95)),
                "p99_ms": float(np.percentile(ms, 99)),
            }
        return out
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)


# ---- the benchmark -----------------------------------------------------------------------------------------------
def start_target(
    procs: Processes, name: str, cmd: list[str], env: dict[str, str], port: int, path: str, bodies: Path, workdir: Path
) -> Server:
    """Start one server pinned to the server core and wait until it answers a real prediction."""
    log_path = workdir / f"{name.split()[0]}.log"
    server = Server(name, procs.start(pinned(cmd, SERVER_CPU), env, log_path), port, log_path, time.monotonic())
    ready = wait_until_answers(server, path, bodies.read_text().splitlines()[0].encode())
    print(f"  {name}: answering {ready:.1f} s after start", flush=True)
    return server


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine load-generator segments: totals, and percentiles over all latencies of all segments."""
    import numpy as np

    lat = np.concatenate([np.asarray(p.pop("latencies_ms"), dtype=float) for p in parts])
    seconds = sum(p["seconds"] for p in parts)
    requests = sum(p["requests"] for p in parts)
    statuses: dict[str, int] = {}
    for p in parts:
        for k, v in p["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds if seconds else 0.0,
        "rps_per_segment": [p["rps"] for p in parts],
        "errors": sum(p["errors"] for p in parts),
        "statuses": statuses,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "max_ms": float(lat.max()) if lat.size else None,
    }


def measure_all(
    servers: dict[str, tuple[Server, str, Path]], args: argparse.Namespace, workdir: Path
) -> dict[str, dict[str, Any]]:
    """Warm every server up, then measure them in interleaved rounds: in each of ``--rounds`` rounds every target
    gets a cell of ``--seconds/rounds`` at ``--concurrency`` connections and a cell of ``--serial-seconds/rounds`` at
    one connection, so a slow spell of other work on the machine lands on all targets alike. Each cell also stops
    after ``--max-requests/rounds`` answers."""
    loaded: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    serial: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    cpu: dict[str, float] = dict.fromkeys(servers, 0.0)
    for server, path, bodies in servers.values():
        load(server.port, path, bodies, args.warmup, args.concurrency, workdir).pop("latencies_ms")
    cap = max(1, args.max_requests // args.rounds)
    for r in range(args.rounds):
        for name, (server, path, bodies) in servers.items():
            cpu0 = session_cpu_seconds(server.proc.pid)
            part = load(server.port, path, bodies, args.seconds / args.rounds, args.concurrency, workdir, cap)
            cpu[name] += session_cpu_seconds(server.proc.pid) - cpu0
            loaded[name].append(part)
            one = load(server.port, path, bodies, args.serial_seconds / args.rounds, 1, workdir, cap)
            serial[name].append(one)
            print(
                f"  round {r + 1}/{args.rounds} {name}: {part['rps']:.0f} req/s at c={args.concurrency}, "
                f"c=1 p50 {one['p50_ms']:.2f} ms",
                flush=True,
            )
    out = {}
    for name, (server, _, _) in servers.items():
        merged = merge(loaded[name])
        merged["server_cpu_ms_per_request"] = 1000.0 * cpu[name] / max(merged["requests"], 1)
        merged["server_cpu_utilisation"] = cpu[name] / merged["seconds"]
        # capacity on one core of its own: robust to other work on a shared machine, unlike req/s
        merged["requests_per_cpu_second"] = merged["requests"] / cpu[name] if cpu[name] else None
        one = merge(serial[name])
        print(
            f"  {name}: {merged['rps']:.0f} req/s at c={args.concurrency}, p50 {merged['p50_ms']:.2f} ms; "
            f"c=1 p50 {one['p50_ms']:.2f} ms",
            flush=True,
        )
        out[name] = {"startup_to_first_answer_s": server.ready_after, "loaded": merged, "serial": one}
    return out


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    c = args.concurrency
    pinning = results["machine"]["pinning"]
    lines = [
        f"Single-record requests, {args.seconds:g} s per target at {c} concurrent connections and "
        f"{args.serial_seconds:g} s with 1 connection, after a {args.warmup:g} s warm-up, in {args.rounds} "
        f"interleaved rounds (each cell also capped at {args.max_requests // args.rounds:,} answers). {pinning}.",
        "",
        f"| target | req/s (c={c}) | p50 ms | p95 ms | p99 ms | errors | server CPU ms/req | req per CPU-second "
        "| req/s (c=1) | p50 ms (c=1) | p95 ms (c=1) | p99 ms (c=1) | start to first answer s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["http"].items():
        lo, se = r["loaded"], r["serial"]
        lines.append(
            f"| {name} | {fmt(lo['rps'], 0)} | {fmt(lo['p50_ms'])} | {fmt(lo['p95_ms'])} | {fmt(lo['p99_ms'])} "
            f"| {lo['errors'] + se['errors']} | {fmt(lo['server_cpu_ms_per_request'])} "
            f"| {fmt(lo['requests_per_cpu_second'], 0)} | {fmt(se['rps'], 0)} | {fmt(se['p50_ms'])} "
            f"| {fmt(se['p95_ms'])} | {fmt(se['p99_ms'])} | {fmt(r['startup_to_first_answer_s'], 1)} |"
        )
    for name, r in results["in_process"].items():
        lines.append(
            f"| in-process: {name} | {fmt(r['rps'], 0)} (1 thread) | {fmt(r['p50_ms'], 3)} | {fmt(r['p95_ms'], 3)} "
            f"| {fmt(r['p99_ms'], 3)} | 0 | {fmt(1000.0 / r['rps'])} | {fmt(r['rps'], 0)} | - | - | - | - | - |"
        )
    busy = {n: r["loaded"]["server_cpu_utilisation"] for n, r in results["http"].items()}
    if min(busy.values()) < 0.85:  # a saturated single worker should use its whole core
        shares = ", ".join(f"{n} {u:.0%}" for n, u in busy.items())
        lines += [
            "",
            f"Warning: the saturated servers got only part of their core ({shares}): other work on the machine "
            "competed for it, so req/s and latencies are understated; req per CPU-second is the robust figure.",
        ]
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|:---:|"]
    for t in results["targets"]:
        lines.append(f"| {t['name']} | {t['value']} | {t['target']} | {'yes' if t['met'] else 'no'} |")
    lines += ["", "| context | value |", "|---|---:|"]
    for name, value in results["context"].items():
        lines.append(f"| {name} | {value:.2f}x |")
    return "\n".join(lines)


def context(results: dict[str, Any]) -> dict[str, float]:
    """Ratios that bound what the targets can reach on this model and machine."""
    http, inproc = results["http"], results["in_process"]
    mlflow_rps = http["mlflow models serve"]["loaded"]["rps"]
    out = {
        "minimal app / mlflow throughput": http["minimal FastAPI app"]["loaded"]["rps"] / mlflow_rps,
        "ceiling for any server / mlflow (in-process predict calls/s / mlflow req/s)": (
            inproc["predict(1-row DataFrame)"]["rps"] / mlflow_rps
        ),
        "gateway / in-process gateway work (validate + predict + check, calls/s)": (
            http["mlops gateway"]["loaded"]["rps"]
            / inproc["validate_records + predict + check_output (gateway's work)"]["rps"]
        ),
    }
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    http, inproc = results["http"], results["in_process"]
    gw, mf, mini = http["mlops gateway"], http["mlflow models serve"], http["minimal FastAPI app"]
    bare = inproc["predict(1-row DataFrame)"]
    vs_mlflow = gw["loaded"]["rps"] / mf["loaded"]["rps"]
    vs_minimal = gw["loaded"]["rps"] / mini["loaded"]["rps"]
    cpu_vs_mlflow = gw["loaded"]["requests_per_cpu_second"] / mf["loaded"]["requests_per_cpu_second"]
    cpu_vs_minimal = gw["loaded"]["requests_per_cpu_second"] / mini["loaded"]["requests_per_cpu_second"]
    overhead_serial = gw["serial"]["p50_ms"] - bare["p50_ms"]
    overhead_loaded = gw["loaded"]["p50_ms"] - bare["p50_ms"]
    return [
        {
            "name": "gateway / mlflow throughput",
            "value": f"{vs_mlflow:.2f}x",
            "raw": vs_mlflow,
            "target": f">= {TARGET_VS_MLFLOW:g}x",
            "met": vs_mlflow >= TARGET_VS_MLFLOW,
        },
        {
            "name": "gateway / mlflow, requests per server CPU-second",
            "value": f"{cpu_vs_mlflow:.2f}x",
            "raw": cpu_vs_mlflow,
            "target": f">= {TARGET_VS_MLFLOW:g}x",
            "met": cpu_vs_mlflow >= TARGET_VS_MLFLOW,
        },
        {
            "name": "gateway / minimal throughput",
            "value": f"{vs_minimal:.2f}x",
            "raw": vs_minimal,
            "target": f">= {TARGET_VS_MINIMAL:g}x",
            "met": vs_minimal >= TARGET_VS_MINIMAL,
        },
        {
            "name": "gateway / minimal, requests per server CPU-second",
            "value": f"{cpu_vs_minimal:.2f}x",
            "raw": cpu_vs_minimal,
            "target": f">= {TARGET_VS_MINIMAL:g}x",
            "met": cpu_vs_minimal >= TARGET_VS_MINIMAL,
        },
        *canary_targets(http, gw),
        *mlserver_targets(http),
        {
            "name": "gateway p50 - in-process p50, 1 connection",
            "value": f"{overhead_serial:.2f} ms",
            "raw": overhead_serial,
            "target": f"<= {TARGET_OVERHEAD_MS:g} ms",
            "met": overhead_serial <= TARGET_OVERHEAD_MS,
        },
        {
            "name": f"gateway p50 - in-process p50, {results['concurrency']} connections (queueing included)",
            "value": f"{overhead_loaded:.2f} ms",
            "raw": overhead_loaded,
            "target": f"<= {TARGET_OVERHEAD_MS:g} ms",
            "met": overhead_loaded <= TARGET_OVERHEAD_MS,
        },
    ]


def mlserver_targets(http: dict[str, Any]) -> list[dict[str, Any]]:
    """Single-row throughput at the loaded concurrency against MLServer's, with no rollout and with the canary."""
    base = next((r for name, r in http.items() if name.startswith("MLServer")), None)
    if base is None:
        return []
    out = []
    for name, r in http.items():
        if not name.startswith("mlops gateway"):
            continue
        ratio = r["loaded"]["rps"] / base["loaded"]["rps"]
        out.append(
            {
                "name": f"{name} / MLServer throughput",
                "value": f"{ratio:.2f}x",
                "raw": ratio,
                "target": f">= {TARGET_VS_MLSERVER:g}x",
                "met": ratio >= TARGET_VS_MLSERVER,
            }
        )
    return out


def canary_targets(http: dict[str, Any], gw: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, r in http.items():
        if "canary live" not in name:
            continue
        share = r["loaded"]["rps"] / gw["loaded"]["rps"]
        out.append(
            {
                "name": f"{name} / no rollout, throughput",
                "value": f"{share:.2f}x",
                "raw": share,
                "target": f">= {TARGET_CANARY_SHARE:g}x",
                "met": share >= TARGET_CANARY_SHARE,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per target under load")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target (discarded)")
    parser.add_argument("--serial-seconds", type=float, default=4.0, help="seconds with one connection per target")
    parser.add_argument("--iterations", type=int, default=3000, help="in-process predict calls")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved measuring rounds per target")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and server logs")
    parser.add_argument(
        "--max-requests", type=int, default=200_000, help="at most this many answers per target and concurrency"
    )
    parser.add_argument(
        "--mlserver",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure MLServer 1.7 (creates benchmarks/.venvs/mlserver on first use)",
    )
    parser.add_argument(
        "--canary", type=float, default=10.0, help="also measure the gateway with a live canary at this percent (0: no)"
    )
    parser.add_argument(
        "--log-formats", action="store_true", help="compare the gateway with text and json logs (only the gateway)"
    )
    args = parser.parse_args(argv)
    args.seconds = min(max(args.seconds, 1.0), 60.0)  # bounded: the whole run stays within a few minutes
    args.concurrency = min(max(args.concurrency, 1), 256)
    args.rounds = min(max(args.rounds, 1), 10)
    args.max_requests = max(args.max_requests, args.rounds)

    if args.log_formats:
        return log_formats_main(args)
    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    procs = Processes()
    started = time.monotonic()
    load_at_start = os.getloadavg()
    try:
        with interruptible():
            print(f"Setting up a project home with two registered versions in {workdir}", flush=True)
            setup = make_home(workdir)
            home: Path = setup["home"]
            rows = feature_rows()
            records = write_bodies(workdir / "records.jsonl", rows, "records")
            dataframe_records = write_bodies(workdir / "dataframe_records.jsonl", rows, "dataframe_records")
            env = server_env(home)

            print("In-process predict latency", flush=True)
            inproc = in_process(rows, args.iterations, args.rounds)

            app_dir = workdir / "minimal"
            app_dir.mkdir()
            (app_dir / "minimal_app.py").write_text(textwrap.dedent(MINIMAL_APP))
            minimal_env = {**env, "BENCH_MODEL_URI": f"models:/{MODEL_NAME}@champion"}
            ports = {k: free_port() for k in ("gateway", "mlflow", "minimal")}
            host, one = ["--host", "127.0.0.1"], ["--workers", "1"]
            gateway_cmd = [str(BIN / "mlops"), "serve", *host, "--port", str(ports["gateway"]), *one]
            mlflow_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion"]
            mlflow_cmd += ["--env-manager", "local", "-p", str(ports["mlflow"]), *host, *one]
            minimal_cmd = [sys.executable, "-m", "uvicorn", "minimal_app:app", "--app-dir", str(app_dir)]
            minimal_cmd += [*host, "--port", str(ports["minimal"]), *one, "--log-level", "warning", "--no-access-log"]
            mlserver_spec, mlserver_facts = mlserver_target(workdir, rows) if args.mlserver else ([], {})
            targets_spec = [
                ("mlops gateway", gateway_cmd, env, ports["gateway"], "/v1/predict", records),
                *canary_target(setup, workdir, args.canary, records),
                *mlserver_spec,
                ("mlflow models serve", mlflow_cmd, env, ports["mlflow"], "/invocations", dataframe_records),
                ("minimal FastAPI app", minimal_cmd, minimal_env, ports["minimal"], "/v1/predict", records),
            ]
            servers: dict[str, tuple[Server, str, Path]] = {}
            print("Starting the servers one after the other (each pinned, each answering before the next starts)")
            for name, cmd, target_env, port, path, bodies in targets_spec:
                try:
                    server = start_target(procs, name, cmd, target_env, port, path, bodies, workdir)
                except RuntimeError as err:
                    if not any(spec[0] == name for spec in mlserver_spec):
                        raise
                    log_tail = (workdir / f"{name.split()[0]}.log").read_text()[-1500:]
                    print(f"  {name} did not start: {err}\n{log_tail}", flush=True)
                    mlserver_facts["unavailable"] = f"MLServer did not start: {err}; log tail: {log_tail}"
                    continue
                servers[name] = (server, path, bodies)
            print("Measuring", flush=True)
            http = measure_all(servers, args, workdir)
            for server, _, _ in servers.values():
                procs.stop(server.proc)

            results: dict[str, Any] = {
                "benchmark": "gateway_throughput",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(
                    ["python benchmarks/gateway_throughput.py", *(sys.argv[1:] if argv is None else argv)]
                ),
                "loadavg_at_start": load_at_start,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "warmup_seconds": args.warmup,
                "serial_seconds": args.serial_seconds,
                "concurrency": args.concurrency,
                "machine": machine_facts(),
                "model": f"models:/{MODEL_NAME}@champion (v{setup['versions']['champion']})",
                "http": http,
                "in_process": inproc,
                "mlserver": mlserver_facts,
                "max_requests": args.max_requests,
            }
            results["targets"] = targets(results)
            results["context"] = context(results)
            results["wall_seconds"] = time.monotonic() - started
            table = report(results, args)
            results["table_markdown"] = table
            path = write_json("gateway_throughput.json", results)
            print()
            print(table)
            print(f"\nWrote {path.relative_to(REPO)} ({results['wall_seconds']:.0f} s)")
            return 0
    except KeyboardInterrupt:
        print("interrupted: stopping servers", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


LOG_VARIANTS = {  # target name -> (log file stem, environment of the gateway)
    "text logs (default; no access log)": ("text", {"MLOPS_LOG_FORMAT": "text"}),
    "json logs + access log (image default)": ("json-access", {"MLOPS_LOG_FORMAT": "json"}),
    "json logs, access log off": ("json-quiet", {"MLOPS_LOG_FORMAT": "json", "MLOPS_ACCESS_LOG": "false"}),
}
TARGET_LOG_COST = 0.10  # issue 11: log volume under load costs at most 10% of throughput


def log_formats_main(args: argparse.Namespace) -> int:
    """The gateway with each of LOG_VARIANTS, measured in interleaved rounds like the main benchmark."""
    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-logs-"))
    procs = Processes()
    started = time.monotonic()
    load_at_start = os.getloadavg()
    try:
        with interruptible():
            print(f"Setting up a project home with two registered versions in {workdir}", flush=True)
            setup = make_home(workdir)
            records = write_bodies(workdir / "records.jsonl", feature_rows(), "records")
            base_env = server_env(setup["home"])
            for var in ("MLOPS_LOG_FORMAT", "MLOPS_ACCESS_LOG", "MLOPS_LOG_LEVEL"):
                base_env.pop(var, None)
            print("In-process CPU time of one access line", flush=True)
            per_line = access_line_cpu_us(workdir)
            servers: dict[str, tuple[Server, str, Path]] = {}
            first_body = records.read_text().splitlines()[0].encode()
            for name, (stem, extra) in LOG_VARIANTS.items():
                port = free_port()
                cmd = [str(BIN / "mlops"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
                log_path = workdir / f"gateway-{stem}.log"  # what a container runtime would collect
                proc = procs.start(pinned(cmd, SERVER_CPU), {**base_env, **extra}, log_path)
                server = Server(name, proc, port, log_path, time.monotonic())
                print(f"  {name}: answering {wait_until_answers(server, '/v1/predict', first_body):.1f} s after start")
                servers[name] = (server, "/v1/predict", records)
            sizes_before = {name: server.log_path.stat().st_size for name, (server, _, _) in servers.items()}
            print("Measuring", flush=True)
            http = measure_all(servers, args, workdir)
            for name, (server, _, _) in servers.items():
                procs.stop(server.proc)
                answered = http[name]["loaded"]["requests"] + http[name]["serial"]["requests"]
                written = server.log_path.stat().st_size - sizes_before[name]
                http[name]["log_bytes_per_request"] = written / max(answered, 1)
            text, json_on = (http[n]["loaded"] for n in list(LOG_VARIANTS)[:2])
            results: dict[str, Any] = {
                "benchmark": "gateway_logs",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": "python benchmarks/gateway_throughput.py " + " ".join(sys.argv[1:]),
                "loadavg_at_start": load_at_start,
                "seconds": args.seconds,
                "concurrency": args.concurrency,
                "machine": machine_facts(),
                "http": http,
                "access_line_cpu_us": per_line,
                "cost_rps": 1.0 - json_on["rps"] / text["rps"],
                "cost_requests_per_cpu_second": 1.0
                - json_on["requests_per_cpu_second"] / text["requests_per_cpu_second"],
                "wall_seconds": time.monotonic() - started,
            }
            table = log_report(results, args)
            results["table_markdown"] = table
            path = write_json("gateway_logs.json", results)
            print()
            print(table)
            print(f"\nWrote {path.relative_to(REPO)} ({results['wall_seconds']:.0f} s)")
            return 0
    except KeyboardInterrupt:
        print("interrupted: stopping servers", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def access_line_cpu_us(workdir: Path, lines: int = 20_000) -> dict[str, float]:
    """CPU microseconds per access line (``time.process_time``, robust to other work on the machine): the gateway's
    own call (core/logs.py ``log_access``) through the configured handler, written to a file, per format."""
    from core import logs
    from core.settings import Settings

    out = {}
    stderr = sys.stderr
    for log_format in ("json", "text"):
        logs.configure(Settings(log_format=log_format, access_log=True))
        token = logs.bind(request_id="abc-123", prediction_id="83bf55ca21be840f12b363c628a70471", records=1)
        logs.annotate(variant="champion", model_version="1", rollout_id=None)
        with (workdir / f"access-{log_format}.log").open("w") as sink:
            sys.stderr = sink
            try:
                started = time.process_time()
                for _ in range(lines):
                    logs.log_access("POST", "/v1/predict", 200, time.perf_counter(), "127.0.0.1")
                out[log_format] = (time.process_time() - started) / lines * 1e6
            finally:
                sys.stderr = stderr
                logs.unbind(token)
    return out


def log_report(results: dict[str, Any], args: argparse.Namespace) -> str:
    c = args.concurrency
    text_cpu_ms = results["http"][next(iter(LOG_VARIANTS))]["loaded"]["server_cpu_ms_per_request"]
    lines = [
        f"Single-record requests, {args.seconds:g} s per variant at {c} connections in {args.rounds} interleaved "
        f"rounds, then {args.serial_seconds:g} s at 1 connection. {results['machine']['pinning']}.",
        "",
        f"| gateway | req/s (c={c}) | p50 ms | p99 ms | server CPU ms/req | req per CPU-second | CPU share "
        "| p50 ms (c=1) | log bytes/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["http"].items():
        lo, se = r["loaded"], r["serial"]
        lines.append(
            f"| {name} | {fmt(lo['rps'], 0)} | {fmt(lo['p50_ms'])} | {fmt(lo['p99_ms'])} "
            f"| {fmt(lo['server_cpu_ms_per_request'], 3)} | {fmt(lo['requests_per_cpu_second'], 0)} "
            f"| {lo['server_cpu_utilisation']:.0%} | {fmt(se['p50_ms'])} | {fmt(r['log_bytes_per_request'], 0)} |"
        )
    lines += [
        "",
        f"Cost of json logs + access log against text logs: {results['cost_rps']:.1%} of req/s, "
        f"{results['cost_requests_per_cpu_second']:.1%} of requests per server CPU-second "
        f"(target: at most {TARGET_LOG_COST:.0%}).",
        "",
        "In-process CPU per access line (written to a file): "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in results["access_line_cpu_us"].items())
        + f"; against the text gateway's {text_cpu_ms:.3f} ms of server CPU per request.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2])
    else:
        sys.exit(main())
