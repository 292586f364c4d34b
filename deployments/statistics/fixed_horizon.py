"""Fixed-horizon comparisons: a two-proportion test with Newcombe's interval for an A/B split evaluated once at a
planned sample size, and a shadow model's agreement with a Wilson interval. Peeking at ``ab_test`` repeatedly
inflates its error rate; the sequential tests are for monitoring."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from scipy import stats

from deployments.statistics.arguments import check_confidence, check_counts
from deployments.statistics.explanations import percent, signed_points


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``(0.0, 1.0)`` when ``n == 0``.

    Chosen over the textbook (Wald) interval because it stays inside [0, 1] and keeps its coverage at 0% and 100%
    and for small n, which is where a rollout's first checks and a shadow model's agreement rates live.
    """
    k, n = check_counts("successes", successes, "n", n)
    conf = check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    z = _z(conf)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ABVerdict:
    """A fixed-horizon comparison of two proportions; ``difference`` is ``rate_b - rate_a``."""

    successes_a: int
    n_a: int
    successes_b: int
    n_b: int
    rate_a: float | None
    rate_b: float | None
    difference: float | None
    ci_lower: float | None
    ci_upper: float | None
    p_value: float | None
    confidence: float
    significant: bool
    winner: Literal["a", "b"] | None
    insufficient_data: bool
    explanation: str
    higher_is_better: bool = True
    method: str = "pooled two-proportion z-test; Newcombe hybrid score (Wilson) interval for the difference"

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
            "p_value": self.p_value,
            "confidence": self.confidence,
            "significant": self.significant,
            "winner": self.winner,
            "insufficient_data": self.insufficient_data,
            "explanation": self.explanation,
            "higher_is_better": self.higher_is_better,
            "method": self.method,
        }


def ab_test(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    confidence: float = 0.95,
    *,
    higher_is_better: bool = True,
) -> ABVerdict:
    """Compare two proportions once, at a planned sample size (not for repeated peeking: see the module docstring).

    p-value: two-sided pooled z-test (= Pearson chi-square without continuity correction; a normal approximation,
    rough when a cell expects fewer than 5 events, which the explanation then says). Interval: Newcombe's hybrid
    score interval for ``rate_b - rate_a`` at ``confidence``. ``significant`` is ``p_value < 1 - confidence``; in
    rare borderline cases the interval and the p-value disagree, and the p-value decides. ``winner`` is the variant
    with the better rate when significant (higher unless ``higher_is_better=False``, e.g. for error counts).
    An arm without observations, or both arms at 0% or both at 100% (no variation to test), gives an
    ``insufficient_data`` verdict instead of a division error.
    """
    ka, na = check_counts("successes_a", successes_a, "n_a", n_a)
    kb, nb = check_counts("successes_b", successes_b, "n_b", n_b)
    conf = check_confidence(confidence)
    level = percent(conf)
    rate_a = ka / na if na else None
    rate_b = kb / nb if nb else None

    def verdict(**kw: Any) -> ABVerdict:
        return ABVerdict(
            successes_a=ka,
            n_a=na,
            successes_b=kb,
            n_b=nb,
            rate_a=rate_a,
            rate_b=rate_b,
            confidence=conf,
            higher_is_better=higher_is_better,
            **kw,
        )

    if rate_a is None or rate_b is None:
        empty = " and ".join(name for name, n in (("a", na), ("b", nb)) if n == 0)
        return verdict(
            difference=None,
            ci_lower=None,
            ci_upper=None,
            p_value=None,
            significant=False,
            winner=None,
            insufficient_data=True,
            explanation=f"Insufficient data: variant {empty} has no observations yet; send traffic to both variants "
            "before comparing.",
        )

    diff = rate_b - rate_a
    la, ua = wilson_interval(ka, na, conf)
    lb, ub = wilson_interval(kb, nb, conf)
    ci_lower = diff - math.sqrt((rate_b - lb) ** 2 + (ua - rate_a) ** 2)
    ci_upper = diff + math.sqrt((ub - rate_b) ** 2 + (rate_a - la) ** 2)
    facts = (
        f"Variant b {rate_b:.1%} ({kb}/{nb}) vs a {rate_a:.1%} ({ka}/{na}): difference "
        f"{signed_points(diff)} points ({level} CI {signed_points(ci_lower)} to {signed_points(ci_upper)})"
    )
    pooled = (ka + kb) / (na + nb)
    if pooled in (0.0, 1.0):
        return verdict(
            difference=diff,
            ci_lower=ci_lower,
            ci_upper=ci_upper,
            p_value=1.0,
            significant=False,
            winner=None,
            insufficient_data=True,
            explanation=f"{facts}: insufficient data, both variants are at {pooled:.0%} so there is no variation to "
            "compare yet; collect more observations.",
        )

    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    p_value = float(2 * stats.norm.sf(abs(diff) / se))
    significant = p_value < 1 - conf
    winner: Literal["a", "b"] | None = None
    if significant:
        winner = "b" if (diff > 0) == higher_is_better else "a"
    rough = ""
    if min(pooled * na, (1 - pooled) * na, pooled * nb, (1 - pooled) * nb) < 5:
        rough = " (fewer than 5 expected events in a cell: the normal approximation is rough; try Fisher's exact test)"
    if significant:
        outcome = f"p = {p_value:.3g}, significant at the {level} level; {winner} is better{rough}."
    else:
        outcome = f"p = {p_value:.3g}, not significant at the {level} level; no winner yet{rough}."
    return verdict(
        difference=diff,
        ci_lower=ci_lower,
        ci_upper=ci_upper,
        p_value=p_value,
        significant=significant,
        winner=winner,
        insufficient_data=False,
        explanation=f"{facts}, {outcome}",
    )


@dataclass(frozen=True)
class AgreementReport:
    """How often a shadow model agreed with the live one, with a Wilson interval."""

    n_compared: int
    n_agreed: int
    agreement_rate: float | None
    ci_lower: float
    ci_upper: float
    confidence: float
    explanation: str

    def to_json(self) -> dict[str, Any]:
        return {
            "n_compared": self.n_compared,
            "n_agreed": self.n_agreed,
            "agreement_rate": self.agreement_rate,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
            "confidence": self.confidence,
            "explanation": self.explanation,
        }


def agreement_report(n_compared: int, n_agreed: int, confidence: float = 0.95) -> AgreementReport:
    """Shadow-mode agreement: rate, Wilson interval (good at 100% agreement and small n) and a sentence for the UI."""
    agreed, compared = check_counts("n_agreed", n_agreed, "n_compared", n_compared)
    conf = check_confidence(confidence)
    lower, upper = wilson_interval(agreed, compared, conf)
    if compared == 0:
        return AgreementReport(
            n_compared=0,
            n_agreed=0,
            agreement_rate=None,
            ci_lower=lower,
            ci_upper=upper,
            confidence=conf,
            explanation="No requests compared yet: the shadow model's agreement with the live model is unknown.",
        )
    rate = agreed / compared
    return AgreementReport(
        n_compared=compared,
        n_agreed=agreed,
        agreement_rate=rate,
        ci_lower=lower,
        ci_upper=upper,
        confidence=conf,
        explanation=f"The shadow model agreed with the live model on {agreed:,} of {compared:,} requests "
        f"({rate:.1%}; {percent(conf)} interval {lower:.1%} to {upper:.1%}).",
    )
