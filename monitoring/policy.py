"""The closed loop's policies: may an automatic retrain run now, and may a degraded champion be rolled back?
Pure functions of what the stores hold, unit-tested without a server; the ``retrain`` and ``rollback`` flows act on
their answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from core.store.requests import ChangeRequest
from core.store.rollouts import Rollout

RETRAIN_ACTOR = "retrain flow"  # ``submitted_by`` of the requests automatic retraining files


@dataclass(frozen=True)
class RetrainDecision:
    action: Literal["retrain", "skip", "pause"]
    reason: str


def retrain_decision(requests: list[ChangeRequest], now: datetime, cooldown_minutes: float) -> RetrainDecision:
    """Storm and loop guards: at most one automatic retrain per cooldown, and after two automatic retrains in a row
    that did not succeed, stop and ask for a person. ``requests`` are every request (any submitter)."""
    mine = sorted((r for r in requests if r.submitted_by == RETRAIN_ACTOR), key=lambda r: r.created_at)
    if mine and now - mine[-1].created_at < timedelta(minutes=cooldown_minutes):
        return RetrainDecision(
            "skip",
            f"skipped: request #{mine[-1].id} was filed by an automatic retrain at {mine[-1].created_at:%H:%M:%S} "
            f"UTC, within the {cooldown_minutes:g}-minute cooldown",
        )
    finished = [r for r in mine if r.status not in ("queued", "running")]
    if len(finished) >= 2 and all(r.status != "succeeded" for r in finished[-2:]):
        return RetrainDecision(
            "pause",
            f"paused: the last two automatic retrains (#{finished[-2].id}, #{finished[-1].id}) did not succeed "
            f"({finished[-1].status_reason[:200]}); a person must look. Submit a request by hand "
            "(`mlops request submit`) to resume.",
        )
    return RetrainDecision("retrain", "")


@dataclass
class RetrainResult:
    """What one ``retrain`` run did; also the flow's return value."""

    status: str  # skipped | paused | failed | registered | rejected | idle
    reason: str = ""
    request_id: int | None = None
    decision: str = ""
    rollout: Rollout | None = None
    data: str = ""  # what the retrain trained (or would have trained) on, with row counts

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "request_id": self.request_id,
            "decision": self.decision,
            "data": self.data,
            "rollout": None if self.rollout is None else self.rollout.to_json(),
        }


@dataclass(frozen=True)
class RollbackEligibility:
    eligible: bool
    reason: str


def rollback_eligibility(
    previous_version: str | None, promoted_at: datetime | None, now: datetime, window_hours: float
) -> RollbackEligibility:
    """Roll back only a champion promoted within the window, and only to a ``previous`` that exists: degradation
    of an established champion is a matter for retraining."""
    if previous_version is None:
        return RollbackEligibility(False, "no previous version to roll back to")
    if promoted_at is None or (now - promoted_at).total_seconds() > window_hours * 3600:
        return RollbackEligibility(
            False,
            f"the champion was not promoted within the last {window_hours:g} h; "
            "degradation of an established champion calls for retraining, not a rollback",
        )
    return RollbackEligibility(
        True, f"champion promoted within the last {window_hours:g} h and v{previous_version} is there to return to"
    )


@dataclass
class RollbackResult:
    """What one ``rollback`` run did; also the flow's return value."""

    status: Literal["skipped", "rolled back"]
    reason: str
    from_version: str | None = None
    to_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "from_version": self.from_version,
            "to_version": self.to_version,
        }
