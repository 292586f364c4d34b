"""Benchmark: the hyperparameter search on 1 Dask worker against 2, through Prefect, same seeded search.

Runs the ``hyperparameter-search`` subflow (``flows/search.py``: Optuna TPE proposing ``parallelism`` trials at a
time, each a Prefect task on a local Dask cluster, scored by 5-fold cross-validation on the training rows) twice
with the same seed and ``parallelism``: once on one Dask worker process, once on two. Reports the wall time of each
(cluster start included), the speedup, and whether both found the same best trial. A random forest on the Wisconsin
data makes each trial about a second of CPU, so the search, not Dask's overhead, dominates.

``--trials-per-task`` is ``training.search.trials_per_task``: how many trials one Prefect task runs. The default, 1,
is one task per trial as before batching (so the rows already in benchmarks/README.md keep their commands);
``auto`` is the product's default, ``ceil(parallelism / workers)``, one task per worker per round, which only
batches when ``--parallelism`` exceeds the workers (for example ``--parallelism 8 --trials-per-task auto``).

Usage (repository root; on an otherwise idle machine)::

    .venv/bin/python benchmarks/search_speedup.py [--trials 16] [--parallelism 2] [--trials-per-task 1|auto|N]
        [--warm-cluster] [--repeat N] [--out FILE]

``--repeat N`` runs N pairs, alternating which side goes first (1 then 2 workers, then 2 then 1, ...), and reports
each pair and the median speedup: this host's speed drifts by 2-3x within an hour, which one pair run back to back
cannot tell from the search's own speedup. Writes ``benchmarks/results/search_speedup.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SPACE = {
    "n_estimators": {"type": "int", "low": 40, "high": 160},
    "max_depth": {"type": "int", "low": 2, "high": 12},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 8},
    "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]},
}


def run(
    trials: int,
    workers: int,
    parallelism: int = 2,
    cv_folds: int = 5,
    trials_per_task: int | None = 1,
    address: str | None = None,
) -> dict[str, object]:
    from core.config import load_config
    from flows.search import TrainingRows, dask_runner, hyperparameter_search
    from services.context import open_context
    from training.data import load_data, split_holdout

    search = {
        "space": SPACE,
        "n_trials": trials,
        "parallelism": parallelism,
        "dask_workers": workers,
        "seed": 11,
        "cv_folds": cv_folds,
        "trials_per_task": trials_per_task,
    }
    overrides = {"training.estimator": "sklearn.ensemble.RandomForestClassifier", "training.params": {}}
    config = load_config(REPO / "config" / "project.yaml", {**overrides, "training.search": search})
    context = open_context(config=config)
    split = split_holdout(load_data(config).frame, config)
    assert config.training.search is not None
    started = time.perf_counter()
    if address is None:
        runner = dask_runner(context.settings, config.training.search)
    else:  # an existing cluster, as with MLOPS_DASK_ADDRESS
        from prefect_dask import DaskTaskRunner

        runner = DaskTaskRunner(address=address)
    result = hyperparameter_search.with_options(task_runner=runner)(config, TrainingRows(frame=split.train))
    wall = time.perf_counter() - started
    best = result.best
    return {
        "workers": workers,
        "trials_per_task": config.training.search.resolved_trials_per_task,
        "wall_seconds": round(wall, 2),
        "search_loop_seconds": round(result.wall_seconds, 2),  # the trials, without the cluster's start and stop
        "trials": len(result.trials),
        "best_trial": best.number,
        "best_params": best.params,
        "best_cv_accuracy": best.score,
        "trial_cpu_seconds": round(sum(t.seconds for t in result.trials), 2),
        "trial_seconds": [round(t.seconds, 2) for t in result.trials],  # by trial number
        "rounds": result.rounds,  # per round, the trials each task took
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--parallelism", type=int, default=2, help="trials proposed (and run) at a time")
    parser.add_argument("--cv-folds", type=int, default=5, help="folds per trial (more: heavier trials)")
    parser.add_argument(
        "--trials-per-task",
        type=_per_task,
        default=1,
        help="trials per Prefect task: N (at most --parallelism), or auto = ceil(parallelism / workers); default 1",
    )
    parser.add_argument(
        "--warm-cluster",
        action="store_true",
        help="time each search on an already running local Dask cluster whose workers have run one trial each "
        "(as with MLOPS_DASK_ADDRESS), instead of a cluster started (and its workers' imports paid) by the run",
    )
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs, alternating which goes first")
    parser.add_argument("--out", default="search_speedup.json", help="file under benchmarks/results/")
    args = parser.parse_args(argv)
    per_task = args.trials_per_task
    with tempfile.TemporaryDirectory(prefix="search-") as tmp:
        os.environ["MLOPS_HOME"] = tmp
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        from core.settings import get_settings

        get_settings().apply_to_environment()
        # warm-up, not timed: the first flow of the process starts Prefect's temporary API server (about 10 s),
        # which would otherwise be charged to whichever run comes first
        run(2, 1, args.parallelism, args.cv_folds, per_task)
        pairs = []
        for i in range(args.repeat):
            sides = {}
            for workers in (1, 2) if i % 2 == 0 else (2, 1):
                if args.warm_cluster:
                    sides[workers] = warm_run(args, workers)
                else:
                    sides[workers] = run(args.trials, workers, args.parallelism, args.cv_folds, per_task)
            pairs.append(_pair(sides[1], sides[2]))
    cluster = "warm local cluster" if args.warm_cluster else "cluster started by each run"
    print(f"parallelism {args.parallelism}, {args.cv_folds} folds, trials per task {per_task or 'auto'}, {cluster}\n")
    print(
        "| pair | 1 worker: wall / loop / trial s | 2 workers: wall / loop / trial s | 2 workers busy | "
        "trials slower on 2 | speedup: wall (loop) | same best trial |"
    )
    print("|---:|---|---|---:|---:|---:|:---:|")
    for i, pair in enumerate(pairs, start=1):
        sides = [pair["one"], pair["two"]]
        cells = [
            " / ".join(str(r[k]) for k in ("wall_seconds", "search_loop_seconds", "trial_cpu_seconds")) for r in sides
        ]
        print(
            f"| {i} | {cells[0]} | {cells[1]} | {pair['busy']:.0%} | {pair['trials_slower']:+.0%} | "
            f"{pair['speedup']:.2f}x ({pair['search_loop_speedup']:.2f}x) | {'yes' if pair['same_best'] else 'NO'} "
            f"(trial {pair['one']['best_trial']}) |"
        )
    median = statistics.median(p["speedup"] for p in pairs)
    same = all(p["same_best"] for p in pairs)
    print(f"\nmedian speedup {median:.2f}x over {len(pairs)} pair(s); same best trial in all: {same}")
    out = REPO / "benchmarks" / "results" / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "parallelism": args.parallelism,
        "cv_folds": args.cv_folds,
        "trials_per_task": per_task or "auto",
        "warm_cluster": args.warm_cluster,
        "median_speedup": median,
        "pairs": pairs,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _pair(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """One worker against two: the speedups, how busy the two workers were (their trials' seconds over twice the
    loop) and how much slower the same trials ran on two workers than on one."""
    return {
        "one": one,
        "two": two,
        "speedup": one["wall_seconds"] / two["wall_seconds"],
        "search_loop_speedup": one["search_loop_seconds"] / two["search_loop_seconds"],
        "busy": two["trial_cpu_seconds"] / 2 / two["search_loop_seconds"],
        "trials_slower": two["trial_cpu_seconds"] / one["trial_cpu_seconds"] - 1,
        "same_best": one["best_trial"] == two["best_trial"] and one["best_params"] == two["best_params"],
    }


def warm_run(args: argparse.Namespace, workers: int) -> dict[str, object]:
    """The search on a local cluster of ``workers`` started beforehand, each worker warmed by one trial (its imports
    and Prefect's first task in that process), so the figure is the search's own."""
    from distributed import LocalCluster

    from flows.search import prefect_api_url

    # workers that report to the benchmark's Prefect API, as a user's cluster does to theirs (PREFECT_API_URL)
    env = {"PREFECT_API_URL": prefect_api_url()}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=env) as cluster:
        address = cluster.scheduler_address
        run(workers, workers, workers, 2, 1, address)  # one trial per worker
        return run(args.trials, workers, args.parallelism, args.cv_folds, args.trials_per_task, address)


def _per_task(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'auto', got {value!r}")
    return number


if __name__ == "__main__":
    raise SystemExit(main())
