"""The rollout policy: from cumulative counts in the prediction log to the next action. Pure, no I/O: the same
counts always give the same decision, so a restarted flow or another replica decides the same way.

Guards, checked at every evaluation of every strategy (any one rolls back):
- errors: a sequential test on the challenger's failure rate (exceptions one by one, and its own deadline misses:
  misses shared with the champion at the same moment are a host stall and left out, a burst counts once; see
  ``deployments.statistics.deadline_misses``) against the champion's, which never rolls back on fewer than
  ``min_error_events`` challenger failures;
- latency: the two variants' latencies paired under the same conditions (nearest start within a second, or the
  same request in shadow mode) and an always-valid test that most challenger answers exceed the tolerance
  (``max_latency_ratio`` times and ``min_latency_increase_ms`` more than their pair): see
  ``deployments.statistics.latency``;
Quality, from labelled feedback:
- canary and shadow: a sequential test on accuracy bounding the false-rollback rate at ``quality.alpha``; it stops
  at its first boundary crossing: once it has passed (recorded in the decision log) no later poll re-opens it;
- A/B: an always-valid confidence sequence for the difference in accuracy (``statistics.always_valid``): roll back
  when it lies below 0, promote when it lies above 0 or above ``-quality.min_effect``.
Progress: canary steps advance after ``min_requests_per_step`` challenger answers and ``min_seconds_per_step``;
the latency guard only ever rolls back, and at 100% it has no champion answers left to pair with, so no canary
moves to 100% and no rollout promotes while the guard is undecided on fewer than ``min_latency_pairs`` pairs;
the last step promotes once the quality test has passed (or, for regression models without label equality, after
``min_labels`` answers with no guard tripped). Shadow promotes on the same quality evidence, gathered without
users seeing its answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.config import RolloutConfig
from core.names import CHALLENGER, CHAMPION
from core.store.predictions import VariantStats
from core.store.rollouts import Rollout
from core.store.schema import utcnow
from deployments.statistics import (
    ErrorSums,
    LatencyGuard,
    LatencyPairs,
    LatencyVerdict,
    MissCounts,
    SequentialErrorRateTest,
    SequentialMAETest,
    SequentialQualityTest,
    ab_sequential,
    agreement_report,
)


@dataclass
class Evaluation:
    action: str  # continue | advance | promote | abort | pause
    reason: str
    stats: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, Any] = field(default_factory=dict)
    settles: bool = False  # a sequential test reached its boundary at this evaluation: always log it

    def log_entry(self, rollout: Rollout) -> dict[str, Any]:
        return {
            "at": utcnow().isoformat(),
            "step_index": rollout.step_index,
            "weight": rollout.weight,
            "action": self.action,
            "reason": self.reason,
            "stats": self.stats,
            "verdicts": self.verdicts,
        }


def first_weight(policy: RolloutConfig) -> float:
    return {"canary": policy.steps[0], "ab": policy.ab_split, "shadow": 0.0}[policy.strategy]


def regression_test(policy: RolloutConfig) -> SequentialMAETest:
    """The regression quality test: ``min_effect_ratio`` of the champion's MAE when set, else ``min_effect`` in the
    target's units."""
    quality = policy.quality
    ratio = quality.min_effect_ratio
    return SequentialMAETest(
        alpha=quality.alpha, beta=quality.beta, min_effect=None if ratio is not None else quality.min_effect,
        min_effect_ratio=ratio,
    )  # fmt: skip


def settled_quality(rollout: Rollout) -> dict[str, Any] | None:
    """The quality verdict at which the sequential test first passed, from the persisted decision log, or None."""
    for entry in rollout.steps:
        verdict = (entry.get("verdicts") or {}).get("quality") or {}
        if verdict.get("decision") == "pass":
            return {**verdict, "settled_at": entry.get("at")}
    return None


def describe_failures(stats: VariantStats, details: dict[str, str] | None, misses: MissCounts | None = None) -> str:
    details = details or {}
    parts = []
    if stats.timeouts:
        last = details.get("timeout") or details.get("shadow_timeout")
        notes = [f"last: {last}"] if last else []
        if misses is not None and misses.total:
            notes.append(misses.describe())
        parts.append(f"{stats.timeouts} deadline misses" + (f" ({'; '.join(notes)})" if notes else ""))
    if stats.exceptions:
        last = details.get("error") or details.get("shadow_error") or details.get("fallback")
        parts.append(f"{stats.exceptions} errors" + (f" (last: {last})" if last else ""))
    return "; ".join(parts) if parts else "no failures"


