from __future__ import annotations

import pytest

from core.config import GatesConfig
from core.errors import RegistryError
from model_registry.semver import SemVer, next_semver
from training.gates import evaluate_gates


@pytest.mark.parametrize(
    ("kind", "champion", "taken", "expected"),
    [
        ("minor", None, set(), "1.0.0"),
        ("hotfix", None, set(), "1.0.0"),
        ("major", None, {"1.0.0"}, "1.1.0"),
        ("hotfix", "1.0.0", {"1.0.0"}, "1.0.1"),
        ("minor", "1.0.0", {"1.0.0"}, "1.1.0"),
        ("major", "1.4.2", {"1.4.2"}, "2.0.0"),
        ("minor", "1.0.0", {"1.0.0", "1.1.0"}, "1.2.0"),  # an unpromoted challenger keeps its semver
        ("hotfix", "2.3.1", {"2.3.1", "2.3.2", "2.3.3"}, "2.3.4"),
        ("major", "1.0.0", {"1.0.0", "2.0.0"}, "3.0.0"),
    ],
)
def test_next_semver_follows_the_request_kind_and_never_reuses(
    kind: str, champion: str | None, taken: set[str], expected: str
) -> None:
    assert next_semver(kind, champion, taken) == expected


def test_semver_orders_numerically_and_rejects_garbage() -> None:
    assert SemVer.parse("1.10.0") > SemVer.parse("1.9.9")
    assert str(SemVer.parse("v2.0.1")) == "2.0.1"
    with pytest.raises(RegistryError, match="not a semantic version"):
        SemVer.parse("1.0")
    with pytest.raises(RegistryError, match="unknown request kind"):
        SemVer.parse("1.0.0").bump("urgent")


def test_first_model_only_needs_the_floor() -> None:
    d = evaluate_gates("accuracy", "maximize", 0.95, None, GatesConfig(min_score=0.9))
    assert d.passed and d.delta is None
    d = evaluate_gates("accuracy", "maximize", 0.85, None, GatesConfig(min_score=0.9))
    assert not d.passed and "min_score" in d.summary


def test_regression_allowance_is_measured_in_the_metric_direction() -> None:
    gates = GatesConfig(max_regression=0.01)
    assert evaluate_gates("accuracy", "maximize", 0.945, 0.95, gates).passed  # 0.005 worse: allowed
    assert not evaluate_gates("accuracy", "maximize", 0.93, 0.95, gates).passed  # 0.02 worse
    # rmse: lower is better, so a higher score is a regression
    assert evaluate_gates("rmse", "minimize", 10.005, 10.0, gates).passed
    failed = evaluate_gates("rmse", "minimize", 10.5, 10.0, gates)
    assert not failed.passed and failed.delta == pytest.approx(-0.5)
    assert evaluate_gates("rmse", "minimize", 9.0, 10.0, GatesConfig(min_score=9.5)).passed  # ceiling for rmse


def test_min_improvement_requires_a_real_gain() -> None:
    gates = GatesConfig(max_regression=0.0, min_improvement=0.01)
    assert not evaluate_gates("roc_auc", "maximize", 0.905, 0.9, gates).passed
    ok = evaluate_gates("roc_auc", "maximize", 0.92, 0.9, gates)
    assert ok.passed and ok.delta == pytest.approx(0.02)
    assert "passed every gate" in ok.summary
