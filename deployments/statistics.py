"""Statistics a progressive rollout uses to decide, from labelled feedback, whether a challenger is worse.

Everything here is a pure function of **cumulative counts** (correct predictions and labels per model, or errors
and requests). A rollout persists four integers per check and can be resumed after a restart, evaluated by another
replica, or re-evaluated for an audit with the same answer: no in-memory history is needed, and evaluating once
at the end gives the same statistic as evaluating after every label.

Sequential test: design and why
-------------------------------
The rollout must stop as soon as the evidence allows (every label spent on a bad challenger is a user served badly)
while bounding the probability of rolling back a challenger that is as good as the champion (a false rollback
throws away a release and erodes trust in the automation). Wald's sequential probability ratio test (SPRT) is the
test with the smallest expected sample size for given error rates (Wald and Wolfowitz, 1948), so it is the base:

* H0: the challenger is as good as the champion, ``p_challenger = p_champion``;
* H1: it is worse by ``min_effect``, ``p_challenger = p_champion - min_effect`` (accuracy; for error rates the
  same test runs on ``1 - error rate``);
* abort (roll back) when the statistic reaches ``log((1 - beta) / alpha)``, pass when it falls to
  ``log(beta / (1 - alpha))`` (Wald's boundaries).

Wald's SPRT needs ``p_champion`` known; here it is only estimated from the champion's own labels, which arrive in
parallel. Three ways to deal with that, measured in ``benchmarks/rollback_decisions.py`` (``alpha = 0.05``):

1. *Plug-in*: use the champion's observed rate as if it were known. It ignores the estimate's noise and rolls back
   an equally good challenger in about 6% of rollouts with a 10% canary and about 27% at a 50/50 split. A
   conservative plug-in (a lower confidence bound) trades that for slower aborts at an arbitrary exchange rate.
2. *Profile*: maximise each hypothesis' likelihood over the champion's accuracy (Bartlett 1946; Cox 1963). Right
   in the large-sample limit, but the maximised ratio is biased upwards when the champion is poorly known: its
   expectation under H0 (which must be at most 1 for Wald's bound to hold) is 1.03-1.05 at 0.90 and 1.2-1.5 at
   0.95-0.97 accuracy with 50/50 traffic, and it rolls back about 5.2-5.5% of equal challengers at 0.95.
3. *Weighted* (used here): Wald's own method of weight functions (Wald 1947, *Sequential Analysis*): *average*
   each hypothesis' likelihood over the champion's accuracy with the same weight (uniform) under both::

       statistic = log [ integral_delta^1  L_challenger(p - delta) * L_champion(p) dp
                         / integral_0^1    L_challenger(p)         * L_champion(p) dp ]

   with ``delta = min_effect`` and ``L(q) = q**successes * (1 - q)**failures``. Its expectation under H0,
   computed exactly by enumerating all outcomes, is 1 to four decimals for champion accuracies 0.5-0.9 and below 1
   (conservative) nearer 100% with few labels, for 20-900 labels per model; it never exceeded 1. Measured
   false-rollback rates (20,000 rollouts each): 4.3% with a 10% canary, 4.2% at 5%, 4.6% at 50/50 (all at 0.90
   accuracy) and 3.7% at 50/50 and 0.95, where the profile test's is 5.2%.

Why the weighted ratio is also fast:

* It is a Laplace-corrected profile ratio (``profile - 0.5 * log(J_H1 / J_H0)``, the ``J`` being the curvature in
  the champion's accuracy), so the two are asymptotically the same test: the correction only matters, and only
  in the safe direction, where the profile is biased.
* Its drift per challenger label approaches the Kullback-Leibler projection ``min_p KL(truth || hypothesis(p))``,
  the best a test that controls its error rate for every champion accuracy can do. With a 10% canary (9 champion
  labels per challenger label) that is 1/1.126 of the known-rate drift: about 13% more challenger labels than
  Wald's test with a known champion accuracy is the price of not knowing it, and no design avoids it. With very
  many champion labels the test becomes Wald's known-rate SPRT; the champion's labelled history from before the
  rollout may be included in the ``champion_*`` counts to get closer, provided the population has not shifted.
* It uses the exact Bernoulli likelihood, not a normal approximation, so it keeps the SPRT's efficiency at high
  accuracies where one failure carries far more evidence than one success.

In the large-sample limit these statistics move continuously, and Wald's boundaries then give a false-rollback
rate of exactly ``alpha`` (not less): labels that each carry little evidence (accuracies near 0.5-0.7, or 50/50
traffic) approach that limit, while informative labels overshoot the boundary and leave some slack. ``alpha`` is
therefore a rate the test attains, not a loose bound; lower it if a strict margin is needed.

The numerator has no closed form: the H1 likelihood is log-concave in ``p``, so its maximum is found by bisection
on the derivative (bracketed by the two models' own maxima), and the integral by Gauss-Legendre quadrature over the
window where the integrand is within ``e**-40`` of that maximum. The denominator is a Beta function. All of it is
vectorised, so the benchmark runs exactly the code a rollout runs.

Decisions are only made once each model has ``min_samples`` labels (a handful of early labels is a fragile basis
for ending a rollout, and the large-sample reasoning above needs some). With ``max_samples`` set, a rollout that
reaches that many challenger labels without crossing a boundary passes (``truncated=True``): truncating only removes
abort opportunities, so the false-rollback rate cannot rise, and with a budget a few times the expected sample size
the loss of power is small.

Fixed-horizon comparisons
-------------------------
``ab_test`` compares two proportions once, at a planned sample size: a pooled two-proportion z-test for the
p-value (identical to Pearson's chi-square test without continuity correction) and Newcombe's hybrid score
interval for the difference (Wilson intervals per arm, combined; good coverage down to 0% and 100%, unlike the
Wald interval). Peeking at ``ab_test`` repeatedly inflates its error rate; use the sequential test for monitoring.
``agreement_report`` summarises shadow mode with a Wilson interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special, stats

Decision = Literal["continue", "abort", "pass"]
DECISIONS: tuple[Decision, ...] = ("continue", "abort", "pass")
"""Decision labels indexed by the integer codes ``decision_codes`` returns."""
CONTINUE, ABORT, PASS = 0, 1, 2

_BISECTION_STEPS = 50  # the bracket is at most 1 wide: 2**-50 ~ 1e-15, below float resolution near 1
_WINDOW_STEPS = 10  # bisection on log10(distance) over 20 decades: 2**-10 of that is a factor 1.05
_WINDOW_DROP = 40.0  # the integrand beyond the window is below e**-40 of its peak
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_CHUNK = 1 << 15  # elements per quadrature batch: 32 nodes x 32768 x 8 bytes = 8 MB per temporary


# --------------------------------------------------------------------------------------------------- validation


def _count(name: str, value: object) -> int:
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


def _counts(part_name: str, part: object, total_name: str, total: object) -> tuple[int, int]:
    k, n = _count(part_name, part), _count(total_name, total)
    if k > n:
        raise ValueError(
            f"{part_name} ({k}) cannot exceed {total_name} ({n}); {part_name} counts a subset of the {total_name} "
            "observations, so pass both as cumulative totals over the same period"
        )
    return k, n


def _open_unit(name: str, value: float, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}; {fix}")
    v = float(value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}; {fix}")
    return v


def _confidence(confidence: float) -> float:
    return _open_unit("confidence", confidence, "use for example 0.95 for a 95% interval")


def _array_counts(
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


# ------------------------------------------------------------------------------------------- shared building blocks


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``(0.0, 1.0)`` when ``n == 0``.

    Chosen over the textbook (Wald) interval because it stays inside [0, 1] and keeps its coverage at 0% and 100%
    and for small n, which is where a rollout's first checks and a shadow model's agreement rates live.
    """
    k, n = _counts("successes", successes, "n", n)
    conf = _confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    z = _z(conf)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class WaldExpectation(NamedTuple):
    """Wald's approximate expected sample sizes of the SPRT with known rates (overshoot ignored)."""

    under_h0: float
    under_h1: float


