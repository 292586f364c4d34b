"""Data validation with Great Expectations 1.x.

Two layers run as one GX suite, so one report lists every problem:
1. schema expectations derived from the project config (declared columns present, no undeclared ones, numeric
   features numeric, target present and non-null, enough rows, bounded missing values per feature);
2. the user's own suite (``validation.suite``, GX's JSON suite format) for value ranges, sets, uniqueness...

GX takes seconds to import, so it is imported inside the functions that need it.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import ProjectConfig
from core.errors import ConfigError, ValidationFailed

NUMERIC_TYPES = [
    "int",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "float",
    "float16",
    "float32",
    "float64",
    "Float32",
    "Float64",
    "bool",
    "boolean",
]


@dataclass
class ValidationReport:
    success: bool
    evaluated: int
    failed: int
    failures: list[str]  # one sentence per failed expectation
    suite_name: str
    result: dict[str, Any] = field(repr=False)  # GX's own validation result (JSON-able)

    def raise_for_failures(self, mlflow_run_id: str) -> None:
        """The data gate: stop the lifecycle with every failed expectation named and where the report is."""
        if self.success:
            return
        raise ValidationFailed(
            f"data validation failed: {self.summary}:\n  - "
            + "\n  - ".join(self.failures)
            + f"\nThe report is in MLflow run {mlflow_run_id} (validation/report.html).",
            self.failures,
        )

    @property
    def summary(self) -> str:
        if self.success:
            return f"all {self.evaluated} expectations of suite '{self.suite_name}' passed"
        return f"{self.failed} of {self.evaluated} expectations of suite '{self.suite_name}' failed"


def schema_expectations(config: ProjectConfig, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Expectations every data set must meet, derived from the declared columns (GX JSON form)."""
    data = config.data
    present = set(frame.columns)
    exps: list[dict[str, Any]] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": data.columns, "exact_match": not data.allow_extra_columns},
        },
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": config.validation.min_rows}},
    ]
    # Column-level checks only for columns that exist: a missing column is already reported above, and GX's
    # message for an expectation on a missing column is unreadable.
    if data.target in present:
        target_mostly = 1.0 - config.validation.max_missing_target_fraction
        exps.append(
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": data.target, "mostly": target_mostly}}
        )
        if config.evaluation.problem_type == "classification":
            exps.append(
                {
                    "type": "expect_column_unique_value_count_to_be_between",
                    "kwargs": {"column": data.target, "min_value": 2},
                }
            )
    for col in data.numeric_features:
        if col in present:
            exps.append(
                {
                    "type": "expect_column_values_to_be_in_type_list",
                    "kwargs": {"column": col, "type_list": NUMERIC_TYPES},
                }
            )
    mostly = 1.0 - config.validation.max_missing_fraction
    if mostly > 0:
        for col in data.features:
            if col in present:
                exps.append(
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": col, "mostly": mostly}}
                )
    return exps


