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

from core.errors import ConfigError, MlopsError
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
capacity_app = typer.Typer(
    help="Capacity planning: gateway replicas for a request rate and a p95 target (queueing with the gateway's "
    "adaptive batching, or M/M/c with Erlang C).",
    no_args_is_help=True,
)
app.add_typer(capacity_app, name="capacity")
image_app = typer.Typer(
    help="Container image: build (and push) docker/Dockerfile with the Docker SDK.", no_args_is_help=True
)
app.add_typer(image_app, name="image")
db_app = typer.Typer(
    help="The project store's schema: the revision it is at, and upgrading it to the one this version needs.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors stay one copy-pastable line
_state: dict[str, Any] = {"debug": False, "config": None, "log_format": None}


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as err:  # a bad MLOPS_* variable: name it and its fix, no traceback
        problems = "; ".join(
            f"MLOPS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        )
        raise ConfigError(f"invalid environment: {problems}") from None
    overrides = {k: _state[k] for k in ("config", "log_format") if _state[k] is not None}
    return settings.model_copy(update=overrides) if overrides else settings


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
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        help="Log lines as text (default) or json, one object per line ($MLOPS_LOG_FORMAT); passed to the gateway's "
        "workers.",
    ),
) -> None:
    from core import logs

    _state["debug"] = debug
    _state["config"] = config
    _state["log_format"] = None
    if log_format is not None:
        if log_format.strip().lower() not in ("text", "json"):
            raise ConfigError(f"unknown --log-format {log_format!r}: use text or json.")
        _state["log_format"] = log_format.strip().lower()
    settings = _settings()
    logs.configure(settings)
    settings.apply_to_environment()


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
    context = _recovered_context()
    requests = context.store.list(status=status)
    if as_json:
        print(json.dumps([r.to_json() for r in requests], indent=2))
        return
    from mlops.presentation import print_requests

    print_requests(console, requests)


@request_app.command("show")
def request_show(request_id: int = typer.Argument(..., help="Request id (the number after #).")) -> None:
    """Show one change request as JSON."""
    print(json.dumps(_recovered_context().store.get(request_id).to_json(), indent=2))


@request_app.command("retry")
def request_retry(request_id: int = typer.Argument(..., help="Request id (the number after #).")) -> None:
    """Queue a crashed, failed or cancelled request again (same id, same overrides); `mlops run` then takes it."""
    from model_registry.registry import default_actor

    request = _recovered_context().store.retry(request_id, default_actor())
    console.print(f"[green]queued[/green] {request.label} again; run it with `mlops run --request {request.id}`.")


@request_app.command("cancel")
def request_cancel(request_id: int = typer.Argument(..., help="Request id (the number after #).")) -> None:
    """Take a queued or crashed request off the queue (a running one must be stopped first)."""
    from model_registry.registry import default_actor

    request = _recovered_context().store.cancel(request_id, default_actor())
    console.print(f"[yellow]cancelled[/yellow] {request.label}.")


def _recovered_context() -> ProjectContext:
    """The context, after marking requests whose process died ``crashed`` (and telling the user)."""
    from training.recovery import recover_interrupted

    context = _context()
    for request in recover_interrupted(context.store, context.mlflow):
        console.print(f"[red]crashed[/red] {request.label}: {request.status_reason}")
    return context


# ---- the project store's schema -------------------------------------------------------------------------------
def _store_url(database_url: str | None) -> str:
    settings = _settings()
    if database_url is None and settings.database_url is None:
        settings.ensure_home()  # the default SQLite file's folder
    return database_url or settings.store_url


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)  # one line, as grep and logs want it


def _database_url_option() -> Any:
    return typer.Option(
        None, "--database-url", help="The store to act on (default: MLOPS_DATABASE_URL, or MLOPS_HOME/mlops.db)."
    )