def wald_expected_sample_size(p0: float, p1: float, alpha: float = 0.05, beta: float = 0.20) -> WaldExpectation:
    """Expected number of Bernoulli observations Wald's SPRT of ``p = p0`` vs ``p = p1`` needs, both rates known.

    ``E[N | H1] = ((1 - beta) * A + beta * B) / KL(p1 || p0)`` and ``E[N | H0] = (alpha * A + (1 - alpha) * B) /
    -KL(p0 || p1)`` with ``A = log((1 - beta) / alpha)``, ``B = log(beta / (1 - alpha))`` (Wald 1947). It is
    the yardstick the benchmark compares the estimated-champion test against: for 0.90 vs 0.85, alpha 0.05 and beta
    0.20 it is about 156 labels under H1.
    """
    p0 = _open_unit("p0", p0, "pass the champion's accuracy as a fraction, e.g. 0.90")
    p1 = _open_unit("p1", p1, "pass the accuracy under the alternative as a fraction, e.g. 0.85")
    a = _open_unit("alpha", alpha, "use for example 0.05")
    b = _open_unit("beta", beta, "use for example 0.20")
    if p0 == p1:
        raise ValueError("p0 and p1 must differ; pass the rate under H1 (for example p0 - min_effect)")
    if a + b >= 1:
        raise ValueError(f"alpha + beta must be < 1, got {a + b}; use for example alpha=0.05, beta=0.20")
    upper, lower = math.log((1 - b) / a), math.log(b / (1 - a))
    kl_10 = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))  # E[step | H1] > 0
    kl_01 = p0 * math.log(p0 / p1) + (1 - p0) * math.log((1 - p0) / (1 - p1))  # -E[step | H0] > 0
    return WaldExpectation(
        under_h0=(a * upper + (1 - a) * lower) / -kl_01,
        under_h1=((1 - b) * upper + b * lower) / kl_10,
    )


