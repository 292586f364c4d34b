"""Project configuration: one YAML file per model, validated strictly.

Unknown keys and wrong types are errors naming the key (``gates.max_regresion: extra key not allowed``), so a
typo never silently falls back to a default. Change-request overrides (``--set training.params.C=0.5``) are applied
to the raw YAML and validated by the same schema, so an override can never produce a configuration a file could not.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError

BUILTIN_PREFIX = "builtin:"

# Metric name -> (direction, problem type). The evaluator in tasks/training.py computes exactly these.
METRICS: dict[str, tuple[Literal["maximize", "minimize"], Literal["classification", "regression"]]] = {
    "accuracy": ("maximize", "classification"),
    "balanced_accuracy": ("maximize", "classification"),
    "f1": ("maximize", "classification"),
    "roc_auc": ("maximize", "classification"),
    "log_loss": ("minimize", "classification"),
    "rmse": ("minimize", "regression"),
    "mae": ("minimize", "regression"),
    "r2": ("maximize", "regression"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    source: str = Field(
        description="Path to a .csv or .parquet file (relative to the config file), or 'builtin:<name>' "
        "for demo data shipped with the package (builtin:breast_cancer)."
    )
    target: str = Field(description="Column to predict.")
    numeric_features: list[str] = Field(default_factory=list)
    categorical_features: list[str] = Field(default_factory=list)
    time_column: str | None = Field(default=None, description="Timestamp column, needed for a time split.")
    allow_extra_columns: bool = Field(
        default=False, description="Accept columns that are neither features, target nor time column."
    )

    @property
    def features(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    @property
    def columns(self) -> list[str]:
        extra = [self.time_column] if self.time_column else []
        return [*self.features, self.target, *extra]

    @model_validator(mode="after")
    def _check_columns(self) -> DataConfig:
        if not self.features:
            raise ValueError("declare at least one column in numeric_features or categorical_features")
        overlap = set(self.numeric_features) & set(self.categorical_features)
        if overlap:
            raise ValueError(f"columns listed as both numeric and categorical: {sorted(overlap)}")
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} is also listed as a feature")
        dupes = {c for c in self.features if self.features.count(c) > 1}
        if dupes:
            raise ValueError(f"features listed twice: {sorted(dupes)}")
        return self


class SplitConfig(_Strict):
    method: Literal["random", "time"] = "random"
    test_size: float = Field(default=0.25, gt=0.0, lt=1.0, description="Fraction of rows held out.")
    seed: int = 42


class SearchParam(_Strict):
    """One dimension of the search space: ``int`` or ``float`` between ``low`` and ``high`` (``log`` for a
    log-uniform scale), or ``categorical`` over ``choices``."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"an {self.type} parameter needs `low` < `high`, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale parameter needs `low` > 0, got {self.low}")
        return self


