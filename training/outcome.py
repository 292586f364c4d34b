"""The result of one lifecycle run: what the flow returns, what the report shows, what the request records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import MlopsError
from training.gates import GateDecision
from training.registration import ChampionScore

LifecycleStatus = Literal["idle", "registered", "rejected", "failed"]


@dataclass
class LifecycleOutcome:
    """Filled in stage by stage; ``decision`` is one or two sentences in plain words."""

    status: LifecycleStatus
    decision: str
    request_id: int | None = None
    model_name: str | None = None
    version: str | None = None
    semver: str | None = None
    aliases: list[str] = field(default_factory=list)
    metric: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    champion: str | None = None
    champion_metrics: dict[str, float] | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None
    data: str = ""  # what it trained on, in words (source rows, production window and rows)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def fail(self, err: Exception) -> str:
        """Record ``err`` as the outcome, in words a person can act on; returns the error's category."""
        category = err.category if isinstance(err, MlopsError) else "software"
        message = str(err) if isinstance(err, MlopsError) else f"internal error {err.__class__.__name__}: {err}"
        self.status, self.decision = "failed", f"{category} error: {message}"
        return category

    def record_comparison(self, metrics: dict[str, float], champion: ChampionScore, decision: GateDecision) -> None:
        """The new model's and the champion's holdout metrics and the gates, for the report."""
        self.metrics, self.champion_metrics, self.champion = metrics, champion.metrics, champion.semver
        self.gates = [asdict(r) for r in decision.results]
