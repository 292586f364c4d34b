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
from deployments.statistics import LatencyPairs, MissCounts

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
    assert "1.5x and 2 ms more than the champion answer" in slow.reason
    assert run(pairs(200, 1.0)).action == "advance"
    assert run(pairs(200, 1.3)).action == "advance"  # slower, but within the tolerated 1.5x
    assert run(pairs(10, 3.0)).action == "advance"  # fewer than 20 pairs: no verdict yet
    fast = LatencyPairs(np.full(200, 2.5), np.full(200, 1.0))  # 2.5x, but only 1.5 ms more
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


# ---------------------------------------------------------------- the latency guard decides before it loses its pairs
def undecided(n: int, too_slow: int) -> LatencyPairs:
    """``too_slow`` of ``n`` pairs past the tolerance (2x and 10 ms more), the rest as fast as the champion."""
    chall = np.where(np.arange(n) < too_slow, 20.0, 10.0)
    return LatencyPairs(chall, np.full(n, 10.0))


def run(r: Rollout, chall: VariantStats, champ: VariantStats, latency: LatencyPairs, **kw: Any) -> Any:
    policy = kw.pop("policy", POLICY)
    both = {"challenger": chall, "champion": champ}
    return evaluate(r, both, both, policy, True, utcnow(), latency=latency, **kw)


def test_a_canary_does_not_move_to_100_percent_while_the_latency_guard_is_undecided() -> None:
    """The case from the field: a 2x slower challenger too slow in 60% of its first 45 pairs, evidence far from the
    threshold; advancing to 100% would have frozen the guard (no champion answers to pair with) and promoted it."""
    second = rollout(step_index=1, weight=50)
    champ, chall = stats(3000, labelled=2000, correct=1800), stats(600, labelled=400, correct=362)
    waiting = run(second, chall, champ, undecided(45, 27))
    assert waiting.verdicts["latency"]["decision"] == "continue"
    assert waiting.action == "continue"
    assert "waiting for the latency guard: 45 of 100 pairs before moving to 100%" in waiting.reason
    assert run(second, chall, champ, undecided(100, 45)).action == "advance"  # the stated minimum reached
    assert run(second, chall, champ, undecided(45, 45)).action == "abort"  # a decided guard needs no wait
    # an early step may advance: the guard keeps pairing at 50%
    assert run(rollout(), chall, champ, undecided(45, 27)).action == "advance"
    # the minimum is the policy's
    none = POLICY.model_copy(update={"min_latency_pairs": 0})
    assert run(second, chall, champ, undecided(45, 27), policy=none).action == "advance"


def test_no_promotion_while_the_latency_guard_waits_and_a_stuck_100_percent_step_pauses() -> None:
    champ, chall = stats(3000, labelled=2000, correct=1800), stats(2000, labelled=1500, correct=1360)
    at_50 = rollout(step_index=1, weight=50)
    policy = POLICY.model_copy(update={"steps": [10.0, 50.0]})
    last = run(at_50, chall, champ, undecided(60, 20), policy=policy)
    assert last.action == "continue" and "quality passed; waiting for the latency guard: 60 of 100 pairs" in last.reason
    assert last.settles  # the passed quality test is logged, so it is not re-opened while the guard waits
    assert run(at_50, chall, champ, undecided(120, 40), policy=policy).action == "promote"
    # already at 100% (a policy whose first step is 100, or an older rollout): no more pairs can come, a person decides
    full = run(rollout(step_index=2, weight=100), chall, champ, undecided(10, 3))
    assert full.action == "pause" and "10 of 100 pairs" in full.reason and "mlops rollout approve" in full.reason
    # the rollout's time limit still ends any wait, and says what it was waiting for
    old = run(rollout(step_index=1, weight=50, age=POLICY.max_duration_seconds + 5), stats(50), champ, undecided(5, 1))
    assert old.action == "pause" and "waiting for the latency guard: 5 of 100 pairs" in old.reason


