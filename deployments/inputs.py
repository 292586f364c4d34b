"""What the gateway accepts and returns: records checked against the model signature (invalid input is the
caller's fault: 422 with field-level errors, never counted against a variant), one input frame per batch, and model
answers checked before they are returned."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pandas as pd

from core.store.predictions import encode_value
from deployments.model_loading import ModelHandle

NUMERIC_TYPES = {"double", "float", "long", "integer"}


MAX_RECORDS = 1000


class InvalidInput(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid fields")
        self.errors = errors


def validate_records(records: Any, handle: ModelHandle) -> list[dict[str, Any]]:
    """Check records against the model signature; errors name record and field. ``records_frame`` builds the input
    (once per batch on the fast path: a DataFrame per request cost more than the model's share of a batch)."""
    if not isinstance(records, list) or not records:
        raise InvalidInput([{"field": "records", "error": "expected a non-empty list of objects"}])
    if len(records) > MAX_RECORDS:
        raise InvalidInput([{"field": "records", "error": f"at most {MAX_RECORDS} records per request"}])
    errors: list[dict[str, Any]] = []
    types = handle.column_types
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            errors.append({"record": i, "field": None, "error": "expected an object of feature values"})
            continue
        for name in rec.keys() - types.keys():
            errors.append({"record": i, "field": name, "error": "unknown field (not in the model signature)"})
        for name, kind in types.items():
            if name not in rec:
                errors.append({"record": i, "field": name, "error": "missing (send null for an unknown value)"})
                continue
            value = rec[name]
            if value is None:
                continue
            if kind in NUMERIC_TYPES and (isinstance(value, bool) or not isinstance(value, int | float)):
                errors.append({"record": i, "field": name, "error": f"expected a number, got {value!r}"[:200]})
            elif kind == "string" and not isinstance(value, str):
                errors.append({"record": i, "field": name, "error": f"expected a string, got {value!r}"[:200]})
            elif kind == "boolean" and not isinstance(value, bool):
                errors.append({"record": i, "field": name, "error": f"expected true or false, got {value!r}"[:200]})
        if len(errors) >= 50:
            break
    if errors:
        raise InvalidInput(errors)
    return records


def records_frame(records: list[dict[str, Any]], handle: ModelHandle) -> pd.DataFrame:
    """Build the model input in one step (validated records only). Converting column by column cost more than the
    model's own predict (about 3 ms for 30 columns, measured in benchmarks/gateway_throughput.py)."""
    features = handle.features
    numeric = [n for n, k in handle.column_types.items() if k in NUMERIC_TYPES]
    if len(numeric) == len(features):  # all numeric: one float matrix, null -> NaN
        return pd.DataFrame(np.array([[rec[f] for f in features] for rec in records], dtype=float), columns=features)
    frame = pd.DataFrame.from_records(records, columns=features)
    if numeric:
        frame[numeric] = frame[numeric].astype(float)
    return frame


def check_output(pred: Any, n: int) -> list[Any]:
    """A model answer the gateway will return: one non-missing value per record, or an error."""
    values = list(np.asarray(pred).reshape(-1)) if not isinstance(pred, list) else pred
    if len(values) != n:
        raise ValueError(f"model returned {len(values)} predictions for {n} records")
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            raise ValueError(f"model returned an invalid prediction {v!r}")
        out.append(v)
    return out


def label_error(label: Any, problem_type: str, classes: list[Any] | None) -> str | None:
    """Why ``label`` cannot be a true value of the target, or None. Regression: a finite number. Classification: one
    of the classes the loaded models know, compared in the prediction log's canonical form (so ``1`` and ``1.0``
    are the same class, ``"1"`` and ``true`` are not); any scalar when no model lists its classes."""
    if problem_type == "regression":
        if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
            return f"expected a finite number (the target of a regression model), got {label!r}"[:200]
        return None
    if label is None or not isinstance(label, str | int | float | bool):
        return f"expected a class label (a string, number or boolean), got {label!r}"[:200]
    if classes is not None:
        known = {encode_value(c) for c in classes}
        if encode_value(label) not in known:
            return f"expected one of the model's classes {classes!r}, got {label!r}"[:200]
    return None


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput([{"field": None, "error": f"body is not valid JSON: {err}"}]) from None
