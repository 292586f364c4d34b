"""`mlops trail`: a version's whole story from the four places it is kept, in time order, on real stores after real
lifecycle runs, a rollout aborted by a person and a monitor run; an unknown id exits 2 naming the ids that exist."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import NotFoundError
from core.intake import submit_request
from core.store.requests import ProjectStore
from deployments.rollout import decide_by_person, start_rollout
from flows.lifecycle import lifecycle
from flows.monitor import monitor
from mlops.trail import build_trail
from services.context import open_context
from tests.cli.test_cli import mlops
from tests.conftest import DEMO_CONFIG
from tests.flows.test_monitoring import write_traffic


def _run(store: ProjectStore, kind: str, title: str, overrides: dict[str, Any] | None = None) -> Any:
    req = submit_request(store, DEMO_CONFIG, kind, title, f"reason for {title}", overrides)
    return lifecycle(config_path=str(DEMO_CONFIG), request_id=req.id)


def test_the_trail_tells_a_versions_story_in_time_order(settings: Any, store: ProjectStore) -> None:
    first = _run(store, "major", "Bootstrap")
    second = _run(store, "minor", "Weaker regularisation", {"training.params.C": 0.5})
    assert (first.status, second.status) == ("registered", "registered")
    context = open_context(config_path=DEMO_CONFIG)
    rollout = start_rollout(context)
    assert rollout.challenger_request_id == second.request_id  # the rollout names the request behind its challenger
    decide_by_person(context, "abort", "not today")
    write_traffic(settings, first.version)
    monitor(config_path=str(DEMO_CONFIG))

    story = build_trail(context, "1.1.0")
    assert (story.version, story.request_id) == (second.version, second.request_id)
    kinds = [e.kind for e in story.events]
    assert kinds[0] == "request" and {"data", "run", "gate", "registration", "alias", "rollout"} <= set(kinds)
    assert [e.at for e in story.events] == sorted(e.at for e in story.events)
    text = "\n".join(e.summary for e in story.events)
    assert f"change request #{second.request_id} (minor) 'Weaker regularisation'" in text
    assert "data fingerprint sha256:" in text and "gate max_regression: pass" in text
    assert f"rollout #{rollout.id} aborted" in text and f"from request #{second.request_id}" in text
    assert "challenger: - -> v2" in text and "challenger: v2 -> (removed)" in text

    champion = build_trail(context, f"#{first.request_id}")
    assert champion.version == first.version
    assert any(e.kind == "monitor" and "monitor: healthy" in e.summary for e in champion.events)

    shown = mlops("trail", "1.1.0", "--json", home=settings.home_dir)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["events"] == json.loads(json.dumps(story.to_json()))["events"]
    unknown = mlops("trail", "7.0.0", home=settings.home_dir)
    assert unknown.returncode == 2 and "versions: 1 (1.0.0), 2 (1.1.0)" in unknown.stderr
    assert "requests: #1, #2" in unknown.stderr and "Traceback" not in unknown.stderr
    with pytest.raises(NotFoundError, match="#9"):
        build_trail(context, "#9")
