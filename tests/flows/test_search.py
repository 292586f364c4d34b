"""A request with a search: trials on a real local Dask cluster through Prefect, child runs in MLflow, the best
trial registered through the usual gates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from prefect.artifacts import Artifact

from core.config import load_config
from core.errors import MlopsError
from core.intake import submit_request
from core.store.requests import ProjectStore
from flows.lifecycle import lifecycle
from flows.search import TrainingRows, dask_runner, hyperparameter_search
from tests.conftest import DEMO_CONFIG, REPO
from training.data import load_data, split_holdout

SEARCH = {
    "space": {
        "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
        "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
    },
    "n_trials": 4,
    "parallelism": 4,
    "dask_workers": 2,  # so two search-trials tasks sharing the round's four trials
    "seed": 3,
}


@pytest.mark.slow
def test_a_search_runs_on_dask_and_registers_its_best_trial(settings: Any, store: ProjectStore) -> None:
    req = submit_request(store, DEMO_CONFIG, "major", "Tuned", "search C", {"training.search": SEARCH})
    outcome = lifecycle(config_path=str(DEMO_CONFIG), request_id=req.id)
    assert outcome.status == "registered", outcome.decision

    client = MlflowClient(settings.tracking_uri)
    parent = client.get_run(outcome.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=50
    )
    assert len(children) == 4 and all("cv_accuracy" in c.data.metrics for c in children)
    best = max(children, key=lambda c: c.data.metrics["cv_accuracy"])
    assert parent.data.tags["mlops.search_best_trial"] == best.info.run_name.removeprefix("trial ")
    assert parent.data.metrics["best_cv_accuracy"] == pytest.approx(best.data.metrics["cv_accuracy"])
    assert client.get_model_version("breast-cancer-classifier", outcome.version).run_id == parent.info.run_id
    assert parent.data.params["search.best.C"] == best.data.params["C"]  # the candidate was trained with these
    art = Artifact.get("search-breast-cancer-classifier")
    assert art is not None and "| trial | accuracy |" in art.data
    bar = Artifact.get("search-progress-breast-cancer-classifier")  # the run's progress bar in the Prefect UI
    assert bar is not None and bar.type == "progress" and float(bar.data) == 100.0
    assert bar.description is not None and bar.description.startswith("4 of 4 trials; best so far trial ")
    search_run = _newest_search_run()
    names = ["search-trials round 1 (1 of 2)", "search-trials round 1 (2 of 2)"]  # one task per worker
    assert _task_run_names(search_run) == names
    recorded = _flow_run_parameters(search_run)["train_rows"]  # what Prefect's database and UI keep: not the rows
    assert set(recorded) == {"rows", "columns", "sha256"} and recorded["rows"] > 100, recorded


@pytest.mark.parametrize(("per_task", "tasks"), [(None, [2, 1]), (3, [2, 1])])
def test_batching_trials_per_task_keeps_the_trials_and_fails_only_the_bad_ones(
    settings: Any, per_task: int | None, tasks: list[int]
) -> None:
    """The same seeded search, one trial per Prefect task against fewer tasks sharing each round (auto: 2, or 3 per
    task: 2 tasks for a round of 4, then 1 for the last 2): the same trials, scores and best trial, each trial run
    exactly once; a trial with a negative C fails alone, the others of its task go on."""
    space = {
        "C": {"type": "float", "low": -1.0, "high": 3.0},  # C <= 0 is invalid for LogisticRegression
        "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
    }
    search = {"space": space, "n_trials": 6, "parallelism": 4, "dask_workers": 2, "cv_folds": 2, "seed": 5}

    def run(trials_per_task: int | None) -> tuple[list[tuple[Any, ...]], list[list[list[int]]], list[str]]:
        config = load_config(DEMO_CONFIG, {"training.search": {**search, "trials_per_task": trials_per_task}})
        train = split_holdout(load_data(config).frame, config).train
        state = hyperparameter_search(config, TrainingRows(frame=train), return_state=True)
        result = state.result()
        trials = [(t.number, t.params, t.score, t.std, t.error) for t in result.trials]
        names = _task_run_names(state.state_details.flow_run_id)
        return [*trials, ("best", result.best.number)], result.rounds, names

    one_per_task, rounds, names = run(1)
    assert [len(r) for r in rounds] == [4, 2] and len(names) == 6
    shared, rounds, names = run(per_task)
    assert shared == one_per_task
    assert [len(r) for r in rounds] == tasks  # the Prefect UI shows a run per task: round and place
    assert names == [f"search-trials round {r} ({k} of {n})" for r, n in enumerate(tasks, 1) for k in range(1, n + 1)]
    assert [sorted(n for task in r for n in task) for r in rounds] == [[0, 1, 2, 3], [4, 5]]  # each trial once
    trials = one_per_task[:-1]
    assert [t[0] for t in trials] == list(range(6))
    failed = [t for t in trials if t[1]["C"] <= 0]
    assert failed and len(failed) < len(trials)  # the seed gives both kinds
    for _, _, score, _, error in failed:
        assert score is None and error.startswith("TrainingError: fitting sklearn.linear_model.LogisticRegression")
    assert all(t[2] is not None and t[4] == "" for t in trials if t[1]["C"] > 0)


@pytest.mark.slow
def test_a_task_free_first_takes_the_rest_of_the_round(settings: Any) -> None:
    """On a real two-worker Dask cluster, the round's first trial is slow (6 s per fit) and its other three fast:
    the task that took the slow one runs only it, the other task takes the other three meanwhile, instead of each
    running a fixed half of the round."""
    search = {
        "space": {"C": {"type": "categorical", "choices": [0.01, 1.0]}},  # C 0.01 is the slow one
        "n_trials": 4,
        "parallelism": 4,
        "dask_workers": 2,
        "cv_folds": 2,
        "seed": 11,  # proposes C = 0.01, 1.0, 1.0, 1.0
    }
    overrides = {"training.estimator": "tests.estimators.SlowWhenTinyCLogisticRegression", "training.search": search}
    config = load_config(DEMO_CONFIG, overrides)
    assert config.training.search is not None
    train = split_holdout(load_data(config).frame, config).train
    runner = dask_runner(settings, config.training.search)
    result = hyperparameter_search.with_options(task_runner=runner)(config, TrainingRows(frame=train))
    assert [t.params["C"] for t in result.trials] == [0.01, 1.0, 1.0, 1.0]
    assert all(t.score is not None for t in result.trials)
    (ran,) = result.rounds
    assert sorted(ran) == [[0], [1, 2, 3]], ran


def test_a_search_past_its_timeout_stops_after_the_round_in_progress_and_says_so(settings: Any) -> None:
    space = {"C": {"type": "float", "low": 0.1, "high": 2.0}}
    search = {"space": space, "n_trials": 6, "parallelism": 2, "dask_workers": 1, "cv_folds": 2, "seed": 2}
    config = load_config(DEMO_CONFIG, {"training.search": {**search, "timeout_seconds": 0.001}})
    train = split_holdout(load_data(config).frame, config).train
    result = hyperparameter_search(config, TrainingRows(frame=train))
    assert [t.number for t in result.trials] == [0, 1]  # the first round ran; no second one was proposed
    assert result.stopped_early == "timeout of 0.001 s after 2 trials"
    bar = Artifact.get("search-progress-breast-cancer-classifier")
    assert bar is not None and float(bar.data) == pytest.approx(100 * 2 / 6)
    assert bar.description == "stopped: timeout of 0.001 s after 2 trials"


def test_an_unreachable_dask_scheduler_is_a_clear_error(
    settings: Any, store: ProjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DASK_ADDRESS", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    req = submit_request(store, DEMO_CONFIG, "major", "Tuned", "search C", {"training.search": SEARCH})
    with pytest.raises(
        MlopsError, match=re.escape("no Dask scheduler answered at MLOPS_DASK_ADDRESS=tcp://127.0.0.1:9")
    ):
        lifecycle(config_path=str(DEMO_CONFIG), request_id=req.id)
    assert store.get(req.id).status == "failed"


EMBEDDED_SEARCH = """
import json, sys
from core.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    settings.apply_to_environment()  # before Prefect is imported, as `mlops` does (its server's start-up timeout)
    from core.config import load_config
    from flows.search import TrainingRows, dask_runner, hyperparameter_search
    from training.data import load_data, split_holdout

    search = {"space": {"C": {"type": "float", "low": 0.1, "high": 2.0}}, "n_trials": 2, "parallelism": 2,
              "dask_workers": 2, "cv_folds": 2, "seed": 1}
    estimator = "tests.estimators.ServerSpottingLogisticRegression"
    config = load_config(sys.argv[1], {"training.estimator": estimator, "training.search": search})
    train = split_holdout(load_data(config).frame, config).train
    runner = dask_runner(settings, config.training.search)
    result = hyperparameter_search.with_options(task_runner=runner)(config, TrainingRows(frame=train))
    print(json.dumps([t.error for t in result.trials]))
