"""Retraining on a data window: the configured source plus the labelled answers of the prediction log.

``retraining`` in the config says which answers (a window of time, a cap, recency weights). The training frame is
the source's rows followed by the production rows (one per request id, oldest first, features as the gateway
validated them, the label that counts); a row's origin is its position, so the frame itself carries no extra
column and the GX gate sees exactly the declared columns. Production rows are split on their own: a share of
them joins the source's holdout, so champion and challenger are also compared on recent traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import BUILTIN_PREFIX, DEFAULT_WINDOW_DAYS, ProjectConfig
from core.errors import ConfigError
from core.store.predictions import PredictionLog
from training.data import Split, fingerprint_frame, load_data, split_holdout, stratify_by

SOURCE_DATASET = "configured source"


@dataclass(frozen=True)
class Window:
    """The answers a retrain reads: given in [since, until), labelled before until."""

    since: datetime
    until: datetime

    @property
    def label(self) -> str:
        midnight = all(t.hour == t.minute == t.second == 0 for t in (self.since, self.until))
        fmt = "%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M"
        return f"{self.since:{fmt}}..{self.until:{fmt}} UTC"

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400.0

    def overrides(self) -> dict[str, str | None]:
        """The change-request overrides that pin this window (what the ``retrain`` flow files)."""
        return {
            "retraining.since": self.since.isoformat(),
            "retraining.until": self.until.isoformat(),
            "retraining.window_days": None,
        }


def resolve_window(config: ProjectConfig, now: datetime | None = None) -> Window | None:
    """The window of ``retraining``: None when production rows are not included, or when the config pins no end
    (``until``) and no ``now`` is given (a request not filed by a retrain trains on the source alone)."""
    r = config.retraining
    until = r.until or now
    if not r.include_production or until is None:
        return None
    since = r.since or until - timedelta(days=r.window_days or DEFAULT_WINDOW_DAYS)
    if since >= until:
        raise ConfigError(
            f"retraining.since ({since:%Y-%m-%d %H:%M} UTC) is not before the window's end ({until:%Y-%m-%d %H:%M} "
            "UTC); move since back or use window_days."
        )
    return Window(since, until)


@dataclass(frozen=True)
class TrainingData:
    """What a lifecycle run trains and validates on; rows ``source_rows`` and after came from production."""

    frame: pd.DataFrame  # a RangeIndex: the source's rows, then the production rows oldest first
    source: str  # what the user named: a resolved path or builtin:<name>
    fingerprint: str  # of the whole frame
    source_rows: int
    source_fingerprint: str
    window: Window | None = None
    production_at: pd.Series | None = None  # answer times of the production rows, indexed like ``frame``
    production_fingerprint: str | None = None

    @property
    def production_rows(self) -> int:
        return len(self.frame) - self.source_rows

    @property
    def source_part(self) -> pd.DataFrame:
        return self.frame.iloc[: self.source_rows]

    @property
    def production_part(self) -> pd.DataFrame:
        return self.frame.iloc[self.source_rows :]

    @property
    def production_name(self) -> str:
        return f"production window {self.window.label}" if self.window else "production"

    def from_production(self, rows: pd.DataFrame) -> np.ndarray:
        """Which of ``rows`` (a slice of ``frame``, e.g. the holdout) came from the prediction log."""
        return np.asarray(rows.index >= self.source_rows)

    @property
    def description(self) -> str:
        """ "customers.csv (1200 rows) + production 2026-11-01..2026-11-30 UTC (412 labelled rows)"."""
        name = self.source if self.source.startswith(BUILTIN_PREFIX) else Path(self.source).name
        source = f"{name} ({self.source_rows} rows)"
        if self.window is None:
            return source
        if not self.production_rows:
            return f"{source}; no labelled production rows in {self.window.label}, so the configured source only"
        return f"{source} + production {self.window.label} ({self.production_rows} labelled rows)"


def load_training_data(config: ProjectConfig, log: PredictionLog | None, now: datetime | None = None) -> TrainingData:
    """The configured source and, when ``retraining`` includes production, the labelled rows of its window."""
    loaded = load_data(config)
    source = loaded.frame.reset_index(drop=True)
    window = resolve_window(config, now)
    if window is None or log is None:
        return TrainingData(source, loaded.source, loaded.fingerprint, len(source), loaded.fingerprint)
    rows = log.labelled_rows(config.model_name, window.since, window.until, config.retraining.max_rows)
    if rows.empty:
        return TrainingData(source, loaded.source, loaded.fingerprint, len(source), loaded.fingerprint, window)
    production = production_frame(rows, source, config)
    frame = pd.concat([source, production], ignore_index=True, sort=False)
    at = pd.Series(rows["at"].array, index=frame.index[len(source) :])
    return TrainingData(
        frame=frame,
        source=loaded.source,
        fingerprint=fingerprint_frame(frame),
        source_rows=len(source),
        source_fingerprint=loaded.fingerprint,
        window=window,
        production_at=at,
        production_fingerprint=fingerprint_frame(production),
    )


def production_frame(rows: pd.DataFrame, source: pd.DataFrame, config: ProjectConfig) -> pd.DataFrame:
    """Labelled answers as training rows: the input record's own fields (so a record that no longer matches the
    config is named by the GX gate), the label as the target, and the answer's time as the time column."""
    data = config.data
    frame = pd.DataFrame(list(rows["features"]))
    frame[data.target] = _like(pd.Series(list(rows["label"])), source.get(data.target))
    if data.time_column:
        at = pd.to_datetime(rows["at"], utc=True).reset_index(drop=True)
        reference = source.get(data.time_column)
        naive = reference is not None and pd.api.types.is_datetime64_any_dtype(reference) and reference.dt.tz is None
        if naive:
            at = at.dt.tz_convert(None)
        frame[data.time_column] = at
    return frame


