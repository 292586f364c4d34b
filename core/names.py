"""Names shared across the project: registry aliases, tag keys and Prefect event names (one source of truth)."""

from __future__ import annotations

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)

# MLflow tag keys written on runs and model versions.
TAG_SEMVER = "mlops.semver"
TAG_REQUEST_ID = "mlops.request_id"
TAG_REQUEST_KIND = "mlops.request_kind"
TAG_REQUEST_TITLE = "mlops.request_title"
TAG_DATA_FINGERPRINT = "mlops.data_fingerprint"
TAG_CODE_VERSION = "mlops.code_version"
TAG_DECISION = "mlops.decision"
TAG_DECISION_REASON = "mlops.decision_reason"
TAG_ROLE = "mlops.role"
TAG_PRIMARY_METRIC = "mlops.primary_metric"
TAG_GATE_PREFIX = "mlops.gate."
TAG_MONITORED_VERSION = "mlops.monitored_version"  # on monitor runs: the champion version they checked
TAG_VERDICT = "mlops.verdict"  # on monitor runs: healthy | drift | degraded
TAG_TRAINING_DATA = "mlops.training_data"  # the data in words: "x.csv (150 rows) + production ... (412 labelled rows)"
TAG_PRODUCTION_WINDOW = "mlops.production_window"  # the retraining window read, or "none"
TAG_PRODUCTION_ROWS = "mlops.production_rows"  # labelled production rows trained and held out on ("0": source only)
TAG_ORIGIN = "mlops.origin"  # on a run's dataset inputs: "configured source" | "production"
TAG_ROWS = "mlops.rows"  # on a run's dataset inputs: its row count
DECISION_ABANDONED = "abandoned"  # TAG_DECISION of a version whose registration was interrupted (never aliased)

# Prefect event names (resources are the model: ``mlops.model.<name>``).
EVENT_MODEL_REGISTERED = "mlops.model.registered"
EVENT_VALIDATION_FAILED = "mlops.data.validation_failed"
EVENT_ROLLOUT_PROMOTED = "mlops.rollout.promoted"
EVENT_ROLLOUT_ABORTED = "mlops.rollout.aborted"
EVENT_DRIFT_DETECTED = "mlops.drift.detected"
EVENT_MODEL_DEGRADED = "mlops.model.degraded"
EVENT_MODEL_ROLLED_BACK = "mlops.model.rolled_back"


def model_resource_id(model_name: str) -> str:
    """Prefect event resource id for a registered model."""
    return f"mlops.model.{model_name}"


def model_resource(model_name: str) -> dict[str, str]:
    """The ``resource`` of every event this project emits: the model, by id and name."""
    return {"prefect.resource.id": model_resource_id(model_name), "prefect.resource.name": model_name}


# Prefect deployments of the flows, as ``prefect.yaml`` names them (``<flow name>/<deployment name>``).
FLOWS = ("lifecycle", "rollout", "monitor", "retrain", "rollback")
WORK_POOL = "mlops-process"  # the process work pool prefect.yaml deploys to


def deployment_name(flow_name: str) -> str:
    """``monitor`` -> ``monitor/monitor``: each flow has one deployment of its own name in ``prefect.yaml``."""
    return f"{flow_name}/{flow_name}"


# MLflow metric prefixes and artifact paths of a lifecycle run.
HOLDOUT_PREFIX = "holdout_"  # the new model's metrics on the holdout
CHAMPION_PREFIX = "champion_holdout_"  # the champion's metrics on the same rows
PRODUCTION_PREFIX = "holdout_production_"  # the new model's metrics on the holdout's production rows
CHAMPION_PRODUCTION_PREFIX = "champion_holdout_production_"  # the champion's on those rows
REFERENCE_ARTIFACT = "reference/train.parquet"  # the training snapshot drift monitoring compares against
HOLDOUT_ARTIFACT = "reference/holdout.parquet"  # the holdout rows, the other reference a config may choose
