"""Prefect task for a batch of search trials (it runs on a Dask worker); the work is ``training.search``.

A batch, not one trial per task: each Prefect task on Dask costs about 0.6 s of orchestration whatever it does
(benchmarks/README.md), so a round's trials are split into one task per worker and run one after another there.
Each trial keeps its own result, error and MLflow child run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from training.search import TrialResult, evaluate_trials


def trials_span(numbers: list[int]) -> str:
    """Trial numbers as a person reads them: ``4``, ``4-7`` when contiguous, else ``8,9,12,15``."""
    if len(numbers) == 1:
        return str(numbers[0])
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ",".join(str(n) for n in numbers)


def trials_run_name(numbers: list[int]) -> str:
    """The task run's name in the Prefect UI: which trials it holds."""
    return f"search-trials {trials_span(numbers)}"


@task(name="search-trials", cache_policy=NO_CACHE)
def evaluate_trials_task(
    trials: list[tuple[int, dict[str, Any]]], train_rows: pd.DataFrame, config: ProjectConfig
) -> list[TrialResult]:
    """Cross-validate each ``(trial number, params)`` on the training rows (never the holdout); a trial that raises
    fails alone, with its error in its result."""
    return evaluate_trials(trials, train_rows, config)
