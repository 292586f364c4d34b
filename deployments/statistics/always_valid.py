"""The A/B verdict, valid however often it is looked at: a confidence sequence for the difference in accuracy.

A fixed-horizon z-test re-evaluated at every poll rejects far more often than its level (two equally good models
polled every 10 labels per arm were "significantly" different about 11% of the time, against 2.5% for one look).
Here the difference ``rate_b - rate_a`` gets a *confidence sequence*: intervals that hold their level
simultaneously at every sample size, so the interval shown at the moment of a decision is valid at that moment,
whenever the decision was taken.

Construction: the mixture sequential probability ratio test (mSPRT; Robbins 1970, Johari et al. 2017, "Peeking at
A/B tests"). With ``d`` the observed difference and ``V`` its variance, the likelihood ratio of "the difference is
theta" against a normal mixture of alternatives around it (mixing variance ``tau**2``) is
``sqrt(V / (V + tau**2)) * exp(tau**2 (d - theta)**2 / (2 V (V + tau**2)))``; by Ville's inequality it ever reaches
``1/alpha`` with probability at most ``alpha``. The values of ``theta`` it has not rejected form the interval
``d -/+ sqrt(V (V + tau**2) / tau**2 * (2 log(1/alpha) + log((V + tau**2) / V)))``.
``V`` uses each arm's rate shrunk towards 1/2 by one success and one failure (``(k + 1) / (n + 2)``), so an arm at
100% does not claim zero variance; ``tau`` is the effect worth detecting (``min_effect``), which makes the interval
narrowest around the sample size at which such an effect becomes visible. The normal approximation asks for some
labels per arm first: the rollout waits for ``min_labels`` on each.

Decisions (the rollout policy): the challenger (``b``) is rolled back once the whole interval lies below 0, and
promoted once it lies above 0 (better) or above ``-min_effect`` (not worse by the effect worth rolling back for).
An equally good challenger is rolled back with probability at most ``alpha`` (about half of it in practice: the
interval is two-sided), a challenger ``min_effect`` worse is promoted with probability at most ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from deployments.statistics.arguments import check_counts, check_open_unit
from deployments.statistics.explanations import percent, points, signed_points


@dataclass(frozen=True)
class SequentialABVerdict:
    """One look at an A/B test; ``difference`` is ``rate_b - rate_a`` (b: the challenger)."""

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    rate_a: float | None
    rate_b: float | None
    difference: float | None
    ci_lower: float | None  # always-valid interval at level 1 - alpha
    ci_upper: float | None
    p_value: float | None  # always-valid p-value for "no difference" (1 / the mixture likelihood ratio, capped at 1)
    alpha: float
    min_effect: float
    significant: bool  # the interval excludes 0
    winner: Literal["a", "b"] | None
    non_inferior: bool  # the interval lies above -min_effect: b is not worse by min_effect
    explanation: str
    method: str = "mixture SPRT (mSPRT) confidence sequence for the difference in accuracy, always valid"

    def to_json(self) -> dict[str, Any]:
        return {
            "successes_a": self.successes_a,
            "n_a": self.n_a,
            "successes_b": self.successes_b,
            "n_b": self.n_b,
            "rate_a": self.rate_a,
            "rate_b": self.rate_b,
            "difference": self.difference,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
            "confidence": 1 - self.alpha,
            "p_value": self.p_value,
            "significant": self.significant,
            "winner": self.winner,
            "non_inferior": self.non_inferior,
            "min_effect": self.min_effect,
            "explanation": self.explanation,
            "method": self.method,
        }


def half_width(variance: float, alpha: float, tau: float) -> float:
    """Half-width of the mSPRT confidence sequence at variance ``variance`` (vectorisable with numpy arrays)."""
    t2 = tau * tau
    return math.sqrt(variance * (variance + t2) / t2 * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance)))


def shrunk_variance(successes: float, n: float) -> float:
    p = (successes + 1.0) / (n + 2.0)
    return p * (1.0 - p) / n


def ab_sequential(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, alpha: float = 0.05, min_effect: float = 0.05
) -> SequentialABVerdict:
    """Compare ``b`` (challenger) with ``a`` (champion) on cumulative counts; valid at every look."""
    ka, na = check_counts("successes_a", successes_a, "n_a", n_a)
    kb, nb = check_counts("successes_b", successes_b, "n_b", n_b)
    level = check_open_unit("alpha", alpha, "it is the largest acceptable false-rollback probability, e.g. 0.05")
    delta = check_open_unit("min_effect", min_effect, "pass the drop worth detecting as a fraction, e.g. 0.05")
    rate_a = ka / na if na else None
    rate_b = kb / nb if nb else None
    base: dict[str, Any] = {
        "successes_a": ka,
        "n_a": na,
        "successes_b": kb,
        "n_b": nb,
        "rate_a": rate_a,
        "rate_b": rate_b,
        "alpha": level,
        "min_effect": delta,
    }
    if rate_a is None or rate_b is None:
        return SequentialABVerdict(
            **base,
            difference=None,
            ci_lower=None,
            ci_upper=None,
            p_value=None,
            significant=False,
            winner=None,
            non_inferior=False,
            explanation="Insufficient data: an arm has no labelled answers yet.",
        )
    diff = rate_b - rate_a
    variance = shrunk_variance(ka, na) + shrunk_variance(kb, nb)
    half = half_width(variance, level, delta)
    lower, upper = diff - half, diff + half
    t2 = delta * delta
    log_lr = 0.5 * math.log(variance / (variance + t2)) + t2 * diff * diff / (2 * variance * (variance + t2))
    p_value = min(1.0, math.exp(-log_lr))
    winner: Literal["a", "b"] | None = "b" if lower > 0 else "a" if upper < 0 else None
    non_inferior = lower > -delta
    facts = (
        f"Challenger {rate_b:.1%} ({kb}/{nb}) vs champion {rate_a:.1%} ({ka}/{na}): difference "
        f"{signed_points(diff)} points, always-valid {percent(1 - level)} interval {signed_points(lower)} to "
        f"{signed_points(upper)}"
    )
    if winner == "a":
        outcome = "the challenger is worse, at any number of looks; roll back."
    elif winner == "b":
        outcome = "the challenger is better, at any number of looks; promote."
    elif non_inferior:
        outcome = f"the challenger is not {points(delta)} points worse (the interval lies above -{points(delta)})."
    else:
        outcome = "no verdict yet; keep collecting labels (the interval stays valid however often it is checked)."
    return SequentialABVerdict(
        **base,
        difference=diff,
        ci_lower=lower,
        ci_upper=upper,
        p_value=p_value,
        significant=winner is not None,
        winner=winner,
        non_inferior=non_inferior,
        explanation=f"{facts}: {outcome}",
    )
