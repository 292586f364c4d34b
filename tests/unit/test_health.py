"""The monitor's health charts give the same verdict wherever the clock's minute boundaries fall: the interval
buckets at either end of the window are partly filled, and a chart must not read a handful of answers as a shift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.config import ProjectConfig, load_config
from monitoring.health import health_report, interval_series
from tests.conftest import write_synthetic_project
from tests.helpers import labelled_window

MAE_OF_SD_5 = 5 * np.sqrt(2 / np.pi)  # 3.99: the mean absolute error of normal(0, 5) errors


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    folder: Path = tmp_path_factory.mktemp("spend")
    return load_config(
        write_synthetic_project(folder, config={"evaluation": {"primary_metric": "mae"}, "gates.min_score": None})
    )


OFFSETS = np.arange(0, 60, 0.5)  # where in a minute the window starts
MINUTE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_steady_errors_are_not_degraded_wherever_the_minute_boundaries_fall(regression: ProjectConfig) -> None:
    flagged = []
    for offset in OFFSETS:
        window = labelled_window(MINUTE + timedelta(seconds=float(offset)))
        report = health_report(interval_series(window, 60), regression, None, baseline_mae=MAE_OF_SD_5)
        if report.degraded:
            flagged.append((float(offset), report.degraded, report.charts["mae"].to_json()))
    assert flagged == [], f"{len(flagged)} of {len(OFFSETS)} alignments degraded: {flagged[:3]}"


def test_a_real_shift_is_degraded_wherever_the_minute_boundaries_fall(regression: ProjectConfig) -> None:
    missed = []
    for offset in OFFSETS:
        window = labelled_window(MINUTE + timedelta(seconds=float(offset)), late_bias=6.0)
        report = health_report(interval_series(window, 60), regression, None, baseline_mae=MAE_OF_SD_5)
        if "mae" not in report.degraded:
            missed.append(float(offset))
    assert missed == []
