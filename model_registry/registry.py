"""The MLflow model registry as this project uses it: semver-tagged versions, aliases with a history, comparison.

MLflow keeps no record of alias moves (who moved ``champion`` from 3 to 4, when, and why); every move made
through this class is written to the project store's ``alias_events`` table, and a move made behind its back
(say in the MLflow UI) shows up in ``history()`` as "moved outside mlops". Aliases are read with
``get_model_version_by_alias`` because ``search_model_versions`` has returned empty alias lists in some MLflow
versions (mlflow issues 9783, 16734).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from core.errors import RegistryError
from core.names import ALIASES, CHALLENGER, CHAMPION, HOLDOUT_PREFIX, PREVIOUS, TAG_SEMVER
from core.store.locks import store_lock
from core.store.requests import AliasEvent, ProjectStore
from model_registry.loading import LoadedVersion, load_version
from model_registry.semver import SemVer


def default_actor() -> str:
    try:
        return f"user:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "user:unknown"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    semver: str | None
    aliases: list[str]
    run_id: str | None
    created_at: datetime
    description: str
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)  # holdout metrics of the version's training run

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "semver": self.semver,
            "aliases": self.aliases,
            "run_id": self.run_id,
            "created_at": self.created_at.isoformat(),
            "description": self.description,
            "tags": self.tags,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class Comparison:
    left: VersionInfo
    right: VersionInfo
    rows: list[tuple[str, float | None, float | None]]  # metric, left, right
    same_data: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "left": self.left.to_json(),
            "right": self.right.to_json(),
            "metrics": [{"metric": k, "left": a, "right": b} for k, a, b in self.rows],
            "same_data": self.same_data,
        }


class ModelRegistry:
    """One registered model in MLflow plus its alias history in the project store."""

    def __init__(
        self,
        model_name: str,
        store: ProjectStore,
        client: MlflowClient | None = None,
        *,
        trust_pickle: bool = False,
    ) -> None:
        self.name = model_name
        self.store = store
        self.client = client or MlflowClient()
        self.trust_pickle = trust_pickle  # MLOPS_TRUST_PICKLE: load versions stored in formats that can run code

    # ---- loading ---------------------------------------------------------------------------------------------
    def load(self, version: str) -> LoadedVersion:
        """Load a version's pipeline through the allowlist (``model_registry.loading``); refuses unsafe formats."""
        return load_version(self.client, self.name, str(version), trust_pickle=self.trust_pickle)

    # ---- reading ---------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        try:
            self.client.get_registered_model(self.name)
            return True
        except MlflowException as err:
            if _not_found(err):
                return False
            raise

    def alias_version(self, alias: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as err:
            if _not_found(err):
                return None
            raise

    def aliases(self) -> dict[str, str]:
        """alias -> version, read from the registered model (reliable across MLflow versions)."""
        if not self.exists():
            return {}
        return {a: str(v) for a, v in self.client.get_registered_model(self.name).aliases.items()}

    def versions(self, with_metrics: bool = True) -> list[VersionInfo]:
        if not self.exists():
            return []
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases().items():
            by_version.setdefault(version, []).append(alias)
        infos = []
        for mv in self.client.search_model_versions(f"name='{self.name}'"):
            infos.append(self._info(mv, sorted(by_version.get(str(mv.version), [])), with_metrics))
        return sorted(infos, key=lambda i: int(i.version))

    def _info(self, mv: ModelVersion, aliases: list[str], with_metrics: bool) -> VersionInfo:
        metrics: dict[str, float] = {}
        if with_metrics and mv.run_id:
            try:
                run = self.client.get_run(mv.run_id)
                metrics = {
                    k[len(HOLDOUT_PREFIX) :]: v for k, v in run.data.metrics.items() if k.startswith(HOLDOUT_PREFIX)
                }
            except MlflowException:
                metrics = {}
        return VersionInfo(
            version=str(mv.version),
            semver=(mv.tags or {}).get(TAG_SEMVER),
            aliases=aliases,
            run_id=mv.run_id,
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
            description=mv.description or "",
            tags=dict(mv.tags or {}),
            metrics=metrics,
        )

    def taken_semvers(self) -> set[str]:
        return {v.semver for v in self.versions(with_metrics=False) if v.semver}

    def semver_of(self, mv: ModelVersion | None) -> str | None:
        return None if mv is None else (mv.tags or {}).get(TAG_SEMVER)

    def resolve(self, ref: str) -> VersionInfo:
        """Find a version by MLflow number (``3``), semver (``1.1.0``) or alias (``champion``)."""
        ref = str(ref).strip()
        versions = self.versions()
        if not versions:
            raise RegistryError(f"model {self.name!r} has no registered versions yet; run the lifecycle first.")
        for info in versions:
            if ref in (info.version, f"v{info.version}") or ref == info.semver or ref in info.aliases:
                return info
        known = ", ".join(f"{i.version} ({i.semver})" for i in versions)
        raise RegistryError(f"model {self.name!r} has no version, semver or alias {ref!r}; known: {known}.")

    def compare(self, left_ref: str, right_ref: str) -> Comparison:
        left, right = self.resolve(left_ref), self.resolve(right_ref)
        names = sorted(set(left.metrics) | set(right.metrics))
        rows = [(n, left.metrics.get(n), right.metrics.get(n)) for n in names]
        fp = "mlops.data_fingerprint"
        same = left.tags.get(fp) is not None and left.tags.get(fp) == right.tags.get(fp)
        return Comparison(left=left, right=right, rows=rows, same_data=same)

    # ---- writing ---------------------------------------------------------------------------------------------
    def register(
        self,
        model_uri: str,
        run_id: str,
        semver: str,
        tags: dict[str, str],
        description: str,
        model_description: str = "",
    ) -> ModelVersion:
        SemVer.parse(semver)
        if not self.exists():
            self.client.create_registered_model(
                self.name, description=model_description or f"Managed by mlops; semver in tag {TAG_SEMVER}."
            )
        if semver in self.taken_semvers():
            raise RegistryError(f"semver {semver} is already used by another version of {self.name!r}.")
        # MLflow 3 logs models as `models:/<model id>`; a tracking server refuses that source without the id
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        return self.client.create_model_version(
            self.name,
            source=model_uri,
            run_id=run_id,
            tags={**tags, TAG_SEMVER: semver},
            description=description,
            model_id=model_id,
        )

    def set_alias(self, alias: str, version: str, *, actor: str, reason: str) -> None:
        _check_alias(alias)
        current = self.alias_version(alias)
        before = None if current is None else str(current.version)
        if before == str(version):
            return
        self.client.set_registered_model_alias(self.name, alias, str(version))
        self.store.record_alias_event(AliasEvent(self.name, alias, before, str(version), actor=actor, reason=reason))

    def remove_alias(self, alias: str, *, actor: str, reason: str) -> None:
        _check_alias(alias)
        current = self.alias_version(alias)
        if current is None:
            return
        self.client.delete_registered_model_alias(self.name, alias)
        self.store.record_alias_event(
            AliasEvent(self.name, alias, str(current.version), None, actor=actor, reason=reason)
        )

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """This model's lock on the project store, held while aliases are read and moved together (registering the
        next version, promoting, rolling back), so two processes never interleave those steps; re-entrant."""
        with store_lock(self.store.engine, f"registry:{self.name}", holder=f"registering or promoting {self.name}"):
            yield

    def promote(self, version: str, *, actor: str, reason: str) -> None:
        """``champion`` -> version, ``previous`` -> the old champion, ``challenger`` removed if it pointed here.

        MLflow has no transactions across alias calls; if a step fails, the aliases already moved are put back
        so the registry never shows a half-done promotion.
        """
        with self.exclusive():
            self._promote(version, actor=actor, reason=reason)

    def _promote(self, version: str, *, actor: str, reason: str) -> None:
        old_champion = self.alias_version(CHAMPION)
        old_previous = self.alias_version(PREVIOUS)
        challenger = self.alias_version(CHALLENGER)
        undo: list[tuple[str, str | None]] = []
        try:
            if old_champion is not None and str(old_champion.version) != str(version):
                undo.append((PREVIOUS, None if old_previous is None else str(old_previous.version)))
                self.set_alias(
                    PREVIOUS, str(old_champion.version), actor=actor, reason=f"replaced as champion: {reason}"
                )
            undo.append((CHAMPION, None if old_champion is None else str(old_champion.version)))
            self.set_alias(CHAMPION, str(version), actor=actor, reason=reason)
            if challenger is not None and str(challenger.version) == str(version):
                undo.append((CHALLENGER, str(challenger.version)))
                self.remove_alias(CHALLENGER, actor=actor, reason=f"promoted to champion: {reason}")
        except Exception as err:
            for alias, target in reversed(undo):
                restore = f"restored after a failed promotion ({err.__class__.__name__})"
                if target is None:
                    self.remove_alias(alias, actor=actor, reason=restore)
                else:
                    self.set_alias(alias, target, actor=actor, reason=restore)
            raise

    def rollback_to_previous(self, *, actor: str, reason: str) -> tuple[str, str]:
        """``champion`` back to ``previous``; ``previous`` removed so a second alarm cannot bounce it back.

        Returns (rolled-back version, restored version). Restores the aliases if a step fails, like ``promote``.
        """
        with self.exclusive():
            return self._rollback_to_previous(actor=actor, reason=reason)

    def _rollback_to_previous(self, *, actor: str, reason: str) -> tuple[str, str]:
        champion, previous = self.alias_version(CHAMPION), self.alias_version(PREVIOUS)
        if champion is None or previous is None:
            raise RegistryError(
                f"model {self.name!r} has no {'champion' if champion is None else 'previous'} "
                "version; there is nothing to roll back to."
            )
        bad, good = str(champion.version), str(previous.version)
        try:
            self.set_alias(CHAMPION, good, actor=actor, reason=f"rolled back from v{bad}: {reason}")
            self.remove_alias(PREVIOUS, actor=actor, reason=f"restored as champion: {reason}")
        except Exception:
            self.set_alias(CHAMPION, bad, actor=actor, reason="restored after a failed rollback")
            self.set_alias(PREVIOUS, good, actor=actor, reason="restored after a failed rollback")
            raise
        self.tag(bad, {"mlops.decision": "rolled back", "mlops.decision_reason": reason[:5000]})
        return bad, good

    def promoted_at(self) -> datetime | None:
        """When the current champion got the alias (from the alias history), if recorded."""
        current = self.aliases().get(CHAMPION)
        for ev in reversed(self.store.alias_history(self.name)):
            if ev.alias == CHAMPION and ev.to_version == current:
                return ev.at
        return None

    def tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, value)

    # ---- history ---------------------------------------------------------------------------------------------
    def history(self) -> list[AliasEvent]:
        """Recorded alias moves, oldest first, plus a note for any alias whose current target was set elsewhere."""
        events = self.store.alias_history(self.name)
        last: dict[str, str | None] = {}
        for ev in events:
            last[ev.alias] = ev.to_version
        now = datetime.now(UTC)
        current = self.aliases()
        for alias in sorted(set(current) | {a for a, v in last.items() if v is not None}):
            if current.get(alias) != last.get(alias):
                events.append(
                    AliasEvent(
                        self.name,
                        alias,
                        last.get(alias),
                        current.get(alias),
                        actor="outside mlops",
                        reason="alias moved outside mlops (e.g. in the MLflow UI); not recorded at the time",
                        at=now,
                    )
                )
        return events


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise RegistryError(f"alias {alias!r} is not managed here; use one of {', '.join(ALIASES)}.")


def _not_found(err: MlflowException) -> bool:
    return err.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(err).lower()
