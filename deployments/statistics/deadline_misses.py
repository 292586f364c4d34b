"""Deadline misses as the error guard counts them: the model's own failures, not the host's stalls.

A host stall (another job takes the CPUs, the garbage collector, the rollout flow's own work) makes every request in
flight late together: the prediction log of a busy host shows 5-8 misses of both variants within 100 ms. Counted one
by one, as the error guard's sequential test assumes its events are (independent), such a burst is strong evidence
of nothing: at a 10% canary, a stall that lands on the challenger's few requests in flight looks like a difference
in failure rates, and two equal challengers out of twenty were rolled back that way on a busy host.

So, from each variant's misses (when the request started, when it was given up):

- *shared*: a miss whose waiting window (start to give-up) overlaps a miss of the other variant. Both variants were
  stuck at the same moment, which is the host's doing, not a model's; shared misses are left out of the comparison
  (from both the failures and the requests of their variant);
- *own*: the rest. Own misses of one variant given up within ``burst_seconds`` of the first of them form one episode
  (one stall, or one slow batch: not independent events), counted as one failure; the other misses of the episode
  are left out like shared ones.

A model that hangs or is too slow misses while the other variant answers in time, so its misses are its own, and
at most ``burst_seconds`` apart ones are merged: at 15 requests/s to a hanging challenger that is still one failure
per one or two of its requests. Exceptions and invalid answers are not deadline misses and are counted one by one
by the caller. Pure and deterministic: a restarted flow counts the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

BURST_SECONDS = 0.1


@dataclass(frozen=True)
class MissCounts:
    """One variant's deadline misses, as the error guard counts them."""

    total: int = 0  # misses recorded
    shared: int = 0  # left out: the other variant missed at the same moment (the host stalled)
    episodes: int = 0  # own episodes, each counted as one failure

    @property
    def left_out(self) -> int:
        """Misses not counted as failures (shared ones, and all but one of each own episode)."""
        return self.total - self.episodes

    def describe(self) -> str:
        if not self.total:
            return "no deadline misses"
        return (
            f"{self.total} deadline misses: {self.shared} at the same moment as the other variant's (the host's "
            f"stalls, not counted), {self.total - self.shared} of its own in {self.episodes} episodes (each counted "
            "once)"
        )

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "shared": self.shared, "episodes": self.episodes, "counted": self.episodes}


def _overlaps_other(
    start: npt.NDArray[np.float64],
    end: npt.NDArray[np.float64],
    o_start: npt.NDArray[np.float64],
    o_end: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """For each window [start, end]: does any window of the other set overlap it?"""
    if not o_start.size:
        return np.zeros(start.size, dtype=bool)
    order = np.argsort(o_start, kind="stable")
    o_start, latest_end = o_start[order], np.maximum.accumulate(o_end[order])
    before = np.searchsorted(o_start, end, side="right")  # other windows that started no later than this one ended
    out: npt.NDArray[np.bool_] = np.zeros(start.size, dtype=bool)
    some = before > 0
    out[some] = latest_end[before[some] - 1] >= start[some]
    return out


def _episodes(end: npt.NDArray[np.float64], burst_seconds: float) -> int:
    count, first = 0, -np.inf
    for t in np.sort(end).tolist():
        if t - first > burst_seconds:
            count, first = count + 1, t
    return count


def classify_misses(
    start_s: Sequence[float] | npt.NDArray[np.float64],
    end_s: Sequence[float] | npt.NDArray[np.float64],
    is_challenger: Sequence[bool] | npt.NDArray[np.bool_],
    burst_seconds: float = BURST_SECONDS,
) -> dict[str, MissCounts]:
    """Per variant ("champion", "challenger"): misses recorded, shared with the other variant, own episodes.

    ``start_s`` is when each missed request started and ``end_s`` when it was given up (seconds, one clock)."""
    start = np.asarray(start_s, dtype=np.float64)
    end = np.asarray(end_s, dtype=np.float64)
    chall = np.asarray(is_challenger, dtype=bool)
    if not start.size == end.size == chall.size:
        raise ValueError("start_s, end_s and is_challenger must have one entry per deadline miss")
    if burst_seconds < 0:
        raise ValueError(f"burst_seconds must be >= 0, got {burst_seconds!r}; use for example 0.1")
    out: dict[str, MissCounts] = {}
    for name, mine in (("challenger", chall), ("champion", ~chall)):
        shared = _overlaps_other(start[mine], end[mine], start[~mine], end[~mine])
        own_end = end[mine][~shared]
        out[name] = MissCounts(int(mine.sum()), int(shared.sum()), _episodes(own_end, burst_seconds))
    return out