def _h1_log_likelihood(
    s1: npt.NDArray[np.float64],
    f1: npt.NDArray[np.float64],
    s2: npt.NDArray[np.float64],
    f2: npt.NDArray[np.float64],
    p: npt.NDArray[np.float64],
    delta: float,
) -> npt.NDArray[np.float64]:
    """Log-likelihood under H1 at champion accuracy ``p`` (challenger ``p - delta``); ``0 * log 0 = 0``."""
    out: npt.NDArray[np.float64] = (
        special.xlogy(s1, p - delta)
        + special.xlogy(f1, 1 + delta - p)
        + special.xlogy(s2, p)
        + special.xlogy(f2, 1 - p)
    )
    return out


def _h1_mode(
    s1: npt.NDArray[np.float64],
    f1: npt.NDArray[np.float64],
    s2: npt.NDArray[np.float64],
    f2: npt.NDArray[np.float64],
    delta: float,
) -> npt.NDArray[np.float64]:
    """The champion accuracy in [delta, 1] that maximises the H1 likelihood, by bisection on its derivative.

    The log-likelihood is concave in ``p``, so its maximum lies between the maxima of its two parts (champion alone:
    its observed rate; challenger alone: its observed rate + delta), which brackets the search.
    """
    n1, n2 = s1 + f1, s2 + f2
    champ_best = np.clip(np.divide(s2, n2, out=np.full(n2.shape, 0.5), where=n2 > 0), delta, 1.0)
    chall_best = np.clip(np.divide(s1, n1, out=np.full(n1.shape, 0.5), where=n1 > 0) + delta, delta, 1.0)
    champ_best = np.where(n2 > 0, champ_best, chall_best)
    chall_best = np.where(n1 > 0, chall_best, champ_best)
    lo, hi = np.minimum(champ_best, chall_best), np.maximum(champ_best, chall_best)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            slope = s1 / (mid - delta) - f1 / (1 + delta - mid) + s2 / mid - f2 / (1 - mid)
            rising = slope > 0  # NaN (0/0 at an end of a degenerate bracket) counts as not rising: harmless
            lo = np.where(rising, mid, lo)
            hi = np.where(rising, hi, mid)
    out: npt.NDArray[np.float64] = 0.5 * (lo + hi)
    return out


