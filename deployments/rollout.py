"""Running a rollout: start it, evaluate a step and apply the decision (advance, promote, roll back, pause), and a
person's approve or abort.

Plain functions over a ``ProjectContext`` (the persisted rollout state, the prediction log and the registry), so
the ``rollout`` flow, the CLI and the gateway's admin API all take the same path. The decision itself is
``deployments.rollout_policy.evaluate``, computed from cumulative counts, so a restarted flow or gateway resumes
exactly where the rollout was.
"""

from __future__ import annotations

from typing import Any

from core.config import RolloutConfig
from core.errors import MlopsError
from core.names import CHALLENGER, CHAMPION, TAG_DECISION, TAG_DECISION_REASON, TAG_REQUEST_ID
from core.store.rollouts import Rollout
from core.store.schema import utcnow
from deployments.rollout_policy import Evaluation, evaluate, first_weight
from deployments.statistics import LatencyPairs, MissCounts, classify_misses, pair_by_request, pair_by_start_time
from model_registry.registry import default_actor
from services.context import ProjectContext


def start_rollout(context: ProjectContext, strategy: str | None = None) -> Rollout:
    """Expose the registered ``challenger`` next to the ``champion`` under the configured policy."""
    config, registry = context.config, context.registry
    policy = config.rollout if strategy is None else config.rollout.model_copy(update={"strategy": strategy})
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
    return context.rollouts.start(
        config.model_name,
        policy.strategy,
        str(champion.version),
        str(challenger.version),
        first_weight(policy),
        policy.model_dump(mode="json"),
        reason,
        challenger_request_id=_request_id(challenger.tags),
    )


def _request_id(tags: dict[str, str] | None) -> int | None:
    """The change request a registered version came from (its ``mlops.request_id`` tag), if it has one."""
    value = (tags or {}).get(TAG_REQUEST_ID, "")
    return int(value) if value.isdigit() else None


def step(context: ProjectContext, rollout_id: int | None = None) -> tuple[Rollout, Evaluation]:
    """Evaluate the live rollout once and apply the decision."""
    config, store = context.config, context.rollouts
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
    plog = context.predictions
    classification = config.evaluation.problem_type == "classification"
    plog_stats = plog.variant_stats(config.model_name, rollout.id, regression=not classification)
    step_stats = plog.variant_stats(config.model_name, rollout.id, since=rollout.step_started_at)
    agreement = plog.agreement(config.model_name, rollout.id) if rollout.strategy == "shadow" else None
    latency = latency_pairs(plog.latency_rows(config.model_name, rollout.id), shadow=rollout.strategy == "shadow")
    details = plog.failure_details(config.model_name, rollout.id, CHALLENGER)
    misses = deadline_misses(plog.deadline_misses(config.model_name, rollout.id))
    decision = evaluate(
        rollout, plog_stats, step_stats, policy, classification, utcnow(), agreement, latency, details, misses
    )
    return apply(context, rollout, decision, actor=f"rollout flow (rollout #{rollout.id})"), decision


def latency_pairs(rows: Any, shadow: bool) -> LatencyPairs:
    """Same-conditions pairs from the prediction log's timed answers (``PredictionLog.latency_rows``)."""
    if rows.empty:
        return pair_by_start_time([], [], [])
    is_challenger = (rows["variant"] == CHALLENGER).to_numpy()
    if shadow:
        return pair_by_request(rows["request"].tolist(), rows["latency_ms"].tolist(), is_challenger.tolist())
    return pair_by_start_time(rows["start"].to_numpy(), rows["latency_ms"].to_numpy(), is_challenger)


def deadline_misses(rows: Any) -> dict[str, MissCounts]:
    """The deadline misses per variant as the error guard counts them (``PredictionLog.deadline_misses`` rows)."""
    is_challenger = (rows["variant"] == CHALLENGER).to_numpy()
    return classify_misses(rows["start"].to_numpy(), rows["end"].to_numpy(), is_challenger)


def apply(context: ProjectContext, rollout: Rollout, decision: Evaluation, actor: str) -> Rollout:
    """Persist the decision; promotion and rollback move the registry's aliases and tag the version."""
    store = context.rollouts
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
    registry = context.registry
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
    """Keep the decision log readable: record a 'continue' only when its reason changed, or when a sequential test
    reached its boundary (the log is where a passed test is remembered, so no later poll re-opens it)."""
    return decision.settles or not rollout.steps or rollout.steps[-1].get("reason") != decision.reason


def decide_by_person(context: ProjectContext, action: str, reason: str) -> dict[str, Any]:
    """``approve`` promotes now, ``abort`` rolls back now; works on running and paused rollouts."""
    rollout = context.rollouts.live(context.model_name)
    if rollout is None:
        raise MlopsError(f"model {context.model_name!r} has no rollout in progress to {action}.")
    decision = Evaluation("promote" if action == "approve" else "abort", f"{action} by a person: {reason}")
    final = apply(context, rollout, decision, actor=default_actor())
    return final.to_json()
