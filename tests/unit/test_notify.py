"""Webhook notices to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from core.notify import WEBHOOK_ENV, notify


def test_a_notice_reaches_the_webhook(webhook: list[dict[str, Any]]) -> None:
    assert notify("rollout.aborted", "churn", "Rollout #3 aborted: quality guard", "warning", rollout_id=3)
    assert webhook[0]["kind"] == "rollout.aborted" and webhook[0]["model"] == "churn"
    assert webhook[0]["details"] == {"rollout_id": 3} and webhook[0]["severity"] == "warning"


def test_an_unreachable_webhook_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{port}/nobody")
    assert notify("drift.detected", "churn", "drift") is False
