"""A faster predict with the same answers, for the all-numeric pipelines the lifecycle builds.

Most of a one-row ``Pipeline.predict`` on this project's models is spent by ``ColumnTransformer`` on pandas: it
selects the declared columns from the DataFrame and validates each one: a one-row call took 6.1 ms here, while the
same fitted imputer, scaler and estimator need about 1.5 ms on a float matrix (``benchmarks/README.md``, gateway
throughput). When the pipeline is ``ColumnTransformer`` (one transformer over exactly the model's numeric features,
the rest dropped) followed by more steps, the gateway feeds that transformer a float matrix with the columns in
its order and runs the remaining steps on its output: the same fitted objects, the same scikit-learn code and
checks (finiteness, feature count), only the DataFrame column selection is skipped.

Where every remaining step is one the module knows exactly (``SimpleImputer`` on NaN, ``StandardScaler``,
``MinMaxScaler`` without clipping, then a linear model whose ``predict`` is scikit-learn's own linear
``decision_function``: ``LogisticRegression``, ``SGDClassifier``, ``LinearSVC``, ``LinearRegression``, ``Ridge``...),
the steps are compiled further into the same numpy operations on their fitted arrays, in scikit-learn's order
(``compiled_linear``): a one-row call then takes about 10 microseconds instead of 650 here, so a canary's small
challenger batches cost next to nothing. Input scikit-learn refuses (infinity; NaN left after the steps) raises
``ValueError`` as it does.

Every fast path is proven on load: it must give exactly the answers of the full pipeline on probe rows built from
the fitted imputer's and scaler's statistics (typical, spread out, extreme and missing values). A compiled path
that differs falls back to the scikit-learn one; a pipeline of any other shape, or one whose answers differ, is
served through its own ``predict``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Matrix = np.ndarray
FastPredict = Callable[[Matrix], Any]


@dataclass(frozen=True)
class CompiledPredict:
    """A path of numpy operations only (``compiled_linear``): tens of microseconds per batch and nothing that can
    block, so the gateway runs it on its event loop instead of handing it to a thread."""

    run: FastPredict
    steps: str

    def __call__(self, matrix: Matrix) -> Any:
        return self.run(matrix)


def numeric_fast_path(model: Any, features: list[str], *, compile: bool = True) -> tuple[FastPredict | None, str]:
    """``(predict on a float matrix whose columns are ``features`` in order, why)``, or ``(None, why not)``;
    ``compile=False`` (``MLOPS_GATEWAY_COMPILE=false``) stops at the scikit-learn fast path."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) < 2:
        return None, "not a scikit-learn Pipeline with a preprocessing step"
    first = model.steps[0][1]
    if not isinstance(first, ColumnTransformer) or not hasattr(first, "transformers_"):
        return None, "its first step is not a fitted ColumnTransformer"
    if getattr(first, "sparse_output_", False) or getattr(first, "_sklearn_output_config", {}).get("transform"):
        return None, "its ColumnTransformer has sparse or configured output"
    used = [(name, trans, cols) for name, trans, cols in first.transformers_ if trans != "drop" and len(cols) > 0]
    if len(used) != 1 or used[0][1] == "passthrough":
        return None, "its ColumnTransformer has more than one transformer"
    _, transformer, columns = used[0]
    if not all(isinstance(c, str) for c in columns) or sorted(columns) != sorted(features):
        return None, "its transformer does not take exactly the model's features"
    order = [features.index(c) for c in columns]
    inner = _without_feature_names(transformer)
    rest = Pipeline(model.steps[1:]) if len(model.steps) > 2 else model.steps[-1][1]
    in_order = order == list(range(len(features)))

    def predict(matrix: Matrix) -> Any:
        return rest.predict(inner.transform(matrix if in_order else matrix[:, order]))

    probe = probe_rows(transformer, columns, features)
    compiled, steps = compiled_linear(transformer, rest, None if in_order else order) if compile else (None, "")
    if compiled is not None and _differs(compiled, model, probe, features) is None:
        return CompiledPredict(compiled, steps), f"compiled to numpy ({steps}); same answers on {len(probe)} probe rows"
    problem = _differs(predict, model, probe, features)
    if problem is not None:
        return None, problem
    return predict, f"ColumnTransformer skipped; same answers on {len(probe)} probe rows"


