"""A lifecycle process SIGKILLed after claiming a request and opening its MLflow run: the next command marks the
request ``crashed`` with the reason and the command to run, ends the MLflow run as KILLED, and the request can be
retried or cancelled. A request whose process is alive is never taken for crashed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import RequestError
from core.faults import LIFECYCLE_RUN_OPENED, VERSION_CREATED
from core.intake import submit_request
from core.names import DECISION_ABANDONED, TAG_DECISION, TAG_REQUEST_ID
from services.context import open_context
from tests.conftest import DEMO_CONFIG, ISOLATED_ENV, REPO

# The lifecycle flow's first steps, without a Prefect server (whose temporary server a SIGKILL would orphan).
CLAIM_AND_TRAIN = """
from services.context import open_context
from tasks.intake import claim_request_task
from training.tracking import open_lifecycle_run
context = open_context()
request = claim_request_task.fn(context.store, {request_id}, context.mlflow)
open_lifecycle_run(context.mlflow, context.settings, context.config, request)
raise SystemExit("the fault point was not reached")
"""


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    env.update(MLOPS_HOME=str(home), MLOPS_CONFIG=str(DEMO_CONFIG), PYTHONPATH=str(REPO), COLUMNS="250")
    env.update(extra)
    return env


def mlops(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops.cli", *args],
        cwd=REPO,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_request_whose_process_was_killed_is_marked_crashed_and_can_be_retried_or_cancelled(
    settings: Any,
) -> None:
    context = open_context(settings, config_path=DEMO_CONFIG)
    request = submit_request(context.store, DEMO_CONFIG, "minor", "retrain", "weekly", None, submitted_by="test")
    killed = subprocess.run(
        [sys.executable, "-c", CLAIM_AND_TRAIN.format(request_id=request.id)],
        cwd=REPO,
        env=environment(settings.home_dir, MLOPS_FAULT_POINT=LIFECYCLE_RUN_OPENED),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert context.store.get(request.id).status == "running"  # what the dead process left

    listed = mlops(settings.home_dir, "request", "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "crashed" in listed.stdout and f"mlops request retry {request.id}" in listed.stdout
    assert context.store.get(request.id).status == "crashed"
    runs = context.mlflow.search_runs(
        [context.mlflow.get_experiment_by_name(context.config.model_name).experiment_id],
        filter_string=f"tags.`{TAG_REQUEST_ID}` = '{request.id}'",
    )
    assert [r.info.status for r in runs] == ["KILLED"]

    retried = mlops(settings.home_dir, "request", "retry", str(request.id))
    assert retried.returncode == 0 and f"mlops run --request {request.id}" in retried.stdout
    assert context.store.get(request.id).status == "queued"
    cancelled = mlops(settings.home_dir, "request", "cancel", str(request.id))
    assert cancelled.returncode == 0, cancelled.stderr[-2000:]
    assert context.store.get(request.id).status == "cancelled"
    again = mlops(settings.home_dir, "request", "cancel", str(request.id))
    assert again.returncode == 2 and "nothing to cancel" in again.stdout + again.stderr


def test_a_request_whose_process_is_alive_is_not_taken_for_crashed(settings: Any) -> None:
    context = open_context(settings, config_path=DEMO_CONFIG)
    request = submit_request(context.store, DEMO_CONFIG, "minor", "retrain", "weekly", None, submitted_by="test")
    context.store.claim(request.id)  # this (live) process claims it
    assert context.store.recover_crashed() == []
    assert context.store.get(request.id).status == "running"
    with pytest.raises(RequestError, match=f"pid {os.getpid()}"):
        context.store.cancel(request.id, "test")
    with pytest.raises(RequestError, match="running now"):
        context.store.retry(request.id, "test")


REGISTER = """
from core.tracking import code_version
from services.context import open_context
from tasks.intake import claim_request_task
from training.data import load_data, split_holdout
from training.fit import fit_model, score_model
from training.gates import decide_gates
from training.registration import Candidate, register_version, score_champion
from training.tracking import log_model, open_lifecycle_run
context = open_context()
config = context.config
request = claim_request_task.fn(context.store, {request_id}, context.mlflow)
run_id = open_lifecycle_run(context.mlflow, context.settings, config, request)
data = load_data(config)
split = split_holdout(data.frame, config)
model = fit_model(split.train, config)
champion = score_champion(context.registry, split.holdout, config)
decision = decide_gates(score_model(model, split.holdout, config), champion.metrics, config)
uri = log_model(context.mlflow, run_id, model, split.train, config)
candidate = Candidate(uri, run_id, request, decision, champion, data.fingerprint, data.source, len(split.holdout),
                      code_version(config.base_dir))
register_version(context.registry, candidate, "test", context.settings.fault_point)
raise SystemExit("the fault point was not reached")
"""


def test_a_version_left_without_its_alias_is_marked_abandoned_and_its_semver_named(
    settings: Any, demo_config: Any
) -> None:
    from tests.gateway_fixtures import register

    register(settings, demo_config, "1.0.0", "champion")
    context = open_context(settings, config_path=DEMO_CONFIG)
    request = submit_request(context.store, DEMO_CONFIG, "minor", "retrain", "weekly", None, submitted_by="test")
    killed = subprocess.run(
        [sys.executable, "-c", REGISTER.format(request_id=request.id)],
        cwd=REPO,
        env=environment(settings.home_dir, MLOPS_FAULT_POINT=VERSION_CREATED),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = [v for v in context.registry.versions(with_metrics=False) if v.semver == "1.1.0"]
    assert len(left) == 1 and left[0].aliases == []  # created, tagged, never aliased

    shown = mlops(settings.home_dir, "request", "show", str(request.id))
    assert shown.returncode == 0, shown.stderr[-2000:]
    after = context.store.get(request.id)
    assert after.status == "crashed"
    assert f"v{left[0].version} (1.1.0)" in after.status_reason and "abandoned" in after.status_reason
    assert context.registry.resolve(left[0].version).tags[TAG_DECISION] == DECISION_ABANDONED
    assert context.registry.aliases() == {"champion": "1"}  # nothing half-promoted
