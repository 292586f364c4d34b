"""The quality test for regression models: is the challenger's mean absolute error larger than the champion's by
at least ``min_effect`` (in the target's units, or as a ratio of the champion's)? Decided as labels arrive.

Each labelled answer gives an absolute error ``|label - prediction|``; a rollout keeps, per model, three cumulative
sums (count, sum, sum of squares), so the test is a pure function of persisted totals like the classification test.
With ``d`` the difference of the two mean absolute errors (challenger minus champion) and ``V`` its estimated
variance (``s_challenger**2 / n_challenger + s_champion**2 / n_champion``), the log-likelihood ratio of "worse by
``delta``" against "as good" is ``(delta * d - delta**2 / 2) / V``: Wald's SPRT for the drift of a Brownian motion
in information time (``1 / V``), with Wald's boundaries ``log((1 - beta) / alpha)`` (roll back) and
``log(beta / (1 - alpha))`` (pass). The normal approximation and the estimated variance ask for some labels per
model first (``min_samples``, 30). As for classifiers, the rollout stops the test at its first boundary crossing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deployments.statistics.arguments import check_open_unit


@dataclass(frozen=True)
class ErrorSums:
    """Cumulative absolute errors of one model's labelled answers."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        if self.n < 2:
            return None
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))


@dataclass(frozen=True)
class RegressionVerdict:
    decision: str  # continue | abort | pass
    challenger_n: int
    champion_n: int
    challenger_mae: float | None
    champion_mae: float | None
    min_effect: float | None  # in the target's units, as used (a ratio is converted with the champion's MAE)
    log_likelihood_ratio: float
    lower_threshold: float
    upper_threshold: float
    explanation: str
    metric: str = "mean absolute error"

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "challenger_n": self.challenger_n,
            "champion_n": self.champion_n,
            "challenger_rate": self.challenger_mae,
            "champion_rate": self.champion_mae,
            "challenger_mae": self.challenger_mae,
            "champion_mae": self.champion_mae,
            "min_effect": self.min_effect,
            "log_likelihood_ratio": self.log_likelihood_ratio,
            "lower_threshold": self.lower_threshold,
            "upper_threshold": self.upper_threshold,
            "explanation": self.explanation,
            "metric": self.metric,
        }