@db_app.command(
    "current",
    epilog="Exit codes: 0 this version can run on the store (or it is not made yet), "
    "2 it cannot (older or newer revision): the line says what to run.",
)
def db_current(
    database_url: str | None = _database_url_option(),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The schema revision of the project store, and the one this version needs."""
    from core.store.database import status

    where = status(_store_url(database_url))
    if as_json:
        print(json.dumps({"url": where.url, "revision": where.current, "head": where.head, "state": where.state}))
    else:
        _say(f"project store {where.url}: {where.describe()}")
    refusal = where.refusal()
    if refusal is not None:
        raise typer.Exit(refusal.exit_code)


@db_app.command("upgrade")
def db_upgrade(database_url: str | None = _database_url_option()) -> None:
    """Upgrade the project store to the schema revision this version needs, in one transaction (rows kept)."""
    from core.store.database import upgrade

    before, after = upgrade(_store_url(database_url))
    where = f"the project store at {after.url}"
    if before.state == "empty":
        _say(f"created {where} at schema revision {after.current}")
    elif before.versioned and before.current == after.current:
        _say(f"{where} is already at schema revision {after.current}: nothing to do")
    elif before.current == after.current:
        _say(
            f"recorded schema revision {after.current} in {where} (made before migrations, its tables were current)",
        )
    else:
        made = "" if before.versioned else " (made before migrations)"
        _say(f"upgraded {where} from schema revision {before.current}{made} to {after.current}")


# ---- running -----------------------------------------------------------------------------------------------
@app.command("run")
def run(
    request_id: int | None = typer.Option(None, "--request", help="Run this queued request instead of the next."),
    all_queued: bool = typer.Option(False, "--all", help="Keep going until the queue is empty."),
    deployment: bool = typer.Option(
        False,
        "--deployment",
        help="Create a run of the deployed lifecycle/lifecycle on the Prefect server (PREFECT_API_URL, or the one "
        "`mlops up --detach` started) and follow it with its logs, instead of running here.",
    ),
) -> None:
    """Run the lifecycle flow now (in-process, reporting to Prefect) for the next queued change request."""
    if deployment:
        params = {"request_id": request_id} if request_id is not None else {}
        _run_deployed("lifecycle", params, as_json=False)
        return
    from flows.lifecycle import lifecycle
    from mlops.reaper import watch_descendants

    watch_descendants()  # Prefect's temporary server (and anything else started here) dies with this command

    settings = _settings()
    while True:
        outcome = lifecycle(config_path=str(settings.config), request_id=request_id)
        console.print(f"[bold]{outcome.status}[/bold]: {outcome.decision}")
        if not all_queued or outcome.status == "idle" or request_id is not None:
            break


_DEPLOYMENT_HELP = (
    "Create a run of the flow's deployment (prefect.yaml) on the Prefect server and follow it to its end with its "
    "logs. Default: on when PREFECT_API_URL is set; --in-process runs it here whatever the environment says."
)


def _run_deployed(flow_name: str, parameters: dict[str, Any], *, as_json: bool) -> dict[str, Any] | None:
    """A run of ``<flow>/<flow>`` on the server, followed to its end; its logs go to stderr under ``--json``.
    Returns the flow's typed result; a run that did not complete is an error (exit code 1)."""
    from core.errors import OrchestrationError
    from mlops.flow_runs import run_deployed

    if _state["config"] is not None:  # otherwise the deployment's own config_path (relative to its worker)
        parameters = {**parameters, "config_path": str(Path(_state["config"]).resolve())}
    out = err_console if as_json else console
    finished = run_deployed(
        _settings(), flow_name, parameters, lambda line: out.print(line, markup=False, highlight=False)
    )
    if finished.state_type != "COMPLETED":
        raise OrchestrationError(
            f"flow run {finished.flow_run_id} of {finished.deployment} ended {finished.state_type}: "
            f"{finished.state_message or 'no message'}; its logs are above and in the Prefect UI."
        )
    if finished.outcome is None and flow_name != "lifecycle":
        raise OrchestrationError(
            f"flow run {finished.flow_run_id} of {finished.deployment} completed but left no outcome artifact; "
            "the deployment may run older code: redeploy with `make deploy` (or restart `mlops up`)."
        )
    if flow_name == "lifecycle":
        outcome = finished.outcome or {"status": "completed", "decision": f"flow run {finished.flow_run_id}"}
        console.print(f"[bold]{outcome['status']}[/bold]: {outcome['decision']}")
    return finished.outcome


def _run_flow(flow_name: str, parameters: dict[str, Any], deployment: bool | None, as_json: bool) -> None:
    """In-process or deployed (see ``mlops.flow_runs``), then the result and an exit code by outcome."""
    from mlops.flow_runs import exit_code, run_in_process
    from mlops.presentation import print_flow_outcome

    settings = _settings()
    if deployment if deployment is not None else bool(settings.prefect_api_url):
        outcome = _run_deployed(flow_name, parameters, as_json=as_json)
        assert outcome is not None  # _run_deployed raises for these flows when there is none
    else:
        outcome = run_in_process(flow_name, {"config_path": str(settings.config), **parameters})
    if as_json:
        print(json.dumps(outcome, indent=2))
    else:
        print_flow_outcome(console, flow_name, outcome)
    raise typer.Exit(exit_code(flow_name, outcome))


def _deployment_option() -> Any:
    return typer.Option(None, "--deployment/--in-process", help=_DEPLOYMENT_HELP, show_default=False)


@app.command("monitor", epilog="Exit codes: 0 healthy, 1 the run failed or could not start, 3 too little traffic "
             "for a verdict, 4 drift or degradation found.")  # fmt: skip
def monitor_cmd(
    deployment: bool | None = _deployment_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the monitor's result as JSON."),
) -> None:
    """Check the champion's recent traffic now: drift against its reference, EWMA charts and SLOs, one verdict."""
    _run_flow("monitor", {}, deployment, as_json)


@app.command("retrain", epilog="Exit codes: 0 registered (and promoted when rolled out), 1 the run failed or could "
             "not start, 3 skipped (cooldown) or nothing to run, 4 rejected by a gate, rollout aborted, or "
             "retraining paused for a person.")  # fmt: skip
def retrain_cmd(
    reason: str = typer.Option("retrain requested from the command line", "--reason", "-r", help="Why (recorded)."),
    rollout: bool = typer.Option(True, "--rollout/--no-rollout", help="Roll a registered challenger out (default)."),
    deployment: bool | None = _deployment_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the retrain's result as JSON."),
) -> None:
    """File a minor change request with the reason, run the lifecycle for it and roll the challenger out, under
    the same cooldown and loop guards as an automatic retrain."""
    _run_flow("retrain", {"reason": reason, "run_rollout": rollout}, deployment, as_json)


@app.command("rollback", epilog="Exit codes: 0 rolled back, 1 the run failed or could not start, 3 skipped (no "
             "previous version, or the champion was not promoted recently).")  # fmt: skip
def rollback_cmd(
    reason: str = typer.Option("rollback requested from the command line", "--reason", "-r", help="Why (recorded)."),
    deployment: bool | None = _deployment_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the rollback's result as JSON."),
) -> None:
    """Put the `previous` version back as champion, if the champion was promoted within
    monitoring.rollback_window_hours; otherwise say why not."""
    _run_flow("rollback", {"reason": reason}, deployment, as_json)


@app.command("trail", epilog="Exit codes: 0 shown, 2 no such version, semver or request (the message lists the "
             "ones that exist).")  # fmt: skip
def trail(
    ident: str = typer.Argument(..., help="A version number (3), a semver (1.1.0) or a change request (#12)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The whole story of a version in time order: its change request, data, MLflow run, gates, registration, every
    rollout with its decision, every alias move, and the monitor verdicts that named it."""
    from mlops.trail import build_trail

    found = build_trail(_context(), ident)
    if as_json:
        print(json.dumps(found.to_json(), indent=2))
        return
    from mlops.presentation import print_trail

    print_trail(console, found)


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
    note = f"{TOKEN_ENV} is not set, so the admin endpoints (reload, approve, abort) are off."
    if settings.log_format == "json":  # a log collector reads these streams: JSON lines only
        import logging

        log = logging.getLogger("mlops.gateway")
        if not settings.gateway_token:
            log.warning(note)
        log.info("gateway on http://%s:%d with %d worker(s)", host, port, workers)
    else:
        if not settings.gateway_token:
            err_console.print(f"note: {note}")
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
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking server (http://...) or database URL shared by every pod (default with --servers: "
        "the rendered MLflow server).",
    ),
    database_secret: str = typer.Option(
        "mlops-database", "--database-secret", help="Secret whose key database-url holds the PostgreSQL URL."
    ),
    namespace: str = typer.Option("default", "--namespace", "-n", help="Namespace of every object."),
    replicas: int | None = typer.Option(
        None,
        "--replicas",
        help="Gateway replicas, the autoscaler's floor (default kubernetes.min_replicas; 2 or more adds a "
        "PodDisruptionBudget).",
    ),
    plan: Path | None = typer.Option(
        None, "--plan", help="Take the replica count from a `mlops capacity plan --json` file."
    ),
    prefect_api_url: str | None = typer.Option(
        None,
        "--prefect-api-url",
        help="Also render a Prefect worker that talks to this API (default with --servers: the rendered server).",
    ),
    work_pool: str = typer.Option(
        "kubernetes",
        "--work-pool",
        help="kubernetes: the worker runs each flow run as its own Job (pool mlops-kubernetes); process: flow runs "
        "inside the worker's pod (pool mlops-process).",
    ),
    servers: bool = typer.Option(
        False, "--servers", help="Also render an MLflow tracking server and a Prefect server on PostgreSQL."
    ),
    work_pool_template: Path | None = typer.Option(
        None,
        "--work-pool-template",
        help="Also write the mlops-kubernetes pool's base job template (JSON) to this file, for "
        "`prefect work-pool create mlops-kubernetes --type kubernetes --base-job-template FILE`.",
    ),
    token_secret: str | None = typer.Option(
        None, "--token-secret", help="Secret whose key token enables the gateway's admin endpoints."
    ),
    credentials_secret: str | None = typer.Option(
        None,
        "--credentials-secret",
        help="Secret with keys prefect-auth-string (user:password), mlflow-username, mlflow-password and "
        "mlflow-secret-key: the rendered servers require them and every pod logs in with them.",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    apply_now: bool = typer.Option(
        False, "--apply", help="Also server-side apply them to the cluster of your kubeconfig (re-running updates)."
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context for --apply (default: current)."),
) -> None:
    """The manifests from the config: ConfigMap, gateway Deployment, Service, PodDisruptionBudget, autoscaler, and
    optionally the Prefect worker (with its RBAC) and the MLflow and Prefect servers."""
    from deployments.kubernetes import KubeTarget, apply, render, server_urls, to_yaml
    from deployments.kubernetes import work_pool_template as base_job_template

    if plan is not None:
        if replicas is not None:
            raise MlopsError("give either --replicas or --plan, not both.")
        replicas = _planned_replicas(plan)
    config = _context().config
    if servers:
        in_cluster_mlflow, in_cluster_prefect = server_urls(config.model_name, namespace)
        tracking_uri = tracking_uri or in_cluster_mlflow
        prefect_api_url = prefect_api_url or in_cluster_prefect
    if tracking_uri is None:
        raise MlopsError("pass --tracking-uri (the MLflow server every pod shares), or --servers to render one.")
    if work_pool not in ("kubernetes", "process"):
        raise MlopsError(f"--work-pool {work_pool!r}: use kubernetes or process.")
    target = KubeTarget(
        image=image,
        tracking_uri=tracking_uri,
        database_secret=database_secret,
        namespace=namespace,
        replicas=replicas,
        prefect_api_url=prefect_api_url,
        token_secret=token_secret,
        work_pool="kubernetes" if work_pool == "kubernetes" else "process",
        servers=servers,
        credentials_secret=credentials_secret,
    )
    docs = render(config, _settings().config, target)
    if work_pool_template is not None:
        template = base_job_template(config, _settings().config, target)
        _write_whole(work_pool_template, json.dumps(template, indent=2) + "\n")
    if out is not None:
        _write_whole(out, to_yaml(docs))
    elif not apply_now:
        print(to_yaml(docs), end="")
    if apply_now:
        for name in apply(docs, context=context):
            console.print(f"applied {name}")


@image_app.command("build")
def image_build(
    tag: str | None = typer.Option(None, "--tag", "-t", help="Image name:tag (default mlops:<code version>)."),
    push: bool = typer.Option(False, "--push", help="Push the image to the registry its name points at."),
) -> None:
    """Build docker/Dockerfile from this checkout, labelled with the code version and the current champion."""
    from core.names import CHAMPION
    from core.tracking import code_version
    from deployments.image import LABEL_CHAMPION, LABEL_CODE_VERSION, LABEL_MODEL, build_image, push_image

    root = Path(__file__).resolve().parents[1]
    if not (root / "docker" / "Dockerfile").is_file():
        raise MlopsError(f"{root} has no docker/Dockerfile; run `mlops image build` from a checkout of the project.")
    context = _context()
    version = code_version(root)
    champion = context.registry.alias_version(CHAMPION) if context.registry.exists() else None
    labels = {
        LABEL_CODE_VERSION: version,
        LABEL_MODEL: context.model_name,
        LABEL_CHAMPION: "none" if champion is None else f"{context.registry.semver_of(champion)} (v{champion.version})",
    }
    tag = tag or f"mlops:{version.split(':', 1)[-1]}"
    with console.status(f"Building {tag}...") as status:
        built = build_image(root, tag, labels, progress=lambda line: status.update(f"Building {tag}: {line[:100]}"))
    console.print(f"Built [bold]{built.tag}[/bold] ({built.size_bytes / 1e9:.2f} GB, {built.image_id[:19]}), {labels}")
    if push:
        with console.status(f"Pushing {tag}...") as status:
            push_image(tag, progress=lambda line: status.update(f"Pushing {tag}: {line[:100]}"))
        console.print(f"Pushed {tag}")


@capacity_app.command("plan")
def capacity_plan(
    rate: float = typer.Option(..., "--rate", help="Requests per second to serve."),
    slo_p95_ms: float = typer.Option(..., "--slo-p95-ms", help="Target p95 response time in milliseconds."),
    headroom: float = typer.Option(0.2, "--headroom", help="Plan for rate x (1 + headroom); 0.2 = 20%."),
    source: str = typer.Option(
        "benchmark",
        "--source",
        help="Service times from `benchmark` (a gateway started here, timed one request at a time and in bursts "
        "of concurrent requests that it batches) or `log` (model time of served answers in the prediction log; "
        "excludes HTTP overhead and batching, so the plan assumes one request at a time).",
    ),
    requests: int = typer.Option(400, "--requests", help="With --source benchmark: requests to time."),
    since_minutes: float = typer.Option(1440.0, "--since-minutes", help="With --source log: how far back to read."),
    max_replicas: int = typer.Option(512, "--max-replicas", help="Largest replica count to consider."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable plan (also what `k8s render --plan` reads)."),
) -> None:
    """How many gateway replicas serve --rate within --slo-p95-ms: utilisation, probability of waiting, mean and p95
    wait and response time per replica count, from measured service times."""
    from deployments.capacity import BatchCost, CapacityError, ServiceTimes, plan_capacity

    context = _context()
    batching = None
    if source == "log":
        from datetime import timedelta

        import numpy as np

        from core.store.schema import utcnow

        window = context.predictions.recent(
            context.model_name, utcnow() - timedelta(minutes=since_minutes), limit=200_000
        )
        served = window[window["status"] == "ok"]["latency_ms"] if len(window) else []
        service = ServiceTimes(
            np.asarray(served, dtype=float), f"the prediction log ({len(served)} answers, last {since_minutes:g} min)"
        )
    elif source == "benchmark":
        with console.status(f"Timing {requests} requests and bursts to a gateway started for the champion..."):
            serial, bursts = _time_a_gateway(context, requests)
        service = ServiceTimes(serial, f"a built-in benchmark ({requests} requests)")
        batching = BatchCost.fit(bursts, "a built-in benchmark (bursts of concurrent requests)")
    else:
        raise CapacityError(f"unknown --source {source!r}; use benchmark or log.")
    plan = plan_capacity(rate, slo_p95_ms, service, headroom=headroom, max_replicas=max_replicas, batching=batching)
    if as_json:
        print(json.dumps(plan.to_json(), indent=2))
        return
    from mlops.presentation import print_capacity_plan

    print_capacity_plan(console, plan)


def _time_a_gateway(context: ProjectContext, requests: int) -> tuple[Any, dict[int, list[float]]]:
    """Start `mlops serve` on a free 127.0.0.1 port, time ``requests`` single-record requests one at a time and
    bursts of concurrent ones (the batch cost), stop it."""
    import subprocess
    import time

    import httpx

    from deployments.capacity import measure_batch_times, measure_service_times
    from deployments.replay import records_from
    from deployments.serve import free_port
    from training.data import load_data

    settings, config = context.settings, context.config
    port = free_port()
    cmd = [sys.executable, "-m", "mlops.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # no access log: its lines (on by default with json logs) would fill the unread stderr pipe and stall the gateway
    env = settings.child_environment(MLOPS_ACCESS_LOG="false")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise MlopsError(f"the gateway exited while starting: {proc.stderr.read().decode()[-500:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise MlopsError(
                    "the gateway did not become ready within 120 s; is there a champion? `mlops registry show`"
                )
            time.sleep(0.3)
        frame = load_data(config).frame
        records = records_from(frame, config.data.features)
        serial = measure_service_times(url, records, count=requests)
        return serial, measure_batch_times("127.0.0.1", port, records)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _write_whole(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # never a half-written file
    err_console.print(f"Wrote {path}")


def _planned_replicas(path: Path) -> int:
    from core.errors import ConfigError

    try:
        replicas = json.loads(path.read_text())["replicas"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{path} is not a capacity plan ({err.__class__.__name__}: {err}); write one with "
            "`mlops capacity plan --rate R --slo-p95-ms MS --json > plan.json`."
        ) from None
    if not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"{path} plans {replicas!r} replicas; expected a whole number >= 1.")
    return replicas


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
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="With --full: the project store, MLflow's backend and Prefect's database on this PostgreSQL server "
        "(as `mlops up --database-url`); the databases must not hold an earlier demo.",
    ),
    secure: bool = typer.Option(False, "--secure", help="With --full: the servers behind credentials (`mlops up`)."),
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
            database_url=database_url,
            secure=secure,
        )
        return
    if database_url or secure:
        raise MlopsError("--database-url and --secure go with --full (the stack demo); the short demo is embedded.")
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
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="PostgreSQL URL: the project store there, MLflow in <db>_mlflow and Prefect in <db>_prefect (created "
        "if missing). Default: SQLite files under MLOPS_HOME.",
    ),
    secure: bool = typer.Option(
        False,
        "--secure",
        help="Prefect's API auth string and MLflow's basic-auth app on the servers, with credentials generated into "
        "MLOPS_HOME/credentials.json (owner-only).",
    ),
) -> None:
    """The whole loop on this machine: Prefect server, MLflow UI, prefect.yaml deployed with its schedules and
    triggers, a worker running them, and the gateway. Ctrl-C stops every process it started."""
    from mlops.stack import run_stack

    run_stack(_settings(), console, prefect_port, mlflow_port, gateway_port, detach, database_url, secure)


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
