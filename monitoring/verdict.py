"""The monitor's verdict on a window of traffic, from the drift check, the EWMA charts and the SLOs. Pure: no I/O.

One verdict, the worst of what was found: ``degraded`` (a quality chart breached its control limits, or a metric is
past its SLO) is worse than ``drift`` (the inputs moved, the answers may still be good), which is worse than
``healthy``. Every finding is kept with its reason, so a verdict never contradicts the numbers shown beside it: a p95
latency already over its SLO is ``degraded``, whatever its trend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core.config import MonitoringConfig
from monitoring.drift import DriftVerdict
from monitoring.health import HealthReport

Verdict = Literal["healthy", "drift", "degraded", "insufficient data"]
SEVERITY: dict[Verdict, int] = {"insufficient data": 0, "healthy": 0, "drift": 1, "degraded": 2}


@dataclass(frozen=True)
class Finding:
    """One reason for a verdict: which check (``drift``, ``ewma``, ``slo``), on what, and in words."""

    check: Literal["drift", "ewma", "slo"]
    subject: str  # "dataset" for drift, else the metric
    verdict: Literal["drift", "degraded"]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "subject": self.subject, "verdict": self.verdict, "reason": self.reason}


def degraded_metrics(findings: list[Finding]) -> list[str]:
    """Metrics whose chart breached or that are past their SLO, each once, in the order found."""
    return list(dict.fromkeys(f.subject for f in findings if f.verdict == "degraded"))


@dataclass(frozen=True)
class VerdictDecision:
    verdict: Verdict
    summary: str
    findings: list[Finding]


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
    findings: list[Finding] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        """Dataset drift was found (whether or not a worse finding decided the verdict)."""
        return any(f.check == "drift" for f in self.findings)

    @property
    def degraded_metrics(self) -> list[str]:
        return degraded_metrics(self.findings)

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
            "findings": [f.to_json() for f in self.findings],
            "degraded": self.degraded_metrics,
        }


def insufficient_data(model: str, champion: str | None, rows: int, min_rows: int) -> MonitorResult:
    return MonitorResult(
        model=model,
        champion=champion,
        rows=rows,
        verdict="insufficient data",
        summary=f"{rows} recent answers, fewer than monitoring.min_rows={min_rows}; no verdict.",
    )


# metric -> (the config field holding its SLO, the bad direction); the SLO is off when that field is None
SLO_FIELDS: dict[str, tuple[str, Literal["high", "low"]]] = {
    "latency_p95_ms": ("slo_latency_p95_ms", "high"),
    "error_rate": ("slo_error_rate", "high"),
    "accuracy": ("slo_accuracy", "low"),
    "mae": ("slo_mae", "high"),
}


def slo_findings(health: HealthReport, policy: MonitoringConfig) -> list[Finding]:
    """Metrics whose latest smoothed value is already past the SLO (the value the "time to SLO breach" forecast
    starts from, so a forecast of 0 and this finding always agree)."""
    found: list[Finding] = []
    for metric, chart in health.charts.items():
        field_name, bad = SLO_FIELDS.get(metric, ("", "high"))
        slo = getattr(policy, field_name, None) if field_name else None
        if slo is None or len(chart.smoothed) == 0:
            continue
        now = float(chart.smoothed[-1])
        if (bad == "high" and now >= slo) or (bad == "low" and now <= slo):
            word = "at or over" if bad == "high" else "at or under"
            found.append(
                Finding("slo", metric, "degraded", f"{metric} {now:.4g} is {word} its SLO {slo:g} ({field_name})")
            )
    return found


def monitor_verdict(drift: DriftVerdict, health: HealthReport, policy: MonitoringConfig) -> VerdictDecision:
    """The worst of: drift (at least ``drift_share`` of the columns drifted), an EWMA quality chart outside its
    control limits in the bad direction, a metric past its SLO. The summary names every finding."""
    findings: list[Finding] = []
    if drift.drift_share >= policy.drift_share:
        findings.append(Finding("drift", "dataset", "drift", drift.summary))
    for metric in health.degraded:
        chart = health.charts[metric]
        findings.append(
            Finding(
                "ewma",
                metric,
                "degraded",
                f"{metric} EWMA {float(chart.smoothed[-1]):.4g} left its control limits around {chart.mean:.4g}",
            )
        )
    findings += slo_findings(health, policy)
    verdict: Verdict = max((f.verdict for f in findings), key=SEVERITY.__getitem__, default="healthy")
    degraded = [f.reason for f in findings if f.verdict == "degraded"]
    summary = drift.summary + (f"; degraded: {'; '.join(degraded)}" if degraded else "")
    return VerdictDecision(verdict, summary, findings)