def _differs(predict: FastPredict, model: Any, probe: Matrix, features: list[str]) -> str | None:
    """Why ``predict`` is not the pipeline's answers on the probe rows, or None when it gives exactly them."""
    for rows in (probe[:-1], probe[-1:]):  # the all-missing row alone: a model may refuse it, both paths alike
        fast, full = _answer(predict, rows), _answer(model.predict, _frame(rows, features))
        if isinstance(full, Exception) and type(fast) is type(full):
            continue
        if isinstance(fast, Exception) or isinstance(full, Exception):
            failed = fast if isinstance(fast, Exception) else full
            which = "fast path" if failed is fast else "pipeline"
            first_line = (str(failed).splitlines() or [""])[0][:200]
            return f"the {which} failed on probe rows ({type(failed).__name__}: {first_line})"
        if not _same(fast, full):
            return "the fast path's answers differ from the pipeline's on probe rows"
    return None


def compiled_linear(transformer: Any, estimator: Any, order: list[int] | None) -> tuple[FastPredict | None, str]:
    """The fitted steps as numpy operations, scikit-learn's own, in its order; ``(None, why not)`` for any step
    this does not know exactly (the caller still proves the result against the pipeline)."""
    try:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model._base import LinearClassifierMixin, LinearModel
        from sklearn.preprocessing import MinMaxScaler, StandardScaler
    except ImportError:  # another scikit-learn layout: keep the scikit-learn fast path
        return None, "scikit-learn's linear model internals moved"
    ops: list[Callable[[Matrix], None]] = []  # each transforms a private float copy in place
    names = []
    for _, step in getattr(transformer, "steps", [("", transformer)]):
        kind = type(step)
        if kind is SimpleImputer and _imputes_nan_only(step):
            ops.append(_impute(np.asarray(step.statistics_, dtype=float)))
        elif kind is StandardScaler and getattr(step, "n_features_in_", None) is not None:
            # scikit-learn keeps ``mean_`` even with ``with_mean=False`` (it needs it for the variance) but does not
            # subtract it then: follow the flags, not the attributes
            ops.append(_standardise(step.mean_ if step.with_mean else None, step.scale_ if step.with_std else None))
        elif kind is MinMaxScaler and not step.clip:
            ops.append(_min_max(step.scale_, step.min_))
        else:
            return None, f"{kind.__name__} is not compiled"
        names.append(kind.__name__)
    kind = type(estimator)
    if not hasattr(estimator, "coef_") or not hasattr(estimator, "intercept_"):
        return None, f"{kind.__name__} is not a fitted linear model"
    coef_t, intercept = np.asarray(estimator.coef_, dtype=float).T, estimator.intercept_
    if isinstance(estimator, LinearClassifierMixin) and _inherits(
        kind, LinearClassifierMixin, "predict", "decision_function"
    ):
        classes = estimator.classes_

        def finish(matrix: Matrix) -> Any:
            scores = matrix @ coef_t + intercept
            if scores.ndim == 2 and scores.shape[1] == 1:
                scores = scores.reshape(-1)
            return classes[(scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)]

    elif isinstance(estimator, LinearModel) and _inherits(kind, LinearModel, "predict", "_decision_function"):

        def finish(matrix: Matrix) -> Any:
            return matrix @ coef_t + intercept

    else:
        return None, f"{kind.__name__} is not compiled"
    names.append(kind.__name__)
    width = len(order) if order is not None else coef_t.shape[0]

    def predict(matrix: Matrix) -> Any:
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise ValueError(f"X has {matrix.shape[-1]} features, but the model expects {width}")
        work = np.array(matrix if order is None else matrix[:, order], dtype=float)  # a private copy
        if np.isinf(work).any():
            raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
        for op in ops:
            op(work)
        if np.isnan(work).any():
            raise ValueError("Input X contains NaN.")
        return finish(work)

    return predict, " -> ".join(names)


