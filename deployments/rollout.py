"""Rollout decisions: start, evaluate a step, promote, roll back, and a person's approve/abort.

Plain functions over the persisted state (``RolloutStore``), the prediction log and the registry, so the
``rollout`` flow, the CLI and the gateway's admin API all take the same path. Every evaluation is computed from
cumulative counts in the database, so a restarted flow or gateway resumes exactly where the rollout was.

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

from deployments.prediction_log import PredictionLog, VariantStats
from deployments.rollout_state import Rollout, RolloutStore
from deployments.router import CHALLENGER, CHAMPION
from deployments.statistics import SequentialErrorRateTest, SequentialQualityTest, ab_test, agreement_report
from mlops.config import ProjectConfig, RolloutConfig
from mlops.errors import MlopsError
from mlops.events import TAG_DECISION, TAG_DECISION_REASON
from mlops.settings import Settings
from mlops.store import ProjectStore, utcnow
from model_registry.registry import ModelRegistry

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


def registry_for(settings: Settings, config: ProjectConfig) -> ModelRegistry:
    from tasks.tracking import configure_mlflow

    return ModelRegistry(config.model_name, ProjectStore(settings.store_url), configure_mlflow(settings))


def first_weight(policy: RolloutConfig) -> float:
    return {"canary": policy.steps[0], "ab": policy.ab_split, "shadow": 0.0}[policy.strategy]


def start_rollout(settings: Settings, config: ProjectConfig, strategy: str | None = None) -> Rollout:
    """Expose the registered ``challenger`` next to the ``champion`` under the configured policy."""
    policy = config.rollout if strategy is None else config.rollout.model_copy(update={"strategy": strategy})
    registry = registry_for(settings, config)
    champion, challenger = registry.alias_version(CHAMPION), registry.alias_version(CHALLENGER)
    if champion is None or challenger is None:
        missing = "champion" if champion is None else "challenger"
        raise MlopsError(
            f"model {config.model_name!r} has no {missing}; a rollout needs both (run the lifecycle for a request)."
        )
    reason = (
        f"{policy.strategy} rollout of {registry.semver_of(challenger)} (v{challenger.version}) against champion "
        f"{registry.semver_of(champion)} (v{champion.version})"
    )
    return RolloutStore(settings.store_url).start(
        config.model_name,
        policy.strategy,
        str(champion.version),
        str(challenger.version),
        first_weight(policy),
        policy.model_dump(mode="json"),
        reason,
    )


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


def step(settings: Settings, config: ProjectConfig, rollout_id: int | None = None) -> tuple[Rollout, Evaluation]:
    """Evaluate the live rollout once and apply the decision."""
    store = RolloutStore(settings.store_url)
    rollout = store.get(rollout_id) if rollout_id is not None else store.live(config.model_name)
    if rollout is None:
        raise MlopsError(
            f"model {config.model_name!r} has no rollout in progress; start one with `mlops rollout start`."
        )
    if rollout.status != "running":
        return rollout, Evaluation(
            "continue" if rollout.status == "paused" else rollout.status,
            f"rollout is {rollout.status}: {rollout.reason}",
        )
    policy = RolloutConfig.model_validate(rollout.policy) if rollout.policy else config.rollout
    plog = PredictionLog(settings.store_url)
    plog_stats = plog.variant_stats(config.model_name, rollout.id)
    step_stats = plog.variant_stats(config.model_name, rollout.id, since=rollout.step_started_at)
    agreement = plog.agreement(config.model_name, rollout.id) if rollout.strategy == "shadow" else None
    classification = config.evaluation.problem_type == "classification"
    decision = evaluate(rollout, plog_stats, step_stats, policy, classification, utcnow(), agreement)
    return apply(settings, config, rollout, decision, actor=f"rollout flow (rollout #{rollout.id})"), decision


def apply(settings: Settings, config: ProjectConfig, rollout: Rollout, decision: Evaluation, actor: str) -> Rollout:
    store = RolloutStore(settings.store_url)
    entry = decision.log_entry(rollout)
    if decision.action == "continue":
        return store.update(rollout.id, log_entry=entry) if _worth_logging(rollout, decision) else rollout
    if decision.action == "advance":
        policy = RolloutConfig.model_validate(rollout.policy)
        nxt = rollout.step_index + 1
        return store.update(
            rollout.id, log_entry=entry, step_index=nxt, weight=policy.steps[nxt], step_started_at=utcnow()
        )
    if decision.action == "pause":
        return store.update(rollout.id, log_entry=entry, status="paused", reason=decision.reason)
    registry = registry_for(settings, config)
    version = rollout.challenger_version
    if decision.action == "promote":
        registry.promote(version, actor=actor, reason=decision.reason)
        registry.tag(version, {TAG_DECISION: "promoted", TAG_DECISION_REASON: decision.reason[:5000]})
        return store.update(rollout.id, log_entry=entry, status="promoted", weight=100.0, reason=decision.reason)
    if decision.action == "abort":
        challenger = registry.alias_version(CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            registry.remove_alias(CHALLENGER, actor=actor, reason=f"rolled back: {decision.reason}")
        registry.tag(version, {TAG_DECISION: "rolled back", TAG_DECISION_REASON: decision.reason[:5000]})
        return store.update(rollout.id, log_entry=entry, status="aborted", weight=0.0, reason=decision.reason)
    raise MlopsError(f"unknown rollout action {decision.action!r}")


def _worth_logging(rollout: Rollout, decision: Evaluation) -> bool:
    """Keep the decision log readable: record a 'continue' only when its reason changed."""
    return not rollout.steps or rollout.steps[-1].get("reason") != decision.reason


def decide_by_person(settings: Settings, config: ProjectConfig, action: str, reason: str) -> dict[str, Any]:
    """``approve`` promotes now, ``abort`` rolls back now; works on running and paused rollouts."""
    store = RolloutStore(settings.store_url)
    rollout = store.live(config.model_name)
    if rollout is None:
        raise MlopsError(f"model {config.model_name!r} has no rollout in progress to {action}.")
    decision = Evaluation("promote" if action == "approve" else "abort", f"{action} by a person: {reason}")
    from model_registry.registry import default_actor

    final = apply(settings, config, rollout, decision, actor=default_actor())
    return final.to_json()
