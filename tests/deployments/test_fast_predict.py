"""The gateway's fast path (``deployments.fast_predict``): used only where it gives exactly the pipeline's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

from core.config import load_config
from deployments.fast_predict import numeric_fast_path
from training.data import read_frame
from training.fit import fit_model

CONFIG = Path(__file__).resolve().parents[2] / "config" / "project.yaml"


def demo_model(**params: Any) -> tuple[Any, pd.DataFrame, list[str]]:
    config = load_config(CONFIG, {"training.params": {"max_iter": 2000, **params}} if params else None)
    frame, _ = read_frame(config)
    return fit_model(frame, config), frame, list(config.data.numeric_features)


def test_the_demo_pipeline_is_compiled_and_answers_exactly_as_its_predict() -> None:
    model, frame, features = demo_model()
    fast, why = numeric_fast_path(model, features)
    assert fast is not None, why
    assert why.startswith("compiled to numpy (SimpleImputer -> StandardScaler -> LogisticRegression)")
    matrix = frame[features].to_numpy(dtype=float)
    matrix[::7, 3] = np.nan  # missing values go through the same imputer
    matrix[::11, :] = np.nan
    expected = model.predict(pd.DataFrame(matrix, columns=features))
    got = fast(matrix)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert set(expected) == {"malignant", "benign"}  # both classes are exercised


def numeric_pipeline(features: list[str], *steps: Any) -> Pipeline:
    *preprocess, estimator = steps
    inner = Pipeline([(f"s{i}", step) for i, step in enumerate(preprocess)])
    return Pipeline([("preprocess", ColumnTransformer([("num", inner, features)])), ("model", estimator)])


def with_gaps(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    matrix = frame[features].to_numpy(dtype=float)
    matrix[::5, 2] = np.nan
    matrix[::13, :] = np.nan
    return matrix


def test_a_regressor_and_a_three_class_model_are_compiled_with_exactly_the_same_answers() -> None:
    _, frame, features = demo_model()
    x = frame[features]
    target = frame["mean radius"] * 2.0 + frame["mean texture"]
    regressor = numeric_pipeline(features, SimpleImputer(strategy="mean"), MinMaxScaler(), Ridge(alpha=0.5))
    regressor.fit(x, target)
    classes = pd.cut(frame["mean area"], 3, labels=["small", "medium", "large"]).astype(str)
    three = numeric_pipeline(features, SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=5000))
    three.fit(x, classes)
    for model, name in ((regressor, "Ridge"), (three, "LogisticRegression")):
        fast, why = numeric_fast_path(model, features)
        assert fast is not None and why.startswith("compiled to numpy") and name in why, why
        matrix = with_gaps(frame, features)
        expected = model.predict(pd.DataFrame(matrix, columns=features))
        got = fast(matrix)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert len(set(three.predict(x))) == 3


def test_a_scaler_that_only_scales_is_compiled_as_such() -> None:
    _, frame, features = demo_model()
    x, y = frame[features], frame["diagnosis"]
    model = numeric_pipeline(
        features, SimpleImputer(), StandardScaler(with_mean=False), LogisticRegression(max_iter=5000)
    )
    model.fit(x, y)
    fast, why = numeric_fast_path(model, features)
    assert fast is not None and why.startswith("compiled to numpy"), why
    matrix = with_gaps(frame, features)
    assert np.array_equal(fast(matrix), model.predict(pd.DataFrame(matrix, columns=features)))


def test_input_the_pipeline_refuses_is_refused_by_the_compiled_path_too() -> None:
    model, frame, features = demo_model()
    fast, why = numeric_fast_path(model, features)
    assert fast is not None and why.startswith("compiled"), why
    rows = frame[features].head(3).to_numpy(dtype=float)
    rows[1, 4] = np.inf
    for path in (lambda: fast(rows), lambda: model.predict(pd.DataFrame(rows, columns=features))):
        try:
            path()
        except ValueError as err:
            assert "infinity" in str(err)
        else:
            raise AssertionError("an infinite value was answered")


class CautiousLogistic(LogisticRegression):
    """A subclass with its own predict (a moved threshold): not scikit-learn's decision, so it is not compiled."""

    def predict(self, X: Any) -> Any:
        return self.classes_[(self.decision_function(X) > 2.0).astype(int)]


def test_models_it_does_not_know_exactly_keep_the_scikit_learn_fast_path() -> None:
    _, frame, features = demo_model()
    x, y = frame[features], frame["diagnosis"]
    forest = numeric_pipeline(features, SimpleImputer(), RandomForestClassifier(n_estimators=5, random_state=0))
    overridden = numeric_pipeline(features, SimpleImputer(), StandardScaler(), CautiousLogistic(max_iter=5000))
    for model in (forest.fit(x, y), overridden.fit(x, y)):
        fast, why = numeric_fast_path(model, features)
        assert fast is not None and why.startswith("ColumnTransformer skipped"), why
        matrix = with_gaps(frame, features)
        assert np.array_equal(fast(matrix), model.predict(pd.DataFrame(matrix, columns=features)))


def test_compiling_can_be_switched_off() -> None:
    model, frame, features = demo_model()
    fast, why = numeric_fast_path(model, features, compile=False)  # MLOPS_GATEWAY_COMPILE=false
    assert fast is not None and why.startswith("ColumnTransformer skipped"), why
    rows = frame[features].head(20)
    assert np.array_equal(fast(rows.to_numpy(dtype=float)), model.predict(rows))


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