class SearchConfig(_Strict):
    """Hyperparameter search before the gates: Optuna proposes, trials run as Prefect tasks on Dask, each is scored
    by cross-validation on the training rows only (the holdout stays untouched for the gates)."""

    space: dict[str, SearchParam] = Field(description="Estimator parameter -> its range; at least one.")
    n_trials: int = Field(default=16, ge=1, le=10_000)
    parallelism: int = Field(
        default=2, ge=1, le=256, description="Trials proposed and run at once (the same value gives the same trials)."
    )
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    cv_folds: int = Field(default=3, ge=2, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0, description="Stop proposing trials after this long.")
    dask_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Workers of the local Dask cluster (with MLOPS_DASK_ADDRESS, set it to that cluster's workers: "
        "the automatic trials_per_task counts on it).",
    )
    trials_per_task: int | None = Field(
        default=None,
        ge=1,
        description="About how many trials one Prefect task runs (each still its own trial and MLflow child run), so "
        "Prefect's per-task cost (about 0.6 s on Dask) is paid once per task: a round of parallelism trials runs on "
        "ceil(parallelism / trials_per_task) tasks, which take its trials one at a time from a shared queue "
        "(longest first by estimated time after the first round), so a task with short trials runs more of them. "
        "Unset: ceil(parallelism / dask_workers), one task per worker per round. At most parallelism. Does not "
        "change which trials are proposed.",
    )

    @model_validator(mode="after")
    def _non_empty(self) -> SearchConfig:
        if not self.space:
            raise ValueError("the search space is empty; name at least one estimator parameter with its range")
        return self

    @model_validator(mode="after")
    def _batch_within_a_round(self) -> SearchConfig:
        if self.trials_per_task is not None and self.trials_per_task > self.parallelism:
            raise ValueError(
                f"trials_per_task ({self.trials_per_task}) is larger than parallelism ({self.parallelism}): a task "
                "holds trials of one round of parallelism proposals only; lower trials_per_task, raise "
                "parallelism, or leave trials_per_task unset for one task per Dask worker per round"
            )
        return self

    @property
    def resolved_trials_per_task(self) -> int:
        """``trials_per_task``, or by default one task per Dask worker per round of ``parallelism`` trials."""
        return self.trials_per_task or -(-self.parallelism // self.dask_workers)


class TrainingConfig(_Strict):
    estimator: str = Field(
        default="sklearn.linear_model.LogisticRegression",
        description="Import path of an sklearn-compatible estimator class.",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    scale_numeric: bool = Field(default=True, description="Standardise numeric features inside the pipeline.")
    search: SearchConfig | None = Field(default=None, description="Tune `params` by a search first (optional).")


class EvaluationConfig(_Strict):
    primary_metric: str = "accuracy"
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None, description="Defaults to the metric's natural direction."
    )

    @model_validator(mode="after")
    def _known_metric(self) -> EvaluationConfig:
        if self.primary_metric not in METRICS:
            raise ValueError(f"unknown primary_metric {self.primary_metric!r}; choose one of {sorted(METRICS)}")
        return self

    @property
    def resolved_direction(self) -> Literal["maximize", "minimize"]:
        return self.direction or METRICS[self.primary_metric][0]

    @property
    def problem_type(self) -> Literal["classification", "regression"]:
        return METRICS[self.primary_metric][1]


class GatesConfig(_Strict):
    min_score: float | None = Field(default=None, description="Absolute floor (ceiling when minimizing).")
    max_regression: float = Field(
        default=0.0, ge=0.0, description="How much worse than the champion a challenger may score."
    )
    min_improvement: float | None = Field(
        default=None, ge=0.0, description="How much better than the champion a challenger must score."
    )


class ValidationConfig(_Strict):
    suite: str | None = Field(default=None, description="Great Expectations suite (JSON), relative to the config file.")
    min_rows: int = Field(default=50, ge=1)
    max_missing_fraction: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Largest share of missing values allowed in a feature."
    )
    max_missing_target_fraction: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Share of rows allowed without a label; such rows are left out of training and scoring.",
    )


