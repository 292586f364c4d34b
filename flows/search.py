"""The ``hyperparameter-search`` subflow of ``lifecycle``: Optuna proposes, batches of trials run as Prefect tasks
on Dask.

A local Dask cluster (``training.search.dask_workers`` processes) by default, or the scheduler at
``MLOPS_DASK_ADDRESS`` (for example one started by dask-kubernetes). Trials are proposed ``parallelism`` at a time
and told back in order, so the same seed gives the same trials on any number of workers. Each round's proposals
are split into ``ceil(parallelism / trials_per_task)`` batches (by default one per worker), one ``search-trials``
Prefect task each, so Prefect's per-task cost is paid per batch rather than per trial: contiguous at first, then
balanced by the seconds the trials done so far predict (``training.search.plan_batches``).
"""

from __future__ import annotations

import hashlib
import time
from functools import cached_property
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, model_serializer

from core.config import ProjectConfig, SearchConfig
from core.errors import MlopsError
from core.settings import Settings
from tasks.reporting import report_progress, start_progress
from tasks.search import evaluate_trials_task, trials_run_name, trials_span
from training.search import Proposal, SearchResult, TrialResult, error_text, make_study, plan_batches, suggest


def dask_runner(settings: Settings, search: SearchConfig) -> object:
    """The task runner for the trials; an unreachable scheduler is an error now, not a hang later."""
    from prefect_dask import DaskTaskRunner

    if not settings.dask_address:
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": search.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "env": {"PREFECT_API_URL": prefect_api_url()},
            },
        )
    from distributed import Client

    try:
        Client(settings.dask_address, timeout="10s").close()
    except (OSError, TimeoutError) as err:
        raise MlopsError(
            f"no Dask scheduler answered at MLOPS_DASK_ADDRESS={settings.dask_address} within 10 s ({err}); start "
            "one (`dask scheduler`) or unset MLOPS_DASK_ADDRESS to use a local cluster."
        ) from None
    return DaskTaskRunner(address=settings.dask_address)


class TrainingRows(BaseModel):
    """The training rows, as the search subflow's parameter. Prefect stores a flow run's parameters in its database
    and shows them in the UI: a DataFrame would be stored whole (about 200 KB of JSON for the demo's 426 rows, and
    in proportion for real data) and copied into the context of every task the flow submits. This records the
    rows' shape and a digest of their content instead; the flow itself gets the frame."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    frame: pd.DataFrame

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the rows' content and index (computed once: Prefect serializes the parameter per task)."""
        hashed = pd.util.hash_pandas_object(self.frame, index=True).to_numpy().tobytes()
        return hashlib.sha256(hashed).hexdigest()[:16]

    @model_serializer
    def _summary(self) -> dict[str, Any]:
        return {"rows": len(self.frame), "columns": len(self.frame.columns), "sha256": self.digest}


def prefect_api_url() -> str:
    """The Prefect API this process reports to, for the local Dask workers to report to as well.

    On the embedded defaults that API is a temporary server this process started, and a worker process that finds
    no ``PREFECT_API_URL`` starts one of its own on the same database: several seconds of CPU at its first task,
    and a server process beside every worker, competing with the trials for the cores."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


@flow(name="hyperparameter-search")
def hyperparameter_search(config: ProjectConfig, train_rows: TrainingRows) -> SearchResult:
    """Run ``training.search`` over the training rows; the result ranks every trial by its cross-validated score."""
    logger = get_run_logger()
    rows = train_rows.frame
    search = config.training.search
    assert search is not None
    direction = config.evaluation.resolved_direction
    result = SearchResult(metric=config.evaluation.primary_metric, direction=direction)
    study = make_study(search, direction)
    per_task = search.resolved_trials_per_task
    progress = start_progress(config.model_name, "search", f"0 of {search.n_trials} trials")
    started = time.monotonic()
    while len(result.trials) < search.n_trials:
        if search.timeout_seconds is not None and time.monotonic() - started > search.timeout_seconds:
            result.stopped_early = f"timeout of {search.timeout_seconds:g} s after {len(result.trials)} trials"
            break
        size = min(search.parallelism, search.n_trials - len(result.trials))
        asked = {trial.number: trial for trial in (study.ask() for _ in range(size))}
        proposals = [(number, suggest(trial, search.space)) for number, trial in asked.items()]
        batches, seconds = plan_batches(proposals, per_task, search.space, result.trials)
        if seconds is not None and len(batches) > 1:
            logger.info("%s", _balance_text(batches, proposals, seconds))
        submitted = [(batch, _submit(batch, rows, config)) for batch in batches]
        finished = [trial for batch, future in submitted for trial in _batch_results(batch, future)]
        for trial in sorted(finished, key=lambda t: t.number):  # told in trial order, however they were batched
            if trial.score is None:
                study.tell(asked[trial.number], state=_failed())
            else:
                study.tell(asked[trial.number], trial.score)
            result.trials.append(trial)
        done = f"{len(result.trials)} of {search.n_trials} trials; best so far {_best_text(result)}"
        logger.info("%s", done)
        report_progress(progress, len(result.trials), search.n_trials, done)
    result.wall_seconds = time.monotonic() - started
    if result.stopped_early:
        report_progress(progress, len(result.trials), search.n_trials, f"stopped: {result.stopped_early}")
    return result


def _submit(batch: list[Proposal], train_rows: pd.DataFrame, config: ProjectConfig) -> Any:
    """One ``search-trials`` task for the batch, its run named after the trials it holds."""
    named = evaluate_trials_task.with_options(task_run_name=trials_run_name([number for number, _ in batch]))
    return named.submit(batch, train_rows, config)


def _batch_results(batch: list[Proposal], future: Any) -> list[TrialResult]:
    """The batch's trials in order; a task that failed as a whole (a lost worker, say) fails each of its trials."""
    try:
        results: list[TrialResult] = future.result()  # in the batch's order (training.search.evaluate_trials)
    except Exception as err:
        return [TrialResult(number, params, None, None, 0.0, error_text(err)) for number, params in batch]
    return results


def _balance_text(batches: list[list[Proposal]], proposals: list[Proposal], seconds: list[float]) -> str:
    """How a round was balanced, for the flow's log: each task's trials and their estimated seconds."""
    estimate = {number: s for (number, _), s in zip(proposals, seconds, strict=True)}
    parts = [f"{trials_span([n for n, _ in b])} ~{sum(estimate[n] for n, _ in b):.1f} s" for b in batches]
    return "trials balanced over tasks by the seconds earlier trials predict: " + "; ".join(parts)


def _failed() -> object:
    import optuna

    return optuna.trial.TrialState.FAIL


def _best_text(result: SearchResult) -> str:
    if not result.completed:
        return "none (every trial failed so far)"
    best = result.best
    return f"trial {best.number} {result.metric}={best.score:.4f} {best.params}"
