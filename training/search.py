"""Hyperparameter search: Optuna proposes parameters, each trial is scored by cross-validation on the training rows
only (the holdout stays untouched for the gates), and the best trial's parameters become the candidate's.

Plain functions: the ``lifecycle`` flow runs the trials as Prefect tasks on a Dask cluster (``flows/search.py``);
everything here is callable and testable without either.

Reproducibility: trials are proposed in rounds of ``parallelism`` and each round is told back in trial order, so
a seeded search proposes the same trials (and finds the same best one) whatever the number of Dask workers and
whichever of a round's Prefect tasks runs which trial (``trials_per_task``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.config import ProjectConfig, SearchConfig, SearchParam
from core.errors import ConfigError
from training.fit import features_and_target, fit_model, resolve_estimator, score_model


def with_params(config: ProjectConfig, params: dict[str, Any]) -> ProjectConfig:
    """``config`` with ``params`` over ``training.params``. Under a search, an estimator with a ``random_state``
    that ``training.params`` leaves unset gets the search's seed: otherwise its cross-validated scores, and so
    the trials a seeded sampler proposes after them, would change from run to run."""
    merged = {**config.training.params, **params}
    search = config.training.search
    if search is not None and "random_state" not in merged and "random_state" in resolve_estimator(config).get_params():
        merged["random_state"] = search.seed
    return config.model_copy(update={"training": config.training.model_copy(update={"params": merged})})


def check_search_space(config: ProjectConfig) -> SearchConfig:
    """The search section, after checking every parameter it names belongs to the estimator."""
    search = config.training.search
    if search is None:
        raise ConfigError("training.search is not set; add a search space to tune parameters.")
    valid = set(resolve_estimator(config).get_params())
    unknown = sorted(set(search.space) - valid)
    if unknown:
        raise ConfigError(
            f"training.search.space names {unknown}, which are not parameters of {config.training.estimator}; "
            f"valid ones: {', '.join(sorted(valid))}."
        )
    return search


def suggest(trial: Any, space: dict[str, SearchParam]) -> dict[str, Any]:
    """One Optuna trial's parameters over ``space`` (ints stay ints, choices keep their YAML types)."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "int":
            params[name] = trial.suggest_int(name, int(p.low or 0), int(p.high or 0), log=p.log)
        elif p.type == "float":
            params[name] = trial.suggest_float(name, float(p.low or 0), float(p.high or 0), log=p.log)
        else:
            params[name] = trial.suggest_categorical(name, p.choices or [])
    return params


@dataclass(frozen=True)
class CrossValidation:
    mean: float
    std: float
    folds: list[float]
    seconds: float