class QualityGuardConfig(_Strict):
    """The sequential test on labelled feedback: accuracy for classifiers, absolute error for regressors."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Largest false-rollback probability accepted.")
    beta: float = Field(default=0.2, gt=0, lt=0.5, description="Largest chance of missing a real degradation.")
    min_effect: float = Field(
        default=0.05,
        gt=0,
        description="Classifiers: the accuracy drop worth rolling back for (a fraction, < 1). Regressors: the "
        "increase in mean absolute error worth rolling back for, in the target's units (see min_effect_ratio).",
    )
    min_effect_ratio: float | None = Field(
        default=None,
        gt=0,
        description="Regressors only: state the effect as a ratio of the champion's mean absolute error instead "
        "(0.1 = 10% worse); overrides min_effect for them.",
    )


class RolloutConfig(_Strict):
    """How a challenger meets real traffic, and what makes it promoted or rolled back.

    Guards, checked at every evaluation of every strategy (any one rolls back):

    - errors: a sequential test on the challenger's failure rate (exceptions, invalid answers and deadline misses)
      against the champion's, rolling back at ``max_error_rate_increase`` points worse. Minimum evidence: never on
      fewer than ``min_error_events`` challenger failures, however few the champion has (a zero baseline is no
      exception).
    - latency: the two variants' latencies compared under the same conditions: each challenger answer is paired with
      the nearest champion answer started within a second of it (in shadow mode: the champion's answer to the same
      request), and the challenger is rolled back once an always-valid test (a mixture sequential test, Ville's
      inequality) shows that more than half of its answers took longer than ``max_latency_ratio`` times the paired
      champion answer *and* ``min_latency_increase_ms`` more. The false-rollback rate under continuous monitoring is
      at most ``quality.alpha`` for a challenger exactly at that limit, and far lower for an equally fast one,
      whatever the host's load; at least 20 pairs are needed. The guard only ever rolls back, so a canary does not
      move to a step where it can no longer pair (100%: no champion answers left) and no rollout promotes while it
      has fewer than ``min_latency_pairs`` pairs ("waiting for the latency guard: N of M pairs"); the wait ends at
      ``max_duration_seconds`` like any other (the rollout pauses for a person).

    Deadline misses count as the error guard's failures only when they are the model's own: misses of both variants
    at the same moment are a host stall and are left out, and a burst of one variant's misses counts once
    (``deployments.statistics.deadline_misses``); exceptions count one by one.
    """

    strategy: Literal["canary", "ab", "shadow"] = "canary"
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0], min_length=1)
    min_requests_per_step: int = Field(default=200, ge=1, description="Challenger answers needed to leave a step.")
    min_seconds_per_step: float = Field(default=30.0, ge=0)
    ab_split: float = Field(default=50.0, gt=0, lt=100, description="Percent to the challenger in an A/B test.")
    min_labels: int = Field(default=200, ge=1, description="Labelled challenger answers needed to promote.")
    max_error_rate_increase: float = Field(default=0.02, gt=0, lt=1)
    min_error_events: int = Field(
        default=5,
        ge=1,
        description="The error guard never rolls back on fewer challenger failures than this, whatever the "
        "champion's count (a handful of events against a zero baseline is not evidence).",
    )
    max_latency_ratio: float = Field(
        default=1.5,
        gt=1,
        description="Latency guard: a challenger answer slower than this times the paired champion's...",
    )
    min_latency_increase_ms: float = Field(
        default=2.0,
        ge=0,
        description="...and by at least this much counts as too slow, so 1.0 vs 1.6 ms is noise (2 ms: a model "
        "whose predict takes 4-5 ms made 2x slower is still caught; see docs/statistics.md).",
    )
    min_latency_pairs: int = Field(
        default=100,
        ge=0,
        description="Latency pairs needed before a canary moves to 100% or any rollout promotes, unless the latency "
        "guard has already decided (100 pairs catch a challenger too slow in 75% of its pairs with about 98% "
        "probability at alpha 0.01; docs/statistics.md). 0: do not wait.",
    )
    quality: QualityGuardConfig = QualityGuardConfig()
    max_duration_seconds: float = Field(default=7200, gt=0, description="Then the rollout pauses for a person.")
    deadline_ms: float | None = Field(
        default=250,
        gt=0,
        validation_alias=AliasChoices("deadline_ms", "challenger_timeout_ms"),
        description="During a rollout, an answer later than this is a timeout, for both variants alike; the other "
        "variant answers instead. null: no deadline for either. (challenger_timeout_ms is read as this.)",
    )

    @model_validator(mode="after")
    def _check_steps(self) -> RolloutConfig:
        if any(not 0 < s <= 100 for s in self.steps) or self.steps != sorted(self.steps):
            raise ValueError("steps must be increasing percentages in (0, 100], e.g. [5, 25, 50, 100]")
        return self


# Evidently's names of the drift tests a config may choose. Distances (effect sizes: drift when the score is at or
# above the threshold) do not shrink with sample size; p-value tests (drift when at or below) do, so at thousands of
# rows they flag differences too small to matter.
DRIFT_DISTANCES = ("wasserstein", "psi", "jensenshannon", "hellinger", "kl_div")
DRIFT_P_VALUE_TESTS = ("ks", "chisquare", "z")


class DriftTest(_Strict):
    """One column test: an Evidently method and its threshold."""

    method: Literal["wasserstein", "psi", "jensenshannon", "hellinger", "kl_div", "ks", "chisquare", "z"]
    threshold: float = Field(gt=0, description="Distances: drift at or above it. p-value tests: at or below it.")


class MonitoringConfig(_Strict):
    """What the ``monitor`` flow checks, and when it raises ``mlops.drift.detected`` / ``mlops.model.degraded``."""

    window_minutes: float = Field(default=60.0, gt=0, description="Recent predictions compared with the reference.")
    min_rows: int = Field(default=200, ge=10, description="Fewer recent rows than this: no verdict.")
    max_rows: int = Field(default=30_000, ge=1001, description="Deterministic sample size per side.")
    drift_share: float = Field(default=0.3, gt=0, le=1, description="Share of drifted columns that is drift.")
    reference: Literal["training", "holdout", "recent"] = Field(
        default="training",
        description="What drift is measured against: the champion's training rows, its holdout rows, or served "
        "answers of the reference_window_minutes before the monitored window (a season's own recent past).",
    )
    reference_window_minutes: float = Field(
        default=7 * 24 * 60, gt=0, description="With reference 'recent': how much served traffic the reference covers."
    )
    drift_numeric: DriftTest = Field(
        default=DriftTest(method="wasserstein", threshold=0.1),
        description="Numeric columns: Wasserstein distance over the reference's standard deviation, drift at 0.1 sd.",
    )
    drift_categorical: DriftTest = Field(
        default=DriftTest(method="jensenshannon", threshold=0.1),
        description="Categorical columns (and a classifier's predictions): Jensen-Shannon distance.",
    )
    drift_columns: dict[str, DriftTest] = Field(
        default_factory=dict, description="Per-column tests overriding the two above, by column name."
    )
    interval_seconds: float = Field(default=60.0, gt=0, description="Bucket size of the EWMA charts.")
    ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    ewma_width: float = Field(default=3.0, gt=0)
    slo_latency_p95_ms: float = Field(default=50.0, gt=0)
    slo_error_rate: float = Field(default=0.01, ge=0, le=1)
    slo_accuracy: float | None = Field(default=None, ge=0, le=1)
    slo_mae: float | None = Field(
        default=None, gt=0, description="Regressors: mean absolute error on labelled answers; unset: no SLO."
    )
    retrain_cooldown_minutes: float = Field(default=60.0, ge=0, description="At most one retrain per cooldown.")
    rollback_window_hours: float = Field(
        default=24.0, gt=0, description="Degradation this soon after a promotion rolls back to previous."
    )


DEFAULT_WINDOW_DAYS = 30.0


class RetrainingConfig(_Strict):
    """Which data a retrain uses: the configured source, plus (``include_production``) the labelled answers of the
    prediction log in a window: ``since`` .. ``until``, or the last ``window_days`` before ``until`` (default: the
    last 30 days). The ``retrain`` flow pins ``since`` and ``until`` on the change request it files, so the request
    names its window and a rerun reads the same rows; a request that pins no ``until`` trains on the source alone."""

    include_production: bool = Field(
        default=False, description="Add the labelled production rows of the window to the configured source."
    )
    window_days: float | None = Field(
        default=None, gt=0, description="The window: the last N days before `until` (30 when `since` is unset too)."
    )
    since: datetime | None = Field(default=None, description="The window's start (UTC unless a zone is given).")
    until: datetime | None = Field(
        default=None, description="The window's end; set by the retrain flow on its request (UTC)."
    )
    max_rows: int | None = Field(default=None, ge=1, description="Keep at most the newest N labelled rows.")
    min_production_rows: int = Field(
        default=0,
        ge=0,
        description="A retrain with fewer labelled production rows than this is skipped (0: train on the source "
        "alone when there are none).",
    )
    recency_half_life_days: float | None = Field(
        default=None,
        gt=0,
        description="Weight training rows by recency: a row this many days older than the window's end counts "
        "half (source rows count as old as the window's start). Needs an estimator whose fit takes sample_weight.",
    )
    holdout_share_of_production: float = Field(
        default=0.3,
        ge=0.0,
        lt=1.0,
        description="Share of the production rows held out (stratified for a classifier) next to the source's "
        "holdout, so champion and challenger are compared on recent traffic too.",
    )

    @field_validator("since", "until", mode="before")
    @classmethod
    def _dates_are_midnight(cls, value: object) -> object:
        if isinstance(value, date) and not isinstance(value, datetime):  # YAML reads 2026-11-01 as a date
            return datetime(value.year, value.month, value.day)
        return value

    @field_validator("since", "until", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _check_window(self) -> RetrainingConfig:
        if self.since is not None and self.window_days is not None:
            raise ValueError(
                f"set either since ({self.since:%Y-%m-%d %H:%M} UTC) or window_days ({self.window_days:g}), not both"
            )
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since ({self.since:%Y-%m-%d %H:%M}) must be before until ({self.until:%Y-%m-%d %H:%M})")
        return self


_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"


class KubernetesConfig(_Strict):
    """Sizes for `mlops k8s render`: the gateway and its autoscaler, and the Job each flow run gets on the
    Kubernetes work pool."""

    min_replicas: int = Field(default=2, ge=1, le=100, description="Gateway replicas the autoscaler keeps at least.")
    max_replicas: int = Field(default=10, ge=1, le=100, description="Gateway replicas the autoscaler may reach.")
    target_cpu_percent: int = Field(default=70, ge=10, le=100, description="Average CPU use the autoscaler aims at.")
    gateway_cpu: str = Field(default="500m", pattern=_QUANTITY)
    gateway_memory: str = Field(default="1Gi", pattern=_QUANTITY)
    flow_cpu: str = Field(default="1", pattern=_QUANTITY, description="CPU request of each flow run's Job.")
    flow_memory: str = Field(default="2Gi", pattern=_QUANTITY, description="Memory request and limit per flow run.")
    flow_service_account: str = Field(
        default="mlops-flow-runs", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Flow runs' identity."
    )
    finished_job_ttl_seconds: int = Field(default=3600, ge=0, description="Finished flow-run Jobs are kept this long.")

    @model_validator(mode="after")
    def _bounds(self) -> KubernetesConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        return self


class ProjectConfig(_Strict):
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    description: str = ""
    data: DataConfig
    split: SplitConfig = SplitConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    gates: GatesConfig = GatesConfig()
    validation: ValidationConfig = ValidationConfig()
    rollout: RolloutConfig = RolloutConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retraining: RetrainingConfig = RetrainingConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    base_dir: Path = Field(default=Path("."), exclude=True, description="Folder relative paths resolve from.")

    @model_validator(mode="before")
    @classmethod
    def _regression_effect(cls, raw: Any) -> Any:
        """A regressor's quality effect defaults to 10% of the champion's mean absolute error: the classifier's
        default (0.05, an accuracy drop) means nothing in a target's units."""
        if not isinstance(raw, dict):
            return raw
        metric = (raw.get("evaluation") or {}).get("primary_metric", "accuracy")
        rollout = raw.get("rollout") or {}
        quality = rollout.get("quality") or {}
        regression = METRICS.get(metric, ("", ""))[1] == "regression"
        if regression and isinstance(quality, dict) and not {"min_effect", "min_effect_ratio"} & quality.keys():
            return {**raw, "rollout": {**rollout, "quality": {**quality, "min_effect_ratio": 0.1}}}
        return raw

    @model_validator(mode="after")
    def _check_split(self) -> ProjectConfig:
        if self.split.method == "time" and not self.data.time_column:
            raise ValueError("split.method 'time' needs data.time_column")
        quality = self.rollout.quality
        if self.evaluation.problem_type == "classification" and quality.min_effect >= 1:
            raise ValueError(
                f"rollout.quality.min_effect is an accuracy drop for a classifier, a fraction below 1 "
                f"(got {quality.min_effect}); use for example 0.05"
            )
        if self.evaluation.problem_type == "classification" and quality.min_effect_ratio is not None:
            raise ValueError("rollout.quality.min_effect_ratio applies to regression models only; remove it")
        if self.retraining.recency_half_life_days is not None:
            _check_sample_weight(self.training.estimator)
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"base_dir"})


