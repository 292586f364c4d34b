"""Building (and pushing) the project's image with the Docker SDK: ``mlops image build``.

The image is ``docker/Dockerfile`` built from the repository root, labelled with the code version it was built
from and the champion it was built for, so ``docker inspect`` answers "what is running?". Every failure says what
failed and what to run: no engine reachable, a build step that failed (the step's own output), a daemon that went
away mid-build, a registry that refused the push. The legacy builder is asked to remove intermediate containers
even when a step fails, so a failed build leaves nothing running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import MlopsError

LABEL_CODE_VERSION = "org.opencontainers.image.revision"
LABEL_CHAMPION = "io.mlops.champion"
LABEL_MODEL = "io.mlops.model"


class ImageError(MlopsError):
    category = "infrastructure"


def docker_client() -> Any:
    """A client for the local engine, or an error that says how to get one."""
    from docker.errors import DockerException

    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except DockerException as err:
        raise ImageError(
            f"no Docker engine is reachable ({str(err)[:200]}); start Docker (or run ../shared/tools/container-engine "
            "on a machine without one) and try again."
        ) from None
    return client


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    size_bytes: int
    labels: dict[str, str]


def build_image(
    root: Path,
    tag: str,
    labels: dict[str, str],
    progress: Callable[[str], None] = lambda _line: None,
    network_mode: str | None = "host",
) -> BuiltImage:
    """Build ``docker/Dockerfile`` under ``root`` as ``tag``, passing each line of build output to ``progress``."""
    from docker.errors import APIError, DockerException

    client = docker_client()
    try:
        stream = client.api.build(
            path=str(root),
            dockerfile="docker/Dockerfile",
            tag=tag,
            labels=labels,
            network_mode=network_mode,  # this machine's builds reach the package index only through the host
            rm=True,
            forcerm=True,  # remove intermediate containers even when a step fails
            decode=True,
        )
        _follow(stream, progress, f"building {tag}")
        image = client.images.get(tag)
    except (APIError, DockerException) as err:
        raise ImageError(
            f"building {tag} failed: the Docker engine stopped answering ({str(err)[:300]}); check `docker info` "
            "and run the build again."
        ) from None
    return BuiltImage(tag, image.id, int(image.attrs.get("Size", 0)), dict(image.labels or {}))


def push_image(tag: str, progress: Callable[[str], None] = lambda _line: None) -> None:
    """Push ``tag`` to the registry its name points at."""
    from docker.errors import APIError, DockerException

    repository, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    client = docker_client()
    try:
        _follow(client.images.push(repository, tag=version or "latest", stream=True, decode=True), progress, "pushing")
    except ImageError as err:
        raise ImageError(
            f"the registry refused the push of {tag}: {err}. Log in with `docker login <registry>` and check that "
            "the repository exists and you may write to it."
        ) from None
    except (APIError, DockerException) as err:
        raise ImageError(f"pushing {tag} failed: {str(err)[:300]}; check `docker info` and the registry.") from None


def _follow(stream: Iterable[dict[str, Any]], progress: Callable[[str], None], what: str) -> None:
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
            raise ImageError(f"{what}: {str(detail).strip()[:1000]}")
        text = chunk.get("stream") or chunk.get("status")
        if text and text.strip():
            progress(text.rstrip())
