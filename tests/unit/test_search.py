"""The search's pure parts: the space, cross-validation on training rows only, ranking, and errors that name the fix."""

from __future__ import annotations

from typing import Any

import pytest

from core.config import ProjectConfig, load_config
from core.errors import ConfigError
from tests.conftest import DEMO_CONFIG
from training.data import load_data, split_holdout
from training.search import (
    SearchResult,
    TrialResult,
    check_search_space,
    cross_validate,
    evaluate_trials,
    make_study,
    plan_order,
    suggest,
)

SPACE = {
    "C": {"type": "float", "low": 0.001, "high": 10.0, "log": True},
    "max_iter": {"type": "int", "low": 200, "high": 400},
    "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
}


def searching(**search: Any) -> ProjectConfig:
    return load_config(DEMO_CONFIG, {"training.search": {"space": SPACE, "n_trials": 4, **search}})


def test_a_seeded_study_proposes_the_same_trials_and_respects_types() -> None:
    config = searching(seed=7)
    assert config.training.search is not None
    space = config.training.search.space
    runs = []
    for _ in range(2):
        study = make_study(config.training.search, "maximize")
        runs.append([suggest(study.ask(), space) for _ in range(3)])
    assert runs[0] == runs[1]
    for params in runs[0]:
        assert 0.001 <= params["C"] <= 10.0 and isinstance(params["max_iter"], int)
        assert params["class_weight"] in (None, "balanced")


def test_cross_validation_scores_the_training_rows_only() -> None:
    config = searching()
    split = split_holdout(load_data(config).frame, config)
    cv = cross_validate({"C": 0.5}, split.train, config)
    assert len(cv.folds) == 3 and 0.8 < cv.mean <= 1.0 and cv.std >= 0


def test_the_best_trial_follows_the_metric_direction() -> None:
    trials = [TrialResult(0, {"a": 1}, 0.9, 0.0, 1.0), TrialResult(1, {"a": 2}, 0.95, 0.0, 1.0)]
    assert SearchResult("accuracy", "maximize", trials).best.number == 1
    assert SearchResult("rmse", "minimize", trials).best.number == 0
    failed = SearchResult("accuracy", "maximize", [TrialResult(0, {}, None, None, 0.0, "ValueError: bad")])
    with pytest.raises(ConfigError, match="every search trial failed"):
        _ = failed.best


def test_bad_spaces_are_config_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="search space is empty"):
        load_config(DEMO_CONFIG, {"training.search": {"space": {}}})
    with pytest.raises(ConfigError, match="low"):
        load_config(DEMO_CONFIG, {"training.search": {"space": {"C": {"type": "float", "low": 5, "high": 1}}}})
    config = load_config(DEMO_CONFIG, {"training.search": {"space": {"gamma": {"type": "float", "low": 0, "high": 1}}}})
    with pytest.raises(ConfigError, match=r"names \['gamma'\], which are not parameters of"):
        check_search_space(config)


def test_a_failing_trial_in_a_batch_fails_alone_with_its_error() -> None:
    config = searching()
    split = split_holdout(load_data(config).frame, config)
    results = evaluate_trials([(4, {"C": 0.5}), (5, {"C": -1.0}), (6, {"C": 2.0})], split.train, config)
    assert [t.number for t in results] == [4, 5, 6]
    assert [t.params for t in results] == [{"C": 0.5}, {"C": -1.0}, {"C": 2.0}]
    ok, failed, also_ok = results
    assert failed.score is None and failed.std is None
    assert failed.error.startswith("TrainingError: fitting sklearn.linear_model.LogisticRegression failed: The 'C'")
    for trial in (ok, also_ok):
        assert trial.error == "" and trial.score is not None and 0.8 < trial.score <= 1.0
    assert ok.score == cross_validate({"C": 0.5}, split.train, config).mean  # a batch scores as a lone trial would


def test_trials_per_task_defaults_to_one_task_per_worker_per_round() -> None:
    def per_task(**search: Any) -> int:
        config = searching(**search)
        assert config.training.search is not None
        return config.training.search.resolved_trials_per_task

    assert per_task(parallelism=2, dask_workers=2) == 1
    assert per_task(parallelism=8, dask_workers=2) == 4
    assert per_task(parallelism=5, dask_workers=2) == 3  # rounded up: two tasks, of 3 and 2 trials
    assert per_task(parallelism=2, dask_workers=4) == 1
    assert per_task(parallelism=8, dask_workers=2, trials_per_task=3) == 3


def test_trials_per_task_above_parallelism_is_a_config_error_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"trials_per_task \(3\) is larger than parallelism \(2\)"):
        searching(parallelism=2, trials_per_task=3)
    with pytest.raises(ConfigError, match=r"training\.search\.trials_per_task: Input should be greater than"):
        searching(trials_per_task=0)


