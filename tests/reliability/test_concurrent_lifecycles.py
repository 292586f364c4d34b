"""Two ``mlops run`` processes at once on the same store, two queued requests and an empty registry (both runs
believe they train the first model): each request runs exactly once, the semvers are 1.0.0 and 1.1.0 (none
duplicated, none skipped), and the registry ends with one champion and one challenger, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from core.intake import submit_request
from core.names import CHALLENGER, CHAMPION, TAG_REQUEST_ID
from services.context import open_context
from tests.conftest import DEMO_CONFIG, REPO
from tests.reliability.test_interrupted_request import environment


@pytest.mark.timeout(300)
@pytest.mark.xfail(
    strict=False,
    reason="known race, not yet fixed: two registrations of a model's first version within milliseconds can both "
    "take the first-model path (the semver check and the version creation are separate calls; the fix is a "
    "per-model lock row in the project store). Seen on PostgreSQL in the fresh-clone check of 2026-11-30.",
)
def test_two_lifecycle_runs_at_once_run_each_request_once_and_agree_on_semvers_and_aliases(
    settings: Any, any_store_url: str, prefect_api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DATABASE_URL", any_store_url)
    from core.settings import get_settings

    context = open_context(get_settings(), config_path=DEMO_CONFIG)
    requests = [
        submit_request(context.store, DEMO_CONFIG, "minor", title, "", None, submitted_by="test")
        for title in ("first", "second")
    ]
    env = environment(settings.home_dir, MLOPS_DATABASE_URL=any_store_url, PREFECT_API_URL=prefect_api_url)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "mlops.cli", "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in requests
    ]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(out[-3000:] for out in outputs)
    assert all(out.count("registered: ") == 1 for out in outputs), outputs  # each command ran one request

    after = {r.id: context.store.get(r.id) for r in requests}
    assert {r.status for r in after.values()} == {"succeeded"}, {i: r.status_reason for i, r in after.items()}
    experiment = context.mlflow.get_experiment_by_name(context.config.model_name).experiment_id
    for request in requests:  # one MLflow run per request: none ran twice
        runs_of = context.mlflow.search_runs([experiment], filter_string=f"tags.`{TAG_REQUEST_ID}` = '{request.id}'")
        assert len(runs_of) == 1, f"request #{request.id} ran {len(runs_of)} times"

    versions = context.registry.versions(with_metrics=False)
    assert sorted(v.semver for v in versions) == ["1.0.0", "1.1.0"]
    assert sorted(r.semver for r in after.values()) == ["1.0.0", "1.1.0"]
    by_semver = {v.semver: v.version for v in versions}
    assert context.registry.aliases() == {CHAMPION: by_semver["1.0.0"], CHALLENGER: by_semver["1.1.0"]}
    champion_moves = [e for e in context.store.alias_history(context.model_name) if e.alias == CHAMPION]
    assert [(e.from_version, e.to_version) for e in champion_moves] == [(None, by_semver["1.0.0"])]
