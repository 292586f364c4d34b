"""The traffic replayer against a real gateway on 127.0.0.1: a stopped replay stops sending, even when the gateway
is slower than the replay's rate and requests are queued behind it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from deployments.model_loading import ModelHandle
from deployments.replay import records_from, replay
from tests.gateway_fixtures import Served
from training.datasets import breast_cancer


class HeldModel:
    """Answers only once ``release`` is set (a gateway slower than any rate), and says when it was first asked."""

    def __init__(self, model: Any, asked: threading.Event, release: threading.Event) -> None:
        self.model, self.asked, self.release = model, asked, release

    def predict(self, frame: Any) -> Any:
        self.asked.set()
        self.release.wait(60)
        return self.model.predict(frame)


def test_a_stopped_replay_does_not_send_the_requests_queued_behind_a_slow_gateway(
    two_models: dict[str, str], serve_gateway: Callable[..., Served]
) -> None:
    served = serve_gateway()
    asked, release, stop = threading.Event(), threading.Event(), threading.Event()
    handle = served.gateway.handles["champion"]
    served.gateway.handles = {
        **served.gateway.handles,
        "champion": ModelHandle(
            "champion", handle.version, handle.semver, HeldModel(handle.model, asked, release), handle.column_types,
            0.0,
        ),
    }  # fmt: skip

    def stop_while_the_first_request_is_held() -> None:
        asked.wait(60)
        stop.set()
        release.set()

    helper = threading.Thread(target=stop_while_the_first_request_is_held)
    helper.start()
    frame = breast_cancer()
    records = records_from(frame, [c for c in frame.columns if c != "diagnosis"])
    # a rate no gateway meets: all 300 requests are scheduled at once, one connection sends them one by one
    report = asyncio.run(
        replay(served.url, records, frame["diagnosis"].tolist(), rate=1e9, count=300, concurrency=1, stop=stop)
    )
    helper.join()
    assert (report.sent, report.answered, report.labels_sent) == (1, 1, 1)