"""


@pytest.mark.slow
def test_local_dask_workers_report_to_the_flows_prefect_api(home: Path, tmp_path: Path) -> None:
    """On the embedded defaults (no PREFECT_API_URL: the flow's process starts a temporary API server), the local
    cluster's workers are given that server's address. Without it each worker started a temporary server of its own
    at its first task, seconds of CPU beside the trials; the estimator fails a trial in a worker that has one. Run
    in a fresh process, as `mlops run` is: this session's test API is not the embedded one."""
    script = tmp_path / "search.py"
    script.write_text(EMBEDDED_SEARCH)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, str(script), str(DEMO_CONFIG)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["", ""]


@pytest.mark.slow
def test_a_lost_dask_worker_fails_the_trials_its_task_took_only(settings: Any) -> None:
    """A task whose worker dies (here: a trial ends its process) fails the trials it had taken, with that error;
    the other task takes the rest of the round, and the search goes on."""
    import dask

    space = {"C": {"type": "float", "low": 0.01, "high": 10.0}}
    search = {"space": space, "n_trials": 4, "parallelism": 4, "dask_workers": 2, "cv_folds": 2, "seed": 1}
    overrides = {"training.estimator": "tests.estimators.WorkerKillingLogisticRegression", "training.search": search}
    config = load_config(DEMO_CONFIG, overrides)
    assert config.training.search is not None
    train = split_holdout(load_data(config).frame, config).train
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # no retry on the next worker
        runner = dask_runner(settings, config.training.search)
        result = hyperparameter_search.with_options(task_runner=runner)(config, TrainingRows(frame=train))
    killers = [t for t in result.trials if t.params["C"] > 5]
    assert 0 < len(killers) < 4, [t.params for t in result.trials]  # the seed gives both kinds
    (ran,) = result.rounds
    assert [] in ran  # the dead task reported nothing; the other reported what it ran
    reported = {n for task in ran for n in task}
    for trial in result.trials:
        if trial.number in reported:
            assert trial.score is not None and trial.error == "", trial
        else:  # taken by the dead task: the killer, and any it had finished before
            assert trial.score is None and trial.error.startswith("KilledWorker: "), trial.error
    assert all(t.number not in reported for t in killers) and reported


def _task_run_names(flow_run_id: Any) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(r.name for r in runs)


def _newest_search_run() -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["hyperparameter-search"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    return runs[0].id


def _flow_run_parameters(flow_run_id: Any) -> dict[str, Any]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return dict(client.read_flow_run(flow_run_id).parameters)
