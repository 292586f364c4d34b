"""The gateway's fast path (``deployments.fast_predict``): used only where it gives exactly the pipeline's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from core.config import load_config
from deployments.fast_predict import numeric_fast_path
from training.data import read_frame
from training.fit import fit_model

CONFIG = Path(__file__).resolve().parents[2] / "config" / "project.yaml"


def demo_model(**params: Any) -> tuple[Any, pd.DataFrame, list[str]]:
    config = load_config(CONFIG, {"training.params": {"max_iter": 2000, **params}} if params else None)
    frame, _ = read_frame(config)
    return fit_model(frame, config), frame, list(config.data.numeric_features)


def test_the_demo_pipeline_takes_the_fast_path_and_answers_exactly_as_its_predict() -> None:
    model, frame, features = demo_model()
    fast, why = numeric_fast_path(model, features)
    assert fast is not None, why
    assert why.startswith("ColumnTransformer skipped")
    matrix = frame[features].to_numpy(dtype=float)
    matrix[::7, 3] = np.nan  # missing values go through the same imputer
    matrix[::11, :] = np.nan
    expected = model.predict(pd.DataFrame(matrix, columns=features))
    got = fast(matrix)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert set(expected) == {"malignant", "benign"}  # both classes are exercised


def test_features_in_another_order_than_the_transformer_are_reordered() -> None:
    model, frame, features = demo_model()
    shuffled = list(reversed(features))
    fast, why = numeric_fast_path(model, shuffled)
    assert fast is not None, why
    rows = frame[shuffled].head(50)
    assert np.array_equal(fast(rows.to_numpy(dtype=float)), model.predict(rows))


def test_other_shapes_use_the_pipelines_own_predict() -> None:
    _, frame, features = demo_model()
    x, y = frame[features], frame["diagnosis"]
    bare = LogisticRegression(max_iter=2000).fit(x, y)
    assert numeric_fast_path(bare, features) == (None, "not a scikit-learn Pipeline with a preprocessing step")
    half = len(features) // 2
    two = ColumnTransformer([("a", StandardScaler(), features[:half]), ("b", StandardScaler(), features[half:])])
    split = Pipeline([("preprocess", two), ("model", LogisticRegression(max_iter=2000))]).fit(x, y)
    assert numeric_fast_path(split, features) == (None, "its ColumnTransformer has more than one transformer")
    some = Pipeline(
        [("preprocess", ColumnTransformer([("a", StandardScaler(), features[:5])])), ("model", LogisticRegression())]
    ).fit(x, y)
    assert numeric_fast_path(some, features)[0] is None


def test_a_step_that_answers_differently_on_a_matrix_is_caught_on_load() -> None:
    """A transformer that treats DataFrames and matrices differently: the probe rows show it, the fast path is
    refused, and the pipeline's own predict serves."""
    _, frame, features = demo_model()
    x, y = frame[features], frame["diagnosis"]

    def double_frames(values: Any) -> Any:
        return values.to_numpy() * 2.0 if hasattr(values, "columns") else np.asarray(values)

    step = FunctionTransformer(double_frames, feature_names_out="one-to-one")
    pipe = Pipeline(
        [("preprocess", ColumnTransformer([("f", step, features)])), ("model", LogisticRegression(max_iter=5000))]
    ).fit(x, y)
    fast, why = numeric_fast_path(pipe, features)
    assert fast is None
    assert why == "the fast path's answers differ from the pipeline's on probe rows"


def test_a_model_that_refuses_missing_values_refuses_them_on_both_paths() -> None:
    _, frame, features = demo_model()
    x, y = frame[features], frame["diagnosis"]
    pipe = Pipeline(
        [("preprocess", ColumnTransformer([("s", StandardScaler(), features)])), ("model", LogisticRegression())]
    ).fit(x, y)
    fast, why = numeric_fast_path(pipe, features)
    assert fast is not None, why
    missing = x.head(2).to_numpy(dtype=float)
    missing[0, 0] = np.nan
    for path in (lambda: fast(missing), lambda: pipe.predict(pd.DataFrame(missing, columns=features))):
        try:
            path()
        except ValueError as err:
            assert "NaN" in str(err)
        else:
            raise AssertionError("a missing value reached LogisticRegression without an error")
