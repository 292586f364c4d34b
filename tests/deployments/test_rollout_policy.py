"""Rollout decisions from counts: the pure ``evaluate`` function, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np

from core.config import RolloutConfig
from core.store.predictions import VariantStats
from core.store.rollouts import Rollout
from core.store.schema import utcnow
from deployments.rollout_policy import evaluate
from deployments.statistics import LatencyPairs

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


def test_error_guard_rolls_back_on_a_real_increase() -> None:
    champ = stats(3000, errors=3)
    evaluation = evaluate(
        rollout(),
        {"challenger": stats(400, errors=60), "champion": champ},
        {"challenger": stats(400), "champion": champ},
        POLICY,
        True,
        utcnow(),
        failure_details={"fallback": "RuntimeError: boom"},
    )
    assert evaluation.action == "abort" and evaluation.reason.startswith("error rate guard")
    assert "at least 5 challenger failures" in evaluation.reason and "RuntimeError: boom" in evaluation.reason


def test_error_guard_needs_its_minimum_evidence_against_a_zero_baseline() -> None:
    """The case from the field: 2 failures in 55 answers against 0 in 413 is a handful of events, not evidence."""
    champ, chall = stats(413), VariantStats("x", {"ok": 53, "timeout": 2}, np.full(53, 1.0))
    evaluation = evaluate(
        rollout(), {"challenger": chall, "champion": champ}, {"challenger": chall, "champion": champ},
        POLICY, True, utcnow(), failure_details={"timeout": "deadline 250 ms, elapsed 251.0 ms, host load 3.10"},
    )  # fmt: skip
    assert evaluation.action == "continue"
    errors = evaluation.verdicts["errors"]
    assert errors["decision"] == "continue" and errors["min_events"] == 5
    assert "needs at least 5 challenger failures" in errors["explanation"]
    assert "2 deadline misses (last: deadline 250 ms" in errors["explanation"]
    # five of them would be evidence
    chall = VariantStats("x", {"ok": 50, "timeout": 5}, np.full(50, 1.0))
    assert decide(rollout(), chall, champ) == "abort"


def pairs(n: int, factor: float, base: float = 20.0, seed: int = 0) -> LatencyPairs:
    rng = np.random.default_rng(seed)
    load = rng.choice([1.0, 3.0], size=n)  # busy and quiet moments, shared by the two members of a pair
    return LatencyPairs(rng.lognormal(np.log(base), 0.2, n) * load * factor, rng.lognormal(np.log(base), 0.2, n) * load)


def test_latency_guard_compares_same_conditions_pairs() -> None:
    champ, chall = stats(2000), stats(200)

    def run(latency: LatencyPairs) -> Any:
        return evaluate(
            rollout(), {"challenger": chall, "champion": champ}, {"challenger": chall, "champion": champ},
            POLICY, True, utcnow(), latency=latency,
        )  # fmt: skip

    slow = run(pairs(200, 2.0))
    assert slow.action == "abort" and slow.reason.startswith("latency guard")
    assert "1.5x and 5 ms more than the champion answer" in slow.reason
    assert run(pairs(200, 1.0)).action == "advance"
    assert run(pairs(200, 1.3)).action == "advance"  # slower, but within the tolerated 1.5x
    assert run(pairs(10, 3.0)).action == "advance"  # fewer than 20 pairs: no verdict yet
    fast = LatencyPairs(np.full(200, 3.0), np.full(200, 1.0))  # 3x, but only 2 ms more
    assert run(fast).action == "advance"
    assert run(pairs(0, 1.0)).verdicts["latency"]["pairs"] == 0


def test_a_passed_quality_test_is_not_reopened_by_a_later_poll() -> None:
    """The canary's sequential test stops at its first boundary crossing; the decision log remembers it."""
    first = rollout(step_index=1, weight=50)
    champ = stats(3000, labelled=2000, correct=1800)
    passed = evaluate(
        first,
        {"challenger": stats(600, labelled=400, correct=362), "champion": champ},
        {"challenger": stats(50), "champion": champ},
        POLICY,
        True,
        utcnow(),
    )
    assert passed.verdicts["quality"]["decision"] == "pass" and passed.settles
    later = replace(first, steps=[passed.log_entry(first)])
    # labels since then look worse: a test re-evaluated at every poll would roll back here
    worse = {"challenger": stats(900, labelled=700, correct=595), "champion": champ}
    assert evaluate(rollout(), worse, worse, POLICY, True, utcnow()).action == "abort"
    again = evaluate(later, worse, {"challenger": stats(50), "champion": champ}, POLICY, True, utcnow())
    assert again.action == "continue" and again.verdicts["quality"]["settled_at"] is not None


