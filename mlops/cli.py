"""The ``mlops`` command line. Heavy libraries (Prefect, MLflow, GX) are imported inside commands, after the
project home has been applied to the environment, so ``mlops --help`` is instant and nothing runs at import."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from core.errors import MlopsError
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.context import ProjectContext

app = typer.Typer(
    name="mlops",
    help="MLOps lifecycle orchestrator: change requests -> validated training -> MLflow registry -> rollout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
request_app = typer.Typer(help="Submit and inspect change requests (hotfix, major, minor).", no_args_is_help=True)
registry_app = typer.Typer(
    help="Inspect the MLflow model registry: versions, aliases, history, comparison.", no_args_is_help=True
)
config_app = typer.Typer(help="Check the project configuration.", no_args_is_help=True)
app.add_typer(request_app, name="request")
app.add_typer(registry_app, name="registry")
rollout_app = typer.Typer(
    help="Progressive delivery: start, watch, approve or abort a challenger's rollout.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(rollout_app, name="rollout")
k8s_app = typer.Typer(
    help="Kubernetes: render the gateway and worker manifests from the config, and apply them.", no_args_is_help=True
)
app.add_typer(k8s_app, name="k8s")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors stay one copy-pastable line
_state: dict[str, Any] = {"debug": False, "config": None}


def _settings() -> Settings:
    settings = get_settings()
    if _state["config"] is not None:
        settings = settings.model_copy(update={"config": _state["config"]})
    return settings


def _context() -> ProjectContext:
    """The command's services, built once from the settings and the config (``-c``)."""
    from services.context import open_context

    return open_context(_settings())


