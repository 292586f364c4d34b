"""Benchmark: how long an alias move takes to reach live traffic, and whether any request fails on the way.

The gateway serves ``breast-cancer-classifier`` (champion v1, challenger v2, no rollout live) as one uvicorn worker
pinned to core 0, first with the default poll interval (``mlops serve``, 0.5 s), then with ``poll_interval=0.2``
(the same app built by hand, since the CLI has no flag for it). A load generator pinned to core 1 sends continuous
single-record traffic on ``--concurrency`` keep-alive connections and records, for every answer, when it was sent,
when it arrived, its status and the ``model_version`` that answered. Meanwhile this process calls
``ModelRegistry.promote`` ``--promotions`` times, alternating the champion between the two versions, each at a random
phase of the gateway's poll loop (seeded), and measures from the instant ``promote()`` is called (the alias moves
inside that call, which takes about 0.1 s; measuring from the call start is the conservative choice):

- first new: the first answer from the new version;
- all new: the last answer from the old version (after it, 100% of answers come from the new one);
- failed: non-200 answers (or connection errors) from the call until the next promotion.

For contrast, ``mlflow models serve`` pins one model version at start: moving an alias means restarting it, so the
benchmark also measures its time from process start until it answers its first request (``--mlflow-starts`` cold
starts), and the gateway's own cold start.

Usage (from the repository root)::

    .venv/bin/python benchmarks/promotion_latency.py [--promotions 5] [--concurrency 4]

Prints a markdown table and writes the figures to ``benchmarks/results/promotion_latency.json``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    BIN,
    CLIENT_CPU,
    MODEL_NAME,
    SERVER_CPU,
    BenchmarkRun,
    Processes,
    feature_rows,
    finish_load,
    fmt,
    free_port,
    gateway_command,
    has_taskset,
    make_home,
    run_benchmark,
    run_load,
    server_env,
    start_server,
    write_bodies,
)

from deployments.gateway import Gateway

TARGET_SWITCH_S = 1.0
# what `mlops serve` uses: read from the gateway itself so the benchmark follows the code
DEFAULT_POLL_S: float = inspect.signature(Gateway.__init__).parameters["poll_interval"].default
TARGET_FAILED = 0

CUSTOM_POLL_GATEWAY = """
import sys
import time

import uvicorn

from core.settings import get_settings
from deployments.gateway import Gateway
from deployments.http import create_app
from services.context import open_context