def read_suite(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """Read a GX suite file (``{"name": ..., "expectations": [{"type": ..., "kwargs": {...}}]}``)."""
    if not path.is_file():
        raise ConfigError(f"expectation suite {path} does not exist; fix validation.suite in the configuration.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"expectation suite {path} is not valid JSON: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise ConfigError(f"expectation suite {path} needs an 'expectations' list (GX 1.x suite JSON).")
    for i, exp in enumerate(raw["expectations"]):
        if not isinstance(exp, dict) or "type" not in exp:
            raise ConfigError(f"expectation suite {path}: expectation {i} has no 'type'.")
    return str(raw.get("name") or path.stem), raw["expectations"]


def validate_frame(frame: pd.DataFrame, config: ProjectConfig) -> ValidationReport:
    """Run the schema expectations plus the user's suite on ``frame`` and describe each failure in words."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite_name = f"{config.model_name}-schema"
    expectations = schema_expectations(config, frame)
    if config.validation.suite:
        user_name, user_exps = read_suite(config.resolve(config.validation.suite))
        suite_name = user_name
        present = set(frame.columns)
        for exp in user_exps:
            column = exp.get("kwargs", {}).get("column")
            if column is not None and column not in present:
                continue  # reported by the column-set expectation; GX's own error here is unreadable
            expectations.append(exp)

    for name in ("great_expectations", "great_expectations.data_context.types.base"):  # GX sets the second to INFO
        logging.getLogger(name).setLevel(logging.WARNING)  # its INFO lines are about temp folders
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # Build each expectation on its own: GX's suite constructor logs and *drops* an expectation it cannot build,
    # which would silently weaken the gate. Here an unknown type or bad argument is a configuration error.
    built = []
    for exp in expectations:
        try:
            built.append(
                ExpectationConfiguration(
                    type=exp["type"], kwargs=exp.get("kwargs", {}), meta=exp.get("meta") or {}
                ).to_domain_obj()
            )
        except Exception as err:  # GX raises assorted types for unknown names or bad kwargs
            raise ConfigError(
                f"expectation suite '{suite_name}': expectation {exp['type']!r} with {exp.get('kwargs', {})} "
                f"could not be built: {err}"
            ) from None
    suite = gx.ExpectationSuite(name=suite_name, expectations=built)
    batch = (
        context.data_sources.add_pandas("mlops")
        .add_dataframe_asset(name="training-data")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(suite, result_format="SUMMARY").to_json_dict()
    failures = [describe_failure(r) for r in result["results"] if not r["success"]]
    stats = result["statistics"]
    return ValidationReport(
        success=bool(result["success"]),
        evaluated=int(stats["evaluated_expectations"]),
        failed=int(stats["unsuccessful_expectations"]),
        failures=failures,
        suite_name=suite_name,
        result=result,
    )


def describe_failure(r: dict[str, Any]) -> str:
    """One sentence a person can act on for a failed GX expectation result."""
    cfg = r["expectation_config"]
    kind = cfg["type"]
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    res = r.get("result") or {}
    column = kwargs.get("column")
    where = f"column '{column}'" if column else "table"
    exc = r.get("exception_info") or {}
    if exc.get("raised_exception"):
        return f"{kind} on {where} could not be evaluated: {exc.get('exception_message')}"
    if kind == "expect_table_columns_to_match_set":
        observed = set(res.get("observed_value") or [])
        expected = set(kwargs.get("column_set") or [])
        mismatched = (res.get("details") or {}).get("mismatched") or {}
        missing = sorted(mismatched.get("missing") or (expected - observed))
        unexpected = sorted(mismatched.get("unexpected") or [])
        if not unexpected and kwargs.get("exact_match", True):
            unexpected = sorted(observed - expected)
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if unexpected:
            parts.append(f"undeclared columns {unexpected} (declare them or set data.allow_extra_columns: true)")
        return "table: " + "; ".join(parts or ["column set differs from the configuration"])
    if kind == "expect_table_row_count_to_be_between":
        return f"table: {res.get('observed_value')} rows, expected at least {kwargs.get('min_value')}"
    if kind == "expect_column_values_to_be_in_type_list":
        sample = res.get("partial_unexpected_list") or []
        return f"{where}: expected numbers, found non-numeric values such as {sample[:3]}"
    if kind == "expect_column_values_to_not_be_null" and res.get("unexpected_count"):
        pct = res.get("unexpected_percent") or 0.0
        allowed = 100.0 * (1.0 - float(kwargs.get("mostly", 1.0)))
        return (
            f"{where}: {res['unexpected_count']} missing values ({pct:.1f}%), at most {allowed:.1f}% allowed "
            "(raise validation.max_missing_fraction, or validation.max_missing_target_fraction for the target, "
            "if that is expected)"
        )
    if "unexpected_count" in res and res.get("unexpected_count") is not None:
        pct = res.get("unexpected_percent") or 0.0
        sample = res.get("partial_unexpected_list") or []
        shown = f"; e.g. {sample[:3]}" if sample else ""
        rule = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "column")
        return f"{where}: {res['unexpected_count']} values ({pct:.1f}%) break {kind}({rule}){shown}"
    rule = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "column")
    observed = res.get("observed_value")
    if observed is None:
        return f"{where}: {kind}({rule}) failed: no value could be compared (is the column the right type?)"
    return f"{where}: {kind}({rule}) failed, observed {observed!r}"


def render_html(report: ValidationReport, source: str) -> str:
    """A self-contained HTML page of the validation result (logged to MLflow next to GX's JSON result)."""
    rows = []
    for r in report.result["results"]:
        cfg = r["expectation_config"]
        kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
        status = "pass" if r["success"] else "FAIL"
        detail = "" if r["success"] else describe_failure(r)
        rows.append(
            f"<tr class='{status.lower()}'><td>{status}</td><td>{html.escape(cfg['type'])}</td>"
            f"<td><code>{html.escape(json.dumps(kwargs, default=str))}</code></td><td>{html.escape(detail)}</td></tr>"
        )
    verdict = "passed" if report.success else "FAILED"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Data validation</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top}tr.fail{background:#fde8e8}tr.pass{background:#eefbee}</style></head>"
        f"<body><h1>Data validation {verdict}</h1><p>Source: <code>{html.escape(source)}</code><br>"
        f"Suite: {html.escape(report.suite_name)} &mdash; {html.escape(report.summary)}</p>"
        "<table><tr><th>status</th><th>expectation</th><th>arguments</th><th>what went wrong</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