def test_ab_verdicts_come_from_an_always_valid_interval() -> None:
    ab = rollout(strategy="ab", weight=50)
    assert decide(ab, stats(1500, labelled=1500, correct=1410), stats(1500, labelled=1500, correct=1290)) == "promote"
    assert decide(ab, stats(1500, labelled=1500, correct=1200), stats(1500, labelled=1500, correct=1350)) == "abort"
    assert decide(ab, stats(50, labelled=50, correct=45), stats(50, labelled=50, correct=45)) == "continue"
    # 2 points apart on 300 labels each: a fixed-horizon test re-run at every poll could call it; this waits
    undecided = evaluate(
        ab,
        {"challenger": stats(300, labelled=300, correct=264), "champion": stats(300, labelled=300, correct=270)},
        {},
        POLICY,
        True,
        utcnow(),
    )
    assert undecided.action == "continue"
    verdict = undecided.verdicts["ab"]
    assert verdict["ci_lower"] < 0 < verdict["ci_upper"] and "always-valid 95% interval" in undecided.reason


def test_a_rollout_without_a_decision_pauses_for_a_person() -> None:
    old = rollout(age=POLICY.max_duration_seconds + 5)
    assert decide(old, stats(50), stats(500)) == "pause"


def regression_stats(requests: int, labelled: int, mae: float, spread: float = 0.8) -> VariantStats:
    """Sums of absolute errors with mean ``mae`` and standard deviation ``spread * mae``."""
    total = labelled * mae
    total_sq = labelled * (mae * mae + (spread * mae) ** 2)
    return VariantStats("x", {"ok": requests}, np.full(min(requests, 200), 1.0), abs_errors=(labelled, total, total_sq))


def test_a_worse_regressor_is_rolled_back_on_its_mean_absolute_error() -> None:
    policy = POLICY.model_copy(update={"quality": POLICY.quality.model_copy(update={"min_effect_ratio": 0.1})})
    champ = regression_stats(3000, 2000, 40.0)
    worse = evaluate(
        rollout(),
        {"challenger": regression_stats(400, 300, 50.0), "champion": champ},
        {"challenger": regression_stats(400, 300, 50.0), "champion": champ},
        policy,
        False,
        utcnow(),
    )
    assert worse.action == "abort" and worse.reason.startswith("quality guard")
    assert "mean absolute error 50 on 300 labels vs champion 40 on 2000" in worse.reason
    assert "10% worse than the champion's" in worse.reason
    last = rollout(step_index=2, weight=100)
    equal = {"challenger": regression_stats(2000, 1500, 40.2), "champion": champ}
    assert evaluate(last, equal, equal, policy, False, utcnow()).action == "promote"
    # too few labels: no verdict, however healthy the traffic (a regressor used to promote on answers alone)
    few = {"challenger": regression_stats(2000, 10, 40.0), "champion": champ}
    assert evaluate(last, few, few, policy, False, utcnow()).action == "continue"
    # the effect in the target's units
    units = POLICY.model_copy(update={"quality": POLICY.quality.model_copy(update={"min_effect": 2.0})})
    assert "2 worse (target units)" in evaluate(rollout(), worse_stats := {
        "challenger": regression_stats(400, 300, 50.0), "champion": champ}, worse_stats, units, False, utcnow()
    ).reason  # fmt: skip
