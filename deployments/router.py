"""Traffic routing and failure isolation, as plain objects the gateway composes (no I/O, easy to test).

- ``choose_variant``: weighted split; with a routing key the same caller always lands on the same variant for a
  given rollout (sticky A/B), without one each request is drawn independently.
- ``CircuitBreaker``: after ``threshold`` consecutive failures a variant gets no traffic for ``cooldown`` seconds,
  then one trial request decides whether it is back (half-open). Exceptions are failures; a deadline miss is one
  only when it is the model's fault (``InTimeAnswers.answered_within``), else it is counted as excused and leaves
  the count of consecutive failures as it was.
- ``InTimeAnswers``: a variant's recent answers that met the deadline, to tell a model's deadline miss from the
  host's stall.

Why a deadline miss needs evidence before it opens a breaker: a host stall (other jobs on the CPUs, a garbage
collection) makes every request in flight late together, and an open breaker sends all traffic to the other variant
for ``cooldown`` seconds, which also blinds the rollout's latency guard (no pairs). On a busy host five such misses
in a row opened the champion's breaker for 40 s. So a miss is charged to the variant only when the other variant
answered a request from start to finish inside the missed request's own waiting window and within the deadline:
the host could serve a request at that moment, this model could not. A stall that covers the window leaves no room
for such an answer; a hanging model next to a healthy one sees the healthy one answer in its window at any traffic
that keeps both busy. With no other answer in the window (sparse traffic, or a variant at 100%) the miss is excused:
the breaker acts on evidence, and the rollout's error guard still sees every miss.
"""

from __future__ import annotations

import collections
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field

CHAMPION = "champion"
CHALLENGER = "challenger"


def bucket(routing_key: str, salt: str) -> float:
    """A stable position in [0, 100) for a caller; the salt (rollout id) reshuffles callers between rollouts."""
    digest = hashlib.blake2b(f"{salt}:{routing_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


def choose_variant(weight: float, routing_key: str | None, salt: str, rng: random.Random | None = None) -> str:
    """``weight`` is the challenger's percent of traffic."""
    if weight <= 0:
        return CHAMPION
    if weight >= 100:
        return CHALLENGER
    position = bucket(routing_key, salt) if routing_key else (rng or random).random() * 100.0
    return CHALLENGER if position < weight else CHAMPION


class InTimeAnswers:
    """A variant's most recent answers that met the deadline, as (start, end) on one monotonic clock, appended in
    order of completion (``keep`` of them: enough for a deadline's worth of traffic at thousands of requests/s)."""

    def __init__(self, keep: int = 4096) -> None:
        self._spans: collections.deque[tuple[float, float]] = collections.deque(maxlen=keep)

    def add(self, start: float, end: float) -> None:
        self._spans.append((start, end))

    def answered_within(self, start: float, end: float) -> bool:
        """Whether one of these answers started at or after ``start`` and ended at or before ``end``."""
        for s, e in reversed(self._spans):
            if e > end:
                continue
            if e < start:
                return False  # completed earlier still: it cannot have started inside the window
            if s >= start:
                return True
        return False


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
    charged_misses: int = 0  # deadline misses that were the model's fault (counted as failures)
    excused_misses: int = 0  # deadline misses the host's stall explains (not counted)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self, now: float | None = None) -> bool:
        with self._lock:
            if self.opened_at is None:
                return True
            now = time.monotonic() if now is None else now
            if now - self.opened_at >= self.cooldown and not self.trial_in_flight:
                self.trial_in_flight = True  # half-open: exactly one request tests the water
                return True
            return False

    def available(self, now: float | None = None) -> bool:
        """Whether ``allow`` could let a request through now (no side effect: a half-open trial is not taken)."""
        with self._lock:
            if self.opened_at is None:
                return True
            now = time.monotonic() if now is None else now
            return now - self.opened_at >= self.cooldown and not self.trial_in_flight

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at, self.trial_in_flight = 0, None, False

    def failure(self, now: float | None = None) -> None:
        with self._lock:
            self.failures += 1
            if self.trial_in_flight or self.failures >= self.threshold:
                self.opened_at = time.monotonic() if now is None else now
            self.trial_in_flight = False

    def deadline_missed(self, models_fault: bool, now: float | None = None) -> None:
        """A deadline miss: a failure when it was the model's fault; else excused, with no effect on the state (it
        neither opens the circuit nor resets the count of consecutive failures, and a half-open trial is over)."""
        if models_fault:
            with self._lock:
                self.charged_misses += 1
            self.failure(now)
            return
        with self._lock:
            self.excused_misses += 1
            self.trial_in_flight = False  # the trial gave no verdict: the next request after it may try again

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "consecutive_failures": self.failures,
            "deadline_misses_charged": self.charged_misses,
            "deadline_misses_excused": self.excused_misses,
        }

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.trial_in_flight else "open"
