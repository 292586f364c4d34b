"""Semantic versions for registered models, derived from the change request's kind.

MLflow numbers versions 1, 2, 3...; people reason in semver: a hotfix bumps the patch, a minor request the minor,
a major request the major, counted from the current champion. The first model is 1.0.0. A semver already used
(for example by a challenger that was never promoted) is skipped, so every version has its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import RegistryError

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
FIRST = "1.0.0"


@dataclass(frozen=True, order=True)
class SemVer:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        match = _SEMVER.match(text.strip())
        if not match:
            raise RegistryError(f"{text!r} is not a semantic version like 1.2.3")
        return cls(*(int(g) for g in match.groups()))

    def bump(self, kind: str) -> SemVer:
        if kind == "major":
            return SemVer(self.major + 1, 0, 0)
        if kind == "minor":
            return SemVer(self.major, self.minor + 1, 0)
        if kind == "hotfix":
            return SemVer(self.major, self.minor, self.patch + 1)
        raise RegistryError(f"unknown request kind {kind!r}; use hotfix, minor or major")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def next_semver(kind: str, champion: str | None, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The semver a new model of request ``kind`` gets, given the champion's semver and those already used."""
    used = {SemVer.parse(t) for t in taken}
    if champion is None:
        candidate = SemVer.parse(FIRST)
        while candidate in used:
            candidate = candidate.bump("minor")
        return str(candidate)
    candidate = SemVer.parse(champion).bump(kind)
    while candidate in used:
        candidate = candidate.bump(kind)
    return str(candidate)