def _imputes_nan_only(imputer: Any) -> bool:
    missing = imputer.missing_values
    statistics = np.asarray(getattr(imputer, "statistics_", [np.nan]))
    return (
        isinstance(missing, float)
        and np.isnan(missing)
        and not imputer.add_indicator
        and statistics.dtype.kind == "f"
        and bool(np.isfinite(statistics).all())  # a feature empty at fit would be dropped: not this shape
    )


def _impute(statistics: Matrix) -> Callable[[Matrix], None]:
    def op(work: Matrix) -> None:
        missing = np.isnan(work)
        if missing.any():
            work[missing] = np.take(statistics, np.nonzero(missing)[1])

    return op


def _standardise(mean: Matrix | None, scale: Matrix | None) -> Callable[[Matrix], None]:
    def op(work: Matrix) -> None:
        if mean is not None:
            work -= mean
        if scale is not None:
            work /= scale

    return op


def _min_max(scale: Matrix, minimum: Matrix) -> Callable[[Matrix], None]:
    def op(work: Matrix) -> None:
        work *= scale
        work += minimum

    return op


def _inherits(kind: type, base: type, predict: str, decision: str) -> bool:
    """The estimator decides with ``base``'s own decision function, and its ``predict`` is scikit-learn's (its
    classes re-declare ``predict`` to document it and call ``super()``; a user's subclass may answer otherwise)."""
    own = getattr(kind, predict, None)
    return getattr(kind, decision, None) is getattr(base, decision, None) and str(
        getattr(own, "__module__", "")
    ).startswith("sklearn.")


def _answer(predict: Callable[[Any], Any], rows: Any) -> Any:
    try:
        return predict(rows)
    except Exception as err:  # compared with the other path's outcome by the caller
        return err


def probe_rows(transformer: Any, columns: list[str], features: list[str]) -> Matrix:
    """Rows to compare both paths on: centres and spreads from the fitted steps (medians, means, scales, else 0
    and 1) at -3..+3 spreads, a row of huge values and a row with every value missing."""
    centre = np.zeros(len(columns))
    spread = np.ones(len(columns))
    for step in getattr(transformer, "steps", [("", transformer)]):
        est = step[1]
        if hasattr(est, "statistics_") and np.asarray(est.statistics_).dtype.kind == "f":
            centre = np.nan_to_num(np.asarray(est.statistics_, dtype=float))
        if hasattr(est, "scale_") and est.scale_ is not None:
            spread = np.where(np.asarray(est.scale_, dtype=float) > 0, est.scale_, 1.0)
    rng = np.random.default_rng(0)
    rows = [centre + k * spread for k in (-3, -1, -0.5, 0, 0.5, 1, 3)]
    rows += list(centre + rng.standard_normal((16, len(columns))) * spread)
    rows += [centre + 1e6 * spread, np.full(len(columns), np.nan)]
    by_name = np.array(rows, dtype=float)
    return by_name[:, [columns.index(f) for f in features]]


def _frame(matrix: Matrix, features: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(matrix, columns=features)


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def _without_feature_names(transformer: Any) -> Any:
    """A copy of the fitted transformer that expects a matrix: the steps were fitted on a DataFrame slice, so they
    remember column names and would warn on every call; the feature-count check stays."""
    clone = copy.deepcopy(transformer)
    for step in getattr(clone, "steps", [("", clone)]):
        if hasattr(step[1], "feature_names_in_"):
            del step[1].feature_names_in_
    if hasattr(clone, "feature_names_in_"):
        del clone.feature_names_in_
    return clone
