"""The ``hyperparameter-search`` subflow of ``lifecycle``: Optuna proposes, batches of trials run as Prefect tasks
on Dask.

A local Dask cluster (``training.search.dask_workers`` processes) by default, or the scheduler at
``MLOPS_DASK_ADDRESS`` (for example one started by dask-kubernetes). Trials are proposed ``parallelism`` at a time
and told back in order, so the same seed gives the same trials on any number of workers. Each round runs as
``ceil(parallelism / trials_per_task)`` ``search-trials`` Prefect tasks (by default one per worker), so Prefect's
per-task cost is paid per task rather than per trial; the tasks take the round's trials one at a time from a
shared queue (``tasks.search.RoundQueue``), in trial order at first and then longest first by the seconds the
trials done so far predict (``training.search.plan_order``).
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
from tasks.search import RoundQueue, evaluate_trials_task, trials_run_name, trials_span
from training.search import Proposal, SearchResult, TrialResult, error_text, make_study, plan_order, suggest


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
        order, seconds = plan_order(proposals, search.space, result.trials)
        finished, ran = _run_round(len(result.rounds) + 1, order, -(-len(proposals) // per_task), rows, config)
        result.rounds.append(ran)
        logger.info("%s", _round_text(len(result.rounds), ran, finished, seconds))
        for trial in sorted(finished, key=lambda t: t.number):  # told in trial order, whichever task ran them
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


def _run_round(
    round_number: int, order: list[Proposal], tasks: int, rows: pd.DataFrame, config: ProjectConfig
) -> tuple[list[TrialResult], list[list[int]]]:
    """Run a round's trials on ``tasks`` Prefect tasks taking them from one queue; every proposal gets a result,
    and the trial numbers each task ran are returned for the log. A task that failed as a whole (a lost worker,
    say) fails the trials it had taken, which are the ones no task reports."""
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    runner = context.task_runner
    client = runner.client if isinstance(runner, DaskTaskRunner) else None
    name = f"search-{context.flow_run.id}-round-{round_number}"
    with RoundQueue.opened(name, [number for number, _ in order], client) as round_queue:
        futures = [
            evaluate_trials_task.with_options(task_run_name=trials_run_name(round_number, k, tasks)).submit(
                round_queue, order, rows, config
            )
            for k in range(1, tasks + 1)
        ]
        ran: list[list[int]] = []
        finished: dict[int, TrialResult] = {}
        lost = ""
        for future in futures:
            try:
                results: list[TrialResult] = future.result()
            except Exception as err:
                lost = lost or error_text(err)
                ran.append([])
                continue
            ran.append([t.number for t in results])
            finished.update((t.number, t) for t in results)
    missing = lost or "its task ended without reporting it (its worker was lost)"
    for number, params in order:
        if number not in finished:
            finished[number] = TrialResult(number, params, None, None, 0.0, missing)
    return list(finished.values()), ran


def _round_text(
    round_number: int, ran: list[list[int]], finished: list[TrialResult], seconds: dict[int, float] | None
) -> str:
    """Which trials each task of a round took, and their seconds (estimated when the order came from estimates)."""
    took = {t.number: t.seconds for t in finished}
    parts = []
    for k, numbers in enumerate(ran, start=1):
        part = f"task {k}: trials {trials_span(numbers)} in {sum(took[n] for n in numbers):.1f} s"
        if seconds is not None and numbers:
            part += f" (estimated {sum(seconds[n] for n in numbers):.1f} s)"
        parts.append(part)
    how = "longest first by the seconds earlier trials predict" if seconds is not None else "in trial order"
    return f"round {round_number}, trials taken {how}: " + "; ".join(parts)


def _failed() -> object:
    import optuna

    return optuna.trial.TrialState.FAIL


def _best_text(result: SearchResult) -> str:
    if not result.completed:
        return "none (every trial failed so far)"
    best = result.best
    return f"trial {best.number} {result.metric}={best.score:.4f} {best.params}"
