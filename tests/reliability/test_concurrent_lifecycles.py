"""Two ``mlops run`` processes at once on the same store, two queued requests and an empty registry (both runs
believe they train the first model): each request runs exactly once, the semvers are 1.0.0 and 1.1.0 (none
duplicated, none skipped), and the registry ends with one champion and one challenger, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from core.intake import submit_request
from core.names import CHALLENGER, CHAMPION, TAG_REQUEST_ID
from core.tracking import ensure_experiment
from services.context import open_context
from tests.conftest import DEMO_CONFIG, REPO
from tests.reliability.test_interrupted_request import environment
from training.data import split_holdout
from training.fit import fit_model
from training.gates import GateDecision
from training.registration import Candidate, ChampionScore, register_version
from training.tracking import log_model
from training.window import load_training_data


@pytest.mark.timeout(300)
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


def test_two_registrations_released_together_on_an_empty_registry_make_one_champion_and_one_challenger(
    settings: Any, any_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above without its timing luck: both registrations start at the same instant, each on a registry
    object of its own (as two processes have), after both scored an empty registry."""
    monkeypatch.setenv("MLOPS_DATABASE_URL", any_store_url)
    from core.settings import get_settings

    context = open_context(get_settings(), config_path=DEMO_CONFIG)
    model_uri, run_id = _logged_model(context)
    decision = GateDecision(True, "accuracy", 0.9, None, None, [])
    no_champion = ChampionScore(None, None, None, "no champion yet")
    start, results, errors = threading.Barrier(2), [], []

    def register(title: str) -> None:
        request = context.store.submit("minor", title, "")
        candidate = Candidate(model_uri, run_id, request, decision, no_champion, "fp", "demo", 10, "test")
        own = open_context(get_settings(), config_path=DEMO_CONFIG)
        start.wait()
        try:
            results.append(register_version(own.registry, candidate, actor="test"))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=register, args=(t,)) for t in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted((r.semver, r.aliases[0]) for r in results) == [("1.0.0", CHAMPION), ("1.1.0", CHALLENGER)]
    champion_moves = [e for e in context.store.alias_history(context.model_name) if e.alias == CHAMPION]
    assert len(champion_moves) == 1  # the second never replaced the first without a rollout


def _logged_model(context: Any) -> tuple[str, str]:
    client, config = context.mlflow, context.config
    data = load_training_data(config, None)
    split = split_holdout(data.frame, config)
    run_id = client.create_run(ensure_experiment(client, config.model_name, context.settings)).info.run_id
    uri = log_model(client, run_id, fit_model(split.train, config), split.train, config, split.holdout)
    client.set_terminated(run_id)
    return uri, run_id
