"""Prefect task for loading the training data: retries where I/O can be flaky; the work is ``training.window``
(the configured source, plus labelled production rows when retraining includes them)."""

from __future__ import annotations

from datetime import datetime

from prefect import State, task
from prefect.cache_policies import NO_CACHE

from core.config import ProjectConfig
from core.errors import DataError
from core.store.predictions import PredictionLog
from training.window import TrainingData, load_training_data


def _retry_on_io_error(_task: object, _task_run: object, state: State) -> bool:
    """Retry a read that failed on I/O (a network share blinked); a DataError will not fix itself."""
    try:
        state.result()
    except DataError:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(
    name="load-data",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_on_io_error,
)
def load_training_data_task(
    config: ProjectConfig, log: PredictionLog | None, now: datetime | None = None
) -> TrainingData:
    """Read the configured data source and the labelled production rows of the retraining window, fingerprinted."""
    return load_training_data(config, log, now)
