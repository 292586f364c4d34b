"""The latency guard: is the challenger slower than the champion by more than the tolerated effect, judged on
latencies measured under the same conditions, with a false-rollback rate bounded under continuous monitoring?

Why not compare percentiles. A host's load changes from second to second (other jobs, the rollout flow's own work,
garbage collection). A p95 ratio of two small samples taken at different moments compares the moments as much as
the models, and a canary's challenger has ten times fewer answers than the champion, so its p95 is the noisier.

Pairs. Each challenger answer is paired with the champion answer that *started* nearest before or after it, within
``window_seconds`` (a second by default); unpaired answers are left out. The router assigns requests at random, so
under "as fast" the two members of a pair are exchangeable: which one is the challenger's is a coin flip, whatever
the load at that moment. In shadow mode the pair is the champion's answer and the challenger's to the same request.
Start times (completion time minus latency) are used so that a slow answer does not change its own pairing.

The test. A pair counts as *too slow* when the challenger took longer than ``max_ratio`` times the champion's
latency and ``min_increase_ms`` more. The null hypothesis is that a challenger answer is too slow with probability
at most 1/2: a challenger exactly at the tolerated limit (its latency distributed as ``max(ratio * x, x + ms)`` of
the champion's ``x``) is too slow in exactly half of the pairs, one within the limit in fewer, an equally fast one
in far fewer. The statistic is a mixture likelihood ratio (the alternative's probability averaged uniformly over
(1/2, 1]), a non-negative supermartingale under the null, so by Ville's inequality the probability that it *ever*
reaches ``1/alpha``, however often it is looked at, is at most ``alpha``. It needs no assumption on the latency
distribution (heavy tails, bursts of load shared by both variants) beyond the pairs being exchangeable.

Everything is a function of two counts (pairs, too-slow pairs), rebuilt deterministically from the prediction log,
so a restarted flow decides the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from deployments.statistics.arguments import check_counts, check_open_unit

MIN_PAIRS = 20
WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class LatencyPairs:
    """Same-conditions pairs of challenger and champion latencies (milliseconds)."""

    challenger_ms: npt.NDArray[np.float64]
    champion_ms: npt.NDArray[np.float64]

    @property
    def n(self) -> int:
        return int(self.challenger_ms.size)

    def too_slow(self, max_ratio: float, min_increase_ms: float) -> int:
        limit = np.maximum(self.champion_ms * max_ratio, self.champion_ms + min_increase_ms)
        return int(np.count_nonzero(self.challenger_ms > limit))

    def median_ratio(self) -> float | None:
        if not self.n:
            return None
        return float(np.median(self.challenger_ms / np.maximum(self.champion_ms, 1e-3)))


def pair_by_start_time(
    start_s: Sequence[float] | npt.NDArray[np.float64],
    latency_ms: Sequence[float] | npt.NDArray[np.float64],
    is_challenger: Sequence[bool] | npt.NDArray[np.bool_],
    window_seconds: float = WINDOW_SECONDS,
) -> LatencyPairs:
    """Pair each challenger answer, in order of start, with the unpaired champion answer whose start is nearest to
    its own (before or after it), at most ``window_seconds`` away; answers left without a partner are not used.
    Deterministic, and blind to the latencies themselves: which member of a pair started first is a matter of
    distance, not of the variant, so a trend in load within a pair favours neither."""
    start = np.asarray(start_s, dtype=np.float64)
    latency = np.asarray(latency_ms, dtype=np.float64)
    chall = np.asarray(is_challenger, dtype=bool)
    c_idx = np.flatnonzero(chall)
    a_idx = np.flatnonzero(~chall)
    c_idx = c_idx[np.argsort(start[c_idx], kind="stable")]
    a_idx = a_idx[np.argsort(start[a_idx], kind="stable")]
    a_start = start[a_idx].tolist()
    m = len(a_start)
    # skip pointers over used champion answers (union-find with path halving): the nearest unused one to the left
    # of i is find(left, i), to the right find(right, i); -1 and m are sentinels
    left = list(range(m))
    right = list(range(m))

    def find(ptr: list[int], i: int) -> int:
        root = i
        while 0 <= root < m and ptr[root] != root:
            root = ptr[root]
        while 0 <= i < m and ptr[i] != i:  # path compression
            ptr[i], i = root, ptr[i]
        return root

    pairs_c: list[float] = []
    pairs_a: list[float] = []
    lat = latency.tolist()
    a_list = a_idx.tolist()
    c_list = c_idx.tolist()
    c_start = start[c_idx].tolist()
    positions = np.searchsorted(start[a_idx], start[c_idx], side="left").tolist()
    for k, pos in enumerate(positions):
        t = c_start[k]
        lo = find(left, pos - 1) if pos > 0 else -1
        hi = find(right, pos) if pos < m else m
        best, gap = -1, window_seconds
        if lo >= 0 and t - a_start[lo] <= gap:
            best, gap = lo, t - a_start[lo]
        if hi < m and a_start[hi] - t <= window_seconds and (best < 0 or a_start[hi] - t < gap):
            best = hi
        if best >= 0:
            left[best] = best - 1  # used: point past it
            right[best] = best + 1
            pairs_c.append(lat[c_list[k]])
            pairs_a.append(lat[a_list[best]])
    return LatencyPairs(np.asarray(pairs_c, dtype=np.float64), np.asarray(pairs_a, dtype=np.float64))


def pair_by_request(
    request_ids: Sequence[str], latency_ms: Sequence[float], is_challenger: Sequence[bool]
) -> LatencyPairs:
    """Shadow mode: the champion's and the challenger's latency for the same request."""
    champion: dict[str, float] = {}
    challenger: dict[str, float] = {}
    for rid, ms, chall in zip(request_ids, latency_ms, is_challenger, strict=True):
        (challenger if chall else champion).setdefault(rid, float(ms))
    common = [rid for rid in challenger if rid in champion]
    return LatencyPairs(
        np.asarray([challenger[r] for r in common], dtype=np.float64),
        np.asarray([champion[r] for r in common], dtype=np.float64),
    )


def log_mixture_ratio(too_slow: int | npt.ArrayLike, pairs: int | npt.ArrayLike) -> npt.NDArray[np.float64]:
    """log of ``integral_{1/2}^{1} (q/(1/2))**s ((1-q)/(1/2))**(n-s) 2 dq``: the evidence that more than half of the
    pairs are too slow (vectorised)."""
    s = np.asarray(too_slow, dtype=np.float64)
    n = np.asarray(pairs, dtype=np.float64)
    a, b = s + 1.0, n - s + 1.0
    with np.errstate(divide="ignore"):
        # P(Beta(a, b) > 1/2) = I_{1/2}(b, a); logsf keeps precision when it is tiny
        tail = stats.beta.logsf(0.5, a, b)
    out: npt.NDArray[np.float64] = (n + 1.0) * math.log(2.0) + special.betaln(a, b) + tail
    return out


@dataclass(frozen=True)
class LatencyVerdict:
    decision: str  # "abort" or "continue": the guard watches the whole rollout and never "passes"
    pairs: int
    too_slow: int
    log_evidence: float
    threshold: float  # abort at or above (log(1/alpha))
    median_ratio: float | None
    challenger_median_ms: float | None
    champion_median_ms: float | None
    max_ratio: float
    min_increase_ms: float
    explanation: str
    method: str = (
        "same-conditions pairs (nearest start within 1 s; same request in shadow mode); mixture sequential test "
        "that more than half of the challenger's answers exceed the tolerance, always valid (Ville)"
    )

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "pairs": self.pairs,
            "too_slow": self.too_slow,
            "log_evidence": self.log_evidence,
            "threshold": self.threshold,
            "median_ratio": self.median_ratio,
            "challenger_median_ms": self.challenger_median_ms,
            "champion_median_ms": self.champion_median_ms,
            "max_ratio": self.max_ratio,
            "min_increase_ms": self.min_increase_ms,
            "explanation": self.explanation,
            "method": self.method,
        }


@dataclass(frozen=True)
class LatencyGuard:
    """Roll back once the evidence that most challenger answers are slower than ``max_ratio`` x and
    ``min_increase_ms`` more than their same-conditions champion pair reaches ``1/alpha``."""

    alpha: float = 0.05
    max_ratio: float = 1.5
    min_increase_ms: float = 2.0
    min_pairs: int = MIN_PAIRS

    def __post_init__(self) -> None:
        check_open_unit("alpha", self.alpha, "it is the largest acceptable false-rollback probability, e.g. 0.05")
        if not self.max_ratio >= 1.0:
            raise ValueError(f"max_ratio must be >= 1, got {self.max_ratio!r}; use for example 1.5")
        if self.min_increase_ms < 0:
            raise ValueError(f"min_increase_ms must be >= 0, got {self.min_increase_ms!r}; use for example 2")

    @property
    def threshold(self) -> float:
        return math.log(1.0 / self.alpha)

    def decision_codes(self, too_slow: npt.ArrayLike, pairs: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Vectorised: True where the guard rolls back (for simulations)."""
        n = np.asarray(pairs, dtype=np.float64)
        out: npt.NDArray[np.bool_] = (n >= self.min_pairs) & (log_mixture_ratio(too_slow, pairs) >= self.threshold)
        return out

    def evaluate(self, pairs: LatencyPairs) -> LatencyVerdict:
        slow, n = check_counts("too_slow", pairs.too_slow(self.max_ratio, self.min_increase_ms), "pairs", pairs.n)
        evidence = float(log_mixture_ratio(slow, n)) if n else 0.0
        abort = n >= self.min_pairs and evidence >= self.threshold
        ratio = pairs.median_ratio()
        med_c = float(np.median(pairs.challenger_ms)) if n else None
        med_a = float(np.median(pairs.champion_ms)) if n else None
        limit = f"{self.max_ratio:g}x and {self.min_increase_ms:g} ms more than"
        if not n:
            facts = "No same-conditions pairs of challenger and champion answers yet"
        else:
            facts = (
                f"{slow} of {n} challenger answers ({slow / n:.0%}) took longer than {limit} the champion answer "
                f"that started nearest to them (medians {med_c:.2f} vs {med_a:.2f} ms, median ratio {ratio:.2f})"
            )
        if abort:
            text = (
                f"{facts}: the evidence that most of its answers are that slow is {math.exp(evidence):.3g}, past "
                f"{1 / self.alpha:.3g} (1/alpha; at most {self.alpha:g} of challengers within the limit are ever "
                "rolled back, however often this is checked); roll back."
            )
        elif n < self.min_pairs:
            text = f"{facts}: waiting for {self.min_pairs} pairs before judging latency."
        else:
            text = (
                f"{facts}: evidence {math.exp(min(evidence, 700.0)):.3g}, roll back at {1 / self.alpha:.3g}; "
                "latency is acceptable so far."
            )
        return LatencyVerdict(
            decision="abort" if abort else "continue",
            pairs=n,
            too_slow=slow,
            log_evidence=evidence,
            threshold=self.threshold,
            median_ratio=ratio,
            challenger_median_ms=med_c,
            champion_median_ms=med_a,
            max_ratio=self.max_ratio,
            min_increase_ms=self.min_increase_ms,
            explanation=text,
        )
