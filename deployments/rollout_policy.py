"""The rollout policy: from cumulative counts in the prediction log to the next action. Pure, no I/O: the same
counts always give the same decision, so a restarted flow or another replica decides the same way.

Guards, checked at every evaluation (any one aborts):
- errors: a sequential test on the challenger's error rate against the champion's;
- latency: challenger p95 above ``max_latency_ratio`` x the champion's and ``min_latency_increase_ms`` more, once
  both have 50+ answers;
- quality: a sequential test on labelled feedback (accuracy), bounding the false-rollback rate at ``alpha``.
Progress: canary steps advance after ``min_requests_per_step`` challenger answers and ``min_seconds_per_step``;
the last step promotes once the quality test says "not worse" (or, for regression models without label
equality, after ``min_labels`` answers with no guard tripped). A/B promotes on a significant win, rolls back on
a significant loss. Shadow promotes on the same quality evidence, gathered without users seeing its answers.
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
from deployments.statistics import SequentialErrorRateTest, SequentialQualityTest, ab_test, agreement_report

LATENCY_MIN_SAMPLES = 50


@dataclass
class Evaluation:
    action: str  # continue | advance | promote | abort | pause
    reason: str
    stats: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, Any] = field(default_factory=dict)

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


def evaluate(
    rollout: Rollout,
    stats: dict[str, VariantStats],
    step_stats: dict[str, VariantStats],
    policy: RolloutConfig,
    classification: bool,
    now: datetime,
    agreement: tuple[int, int] | None = None,
) -> Evaluation:
    """Decide the next action from cumulative counts. Pure: the same counts always give the same decision."""
    champ, chall = stats.get(CHAMPION, VariantStats(CHAMPION)), stats.get(CHALLENGER, VariantStats(CHALLENGER))
    summary = {CHAMPION: champ.to_json(), CHALLENGER: chall.to_json()}
    verdicts: dict[str, Any] = {}

    errors = SequentialErrorRateTest(
        alpha=policy.quality.alpha, beta=policy.quality.beta, min_effect=policy.max_error_rate_increase
    )
    err = errors.evaluate(chall.errors, chall.requests, champ.errors, champ.requests)
    verdicts["errors"] = err.to_json()
    if err.decision == "abort":
        return Evaluation("abort", f"error rate guard: {err.explanation}", summary, verdicts)

    p95_chall, p95_champ = chall.latency_p(95), champ.latency_p(95)
    if (
        chall.latencies_ms.size >= LATENCY_MIN_SAMPLES
        and champ.latencies_ms.size >= LATENCY_MIN_SAMPLES
        and p95_chall is not None
        and p95_champ is not None
    ):
        ratio = p95_chall / max(p95_champ, 1e-3)
        verdicts["latency"] = {"challenger_p95_ms": p95_chall, "champion_p95_ms": p95_champ, "ratio": ratio}
        if ratio > policy.max_latency_ratio and p95_chall - p95_champ > policy.min_latency_increase_ms:
            return Evaluation(
                "abort",
                f"latency guard: challenger p95 {p95_chall:.2f} ms is {ratio:.2f}x the "
                f"champion's {p95_champ:.2f} ms (limit {policy.max_latency_ratio}x)",
                summary,
                verdicts,
            )

    quality_ok: bool | None = None
    if classification:
        q = SequentialQualityTest(
            alpha=policy.quality.alpha, beta=policy.quality.beta, min_effect=policy.quality.min_effect
        )
        verdict = q.evaluate(chall.correct, chall.labelled, champ.correct, champ.labelled)
        verdicts["quality"] = verdict.to_json()
        if verdict.decision == "abort":
            return Evaluation("abort", f"quality guard: {verdict.explanation}", summary, verdicts)
        quality_ok = verdict.decision == "pass"
    else:
        quality_ok = chall.requests >= policy.min_labels

    elapsed = (now - rollout.started_at).total_seconds()
    if elapsed > policy.max_duration_seconds:
        return Evaluation(
            "pause",
            f"no decision after {elapsed:.0f} s (limit {policy.max_duration_seconds:.0f} s); "
            "waiting for a person: `mlops rollout approve` or `mlops rollout abort`",
            summary,
            verdicts,
        )

    if rollout.strategy == "ab":
        if chall.labelled >= policy.min_labels and champ.labelled >= policy.min_labels:
            ab = ab_test(champ.correct, champ.labelled, chall.correct, chall.labelled)
            verdicts["ab"] = ab.to_json()
            if ab.significant and ab.winner == "b":
                return Evaluation("promote", f"A/B test: {ab.explanation}", summary, verdicts)
            if ab.significant and ab.winner == "a":
                return Evaluation("abort", f"A/B test: {ab.explanation}", summary, verdicts)
        if quality_ok and chall.labelled >= policy.min_labels:
            return Evaluation(
                "promote",
                "A/B test: no significant difference and the sequential test shows the "
                "challenger is not worse by the minimum effect",
                summary,
                verdicts,
            )
        return Evaluation("continue", "A/B test: collecting labels", summary, verdicts)

    if rollout.strategy == "shadow":
        if agreement is not None and agreement[0]:
            verdicts["agreement"] = agreement_report(*agreement).to_json()
        if quality_ok and chall.requests >= policy.min_requests_per_step:
            return Evaluation(
                "promote",
                "shadow: challenger answers were not worse on labelled traffic "
                f"({verdicts.get('quality', {}).get('explanation', '')})",
                summary,
                verdicts,
            )
        return Evaluation("continue", "shadow: scoring a copy of live traffic", summary, verdicts)

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
        )
    if rollout.step_index + 1 < len(policy.steps):
        return Evaluation(
            "advance",
            f"step {rollout.step_index + 1} healthy; moving to {policy.steps[rollout.step_index + 1]:g}%",
            summary,
            verdicts,
        )
    if quality_ok:
        return Evaluation(
            "promote",
            "every step healthy and the challenger is not worse on labelled traffic "
            f"({verdicts.get('quality', {}).get('explanation', 'no label test for regression')})",
            summary,
            verdicts,
        )
    return Evaluation("continue", "at 100%: waiting for enough labels to judge quality", summary, verdicts)