def _like(values: pd.Series, reference: pd.Series | None) -> pd.Series:
    """Labels in the source's dtype where they convert (JSON gave 1 for a target read as 1.0 or True)."""
    if reference is None or reference.dtype == object:
        return values
    try:
        return values.astype(reference.dtype)
    except (ValueError, TypeError):
        return values


def split_training_data(data: TrainingData, config: ProjectConfig) -> Split:
    """The source split as ``split`` says, and ``retraining.holdout_share_of_production`` of the production rows
    held out beside it (the newest with a time split, else at random, stratified for a classifier)."""
    if not data.production_rows:
        return split_holdout(data.frame, config)
    source = split_holdout(data.source_part, config)
    production = data.production_part
    n_holdout = round(len(production) * config.retraining.holdout_share_of_production)
    n_holdout = min(n_holdout, len(production) - 1)  # keep at least one recent row to learn from
    if n_holdout <= 0:
        train, holdout = production, production.iloc[:0]
    elif config.split.method == "time":
        train, holdout = production.iloc[:-n_holdout], production.iloc[-n_holdout:]
    else:
        from sklearn.model_selection import train_test_split

        stratify = stratify_by(production[config.data.target], n_holdout, config)
        train, holdout = train_test_split(
            production, test_size=n_holdout, random_state=config.split.seed, stratify=stratify
        )
    return Split(train=pd.concat([source.train, train]), holdout=pd.concat([source.holdout, holdout]))


def recency_weights(rows: pd.DataFrame, data: TrainingData, config: ProjectConfig) -> np.ndarray | None:
    """Sample weights for ``rows`` (training rows of ``data``) with ``retraining.recency_half_life_days``: a row
    counts half for every half-life between its answer and the window's end; source rows count as old as the
    window's start. Scaled to a mean of 1, so the estimator's regularisation means what it meant unweighted.
    None without weighting, or with no production rows (all rows would weigh the same)."""
    half_life = config.retraining.recency_half_life_days
    if half_life is None or data.window is None or data.production_at is None:
        return None
    until = pd.Timestamp(data.window.until)
    age_days = np.full(len(rows), data.window.days)
    recent = data.from_production(rows)
    if recent.any():
        at = data.production_at.loc[rows.index[recent]]
        age_days[recent] = ((until - at).dt.total_seconds() / 86400.0).clip(lower=0.0).to_numpy()
    weights = 0.5 ** (age_days / half_life)
    return weights / weights.mean()
