"""Data loading, fingerprinting and the Great Expectations gate on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import load_config
from core.errors import ConfigError, DataError
from tests.conftest import write_synthetic_project
from training.data import fingerprint_frame, load_data, split_holdout
from training.validation import validate_frame


def test_fingerprint_is_content_based() -> None:
    a = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    assert fingerprint_frame(a) == fingerprint_frame(a.copy())
    assert fingerprint_frame(a) != fingerprint_frame(a.assign(x=[1.0, 2.5]))
    assert fingerprint_frame(a) != fingerprint_frame(a.astype({"x": "float32"}))
    assert fingerprint_frame(a).startswith("sha256:")


def test_time_split_holds_out_the_latest_rows(churn_project: Path) -> None:
    cfg = load_config(churn_project)
    data = load_data(cfg)
    assert pd.api.types.is_datetime64_any_dtype(data.frame["event_time"])
    split = split_holdout(data.frame, cfg)
    assert len(split.holdout) == 300
    assert split.train["event_time"].max() < split.holdout["event_time"].min()


def test_random_split_is_stratified_and_repeatable(churn_project: Path) -> None:
    cfg = load_config(churn_project, {"split.method": "random"})
    frame = load_data(cfg).frame
    a, b = split_holdout(frame, cfg), split_holdout(frame, cfg)
    assert list(a.holdout.index) == list(b.holdout.index)
    share = frame["churned"].eq("yes").mean()
    assert a.holdout["churned"].eq("yes").mean() == pytest.approx(share, abs=0.01)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\n\n", "no columns"), (b"\xff\xfe\x00garbage", "could not be parsed")],
)
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    project = write_synthetic_project(tmp_path / "p")
    (project.parent / "customers.csv").write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_data(load_config(project))


def test_missing_file_and_bad_suffix(tmp_path: Path) -> None:
    project = write_synthetic_project(tmp_path / "p")
    with pytest.raises(DataError, match=r"does not exist; fix data\.source"):
        load_data(load_config(project, {"data.source": "elsewhere.csv"}))
    (project.parent / "data.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"use a \.csv or \.parquet"):
        load_data(load_config(project, {"data.source": "data.xlsx"}))


def test_parquet_is_read(tmp_path: Path) -> None:
    project = write_synthetic_project(tmp_path / "p")
    frame = pd.read_csv(project.parent / "customers.csv")
    frame.to_parquet(project.parent / "customers.parquet", index=False)
    data = load_data(load_config(project, {"data.source": "customers.parquet"}))
    assert len(data.frame) == len(frame)


def test_clean_data_with_missing_values_and_categories_passes(churn_project: Path) -> None:
    cfg = load_config(churn_project)
    report = validate_frame(load_data(cfg).frame, cfg)
    assert report.success, report.failures
    assert report.evaluated >= 10


def _failures(project: Path, mutate) -> list[str]:  # type: ignore[no-untyped-def]
    cfg = load_config(project)
    frame = mutate(load_data(cfg).frame.copy())
    report = validate_frame(frame, cfg)
    assert not report.success
    assert report.failed == len(report.failures)
    return report.failures


def test_missing_and_extra_columns_are_named(churn_project: Path) -> None:
    failures = _failures(churn_project, lambda f: f.drop(columns=["plan"]).assign(debug_flag=1))
    assert any("missing columns ['plan']" in f and "undeclared columns ['debug_flag']" in f for f in failures)


def test_missing_target_column_is_named(churn_project: Path) -> None:
    failures = _failures(churn_project, lambda f: f.drop(columns=["churned"]))
    assert any("missing columns ['churned']" in f for f in failures)


def test_wrong_dtype_is_named(churn_project: Path) -> None:
    def text_in_numbers(f: pd.DataFrame) -> pd.DataFrame:
        f["monthly_spend"] = f["monthly_spend"].astype(object)
        f.loc[f.index[:3], "monthly_spend"] = "12,50"
        return f

    failures = _failures(churn_project, text_in_numbers)
    assert any(f.startswith("column 'monthly_spend': expected numbers") and "12,50" in f for f in failures)


def test_null_labels_too_few_rows_and_too_many_missing_values(churn_project: Path) -> None:
    def damage(f: pd.DataFrame) -> pd.DataFrame:
        f = f.head(80).copy()
        f.loc[f.index[:5], "churned"] = None
        f.loc[f.index[:40], "usage_score"] = np.nan
        return f

    failures = "\n".join(_failures(churn_project, damage))
    assert "80 rows, expected at least 100" in failures
    assert "column 'churned': 5 missing values (6.2%), at most 0.0% allowed" in failures
    assert "column 'usage_score'" in failures


def test_user_suite_is_applied_and_its_failures_named(tmp_path: Path) -> None:
    suite = {
        "name": "churn-rules",
        "expectations": [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "tenure_months", "min_value": 0}},
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "plan", "value_set": ["basic", "plus"]}},
        ],
    }
    project = write_synthetic_project(tmp_path / "p", suite=suite)
    failures = _failures(project, lambda f: f)
    assert len(failures) == 1 and "column 'plan'" in failures[0] and "expect_column_values_to_be_in_set" in failures[0]


def test_unknown_expectation_type_is_a_config_error(tmp_path: Path) -> None:
    suite = {"name": "s", "expectations": [{"type": "expect_column_to_be_nice", "kwargs": {"column": "plan"}}]}
    project = write_synthetic_project(tmp_path / "p", suite=suite)
    cfg = load_config(project)
    with pytest.raises(ConfigError, match="could not be built"):
        validate_frame(load_data(cfg).frame, cfg)


def test_a_few_unlabelled_rows_can_be_allowed_and_are_left_out(churn_project: Path) -> None:
    cfg = load_config(churn_project, {"validation.max_missing_target_fraction": 0.02})
    frame = load_data(cfg).frame
    frame.loc[frame.index[:10], "churned"] = None
    assert validate_frame(frame, cfg).success
    split = split_holdout(frame, cfg)
    assert len(split.train) + len(split.holdout) == len(frame) - 10
    assert split.train["churned"].notna().all() and split.holdout["churned"].notna().all()
