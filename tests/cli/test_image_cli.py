"""`mlops image build` where no engine answers: a clear error, no traceback (the real build is in tests/containers/)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import mlops


def test_image_build_without_an_engine_says_how_to_get_one(cli_home: Path, tmp_path: Path) -> None:
    done = mlops("image", "build", "--tag", "mlops:x", home=cli_home, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    assert done.returncode == 1 and "no Docker engine is reachable" in done.stderr, done.stderr
    assert "container-engine" in done.stderr and "Traceback" not in done.stderr
