"""The ``hyperparameter-search`` subflow of ``lifecycle``: Optuna proposes, each trial is a Prefect task on Dask.

A local Dask cluster (``training.search.dask_workers`` processes) by default, or the scheduler at
``MLOPS_DASK_ADDRESS`` (for example one started by dask-kubernetes). Trials are proposed ``parallelism`` at a time
and told back in order, so the same seed gives the same trials on any number of workers.
"""

from __future__ import annotations

import time

import pandas as pd
from prefect import flow, get_run_logger

from core.config import ProjectConfig, SearchConfig
from core.errors import MlopsError
from core.settings import Settings
from tasks.search import evaluate_trial_task
from training.search import SearchResult, TrialResult, make_study, suggest


def dask_runner(settings: Settings, search: SearchConfig) -> object:
    """The task runner for the trials; an unreachable scheduler is an error now, not a hang later."""
    from prefect_dask import DaskTaskRunner

    if not settings.dask_address:
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": search.dask_workers, "threads_per_worker": 1, "processes": True},
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


@flow(name="hyperparameter-search")
def hyperparameter_search(config: ProjectConfig, train_rows: pd.DataFrame) -> SearchResult:
    """Run ``training.search`` over the training rows; the result ranks every trial by its cross-validated score."""
    logger = get_run_logger()
    search = config.training.search
    assert search is not None
    direction = config.evaluation.resolved_direction
    result = SearchResult(metric=config.evaluation.primary_metric, direction=direction)
    study = make_study(search, direction)
    started = time.monotonic()
    while len(result.trials) < search.n_trials:
        if search.timeout_seconds is not None and time.monotonic() - started > search.timeout_seconds:
            result.stopped_early = f"timeout of {search.timeout_seconds:g} s after {len(result.trials)} trials"
            break
        batch = [study.ask() for _ in range(min(search.parallelism, search.n_trials - len(result.trials)))]
        proposals = [suggest(trial, search.space) for trial in batch]
        futures = [evaluate_trial_task.submit(params, train_rows, config) for params in proposals]
        for trial, params, future in zip(batch, proposals, futures, strict=True):
            try:
                cv = future.result()
            except Exception as err:  # one bad corner of the space must not end the search
                study.tell(trial, state=_failed())
                result.trials.append(TrialResult(trial.number, params, None, None, 0.0, f"{type(err).__name__}: {err}"))
                continue
            study.tell(trial, cv.mean)
            result.trials.append(TrialResult(trial.number, params, cv.mean, cv.std, cv.seconds))
        logger.info("%d/%d trials; best so far %s", len(result.trials), search.n_trials, _best_text(result))
    result.wall_seconds = time.monotonic() - started
    return result


def _failed() -> object:
    import optuna

    return optuna.trial.TrialState.FAIL


def _best_text(result: SearchResult) -> str:
    if not result.completed:
        return "none (every trial failed so far)"
    best = result.best
    return f"trial {best.number} {result.metric}={best.score:.4f} {best.params}"
