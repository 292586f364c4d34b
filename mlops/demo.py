"""``mlops demo``: the lifecycle end to end on embedded stores, in a few minutes.

1. a major request bootstraps champion 1.0.0 on the Wisconsin breast cancer data (shipped with scikit-learn);
2. a minor request (weaker regularisation) yields challenger 1.1.0, compared with the champion on the same rows;
3. a hotfix request pointing at a corrupted export is stopped by the Great Expectations gate: nothing registered;
4. (unless ``--no-rollout``) the gateway serves both; replayed HTTP traffic with late labels drives a canary
   rollout of 1.1.0, which is promoted; then a hotfix trained on a mislabelled export (with its gates relaxed, as
   happens under pressure) becomes challenger 1.1.1 and is rolled back automatically by the quality guard.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from core.config import load_config
from core.errors import ConfigError, MlopsError, ValidationFailed
from core.settings import Settings
from mlops.presentation import print_registry, print_requests
from mlops.reaper import watch_descendants
from training.datasets import corrupt_breast_cancer, mislabel_breast_cancer


def roll_out(settings: Settings, console: Console, url: str, title: str) -> dict[str, object]:
    """Replay labelled traffic at the gateway from another process while the rollout flow decides."""
    import subprocess
    import sys

    from flows.rollout import rollout

    console.rule(f"[bold]Canary rollout: {title}")
    replay_cmd = [
        sys.executable,
        "-m",
        "mlops.cli",
        "replay",
        "--url",
        url,
        "--rate",
        "150",
        "--count",
        "30000",
        "--label-delay",
        "0.5",
        "--json",
    ]
    traffic = subprocess.Popen(
        replay_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=settings.child_environment()
    )
    t0 = time.perf_counter()
    try:
        with console.status("Replaying labelled traffic through the gateway; the rollout flow is judging..."):
            result = rollout(config_path=str(settings.config), poll_seconds=0.5, max_minutes=5)
    finally:
        traffic.terminate()
        traffic.wait(timeout=30)
    last = result.steps[-1]["stats"]["challenger"] if result.steps else {}
    colour = "green" if result.status == "promoted" else "red"
    console.print(
        f"[{colour}]{result.status}[/{colour}] after {time.perf_counter() - t0:.0f} s, "
        f"{last.get('requests', 0)} challenger answers and {last.get('labelled', 0)} labels: "
        f"{result.reason}"
    )
    return {**result.to_json(), "labels": last.get("labelled", 0), "answers": last.get("requests", 0)}


def run_demo(settings: Settings, console: Console, reset: bool = False, with_rollout: bool = True) -> None:
    settings.apply_to_environment(narrated=True)  # the demo narrates; the runs and their logs stay in the UI
    from core.intake import submit_request
    from services.context import open_context

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..." etc.
    started = time.perf_counter()
    watch_descendants()  # Prefect's temporary server and the gateway die with the demo, even when it is SIGKILLed
    home = settings.home_dir
    if reset and home.exists():
        console.print(f"Removing the previous demo state in {home}")
        shutil.rmtree(home)
    settings.ensure_home()
    context = open_context(settings)
    config, registry, store = context.config, context.registry, context.store
    if registry.exists() and registry.versions(with_metrics=False):
        raise ConfigError(
            f"the registry in {home} already holds {config.model_name!r}; the demo starts from an empty home. "
            "Run `mlops demo --reset` (deletes that home) or set MLOPS_HOME to another folder."
        )
    from flows.lifecycle import lifecycle

    def step(title: str, kind: str, reason: str, overrides: dict[str, object] | None = None) -> None:
        req = submit_request(store, settings.config, kind, title, reason, overrides, submitted_by="mlops demo")
        console.rule(f"[bold]{kind} request #{req.id}: {title}")
        t0 = time.perf_counter()
        with console.status(
            f"Running the lifecycle flow for request #{req.id} (validate, train, compare, register)..."
        ):
            try:
                outcome = lifecycle(config_path=str(settings.config), request_id=req.id)
            except ValidationFailed as err:
                console.print(f"[red]Stopped by the data validation gate[/red] ({time.perf_counter() - t0:.1f} s):")
                for failure in err.failures:
                    console.print(f"  - {failure}")
                console.print("  Request marked failed; nothing registered; the GX report is in the MLflow run.")
                return
        console.print(f"[green]{outcome.status}[/green] in {time.perf_counter() - t0:.1f} s: {outcome.decision}")

    step(
        "Bootstrap the breast cancer classifier",
        "major",
        "First model for the diagnosis assistant: logistic regression on the 30 Wisconsin features.",
    )
    step(
        "Weaker regularisation",
        "minor",
        "Validation curves suggest C=0.5 fits better than 0.05.",
        {"training.params.C": 0.5},
    )
    corrupted = corrupt_breast_cancer(home / "demo" / "corrupted_export.csv")
    step(
        "Retrain on the November export",
        "hotfix",
        "New export from the lab system; retrain before the weekend.",
        {"data.source": str(corrupted)},
    )

    decisions = []
    if with_rollout:
        from mlops.stack import gateway_process

        console.print("Starting the gateway (`mlops serve`, a process of its own: the rollout flow never stalls it)")
        with gateway_process(settings, home / "logs") as url:
            console.print(f"Gateway serving champion and challenger at {url} (log: {home / 'logs' / 'gateway.log'})")
            decisions.append(roll_out(settings, console, url, "challenger 1.1.0"))
            mislabelled = mislabel_breast_cancer(home / "demo" / "mislabelled_export.csv")
            step(
                "Retrain on the re-exported lab data",
                "hotfix",
                "Urgent: the lab re-exported its records. Gates relaxed to ship today.",
                {"data.source": str(mislabelled), "gates.max_regression": 0.5, "gates.min_score": 0.5},
            )
            decisions.append(roll_out(settings, console, url, "challenger 1.1.1 (mislabelled training data)"))

    console.rule("[bold]Summary")
    print_registry(console, registry)
    print_requests(console, store.list())
    for d in decisions:
        console.print(
            f"Rollout #{d['id']} of v{d['challenger_version']}: [bold]{d['status']}[/bold] after "
            f"{d['answers']} challenger answers and {d['labels']} labels."
        )
    console.print(
        f"Demo finished in {time.perf_counter() - started:.0f} s. Everything is under {home}.\n"
        "Open the UIs with [bold]make ui[/bold] (or `.venv/bin/mlops ui`): Prefect at http://127.0.0.1:4200 "
        "(flow runs and their lifecycle artifacts), MLflow at http://127.0.0.1:5000 (select the two runs of "
        f"experiment {config.model_name!r} and press Compare). `mlops registry compare champion challenger` "
        "does the same in the terminal."
    )


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(2)
    raise MlopsError(f"timed out after {timeout:.0f} s waiting for {what}; see the logs under MLOPS_HOME/logs.")


def _refuse_used_stores(settings: Settings, database_url: str) -> None:
    """The loop demo tells a story from an empty registry: on PostgreSQL (which ``--reset`` does not clear) it
    refuses stores that already hold a model rather than mixing its story into them."""
    from services.context import open_context

    context = open_context(settings)
    if context.registry.aliases() or context.store.list():
        raise MlopsError(
            f"the stores on {database_url.split('@')[-1]} already hold change requests or models; the loop demo "
            "starts from empty ones: name another database in --database-url (its _mlflow and _prefect siblings are "
            "made for you) or drop the three."
        )


def run_loop_demo(
    settings: Settings,
    console: Console,
    *,
    reset: bool,
    ports: tuple[int, int, int],
    keep_running: bool,
    database_url: str | None = None,
    secure: bool = False,
) -> None:
    """``mlops demo --full``: the closed loop with nobody watching, on a real local stack (``mlops up``), its three
    stores on PostgreSQL with ``database_url`` and its servers behind credentials with ``secure``.

    Bootstrap a champion; send drifted traffic through the gateway; the deployed ``monitor`` finds the drift and
    its event starts ``retrain`` (request -> lifecycle -> canary rollout under replayed traffic -> promotion);
    then a degradation event makes ``rollback`` restore the previous champion.
    """
    import subprocess
    import sys

    from mlops.stack import base_env, run_stack, stack_credentials, stack_down, stack_stores
    from services.context import open_context

    started = time.perf_counter()
    home = settings.home_dir
    if reset and home.exists():
        stack_down(settings)
        shutil.rmtree(home)
    settings.ensure_home()
    prefect_port, mlflow_port, gateway_port = ports
    api, gateway = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{gateway_port}"
    stores = stack_stores(settings, database_url)
    if stores.on_postgres:
        settings = settings.model_copy(update={"database_url": stores.project, "mlflow_tracking_uri": stores.mlflow})
        _refuse_used_stores(settings, database_url or "")
    creds = stack_credentials(settings) if secure else None
    env = {**base_env(settings, prefect_port, stores, creds), "PREFECT_API_URL": api}
    mlops = [sys.executable, "-m", "mlops.cli"]

    def run(*cmd: str) -> str:
        result = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise MlopsError(f"`{' '.join(cmd[2:6])}` failed: {(result.stderr or result.stdout)[-1000:]}")
        return result.stdout

    def state() -> dict[str, Any]:
        return json.loads(run(*mlops, "registry", "show", "--json"))

    run_stack(settings, console, prefect_port, mlflow_port, gateway_port, True, database_url, secure)
    try:
        console.rule("[bold]1. A champion")
        run(*mlops, "request", "submit", "--kind", "major", "--title", "Bootstrap", "--reason", "first model")
        run(*mlops, "run")
        console.print(f"champion: {state()['aliases']}")

        console.rule("[bold]2. Drifted traffic, and the deployed monitor")
        drifted = home / "demo" / "drifted_traffic.csv"
        from training.datasets import breast_cancer, unit_change, write_frame

        frame = breast_cancer()
        write_frame(unit_change(frame, [c for c in frame.columns if c != "diagnosis"]), drifted)
        replay = [*mlops, "replay", "--url", gateway, "--source", str(drifted)]  # the drifted kind of traffic
        # the true labels come back: the retrain learns from this labelled window
        run(*replay, "--count", "400", "--rate", "200", "--label-delay", "0.2")
        run(str(Path(sys.executable).with_name("prefect")), "deployment", "run", "monitor/monitor")
        with console.status("monitor -> mlops.drift.detected -> retrain (request, lifecycle)..."):
            retrained = _wait(
                lambda: [
                    r
                    for r in json.loads(run(*mlops, "request", "list", "--json"))
                    if r["submitted_by"] == "retrain flow" and r["status"] not in ("queued", "running")
                ],
                300,
                "the retrain",
            )
        console.print(f"retrain request #{retrained[0]['id']} {retrained[0]['status']}: {retrained[0]['reason'][:200]}")

        console.rule("[bold]3. The retrain's canary rollout under live traffic")
        _wait(lambda: json.loads(run(*mlops, "rollout", "status", "--json")), 120, "the rollout to start")
        traffic = subprocess.Popen(
            # the world has drifted: live traffic is the drifted kind, on which the retrained model must prove itself
            [*replay, "--count", "30000", "--rate", "150", "--label-delay", "0.5"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with console.status("canary steps, guards and sequential tests..."):
                done = _wait(
                    lambda: (
                        (r := json.loads(run(*mlops, "rollout", "status", "--json")))
                        and r["status"] in ("promoted", "aborted")
                        and r
                    ),
                    300,
                    "the rollout decision",
                )
        finally:
            traffic.terminate()
            traffic.wait(timeout=30)
        console.print(f"rollout #{done['id']} {done['status']}: {done['reason'][:300]}")

        console.rule("[bold]4. The new champion degrades: automatic rollback")
        emit = (
            "from prefect.events import emit_event; emit_event(event='mlops.model.degraded', resource="
            f"{{'prefect.resource.id': 'mlops.model.{load_config(settings.config).model_name}'}}, "
            "payload={'metrics': ['accuracy']})"
        )
        before = state()["aliases"]  # read before the event: the rollback can finish before a later read
        run(sys.executable, "-c", emit)
        with console.status("mlops.model.degraded -> rollback..."):
            after = _wait(lambda: (a := state()["aliases"]) != before and a, 180, "the rollback")
        console.print(f"aliases {before} -> {after}")

        console.rule("[bold]Summary")
        context = open_context(settings)
        print_registry(console, context.registry)
        print_requests(console, context.store.list())
        console.print(
            f"Loop demo finished in {time.perf_counter() - started:.0f} s. Prefect UI: {api[:-4]} "
            f"(flow runs, artifacts, automations), MLflow: http://127.0.0.1:{mlflow_port}."
        )
    finally:
        if not keep_running:
            console.print(f"Stopped: {', '.join(stack_down(settings))}.")
        else:
            console.print("The stack keeps running; `mlops down` stops it.")