FOREST = {
    "n_estimators": {"type": "int", "low": 40, "high": 160},
    "max_depth": {"type": "int", "low": 2, "high": 12},
    "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]},
}


def _forest_trials(numbers: range, rng: Any) -> list[tuple[int, dict[str, Any]]]:
    return [
        (n, {"n_estimators": int(rng.integers(40, 161)), "max_depth": int(rng.integers(2, 13)), "max_features": "sqrt"})
        for n in numbers
    ]


def _forest_seconds(params: dict[str, Any]) -> float:  # a forest's time: its trees, times a little for depth
    return 0.004 * params["n_estimators"] * (1 + params["max_depth"] / 20)


def _list_schedule(order: list[int], tasks: int, seconds: dict[int, float]) -> list[list[int]]:
    """What the round's queue does: each task takes the next trial of ``order`` as soon as it is free."""
    loads = [0.0] * tasks
    ran: list[list[int]] = [[] for _ in range(tasks)]
    for number in order:
        free = min(range(tasks), key=lambda k: (loads[k], k))
        loads[free] += seconds[number]
        ran[free].append(number)
    return ran


def test_a_round_waits_less_when_its_tasks_take_the_trials_longest_first_from_one_queue() -> None:
    """Tasks taking a round's trials from one queue, longest first by the seconds the first round's trials
    predict, finish the round (what the search waits for) sooner than fixed contiguous batches and than the same
    queue in trial order, over 50 seeded rounds; every trial runs exactly once."""
    import numpy as np

    from core.config import SearchParam

    space = {name: SearchParam(**p) for name, p in FOREST.items()}
    rng = np.random.default_rng(0)
    waits: dict[str, list[float]] = {"batches": [], "queue": [], "longest first": []}
    for _ in range(50):
        first = _forest_trials(range(8), rng)
        order, estimate = plan_order(first, space, [])
        assert estimate is None and order == first  # nothing to learn from yet: trial order
        done = [TrialResult(n, p, 0.9, 0.01, _forest_seconds(p) * rng.uniform(0.9, 1.1)) for n, p in first]
        second = _forest_trials(range(8, 16), rng)
        order, estimate = plan_order(second, space, done)
        assert estimate is not None and sorted(n for n, _ in order) == list(range(8, 16))
        assert [estimate[n] for n, _ in order] == sorted(estimate.values(), reverse=True)
        truth = {n: _forest_seconds(p) for n, p in second}
        assert np.corrcoef([estimate[n] for n in truth], list(truth.values()))[0, 1] > 0.9  # trees cost time
        splits = {
            "batches": [list(range(8, 12)), list(range(12, 16))],
            "queue": _list_schedule(list(range(8, 16)), 2, truth),
            "longest first": _list_schedule([n for n, _ in order], 2, truth),
        }
        for how, ran in splits.items():
            assert sorted(n for task in ran for n in task) == list(range(8, 16))
            waits[how].append(max(sum(truth[n] for n in task) for task in ran))
    best = np.array(waits["longest first"])
    assert best.mean() < 0.95 * np.mean(waits["batches"]) and best.mean() < np.mean(waits["queue"])
    assert sum(best <= np.array(waits["batches"]) + 1e-9) >= 45


def test_a_tasks_trials_read_as_a_span_when_contiguous() -> None:
    from tasks.search import trials_run_name, trials_span

    assert (trials_span([4]), trials_span([7, 5, 4, 6]), trials_span([8, 15, 9, 12])) == ("4", "4-7", "8,9,12,15")
    assert trials_span([]) == "none"
    assert trials_run_name(2, 1, 2) == "search-trials round 2 (1 of 2)"


def test_a_round_queue_in_the_flows_process_gives_each_trial_once_in_order() -> None:
    """Without Dask (a task runner in the flow's process) the round's queue lives in that process; its tasks,
    here two threads, take every trial exactly once, in the queue's order, and the queue is gone after the round."""
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    from tasks.search import _LOCAL_QUEUES, RoundQueue

    with RoundQueue.opened("round-1", [5, 3, 4, 0, 1, 2], None) as queue:
        assert list(islice(queue.take(), 2)) == [5, 3]  # a first task's two; the rest go to the two below
        with ThreadPoolExecutor(2) as pool:
            taken = list(pool.map(lambda _: list(queue.take()), range(2)))
        assert sorted(n for part in taken for n in part) == [0, 1, 2, 4]
        assert all(part == sorted(part, key=[4, 0, 1, 2].index) for part in taken)
    assert "round-1" not in _LOCAL_QUEUES