def llr(
    sum1: npt.ArrayLike, sq1: npt.ArrayLike, n1: npt.ArrayLike, sum2: npt.ArrayLike, sq2: npt.ArrayLike,
    n2: npt.ArrayLike, delta: npt.ArrayLike,
) -> npt.NDArray[np.float64]:  # fmt: skip
    """The log-likelihood ratio from cumulative sums (vectorised; nan where a model has fewer than 2 labels)."""
    s1, q1, c1 = (np.asarray(x, dtype=np.float64) for x in (sum1, sq1, n1))
    s2, q2, c2 = (np.asarray(x, dtype=np.float64) for x in (sum2, sq2, n2))
    d = np.asarray(delta, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m1, m2 = s1 / c1, s2 / c2
        v1 = np.maximum(q1 - s1 * s1 / c1, 0.0) / (c1 - 1)
        v2 = np.maximum(q2 - s2 * s2 / c2, 0.0) / (c2 - 1)
        var = v1 / c1 + v2 / c2
        # identical errors (var 0) carry no noise: a tiny floor keeps the sign of the evidence and no nan
        var = np.maximum(var, 1e-12 * np.maximum(d * d, 1e-300))
        out: npt.NDArray[np.float64] = (d * (m1 - m2) - d * d / 2.0) / var
    return np.where((c1 >= 2) & (c2 >= 2) & (d > 0), out, np.nan)


@dataclass(frozen=True)
class SequentialMAETest:
    """Roll back a regressor whose mean absolute error exceeds the champion's by ``min_effect`` (target units) or by
    ``min_effect_ratio`` times the champion's; pass one that is not that much worse. ``alpha``: the largest
    probability of rolling back a challenger as good as the champion; ``beta``: of passing one worse by the effect."""

    alpha: float = 0.05
    beta: float = 0.20
    min_effect: float | None = None
    min_effect_ratio: float | None = 0.10
    min_samples: int = 30

    def __post_init__(self) -> None:
        check_open_unit("alpha", self.alpha, "it is the largest acceptable false-rollback probability, e.g. 0.05")
        check_open_unit("beta", self.beta, "it is the acceptable probability of missing a real drop, e.g. 0.20")
        if self.min_effect_ratio is None and (self.min_effect is None or not self.min_effect > 0):
            raise ValueError("set min_effect (> 0, in the target's units) or min_effect_ratio (e.g. 0.1 for 10% worse)")
        if self.min_effect_ratio is not None and not self.min_effect_ratio > 0:
            raise ValueError(f"min_effect_ratio must be > 0, got {self.min_effect_ratio!r}; use for example 0.1")

    @property
    def upper_threshold(self) -> float:
        return math.log((1 - self.beta) / self.alpha)

    @property
    def lower_threshold(self) -> float:
        return math.log(self.beta / (1 - self.alpha))

    def delta(self, champion_mae: npt.ArrayLike) -> npt.NDArray[np.float64]:
        if self.min_effect_ratio is not None:
            return np.asarray(champion_mae, dtype=np.float64) * self.min_effect_ratio
        return np.full(np.shape(champion_mae), float(self.min_effect or 0.0))

    def decision_codes(
        self, sum1: Any, sq1: Any, n1: Any, sum2: Any, sq2: Any, n2: Any
    ) -> npt.NDArray[np.int8]:  # 0 continue, 1 abort, 2 pass (as ``sequential.DECISIONS``)
        n1a, n2a = np.asarray(n1, dtype=np.float64), np.asarray(n2, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = self.delta(np.asarray(sum2, dtype=np.float64) / n2a)
        stat = llr(sum1, sq1, n1, sum2, sq2, n2, delta)
        ready = (n1a >= self.min_samples) & (n2a >= self.min_samples) & ~np.isnan(stat)
        codes = np.zeros(np.shape(stat), dtype=np.int8)
        codes[ready & (stat >= self.upper_threshold)] = 1
        codes[ready & (stat <= self.lower_threshold)] = 2
        return codes

    def evaluate(self, challenger: ErrorSums, champion: ErrorSums) -> RegressionVerdict:
        mae1, mae2 = challenger.mean, champion.mean
        delta = float(self.delta(mae2)) if mae2 is not None else None
        stat = float(llr(challenger.total, challenger.total_sq, challenger.n, champion.total, champion.total_sq,
                         champion.n, delta if delta is not None else 0.0))  # fmt: skip
        code = int(
            self.decision_codes(
                challenger.total, challenger.total_sq, challenger.n, champion.total, champion.total_sq, champion.n
            )
        )
        decision = ("continue", "abort", "pass")[code]
        facts = (
            f"Challenger mean absolute error {mae1:.4g} on {challenger.n} labels vs champion {mae2:.4g} on {champion.n}"
            if mae1 is not None and mae2 is not None
            else f"Mean absolute errors not measured yet ({challenger.n} and {champion.n} labels)"
        )
        effect = (
            f"{self.min_effect_ratio:.0%} worse than the champion's" if self.min_effect_ratio is not None else
            f"{self.min_effect:g} worse (target units)"
        )  # fmt: skip
        if decision == "abort":
            text = (
                f"{facts}: the evidence that it is at least {effect} crossed the {1 - self.alpha:.0%} threshold; "
                "roll back."
            )
        elif decision == "pass":
            text = (
                f"{facts}: the evidence that it is not {effect} crossed the threshold (a challenger that much worse "
                f"would have been caught {1 - self.beta:.0%} of the time); the rollout may proceed."
            )
        elif challenger.n < self.min_samples or champion.n < self.min_samples:
            text = f"{facts}: waiting for at least {self.min_samples} labels on each model before deciding."
        else:
            text = (
                f"{facts}: not enough evidence yet for or against it being {effect} (log-likelihood ratio "
                f"{stat:.2f}; roll back at "
                f"{self.upper_threshold:.2f}, pass at {self.lower_threshold:.2f})."
            )
        return RegressionVerdict(
            decision=decision,
            challenger_n=challenger.n,
            champion_n=champion.n,
            challenger_mae=mae1,
            champion_mae=mae2,
            min_effect=delta,
            log_likelihood_ratio=stat if not math.isnan(stat) else 0.0,
            lower_threshold=self.lower_threshold,
            upper_threshold=self.upper_threshold,
            explanation=text,
        )
