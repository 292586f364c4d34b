"""The monitor's verdict on a window of traffic, from the drift check and the health charts. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from monitoring.drift import DriftVerdict
from monitoring.health import HealthReport

Verdict = Literal["healthy", "drift", "degraded", "insufficient data"]


@dataclass
class MonitorResult:
    """What one ``monitor`` run found; also the flow's return value."""

    model: str
    champion: str | None
    rows: int
    verdict: Verdict
    summary: str
    drift: DriftVerdict | None = None
    health: HealthReport | None = None
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None

    @property
    def drifted(self) -> bool:
        return self.verdict == "drift"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "champion": self.champion,
            "rows": self.rows,
            "verdict": self.verdict,
            "summary": self.summary,
            "drift": None if self.drift is None else self.drift.to_json(),
            "health": None if self.health is None else self.health.to_json(),
            "mlflow_run_id": self.mlflow_run_id,
            "mlflow_run_url": self.mlflow_run_url,
        }


def insufficient_data(model: str, champion: str | None, rows: int, min_rows: int) -> MonitorResult:
    return MonitorResult(
        model=model,
        champion=champion,
        rows=rows,
        verdict="insufficient data",
        summary=f"{rows} recent answers, fewer than monitoring.min_rows={min_rows}; no verdict.",
    )


def monitor_verdict(drift: DriftVerdict, health: HealthReport, drift_share: float) -> tuple[Verdict, str]:
    """Drift when at least ``drift_share`` of the columns drifted; else degraded when a health chart breached;
    else healthy. The summary names the drifted columns and the degraded metrics."""
    summary = drift.summary + (f"; degraded: {', '.join(health.degraded)}" if health.degraded else "")
    if drift.drift_share >= drift_share:
        return "drift", summary
    return ("degraded" if health.degraded else "healthy"), summary
