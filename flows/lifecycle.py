"""The ``lifecycle`` flow: change request -> validated data -> trained model -> gates -> registered challenger.

Orchestration only: the stages are tasks from ``tasks/`` over the ``training`` domain. Outcomes:
- ``registered``: a new semver version with alias ``challenger`` (or ``champion`` when it is the first model);
- ``rejected``: the model was trained and logged to MLflow but failed a gate; nothing registered;
- ``failed``: bad configuration or data (the run fails with a typed error); nothing registered;
- ``idle``: no queued change request.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.events import emit_event

from core import logs
from core.config import ProjectConfig, load_config
from core.errors import ValidationFailed
from core.names import (
    CHAMPION_PRODUCTION_PREFIX,
    EVENT_MODEL_REGISTERED,
    EVENT_VALIDATION_FAILED,
    PRODUCTION_PREFIX,
    model_resource,
)
from core.notify import notify
from core.settings import get_settings
from core.store.requests import ChangeRequest
from core.tracking import code_version, run_url
from flows.search import TrainingRows, dask_runner, hyperparameter_search
from services.context import ProjectContext, open_context
from tasks.data import load_training_data_task
from tasks.intake import claim_request_task, finish_request_task
from tasks.registration import register_task, score_champion_task
from tasks.reporting import publish_report_task, render_lifecycle, render_search
from tasks.training import train_task
from tasks.validation import validate_data_task
from training.fit import score_model
from training.gates import GateDecision, decide_gates
from training.outcome import LifecycleOutcome
from training.registration import Candidate, ChampionScore, Registration
from training.search import check_search_space, with_params
from training.tracking import (
    finish_run,
    log_comparison,
    log_model,
    log_search,
    log_training_data,
    log_validation,
    name_registered_run,
    open_lifecycle_run,
)
from training.window import recency_weights, split_training_data


@flow(name="lifecycle", log_prints=True)
def lifecycle(config_path: str | None = None, request_id: int | None = None) -> LifecycleOutcome:
    """Run the next queued change request (or ``request_id``) through validation, training, gates and registration."""
    with logs.flow_run(get_settings()):
        logger = get_run_logger()
        context = open_context(config_path=config_path)
        request = claim_request_task(context.store, request_id, context.mlflow)
        if request is None:
            logger.info("No queued change request; nothing to do. Submit one with `mlops request submit`.")
            return LifecycleOutcome(status="idle", decision="no queued change request")
        logs.annotate(change_request_id=request.id)  # on every later log line of the run (core/logs.py)
        logger.info("Running change request %s", request.label)
        outcome = LifecycleOutcome(status="failed", decision="", request_id=request.id)
        run_id: str | None = None
        with context.store.hold_claim(request.id):  # renewed while this runs: other hosts see its claimant alive
            try:
                context = context.with_config(load_config(context.config_path, request.overrides))
                config, client = context.config, context.mlflow
                outcome.model_name, outcome.metric = config.model_name, config.evaluation.primary_metric
                run_id = open_lifecycle_run(client, context.settings, config, request)
                outcome.mlflow_run_id, outcome.mlflow_run_url = run_id, run_url(client, run_id)

                data = load_training_data_task(config, context.predictions)
                outcome.data = data.description
                logger.info(
                    "Loaded %d rows x %d columns: %s (%s)", *data.frame.shape, data.description, data.fingerprint
                )
                report = validate_data_task(data.frame, config)
                log_validation(client, run_id, report, data.source, data.fingerprint)
                log_training_data(client, run_id, data, config)
                outcome.failures = report.failures
                report.raise_for_failures(run_id)
                logger.info("Data validation: %s", report.summary)

                split = split_training_data(data, config)
                if config.training.search is not None:
                    config = _tune(context, config, split.train, run_id)
                weights = recency_weights(split.train, data, config)
                trained = train_task(split.train, split.holdout, config, weights)
                recent = split.holdout[data.from_production(split.holdout)]
                champion = score_champion_task(context.registry, split.holdout, config, recent)
                log_comparison(client, run_id, trained.metrics, champion.metrics)
                _compare_on_recent(context, run_id, trained.model, recent, champion, config)
                decision = decide_gates(trained.metrics, champion.metrics, config)
                outcome.record_comparison(trained.metrics, champion, decision)
                model_uri = log_model(client, run_id, trained.model, split.train, config, split.holdout)
                if not decision.passed:
                    return _reject(context, request, outcome, decision, run_id)

                candidate = Candidate(
                    model_uri=model_uri,
                    run_id=run_id,
                    request=request,
                    decision=decision,
                    champion=champion,
                    data_fingerprint=data.fingerprint,
                    data_source=data.description,
                    holdout_rows=trained.holdout_rows,
                    code_version=code_version(config.base_dir),
                )
                actor = f"lifecycle flow for request #{request.id}"
                registration = register_task(context.registry, candidate, actor, context.settings.fault_point)
                return _record_registration(context, request, outcome, registration, decision, run_id)
            except Exception as err:
                _record_failure(context, err, outcome, request, run_id)
                raise


def _compare_on_recent(
    context: ProjectContext,
    run_id: str,
    model: Any,
    recent: pd.DataFrame,
    champion: ChampionScore,
    config: ProjectConfig,
) -> None:
    """The new model and the champion on the holdout's production rows alone: how each does on recent traffic."""
    if recent.empty:
        return
    metrics = score_model(model, recent, config)
    context.mlflow.log_metric(run_id, "holdout_production_rows", len(recent))
    log_comparison(
        context.mlflow, run_id, metrics, champion.production_metrics, PRODUCTION_PREFIX, CHAMPION_PRODUCTION_PREFIX
    )
    metric = config.evaluation.primary_metric
    if metric not in metrics:  # e.g. ROC AUC on recent rows of a single class
        return
    versus = (
        f" (champion {champion.production_metrics[metric]:.4f})"
        if champion.production_metrics and metric in champion.production_metrics
        else ""
    )
    get_run_logger().info(
        "On the %d recent production rows of the holdout: %s %.4f%s", len(recent), metric, metrics[metric], versus
    )


