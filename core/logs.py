"""Log lines: plain text for a person (``MLOPS_LOG_FORMAT=text``, the default) or one JSON object per line for a log
collector (``json``), each carrying what it belongs to.

A JSON line holds ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then the context:

- the request being handled (``request_id``, and once known ``variant``, ``model_version``, ``rollout_id``,
  ``prediction_id``): fields bound with :func:`bind` / :func:`annotate` in a ``contextvars`` variable, so they follow
  the request's task and nothing else; likewise a flow run's ``change_request_id``, ``model_version`` and
  ``rollout_id`` once the flow knows them (:func:`flow_run`);
- the Prefect run (``flow_run_id``, ``flow_name``, ``task_run_id``, ...) when a flow or task run context exists;
- the record's own ``extra=`` fields (the access log's method, path, status, duration_ms, client);
- ``exception``: the formatted traceback, if any.

:func:`configure` is called once per process by each entry point (the ``mlops`` CLI, the gateway's app factory);
a flow run does it itself (:func:`flow_run`) when nothing in its process did: a Prefect worker's flow-run process
(``python -m prefect.engine``) has no ``mlops`` CLI in front of it.
With json it puts one handler on the root logger, so Prefect (which leaves a root handler it did not create alone)
and uvicorn send their lines through it too; Prefect's flow and task run loggers keep their API handler, so the
Prefect UI still shows the runs' logs. With text it adds a plain handler only where nothing prints yet, and lets
Prefect put its own console handler in its place when Prefect is set up later in the process (the handler's class
name starts with an underscore, which Prefect 3 reads as "not the user's").

Secrets never reach a line: ``user:password@`` in URLs, ``Bearer`` credentials and the configured tokens are
replaced by ``***`` in every record's message as it is created (a log record factory, so the Prefect API gets the
redacted text too) and in formatted tracebacks.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from core.settings import Settings

# ---- context ------------------------------------------------------------------------------------------------------
_context: ContextVar[dict[str, Any] | None] = ContextVar("mlops_log_context", default=None)


def bind(**fields: Any) -> Token[dict[str, Any] | None]:
    """Start a new context for what follows in this task or thread (a request, a flow run): these fields, on top of
    the enclosing context's. Returns the token :func:`unbind` takes."""
    current = _context.get()
    return _context.set({**current, **fields} if current else dict(fields))


def unbind(token: Token[dict[str, Any] | None]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def annotate(**fields: Any) -> None:
    """Add fields to the current context as they become known (the variant that answered): later lines of the same
    request carry them, and so does its access log line. Nothing happens outside a bound context."""
    current = _context.get()
    if current is not None:
        current.update(fields)


def context_fields() -> dict[str, Any]:
    return dict(_context.get() or {})


# ---- request ids --------------------------------------------------------------------------------------------------
REQUEST_ID_MAX = 128
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % REQUEST_ID_MAX)


def request_id_from(header: bytes | None) -> tuple[str, bool]:
    """The caller's ``x-request-id`` when it is 1-128 characters of ``A-Z a-z 0-9 . _ : -`` (a UUID, a trace id), else
    a new one (128 random bits, hex); the flag says whether the caller's value was kept. A value outside that set is
    never echoed or logged: it could forge log lines or headers."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header.decode("ascii"), True
    return os.urandom(16).hex(), False


# ---- redaction ----------------------------------------------------------------------------------------------------
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/?#@\s]*):[^@/?#\s]+@")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s,;'\"]+")
_MIN_SECRET = 4  # shorter values would blank out ordinary words


class Redactor:
    """Replaces credentials in text: ``scheme://user:password@`` -> ``scheme://user:***@``, ``Bearer x`` -> ``Bearer
    ***``, and each configured secret value -> ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if "://" in text and "@" in text:
            text = _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)
        if "earer" in text:
            text = _BEARER.sub(r"\1 ***", text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


_redact = Redactor()
_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string is reported by the handler, as without this factory
        return record
    clean = _redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    return record


# ---- formatting ---------------------------------------------------------------------------------------------------
RUN_FIELDS = ("flow_run_id", "flow_run_name", "flow_name", "task_run_id", "task_run_name", "task_name")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
    "send_to_api",  # Prefect's switch for its API handler
    "taskName",
}


def run_fields() -> dict[str, Any]:
    """The Prefect flow and task run this thread or task is in, when Prefect is loaded and a run context exists."""
    module = sys.modules.get("prefect.context")
    if module is None:
        return {}
    out: dict[str, Any] = {}
    flow = module.FlowRunContext.get()
    if flow is not None and flow.flow_run is not None:
        out.update(flow_run_id=str(flow.flow_run.id), flow_run_name=flow.flow_run.name, flow_name=flow.flow.name)
    task = module.TaskRunContext.get()
    if task is not None:
        out.update(task_run_id=str(task.task_run.id), task_run_name=task.task_run.name, task_name=task.task.name)
    return out


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")  # the last second formatted, and its text


