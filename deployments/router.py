"""Traffic routing and failure isolation, as plain objects the gateway composes (no I/O, easy to test).

- ``choose_variant``: weighted split; with a routing key the same caller always lands on the same variant for a
  given rollout (sticky A/B), without one each request is drawn independently.
- ``CircuitBreaker``: after ``threshold`` consecutive failures a variant gets no traffic for ``cooldown`` seconds,
  then one trial request decides whether it is back (half-open).
"""

from __future__ import annotations

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


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
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

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.trial_in_flight else "open"