def _tune(context: ProjectContext, config: ProjectConfig, train_rows: pd.DataFrame, run_id: str) -> ProjectConfig:
    """The search on Dask, its trials as child runs of this run; returns the config with the best parameters."""
    search = check_search_space(config)
    result = hyperparameter_search.with_options(task_runner=dask_runner(context.settings, search))(
        config, TrainingRows(frame=train_rows)
    )
    log_search(context.mlflow, run_id, result)
    best = result.best
    summary = f"best of {len(result.trials)} trials: {result.metric} {best.score:.4f} with {best.params}"
    get_run_logger().info("Search %s", summary)
    publish_report_task(context.model_name, "search", render_search(result), summary)
    return with_params(config, best.params)


def _reject(
    context: ProjectContext, request: ChangeRequest, outcome: LifecycleOutcome, decision: GateDecision, run_id: str
) -> LifecycleOutcome:
    """A gate said no: the model stays in MLflow with the reason, nothing is registered."""
    outcome.status, outcome.decision = "rejected", f"Not registered: the model {decision.summary}."
    finish_run(context.mlflow, run_id, "rejected", outcome.decision)
    finish_request_task(
        context.store, request.id, "rejected", outcome.decision, model_name=context.model_name, mlflow_run_id=run_id
    )
    get_run_logger().warning(outcome.decision)
    publish_report_task(
        context.model_name, "lifecycle", render_lifecycle(outcome, request), outcome.decision, outcome.to_json()
    )
    return outcome


def _record_registration(
    context: ProjectContext,
    request: ChangeRequest,
    outcome: LifecycleOutcome,
    registration: Registration,
    decision: GateDecision,
    run_id: str,
) -> LifecycleOutcome:
    """The new version on the run, the request and the event bus, in words."""
    logs.annotate(model_version=registration.version)
    outcome.status, outcome.decision = "registered", registration.description
    outcome.version, outcome.semver, outcome.aliases = registration.version, registration.semver, registration.aliases
    name_registered_run(context.mlflow, run_id, context.model_name, registration.semver, request)
    finish_run(context.mlflow, run_id, registration.aliases[0], registration.description)
    finish_request_task(
        context.store,
        request.id,
        "succeeded",
        f"registered {registration.semver} (v{registration.version}) as {registration.aliases[0]}",
        model_name=context.model_name,
        model_version=registration.version,
        semver=registration.semver,
        mlflow_run_id=run_id,
    )
    emit_event(
        event=EVENT_MODEL_REGISTERED,
        resource=model_resource(context.model_name),
        payload={
            "version": registration.version,
            "semver": registration.semver,
            "aliases": registration.aliases,
            "request_id": request.id,
            "metric": decision.metric,
            "score": decision.score,
            "champion_score": decision.champion_score,
        },
    )
    get_run_logger().info(registration.description)
    publish_report_task(
        context.model_name, "lifecycle", render_lifecycle(outcome, request), outcome.decision, outcome.to_json()
    )
    return outcome


def _record_failure(
    context: ProjectContext, err: Exception, outcome: LifecycleOutcome, request: ChangeRequest, run_id: str | None
) -> None:
    """Mark the request failed with a reason a person can act on; leave the registry untouched."""
    category = outcome.fail(err)
    context.store.finish(request.id, "failed", outcome.decision, mlflow_run_id=run_id)
    if run_id is not None:
        finish_run(context.mlflow, run_id, "failed", outcome.decision, failed=True)
    if outcome.model_name:
        notify(
            "lifecycle.failed",
            outcome.model_name,
            f"Change request #{request.id} failed: {outcome.decision}",
            "error" if category != "data" else "warning",
            request_id=request.id,
        )
    if isinstance(err, ValidationFailed) and outcome.model_name:
        emit_event(
            event=EVENT_VALIDATION_FAILED,
            resource=model_resource(outcome.model_name),
            payload={"request_id": request.id, "failures": err.failures, "mlflow_run_id": run_id},
        )
    try:
        publish_report_task(
            outcome.model_name or "unknown",
            "lifecycle",
            render_lifecycle(outcome, request),
            outcome.decision,
            outcome.to_json(),
        )
    except Exception:  # the report is a courtesy; the original error is what the user must see
        pass


if __name__ == "__main__":
    lifecycle()
