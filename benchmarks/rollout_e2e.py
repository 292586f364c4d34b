"""Benchmark: rollout decisions end to end, through the real gateway, on a busy host.

The gateway runs in its own process (``mlops serve --workers 1`` on 127.0.0.1), labelled traffic comes from
``mlops replay`` in another process (rows neither model trained on, labels sent back 0.2 s after each answer), and
``../shared/tools/busy-host`` runs beside them for the whole run (one spinning process plus a stream of short
Python jobs importing heavy libraries). This process registers each challenger through the normal registration
path (train, log with MLflow, register, set the ``challenger`` alias) and drives the rollout engine the ``rollout``
flow runs (``deployments.rollout.start_rollout`` and ``step`` every ``--poll`` seconds; Prefect's orchestration
around it is left out so that its API server does not add to the load being measured).

Two kinds of challenger, interleaved so the host's load falls on both alike:
- ``--good N``: the champion's estimator and parameters with another ``random_state``: as good and as cheap. Any
  rollback is a false rollback (target: none);
- ``--slow M``: the same pipeline whose final step (``SlowerStep``) also sleeps, as long as the champion's answers
  take in the gateway at that moment (the median model time of its answers over the last 20 s, from the prediction
  log, so measured under the run's own load), so every answer takes twice as long (``--slowdown``); the gateway
  serves it through the same fast path as the champion (scikit-learn's: the benchmark sets
  ``MLOPS_GATEWAY_COMPILE=false``, since a sleep cannot be compiled to numpy and a compiled champion would answer in
  microseconds, far below the guard's 2 ms minimum effect). Target: at least 95% rolled back; the time from
  the rollout's start to the rollback is reported (median, max). A slow challenger that is promoted is counted as a
  miss and the previous champion is promoted back.

The wrapper is not a scikit-learn type, so it is saved with cloudpickle, which the registry refuses to load unless
``MLOPS_TRUST_PICKLE=1``: the benchmark sets it for its own isolated home (a fresh directory under /tmp per run)
and the gateway serving that home only.

The canary policy is the shipped one with demo-sized steps: 10%, 50%, 100%, at least ``--min-requests`` challenger
answers and ``--min-seconds`` per step; the shipped guards: quality test (alpha 0.01, beta 0.2, min_effect 0.05),
latency tolerance (1.5x and 2 ms more, ``--min-latency-increase-ms`` to change it; at least 100 pairs before
the step to 100%), error guard and 250 ms deadline. A rollout still undecided after ``--rollout-timeout`` seconds
is aborted by the benchmark and counted as undecided.

Usage (from the repository root)::

    .venv/bin/python benchmarks/rollout_e2e.py [--good 20] [--slow 20]

Prints one line per rollout and writes the figures to ``benchmarks/results/rollout_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from common import (
    BIN,
    CONFIG,
    REPO,
    BenchmarkRun,
    Processes,
    free_port,
    gateway_command,
    make_home,
    run_benchmark,
    server_env,
    start_server,
)
from sklearn.base import BaseEstimator, ClassifierMixin

BUSY_HOST = REPO.parent / "shared" / "tools" / "busy-host"
TARGET_FALSE_ROLLBACKS = 0
TARGET_SLOW_ROLLBACK_RATE = 0.95


class SlowerStep(ClassifierMixin, BaseEstimator):
    """A pipeline's fitted final estimator whose every predict also sleeps ``extra_seconds`` (the sleep holds the
    worker thread, not the CPU). Kept inside the pipeline, so the gateway serves the slow challenger through the same
    fast path as the champion (``deployments/fast_predict.py``) and only the sleep tells them apart."""

    def __init__(self, model: Any = None, extra_seconds: float = 0.0) -> None:
        self.model = model
        self.extra_seconds = extra_seconds

    def fit(self, X: Any, y: Any = None) -> SlowerStep:
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self) -> Any:
        return self.model.classes_

    def predict(self, X: Any) -> Any:
        out = self.model.predict(X)
        time.sleep(self.extra_seconds)
        return out

    def predict_proba(self, X: Any) -> Any:
        out = self.model.predict_proba(X)
        time.sleep(self.extra_seconds)
        return out


def served_model_ms(context: Any, seconds: float = 20.0) -> float:
    """The champion's median model time per answer as the gateway served it over the last ``seconds`` (its
    prediction-log ``latency_ms``: the time of the predict call that answered, on this host under this load)."""
    from datetime import timedelta

    from core.names import CHAMPION
    from core.store.schema import utcnow

    champion = context.registry.alias_version(CHAMPION)
    deadline = time.monotonic() + 30.0
    while True:
        rows = context.predictions.recent(context.model_name, utcnow() - timedelta(seconds=seconds), 5000)
        if not rows.empty:
            rows = rows[(rows["status"] == "ok") & (rows["model_version"] == str(champion.version))]
        if len(rows) >= 100 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if len(rows) < 20:
        raise RuntimeError(f"only {len(rows)} champion answers in the last {seconds:g} s: is the traffic running?")
    return float(rows["latency_ms"].median())


def slower(model: Any, slowdown: float, served_ms: float) -> Any:
    """``model`` (a fitted pipeline) made ``slowdown`` times as slow as the champion's answers are served now: the
    champion's median model time per answer in the gateway over the last seconds (``served_model_ms``, measured
    under the run's own load) is added ``slowdown - 1`` times as a sleep in the final step.

    Calibrated on an idle host instead (one call timed in this process before the run), the sleep made answers
    only about 1.6x slower under busy-host, since the sleep does not stretch with the load and the model's own
    time does: that is at the shipped 1.5x tolerance, not twice as slow (``rollout_e2e_025ms.json``)."""
    from sklearn.pipeline import Pipeline

    name, final = model.steps[-1]
    extra = (slowdown - 1.0) * served_ms / 1000.0
    print(
        f"  slow challenger: the champion's answers take {served_ms:.2f} ms of model time as served now, "
        f"so +{extra * 1000:.2f} ms of sleep per call",
        flush=True,
    )
    return Pipeline([*model.steps[:-1], (name, SlowerStep(final, extra))])


def benchmark_config(workdir: Path, args: argparse.Namespace) -> Path:
    """The shipped config with demo-sized canary steps and the benchmark's latency tolerance."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["rollout"].update(
        strategy="canary",
        steps=[10, 50, 100],
        min_requests_per_step=args.min_requests,
        min_seconds_per_step=args.min_seconds,
        max_duration_seconds=args.rollout_timeout,
    )
    if args.min_latency_increase_ms is not None:
        raw["rollout"]["min_latency_increase_ms"] = args.min_latency_increase_ms
    path = workdir / "project.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def start_busy_host(procs: Processes, workdir: Path) -> subprocess.Popen[bytes] | None:
    if not BUSY_HOST.exists():
        print(f"  {BUSY_HOST} not found: running without it", flush=True)
        return None
    return procs.start([str(BUSY_HOST), "0", str(BIN / "python")], dict(os.environ), workdir / "busy-host.log")


