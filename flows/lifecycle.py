"""The ``lifecycle`` flow: change request -> validated data -> trained model -> gates -> registered challenger.

Orchestration only; every step is a task from ``tasks/``. Outcomes:
- ``registered``: a new semver version with alias ``challenger`` (or ``champion`` when it is the first model);
- ``rejected``: the model was trained and logged to MLflow but failed a gate; nothing registered;
- ``failed``: bad configuration or data (the run fails with a typed error); nothing registered;
- ``idle``: no queued change request.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.events import emit_event

from mlops.config import load_config
from mlops.errors import MlopsError, ValidationFailed
from mlops.events import EVENT_MODEL_REGISTERED, EVENT_VALIDATION_FAILED, model_resource
from mlops.notify import notify
from mlops.settings import get_settings
from mlops.store import ChangeRequest, ProjectStore
from model_registry.registry import HOLDOUT_PREFIX, ModelRegistry
from tasks.data import load_data_task, split_holdout
from tasks.gates import evaluate_gates
from tasks.intake import claim_request_task, finish_request_task
from tasks.registration import register_task, score_champion_task
from tasks.reporting import LifecycleOutcome, publish_report_task
from tasks.tracking import (
    CHAMPION_PREFIX,
    code_version,
    configure_mlflow,
    ensure_experiment,
    finish_run,
    log_config,
    log_metrics,
    log_model,
    log_validation,
    run_url,
    start_run,
)
from tasks.training import train_task
from tasks.validation import validate_data_task


@flow(name="lifecycle", log_prints=True)
def lifecycle(config_path: str | None = None, request_id: int | None = None) -> LifecycleOutcome:
    """Run the next queued change request (or ``request_id``) through validation, training, gates and registration."""
    logger = get_run_logger()
    settings = get_settings()
    settings.ensure_home()
    request = claim_request_task(settings.store_url, request_id)
    if request is None:
        logger.info("No queued change request; nothing to do. Submit one with `mlops request submit`.")
        return LifecycleOutcome(status="idle", decision="no queued change request")
    logger.info("Running change request %s", request.label)
    actor = f"lifecycle flow for request #{request.id}"
    client = configure_mlflow(settings)
    run_id: str | None = None
    outcome = LifecycleOutcome(status="failed", decision="", request_id=request.id)
    try:
        config = load_config(Path(config_path) if config_path else settings.config, request.overrides)
        outcome.model_name, outcome.metric = config.model_name, config.evaluation.primary_metric
        experiment_id = ensure_experiment(client, config.model_name, settings)
        run_id = start_run(client, experiment_id, config, request)
        outcome.mlflow_run_id, outcome.mlflow_run_url = run_id, run_url(client, experiment_id, run_id)
        log_config(client, run_id, config, request)

        data = load_data_task(config)
        logger.info("Loaded %d rows x %d columns from %s (%s)", *data.frame.shape, data.source, data.fingerprint)
        report = validate_data_task(data.frame, config)
        log_validation(client, run_id, report, data.source, data.fingerprint)
        if not report.success:
            outcome.failures = report.failures
            raise ValidationFailed(
                f"data validation failed: {report.summary}:\n  - "
                + "\n  - ".join(report.failures)
                + f"\nThe report is in MLflow run {run_id} (validation/report.html).",
                report.failures,
            )
        logger.info("Data validation: %s", report.summary)

        split = split_holdout(data.frame, config)
        trained = train_task(split.train, split.holdout, config)
        log_metrics(client, run_id, trained.metrics, HOLDOUT_PREFIX)
        registry = ModelRegistry(config.model_name, ProjectStore(settings.store_url), client)
        champion = score_champion_task(registry, split.holdout, config)
        if champion.metrics:
            log_metrics(client, run_id, champion.metrics, CHAMPION_PREFIX)
        metric = config.evaluation.primary_metric
        if metric not in trained.metrics:
            raise MlopsError(
                f"primary metric {metric!r} could not be computed for {config.training.estimator} "
                "(roc_auc and log_loss need predict_proba); choose another evaluation.primary_metric."
            )
        decision = evaluate_gates(
            metric,
            config.evaluation.resolved_direction,
            trained.metrics[metric],
            (champion.metrics or {}).get(metric),
            config.gates,
        )
        outcome.metrics, outcome.champion_metrics = trained.metrics, champion.metrics
        outcome.champion = champion.semver
        outcome.gates = [asdict(r) for r in decision.results]
        model_uri = log_model(client, run_id, trained.model, split.train, config, data.source, data.fingerprint)

        if not decision.passed:
            outcome.status = "rejected"
            outcome.decision = f"Not registered: the model {decision.summary}."
            finish_run(client, run_id, "rejected", outcome.decision)
            finish_request_task(
                settings.store_url,
                request.id,
                "rejected",
                outcome.decision,
                model_name=config.model_name,
                mlflow_run_id=run_id,
            )
            logger.warning(outcome.decision)
            publish_report_task(outcome, request)
            return outcome

        reg = register_task(
            registry,
            model_uri,
            run_id,
            request,
            decision,
            champion,
            data.fingerprint,
            code_version(config.base_dir),
            data.source,
            trained.holdout_rows,
            actor,
        )
        outcome.status, outcome.version, outcome.semver, outcome.aliases = (
            "registered",
            reg.version,
            reg.semver,
            reg.aliases,
        )
        outcome.decision = reg.description
        client.set_tag(run_id, "mlflow.runName", f"{config.model_name} {reg.semver} ({request.kind} #{request.id})")
        finish_run(client, run_id, reg.aliases[0], reg.description)
        finish_request_task(
            settings.store_url,
            request.id,
            "succeeded",
            f"registered {reg.semver} (v{reg.version}) as {reg.aliases[0]}",
            model_name=config.model_name,
            model_version=reg.version,
            semver=reg.semver,
            mlflow_run_id=run_id,
        )
        emit_event(
            event=EVENT_MODEL_REGISTERED,
            resource=model_resource(config.model_name),
            payload={
                "version": reg.version,
                "semver": reg.semver,
                "aliases": reg.aliases,
                "request_id": request.id,
                "metric": metric,
                "score": decision.score,
                "champion_score": decision.champion_score,
            },
        )
        logger.info(reg.description)
        publish_report_task(outcome, request)
        return outcome
    except Exception as err:
        _record_failure(err, outcome, request, settings.store_url, client, run_id)
        raise


def _record_failure(
    err: Exception,
    outcome: LifecycleOutcome,
    request: ChangeRequest,
    store_url: str,
    client: object,
    run_id: str | None,
) -> None:
    """Mark the request failed with a reason a person can act on; leave the registry untouched."""
    category = err.category if isinstance(err, MlopsError) else "software"
    message = str(err) if isinstance(err, MlopsError) else f"internal error {err.__class__.__name__}: {err}"
    outcome.status, outcome.decision = "failed", f"{category} error: {message}"
    ProjectStore(store_url).finish(request.id, "failed", outcome.decision, mlflow_run_id=run_id)
    if run_id is not None:
        finish_run(client, run_id, "failed", outcome.decision, failed=True)  # type: ignore[arg-type]
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
        publish_report_task(outcome, request)
    except Exception:  # the report is a courtesy; the original error is what the user must see
        pass


if __name__ == "__main__":
    lifecycle()
