"""SIGKILL the gateway mid-canary under load, restart it: the rollout resumes at the same step and weight, every
answer a caller received (and every label accepted) is counted once for the variant that gave it, and the next
evaluation of the rollout reads those counts."""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.config import ProjectConfig
from core.names import CHALLENGER, CHAMPION
from core.store.schema import feedback, get_engine, predictions
from deployments.rollout import apply, start_rollout, step
from deployments.rollout_policy import Evaluation
from deployments.serve import free_port
from services.context import open_context
from tests.reliability.test_gateway_crash import drive, start_gateway


def wait_for_canary(url: str, rollout_id: int, challenger: str) -> dict[str, Any]:
    """The gateway's view of the live rollout, once it routes to the challenger (a wait, not a speed assertion)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shown = httpx.get(f"{url}/v1/rollout", timeout=5).json()["rollout"]
        models = httpx.get(f"{url}/readyz", timeout=5).json()["models"]
        if shown and shown["id"] == rollout_id and models.get(CHALLENGER, {}).get("version") == challenger:
            return dict(shown)
        time.sleep(0.2)
    raise AssertionError("the gateway never routed to the challenger")


@pytest.mark.timeout(240)
def test_a_gateway_killed_mid_canary_resumes_the_same_step_with_every_answer_counted_once(
    settings: Any, demo_config: ProjectConfig, two_models: dict[str, str]
) -> None:
    context = open_context(settings, config=demo_config)
    started = start_rollout(context, "canary")
    # the flow's own decision to go to the next step (50%), so both variants answer a good share
    live = apply(context, started, Evaluation("advance", "step 1 passed (test)"), actor="test")
    assert (live.step_index, live.weight) == (1, 50.0)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gateway = start_gateway(settings.home_dir, settings.store_url, port)
    wait_for_canary(url, live.id, two_models[CHALLENGER])
    variants: dict[str, str] = {}
    answered, labelled = drive(url, gateway, kill_after=150, variants=variants)
    assert gateway.wait(timeout=30) == -signal.SIGKILL
    assert set(Counter(variants.values())) == {CHAMPION, CHALLENGER}, "the canary did not split the traffic"

    restarted = start_gateway(settings.home_dir, settings.store_url, port)  # replays the dead process's journal
    try:
        resumed = wait_for_canary(url, live.id, two_models[CHALLENGER])
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=60) in (0, -signal.SIGTERM)
    assert (resumed["status"], resumed["step_index"], resumed["weight"]) == ("running", 1, 50.0)
    assert resumed["served_weight"] == 50.0

    with get_engine(settings.store_url).connect() as conn:
        served = conn.execute(
            select(predictions.c.request_id, predictions.c.variant).where(
                predictions.c.served == 1, predictions.c.rollout_id == live.id
            )
        ).all()
        labels = Counter(conn.execute(select(feedback.c.request_id)).scalars())
    by_id = dict(served)
    assert len(by_id) == len(served), "an answer was logged twice"
    assert not answered - set(by_id), f"{len(answered - set(by_id))} answered requests are not in the log"
    assert all(by_id[rid] == variant for rid, variant in variants.items()), "an answer is counted for another variant"
    assert not labelled - set(labels) and set(labels.values()) == {1}, "a label was lost or logged twice"

    # what the rollout's next evaluation counts: each logged answer once, under the variant that gave it
    stats = context.predictions.variant_stats(demo_config.model_name, live.id)
    for variant in (CHAMPION, CHALLENGER):
        logged = sum(1 for v in by_id.values() if v == variant)
        assert stats[variant].by_status.get("ok", 0) == logged
        assert logged >= sum(1 for v in variants.values() if v == variant)
        assert stats[variant].labelled >= sum(1 for rid in labelled if variants.get(rid) == variant)
    after, decision = step(context)
    assert after.id == live.id and after.step_index >= 1
    assert decision.stats[CHALLENGER]["requests"] == stats[CHALLENGER].requests, decision.stats