class Traffic:
    """``mlops replay`` at a steady rate with labels, restarted whenever it ends (it stops itself after 600 s)."""

    def __init__(self, procs: Processes, url: str, env: dict[str, str], rate: float, workdir: Path) -> None:
        self.procs, self.env, self.workdir = procs, env, workdir
        count = str(int(rate * 660))  # replay stops after 600 s; it draws all its rows up front
        self.cmd = [str(BIN / "mlops"), "replay", "--url", url, "--rate", f"{rate:g}", "--count", count]
        self.cmd += ["--label-delay", "0.2", "--json"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def keep_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.procs.stop(self.proc)
                self.restarts += 1
            self.proc = self.procs.start(self.cmd, self.env, self.workdir / "replay.log")


def register_challenger(setup: dict[str, Any], context: Any, kind: str, seed: int, slowdown: float) -> str:
    from core.names import CHALLENGER
    from tests.helpers import train_and_register

    if kind == "slow":
        served_ms = served_model_ms(context)
        wrap = lambda model: slower(model, slowdown, served_ms)  # noqa: E731
    else:
        wrap = None
    return train_and_register(
        setup["settings"],
        setup["config"],
        f"2.{seed}.0",
        CHALLENGER,
        actor="benchmark",
        description=f"benchmark {kind} challenger (random_state {seed})",
        wrap=wrap,
        random_state=seed,
    )


def run_rollout(context: Any, traffic: Traffic, args: argparse.Namespace) -> dict[str, Any]:
    """Start a canary of the registered challenger and step it until it ends (or the benchmark's cap)."""
    from deployments.rollout import decide_by_person, start_rollout, step

    rollout = start_rollout(context, "canary")
    started = time.monotonic()
    while rollout.status == "running" and time.monotonic() - started < args.rollout_timeout:
        traffic.keep_running()
        time.sleep(args.poll)
        rollout, _ = step(context, rollout.id)
    seconds = time.monotonic() - started
    status = rollout.status
    if rollout.live:  # still running at the cap, or paused: end it so the next rollout can start
        decide_by_person(context, "abort", "benchmark: undecided at its time cap")
        status = "undecided"
    last = rollout.steps[-1] if rollout.steps else {}
    stats = last.get("stats", {}).get("challenger", {})
    latency = last.get("verdicts", {}).get("latency") or {}
    return {
        "rollout_id": rollout.id,
        "status": status,
        "seconds": round(seconds, 2),
        "weight": rollout.weight,
        "challenger_answers": stats.get("requests"),
        "challenger_labels": stats.get("labelled"),
        "reason": rollout.reason,
        "latency_guard_at_decision": latency.get("explanation") if isinstance(latency, dict) else None,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in rows if r["kind"] == "good"]
    slow = [r for r in rows if r["kind"] == "slow"]
    rolled_back = [r["seconds"] for r in slow if r["status"] == "aborted"]
    return {
        "good": {
            "rollouts": len(good),
            "promoted": sum(r["status"] == "promoted" for r in good),
            "false_rollbacks": sum(r["status"] == "aborted" for r in good),
            "undecided": sum(r["status"] == "undecided" for r in good),
            "median_seconds_to_promotion": _median([r["seconds"] for r in good if r["status"] == "promoted"]),
        },
        "slow": {
            "rollouts": len(slow),
            "rolled_back": len(rolled_back),
            "promoted": sum(r["status"] == "promoted" for r in slow),
            "undecided": sum(r["status"] == "undecided" for r in slow),
            "rollback_rate": len(rolled_back) / len(slow) if slow else None,
            "median_seconds_to_rollback": _median(rolled_back),
            "max_seconds_to_rollback": max(rolled_back) if rolled_back else None,
            "rolled_back_by_latency_guard": sum(r["status"] == "aborted" and "latency" in r["reason"] for r in slow),
        },
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    good, slow = summary["good"], summary["slow"]
    out = []
    if good["rollouts"]:
        out.append(
            {
                "name": "false rollbacks of an equal challenger",
                "value": f"{good['false_rollbacks']} of {good['rollouts']}",
                "target": f"{TARGET_FALSE_ROLLBACKS}",
                "met": good["false_rollbacks"] <= TARGET_FALSE_ROLLBACKS,
            }
        )
    if slow["rollouts"]:
        out.append(
            {
                "name": "2x slower challenger rolled back",
                "value": f"{slow['rolled_back']} of {slow['rollouts']} ({slow['rollback_rate']:.0%})",
                "target": f">= {TARGET_SLOW_ROLLBACK_RATE:.0%}",
                "met": slow["rollback_rate"] >= TARGET_SLOW_ROLLBACK_RATE,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--good", type=int, default=20, help="rollouts of an equal challenger")
    parser.add_argument("--slow", type=int, default=20, help="rollouts of a 2x slower challenger")
    parser.add_argument("--slowdown", type=float, default=2.0, help="how many times slower the slow challenger is")
    parser.add_argument("--rate", type=float, default=150.0, help="replayed requests per second")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between rollout evaluations")
    parser.add_argument("--min-requests", type=int, default=50, help="challenger answers per canary step")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="seconds per canary step")
    parser.add_argument(
        "--min-latency-increase-ms", type=float, default=None, help="latency guard's ms tolerance (default: shipped)"
    )
    parser.add_argument("--rollout-timeout", type=float, default=120.0, help="seconds before a rollout is abandoned")
    parser.add_argument("--no-busy-host", action="store_true", help="do not start ../shared/tools/busy-host")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and logs")
    parser.add_argument("--results", default="rollout_e2e.json", help="file name under benchmarks/results/")
    args = parser.parse_args(argv)
    args.good, args.slow = min(max(args.good, 0), 500), min(max(args.slow, 0), 500)
    args.rollout_timeout = min(max(args.rollout_timeout, 10.0), 600.0)

    os.environ["MLOPS_TRUST_PICKLE"] = "1"  # this process and the gateway it starts, for this isolated home only
    # A sleep cannot be compiled to numpy: both models are served through scikit-learn's fast path, so that the slow
    # challenger is twice as slow as the champion as served (compiled, the champion would take microseconds).
    os.environ["MLOPS_GATEWAY_COMPILE"] = "false"
    rows: list[dict[str, Any]] = []
    return run_benchmark(
        "rollout_e2e.py",
        argv,
        lambda run: rollouts(run, args, rows),
        prefix="mlops-rollout-e2e-",
        keep=args.keep,
        interrupted=lambda: f"interrupted after {len(rows)} rollouts: stopping the gateway, traffic and busy-host",
    )


def rollouts(run: BenchmarkRun, args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    """The champion, the gateway, replayed traffic and busy-host; then each challenger registered and rolled out."""
    workdir, procs = run.workdir, run.procs
    print(f"Isolated home {workdir} (MLOPS_TRUST_PICKLE=1 for it only); registering the champion", flush=True)
    config_path = benchmark_config(workdir, args)
    setup = make_home(workdir, config_path)
    from core.names import CHAMPION
    from services.context import open_context

    context = open_context(setup["settings"])
    busy = None if args.no_busy_host else start_busy_host(procs, workdir)
    print(f"busy-host: {f'running, pid {busy.pid}' if busy else 'not running'}", flush=True)
    port = free_port()
    env = server_env(setup["home"], config_path)
    body = json.dumps({"records": [dict.fromkeys(setup["config"].data.features, 1.0)]}).encode()
    server = start_server(
        procs, "gateway", gateway_command(port), env, port, workdir / "gateway.log", "/v1/predict", body
    )
    print(f"gateway answering {server.ready_after:.1f} s after start", flush=True)
    traffic = Traffic(procs, server.url, env, args.rate, workdir)
    traffic.keep_running()

    plan = [kind for i in range(max(args.good, args.slow)) for kind in ("good", "slow") if i < vars(args)[kind]]
    for n, kind in enumerate(plan, start=1):
        champion = context.registry.alias_version(CHAMPION)
        t0 = time.monotonic()
        version = register_challenger(setup, context, kind, 100 + n, args.slowdown)
        result = {"kind": kind, "version": version, "register_seconds": round(time.monotonic() - t0, 2)}
        result |= run_rollout(context, traffic, args)
        if kind == "slow" and result["status"] == "promoted" and champion is not None:
            context.registry.promote(str(champion.version), actor="benchmark", reason="slow challenger missed")
        rows.append(result)
        print(
            f"[{n}/{len(plan)}] {kind} v{version}: {result['status']} after {result['seconds']:.1f} s "
            f"({result['challenger_answers']} challenger answers, {result['challenger_labels']} labels; "
            f"load {os.getloadavg()[0]:.1f}): {result['reason'][:160]}",
            flush=True,
        )
    summary = summarise(rows)
    fields = {
        "busy_host": busy is not None,
        "policy": yaml.safe_load(config_path.read_text())["rollout"],
        "rate": args.rate,
        "slowdown": args.slowdown,
        "replay_restarts": traffic.restarts,
        "summary": summary,
        "targets": targets(summary),
        "rollouts": rows,
    }
    results = run.results("rollout_e2e", fields)
    shown = json.dumps({"summary": summary, "targets": results["targets"]}, indent=2)
    return run.finish(results, Path(args.results).name, shown)


if __name__ == "__main__":
    sys.exit(main())
