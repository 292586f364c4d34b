"""Persisted rollout state: which challenger is exposed to how much traffic, and the log of decisions so far.

The rollout flow writes it; every gateway replica reads it about once a second to route. A restarted gateway or
flow resumes from the row. Anything unreadable fails safe: the gateway routes 100 percent to the champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from core.errors import MlopsError
from core.store.schema import LIVE_ROLLOUT_STATUSES as LIVE
from core.store.schema import as_utc, get_engine, rollouts, utcnow

RolloutStatus = Literal["running", "paused", "promoted", "aborted"]


@dataclass(frozen=True)
class Rollout:
    id: int
    model_name: str
    strategy: str
    champion_version: str
    challenger_version: str
    status: str
    step_index: int
    weight: float
    started_at: datetime
    step_started_at: datetime
    updated_at: datetime
    reason: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    challenger_request_id: int | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def served_weight(self) -> float:
        """Percent of answers the challenger gives right now: none in shadow mode or while paused (fail safe)."""
        if self.status != "running" or self.strategy == "shadow":
            return 0.0
        return self.weight

    @property
    def shadow(self) -> bool:
        return self.status == "running" and self.strategy == "shadow"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_name": self.model_name,
            "strategy": self.strategy,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "status": self.status,
            "step_index": self.step_index,
            "weight": self.weight,
            "served_weight": self.served_weight,
            "started_at": self.started_at.isoformat(),
            "step_started_at": self.step_started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "reason": self.reason,
            "steps": self.steps,
            "policy": self.policy,
            "challenger_request_id": self.challenger_request_id,
        }


def _row(r: Any) -> Rollout:
    m = dict(r._mapping)
    for key in ("started_at", "step_started_at", "updated_at"):
        m[key] = as_utc(m[key])
    m["steps"] = list(m.get("steps") or [])
    m["policy"] = dict(m.get("policy") or {})
    return Rollout(**m)


class RolloutStore:
    def __init__(self, store_url: str) -> None:
        self.engine = get_engine(store_url)

    def start(
        self,
        model_name: str,
        strategy: str,
        champion_version: str,
        challenger_version: str,
        weight: float,
        policy: dict[str, Any],
        reason: str,
        challenger_request_id: int | None = None,
    ) -> Rollout:
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                live = conn.execute(
                    select(rollouts.c.id).where(rollouts.c.model_name == model_name, rollouts.c.status.in_(LIVE))
                ).first()
                if live is not None:
                    raise _already_live(model_name, live[0])
                new_id = conn.execute(
                    insert(rollouts).values(
                        model_name=model_name,
                        strategy=strategy,
                        champion_version=champion_version,
                        challenger_version=challenger_version,
                        status="running",
                        step_index=0,
                        weight=weight,
                        started_at=now,
                        step_started_at=now,
                        updated_at=now,
                        reason=reason,
                        steps=[],
                        policy=policy,
                        challenger_request_id=challenger_request_id,
                    )
                ).inserted_primary_key[0]
        except IntegrityError:  # another start won the race between the check and the insert (unique index)
            winner = self.live(model_name)
            raise _already_live(model_name, winner.id if winner else "?") from None
        return self.get(new_id)

    def get(self, rollout_id: int) -> Rollout:
        with self.engine.connect() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
        if row is None:
            raise MlopsError(f"rollout #{rollout_id} does not exist; `mlops rollout status` lists the live one.")
        return _row(row)

    def live(self, model_name: str) -> Rollout | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(rollouts)
                .where(rollouts.c.model_name == model_name, rollouts.c.status.in_(LIVE))
                .order_by(rollouts.c.id.desc())
            ).first()
        return None if row is None else _row(row)

    def latest(self, model_name: str) -> Rollout | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(rollouts).where(rollouts.c.model_name == model_name).order_by(rollouts.c.id.desc())
            ).first()
        return None if row is None else _row(row)

    def for_version(self, model_name: str, version: str) -> list[Rollout]:
        """Every rollout of ``model_name`` in which ``version`` was the challenger or the champion, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(rollouts)
                .where(
                    rollouts.c.model_name == model_name,
                    (rollouts.c.challenger_version == version) | (rollouts.c.champion_version == version),
                )
                .order_by(rollouts.c.id)
            ).all()
        return [_row(r) for r in rows]

    def update(self, rollout_id: int, *, log_entry: dict[str, Any] | None = None, **values: Any) -> Rollout:
        """Change fields and optionally append one entry to the decision log, in one transaction."""
        with self.engine.begin() as conn:
            current = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
            if current is None:
                raise MlopsError(f"rollout #{rollout_id} does not exist.")
            if log_entry is not None:
                values["steps"] = [*list(current._mapping["steps"] or []), log_entry]
            values["updated_at"] = utcnow()
            conn.execute(update(rollouts).where(rollouts.c.id == rollout_id).values(**values))
        return self.get(rollout_id)


def _already_live(model_name: str, rollout_id: int | str) -> MlopsError:
    return MlopsError(
        f"model {model_name!r} already has rollout #{rollout_id} in progress; finish it with "
        "`mlops rollout approve` or `mlops rollout abort` first."
    )
