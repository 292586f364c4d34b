"""What the gateway accepts and returns: records checked against the model signature (invalid input is the
caller's fault: 422 with field-level errors, never counted against a variant), one input frame per batch, and model
answers checked before they are returned.

Every body is checked for shape before anything looks at its values (``parse_json``): nesting depth, keys per
object, items per list and characters per string are capped, without recursion, so a hostile body costs one pass
over it and a 422 naming the limit (a value nested 1,000 levels used to give a 500 from ``repr``). Error bodies
quote at most a short excerpt of what was sent (``excerpt``). Feedback ids and labels are checked against what the
store keeps (``feedback_errors``) before they reach it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pandas as pd

from core.store.predictions import encode_value
from deployments.model_loading import NUMERIC_TYPES, ModelHandle

MAX_RECORDS = 1000  # records per /v1/predict request
MAX_DEPTH = 8  # nesting of objects and lists in a body ({"records": [{...}]} is 3)
MAX_KEYS = 2000  # keys per object (a record has one per feature)
MAX_ITEMS = 10_000  # items per list (records, feedback items)
MAX_STRING = 4096  # characters per string value or key
MAX_REQUEST_ID = 64  # characters of a request id (the store's column)
MAX_LABEL = 200  # characters of a label as stored (JSON-encoded, the store's column)
EXCERPT = 60  # characters of the caller's input quoted back in an error


class InvalidInput(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid fields")
        self.errors = errors


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """A short, safe rendering of something the caller sent, for error messages: never the whole of a long string,
    never a recursive ``repr`` of a nested value."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return repr(value)[:limit]


def shape_errors(parsed: Any) -> list[dict[str, Any]]:
    """The first limit a parsed body breaks (depth, keys, items, string length), as one field error; ``[]`` if none.

    Iterative, so no depth of nesting can exhaust the stack."""
    stack: list[tuple[Any, int, str]] = [(parsed, 1, "body")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                return [_limit(where, f"a string of {len(value)} characters; at most {MAX_STRING} characters allowed")]
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            return [_limit(where, f"nested deeper than {MAX_DEPTH} levels")]
        if isinstance(value, dict):
            if len(value) > MAX_KEYS:
                return [_limit(where, f"an object with {len(value)} keys; at most {MAX_KEYS} keys allowed")]
            for key, item in value.items():
                if len(key) > MAX_STRING:
                    return [_limit(where, f"a key of {len(key)} characters; at most {MAX_STRING} characters allowed")]
                stack.append((item, depth + 1, f"{where}.{key[:EXCERPT]}"))
        else:
            if len(value) > MAX_ITEMS:
                return [_limit(where, f"a list of {len(value)} items; at most {MAX_ITEMS} items allowed")]
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
    return []


def _short(name: str) -> str:
    return name if len(name) <= EXCERPT else f"{name[:EXCERPT]}... ({len(name)} characters)"


def _limit(where: str, what: str) -> dict[str, Any]:
    return {"field": where[: 4 * EXCERPT], "error": f"{what} (input limit)"}


def feedback_item_problem(item: Any) -> tuple[str | None, str] | None:
    """``(field, error)`` when a feedback item could not be stored as it is (no request id and label, an id the
    store cannot keep, a label that is not one value or does not fit its column), else None."""
    from core.store.predictions import encode_value

    needs = "each item needs request_id and label"
    if not isinstance(item, dict):
        return None, f"{needs}: expected an object {{request_id, label}}"
    rid = item.get("request_id")
    if not isinstance(rid, str):
        return "request_id", f"{needs}: expected the request_id string of a prediction, got {excerpt(rid)}"
    if not rid or len(rid) > MAX_REQUEST_ID:
        return "request_id", f"a request id has 1 to {MAX_REQUEST_ID} characters, got {excerpt(rid)}"
    if "label" not in item:
        return "label", f"{needs}: the label is missing, send the true value of the target"
    label = item["label"]
    if label is not None and not isinstance(label, str | int | float | bool):
        return "label", f"expected a single value, got {excerpt(label)}"
    if len(encode_value(label)) > MAX_LABEL:
        return "label", f"at most {MAX_LABEL} characters, got {excerpt(label)}"
    return None


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
            errors.append({"record": i, "field": _short(name), "error": "unknown field (not in the model signature)"})
        for name, kind in types.items():
            if name not in rec:
                errors.append({"record": i, "field": name, "error": "missing (send null for an unknown value)"})
                continue
            value = rec[name]
            if value is None:
                continue
            if kind in NUMERIC_TYPES and (isinstance(value, bool) or not isinstance(value, int | float)):
                errors.append({"record": i, "field": name, "error": f"expected a number, got {excerpt(value)}"})
            elif kind == "string" and not isinstance(value, str):
                errors.append({"record": i, "field": name, "error": f"expected a string, got {excerpt(value)}"})
            elif kind == "boolean" and not isinstance(value, bool):
                errors.append({"record": i, "field": name, "error": f"expected true or false, got {excerpt(value)}"})
        if len(errors) >= 50:
            break
    if errors:
        raise InvalidInput(errors)
    return records


def numeric_matrix(records: list[dict[str, Any]], features: list[str]) -> np.ndarray:
    """Validated all-numeric records as one float matrix, columns in ``features`` order, null -> NaN."""
    return np.array([[rec[f] for f in features] for rec in records], dtype=float)


def records_frame(records: list[dict[str, Any]], handle: ModelHandle) -> pd.DataFrame:
    """Build the model input in one step (validated records only). Converting column by column cost more than the
    model's own predict (about 3 ms for 30 columns, measured in benchmarks/gateway_throughput.py)."""
    features = handle.features
    numeric = [n for n, k in handle.column_types.items() if k in NUMERIC_TYPES]
    if len(numeric) == len(features):  # all numeric: one float matrix
        return pd.DataFrame(numeric_matrix(records, features), columns=features)
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
    """The parsed body, checked against the input limits (``shape_errors``) before anything reads its values."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput([{"field": None, "error": f"body is not valid JSON: {str(err)[:200]}"}]) from None
    if errors := shape_errors(parsed):
        raise InvalidInput(errors)
    return parsed
