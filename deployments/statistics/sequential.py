"""Sequential tests a rollout runs at every evaluation: is the challenger worse than the champion by
``min_effect``, in accuracy (labels) or in error rate (requests)? Decided from cumulative counts, with Wald's
boundaries on the weighted log-likelihood ratio (``likelihood``); see ``docs/statistics.md``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from deployments.statistics.arguments import check_array_counts, check_counts, check_open_unit
from deployments.statistics.explanations import explain_sequential
from deployments.statistics.likelihood import weighted_log_likelihood_ratio

Decision = Literal["continue", "abort", "pass"]


DECISIONS: tuple[Decision, ...] = ("continue", "abort", "pass")
CONTINUE, ABORT, PASS = 0, 1, 2


@dataclass(frozen=True)
class SequentialVerdict:
    """One evaluation of a sequential test, ready to persist next to the counts and to show in a UI."""

    decision: Decision
    challenger_n: int
    champion_n: int
    challenger_rate: float | None  # accuracy (or error rate for the error-rate test); None without observations
    champion_rate: float | None
    log_likelihood_ratio: float  # the weighted log-likelihood ratio; > 0 favours "worse by min_effect"
    lower_threshold: float  # pass at or below
    upper_threshold: float  # abort at or above
    explanation: str
    metric: str = "accuracy"
    min_effect: float = 0.05
    truncated: bool = False  # passed because max_samples was reached without crossing a boundary

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "challenger_n": self.challenger_n,
            "champion_n": self.champion_n,
            "challenger_rate": self.challenger_rate,
            "champion_rate": self.champion_rate,
            "log_likelihood_ratio": self.log_likelihood_ratio,
            "lower_threshold": self.lower_threshold,
            "upper_threshold": self.upper_threshold,
            "explanation": self.explanation,
            "metric": self.metric,
            "min_effect": self.min_effect,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class _SequentialRateTest:
    """Shared machinery; the public classes fix which outcome is counted and the wording."""

    alpha: float = 0.05
    beta: float = 0.20
    min_effect: float = 0.05
    min_samples: int = 20
    max_samples: int | None = None

    metric: ClassVar[str] = "accuracy"
    unit: ClassVar[str] = "labels"
    counted: ClassVar[str] = "correct"
    higher_is_worse: ClassVar[bool] = False  # True when the counted outcome is the bad one (errors)

    def __post_init__(self) -> None:
        check_open_unit("alpha", self.alpha, "it is the largest acceptable false-rollback probability, e.g. 0.05")
        check_open_unit("beta", self.beta, "it is the acceptable probability of missing a real drop, e.g. 0.20")
        if self.alpha + self.beta >= 1:
            raise ValueError(
                f"alpha + beta must be < 1, got {self.alpha} + {self.beta}; use for example alpha=0.05, beta=0.20"
            )
        check_open_unit("min_effect", self.min_effect, "pass the drop worth detecting as a fraction, e.g. 0.05")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise ValueError(f"min_samples must be an int >= 1, got {self.min_samples!r}; use for example 20")
        if self.max_samples is not None and (
            isinstance(self.max_samples, bool)
            or not isinstance(self.max_samples, int)
            or self.max_samples < self.min_samples
        ):
            raise ValueError(
                f"max_samples must be None or an int >= min_samples ({self.min_samples}), got {self.max_samples!r}; "
                "use None for no budget or a few times the expected sample size"
            )

    @property
    def upper_threshold(self) -> float:
        """Abort at or above: Wald's ``log((1 - beta) / alpha)``."""
        return math.log((1 - self.beta) / self.alpha)

    @property
    def lower_threshold(self) -> float:
        """Pass at or below: Wald's ``log(beta / (1 - alpha))``."""
        return math.log(self.beta / (1 - self.alpha))

    def _good(
        self, count: npt.ArrayLike, n: npt.ArrayLike, count_name: str, n_name: str
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        k, total = check_array_counts(count_name, count, n_name, n)
        return (total - k if self.higher_is_worse else k), total

    def log_likelihood_ratio(
        self,
        challenger_count: npt.ArrayLike,
        challenger_n: npt.ArrayLike,
        champion_count: npt.ArrayLike,
        champion_n: npt.ArrayLike,
    ) -> npt.NDArray[np.float64]:
        """The weighted log-likelihood ratio (module docstring) for (arrays of) cumulative counts of ``counted``."""
        g1, n1 = self._good(challenger_count, challenger_n, f"challenger_{self.counted}", "challenger_n")
        g2, n2 = self._good(champion_count, champion_n, f"champion_{self.counted}", "champion_n")
        return weighted_log_likelihood_ratio(g1, n1, g2, n2, self.min_effect)

    def decision_codes(
        self,
        challenger_count: npt.ArrayLike,
        challenger_n: npt.ArrayLike,
        champion_count: npt.ArrayLike,
        champion_n: npt.ArrayLike,
    ) -> npt.NDArray[np.int8]:
        """Vectorised decisions (``DECISIONS[code]``), the exact rule ``evaluate`` applies, for simulations."""
        llr = self.log_likelihood_ratio(challenger_count, challenger_n, champion_count, champion_n)
        n1 = np.broadcast_to(np.asarray(challenger_n), llr.shape)
        n2 = np.broadcast_to(np.asarray(champion_n), llr.shape)
        return self._codes(llr, n1, n2)

    def _codes(self, llr: npt.NDArray[np.float64], n1: npt.NDArray[Any], n2: npt.NDArray[Any]) -> npt.NDArray[np.int8]:
        ready = (n1 >= self.min_samples) & (n2 >= self.min_samples)
        abort = ready & (llr >= self.upper_threshold)
        passed = ready & ~abort & (llr <= self.lower_threshold)
        if self.max_samples is not None:
            passed = passed | (ready & ~abort & (n1 >= self.max_samples))
        codes = np.full(llr.shape, CONTINUE, dtype=np.int8)
        codes[abort] = ABORT
        codes[passed] = PASS
        return codes

    def _evaluate(
        self, challenger_count: int, challenger_n: int, champion_count: int, champion_n: int
    ) -> SequentialVerdict:
        k1, n1 = check_counts(f"challenger_{self.counted}", challenger_count, "challenger_n", challenger_n)
        k2, n2 = check_counts(f"champion_{self.counted}", champion_count, "champion_n", champion_n)
        llr = float(self.log_likelihood_ratio(k1, n1, k2, n2))
        code = int(self._codes(np.asarray(llr), np.asarray(n1), np.asarray(n2)))
        decision = DECISIONS[code]
        truncated = decision == "pass" and llr > self.lower_threshold
        rate1 = k1 / n1 if n1 else None
        rate2 = k2 / n2 if n2 else None
        return SequentialVerdict(
            decision=decision,
            challenger_n=n1,
            champion_n=n2,
            challenger_rate=rate1,
            champion_rate=rate2,
            log_likelihood_ratio=llr,
            lower_threshold=self.lower_threshold,
            upper_threshold=self.upper_threshold,
            explanation=explain_sequential(self, decision, truncated, llr, rate1, n1, rate2, n2),
            metric=self.metric,
            min_effect=self.min_effect,
            truncated=truncated,
        )


@dataclass(frozen=True)
class SequentialQualityTest(_SequentialRateTest):
    """Is the challenger's accuracy at least ``min_effect`` below the champion's? Decided as labels arrive.

    ``alpha``: the largest probability of rolling back a challenger exactly as accurate as the champion (better
    ones are rolled back less often). ``beta``: the largest probability of passing one that is ``min_effect`` worse.
    ``min_samples``: no decision before each model has this many labels. ``max_samples``: optional budget of
    challenger labels after which an undecided test passes (``truncated=True``).
    """

    def evaluate(
        self, challenger_correct: int, challenger_n: int, champion_correct: int, champion_n: int
    ) -> SequentialVerdict:
        """Decide from cumulative counts: ``"abort"`` (roll back), ``"pass"`` or ``"continue"``."""
        return self._evaluate(challenger_correct, challenger_n, champion_correct, champion_n)


@dataclass(frozen=True)
class SequentialErrorRateTest(_SequentialRateTest):
    """Is the challenger's error rate at least ``min_effect`` (absolute) above the champion's? Higher is worse.

    Same test as :class:`SequentialQualityTest` run on ``1 - error rate``; counts are errors out of requests and
    ``min_effect`` defaults to 2 points because error rates are usually small.
    """

    min_effect: float = 0.02

    metric: ClassVar[str] = "error rate"
    unit: ClassVar[str] = "requests"
    counted: ClassVar[str] = "errors"
    higher_is_worse: ClassVar[bool] = True

    def evaluate(
        self, challenger_errors: int, challenger_n: int, champion_errors: int, champion_n: int
    ) -> SequentialVerdict:
        """Decide from cumulative error and request counts: ``"abort"``, ``"pass"`` or ``"continue"``."""
        return self._evaluate(challenger_errors, challenger_n, champion_errors, champion_n)
