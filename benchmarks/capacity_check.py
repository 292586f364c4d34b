"""Benchmark: does ``mlops capacity plan`` predict what the gateway does under Poisson load?

For 1 and 2 gateway workers (``mlops serve --workers N`` over a temporary home with a real champion):

1. measure what the planner uses (as ``mlops capacity plan`` does): single-record requests sent one at a time (no
   queueing), and, on the 1-worker gateway (one replica), bursts of 1, 2, 4, 8 and 16 concurrent requests that its
   batcher answers with one predict (``deployments.capacity.measure_batch_times``), fitted as ``S(b) = fixed +
   per_request * b``; the 2-worker check uses that one-replica cost, as a plan for N replicas does;
2. predict, with ``deployments.capacity.batched_queue_at`` (the batch-size fixed point per replica), the p95
   response time at several rates below saturation, and the saturation rate ``N * 1000 / per_request ms``; the
   one-at-a-time M/G/c prediction (``queue_at``) is kept beside it for comparison;
3. send open-loop Poisson traffic at those rates from a separate load-generator process (each request's response
   time runs from its *scheduled* arrival, so a slow server is not hidden by a slower client), and measure p95;
4. ramp the rate past the predicted saturation and take the highest throughput the gateway sustained (marked as
   not reached when the gateway still kept up at the top of the ramp): the requests of a step over its time plus
   the time its prediction log then took to reach the store (a drain that fell behind is work deferred, not saved).

The load generator shares the machine with the server (2 cores here): with 2 workers the three processes share two
cores, which the figures show. Usage (repository root)::

    .venv/bin/python benchmarks/capacity_check.py [--seconds 8] [--workers 1 2]

Writes ``benchmarks/results/capacity_check.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    REPO,
    Processes,
    _read_response,
    feature_rows,
    free_port,
    gateway_command,
    interruptible,
    machine_facts,
    make_home,
    pinned,
    post_requests,
    server_env,
    start_server,
    write_bodies,
    write_json,
)

FRACTIONS = (0.3, 0.5, 0.7, 0.85)  # of the predicted saturation rate
RAMP = (0.9, 1.0, 1.15, 1.3, 1.5)
# Connections the generator keeps open: more than the answers in flight near saturation (rate times response time,
# about 60 at 7,500/s and 8 ms), or arrivals wait for a free one and the generator is no longer open-loop.
CONNECTIONS = 256
SPIN = 0.0015  # seconds before an arrival's time that its connection stops sleeping and yields until then


async def _poisson(spec: dict[str, Any]) -> dict[str, Any]:
    """Open-loop Poisson arrivals over a pool of keep-alive connections; response time from the scheduled arrival.

    Each connection is a worker that takes the next arrival of the shared schedule, waits for its time, sends it and
    reads the answer (no task or timeout object per request: the generator must cost far less per request than the
    gateway it measures). An arrival that finds every connection busy waits for one, and that wait shows in the
    generator's lag (from the scheduled arrival to the request written) as well as in the response time."""
    import numpy as np

    rng = np.random.default_rng(spec["seed"])
    n = int(spec["rate"] * spec["seconds"])
    # Not loop.time(): uvloop's is libuv's clock, in whole milliseconds and read once per loop pass, which made
    # every response time up to 1 ms off (the lag p50 read 0.06 ms or 0.50 ms depending on how it was timed).
    clock = time.perf_counter
    start = clock() + 0.2
    dues = (start + np.cumsum(rng.exponential(1.0 / spec["rate"], n))).tolist()
    connections = [await asyncio.open_connection("127.0.0.1", spec["port"]) for _ in range(spec["connections"])]
    requests = spec["requests"]
    latencies: list[float] = []
    lags: list[float] = []
    errors = 0
    taken = 0

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors, taken
        while taken < n:
            i = taken
            taken += 1
            due = dues[i]
            # The loop's timers fire on whole milliseconds (uvloop's, like libuv's): a sleep to the due time sends up
            # to 1 ms late. So sleep to within SPIN of it, then yield to the other connections until it is due.
            delay = due - clock()
            if delay > SPIN:
                await asyncio.sleep(delay - SPIN)
            while clock() < due:
                await asyncio.sleep(0)
            lags.append(clock() - due)
            try:
                writer.write(requests[i % len(requests)])
                status, _, keep = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError):
                status, keep = 0, False
            latencies.append(clock() - due)
            if status != 200:
                errors += 1
            if not keep:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
        writer.close()

    await asyncio.wait_for(asyncio.gather(*(worker(r, w) for r, w in connections)), timeout=spec["seconds"] + 90)
    elapsed = clock() - start
    lat = sorted(x * 1000.0 for x in latencies)
    lag = sorted(x * 1000.0 for x in lags)
    return {
        "generator_lag_p50_ms": lag[len(lag) // 2],
        "generator_lag_p95_ms": lag[int(0.95 * (len(lag) - 1))],
        "offered_rate": spec["rate"],
        "requests": n,
        "errors": errors,
        "throughput": n / elapsed,
        "p50_ms": lat[len(lat) // 2],
        "p95_ms": lat[int(0.95 * (len(lat) - 1))],
        "seconds": elapsed,
    }


async def _serial(spec: dict[str, Any]) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
    times = []
    for i in range(spec["count"] + 30):
        started = time.perf_counter()
        writer.write(spec["requests"][i % len(spec["requests"])])
        await _read_response(reader)
        if i >= 30:
            times.append((time.perf_counter() - started) * 1000.0)
    writer.close()
    return times


def loadgen_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    spec["requests"] = post_requests(Path(spec["bodies"]), spec["port"])
    if spec["mode"] == "batches":
        from deployments.capacity import measure_batch_times

        bodies = [line for line in Path(spec["bodies"]).read_text().splitlines() if line]
        records = [json.loads(b)["records"][0] for b in bodies]
        result: Any = measure_batch_times("127.0.0.1", spec["port"], records)
    else:
        try:  # the generator's own delay shows in its lag figures; uvloop keeps it small
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        # No garbage collection while measuring (a few seconds of garbage fits in memory): a collection pauses the
        # generator's loop and every answer in flight would look that much slower than the gateway made it.
        gc.collect()
        gc.freeze()
        gc.disable()
        result = asyncio.run(_serial(spec) if spec["mode"] == "serial" else _poisson(spec))
    sys.stdout.write(json.dumps(result))


def run_loadgen(spec: dict[str, Any], workdir: Path) -> Any:
    import subprocess

    path = workdir / f"spec-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        pinned([sys.executable, str(Path(__file__).resolve()), "--loadgen", str(path)], "1"),
        capture_output=True,
        timeout=spec.get("seconds", 60) + 120,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-2000:])
    return json.loads(done.stdout)


