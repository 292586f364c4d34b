"""Data and prediction drift with Evidently 0.7, sampled deliberately so a million-row window takes seconds.

The tests are chosen, not left to Evidently: left alone, ``DataDriftPreset`` picks p-value tests (Kolmogorov-Smirnov,
chi-square) when the reference has 1,000 rows or fewer, and a p-value shrinks with sample size, so at a few
thousand current rows a difference too small to matter (a season mix, a finite-sample wobble) becomes "drift". The
default is effect sizes with fixed thresholds (``monitoring.drift_numeric`` / ``drift_categorical`` /
``drift_columns``): normed Wasserstein for numbers (drift when the distributions are 0.1 reference standard
deviations apart), Jensen-Shannon for categories. Distances are consistent estimators, so a large deterministic
sample gives the same scores as the full data to within sampling error. Every column's verdict carries the test and
threshold that decided it.

A distance measured on a small sample is noisy: with nothing changed, normed Wasserstein between 200 rows and a
5,000-row reference averages about 0.09. So a distance test's threshold is raised to the sampling noise floor when
that is higher: ``NOISE_FLOOR_Z * sqrt(1/n_reference + 1/n_current)`` (for categories also times
``sqrt((levels - 1) / 3)``), which only matters below about 1,000 rows; the verdict records the threshold used.
``benchmarks/drift_calibration.py`` measured the false alarms and the power this gives.

A category the reference never saw is its own finding (rows, share, values), not drift by itself: one odd request
moves a distance by its share only, and for p-value tests (whose expected count of zero makes chi-square's p exactly
0) unseen values are left out of the test.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class UnseenCategories:
    """Values of a categorical column in the current window that the reference never had."""

    column: str
    values: list[str]  # the most frequent first, at most five
    rows: int
    share: float  # of the current rows

    @property
    def sentence(self) -> str:
        shown = ", ".join(repr(v) for v in self.values)
        return (
            f"{self.rows} row{'s' if self.rows != 1 else ''} ({self.share:.2%}) with a category of {self.column!r} "
            f"not seen in the reference: {shown}"
        )

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "values": self.values, "rows": self.rows, "share": self.share,
                "summary": self.sentence}  # fmt: skip


ColumnTest = tuple[str, float]  # (Evidently method name, threshold)
DEFAULT_NUMERIC_TEST: ColumnTest = ("wasserstein", 0.1)
DEFAULT_CATEGORICAL_TEST: ColumnTest = ("jensenshannon", 0.1)
P_VALUE_METHODS = ("ks", "chisquare", "z")
FLOORED_METHODS = ("wasserstein", "jensenshannon", "hellinger")  # distances whose noise shrinks as 1/sqrt(n)
NOISE_FLOOR_Z = 2.5  # calibrated on stationary streams (benchmarks/drift_calibration.py)


def noise_floor(method: str, reference_rows: int, current_rows: int, levels: int = 0) -> float:
    """The smallest threshold at which ``method`` rarely fires on samples of these sizes from one distribution."""
    if method not in FLOORED_METHODS or reference_rows == 0 or current_rows == 0:
        return 0.0
    floor = NOISE_FLOOR_Z * math.sqrt(1 / reference_rows + 1 / current_rows)
    return floor * math.sqrt(max(levels - 1, 1) / 3) if method != "wasserstein" else floor


# what the verdict calls each test: Evidently's own display names ("... p_value" for the p-value tests)
METHOD_LABELS = {
    "wasserstein": "Wasserstein distance (normed)",
    "psi": "PSI",
    "jensenshannon": "Jensen-Shannon distance",
    "hellinger": "Hellinger distance",
    "kl_div": "Kullback-Leibler divergence",
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
}


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
    unseen: list[UnseenCategories] = field(default_factory=list)
    reference: str = "reference rows"  # what the reference covers, in words

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def summary(self) -> str:
        unseen = "".join(f"; {u.sentence}" for u in self.unseen)
        if not self.drifted_columns:
            return (
                f"no drift in {len(self.columns)} columns ({self.current_rows} recent rows vs {self.reference_rows} "
                f"{self.reference}){unseen}"
            )
        detail = ", ".join(
            f"{c.column} ({c.method} {c.score:.3g} {'<=' if is_p_value(c.method) else '>='} {c.threshold:g})"
            for c in self.columns
            if c.drifted
        )
        kind = "dataset drift" if self.dataset_drift else "drift"
        return (
            f"{kind}: {len(self.drifted_columns)} of {len(self.columns)} columns drifted against {self.reference_rows}"
            f" {self.reference}: {detail}{unseen}"
        )

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
            "reference": self.reference,
            "unseen_categories": [u.to_json() for u in self.unseen],
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
    numeric_test: ColumnTest = DEFAULT_NUMERIC_TEST,
    categorical_test: ColumnTest = DEFAULT_CATEGORICAL_TEST,
    column_tests: dict[str, ColumnTest] | None = None,
    reference_label: str = "reference rows",
) -> DriftVerdict:
    """Compare ``current`` with ``reference`` column by column (numeric and categorical, a prediction column
    included if present in both), each with its test: ``column_tests`` by name, else ``numeric_test`` or
    ``categorical_test``. ``reference_label`` says what the reference covers ("training rows", ...)."""
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
    tests = {c: (column_tests or {}).get(c, numeric_test if c in nums else categorical_test) for c in columns}
    unseen = _unseen_categories(reference, current, cur, cats, tests)
    tests = {c: _floored(ref, cur, c, c in cats, *tests[c]) for c in columns}
    definition = DataDefinition(numerical_columns=nums, categorical_columns=cats)
    preset = DataDriftPreset(
        drift_share=drift_share,
        per_column_method={c: method for c, (method, _) in tests.items()},
        per_column_threshold={c: threshold for c, (_, threshold) in tests.items()},
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    results: list[ColumnDrift] = []
    share = 0.0
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"]
        if name.startswith("ValueDrift("):
            method, threshold = _parse_method(name)
            method = METHOD_LABELS.get(method, method)  # per-column methods are named by their key
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
        unseen=unseen,
        reference=reference_label,
    )


def _floored(
    ref: pd.DataFrame, cur: pd.DataFrame, column: str, categorical: bool, method: str, threshold: float
) -> ColumnTest:
    """The column's test with its threshold raised to the noise floor of the two samples' sizes."""
    levels = int(pd.concat([ref[column], cur[column]]).nunique()) if categorical else 0
    floor = noise_floor(method, int(ref[column].notna().sum()), int(cur[column].notna().sum()), levels)
    return method, max(threshold, round(floor, 4))


def _unseen_categories(
    reference: pd.DataFrame, current: pd.DataFrame, cur: pd.DataFrame, cats: list[str], tests: dict[str, ColumnTest]
) -> list[UnseenCategories]:
    """Find categories the reference never had, counted on *all* the current rows (a single new row must be found
    however large the window the drift tests sample from); for p-value tests, blank them in the sample ``cur`` (in
    place) so the test compares only categories both sides can have."""
    found: list[UnseenCategories] = []
    for c in cats:
        known = {category_label(v) for v in reference[c].dropna().unique()}
        new_values = [v for v in current[c].dropna().unique() if category_label(v) not in known]
        if not new_values:
            continue
        new = current[c].isin(new_values)
        counts = current.loc[new, c].map(category_label).value_counts()
        found.append(UnseenCategories(c, [str(v) for v in counts.index[:5]], int(new.sum()), float(new.mean())))
        if tests[c][0] in P_VALUE_METHODS:
            cur.loc[cur[c].notna() & ~cur[c].isin(known), c] = None
    return found


def detect_model_drift(
    reference: pd.DataFrame, current: pd.DataFrame, config: ProjectConfig, reference_label: str = "training rows"
) -> DriftVerdict:
    """Drift of the config's features and of the model's predictions (categorical for classifiers, numeric for
    regressors) between the reference and the current window, with the config's tests and thresholds."""
    numeric = list(config.data.numeric_features)
    categorical = list(config.data.categorical_features)
    if PREDICTION_COLUMN in reference.columns and PREDICTION_COLUMN in current.columns:
        if config.evaluation.problem_type == "classification":
            categorical.append(PREDICTION_COLUMN)
        else:
            numeric.append(PREDICTION_COLUMN)
    m = config.monitoring
    return detect_drift(
        reference,
        current,
        numeric,
        categorical,
        drift_share=m.drift_share,
        max_rows=m.max_rows,
        numeric_test=(m.drift_numeric.method, m.drift_numeric.threshold),
        categorical_test=(m.drift_categorical.method, m.drift_categorical.threshold),
        column_tests={c: (t.method, t.threshold) for c, t in m.drift_columns.items()},
        reference_label=reference_label,
    )
