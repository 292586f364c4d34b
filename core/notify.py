"""Notices to people (source 14.3): promotions, rollbacks, drift, failures and requests for a decision.

Each notice is a Prefect event (so Prefect automations can route it to Slack, e-mail or PagerDuty blocks) and,
when ``MLOPS_WEBHOOK_URL`` is set, a JSON POST to that URL (a chat webhook or an incident tool). Delivery is best
effort with a short timeout and one retry: a notice must never fail the flow that sends it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import urllib.request
from typing import Any

from core.names import model_resource
from core.settings import get_settings

log = logging.getLogger("mlops.notify")
WEBHOOK_ENV = "MLOPS_WEBHOOK_URL"
NOTICE_EVENT = "mlops.notice"


def notify(kind: str, model_name: str, summary: str, severity: str = "info", **details: Any) -> bool:
    """Send one notice; returns True when the webhook (if configured) accepted it."""
    settings = get_settings()
    body = {
        "kind": kind,
        "model": model_name,
        "severity": severity,
        "summary": summary,
        "details": details,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        from prefect.context import FlowRunContext
        from prefect.events import emit_event

        if FlowRunContext.get() is None and not settings.prefect_api_url:
            raise LookupError("no Prefect API in reach")  # emitting would start a temporary server just for this
        emit_event(
            event=f"{NOTICE_EVENT}.{kind}",
            resource=model_resource(model_name),
            payload=body,
        )
    except Exception:  # no Prefect API reachable: the webhook may still be
        log.debug("could not emit the notice as a Prefect event", exc_info=True)
    url = settings.webhook_url
    if not url:
        return True
    data = json.dumps(body, default=str).encode()
    failure = ""
    for attempt in range(2):
        try:
            req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                if 200 <= resp.status < 300:
                    return True
                failure = f"HTTP {resp.status}"
        except OSError as err:
            failure = str(err)
        log.info("webhook notice %s failed (attempt %d): %s", kind, attempt + 1, failure)
        time.sleep(0.5)
    _undelivered(kind, url, failure)
    return False


def _undelivered(kind: str, url: str, failure: str) -> None:
    """Say, where the person running the work reads (this process's log and, in a flow run, the run's log in the
    Prefect UI), that a notice did not reach its webhook: the work is done, the notice is not."""
    where = urllib.parse.urlsplit(url)
    endpoint = f"{where.scheme}://{where.netloc}"  # never the path: chat webhooks carry their secret there
    message = (
        f"the {kind} notice was not delivered to the webhook at {endpoint} ({failure}); the work itself is done. "
        f"Check that the endpoint is up, or unset {WEBHOOK_ENV}; the notice is still the Prefect event "
        f"{NOTICE_EVENT}.{kind} when a Prefect API is in reach."
    )
    try:
        from prefect.context import FlowRunContext
        from prefect.logging import get_run_logger

        if FlowRunContext.get() is not None:
            get_run_logger().error(message)  # the terminal, and the run's log in the UI
            return
    except Exception:  # the process's own log is the place of last resort
        pass
    log.error(message)
