"""Argument checks shared by the tests: counts are whole, non-negative cumulative totals; rates and confidence
levels lie strictly between 0 and 1. Each error names the argument and the fix."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def check_count(name: str, value: object) -> int:
    """A non-negative whole number; integral floats (say from a SQL SUM) are accepted, anything else is refused."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number of observations, got the boolean {value!r}; pass an int")
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be a whole number of observations, got {value!r}; pass an int count")
    count = int(value)
    if count < 0:
        raise ValueError(f"{name} must be >= 0, got {count}; pass the cumulative total, which cannot be negative")
    return count


def check_counts(part_name: str, part: object, total_name: str, total: object) -> tuple[int, int]:
    k, n = check_count(part_name, part), check_count(total_name, total)
    if k > n:
        raise ValueError(
            f"{part_name} ({k}) cannot exceed {total_name} ({n}); {part_name} counts a subset of the {total_name} "
            "observations, so pass both as cumulative totals over the same period"
        )
    return k, n


def check_open_unit(name: str, value: float, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}; {fix}")
    v = float(value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}; {fix}")
    return v


def check_confidence(confidence: float) -> float:
    return check_open_unit("confidence", confidence, "use for example 0.95 for a 95% interval")


def check_array_counts(
    part_name: str, part: npt.ArrayLike, total_name: str, total: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    k = np.asarray(part, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    if np.any(k < 0) or np.any(n < 0):
        raise ValueError(f"{part_name} and {total_name} must be >= 0; pass cumulative totals")
    if np.any(np.isnan(k)) or np.any(np.isnan(n)):
        raise ValueError(f"{part_name} and {total_name} must be counts, not NaN; pass cumulative totals")
    if np.any(k > n):
        raise ValueError(f"{part_name} cannot exceed {total_name}; pass the part out of the total")
    return k, n