def _window_end(
    counts: tuple[npt.NDArray[np.float64], ...],
    mode: npt.NDArray[np.float64],
    peak: npt.NDArray[np.float64],
    delta: float,
    side: int,
) -> npt.NDArray[np.float64]:
    """Where, on one side of the mode, the H1 likelihood has fallen to e**-_WINDOW_DROP of its peak (or the domain
    end if it never does). Concavity makes the drop monotone, so a bisection on log10(distance) finds it; a factor
    of ~1.1 of precision is plenty because the quadrature only needs the window to contain the mass."""
    end = np.full(mode.shape, delta if side < 0 else 1.0)
    dist = np.abs(end - mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        whole = (_h1_log_likelihood(*counts, end, delta) - peak >= -_WINDOW_DROP) | (dist <= 0)
        lo = np.full(mode.shape, -20.0)
        hi = np.log10(np.where(dist > 0, dist, 1.0))
        for _ in range(_WINDOW_STEPS):
            exponent = 0.5 * (lo + hi)
            inside = _h1_log_likelihood(*counts, mode + side * 10.0**exponent, delta) - peak > -_WINDOW_DROP
            lo = np.where(inside, exponent, lo)
            hi = np.where(inside, hi, exponent)
    out: npt.NDArray[np.float64] = np.where(whole, end, mode + side * 10.0**hi)
    return out


def _broadcast_counts(
    challenger_good: npt.ArrayLike, challenger_n: npt.ArrayLike, champion_good: npt.ArrayLike, champion_n: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], ...]:
    s1, n1 = _array_counts("challenger_good", challenger_good, "challenger_n", challenger_n)
    s2, n2 = _array_counts("champion_good", champion_good, "champion_n", champion_n)
    return tuple(np.broadcast_arrays(s1, n1, s2, n2))


def weighted_log_likelihood_ratio(
    challenger_good: npt.ArrayLike,
    challenger_n: npt.ArrayLike,
    champion_good: npt.ArrayLike,
    champion_n: npt.ArrayLike,
    min_effect: float,
) -> npt.NDArray[np.float64]:
    """The decision statistic: log of the ratio of likelihoods averaged over the champion's unknown accuracy.

    ``log( integral_delta^1 L_chal(p - delta) L_champ(p) dp  /  integral_0^1 L_chal(p) L_champ(p) dp )`` with
    ``delta = min_effect`` and the same (uniform) weight on the champion's accuracy ``p`` under both hypotheses;
    see the module docstring for why. ``good`` counts the desirable outcome (correct predictions). Arrays broadcast
    and the result has the broadcast shape (0-d for scalars). Positive values favour "worse by ``min_effect``".

    The denominator is a Beta function. The numerator is a Gauss-Legendre quadrature over the window where the
    integrand is within ``e**-40`` of its peak (exact for the polynomial integrands of small counts, accurate to
    about 1e-9 otherwise); large inputs are processed in chunks to bound memory.
    """
    delta = _open_unit("min_effect", min_effect, "pass the drop worth detecting as a fraction, e.g. 0.05")
    s1, n1, s2, n2 = _broadcast_counts(challenger_good, challenger_n, champion_good, champion_n)
    shape = s1.shape
    flat = [a.reshape(-1) for a in (s1, n1 - s1, s2, n2 - s2)]
    out = np.empty(flat[0].size)
    for start in range(0, out.size, _CHUNK):
        part = tuple(a[start : start + _CHUNK] for a in flat)
        out[start : start + _CHUNK] = _weighted_llr(part, delta)
    return out.reshape(shape)


