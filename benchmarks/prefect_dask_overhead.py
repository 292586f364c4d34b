"""Benchmark: what one Prefect task costs on a ``DaskTaskRunner``, apart from its work.

Submits ``--tasks`` tasks that spin for ``--work`` seconds (0: no work at all) to a local Dask cluster of 1 and of 2
worker processes, through a Prefect flow, all at once, and reports the wall time of the flow body. With no work
the time is Prefect's per-task orchestration; whether it shrinks with 2 workers says whether that overhead runs in
parallel. This is the cost every search trial pays (``flows/search.py``), measured without the search.

Usage (repository root; on an otherwise idle machine)::

    .venv/bin/python benchmarks/prefect_dask_overhead.py [--tasks 16] [--work 0 0.6]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(name="spin", cache_policy=NO_CACHE)
def spin(index: int, seconds: float) -> int:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pass
    return index


@flow(name="prefect-dask-overhead")
def submit_all(tasks: int, seconds: float) -> float:
    started = time.perf_counter()
    futures = [spin.submit(i, seconds) for i in range(tasks)]
    for future in futures:
        future.result()
    return time.perf_counter() - started


def main() -> None:
    from prefect_dask import DaskTaskRunner

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--work", type=float, nargs="+", default=[0.0, 0.6])
    args = parser.parse_args()
    submit_all(1, 0.0)  # warm-up: starts Prefect's temporary API server, not timed
    print("| Dask workers | work per task s | tasks | wall s | wall per task s |\n|---:|---:|---:|---:|---:|")
    for workers in (1, 2):
        runner = DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True},
        )
        for seconds in args.work:
            wall = submit_all.with_options(task_runner=runner)(args.tasks, seconds)
            print(f"| {workers} | {seconds:g} | {args.tasks} | {wall:.2f} | {wall / args.tasks:.3f} |", flush=True)


if __name__ == "__main__":
    main()
