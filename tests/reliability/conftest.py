"""Fixtures of the fault suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """One Prefect API the commands under test report to (each would otherwise start a temporary server of its
    own, which costs more than the fault being tested)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