def _check_sample_weight(estimator: str) -> None:
    """Recency weighting needs ``fit(..., sample_weight=...)``; say so now rather than at the end of a retrain. An
    estimator that cannot be imported is left to training, which names the problem."""
    module_name, _, class_name = estimator.rpartition(".")
    try:
        fit = getattr(importlib.import_module(module_name), class_name).fit
        accepts = "sample_weight" in inspect.signature(fit).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return
    if not accepts:
        raise ValueError(
            f"retraining.recency_half_life_days needs an estimator whose fit accepts sample_weight, and "
            f"{class_name}.fit does not; remove recency_half_life_days or choose another training.estimator"
        )


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see config/project.yaml for the schema)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {key}: {msg}")
    return f"{origin} is invalid:\n" + "\n".join(lines)


def parse_config(raw: dict[str, Any], base_dir: Path, origin: str = "configuration") -> ProjectConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin} must be a YAML mapping of keys to values, got {type(raw).__name__}.")
    try:
        return ProjectConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def read_raw_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"configuration file {path} does not exist; copy config/project.yaml and edit it, "
            "or point MLOPS_CONFIG / --config at yours."
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"configuration file {path} is not readable YAML: {err}") from None
    if raw is None:
        raise ConfigError(f"configuration file {path} is empty.")
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {path} must be a mapping of keys to values.")
    return raw


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> ProjectConfig:
    """Read, apply ``overrides`` (dotted keys), and validate; errors name the key and the file."""
    path = Path(path).resolve()
    raw = read_raw_config(path)
    origin = str(path)
    if overrides:
        raw = apply_overrides(raw, overrides)
        origin = f"{path} with overrides {sorted(overrides)}"
    return parse_config(raw, base_dir=path.parent, origin=origin)


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``key.path=value``; the value is read as a YAML scalar/list (``0.5``, ``true``, ``[a, b]``)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value, e.g. training.params.C=0.5")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key; use dotted keys like gates.min_score=0.9")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


# Keys under which arbitrary sub-keys are legitimate (estimator parameters); everywhere else an override must
# name an existing schema key, so a typo is reported instead of creating a new, ignored entry.
_FREE_FORM = ("training.params",)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        free_form = any(dotted.startswith(prefix + ".") for prefix in _FREE_FORM)
        if not free_form:
            _check_schema_key(parts, dotted)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def _check_schema_key(parts: list[str], dotted: str) -> None:
    model: type[BaseModel] | None = ProjectConfig
    for i, part in enumerate(parts):
        if model is None or part not in model.model_fields or part == "base_dir":
            where = ".".join(parts[:i]) or "the top level"
            known = sorted(k for k in (model.model_fields if model else {}) if k != "base_dir")
            hint = f"; known keys there: {', '.join(known)}" if known else ""
            raise ConfigError(f"override key {dotted!r} is unknown: no {part!r} under {where}{hint}")
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