def failure_counts(stats: VariantStats, misses: MissCounts | None) -> tuple[int, int]:
    """(failures, requests) as the error guard compares them: exceptions one by one; without ``misses`` every
    deadline miss too, with it one per own episode, and the misses left out also leave the requests."""
    if misses is None:
        return stats.errors, stats.requests
    left_out = min(misses.left_out, stats.timeouts)
    return stats.errors - left_out, stats.requests - left_out


def latency_wait(policy: RolloutConfig, lat: LatencyVerdict | None) -> str | None:
    """Why a rollout may not yet leave the latency guard's reach (100% or promotion), or None."""
    if lat is None or lat.pairs >= policy.min_latency_pairs:
        return None
    return f"waiting for the latency guard: {lat.pairs} of {policy.min_latency_pairs} pairs"


def evaluate(
    rollout: Rollout,
    stats: dict[str, VariantStats],
    step_stats: dict[str, VariantStats],
    policy: RolloutConfig,
    classification: bool,
    now: datetime,
    agreement: tuple[int, int] | None = None,
    latency: LatencyPairs | None = None,
    failure_details: dict[str, str] | None = None,
    misses: dict[str, MissCounts] | None = None,
) -> Evaluation:
    """Decide the next action from cumulative counts. Pure: the same counts always give the same decision.

    ``misses``: the deadline misses per variant as ``statistics.classify_misses`` counts them (without it every
    miss is a failure)."""
    champ, chall = stats.get(CHAMPION, VariantStats(CHAMPION)), stats.get(CHALLENGER, VariantStats(CHALLENGER))
    summary = {CHAMPION: champ.to_json(), CHALLENGER: chall.to_json()}
    verdicts: dict[str, Any] = {}

    errors = SequentialErrorRateTest(
        alpha=policy.quality.alpha, beta=policy.quality.beta, min_effect=policy.max_error_rate_increase
    )
    chall_misses = champ_misses = None
    if misses is not None:
        chall_misses, champ_misses = misses.get(CHALLENGER, MissCounts()), misses.get(CHAMPION, MissCounts())
    chall_failed, chall_asked = failure_counts(chall, chall_misses)
    champ_failed, champ_asked = failure_counts(champ, champ_misses)
    err = errors.evaluate(chall_failed, chall_asked, champ_failed, champ_asked)
    failures = describe_failures(chall, failure_details, chall_misses)
    enough = chall_failed >= policy.min_error_events
    minimum = (
        f"The error guard needs at least {policy.min_error_events} challenger failures before it can roll back "
        f"(it counts {chall_failed}: {failures})."
    )
    verdicts["errors"] = {
        **err.to_json(),
        "decision": err.decision if err.decision != "abort" or enough else "continue",
        "min_events": policy.min_error_events,
        "challenger_failures": failures,
        "counted": {"challenger": [chall_failed, chall_asked], "champion": [champ_failed, champ_asked]},
        "explanation": f"{err.explanation} {minimum}",
    }
    if misses is not None:
        verdicts["errors"]["deadline_misses"] = {
            CHALLENGER: misses.get(CHALLENGER, MissCounts()).to_json(),
            CHAMPION: misses.get(CHAMPION, MissCounts()).to_json(),
        }
    if err.decision == "abort" and enough:
        return Evaluation("abort", f"error rate guard: {err.explanation} {minimum}", summary, verdicts)

    lat: LatencyVerdict | None = None
    if latency is not None:
        guard = LatencyGuard(
            alpha=policy.quality.alpha,
            max_ratio=policy.max_latency_ratio,
            min_increase_ms=policy.min_latency_increase_ms,
        )
        lat = guard.evaluate(latency)
        verdicts["latency"] = lat.to_json()
        if lat.decision == "abort":
            return Evaluation("abort", f"latency guard: {lat.explanation}", summary, verdicts)

    quality_ok: bool | None = None
    settles = False
    if not classification or rollout.strategy != "ab":  # classifiers in an A/B split: the interval below
        settled = settled_quality(rollout)
        if settled is not None:
            verdicts["quality"] = settled  # stopped at its first boundary crossing: a later poll does not re-open it
            quality_ok = True
        else:
            verdict: Any
            if classification:
                verdict = SequentialQualityTest(
                    alpha=policy.quality.alpha, beta=policy.quality.beta, min_effect=policy.quality.min_effect
                ).evaluate(chall.correct, chall.labelled, champ.correct, champ.labelled)
            else:
                verdict = regression_test(policy).evaluate(ErrorSums(*chall.abs_errors), ErrorSums(*champ.abs_errors))
            verdicts["quality"] = verdict.to_json()
            if verdict.decision == "abort":
                return Evaluation("abort", f"quality guard: {verdict.explanation}", summary, verdicts)
            quality_ok = verdict.decision == "pass"
            settles = quality_ok

    wait = latency_wait(policy, lat)
    elapsed = (now - rollout.started_at).total_seconds()
    if elapsed > policy.max_duration_seconds:
        return Evaluation(
            "pause",
            f"no decision after {elapsed:.0f} s (limit {policy.max_duration_seconds:.0f} s"
            f"{'; ' + wait if wait else ''}); waiting for a person: `mlops rollout approve` or `mlops rollout abort`",
            summary,
            verdicts,
            settles=settles,
        )

    if rollout.strategy == "ab":
        if not classification:
            if quality_ok and chall.abs_errors[0] >= policy.min_labels:
                if wait:
                    return Evaluation("continue", f"A/B test: quality passed; {wait}", summary, verdicts, settles)
                return Evaluation("promote", f"A/B test: {verdicts['quality']['explanation']}", summary, verdicts)
            return Evaluation("continue", "A/B test: collecting labels", summary, verdicts, settles=settles)
        if chall.labelled >= policy.min_labels and champ.labelled >= policy.min_labels:
            ab = ab_sequential(
                champ.correct,
                champ.labelled,
                chall.correct,
                chall.labelled,
                alpha=policy.quality.alpha,
                min_effect=policy.quality.min_effect,
            )
            verdicts["ab"] = ab.to_json()
            if ab.winner == "a":
                return Evaluation("abort", f"A/B test: {ab.explanation}", summary, verdicts)
            if (ab.winner == "b" or ab.non_inferior) and wait:
                return Evaluation("continue", f"A/B test: {ab.explanation}; {wait}", summary, verdicts)
            if ab.winner == "b" or ab.non_inferior:
                return Evaluation("promote", f"A/B test: {ab.explanation}", summary, verdicts)
            return Evaluation("continue", f"A/B test: {ab.explanation}", summary, verdicts)
        return Evaluation(
            "continue",
            f"A/B test: collecting labels ({chall.labelled} and {champ.labelled} of {policy.min_labels} per arm "
            "before the first verdict)",
            summary,
            verdicts,
        )

    if rollout.strategy == "shadow":
        if agreement is not None and agreement[0]:
            verdicts["agreement"] = agreement_report(*agreement).to_json()
        if quality_ok and chall.requests >= policy.min_requests_per_step and wait:
            return Evaluation("continue", f"shadow: quality passed; {wait}", summary, verdicts, settles=settles)
        if quality_ok and chall.requests >= policy.min_requests_per_step:
            return Evaluation(
                "promote",
                "shadow: challenger answers were not worse on labelled traffic "
                f"({verdicts.get('quality', {}).get('explanation', '')})",
                summary,
                verdicts,
            )
        return Evaluation("continue", "shadow: scoring a copy of live traffic", summary, verdicts, settles=settles)

    # canary
    step_chall = step_stats.get(CHALLENGER, VariantStats(CHALLENGER))
    in_step = (now - rollout.step_started_at).total_seconds()
    if step_chall.requests < policy.min_requests_per_step or in_step < policy.min_seconds_per_step:
        return Evaluation(
            "continue",
            f"step {rollout.step_index + 1}/{len(policy.steps)} at {rollout.weight:g}%: "
            f"{step_chall.requests}/{policy.min_requests_per_step} challenger answers, "
            f"{in_step:.0f}/{policy.min_seconds_per_step:.0f} s",
            summary,
            verdicts,
            settles=settles,
        )
    if rollout.step_index + 1 < len(policy.steps):
        if wait and policy.steps[rollout.step_index + 1] >= 100:
            return Evaluation(
                "continue",
                f"step {rollout.step_index + 1} healthy, but {wait} before moving to 100% (no champion answers "
                "to pair with there)",
                summary,
                verdicts,
                settles=settles,
            )
        return Evaluation(
            "advance",
            f"step {rollout.step_index + 1} healthy; moving to {policy.steps[rollout.step_index + 1]:g}%",
            summary,
            verdicts,
            settles=settles,
        )
    if quality_ok and wait and rollout.weight >= 100:
        return Evaluation(
            "pause",
            f"quality passed, but {wait}, and at 100% there are no champion answers to pair with; waiting for a "
            "person: `mlops rollout approve` or `mlops rollout abort`",
            summary,
            verdicts,
        )
    if quality_ok and wait:
        return Evaluation(
            "continue", f"last step at {rollout.weight:g}%: quality passed; {wait}", summary, verdicts, settles=settles
        )
    if quality_ok:
        return Evaluation(
            "promote",
            "every step healthy and the challenger is not worse on labelled traffic "
            f"({verdicts.get('quality', {}).get('explanation', '')})",
            summary,
            verdicts,
        )
    return Evaluation(
        "continue",
        f"last step at {rollout.weight:g}%: waiting for enough labels to judge quality",
        summary,
        verdicts,
        settles=settles,
    )