def test_ab_and_shadow_promotions_wait_for_the_latency_guard_too() -> None:
    ab = rollout(strategy="ab", weight=50)
    better, worse = stats(1500, labelled=1500, correct=1410), stats(1500, labelled=1500, correct=1290)
    assert run(ab, better, worse, undecided(40, 10)).action == "continue"
    assert "waiting for the latency guard: 40 of 100 pairs" in run(ab, better, worse, undecided(40, 10)).reason
    assert run(ab, better, worse, undecided(400, 100)).action == "promote"
    shadow = rollout(strategy="shadow", weight=0)
    chall, champ = stats(2000, labelled=1500, correct=1360), stats(3000, labelled=2000, correct=1800)
    assert "waiting for the latency guard" in run(shadow, chall, champ, undecided(40, 10)).reason
    assert run(shadow, chall, champ, undecided(400, 100)).action == "promote"


# ------------------------------------------------------------------ the error guard and bursts of deadline misses
def test_a_host_stall_shared_by_both_variants_does_not_roll_back_an_equal_challenger() -> None:
    """The field case: 7 of 149 challenger answers late against 5 of 1,341 of the champion's, all in bursts in
    which both variants missed together. Counted one by one that rolls back; as host episodes it is no evidence."""
    chall = VariantStats("x", {"ok": 142, "timeout": 7}, np.full(142, 5.0))
    champ = VariantStats("x", {"ok": 1336, "timeout": 5}, np.full(200, 5.0))
    assert decide(rollout(), chall, champ) == "abort"  # every miss as an independent failure
    misses = {"challenger": MissCounts(7, 7, 0), "champion": MissCounts(5, 5, 0)}
    details = {"timeout": "deadline 250 ms, elapsed 263.1 ms, host load 25.1"}
    evaluation = run(rollout(), chall, champ, undecided(140, 10), misses=misses, failure_details=details)
    assert evaluation.action == "advance"
    errors = evaluation.verdicts["errors"]
    assert errors["decision"] != "abort" and errors["counted"]["challenger"] == [0, 142]
    assert errors["deadline_misses"]["challenger"] == {"total": 7, "shared": 7, "episodes": 0, "counted": 0}
    assert "7 deadline misses (last: deadline 250 ms" in errors["explanation"]
    assert "7 at the same moment as the other variant's (the host's stalls, not counted)" in errors["explanation"]


def test_own_deadline_misses_count_once_per_episode_and_exceptions_one_by_one() -> None:
    champ = VariantStats("x", {"ok": 3000}, np.full(200, 5.0))
    # a challenger that hangs: 60 misses of its own in 40 episodes, while the champion answered in time
    hangs = VariantStats("x", {"ok": 340, "timeout": 60}, np.full(200, 5.0))
    misses = {"challenger": MissCounts(60, 0, 40), "champion": MissCounts()}
    rolled = run(rollout(), hangs, champ, undecided(140, 10), misses=misses)
    assert rolled.action == "abort" and rolled.reason.startswith("error rate guard")
    assert rolled.verdicts["errors"]["counted"]["challenger"] == [40, 380]
    # one burst of its own (a slow batch) is one event: not enough to roll back
    burst = VariantStats("x", {"ok": 140, "timeout": 8}, np.full(140, 5.0))
    one = run(rollout(), burst, champ, undecided(140, 10), misses={"challenger": MissCounts(8, 0, 1)})
    assert one.action == "advance" and one.verdicts["errors"]["counted"]["challenger"] == [1, 141]
    # exceptions are not deadline misses: each one counts
    raising = VariantStats("x", {"ok": 140, "error": 8}, np.full(140, 5.0))
    broken = run(rollout(), raising, champ, undecided(140, 10), misses={"challenger": MissCounts()})
    assert broken.action == "abort" and broken.verdicts["errors"]["counted"]["challenger"] == [8, 148]
