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
1. ``mlops serve --workers 1`` (no rollout live: the champion answers inline); the same with
   ``MLOPS_GATEWAY_COMPILE=false`` ("scikit-learn path": what a pipeline the gateway cannot compile to numpy gets);
   and, with ``--canary 10`` (the default), each of the two over a copy of the home with a live 10% canary of
   challenger v2 (each variant batched
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
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import mlserver_baseline  # benchmarks/ is on the path when run as a script
from common import (
    BIN,
    MODEL_NAME,
    SERVER_CPU,
    BenchmarkRun,
    Processes,
    Server,
    feature_rows,
    fmt,
    free_port,
    gateway_command,
    has_taskset,
    load,
    make_home,
    run_benchmark,
    server_env,
    start_server,
    write_bodies,
)

TARGET_VS_MLFLOW = 10.0
TARGET_VS_MINIMAL = 0.8
TARGET_OVERHEAD_MS = 1.0
TARGET_VS_MLSERVER = 5.0  # issue 12: single-row throughput at 8 clients, with and without a live canary
TARGET_CANARY_SHARE = 0.8  # throughput with a live canary, against no rollout

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


SKLEARN_PATH = "mlops gateway, scikit-learn path"  # MLOPS_GATEWAY_COMPILE=false: what a model it cannot compile gets


def canary_target(
    setup: dict[str, Any], workdir: Path, percent: float, records: Path, base: str = "mlops gateway", **extra: str
) -> list[tuple[Any, ...]]:
    """The gateway over a copy of the home in which a ``percent`` canary of the challenger is live (the copy keeps
    the rollout and its prediction log away from the no-rollout gateway; MLflow's artifacts stay where they are);
    ``extra`` is added to its environment."""
    if percent <= 0:
        return []
    from core.store.rollouts import RolloutStore

    home: Path = setup["home"]
    copy = workdir / f"home-canary-{len(extra)}"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm", "prefect"))
    versions = setup["versions"]
    policy = setup["config"].rollout.model_dump(mode="json")
    RolloutStore(f"sqlite:///{copy / 'mlops.db'}").start(
        setup["config"].model_name, "canary", versions["champion"], versions["challenger"], percent, policy, "bench"
    )
    port = free_port()
    return [
        (
            f"{base}, {percent:g}% canary live",
            gateway_command(port),
            {**server_env(copy), **extra},
            port,
            "/v1/predict",
            records,
        )
    ]


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


# ---- in-process measurements -------------------------------------------------------------------------------------
def in_process(rows: list[dict[str, float]], iterations: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Per-call latency without HTTP, on the servers' core: bare predict, the minimal app's work, the gateway's."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd

    from deployments.batching import timed_predict
    from deployments.inputs import check_output, validate_records
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

    def gateway_path(i: int) -> None:  # the gateway's own predict: its fast path when the model has one
        records = [rows[i % len(rows)]]
        check_output(timed_predict(handle, validate_records(records, handle))[0], 1)

    previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if previous is not None and has_taskset() and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    try:
        variants = {
            "predict(1-row DataFrame)": bare,
            "from_records + predict (minimal app's work)": minimal,
            "validate_records + gateway predict + check_output (gateway's work)": gateway_path,
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
    server = start_server(
        procs, name, cmd, env, port, log_path, path, bodies.read_text().splitlines()[0].encode(), SERVER_CPU
    )
    print(f"  {name}: answering {server.ready_after:.1f} s after start", flush=True)
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
        "requests_per_cpu_second_per_segment": [p.get("requests_per_cpu_second") for p in parts],
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
    names = list(servers)
    for r in range(args.rounds):
        # each round starts with the next target, so no target always follows the same one
        for name in names[r % len(names) :] + names[: r % len(names)]:
            server, path, bodies = servers[name]
            cpu0 = session_cpu_seconds(server.proc.pid)
            part = load(server.port, path, bodies, args.seconds / args.rounds, args.concurrency, workdir, cap)
            used = session_cpu_seconds(server.proc.pid) - cpu0
            cpu[name] += used
            part["requests_per_cpu_second"] = part["requests"] / used if used else None
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
            / inproc["validate_records + gateway predict + check_output (gateway's work)"]["rps"]
        ),
    }
    mlserver = next((r for name, r in http.items() if name.startswith("MLServer")), None)
    sklearn = http.get(SKLEARN_PATH)
    if sklearn is not None:  # what a model the gateway cannot compile gets
        for name, r in http.items():
            if name.startswith(SKLEARN_PATH) and name != SKLEARN_PATH:
                out[f"{name} / {SKLEARN_PATH}, throughput"] = r["loaded"]["rps"] / sklearn["loaded"]["rps"]
            if name.startswith(SKLEARN_PATH) and mlserver is not None:
                out[f"{name} / MLServer throughput"] = r["loaded"]["rps"] / mlserver["loaded"]["rps"]
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
        if not name.startswith("mlops gateway") or name.startswith(SKLEARN_PATH):
            continue  # the scikit-learn path's ratios are in the context table
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
        if "canary live" not in name or name.startswith(SKLEARN_PATH):
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
    if not 1 <= args.rounds <= 20:
        parser.error(f"--rounds {args.rounds}: use 1 to 20 (each round's cells get --seconds/--rounds)")
    args.max_requests = max(args.max_requests, args.rounds)

    if args.log_formats:
        return run_benchmark(
            "gateway_throughput.py",
            argv,
            lambda run: log_formats(run, args),
            prefix="mlops-bench-logs-",
            keep=args.keep,
        )
    return run_benchmark("gateway_throughput.py", argv, lambda run: compare_servers(run, args), keep=args.keep)


def compare_servers(run: BenchmarkRun, args: argparse.Namespace) -> int:
    """The gateway, its canary, MLServer, ``mlflow models serve`` and the minimal app, then in-process predict."""
    workdir, procs = run.workdir, run.procs
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
    ports = {k: free_port() for k in ("gateway", "sklearn", "mlflow", "minimal")}
    sklearn_env = {**env, "MLOPS_GATEWAY_COMPILE": "false"}
    host, one = ["--host", "127.0.0.1"], ["--workers", "1"]
    mlflow_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion"]
    mlflow_cmd += ["--env-manager", "local", "-p", str(ports["mlflow"]), *host, *one]
    minimal_cmd = [sys.executable, "-m", "uvicorn", "minimal_app:app", "--app-dir", str(app_dir)]
    minimal_cmd += [*host, "--port", str(ports["minimal"]), *one, "--log-level", "warning", "--no-access-log"]
    mlserver_spec, mlserver_facts = mlserver_target(workdir, rows) if args.mlserver else ([], {})
    targets_spec = [
        ("mlops gateway", gateway_command(ports["gateway"]), env, ports["gateway"], "/v1/predict", records),
        *canary_target(setup, workdir, args.canary, records),
        (SKLEARN_PATH, gateway_command(ports["sklearn"]), sklearn_env, ports["sklearn"], "/v1/predict", records),
        *canary_target(setup, workdir, args.canary, records, SKLEARN_PATH, MLOPS_GATEWAY_COMPILE="false"),
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

    fields = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "warmup_seconds": args.warmup,
        "serial_seconds": args.serial_seconds,
        "concurrency": args.concurrency,
        "model": f"models:/{MODEL_NAME}@champion (v{setup['versions']['champion']})",
        "http": http,
        "in_process": inproc,
        "mlserver": mlserver_facts,
        "max_requests": args.max_requests,
    }
    results = run.results("gateway_throughput", fields)
    results["targets"] = targets(results)
    results["context"] = context(results)
    table = report(results, args)
    results["table_markdown"] = table
    return run.finish(results, "gateway_throughput.json", table)


LOG_VARIANTS = {  # target name -> (log file stem, environment of the gateway)
    "text logs (default; no access log)": ("text", {"MLOPS_LOG_FORMAT": "text"}),
    "json logs + access log (image default)": ("json-access", {"MLOPS_LOG_FORMAT": "json"}),
    "json logs, access log off": ("json-quiet", {"MLOPS_LOG_FORMAT": "json", "MLOPS_ACCESS_LOG": "false"}),
}
TARGET_LOG_COST = 0.10  # issue 11: log volume under load costs at most 10% of throughput


def log_formats(run: BenchmarkRun, args: argparse.Namespace) -> int:
    """The gateway with each of LOG_VARIANTS, measured in interleaved rounds like the main benchmark."""
    workdir, procs = run.workdir, run.procs
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
        log_path = workdir / f"gateway-{stem}.log"  # what a container runtime would collect
        env = {**base_env, **extra}
        server = start_server(
            procs, name, gateway_command(port), env, port, log_path, "/v1/predict", first_body, SERVER_CPU
        )
        print(f"  {name}: answering {server.ready_after:.1f} s after start")
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
    # the cost in each round (its cells ran seconds apart), beside the totals: the spread says how far the host's
    # speed moved during the run (from -70% to +50% in 1-second cells, -22% to +36% in 3-second cells on 2026-12-02)
    paired = {
        key: sorted(1.0 - j / t for t, j in zip(text[key], json_on[key], strict=True) if t and j)
        for key in ("rps_per_segment", "requests_per_cpu_second_per_segment")
    }
    fields = {
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "http": http,
        "access_line_cpu_us": per_line,
        "cost_rps": 1.0 - json_on["rps"] / text["rps"],
        "cost_requests_per_cpu_second": 1.0 - json_on["requests_per_cpu_second"] / text["requests_per_cpu_second"],
        "cost_rps_per_round": paired["rps_per_segment"],
        "cost_requests_per_cpu_second_per_round": paired["requests_per_cpu_second_per_segment"],
    }
    results = run.results("gateway_logs", fields)
    table = log_report(results, args)
    results["table_markdown"] = table
    return run.finish(results, "gateway_logs.json", table)


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
        "The same cost round by round (each round's cells ran seconds apart; median and range): "
        f"{_spread(results['cost_rps_per_round'])} of req/s, "
        f"{_spread(results['cost_requests_per_cpu_second_per_round'])} of requests per server CPU-second.",
        "",
        "In-process CPU per access line (written to a file): "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in results["access_line_cpu_us"].items())
        + f"; against the text gateway's {text_cpu_ms:.3f} ms of server CPU per request.",
    ]
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return f"{median:.1%} ({values[0]:.1%} to {values[-1]:.1%})"


if __name__ == "__main__":
    sys.exit(main())
