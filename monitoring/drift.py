"""Data and prediction drift with Evidently 0.7, sampled deliberately so a million-row window takes seconds.

Evidently's ``DataDriftPreset`` picks its test by reference size: with more than 1,000 reference rows it uses
distances (normed Wasserstein for numbers, Jensen-Shannon for categories, threshold 0.1); with fewer, p-value tests
(Kolmogorov-Smirnov, chi-square). Distances are consistent estimators, so a large deterministic sample gives the
same scores as the full data to within sampling error, and the verdict is recorded with the test that decided it.
Samples are kept above 1,000 rows so the sampled run uses the same test family as a full run would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.config import ProjectConfig

PREDICTION_COLUMN = "prediction"


DEFAULT_MAX_ROWS = 30_000


def deterministic_sample(frame: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """The same rows for the same frame and seed: a monitoring verdict can be reproduced."""
    if len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[idx]


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "method": self.method, "score": self.score, "threshold": self.threshold,
                "drifted": self.drifted}  # fmt: skip


@dataclass
class DriftVerdict:
    columns: list[ColumnDrift]
    drift_share: float  # share of columns drifted
    dataset_drift: bool
    reference_rows: int
    current_rows: int
    sampled_reference_rows: int
    sampled_current_rows: int
    html: str = field(default="", repr=False)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def summary(self) -> str:
        if not self.drifted_columns:
            return f"no drift in {len(self.columns)} columns ({self.current_rows} recent rows vs {self.reference_rows})"
        detail = ", ".join(
            f"{c.column} ({c.method} {c.score:.3g} {'<' if is_p_value(c.method) else '>'} {c.threshold})"
            for c in self.columns
            if c.drifted
        )
        kind = "dataset drift" if self.dataset_drift else "drift"
        return f"{kind}: {len(self.drifted_columns)} of {len(self.columns)} columns drifted: {detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted_columns,
            "columns": [c.to_json() for c in self.columns],
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "sampled_reference_rows": self.sampled_reference_rows,
            "sampled_current_rows": self.sampled_current_rows,
            "summary": self.summary,
        }


def category_label(value: Any) -> Any:
    """One label per category whatever the column's dtype: ``1``, ``1.0`` (an int column with a missing value
    reads as float) and ``"1"`` are the same category; missing stays missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def is_p_value(method: str) -> bool:
    """Evidently names its p-value tests "<test> p_value"; the rest are distances (drift when above threshold)."""
    return "p_value" in method


def _parse_method(metric_name: str) -> tuple[str, float]:
    # "ValueDrift(column=x,method=Wasserstein distance (normed),threshold=0.1)"
    inner = metric_name[metric_name.index("(") + 1 : -1]
    method = inner.split("method=", 1)[1].rsplit(",threshold=", 1)[0]
    threshold = float(inner.rsplit("threshold=", 1)[1])
    return method, threshold


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    drift_share: float = 0.5,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    with_html: bool = True,
) -> DriftVerdict:
    """Compare ``current`` with ``reference`` column by column (numeric and categorical, a prediction column
    included if present in both)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [c for c in [*numeric, *categorical] if c in reference.columns and c in current.columns]
    max_rows = max(max_rows, 1001)  # keep Evidently on the same test family as a full-size run
    # sample rows first, then take columns: memory stays flat however large the window is
    ref = deterministic_sample(reference, max_rows, seed)[columns].copy()
    cur = deterministic_sample(current, max_rows, seed + 1)[columns].copy()
    cats = [c for c in categorical if c in columns]
    nums = [c for c in numeric if c in columns]
    for frame in (ref, cur):
        for c in cats:
            frame[c] = frame[c].map(category_label).astype(object)
    definition = DataDefinition(numerical_columns=nums, categorical_columns=cats)
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    results: list[ColumnDrift] = []
    share = 0.0
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"]
        if name.startswith("ValueDrift("):
            method, threshold = _parse_method(name)
            score = float(metric["value"])
            # distances drift when at or above the threshold, p-values when at or below it
            drifted = score <= threshold if is_p_value(method) else score >= threshold
            results.append(ColumnDrift(metric["config"]["column"], method, score, threshold, drifted))
        elif name.startswith("DriftedColumnsCount("):
            share = float(metric["value"]["share"])
    return DriftVerdict(
        columns=results,
        drift_share=share,
        dataset_drift=share >= drift_share,
        reference_rows=len(reference),
        current_rows=len(current),
        sampled_reference_rows=len(ref),
        sampled_current_rows=len(cur),
        html=snapshot.get_html_str(as_iframe=False) if with_html else "",
    )


def detect_model_drift(reference: pd.DataFrame, current: pd.DataFrame, config: ProjectConfig) -> DriftVerdict:
    """Drift of the config's features and of the model's predictions (categorical for classifiers, numeric for
    regressors) between the reference and the current window."""
    numeric = list(config.data.numeric_features)
    categorical = list(config.data.categorical_features)
    if PREDICTION_COLUMN in reference.columns and PREDICTION_COLUMN in current.columns:
        if config.evaluation.problem_type == "classification":
            categorical.append(PREDICTION_COLUMN)
        else:
            numeric.append(PREDICTION_COLUMN)
    return detect_drift(reference, current, numeric, categorical)