def utc_timestamp(created: float) -> str:
    """``2026-12-02T00:08:06.135Z``, as ``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``
    gives it; the date and time of day are formatted once per second (they were the largest single part of an
    access line's cost under load, 1.8% of the gateway's CPU)."""
    global _second
    second = int(created)
    micros = round((created - second) * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, 0
    cached = _second
    if cached[0] != second:
        cached = _second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micros // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, then context and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        line = json_object(record.created, record.levelname, record.name, record.getMessage(), extra)
        if record.exc_info:
            line["exception"] = _redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = _redact(record.exc_text)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def json_object(created: float, level: str, logger: str, message: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A JSON log line's object: timestamp, level, logger, message, then the Prefect run, the log context and the
    line's own fields (``JsonFormatter``, and the access log's direct path in ``log_access``)."""
    line: dict[str, Any] = {"timestamp": utc_timestamp(created), "level": level, "logger": logger, "message": message}
    line.update(run_fields())
    context = _context.get()
    if context:
        line.update(context)
    line.update(extra)
    return line


class TextFormatter(logging.Formatter):
    """``2026-11-30 13:22:27,123 WARNING mlops.gateway: message  request_id=... variant=...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**run_fields(), **(_context.get() or {})}
        if fields:
            line += "  " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return _redact(line) if record.exc_info or record.exc_text else line


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the process's current ``sys.stderr`` (looked up per line, so a replaced stderr is followed)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter())

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _TextHandler(JsonHandler):
    """Plain lines; the leading underscore lets Prefect replace it with its own console handler (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(TextFormatter())


# ---- set-up -------------------------------------------------------------------------------------------------------
PROJECT_LOGGER = "mlops"
ACCESS_LOGGER = "mlops.access"
SELF_PRINTING = ("mlflow",)  # when imported before configure() (MLFLOW_CONFIGURE_LOGGING=false covers later imports)
access_log = logging.getLogger(ACCESS_LOGGER)
_configured = False  # whether configure() ran in this process


def configure(settings: Settings) -> None:
    """Set up logging for this process from the settings (format, level, access log, secrets); safe to call again."""
    global _redact, _configured
    _configured = True
    _redact = Redactor(settings.secrets)
    if logging.getLogRecordFactory() is not _redacting_factory:
        logging.setLogRecordFactory(_redacting_factory)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, JsonHandler) or (
            settings.log_format == "json" and type(handler).__name__ == "PrefectConsoleHandler"
        ):
            root.removeHandler(handler)
    if settings.log_format == "json":
        root.addHandler(JsonHandler())
        for name in SELF_PRINTING:  # libraries that print through handlers of their own: through ours instead
            library = logging.getLogger(name)
            for handler in list(library.handlers):
                library.removeHandler(handler)
            library.propagate = True
    elif not root.handlers:
        root.addHandler(_TextHandler())
    if settings.log_level or settings.log_format == "json":
        logging.getLogger(PROJECT_LOGGER).setLevel(settings.effective_log_level)
    if settings.access_log_enabled:
        access_log.setLevel(logging.INFO)


@contextmanager
def flow_run(settings: Settings) -> Iterator[None]:
    """Logging for one flow run: set up from ``settings`` unless this process already was (by the ``mlops`` CLI,
    whose ``--log-format`` wins, or by an earlier run), and a log context of the run's own that it fills in with
    :func:`annotate` as it learns its change request and model version. The context ends with the run, so a
    subflow's fields stay off its parent's later lines."""
    if not _configured:
        configure(settings)
    with bound():
        yield


class _AccessLines:
    """The JSON access lines of the requests answered in one event-loop turn, written to stderr in one go at the
    start of the next turn (stderr is line-buffered: a write and a flush per line otherwise). Written at once when
    there is no running loop, and at exit."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.scheduled = False

    def add(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            sys.stderr.write(line)
            return
        self.pending.append(line)
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.pending:
            lines, self.pending = self.pending, []
            sys.stderr.write("".join(lines))


_access_lines = _AccessLines()
atexit.register(_access_lines.flush)


def _direct_json_access() -> bool:
    """Whether an access line can skip ``logging`` and be written as the root's JSON handler would write it: json
    logs, the access logger on, and nothing else between it and that one handler (a test's or a library's
    handler, or a filter, gets the line through ``logging`` as before)."""
    root = logging.getLogger()
    return (
        access_log.isEnabledFor(logging.INFO)
        and not access_log.handlers
        and not access_log.filters
        and access_log.propagate
        and len(root.handlers) == 1
        and type(root.handlers[0]) is JsonHandler
        and not root.filters
        and not root.handlers[0].filters
    )


def log_access(method: str, path: str, status: int, started: float, client: str | None, **fields: Any) -> None:
    """The access log line of one request (its context adds request_id, variant, model_version, ...).

    With json logs the line is built here, the same object ``JsonFormatter`` makes, and written once per event-loop
    turn with the turn's other access lines: through ``logging`` (a record, the caller's frame looked up, a
    formatter walking the record's attributes, a write and a flush) it cost 58-68 microseconds of CPU, a tenth
    of what a request costs the gateway (benchmarks/README.md, "Cost of structured logs")."""
    duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
    path = _redact(path)  # a token in a path must not reach the line either
    extra = {"method": method, "path": path, "status": status, "duration_ms": duration_ms, "client": client, **fields}
    message = f'{client or "-"} "{method} {path}" {status} {duration_ms:.1f} ms'
    if not _direct_json_access():
        access_log.info("%s", message, extra=extra)
        return
    line = json_object(time.time(), "INFO", ACCESS_LOGGER, message, extra)  # its path, the only caller text, redacted
    _access_lines.add(
        orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE).decode()
    )