# deployments.serve.app_factory with one change: the poll interval (mlops serve has no flag for it)
settings = get_settings()
settings.apply_to_environment()
gateway = Gateway(open_context(settings), poll_interval=float(sys.argv[1]))
uvicorn.run(create_app(gateway), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def polling_gateway(poll_interval: float, port: int) -> list[str]:
    if poll_interval == DEFAULT_POLL_S:  # the default: exactly what an operator runs
        return gateway_command(port)
    return [sys.executable, "-c", CUSTOM_POLL_GATEWAY, str(poll_interval), str(port)]


def analyse(trace: list[list[Any]], moves: list[dict[str, Any]], end: float) -> list[dict[str, Any]]:
    """Per promotion: first answer from the new version, last from the old one, failures until the next move."""
    out = []
    for k, move in enumerate(moves):
        t0 = move["called_at"]
        t_end = moves[k + 1]["called_at"] if k + 1 < len(moves) else end
        window = [r for r in trace if t0 <= r[1] < t_end]  # answers that arrived in this promotion's window
        new = [r for r in window if r[2] == 200 and r[3] == move["new"]]
        old = [r for r in window if r[2] == 200 and r[3] == move["old"]]
        failed = [r for r in window if r[2] != 200]
        first_new = min(r[1] for r in new) - t0 if new else None
        last_old = max(r[1] for r in old) - t0 if old else None
        sent_after_old = [r for r in old if r[0] >= move["returned_at"]]
        latencies = sorted((r[1] - r[0]) * 1000.0 for r in window)
        out.append(
            {
                "from_version": move["old"],
                "to_version": move["new"],
                "promote_call_s": move["returned_at"] - t0,
                "first_new_s": first_new,
                # from here on every answer comes from the new version (and at least one has)
                "all_new_s": None if first_new is None else max(first_new, last_old or 0.0),
                "last_old_s": last_old,
                "old_answers_after_call": len(old),
                "old_answers_sent_after_promote_returned": len(sent_after_old),
                "answers_in_window": len(window),
                "failed": len(failed),
                "window_s": t_end - t0,
                "window_max_latency_ms": latencies[-1] if latencies else None,
                "window_p99_latency_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
                if latencies
                else None,
                "switched_within_window": bool(new) and (not old or max(r[1] for r in old) < max(r[1] for r in new)),
            }
        )
    return out


def summarise(per_move: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key: str) -> dict[str, float | None]:
        values = [m[key] for m in per_move if m[key] is not None]
        return {
            "median": statistics.median(values) if values else None,
            "max": max(values) if values else None,
        }

    return {
        "promotions": len(per_move),
        "first_new_s": stat("first_new_s"),
        "all_new_s": stat("all_new_s"),
        "promote_call_s": stat("promote_call_s"),
        "window_max_latency_ms": stat("window_max_latency_ms"),
        "failed_total": sum(m["failed"] for m in per_move),
        "all_switched": all(m["switched_within_window"] for m in per_move),
    }


def measure_poll(
    procs: Processes,
    setup: dict[str, Any],
    poll_interval: float,
    records: Path,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    home: Path = setup["home"]
    registry = setup["registry"]
    versions = setup["versions"]
    port = free_port()
    log_path = workdir / f"gateway-poll-{poll_interval:g}.log"
    first_body = records.read_text().splitlines()[0].encode()
    cmd = polling_gateway(poll_interval, port)
    server = start_server(
        procs,
        f"gateway poll {poll_interval:g}s",
        cmd,
        server_env(home),
        port,
        log_path,
        "/v1/predict",
        first_body,
        SERVER_CPU,
    )
    try:
        ready = server.ready_after
        spacing = max(args.spacing, 2.0 * poll_interval + 2.0)
        lead, tail = 2.0, spacing + poll_interval
        seconds = lead + spacing * args.promotions + tail
        start_at = time.monotonic() + 1.5  # the load generator's start, on the shared monotonic clock
        loadgen = run_load(port, "/v1/predict", records, seconds, args.concurrency, workdir, True, start_at)
        moves: list[dict[str, Any]] = []
        current = versions["champion"]
        other = {versions["champion"]: versions["challenger"], versions["challenger"]: versions["champion"]}
        rng = random.Random(args.seed)
        for k in range(args.promotions):
            # a random phase against the gateway's poll loop, so the promotions sample it evenly
            jitter = rng.uniform(0.0, poll_interval)
            time.sleep(max(0.0, start_at + lead + k * spacing + jitter - time.monotonic()))
            target = other[current]
            called = time.monotonic()
            registry.promote(target, actor="benchmark", reason=f"promotion latency benchmark #{k + 1}")
            returned = time.monotonic()
            moves.append({"old": current, "new": target, "called_at": called, "returned_at": returned})
            current = target
        result = finish_load(loadgen, timeout=seconds + 60)
        result.pop("latencies_ms")
        trace = result.pop("trace")
        end = start_at + seconds
        per_move = analyse(trace, moves, end)
        baseline = sorted((r[1] - r[0]) * 1000.0 for r in trace if r[1] < moves[0]["called_at"])
        summary = summarise(per_move)
        print(
            f"  poll {poll_interval:g} s: all-new median {fmt(summary['all_new_s']['median'])} s, "
            f"max {fmt(summary['all_new_s']['max'])} s, failed {summary['failed_total']}",
            flush=True,
        )
        # leave the registry as it was found: champion back on the original version
        if current != versions["champion"]:
            registry.promote(versions["champion"], actor="benchmark", reason="restore after benchmark")
        return {
            "poll_interval_s": poll_interval,
            "command": " ".join(polling_gateway(poll_interval, port)[:3]) + " ...",
            "startup_to_first_answer_s": ready,
            "spacing_s": spacing,
            "traffic": result,
            "baseline_p50_ms": baseline[len(baseline) // 2] if baseline else None,
            "baseline_p99_ms": baseline[min(len(baseline) - 1, int(0.99 * len(baseline)))] if baseline else None,
            "per_promotion": per_move,
            "summary": summary,
        }
    finally:
        procs.stop(server.proc)


def mlflow_cold_starts(procs: Processes, home: Path, bodies: Path, n: int, workdir: Path) -> list[float]:
    """Process start to first 200 from ``mlflow models serve`` (what an alias move costs when it must restart)."""
    body = bodies.read_text().splitlines()[0].encode()
    times = []
    for k in range(n):
        port = free_port()
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion", "--env-manager"]
        cmd += ["local", "-p", str(port), "--host", "127.0.0.1", "--workers", "1"]
        log_path = workdir / f"mlflow-{k}.log"
        server = start_server(
            procs, "mlflow models serve", cmd, server_env(home), port, log_path, "/invocations", body, SERVER_CPU
        )
        procs.stop(server.proc)
        times.append(server.ready_after)
        print(f"  mlflow models serve cold start #{k + 1}: {times[-1]:.1f} s", flush=True)
    return times


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{results['promotions']} promotions per setting (champion alternating v1 <-> v2), "
        f"{results['concurrency']} concurrent clients of single-record traffic. {results['machine']['pinning']}. "
        "Times from the `promote()` call.",
        "",
        "| gateway poll interval | first answer from new, median / max s | 100% new after, median / max s "
        "| failed requests | promote() call, median s | worst latency in window ms (baseline p99) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["gateway"]:
        s = r["summary"]
        lines.append(
            f"| {r['poll_interval_s']:g} s | {fmt(s['first_new_s']['median'])} / {fmt(s['first_new_s']['max'])} "
            f"| {fmt(s['all_new_s']['median'])} / {fmt(s['all_new_s']['max'])} | {s['failed_total']} "
            f"| {fmt(s['promote_call_s']['median'], 3)} | {fmt(s['window_max_latency_ms']['max'], 0)} "
            f"({fmt(r['baseline_p99_ms'], 0)}) |"
        )
    cold = results["mlflow_cold_start_s"]
    gw_cold = [r["startup_to_first_answer_s"] for r in results["gateway"]]
    lines += [
        "",
        "| restart-based alternative | start to first answer, median / max s | runs |",
        "|---|---:|---:|",
        f"| `mlflow models serve` (must restart to follow an alias) | {fmt(statistics.median(cold), 1)} / "
        f"{fmt(max(cold), 1)} | {len(cold)} |",
        f"| gateway cold start (for comparison; not needed for an alias move) | {fmt(statistics.median(gw_cold), 1)} "
        f"/ {fmt(max(gw_cold), 1)} | {len(gw_cold)} |",
        "",
        "| target | value | met |",
        "|---|---:|:---:|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['name']} | {t['value']} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--promotions", type=int, default=5, help="alias moves per poll interval")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--spacing", type=float, default=3.0, help="seconds between promotions (at least 2*poll+2)")
    parser.add_argument(
        "--polls", default=f"{DEFAULT_POLL_S},0.2", help="gateway poll intervals to measure, comma-separated"
    )
    parser.add_argument("--mlflow-starts", type=int, default=3, help="cold starts of mlflow models serve")
    parser.add_argument("--seed", type=int, default=0, help="seed of the promotions' random phase")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and server logs")
    args = parser.parse_args(argv)
    args.promotions = min(max(args.promotions, 1), 20)
    args.mlflow_starts = min(max(args.mlflow_starts, 0), 10)

    return run_benchmark("promotion_latency.py", argv, lambda run: measure(run, args), keep=args.keep)


def measure(run: BenchmarkRun, args: argparse.Namespace) -> int:
    """Each poll interval in turn, then the mlflow cold starts; this process off the server's core meanwhile."""
    workdir, procs = run.workdir, run.procs
    previous_affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        print(f"Setting up a project home with two registered versions in {workdir}", flush=True)
        setup = make_home(workdir)
        rows = feature_rows()
        records = write_bodies(workdir / "records.jsonl", rows, "records")
        dataframe_records = write_bodies(workdir / "dataframe_records.jsonl", rows, "dataframe_records")
        if previous_affinity is not None and has_taskset() and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {int(CLIENT_CPU)})  # promote() runs off the server's core too
        gateway = []
        for poll in (float(p) for p in args.polls.split(",") if p.strip()):
            print(f"Gateway with poll interval {poll:g} s", flush=True)
            gateway.append(measure_poll(procs, setup, poll, records, args, workdir))
        print("mlflow models serve cold starts", flush=True)
        cold = mlflow_cold_starts(procs, setup["home"], dataframe_records, args.mlflow_starts, workdir)
    finally:
        if previous_affinity is not None:
            os.sched_setaffinity(0, previous_affinity)

    fields = {
        "promotions": args.promotions,
        "concurrency": args.concurrency,
        "model": MODEL_NAME,
        "versions": setup["versions"],
        "gateway": gateway,
        "mlflow_cold_start_s": cold,
    }
    results = run.results("promotion_latency", fields)
    checks = []
    for r in gateway:
        s = r["summary"]
        worst = s["all_new_s"]["max"]
        checks.append(
            {
                "name": f"poll {r['poll_interval_s']:g} s: 100% new version within {TARGET_SWITCH_S:g} s (max)",
                "value": f"{fmt(worst)} s",
                "met": worst is not None and worst <= TARGET_SWITCH_S and s["all_switched"],
            }
        )
        checks.append(
            {
                "name": f"poll {r['poll_interval_s']:g} s: failed requests during promotions",
                "value": str(s["failed_total"]),
                "met": s["failed_total"] <= TARGET_FAILED,
            }
        )
    results["targets"] = checks
    table = report(results) if cold else "(no mlflow cold starts measured)"
    results["table_markdown"] = table
    return run.finish(results, "promotion_latency.json", table)


if __name__ == "__main__":
    sys.exit(main())
