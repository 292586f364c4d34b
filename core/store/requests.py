"""Change requests (intake, priority queue, status) and the registry's alias history, over the project store.

Writes are single transactions, so an interrupted command leaves either the old row or the new one, never half of it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import case, delete, insert, select, update

from core.errors import RequestError
from core.store.schema import alias_events, as_utc, change_requests, get_engine, request_claims, utcnow

RequestKind = Literal["hotfix", "major", "minor"]
RequestStatus = Literal["queued", "running", "succeeded", "failed", "rejected", "crashed", "cancelled"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("hotfix", "major", "minor")  # priority order
REQUEST_STATUSES: tuple[RequestStatus, ...] = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "rejected",
    "crashed",  # its process died while it ran (found by the next command on that host)
    "cancelled",
)
RETRYABLE: tuple[RequestStatus, ...] = ("crashed", "failed", "cancelled")
# A claim from another host whose heartbeat is older than this is a dead claimant's (renewed every quarter of it).
CLAIM_LEASE_SECONDS = 120.0

log = logging.getLogger("mlops.store")


@dataclass(frozen=True)
class ChangeRequest:
    id: int
    kind: RequestKind
    title: str
    reason: str
    overrides: dict[str, Any]
    status: RequestStatus
    status_reason: str
    created_at: datetime
    updated_at: datetime
    submitted_by: str = ""
    model_name: str | None = None
    model_version: str | None = None
    semver: str | None = None
    mlflow_run_id: str | None = None

    @property
    def label(self) -> str:
        return f"#{self.id} {self.kind} '{self.title}'"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data


@dataclass(frozen=True)
class AliasEvent:
    model_name: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    reason: str
    at: datetime = field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


class ProjectStore:
    """Change requests (intake, priority queue, status) and alias history."""

    def __init__(self, url: str, claim_lease_seconds: float = CLAIM_LEASE_SECONDS) -> None:
        self.url = url
        self.engine = get_engine(url)
        self.claim_lease_seconds = claim_lease_seconds

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self.engine.begin() as conn:
            yield conn

    # ---- change requests -------------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        title: str,
        reason: str,
        overrides: dict[str, Any] | None = None,
        submitted_by: str = "",
    ) -> ChangeRequest:
        if kind not in REQUEST_KINDS:
            raise RequestError(f"unknown request kind {kind!r}; use one of: {', '.join(REQUEST_KINDS)}.")
        title = (title or "").strip()
        if not title:
            raise RequestError("a change request needs a title (--title), saying what should change.")
        if len(title) > 200:
            raise RequestError("the title is longer than 200 characters; put the detail in --reason.")
        overrides = overrides or {}
        json.dumps(overrides)  # must be storable as JSON; raises TypeError early otherwise
        now = utcnow()
        with self._tx() as conn:
            result = conn.execute(
                insert(change_requests).values(
                    kind=kind,
                    title=title,
                    reason=reason or "",
                    overrides=overrides,
                    submitted_by=submitted_by,
                    status="queued",
                    status_reason="",
                    created_at=now,
                    updated_at=now,
                )
            )
            new_id = result.inserted_primary_key[0]
        return self.get(new_id)

    def get(self, request_id: int) -> ChangeRequest:
        with self._tx() as conn:
            row = conn.execute(select(change_requests).where(change_requests.c.id == request_id)).first()
        if row is None:
            raise RequestError(f"change request #{request_id} does not exist; `mlops request list` shows them.")
        return _to_request(row)

    def list(self, status: str | None = None) -> list[ChangeRequest]:
        """All requests in priority order: hotfix, major, minor; oldest first within a kind."""
        stmt = select(change_requests).order_by(_priority(), change_requests.c.created_at, change_requests.c.id)
        if status:
            if status not in REQUEST_STATUSES:
                raise RequestError(f"unknown status {status!r}; use one of: {', '.join(REQUEST_STATUSES)}.")
            stmt = stmt.where(change_requests.c.status == status)
        with self._tx() as conn:
            return [_to_request(r) for r in conn.execute(stmt)]

    def claim(self, request_id: int | None = None) -> ChangeRequest | None:
        """Move the next queued request (or the named one) to ``running`` and return it.

        Compare-and-set on the status, so two workers never run the same request, on SQLite and PostgreSQL alike.
        """
        for _ in range(20):
            if request_id is not None:
                candidate = self.get(request_id)
                if candidate.status != "queued":
                    raise RequestError(
                        f"change request #{request_id} is {candidate.status}, not queued; only queued requests "
                        "run. Submit a new request to try again."
                    )
            else:
                queued = self.list(status="queued")
                if not queued:
                    return None
                candidate = queued[0]
            with self._tx() as conn:
                updated = conn.execute(
                    update(change_requests)
                    .where(change_requests.c.id == candidate.id, change_requests.c.status == "queued")
                    .values(status="running", status_reason="", updated_at=utcnow())
                ).rowcount
                if updated == 1:  # who runs it, in the same transaction: a crash cannot leave a claim unowned
                    host, pid, started = this_process()
                    conn.execute(delete(request_claims).where(request_claims.c.request_id == candidate.id))
                    now = utcnow()
                    conn.execute(
                        insert(request_claims).values(
                            request_id=candidate.id,
                            host=host,
                            pid=pid,
                            pid_started=started,
                            claimed_at=now,
                            heartbeat_at=now,
                        )
                    )
            if updated == 1:
                return self.get(candidate.id)
        return None

    def recover_crashed(self) -> list[ChangeRequest]:
        """Mark ``crashed`` every running request whose claimant is gone, with the reason and the command that queues
        it again. A claimant on this host is gone when its process is (killed, crashed, the machine restarted); one on
        another host, whose process cannot be checked from here, when its heartbeat is older than the lease."""
        host = socket.gethostname()
        stmt = (
            select(
                change_requests.c.id,
                request_claims.c.host,
                request_claims.c.pid,
                request_claims.c.pid_started,
                request_claims.c.claimed_at,
                request_claims.c.heartbeat_at,
            )
            .select_from(change_requests.join(request_claims, request_claims.c.request_id == change_requests.c.id))
            .where(change_requests.c.status == "running")
        )
        with self._tx() as conn:
            running = conn.execute(stmt).all()
        now = utcnow()
        crashed = []
        for request_id, claim_host, pid, started, claimed_at, heartbeat_at in running:
            claimed = f"claimed {as_utc(claimed_at):%Y-%m-%d %H:%M:%S} UTC"
            if claim_host == host:
                if process_alive(pid, started):
                    continue
                why = f"the process that ran it (pid {pid} on {host}, {claimed}) is gone"
            else:
                if heartbeat_at is None:  # claimed by a release without heartbeats: nothing to judge it by here
                    continue
                silent = (now - as_utc(heartbeat_at)).total_seconds()
                if silent <= self.claim_lease_seconds:
                    continue
                why = (
                    f"the process that ran it (pid {pid} on {claim_host}, {claimed}) has not renewed its claim for "
                    f"{silent:.0f} s (lease {self.claim_lease_seconds:.0f} s): it died or lost the store"
                )
            reason = (
                f"interrupted: {why}; nothing was registered for it unless the registry says so. Run "
                f"`mlops request retry {request_id}` to queue it again, or `mlops request cancel {request_id}`."
            )
            with self._tx() as conn:
                moved = conn.execute(
                    update(change_requests)
                    .where(change_requests.c.id == request_id, change_requests.c.status == "running")
                    .values(status="crashed", status_reason=reason, updated_at=utcnow())
                ).rowcount
            if moved:
                crashed.append(self.get(request_id))
        return crashed

    def renew_claim(self, request_id: int) -> bool:
        """Renew this process's claim on a running request; False when the claim is no longer this process's
        (recovered as crashed by another host after a long silence, or finished)."""
        host, pid, _ = this_process()
        with self._tx() as conn:
            renewed = conn.execute(
                update(request_claims)
                .where(
                    request_claims.c.request_id == request_id,
                    request_claims.c.host == host,
                    request_claims.c.pid == pid,
                    request_claims.c.request_id.in_(
                        select(change_requests.c.id).where(change_requests.c.status == "running")
                    ),
                )
                .values(heartbeat_at=utcnow())
            ).rowcount
        return renewed == 1

    @contextmanager
    def hold_claim(self, request_id: int) -> Iterator[None]:
        """Renew the claim on ``request_id`` every quarter of the lease while the block runs (a daemon thread), so
        other hosts see its claimant alive; a process that dies stops renewing, and the claim lapses."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.claim_lease_seconds / 4):
                try:
                    if not self.renew_claim(request_id):
                        log.warning("the claim on change request #%s is no longer this process's", request_id)
                        return
                except Exception as err:  # the store is unreachable for now: try again at the next beat
                    log.warning("could not renew the claim on change request #%s: %s", request_id, err)

        beat = threading.Thread(target=renew, name=f"claim-{request_id}", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(timeout=5)

    def retry(self, request_id: int, actor: str) -> ChangeRequest:
        """Queue a crashed, failed or cancelled request again (same id, same overrides)."""
        self.recover_crashed()
        current = self.get(request_id)
        if current.status not in RETRYABLE:
            raise RequestError(
                f"change request #{request_id} is {current.status}; only {', '.join(RETRYABLE)} requests can be "
                "retried." + (" It is running now: let it finish, or cancel it." if current.status == "running" else "")
            )
        return self._move(request_id, current.status, "queued", f"queued again by {actor} (was {current.status})")

    def cancel(self, request_id: int, actor: str) -> ChangeRequest:
        """Take a queued or crashed request off the queue for good; a running one must be stopped first."""
        self.recover_crashed()
        current = self.get(request_id)
        if current.status == "running":
            with self._tx() as conn:
                claim = conn.execute(select(request_claims).where(request_claims.c.request_id == request_id)).first()
            where = f" by pid {claim.pid} on {claim.host}" if claim is not None else ""
            raise RequestError(
                f"change request #{request_id} is being run{where}; stop that process (Ctrl-C) and run "
                f"`mlops request cancel {request_id}` again."
            )
        if current.status not in ("queued", "crashed"):
            raise RequestError(
                f"change request #{request_id} is {current.status}; it is not queued, nothing to cancel."
            )
        return self._move(request_id, current.status, "cancelled", f"cancelled by {actor} (was {current.status})")

    def add_reason(self, request_id: int, text: str) -> ChangeRequest:
        """Append a sentence to the request's status reason (what recovery found), keeping what was there."""
        current = self.get(request_id)
        with self._tx() as conn:
            conn.execute(
                update(change_requests)
                .where(change_requests.c.id == request_id)
                .values(status_reason=f"{current.status_reason} {text}".strip(), updated_at=utcnow())
            )
        return self.get(request_id)

    def _move(self, request_id: int, before: str, after: str, reason: str) -> ChangeRequest:
        with self._tx() as conn:
            moved = conn.execute(
                update(change_requests)
                .where(change_requests.c.id == request_id, change_requests.c.status == before)
                .values(status=after, status_reason=reason, updated_at=utcnow())
            ).rowcount
        if moved != 1:
            raise RequestError(
                f"change request #{request_id} changed while this ran; look again with `mlops request show`."
            )
        return self.get(request_id)

    def finish(
        self,
        request_id: int,
        status: RequestStatus,
        reason: str,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        semver: str | None = None,
        mlflow_run_id: str | None = None,
    ) -> ChangeRequest:
        if status not in ("succeeded", "failed", "rejected"):
            raise RequestError(f"a request cannot finish as {status!r}")
        values: dict[str, Any] = {"status": status, "status_reason": reason, "updated_at": utcnow()}
        for key, value in (
            ("model_name", model_name),
            ("model_version", model_version),
            ("semver", semver),
            ("mlflow_run_id", mlflow_run_id),
        ):
            if value is not None:
                values[key] = value
        with self._tx() as conn:
            conn.execute(update(change_requests).where(change_requests.c.id == request_id).values(**values))
        return self.get(request_id)

    # ---- alias history -----------------------------------------------------------------------------------
    def record_alias_event(self, ev: AliasEvent) -> None:
        with self._tx() as conn:
            conn.execute(insert(alias_events).values(**asdict(ev)))

    def alias_history(self, model_name: str) -> list[AliasEvent]:
        stmt = (
            select(alias_events)
            .where(alias_events.c.model_name == model_name)
            .order_by(alias_events.c.at, alias_events.c.id)
        )
        with self._tx() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [AliasEvent(**{k: (as_utc(v) if k == "at" else v) for k, v in r.items() if k != "id"}) for r in rows]


def this_process() -> tuple[str, int, str]:
    """(host, pid, the pid's start time): what identifies a claimant even after its pid is reused."""
    return socket.gethostname(), os.getpid(), _pid_started(os.getpid()) or "unknown"


def process_alive(pid: int, started: str) -> bool:
    """Whether the process that made a claim on this host still runs (same pid and the same start time)."""
    now = _pid_started(pid)
    return now is not None and (started == "unknown" or now == started)


def _pid_started(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)  # no /proc (macOS): the pid exists, its start time is unknown
        except ProcessLookupError:
            return None
        except PermissionError:
            return "unknown"
        return "unknown"
    fields = stat.rsplit(")", 1)[1].split()
    if fields and fields[0] == "Z":  # a zombie has finished; only its parent has not collected it yet
        return None
    return fields[19] if len(fields) > 19 else "unknown"  # starttime, field 22 of /proc/<pid>/stat


def _priority() -> Any:
    return case({kind: rank for rank, kind in enumerate(REQUEST_KINDS)}, value=change_requests.c.kind, else_=99)


def _to_request(row: Any) -> ChangeRequest:
    m = dict(row._mapping)
    m["created_at"] = as_utc(m["created_at"])
    m["updated_at"] = as_utc(m["updated_at"])
    m["overrides"] = m["overrides"] or {}
    return ChangeRequest(**m)
