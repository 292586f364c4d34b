"""Test and benchmark set-up that production code does not need: a registry populated without the lifecycle flow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.config import ProjectConfig
from core.names import CHAMPION, HOLDOUT_PREFIX
from core.settings import Settings
from core.tracking import ensure_experiment
from services.context import open_context
from training.data import split_holdout
from training.fit import fit_model, score_model
from training.tracking import log_metrics, log_model, log_training_data
from training.window import load_training_data


def train_and_register(
    settings: Settings,
    config: ProjectConfig,
    semver: str,
    alias: str | None,
    *,
    actor: str,
    description: str,
    wrap: Callable[[Any], Any] | None = None,
    **params: Any,
) -> str:
    """Train on the config's data with ``params`` over ``training.params`` and register it outside the lifecycle flow
    (no request, no gates): the tests' and benchmarks' way to set up a registry. ``wrap``, when given, is applied
    to the fitted pipeline before it is scored and logged (a benchmark's deliberately slowed model). Returns the
    MLflow version."""
    cfg = config.model_copy(
        update={"training": config.training.model_copy(update={"params": {**config.training.params, **params}})}
    )
    context = open_context(settings, config=cfg)
    client, registry = context.mlflow, context.registry
    exp = ensure_experiment(client, cfg.model_name, settings)
    data = load_training_data(cfg, None)
    split = split_holdout(data.frame, cfg)
    model = fit_model(split.train, cfg)
    if wrap is not None:
        model = wrap(model)
    run_id = client.create_run(exp).info.run_id
    log_metrics(client, run_id, score_model(model, split.holdout, cfg), HOLDOUT_PREFIX)
    log_training_data(client, run_id, data, cfg)
    uri = log_model(client, run_id, model, split.train, cfg, split.holdout)
    client.set_terminated(run_id)
    mv = registry.register(uri, run_id, semver, tags={}, description=description)
    if alias == CHAMPION:
        registry.promote(str(mv.version), actor=actor, reason=description)
    elif alias:
        registry.set_alias(alias, str(mv.version), actor=actor, reason=description)
    return str(mv.version)


def labelled_window(
    start: datetime, *, seed: int = 11, n: int = 800, minutes: float = 30, late_bias: float = 0.0
) -> pd.DataFrame:
    """A regressor's prediction log as the monitor reads it: ``n`` labelled answers spread evenly over ``minutes``
    from ``start``, errors normal(0, 5), the truths of the last 40% moved by ``late_bias`` (the health tests' and
    ``benchmarks/monitor_alignment.py``'s window)."""
    rng = np.random.default_rng(seed)
    errors = rng.normal(0, 5, n) + np.where(np.arange(n) > 0.6 * n, late_bias, 0.0)
    prediction = rng.uniform(50, 150, n)
    return pd.DataFrame(
        {
            "at": pd.to_datetime([start + timedelta(minutes=minutes * i / n) for i in range(n)], utc=True),
            "label": prediction + errors,
            "prediction": prediction,
            "latency_ms": 2.0,
            "status": "ok",
        }
    )