@app.callback()
def _main(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Project configuration file (default: $MLOPS_CONFIG or config/project.yaml)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug
    _state["config"] = config
    get_settings().apply_to_environment()


# ---- config ------------------------------------------------------------------------------------------------
@config_app.command("validate")
def config_validate(
    overrides: list[str] = typer.Option([], "--set", help="Override key=value, as a change request would."),
) -> None:
    """Validate the configuration (and overrides) without running anything."""
    from core.config import load_config
    from core.intake import parse_overrides

    settings = _settings()
    cfg = load_config(settings.config, parse_overrides(overrides) or None)
    console.print(
        f"[green]OK[/green] {settings.config}: model [bold]{cfg.model_name}[/bold], "
        f"{len(cfg.data.numeric_features)} numeric + {len(cfg.data.categorical_features)} categorical features, "
        f"target {cfg.data.target!r}, {cfg.training.estimator}, primary metric {cfg.evaluation.primary_metric} "
        f"({cfg.evaluation.resolved_direction})."
    )


# ---- requests ----------------------------------------------------------------------------------------------
@request_app.command("submit")
def request_submit(
    kind: str | None = typer.Option(None, "--kind", "-k", help="hotfix, major or minor (sets the semver bump)."),
    title: str | None = typer.Option(None, "--title", "-t", help="What should change, in one line."),
    reason: str = typer.Option("", "--reason", "-r", help="Why: the evidence or the ticket."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value, repeatable."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read the request from a YAML/JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored request as JSON."),
) -> None:
    """Queue a change request; its overrides are validated against the configuration first."""
    from core.errors import RequestError
    from core.intake import parse_overrides, read_request_file, submit_request
    from model_registry.registry import default_actor

    fields: dict[str, Any] = read_request_file(file) if file else {}
    kind = kind or fields.get("kind")
    title = title or fields.get("title")
    if not kind or not title:
        raise RequestError("a change request needs --kind (hotfix, major, minor) and --title (or a --file with both).")
    merged = {**fields.get("overrides", {}), **parse_overrides(overrides)}
    req = submit_request(
        _context().store,
        _settings().config,
        kind,
        title,
        reason or fields.get("reason", ""),
        merged,
        submitted_by=fields.get("submitted_by") or default_actor(),
    )
    if as_json:
        print(json.dumps(req.to_json(), indent=2))
    else:
        console.print(f"Queued change request [bold]#{req.id}[/bold] ({req.kind}): {req.title}")


@request_app.command("list")
def request_list(
    status: str | None = typer.Option(None, "--status", "-s", help="Only this status."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List change requests in the order they will run: hotfix, major, minor; oldest first within a kind."""
    requests = _context().store.list(status=status)
    if as_json:
        print(json.dumps([r.to_json() for r in requests], indent=2))
        return
    from mlops.presentation import print_requests

    print_requests(console, requests)


@request_app.command("show")
def request_show(request_id: int = typer.Argument(..., help="Request id (the number after #).")) -> None:
    """Show one change request as JSON."""
    print(json.dumps(_context().store.get(request_id).to_json(), indent=2))


# ---- running -----------------------------------------------------------------------------------------------
@app.command("run")
def run(
    request_id: int | None = typer.Option(None, "--request", help="Run this queued request instead of the next."),
    all_queued: bool = typer.Option(False, "--all", help="Keep going until the queue is empty."),
) -> None:
    """Run the lifecycle flow now (in-process, reporting to Prefect) for the next queued change request."""
    from flows.lifecycle import lifecycle

    settings = _settings()
    while True:
        outcome = lifecycle(config_path=str(settings.config), request_id=request_id)
        console.print(f"[bold]{outcome.status}[/bold]: {outcome.decision}")
        if not all_queued or outcome.status == "idle" or request_id is not None:
            break


# ---- registry ----------------------------------------------------------------------------------------------
def _registry(model: str | None) -> Any:
    return _context().registry_for(model)


@registry_app.command("show")
def registry_show(
    model: str | None = typer.Option(None, "--model", "-m", help="Registered model (default: from the config)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Versions with semver, aliases and holdout metrics, then the alias history."""
    reg = _registry(model)
    if as_json:
        print(
            json.dumps(
                {
                    "model": reg.name,
                    "aliases": reg.aliases(),
                    "versions": [v.to_json() for v in reg.versions()],
                    "alias_history": [h.to_json() for h in reg.history()],
                },
                indent=2,
            )
        )
        return
    from mlops.presentation import print_registry

    print_registry(console, reg)


@registry_app.command("compare")
def registry_compare(
    left: str = typer.Argument(..., help="Version number, semver or alias."),
    right: str = typer.Argument(..., help="Version number, semver or alias."),
    model: str | None = typer.Option(None, "--model", "-m", help="Registered model (default: from the config)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Holdout metrics of two versions side by side."""
    cmp = _registry(model).compare(left, right)
    if as_json:
        print(json.dumps(cmp.to_json(), indent=2))
        return
    from mlops.presentation import print_comparison

    print_comparison(console, cmp)


# ---- serving and rollouts ---------------------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port."),
    workers: int = typer.Option(1, help="Worker processes (each loads the models and reads the rollout state)."),
) -> None:
    """Start the serving gateway: /v1/predict, /v1/feedback, /metrics, /readyz, /v1/rollout."""
    from deployments.serve import TOKEN_ENV, serve

    settings = _settings()
    if not settings.gateway_token:
        err_console.print(f"note: {TOKEN_ENV} is not set, so the admin endpoints (reload, approve, abort) are off.")
    console.print(f"Gateway on http://{host}:{port} (Ctrl-C stops it)")
    serve(settings, host, port, workers)


@rollout_app.command("start")
def rollout_start(
    strategy: str | None = typer.Option(None, help="canary, ab or shadow (default: rollout.strategy in the config)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Run the rollout flow until it decides (default)."),
    poll_seconds: float = typer.Option(2.0, help="How often the flow evaluates the guards."),
    max_minutes: float = typer.Option(120.0, help="Stop watching after this long (the rollout stays as it is)."),
) -> None:
    """Expose the challenger next to the champion through the gateway, then promote or roll back automatically."""
    settings = _settings()
    if not wait:
        from deployments.rollout import start_rollout

        started = start_rollout(_context(), strategy)
        console.print(
            f"Rollout #{started.id} started: {started.reason}. The gateway routes {started.weight:g}% "
            "to the challenger; run `mlops rollout start` again (or the rollout deployment) to decide."
        )
        return
    from flows.rollout import rollout

    result = rollout(
        config_path=str(settings.config), strategy=strategy, poll_seconds=poll_seconds, max_minutes=max_minutes
    )
    console.print(f"[bold]Rollout #{result.id} {result.status}[/bold]: {result.reason}")


@rollout_app.command("status")
def rollout_status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The live (or latest) rollout: strategy, traffic share, step, and the decision log."""
    from mlops.presentation import print_rollout

    context = _context()
    store, name = context.rollouts, context.model_name
    current = store.live(name) or store.latest(name)
    if as_json:
        print(json.dumps(None if current is None else current.to_json(), indent=2))
        return
    if current is None:
        console.print(f"No rollout for {name!r} yet. Start one with `mlops rollout start`.")
        return
    print_rollout(console, current)


def _decide(action: str, reason: str) -> None:
    from deployments.rollout import decide_by_person

    result = decide_by_person(_context(), action, reason)
    console.print(f"Rollout #{result['id']} is now [bold]{result['status']}[/bold]: {result['reason']}")


@rollout_app.command("approve")
def rollout_approve(reason: str = typer.Option("approved by a person", "--reason", "-r", help="Why.")) -> None:
    """Promote the challenger now (champion -> challenger, previous -> old champion)."""
    _decide("approve", reason)


@rollout_app.command("abort")
def rollout_abort(reason: str = typer.Option("aborted by a person", "--reason", "-r", help="Why.")) -> None:
    """Roll back now: all traffic to the champion, challenger alias removed, the reason tagged on the version."""
    _decide("abort", reason)


@k8s_app.command("render")
def k8s_render(
    image: str = typer.Option(..., "--image", help="Image built from docker/Dockerfile, e.g. ghcr.io/you/mlops:1.0."),
    tracking_uri: str = typer.Option(
        ..., "--tracking-uri", help="MLflow tracking server (http://...) or database URL shared by every pod."
    ),
    database_secret: str = typer.Option(
        "mlops-database", "--database-secret", help="Secret whose key database-url holds the PostgreSQL URL."
    ),
    namespace: str = typer.Option("default", "--namespace", "-n", help="Namespace of every object."),
    replicas: int = typer.Option(2, "--replicas", help="Gateway replicas (2 or more adds a PodDisruptionBudget)."),
    prefect_api_url: str | None = typer.Option(
        None, "--prefect-api-url", help="Also render a Prefect worker that talks to this API."
    ),
    token_secret: str | None = typer.Option(
        None, "--token-secret", help="Secret whose key token enables the gateway's admin endpoints."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    apply_now: bool = typer.Option(
        False, "--apply", help="Also server-side apply them to the cluster of your kubeconfig (re-running updates)."
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context for --apply (default: current)."),
) -> None:
    """The manifests from the config: ConfigMap, gateway Deployment, Service, PodDisruptionBudget, worker."""
    from deployments.kubernetes import KubeTarget, apply, render, to_yaml

    target = KubeTarget(
        image=image,
        tracking_uri=tracking_uri,
        database_secret=database_secret,
        namespace=namespace,
        replicas=replicas,
        prefect_api_url=prefect_api_url,
        token_secret=token_secret,
    )
    docs = render(_context().config, _settings().config, target)
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(to_yaml(docs))
        tmp.replace(out)  # never a half-written manifest file
        err_console.print(f"Wrote {out}")
    elif not apply_now:
        print(to_yaml(docs), end="")
    if apply_now:
        for name in apply(docs, context=context):
            console.print(f"applied {name}")


@app.command("replay")
def replay_cmd(
    url: str = typer.Option("http://127.0.0.1:8000", help="Gateway base URL (keep load tests on 127.0.0.1)."),
    rate: float = typer.Option(50.0, help="Requests per second."),
    count: int = typer.Option(500, help="Requests to send."),
    label_delay: float = typer.Option(1.0, help="Seconds before each true label is sent back (0: no labels)."),
    source: str | None = typer.Option(
        None,
        help="CSV/Parquet or builtin:<name> to replay as is. Default: the config's data without the rows the "
        "champion or the challenger trained on (their logged training snapshots), so neither is judged on rows it "
        "has seen.",
    ),
    concurrency: int = typer.Option(8, help="Requests in flight at once."),
    seed: int = typer.Option(0, help="Row sampling seed."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Send real HTTP traffic from a data set to the gateway and feed the labels back later."""
    import asyncio

    from deployments.replay import records_from, replay, training_snapshots, unseen_rows
    from training.data import load_data

    context = _context()
    config = context.config
    if source:
        config = config.model_copy(update={"data": config.data.model_copy(update={"source": source})})
    frame = load_data(config).frame
    if source:
        rows = f"all {len(frame)} rows of {source} (named with --source)"
    else:
        try:
            chosen = unseen_rows(frame, config.data.features, training_snapshots(context.registry), config.data.source)
        except ValueError as err:
            raise MlopsError(f"mlops replay: {err}") from None
        frame, rows = chosen.frame, chosen.description
    records = records_from(frame, config.data.features)
    labels = frame[config.data.target].tolist() if label_delay > 0 else None
    err_console.print(f"Replaying {rows}")
    with console.status(f"Replaying {count} requests at {rate:g}/s to {url}..."):
        report = asyncio.run(
            replay(
                url,
                records,
                labels,
                rate=rate,
                count=count,
                label_delay=label_delay,
                concurrency=concurrency,
                seed=seed,
                feedback_token=context.settings.feedback_token,
            )
        )
    report.rows = rows
    data = report.to_json()
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        console.print(data)


# ---- demo and UIs ------------------------------------------------------------------------------------------
@app.command("demo")
def demo(
    reset: bool = typer.Option(False, "--reset", help="Delete the project home first (a clean, repeatable demo)."),
    with_rollout: bool = typer.Option(True, "--rollout/--no-rollout", help="Also demonstrate promotion and rollback."),
    full: bool = typer.Option(
        False,
        "--full",
        help="The closed loop on a local stack (`mlops up`): drift -> retrain "
        "-> canary -> promotion, then degradation -> rollback. About 3 minutes.",
    ),
    keep_running: bool = typer.Option(False, "--keep-running", help="With --full: leave the stack up to explore."),
    prefect_port: int = typer.Option(4200, help="With --full: Prefect port."),
    mlflow_port: int = typer.Option(5000, help="With --full: MLflow port."),
    gateway_port: int = typer.Option(8000, help="With --full: gateway port."),
) -> None:
    """Champion 1.0.0, challenger 1.1.0, a corrupted export stopped by GX, then a canary promotion and an
    automatic rollback through the gateway with replayed traffic."""
    if full:
        from mlops.demo import run_loop_demo

        run_loop_demo(
            _settings(),
            console,
            reset=reset,
            ports=(prefect_port, mlflow_port, gateway_port),
            keep_running=keep_running,
        )
        return
    from mlops.demo import run_demo

    run_demo(_settings(), console, reset=reset, with_rollout=with_rollout)


@app.command("ui")
def ui(
    prefect_port: int = typer.Option(4200, help="Port of the Prefect UI/API on 127.0.0.1."),
    mlflow_port: int = typer.Option(5000, help="Port of the MLflow UI on 127.0.0.1."),
) -> None:
    """Start the Prefect UI and the MLflow UI on 127.0.0.1 over this home's stores; Ctrl-C stops both."""
    from mlops.stack import run_uis

    run_uis(_settings(), console, prefect_port=prefect_port, mlflow_port=mlflow_port)


@app.command("up")
def up(
    prefect_port: int = typer.Option(4200, help="Prefect UI/API port on 127.0.0.1."),
    mlflow_port: int = typer.Option(5000, help="MLflow UI port on 127.0.0.1."),
    gateway_port: int = typer.Option(8000, help="Serving gateway port on 127.0.0.1."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once everything is up; `mlops down` stops it."),
) -> None:
    """The whole loop on this machine: Prefect server, MLflow UI, prefect.yaml deployed with its schedules and
    triggers, a worker running them, and the gateway. Ctrl-C stops every process it started."""
    from mlops.stack import run_stack

    run_stack(_settings(), console, prefect_port, mlflow_port, gateway_port, detach)


@app.command("down")
def down() -> None:
    """Stop the processes started by `mlops up --detach`."""
    from mlops.stack import stack_down

    stopped = stack_down(_settings())
    console.print(f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """What `mlops up` started, and whether each process is alive and answering."""
    from mlops.stack import stack_status

    state = stack_status(_settings())
    if as_json:
        print(json.dumps(state, indent=2))
        return
    if not state["processes"]:
        console.print("No stack is running (start one with `mlops up`).")
        return
    table = Table("process", "pid", "alive", "healthy", "url")
    for p in state["processes"]:
        table.add_row(p["name"], str(p["pid"]), str(p["alive"]), str(p["healthy"]), p["url"])
    console.print(table)


def main() -> None:
    try:
        app()
    except MlopsError as err:
        if _state["debug"]:
            raise
        err_console.print(f"[red]error ({err.category}):[/red] {err}", highlight=False)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
