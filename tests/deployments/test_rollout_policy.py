"""Rollout decisions from counts: the pure ``evaluate`` function, no I/O."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from core.config import RolloutConfig
from core.store.predictions import VariantStats
from core.store.rollouts import Rollout
from core.store.schema import utcnow
from deployments.rollout_policy import evaluate

POLICY = RolloutConfig(steps=[10, 50, 100], min_requests_per_step=100, min_seconds_per_step=10, min_labels=100)


def rollout(
    strategy: str = "canary", step_index: int = 0, weight: float = 10, age: float = 60, in_step: float = 30
) -> Rollout:
    now = utcnow()
    return Rollout(
        1,
        "m",
        strategy,
        "1",
        "2",
        "running",
        step_index,
        weight,
        now - timedelta(seconds=age),
        now - timedelta(seconds=in_step),
        now,
        "",
    )


def stats(requests: int, errors: int = 0, labelled: int = 0, correct: int = 0, latency: float = 1.0) -> VariantStats:
    by_status = {"ok": requests - errors}
    if errors:
        by_status["fallback"] = errors
    return VariantStats("x", by_status, np.full(min(requests, 200), latency), labelled, correct)


def decide(
    r: Rollout,
    chall: VariantStats,
    champ: VariantStats,
    step_chall: VariantStats | None = None,
    policy: RolloutConfig = POLICY,
    classification: bool = True,
) -> str:
    step = {"challenger": step_chall or chall, "champion": champ}
    return evaluate(r, {"challenger": chall, "champion": champ}, step, policy, classification, utcnow()).action


def test_canary_waits_for_requests_and_time_then_advances() -> None:
    champ = stats(900, labelled=300, correct=270)
    assert decide(rollout(), stats(50), champ) == "continue"  # too few challenger answers
    assert decide(rollout(in_step=2), stats(150), champ) == "continue"  # too little time at this step
    assert decide(rollout(), stats(150), champ) == "advance"


def test_last_step_promotes_only_when_labels_show_it_is_not_worse() -> None:
    last = rollout(step_index=2, weight=100)
    champ = stats(3000, labelled=2000, correct=1800)
    assert decide(last, stats(500, labelled=10, correct=9), champ) == "continue"
    assert decide(last, stats(2000, labelled=1500, correct=1360), champ) == "promote"


def test_a_much_worse_challenger_is_rolled_back_on_labels() -> None:
    champ = stats(3000, labelled=2000, correct=1800)  # 0.90
    evaluation = evaluate(
        rollout(),
        {"challenger": stats(300, labelled=300, correct=210), "champion": champ},
        {"challenger": stats(300), "champion": champ},
        POLICY,
        True,
        utcnow(),
    )
    assert evaluation.action == "abort"
    assert evaluation.reason.startswith("quality guard")
    assert evaluation.verdicts["quality"]["decision"] == "abort"


def test_errors_and_latency_guards() -> None:
    champ = stats(3000, errors=3)
    assert decide(rollout(), stats(400, errors=60), champ) == "abort"
    assert decide(rollout(), stats(200, latency=10.0), stats(2000, latency=1.0)) == "abort"
    assert decide(rollout(), stats(200, latency=1.2), stats(2000, latency=1.0)) == "advance"
    assert decide(rollout(), stats(200, latency=3.0), stats(2000, latency=1.0)) == "advance"  # 3x but only +2 ms


def test_regression_models_promote_on_healthy_traffic_without_label_equality() -> None:
    last = rollout(step_index=2, weight=100)
    assert decide(last, stats(150), stats(1000), classification=False) == "promote"


def test_ab_verdicts() -> None:
    ab = rollout(strategy="ab", weight=50)
    assert decide(ab, stats(1500, labelled=1500, correct=1410), stats(1500, labelled=1500, correct=1290)) == "promote"
    assert decide(ab, stats(1500, labelled=1500, correct=1200), stats(1500, labelled=1500, correct=1350)) == "abort"
    assert decide(ab, stats(50, labelled=50, correct=45), stats(50, labelled=50, correct=45)) == "continue"


def test_a_rollout_without_a_decision_pauses_for_a_person() -> None:
    old = rollout(age=POLICY.max_duration_seconds + 5)
    assert decide(old, stats(50), stats(500)) == "pause"
