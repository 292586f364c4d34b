"""Scoring the champion on the new holdout, and registering a model that passed the gates.

The description and tags written here are what a person reads in MLflow's registry and compare views, so they
state the decision in words: which request, which data, what score against which champion, which gates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from core.config import ProjectConfig
from core.faults import VERSION_CREATED, crash_point
from core.names import (
    CHALLENGER,
    CHAMPION,
    TAG_CODE_VERSION,
    TAG_DATA_FINGERPRINT,
    TAG_DECISION,
    TAG_GATE_PREFIX,
    TAG_PRIMARY_METRIC,
    TAG_REQUEST_ID,
    TAG_REQUEST_KIND,
    TAG_REQUEST_TITLE,
)
from core.store.requests import ChangeRequest
from model_registry.registry import ModelRegistry
from model_registry.semver import next_semver
from training.fit import score_model
from training.gates import GateDecision


@dataclass(frozen=True)
class ChampionScore:
    version: str | None
    semver: str | None
    metrics: dict[str, float] | None
    note: str  # why there is no score, or where it came from
    production_metrics: dict[str, float] | None = None  # on the holdout's production rows, when it has some


def score_champion(
    registry: ModelRegistry, holdout: pd.DataFrame, config: ProjectConfig, recent: pd.DataFrame | None = None
) -> ChampionScore:
    """Score the current champion on the challenger's holdout rows (and on ``recent``, the holdout's production
    rows, when given); a champion that cannot be scored is reported, not fatal (a major request may change the
    features)."""
    champion = registry.alias_version(CHAMPION)
    if champion is None:
        return ChampionScore(None, None, None, "no champion yet: this model can bootstrap the registry")
    semver = registry.semver_of(champion)
    try:
        model = registry.load(str(champion.version)).model
        metrics = score_model(model, holdout, config)
        recent_metrics = score_model(model, recent, config) if recent is not None and len(recent) else None
    except Exception as err:  # any load/predict failure means "not comparable", which the gates then report
        return ChampionScore(
            str(champion.version),
            semver,
            None,
            f"champion {semver} (v{champion.version}) could not be scored on this holdout: "
            f"{err.__class__.__name__}: {str(err)[:600]}",
        )
    return ChampionScore(
        str(champion.version), semver, metrics, f"champion {semver} (v{champion.version})", recent_metrics
    )


def version_description(
    semver: str,
    request: ChangeRequest,
    decision: GateDecision,
    champion: ChampionScore,
    data_source: str,
    holdout_rows: int,
    role: str,
) -> str:
    versus = (
        f"vs champion {champion.semver} at {decision.champion_score:.4f} ({decision.delta:+.4f})"
        if decision.champion_score is not None and decision.delta is not None
        else f"({champion.note})"
    )
    return (
        f'{semver} from {request.kind} change request #{request.id} "{request.title}". '
        f"{request.reason.strip() + ' ' if request.reason.strip() else ''}"
        f"Trained on {data_source}; {decision.metric} {decision.score:.4f} on {holdout_rows} holdout rows {versus}. "
        f"Gates: {decision.summary}. Registered as {role}."
    )


@dataclass(frozen=True)
class Registration:
    version: str
    semver: str
    aliases: list[str]
    description: str


@dataclass(frozen=True)
class Candidate:
    """A trained model that passed the gates, and what its registration records about where it came from."""

    model_uri: str
    run_id: str
    request: ChangeRequest
    decision: GateDecision
    champion: ChampionScore
    data_fingerprint: str
    data_source: str
    holdout_rows: int
    code_version: str


def register_version(
    registry: ModelRegistry, candidate: Candidate, actor: str, fault_point: str | None = None
) -> Registration:
    """Register with the next semver and alias it ``challenger``; with no champion yet it becomes ``champion``.

    MLflow has no transaction across creating a version and moving an alias: a process that dies in between leaves
    a version with its tags and no alias, which ``training.recovery`` marks abandoned (naming its semver) when the
    request is found crashed."""
    request, decision, champion = candidate.request, candidate.decision, candidate.champion
    with registry.exclusive():  # the champion read, the semver, the version and its alias: one step
        # The champion now, not the one scored before training: another run may have registered the first model since
        # (two runs on an empty registry would otherwise both bootstrap, the second replacing the first without a
        # rollout), and its semver is what the next one counts from.
        current = registry.alias_version(CHAMPION)
        semver = next_semver(request.kind, registry.semver_of(current), registry.taken_semvers())
        bootstrap = current is None
        if champion.version is None and current is not None:
            champion = replace(
                champion,
                note=f"no champion when this run scored it; {registry.semver_of(current)} (v{current.version}) was "
                "registered meanwhile, so this one is its challenger",
            )
        role = CHAMPION if bootstrap else CHALLENGER
        description = version_description(
            semver, request, decision, champion, candidate.data_source, candidate.holdout_rows, role
        )
        tags: dict[str, Any] = {
            TAG_REQUEST_ID: str(request.id),
            TAG_REQUEST_KIND: request.kind,
            TAG_REQUEST_TITLE: request.title[:250],
            TAG_DATA_FINGERPRINT: candidate.data_fingerprint,
            TAG_CODE_VERSION: candidate.code_version,
            TAG_PRIMARY_METRIC: decision.metric,
            TAG_DECISION: "bootstrap champion" if bootstrap else "challenger",
            **{
                f"{TAG_GATE_PREFIX}{r.name}": f"{'pass' if r.passed else 'fail'}: {r.detail}"[:250]
                for r in decision.results
            },
        }
        mv: ModelVersion = registry.register(
            candidate.model_uri, candidate.run_id, semver, tags=tags, description=description
        )
        crash_point(fault_point, VERSION_CREATED)
        reason = f"{semver} from {request.kind} request #{request.id}: {decision.summary}"
        if bootstrap:
            registry.promote(str(mv.version), actor=actor, reason=f"first model passing the gates; {reason}")
        else:
            registry.set_alias(CHALLENGER, str(mv.version), actor=actor, reason=reason)
        return Registration(str(mv.version), semver, [role], description)