def cross_validate(params: dict[str, Any], train_rows: pd.DataFrame, config: ProjectConfig) -> CrossValidation:
    """The primary metric of the configured pipeline with ``params``, by k-fold cross-validation on ``train_rows``
    (stratified for classification, seeded by ``split.seed``)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    assert config.training.search is not None
    started = time.perf_counter()
    tuned = with_params(config, params)
    metric = config.evaluation.primary_metric
    k = config.training.search.cv_folds
    _, y = features_and_target(train_rows, config)
    splitter = (
        StratifiedKFold(n_splits=k, shuffle=True, random_state=config.split.seed)
        if config.evaluation.problem_type == "classification"
        else KFold(n_splits=k, shuffle=True, random_state=config.split.seed)
    )
    scores = []
    for fit_idx, val_idx in splitter.split(train_rows, y):
        model = fit_model(train_rows.iloc[fit_idx], tuned)
        fold = score_model(model, train_rows.iloc[val_idx], tuned)
        if metric not in fold:
            raise ConfigError(f"primary metric {metric!r} could not be computed in cross-validation for {params}")
        scores.append(fold[metric])
    return CrossValidation(float(np.mean(scores)), float(np.std(scores)), scores, time.perf_counter() - started)


@dataclass(frozen=True)
class TrialResult:
    number: int
    params: dict[str, Any]
    score: float | None  # mean cross-validated primary metric; None when the trial failed
    std: float | None
    seconds: float
    error: str = ""  # "Type: message" of what ended a failed trial


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def evaluate_trials(
    trials: Iterable[tuple[int, dict[str, Any]]], train_rows: pd.DataFrame, config: ProjectConfig
) -> list[TrialResult]:
    """Cross-validate each ``(trial number, params)`` in turn, taking the next only when one is done (a round's
    queue hands them out one at a time); a trial that raises fails alone (its error is kept, the others still run),
    as one bad corner of the space must not end the search."""
    results = []
    for number, params in trials:
        started = time.perf_counter()
        try:
            cv = cross_validate(params, train_rows, config)
        except Exception as err:
            results.append(TrialResult(number, params, None, None, time.perf_counter() - started, error_text(err)))
            continue
        results.append(TrialResult(number, params, cv.mean, cv.std, cv.seconds))
    return results


MIN_COST_HISTORY = 4  # completed trials before a trial's seconds are estimated from the others'
Proposal = tuple[int, dict[str, Any]]


def _cost_features(space: dict[str, SearchParam], params: dict[str, Any]) -> list[float]:
    """A trial's parameters as numbers for the cost fit: sizes (positive ranges) on a log scale, as a forest's time
    grows with its number of trees; choices one-hot."""
    row: list[float] = []
    for name, p in space.items():
        value = params.get(name)
        if p.type == "categorical":
            row.extend(1.0 if value == choice else 0.0 for choice in p.choices or [])
        elif float(p.low or 0) > 0:
            row.append(math.log(float(value)))
        else:
            row.append(float(value))
    return row


def estimated_seconds(
    space: dict[str, SearchParam], done: list[TrialResult], proposals: list[Proposal]
) -> list[float] | None:
    """Each proposal's expected seconds, from a ridge fit of the log seconds of the completed trials on their
    parameters; None while fewer than ``MIN_COST_HISTORY`` have completed (nothing to learn from yet)."""
    history = [t for t in done if t.score is not None and t.seconds > 0]
    if len(history) < MIN_COST_HISTORY:
        return None
    x = np.array([_cost_features(space, t.params) for t in history])
    y = np.log([t.seconds for t in history])
    centre, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - centre) / scale
    ridge = 1.0  # a few trials and several parameters: shrink towards "every trial costs the mean"
    weights = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    new = (np.array([_cost_features(space, params) for _, params in proposals]) - centre) / scale
    return [float(s) for s in np.exp(y.mean() + new @ weights)]


def plan_order(
    proposals: list[Proposal], space: dict[str, SearchParam], done: list[TrialResult]
) -> tuple[list[Proposal], dict[int, float] | None]:
    """The order in which a round's tasks take its trials, and each trial's estimated seconds by its number.

    The tasks take trials one at a time from a shared queue, each the next one as soon as it is free, so the
    round is a greedy list schedule; taken longest first it is LPT, whose round ends within a third of the best
    split. In trial order until ``MIN_COST_HISTORY`` trials have completed; then longest first by the seconds the
    trials done so far predict (a forest of 160 trees takes about four times one of 40). Which trials are
    proposed, and the order they are told to the sampler, do not depend on it."""
    seconds = estimated_seconds(space, done, proposals)
    if seconds is None:
        return list(proposals), None
    estimate = {number: s for (number, _), s in zip(proposals, seconds, strict=True)}
    return sorted(proposals, key=lambda p: (-estimate[p[0]], p[0])), estimate


@dataclass
class SearchResult:
    """Every trial of one search, and the best by the primary metric in its direction."""

    metric: str
    direction: Literal["maximize", "minimize"]
    trials: list[TrialResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    stopped_early: str = ""  # why fewer than n_trials ran (timeout), if so
    rounds: list[list[list[int]]] = field(default_factory=list)  # per round, the trials each of its tasks ran

    @property
    def completed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.score is not None]

    @property
    def best(self) -> TrialResult:
        done = self.completed
        if not done:
            errors = "; ".join(t.error for t in self.trials[:3])
            raise ConfigError(f"every search trial failed ({errors}); check training.search.space.")
        sign = 1.0 if self.direction == "maximize" else -1.0
        return max(done, key=lambda t: (sign * (t.score or 0.0), -t.number))

    def top(self, n: int = 5) -> list[TrialResult]:
        sign = -1.0 if self.direction == "maximize" else 1.0
        return sorted(self.completed, key=lambda t: (sign * (t.score or 0.0), t.number))[:n]


def make_study(search: SearchConfig, direction: Literal["maximize", "minimize"]) -> Any:
    """An in-memory Optuna study with the configured, seeded sampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(seed=search.seed)
        if search.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=search.seed)
    )
    return optuna.create_study(direction=direction, sampler=sampler)
