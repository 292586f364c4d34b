"""The monitor's one verdict: the worst of drift, EWMA breaches and SLO breaches, each finding named."""

from __future__ import annotations

import pandas as pd
import pytest

from core.config import MonitoringConfig
from monitoring.drift import ColumnDrift, DriftVerdict
from monitoring.ewma import ewma_chart
from monitoring.health import HealthReport
from monitoring.verdict import MonitorResult, monitor_verdict, slo_findings


def drift(drifted: int, of: int = 10) -> DriftVerdict:
    cols = [ColumnDrift(f"c{i}", "Wasserstein distance (normed)", 0.2 if i < drifted else 0.01, 0.1, i < drifted)
            for i in range(of)]  # fmt: skip
    return DriftVerdict(cols, drifted / of, drifted / of >= 0.5, 1000, 1000, 1000, 1000)


def health(latency_ms: float = 5.0, error_rate: float = 0.0, accuracy: list[float] | None = None) -> HealthReport:
    charts = {
        "latency_p95_ms": ewma_chart([latency_ms] * 20, "latency_p95_ms"),
        "error_rate": ewma_chart([error_rate] * 20, "error_rate", mean=0.001, sigma=0.001),
    }
    if accuracy is not None:
        charts["accuracy"] = ewma_chart(accuracy, "accuracy", mean=0.95, sigma=0.02, bad="low")
    degraded = [k for k, c in charts.items() if k != "latency_p95_ms" and len(c.smoothed) - 1 in c.breaches]
    return HealthReport(charts, {}, degraded)


POLICY = MonitoringConfig(slo_latency_p95_ms=50, slo_error_rate=0.01, drift_share=0.3)


def test_a_p95_already_over_its_slo_is_degraded_with_the_reason() -> None:
    decision = monitor_verdict(drift(0), health(latency_ms=84.0), POLICY)
    assert decision.verdict == "degraded"
    assert [(f.check, f.subject) for f in decision.findings] == [("slo", "latency_p95_ms")]
    assert "latency_p95_ms 84 is at or over its SLO 50 (slo_latency_p95_ms)" in decision.summary


def test_quiet_traffic_is_healthy_and_drift_alone_is_drift() -> None:
    assert monitor_verdict(drift(0), health(), POLICY).verdict == "healthy"
    drifted = monitor_verdict(drift(4), health(), POLICY)
    assert drifted.verdict == "drift" and drifted.summary.startswith("drift")
    assert monitor_verdict(drift(2), health(), POLICY).verdict == "healthy"  # 20% < drift_share 30%


def test_the_worst_finding_decides_and_every_finding_is_kept() -> None:
    accuracy = [0.95] * 10 + [0.7] * 10
    decision = monitor_verdict(drift(5), health(accuracy=accuracy), POLICY.model_copy(update={"slo_accuracy": 0.8}))
    assert decision.verdict == "degraded"
    assert [(f.check, f.subject, f.verdict) for f in decision.findings] == [
        ("drift", "dataset", "drift"),
        ("ewma", "accuracy", "degraded"),
        ("slo", "accuracy", "degraded"),
    ]
    result = MonitorResult("m", "1", 500, decision.verdict, decision.summary, findings=decision.findings)
    assert result.drifted and result.degraded_metrics == ["accuracy"]  # both events, the metric once
    assert result.to_json()["degraded"] == ["accuracy"]


@pytest.mark.parametrize(
    ("metric", "values", "slo_field", "slo", "breached"),
    [
        ("error_rate", [0.02] * 5, "slo_error_rate", 0.01, True),
        ("error_rate", [0.005] * 5, "slo_error_rate", 0.01, False),
        ("accuracy", [0.7] * 5, "slo_accuracy", 0.8, True),
        ("accuracy", [0.7] * 5, "slo_accuracy", None, False),  # no SLO configured
        ("mae", [3.0] * 5, "slo_mae", 2.5, True),
        ("mae", [2.0] * 5, "slo_mae", 2.5, False),
    ],
)
def test_slo_breaches_follow_each_metric_direction(
    metric: str, values: list[float], slo_field: str, slo: float | None, breached: bool
) -> None:
    chart = ewma_chart(pd.Series(values).to_numpy(), metric, bad="low" if metric == "accuracy" else "high")
    report = HealthReport({metric: chart}, {}, [])
    found = slo_findings(report, POLICY.model_copy(update={slo_field: slo}))
    assert [f.subject for f in found] == ([metric] if breached else [])
