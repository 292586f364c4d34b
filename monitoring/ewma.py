"""EWMA control charts (source 14.1) and a trend forecast, on any per-interval metric series.

``S_t = a*x_t + (1-a)*S_(t-1)``, with control limits ``S_t +/- L*sigma_t`` around the baseline mean, where
``sigma_t = sigma * sqrt(a/(2-a) * (1-(1-a)^(2t)))`` is the exact standard deviation of the EWMA after t points
(Roberts 1959). The baseline mean and sigma come from the first ``baseline`` points (or are given). A breach is a
smoothed value outside the limits in the bad direction; the forecast extrapolates the recent smoothed slope to
the SLO and says how long until it is crossed.

Where each point is a mean over an interval with its own number of answers ``n_t`` (the clock's buckets at either
end of a window are partly filled, traffic is not even), the point weighs what its answers weigh: the weight is
``w_t = 1 - (1-a)^(n_t/n)`` (``a`` for an interval of the mean count ``n``, about ``a*n_t/n`` for a few answers, 0
for none), the point's spread ``sigma*sqrt(n/n_t)``, and the limits follow the exact variance of that average,
``V_t = w_t^2*sigma_t^2 + (1-w_t)^2*V_(t-1)`` (equal to the formula above when every ``n_t`` is ``n``). Without
this a still-filling last interval of three answers moved the chart as much as a full one, and the verdict on
steady traffic depended on where the minute boundaries fell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class ControlChart:
    metric: str
    smoothed: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    mean: float
    sigma: float
    breaches: list[int]  # indexes where the smoothed value left the limits in the bad direction

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def to_json(self) -> dict[str, Any]:
        last = len(self.smoothed) - 1
        return {
            "metric": self.metric,
            "mean": self.mean,
            "sigma": self.sigma,
            "last_smoothed": float(self.smoothed[last]) if last >= 0 else None,
            "last_upper": float(self.upper[last]) if last >= 0 else None,
            "last_lower": float(self.lower[last]) if last >= 0 else None,
            "breaches": self.breaches,
        }


def ewma_chart(
    values: np.ndarray | list[float],
    metric: str,
    *,
    alpha: float = 0.3,
    width: float = 3.0,
    baseline: int = 10,
    mean: float | None = None,
    sigma: float | None = None,
    bad: Literal["high", "low", "both"] = "high",
    counts: np.ndarray | list[float] | None = None,
) -> ControlChart:
    """``sigma`` is the spread of one point (of an interval with the mean count, where ``counts`` are given)."""
    x = np.asarray(values, dtype=float)
    if not 0 < alpha <= 1:
        raise ValueError("alpha must be in (0, 1]; 0.2-0.3 is usual")
    if x.size == 0:
        raise ValueError(f"no values for {metric}")
    base = x[: max(2, min(baseline, x.size))]
    mu = float(np.nanmean(base)) if mean is None else mean
    sd = float(np.nanstd(base, ddof=1)) if sigma is None else sigma
    sd = sd if np.isfinite(sd) and sd > 0 else max(abs(mu) * 0.01, 1e-9)
    if counts is None:
        weights, spread = np.full(x.size, alpha), np.full(x.size, sd)
    else:
        n = np.asarray(counts, dtype=float)
        if n.shape != x.shape or (n < 0).any():
            raise ValueError(f"counts for {metric} must be one non-negative count per value")
        n = np.where(np.isfinite(x), n, 0.0)
        typical = float(n[n > 0].mean()) if (n > 0).any() else 1.0
        weights = 1 - (1 - alpha) ** (n / typical)
        spread = sd * np.sqrt(typical / np.maximum(n, 1e-12))
    smoothed = np.empty_like(x)
    variance = np.empty_like(x)
    s, v = mu, 0.0
    for i, value in enumerate(x):
        w = weights[i] if np.isfinite(value) else 0.0
        if w > 0:
            s = w * value + (1 - w) * s
            v = w * w * spread[i] ** 2 + (1 - w) ** 2 * v
        smoothed[i], variance[i] = s, v
    sigma_t = np.sqrt(variance)
    upper, lower = mu + width * sigma_t, mu - width * sigma_t
    high = smoothed > upper
    low = smoothed < lower
    flags = high if bad == "high" else low if bad == "low" else high | low
    return ControlChart(metric, smoothed, upper, lower, mu, sd, [int(i) for i in np.flatnonzero(flags)])


def time_to_breach(
    smoothed: np.ndarray, slo: float, interval_seconds: float, bad: Literal["high", "low"] = "high", window: int = 10
) -> float | None:
    """Seconds until the smoothed metric crosses ``slo`` at its recent slope; 0 if already past, None if never."""
    y = np.asarray(smoothed, dtype=float)[-window:]
    if y.size == 0:
        return None
    now = y[-1]
    if (bad == "high" and now >= slo) or (bad == "low" and now <= slo):
        return 0.0
    if y.size < 3:
        return None
    slope = float(np.polyfit(np.arange(y.size), y, 1)[0])  # per interval
    if (bad == "high" and slope <= 0) or (bad == "low" and slope >= 0):
        return None
    return (slo - now) / slope * interval_seconds
