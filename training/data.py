"""Loading, fingerprinting and splitting the training data.

Plain functions do the work (tested without Prefect); the ``@task`` wrappers add retries where I/O can be flaky.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import BUILTIN_PREFIX, ProjectConfig
from core.errors import DataError
from training.datasets import BUILTIN


@dataclass(frozen=True)
class LoadedData:
    frame: pd.DataFrame
    source: str  # what the user named: a resolved path or builtin:<name>
    fingerprint: str


def read_frame(config: ProjectConfig) -> tuple[pd.DataFrame, str]:
    """Read the configured source into a DataFrame; every failure names the file and the fix."""
    source = config.data.source
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN:
            raise DataError(f"unknown built-in data set {name!r}; available: {', '.join(sorted(BUILTIN))}.")
        return BUILTIN[name](), source
    path = config.resolve(source)
    if not path.exists():
        raise DataError(f"data file {path} does not exist; fix data.source in the configuration.")
    if path.is_dir():
        raise DataError(f"data.source {path} is a folder; point it at a .csv or .parquet file.")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty (0 bytes).")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt") or path.name.lower().endswith(".csv.gz"):
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise DataError(f"data file {path} has suffix {suffix!r}; use a .csv or .parquet file.")
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {path} has no columns (empty CSV).") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise DataError(f"data file {path} could not be parsed: {err}") from None
    return frame, str(path)


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """Content hash of the data: same values, columns and dtypes give the same fingerprint, row order included.

    Uses pandas' vectorised row hashes, so a million rows hash in well under a second.
    """
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(np.ascontiguousarray(pd.util.hash_pandas_object(frame, index=False).to_numpy()).tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def load_data(config: ProjectConfig) -> LoadedData:
    frame, source = read_frame(config)
    if frame.shape[1] == 0:
        raise DataError(f"data source {source} has no columns.")
    if config.data.time_column and config.data.time_column in frame.columns:
        col = frame[config.data.time_column]
        if not pd.api.types.is_datetime64_any_dtype(col):
            parsed = pd.to_datetime(col, errors="coerce", utc=True)
            if parsed.notna().sum() >= col.notna().sum():  # only convert when every value parsed
                frame = frame.assign(**{config.data.time_column: parsed})
    return LoadedData(frame=frame, source=source, fingerprint=fingerprint_frame(frame))


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def split_holdout(frame: pd.DataFrame, config: ProjectConfig) -> Split:
    """Hold out ``split.test_size`` of the rows: at random (stratified for classification) or the latest by time.

    Deterministic for a given data fingerprint and seed, so champion and challenger are scored on the same rows.
    """
    labelled = frame[config.data.target].notna()
    if not labelled.all():  # allowed by validation.max_missing_target_fraction; unlabelled rows teach nothing
        frame = frame[labelled]
    n_holdout = round(len(frame) * config.split.test_size)
    if n_holdout < 1 or n_holdout >= len(frame):
        raise DataError(
            f"split.test_size={config.split.test_size} leaves {n_holdout} holdout rows out of {len(frame)}; "
            "add data or change split.test_size."
        )
    if config.split.method == "time":
        ordered = frame.sort_values(config.data.time_column, kind="stable")
        return Split(train=ordered.iloc[:-n_holdout], holdout=ordered.iloc[-n_holdout:])
    from sklearn.model_selection import train_test_split

    stratify = stratify_by(frame[config.data.target], n_holdout, config)
    train, holdout = train_test_split(frame, test_size=n_holdout, random_state=config.split.seed, stratify=stratify)
    return Split(train=train, holdout=holdout)


def stratify_by(target: pd.Series, n_holdout: int, config: ProjectConfig) -> pd.Series | None:
    """The labels to stratify a random holdout of ``n_holdout`` rows by: a classifier's, when every class has two
    rows and both sides can hold one of each; otherwise None (a plain random draw)."""
    if config.evaluation.problem_type != "classification":
        return None
    counts = target.value_counts()
    if len(counts) < 2 or counts.min() < 2 or not len(counts) <= n_holdout <= len(target) - len(counts):
        return None
    return target