def _weighted_llr(counts: tuple[npt.NDArray[np.float64], ...], delta: float) -> npt.NDArray[np.float64]:
    s1, f1, s2, f2 = counts
    mode = _h1_mode(s1, f1, s2, f2, delta)
    peak = _h1_log_likelihood(s1, f1, s2, f2, mode, delta)
    lower = _window_end(counts, mode, peak, delta, -1)
    upper = _window_end(counts, mode, peak, delta, +1)
    half = 0.5 * (upper - lower)
    x = half[:, None] * _NODES + (0.5 * (upper + lower))[:, None]  # strictly inside (delta, 1): logs are finite
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = (
            s1[:, None] * np.log(x - delta)
            + f1[:, None] * np.log(1 + delta - x)
            + s2[:, None] * np.log(x)
            + f2[:, None] * np.log(1 - x)
        )
        log_numerator = peak + np.log(half) + np.log(np.exp(logs - peak[:, None]) @ _WEIGHTS)
    s, f = s1 + s2, f1 + f2
    out: npt.NDArray[np.float64] = log_numerator - special.betaln(s + 1, f + 1)
    return out


def profile_log_likelihood_ratio(
    challenger_good: npt.ArrayLike,
    challenger_n: npt.ArrayLike,
    champion_good: npt.ArrayLike,
    champion_n: npt.ArrayLike,
    min_effect: float,
) -> npt.NDArray[np.float64]:
    """Reference only (the benchmark compares against it): the ratio of likelihoods *maximised* over the champion.

    ``max_p L_chal(p - delta) L_champ(p)  /  max_p L_chal(p) L_champ(p)``. Asymptotically equivalent to
    :func:`weighted_log_likelihood_ratio` but biased upwards when the champion is poorly known and accuracies are
    high, which is why decisions do not use it (module docstring).
    """
    delta = _open_unit("min_effect", min_effect, "pass the drop worth detecting as a fraction, e.g. 0.05")
    s1, n1, s2, n2 = _broadcast_counts(challenger_good, challenger_n, champion_good, champion_n)
    f1, f2 = n1 - s1, n2 - s2
    s, f = s1 + s2, f1 + f2
    pooled = np.divide(s, s + f, out=np.full(s.shape, 0.5), where=s + f > 0)
    ll0 = special.xlogy(s, pooled) + special.xlogy(f, 1 - pooled)
    ll1 = _h1_log_likelihood(s1, f1, s2, f2, _h1_mode(s1, f1, s2, f2, delta), delta)
    return np.asarray(ll1 - ll0, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- sequential tests


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


def _points(fraction: float) -> str:
    return f"{fraction * 100:.4g}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


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
        _open_unit("alpha", self.alpha, "it is the largest acceptable false-rollback probability, e.g. 0.05")
        _open_unit("beta", self.beta, "it is the acceptable probability of missing a real drop, e.g. 0.20")
        if self.alpha + self.beta >= 1:
            raise ValueError(
                f"alpha + beta must be < 1, got {self.alpha} + {self.beta}; use for example alpha=0.05, beta=0.20"
            )
        _open_unit("min_effect", self.min_effect, "pass the drop worth detecting as a fraction, e.g. 0.05")
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
        k, total = _array_counts(count_name, count, n_name, n)
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
        k1, n1 = _counts(f"challenger_{self.counted}", challenger_count, "challenger_n", challenger_n)
        k2, n2 = _counts(f"champion_{self.counted}", champion_count, "champion_n", champion_n)
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
            explanation=self._explain(decision, truncated, llr, rate1, n1, rate2, n2),
            metric=self.metric,
            min_effect=self.min_effect,
            truncated=truncated,
        )

    def _explain(
        self,
        decision: Decision,
        truncated: bool,
        llr: float,
        rate1: float | None,
        n1: int,
        rate2: float | None,
        n2: int,
    ) -> str:
        chall = f"{rate1:.3f} on {n1} {self.unit}" if rate1 is not None else f"not measured yet (0 {self.unit})"
        champ = f"{rate2:.3f} on {n2}" if rate2 is not None else f"not measured yet (0 {self.unit})"
        facts = f"Challenger {self.metric} {chall} vs champion {champ}"
        effect = f"{_points(self.min_effect)} points worse"
        if decision == "abort":
            return (
                f"{facts}: the evidence that it is at least {effect} crossed the {_percent(1 - self.alpha)} "
                "threshold; roll back."
            )
        if decision == "pass" and truncated:
            return (
                f"{facts}: the budget of {self.max_samples} challenger {self.unit} is spent without evidence that it "
                f"is {effect} (log-likelihood ratio {llr:.2f}, roll back at {self.upper_threshold:.2f}); passing, "
                f"though a drop smaller than {_points(self.min_effect)} points cannot be ruled out."
            )
        if decision == "pass":
            return (
                f"{facts}: the evidence that it is not {effect} crossed the threshold (a real "
                f"{_points(self.min_effect)}-point drop would have been caught {_percent(1 - self.beta)} of the time); "
                "the rollout may proceed."
            )
        if n1 < self.min_samples or n2 < self.min_samples:
            return (
                f"{facts}: waiting for at least {self.min_samples} {self.unit} on each model before deciding; "
                "keep the rollout going."
            )
        return (
            f"{facts}: not enough evidence yet either way (log-likelihood ratio {llr:.2f}; roll back at "
            f"{self.upper_threshold:.2f}, pass at {self.lower_threshold:.2f}); keep collecting {self.unit}."
        )

    def expected_sample_size(self, champion_rate: float) -> WaldExpectation:
        """Wald's expected challenger labels if the champion's rate were known exactly (a lower bound in practice).

        The champion is estimated in practice, which costs more labels (about 13% at a 10% canary, see the module
        docstring), and the last label overshoots the boundary; size ``max_samples`` at a few times this.
        """
        rate = _open_unit("champion_rate", champion_rate, "pass a fraction such as 0.90")
        p0 = 1 - rate if self.higher_is_worse else rate
        return wald_expected_sample_size(p0, p0 - self.min_effect, self.alpha, self.beta)


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


