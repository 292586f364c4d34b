"""Where the orchestrator keeps its state, read from the environment (prefix ``MLOPS_``) when asked, never at import.

Embedded defaults put everything under one project home (``MLOPS_HOME``, default ``./.mlops``):
the MLflow store (``mlflow.db`` + ``artifacts/``), Prefect's database (``prefect/``), and the project's own store
(``mlops.db``: change requests, alias history). The standard ``MLFLOW_TRACKING_URI`` and ``PREFECT_API_URL``
override the embedded MLflow store and Prefect server, and ``MLOPS_DATABASE_URL`` points the project store at
PostgreSQL in production.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

QUIET_ENV = {
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


JSON_LOGS_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_CONFIGURE_LOGGING": "false"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """All locations and URLs; one source of truth for each."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Field(default=Path(".mlops"), description="Project home folder holding all embedded state.")
    config: Path = Field(default=Path("config/project.yaml"), description="Project configuration file.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the project store; default sqlite:///<home>/mlops.db."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_TRACKING_URI"),
        description="MLflow tracking/registry URI; default sqlite:///<home>/mlflow.db.",
    )
    prefect_api_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PREFECT_API_URL", "MLOPS_PREFECT_API_URL"),
        description="Prefect API; default: an embedded Prefect server on SQLite under <home>/prefect.",
    )
    gateway_token: str | None = Field(
        default=None, description="Bearer token of the gateway's admin endpoints (MLOPS_GATEWAY_TOKEN); unset: off."
    )
    dask_address: str | None = Field(
        default=None, description="Dask scheduler the search's trials run on (MLOPS_DASK_ADDRESS); unset: a local one."
    )
    feedback_token: str | None = Field(
        default=None,
        description="Bearer token that POST /v1/feedback requires (MLOPS_FEEDBACK_TOKEN), separate from the admin "
        "token so label senders cannot approve rollouts; unset: feedback needs no credential.",
    )
    feedback_corrections: bool = Field(
        default=False,
        description="MLOPS_FEEDBACK_CORRECTIONS=true: a second label for a request id replaces the first (the last "
        "one counts, once). Off: a second label is refused with 409.",
    )
    gateway_compile: bool = Field(
        default=True,
        description="MLOPS_GATEWAY_COMPILE=false: serve pipelines through scikit-learn even where the gateway could "
        "compile them to numpy (deployments/fast_predict.py; a compiled path is only used after it gave exactly the "
        "pipeline's answers on probe rows at load).",
    )
    webhook_url: str | None = Field(
        default=None, description="Where notices are POSTed as JSON (MLOPS_WEBHOOK_URL); unset: Prefect events only."
    )
    trust_pickle: bool = Field(
        default=False,
        description="Load model versions stored as pickle/cloudpickle or skops with other types (MLOPS_TRUST_PICKLE=1):"
        " loading them can run any code their author chose; off by default.",
    )

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="MLOPS_LOG_FORMAT: text (plain lines for a person at a terminal) or json (one JSON object per "
        "line for a log collector; the Docker image, compose file and Kubernetes manifests set it).",
    )
    log_level: str | None = Field(
        default=None,
        description="MLOPS_LOG_LEVEL: the level of the project's own loggers (mlops.*); default INFO with json logs, "
        "WARNING with text.",
    )
    access_log: bool | None = Field(
        default=None,
        description="MLOPS_ACCESS_LOG: one line per gateway request (method, path, status, duration, request id); "
        "default on with json logs, off with text.",
    )

    claim_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="MLOPS_CLAIM_LEASE_SECONDS: a running change request claimed on another host whose claimant has "
        "not renewed its claim for this long is marked crashed (claims on this host are checked by their pid).",
    )

    fault_point: str | None = Field(
        default=None,
        description="Test hook (MLOPS_FAULT_POINT): SIGKILL the process at this named point (core/faults.py).",
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _known_log_format(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("text", "json"):
            return value.strip().lower()
        raise ValueError(f"unknown log format {value!r}: set MLOPS_LOG_FORMAT (or --log-format) to text or json")

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
            return value.strip().upper()
        raise ValueError(f"unknown log level {value!r}: set MLOPS_LOG_LEVEL to one of {', '.join(LOG_LEVELS)}")

    @property
    def effective_log_level(self) -> str:
        return self.log_level or ("INFO" if self.log_format == "json" else "WARNING")

    @property
    def access_log_enabled(self) -> bool:
        return self.log_format == "json" if self.access_log is None else self.access_log

    @property
    def secrets(self) -> list[str]:
        """Values no log line may contain (the gateway's admin and feedback tokens)."""
        return [s for s in (self.gateway_token, self.feedback_token) if s]

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def store_url(self) -> str:
        return with_installed_driver(self.database_url or f"sqlite:///{self.home_dir / 'mlops.db'}")

    @property
    def tracking_uri(self) -> str:
        return with_installed_driver(self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}")

    @property
    def artifact_root(self) -> Path:
        return self.home_dir / "artifacts"

    @property
    def owns_mlflow_store(self) -> bool:
        """The MLflow store is this home's own ``mlflow.db`` (the embedded default): its artifacts live under
        ``artifact_root``, and the stored locations may be rewritten when the home moves."""
        return self.tracking_uri == f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def local_mlflow_store(self) -> bool:
        """A store this process writes directly (SQLite, or a database under `mlops up --database-url`), not a
        tracking server: nobody else decides where artifacts go, so experiments get a location under
        ``artifact_root`` (without one MLflow writes to ``./mlruns`` of the current directory)."""
        return not self.tracking_uri.startswith(("http://", "https://", "databricks"))

    @property
    def journal_dir(self) -> Path:
        """The gateway's durable journals of answers and labels not yet in the store (core/store/journal.py)."""
        return self.home_dir / "journal"

    @property
    def home_location_file(self) -> Path:
        """Where the home records the folder it was last opened in (to notice it was moved or copied)."""
        return self.home_dir / "home-location"

    @property
    def prefect_home(self) -> Path:
        return self.home_dir / "prefect"

    def ensure_home(self) -> None:
        """Create the home folder on first use (called by commands, never on import)."""
        self.home_dir.mkdir(parents=True, exist_ok=True)
        self.artifact_root.mkdir(parents=True, exist_ok=True)

    def apply_to_environment(self, *, narrated: bool = False) -> None:
        """Point Prefect and MLflow at this home before either library is imported by a command.

        Prefect reads ``PREFECT_HOME`` when its settings are first built, so this must run before flows are
        imported. Variables the user set explicitly are left alone.
        """
        self.ensure_home()
        if not self.prefect_api_url:
            os.environ.setdefault("PREFECT_HOME", str(self.prefect_home))
            # The embedded server migrates a fresh SQLite database before it answers; Prefect gives it 20 s, which a
            # busy 2-core machine exceeds ("Timed out while attempting to connect to ephemeral Prefect API server").
            os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        # MLFLOW_TRACKING_URI is not written: every module reaches MLflow through ``core.tracking.configure_mlflow``,
        # and a value set here would look user-chosen to the next Settings (artifacts then went to ./mlruns).
        # Nothing here needs the network: no library phones home (Prefect's telemetry heartbeat also contends for
        # the embedded server's SQLite database while it migrates).
        for var, value in QUIET_ENV.items():
            os.environ.setdefault(var, value)
        if self.log_format == "json":  # stderr carries JSON lines only: no progress bars, MLflow logs through ours
            for var, value in JSON_LOGS_ENV.items():
                os.environ.setdefault(var, value)
        if narrated:  # a command that tells the story itself (the demo); the runs and their logs stay in the UI
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")

    def export_to_children(self) -> None:
        """Make processes this one starts (uvicorn workers, served flows) resolve the same home, config and logs."""
        os.environ.update(self._for_children())

    def _for_children(self) -> dict[str, str]:
        out = {
            "MLOPS_HOME": str(self.home_dir),
            "MLOPS_CONFIG": str(self.config.resolve()),
            "MLOPS_LOG_FORMAT": self.log_format,
        }
        if self.log_level:
            out["MLOPS_LOG_LEVEL"] = self.log_level
        if self.access_log is not None:
            out["MLOPS_ACCESS_LOG"] = "true" if self.access_log else "false"
        return out

    def child_environment(self, **extra: str) -> dict[str, str]:
        """The environment for a child process: this one's, with these settings and ``extra`` on top."""
        return {**os.environ, **self._for_children(), **extra}


def with_installed_driver(url: str) -> str:
    """``postgresql://`` with the driver the project installs (psycopg2): SQLAlchemy 2.1 and MLflow 3 otherwise pick
    psycopg 3, which is not installed, and fail with "No module named 'psycopg'"."""
    return "postgresql+psycopg2://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


@contextmanager
def environment_preserved(*names: str) -> Iterator[None]:
    """Put ``names`` back as they were after the block: ``mlflow.set_tracking_uri`` also writes
    ``MLFLOW_TRACKING_URI`` into the environment, which later Settings would read as the user's choice."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def get_settings() -> Settings:
    """Build settings from the current environment (cheap; call where needed instead of caching globally)."""
    return Settings()
