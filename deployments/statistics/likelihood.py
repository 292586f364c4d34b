"""The sequential test's statistic: Wald's weighted log-likelihood ratio of "the challenger is worse by
``min_effect``" against "it is as good", averaged over the champion's unknown rate (Wald 1947), for arrays of
cumulative counts; the profile ratio it improves on; and Wald's expected sample size. Why this statistic, and how it
behaves, is in ``docs/statistics.md``."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special

from deployments.statistics.arguments import check_array_counts, check_open_unit

_BISECTION_STEPS = 50  # the bracket is at most 1 wide: 2**-50 ~ 1e-15, below float resolution near 1


_WINDOW_STEPS = 10  # bisection on log10(distance) over 20 decades: 2**-10 of that is a factor 1.05


_WINDOW_DROP = 40.0  # the integrand beyond the window is below e**-40 of its peak


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_CHUNK = 1 << 15  # elements per quadrature batch: 32 nodes x 32768 x 8 bytes = 8 MB per temporary


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
    p0 = check_open_unit("p0", p0, "pass the champion's accuracy as a fraction, e.g. 0.90")
    p1 = check_open_unit("p1", p1, "pass the accuracy under the alternative as a fraction, e.g. 0.85")
    a = check_open_unit("alpha", alpha, "use for example 0.05")
    b = check_open_unit("beta", beta, "use for example 0.20")
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
    s1, n1 = check_array_counts("challenger_good", challenger_good, "challenger_n", challenger_n)
    s2, n2 = check_array_counts("champion_good", champion_good, "champion_n", champion_n)
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
    delta = check_open_unit("min_effect", min_effect, "pass the drop worth detecting as a fraction, e.g. 0.05")
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
    delta = check_open_unit("min_effect", min_effect, "pass the drop worth detecting as a fraction, e.g. 0.05")
    s1, n1, s2, n2 = _broadcast_counts(challenger_good, challenger_n, champion_good, champion_n)
    f1, f2 = n1 - s1, n2 - s2
    s, f = s1 + s2, f1 + f2
    pooled = np.divide(s, s + f, out=np.full(s.shape, 0.5), where=s + f > 0)
    ll0 = special.xlogy(s, pooled) + special.xlogy(f, 1 - pooled)
    ll1 = _h1_log_likelihood(s1, f1, s2, f2, _h1_mode(s1, f1, s2, f2, delta), delta)
    return np.asarray(ll1 - ll0, dtype=np.float64)
