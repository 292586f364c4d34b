"""Scoring the champion on the new holdout, and registering a model that passed the gates.

The description and tags written here are what a person reads in MLflow's registry and compare views, so they
state the decision in words: which request, which data, what score against which champion, which gates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops.config import ProjectConfig
from mlops.events import (
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
from mlops.store import ChangeRequest
from model_registry.registry import ModelRegistry
from model_registry.semver import next_semver
from tasks.gates import GateDecision
from tasks.training import score_model


@dataclass(frozen=True)
class ChampionScore:
    version: str | None
    semver: str | None
    metrics: dict[str, float] | None
    note: str  # why there is no score, or where it came from


def score_champion(registry: ModelRegistry, holdout: pd.DataFrame, config: ProjectConfig) -> ChampionScore:
    """Score the current champion on the challenger's holdout rows; a champion that cannot be scored is reported,
    not fatal (a major request may change the features)."""
    import mlflow.sklearn

    champion = registry.alias_version(CHAMPION)
    if champion is None:
        return ChampionScore(None, None, None, "no champion yet: this model can bootstrap the registry")
    semver = registry.semver_of(champion)
    try:
        model = mlflow.sklearn.load_model(f"models:/{registry.name}/{champion.version}")
        metrics = score_model(model, holdout, config)
    except Exception as err:  # any load/predict failure means "not comparable", which the gates then report
        return ChampionScore(
            str(champion.version),
            semver,
            None,
            f"champion {semver} (v{champion.version}) could not be scored on this holdout: "
            f"{err.__class__.__name__}: {str(err)[:300]}",
        )
    return ChampionScore(str(champion.version), semver, metrics, f"champion {semver} (v{champion.version})")


@task(name="score-champion", cache_policy=NO_CACHE)
def score_champion_task(registry: ModelRegistry, holdout: pd.DataFrame, config: ProjectConfig) -> ChampionScore:
    """Score the current champion on the same holdout rows as the new model."""
    return score_champion(registry, holdout, config)


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


@task(name="register-model", cache_policy=NO_CACHE)
def register_task(
    registry: ModelRegistry,
    model_uri: str,
    run_id: str,
    request: ChangeRequest,
    decision: GateDecision,
    champion: ChampionScore,
    fingerprint: str,
    code_version: str,
    data_source: str,
    holdout_rows: int,
    actor: str,
) -> Registration:
    """Register with the next semver and alias it ``challenger``; with no champion yet it becomes ``champion``."""
    semver = next_semver(request.kind, champion.semver, registry.taken_semvers())
    bootstrap = champion.version is None
    role = CHAMPION if bootstrap else CHALLENGER
    description = version_description(semver, request, decision, champion, data_source, holdout_rows, role)
    tags: dict[str, Any] = {
        TAG_REQUEST_ID: str(request.id),
        TAG_REQUEST_KIND: request.kind,
        TAG_REQUEST_TITLE: request.title[:250],
        TAG_DATA_FINGERPRINT: fingerprint,
        TAG_CODE_VERSION: code_version,
        TAG_PRIMARY_METRIC: decision.metric,
        TAG_DECISION: "bootstrap champion" if bootstrap else "challenger",
        **{
            f"{TAG_GATE_PREFIX}{r.name}": f"{'pass' if r.passed else 'fail'}: {r.detail}"[:250]
            for r in decision.results
        },
    }
    mv: ModelVersion = registry.register(model_uri, run_id, semver, tags=tags, description=description)
    reason = f"{semver} from {request.kind} request #{request.id}: {decision.summary}"
    if bootstrap:
        registry.promote(str(mv.version), actor=actor, reason=f"first model passing the gates; {reason}")
    else:
        registry.set_alias(CHALLENGER, str(mv.version), actor=actor, reason=reason)
    return Registration(str(mv.version), semver, [role], description)


def train_and_register(
    settings: Any,
    config: ProjectConfig,
    semver: str,
    alias: str | None,
    *,
    actor: str,
    description: str,
    **params: Any,
) -> str:
    """Train on the config's data with ``params`` over ``training.params`` and register it outside the lifecycle flow
    (no request, no gates): the tests' and benchmarks' way to set up a registry. Returns the MLflow version."""
    from mlops.store import ProjectStore
    from tasks.data import load_data, split_holdout
    from tasks.tracking import configure_mlflow, ensure_experiment, log_metrics, log_model
    from tasks.training import fit_model

    cfg = config.model_copy(
        update={"training": config.training.model_copy(update={"params": {**config.training.params, **params}})}
    )
    client = configure_mlflow(settings)
    exp = ensure_experiment(client, cfg.model_name, settings)
    data = load_data(cfg)
    split = split_holdout(data.frame, cfg)
    model = fit_model(split.train, cfg)
    run_id = client.create_run(exp).info.run_id
    log_metrics(client, run_id, score_model(model, split.holdout, cfg), "holdout_")
    uri = log_model(client, run_id, model, split.train, cfg, data.source, data.fingerprint)
    client.set_terminated(run_id)
    registry = ModelRegistry(cfg.model_name, ProjectStore(settings.store_url), client)
    mv = registry.register(uri, run_id, semver, tags={}, description=description)
    if alias == CHAMPION:
        registry.promote(str(mv.version), actor=actor, reason=description)
    elif alias:
        registry.set_alias(alias, str(mv.version), actor=actor, reason=description)
    return str(mv.version)