def log_caught_up(port: int, limit: float = 60.0) -> float:
    """Seconds until the gateway's prediction log is in the store (its ``mlops_gateway_log_backlog`` at 0). Each
    read is a new connection, which the kernel gives to any worker: four zeros in a row stand for all of them."""
    import httpx

    from deployments.capacity import prediction_log_gauges

    started = time.perf_counter()
    zeros = 0
    while time.perf_counter() - started < limit:
        gauges = prediction_log_gauges(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).content)
        zeros = zeros + 1 if not gauges.get("backlog") else 0
        if zeros == 4:
            return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"the gateway's log was not in the store {limit:.0f} s after the load")


def check_workers(
    workers: int, procs: Processes, env: dict[str, str], bodies: Path, args: Any, workdir: Path, cost: Any
) -> tuple[dict, Any]:
    """Measure and predict at ``workers``; ``cost`` is the one-replica batch cost (measured here when None)."""
    from deployments.capacity import BatchCost, ServiceTimes, batched_queue_at, queue_at

    port = free_port()
    log_path = workdir / f"gateway-{workers}.log"
    first_body = bodies.read_text().splitlines()[0].encode()
    # one worker pinned to core 0 and the load generator to core 1; two workers get both cores, shared with it
    cpu = "0" if workers == 1 else None
    cmd, name = gateway_command(port, workers), f"mlops serve --workers {workers}"
    server = start_server(procs, name, cmd, env, port, log_path, "/v1/predict", first_body, cpu)
    try:
        base = {"port": port, "bodies": str(bodies)}
        serial = run_loadgen({**base, "mode": "serial", "count": args.serial}, workdir)
        service = ServiceTimes(serial, f"{args.serial} serial requests to {workers} worker(s)")
        if cost is None:
            bursts = run_loadgen({**base, "mode": "batches"}, workdir)
            cost = BatchCost.fit({int(b): t for b, t in bursts.items()}, f"bursts to {workers} worker(s)")
            print(f"  batch cost: {cost.fixed_ms:.2f} + {cost.per_request_ms:.2f} * b ms {cost.measured}", flush=True)
        saturation = workers * cost.saturation_rate
        rows = []
        for fraction in FRACTIONS:
            rate = round(fraction * saturation, 1)
            measured = run_loadgen(
                {
                    **base,
                    "mode": "poisson",
                    "rate": rate,
                    "seconds": args.seconds,
                    "connections": CONNECTIONS,
                    "seed": 1,
                },
                workdir,
            )
            measured["catch_up_seconds"] = log_caught_up(port)  # the next rate starts with the log in the store
            row = batched_queue_at(workers, rate, service, cost)
            predicted = row.p95_response_ms
            alone = queue_at(workers, rate, service).p95_response_ms  # None when one at a time saturates
            rows.append(
                {
                    **measured,
                    "fraction": fraction,
                    "predicted_p95_ms": predicted,
                    "predicted_batch_size": row.batch_size,
                    "predicted_busy": row.p_wait,  # share of time a replica is predicting: what an arrival waits on
                    "one_at_a_time_p95_ms": alone,
                }
            )
            print(
                f"  {rate:7.1f}/s: p95 measured {measured['p95_ms']:.2f} ms, predicted {predicted:.2f} ms "
                f"(batch {row.batch_size:.2f}; one at a time {'saturated' if alone is None else f'{alone:.2f} ms'})",
                flush=True,
            )
        ramp = []
        for factor in RAMP:
            rate = round(factor * saturation, 1)
            measured = run_loadgen(
                {
                    **base,
                    "mode": "poisson",
                    "rate": rate,
                    "seconds": args.seconds / 2,
                    "connections": CONNECTIONS,
                    "seed": 2,
                },
                workdir,
            )
            # Served is what the gateway answered during the step; sustained also counts the time its log then
            # took to reach the store: a drain that fell behind is work the step deferred, not work it saved.
            measured["catch_up_seconds"] = log_caught_up(port)
            measured["sustained"] = measured["requests"] / (measured["seconds"] + measured["catch_up_seconds"])
            ramp.append(measured)
            print(
                f"  ramp {rate:7.1f}/s offered: {measured['throughput']:.1f}/s served, {measured['sustained']:.1f}/s "
                f"sustained (log in the store {measured['catch_up_seconds']:.2f} s later)",
                flush=True,
            )
        top = ramp[-1]
        return {
            "workers": workers,
            "service_times": service.describe(),
            "batch_cost": cost.describe(),
            "predicted_saturation_rate": saturation,
            "one_at_a_time_saturation_rate": workers * 1000.0 / service.mean_ms,
            "measured_saturation_rate": max(r["sustained"] for r in ramp),
            "measured_served_rate": max(r["throughput"] for r in ramp),
            "saturation_reached": top["throughput"] < 0.97 * top["offered_rate"],
            "rows": rows,
            "ramp": ramp,
        }, cost
    finally:
        procs.stop(server.proc)


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | offered rate /s | share of predicted saturation | measured p95 ms | predicted p95 ms | error "
        "| predicted batch | predicted busy | one-at-a-time p95 ms | generator lag p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for row in r["rows"]:
            err = (row["predicted_p95_ms"] - row["p95_ms"]) / row["p95_ms"]
            alone = row["one_at_a_time_p95_ms"]
            lines.append(
                f"| {r['workers']} | {row['offered_rate']:.0f} | {row['fraction']:.0%} | {row['p95_ms']:.2f} "
                f"| {row['predicted_p95_ms']:.2f} | {err:+.0%} | {row['predicted_batch_size']:.2f} "
                f"| {row.get('predicted_busy') or 0:.0%} "
                f"| {'saturated' if alone is None else f'{alone:.2f}'} | {row.get('generator_lag_p95_ms', 0):.2f} |"
            )
    lines += [
        "",
        "| workers | mean service ms (serial) | cv2 | batch cost ms | predicted saturation /s | one-at-a-time "
        "saturation /s | measured saturation /s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s, c = r["service_times"], r["batch_cost"]
        measured = f"{r['measured_saturation_rate']:.0f}" + ("" if r["saturation_reached"] else " (not reached)")
        lines.append(
            f"| {r['workers']} | {s['mean_ms']} | {s['cv2']} | {c['fixed_ms']} + {c['per_request_ms']} * b "
            f"| {r['predicted_saturation_rate']:.0f} | {r['one_at_a_time_saturation_rate']:.0f} | {measured} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="Seconds of Poisson load per rate.")
    parser.add_argument("--serial", type=int, default=600, help="Serial requests timing the service time.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loadgen:
        loadgen_main(args.loadgen)
        return 0
    if 1 not in args.workers:
        parser.error("--workers must include 1: the one-replica gateway is where the batch cost is measured")
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="capacity-") as tmp, interruptible():
        root = Path(tmp)
        state = make_home(root)
        env = server_env(state["home"])
        bodies = write_bodies(root / "bodies.jsonl", feature_rows(), "records")
        results, cost = [], None
        try:
            for workers in sorted(args.workers):  # 1 first: its gateway is the replica whose batch cost is measured
                result, cost = check_workers(workers, procs, env, bodies, args, root, cost)
                results.append(result)
        finally:
            procs.stop_all()
    table = report(results)
    print(table)
    write_json(
        "capacity_check.json", {"machine": machine_facts(), "args": vars(args), "results": results, "table": table}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