# ------------------------------------------------------------------------------------------ fixed-horizon A/B test


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


def _signed_points(fraction: float) -> str:
    return f"{fraction * 100:+.1f}"


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
    ka, na = _counts("successes_a", successes_a, "n_a", n_a)
    kb, nb = _counts("successes_b", successes_b, "n_b", n_b)
    conf = _confidence(confidence)
    level = _percent(conf)
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
        f"{_signed_points(diff)} points ({level} CI {_signed_points(ci_lower)} to {_signed_points(ci_upper)})"
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


# -------------------------------------------------------------------------------------------------- shadow mode


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
    agreed, compared = _counts("n_agreed", n_agreed, "n_compared", n_compared)
    conf = _confidence(confidence)
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
        f"({rate:.1%}; {_percent(conf)} interval {lower:.1%} to {upper:.1%}).",
    )


__all__ = [
    "ABORT",
    "CONTINUE",
    "DECISIONS",
    "PASS",
    "ABVerdict",
    "AgreementReport",
    "Decision",
    "SequentialErrorRateTest",
    "SequentialQualityTest",
    "SequentialVerdict",
    "WaldExpectation",
    "ab_test",
    "agreement_report",
    "profile_log_likelihood_ratio",
    "wald_expected_sample_size",
    "weighted_log_likelihood_ratio",
    "wilson_interval",
]
