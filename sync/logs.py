"""Structured logging: JSON lines (or a pretty console on a TTY), with redaction.

Every line passes :func:`redact` last: e-mail addresses and phone numbers anywhere in a value
are masked, address/name fields are masked by key, anything whose key looks like a
credential is replaced entirely, a value under a key such as ``body`` or ``response`` is
reduced to :func:`sync.redact.api_error_excerpt`, and control characters are removed from
every string (no terminal escapes from data). Code should not log PII in the first place;
this is the net.

The phone rule does not eat what operators need: IPv4 addresses (``127.0.0.1``), ISO dates
and times, decimal numbers and durations (``2.5``, ``120s``), and bare digit runs that do not
start with ``0`` or ``+`` (ids, UNIX times) are left alone; a phone number needs 9-15 digits.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Protocol, TextIO, cast

import structlog

from sync.domain.text import clean_text
from sync.redact import api_error_excerpt

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(
    # Tried in order at each position: the first four are kept as they are.
    r"(?P<ip>(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.]))"
    r"|(?P<time>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?|\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)"
    r"|(?P<number>(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|s|sec|secs|seconds|min|h|d)\b"
    r"|(?<![\w.])\d+\.\d+(?![\w.]))"
    r"|(?P<bare>(?<![\w.+])[1-9]\d*(?![\w.]))"
    r"|(?P<phone>(?<![\w.])\+?\d[\d\s().-]{7,}\d(?![\w.]))"
)
_SECRET_KEYS = re.compile(r"secret|password|passwd|api_key|apikey|token|authorization", re.I)
_PII_KEYS = re.compile(
    r"(address|post_?code|telephone|phone|mobile|firstname|lastname|first_name|last_name"
    r"|customer_name)",
    re.I,
)


def _phone_or_keep(m: re.Match[str]) -> str:
    phone = m.group("phone")
    if phone is None:
        return m.group(0)
    digits = sum(c.isdigit() for c in phone)
    return "***phone***" if 9 <= digits <= 15 else phone


def mask_phones(text: str) -> str:
    """``text`` with phone numbers masked (IPs, dates, times, durations and ids kept)."""
    return _PHONE.sub(_phone_or_keep, text)


def mask_text(text: str) -> str:
    """``text`` with e-mail addresses (``j***@example.com``) and phone numbers masked."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return mask_phones(text)


_ID_KEYS = re.compile(r"(^|_)(id|ids|ref|refs|reference|event|at|timestamp|window_\w+)$", re.I)
_BODY_KEYS = re.compile(r"(^|_)(body|response|response_text|content|payload_text)$", re.I)
_SQL_PARAMS = re.compile(r"\[parameters:.*?(?:\](?=\s*(?:\(Background|$))|\Z)", re.S)
"""SQLAlchemy puts a failed statement's bound values (order data) in its error text."""


def _mask(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "***"
    if _PII_KEYS.search(key) and value is not None:
        return "***"
    if isinstance(value, str):
        value = _SQL_PARAMS.sub("[parameters: …]", clean_text(value))
        if _BODY_KEYS.search(key):  # an API body: its error fields only, redacted
            return api_error_excerpt(value)
        if _ID_KEYS.search(key):  # ids and timestamps are digits, not phone numbers
            return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(key, v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask PII and credentials in every field."""
    for key in list(event_dict):
        event_dict[key] = _mask(key, event_dict[key])
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is *now* (a test runner or a daemoniser may swap it
    after logging was configured; a closed stream must never break a log line)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


# Libraries that log through the standard library: each is routed to the same JSON lines, at
# the configured level but never chattier than this (httpx logs every request at INFO; the
# order.push line already says what a request achieved; Celery's per-task "received" and
# "succeeded" lines repeat it; alembic announces its plugins and dialect on every schema check,
# and `ordersync migrate` logs what it applied itself).
_LIBRARY_FLOOR = {
    "alembic": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "celery.worker.strategy": logging.WARNING,
    "celery.app.trace": logging.WARNING,
}

_state: dict[str, Any] = {"json": None, "handler": None}


def _route_standard_logging(out: Any, renderer: Any, level: int) -> None:
    """Send every standard-library log record (Celery, kombu, alembic, uvicorn, httpx,
    ``warnings``) through the same timestamp, level, redaction and renderer as our own lines:
    one root handler, replaced on every :func:`configure` call (never duplicated)."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    old = _state["handler"]
    if old is not None:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _state["handler"] = handler
    for name, floor in _LIBRARY_FLOOR.items():
        logging.getLogger(name).setLevel(max(level, floor))
    # A library's warning is one JSON line too. Off then on: if something replaced
    # warnings.showwarning since the last call, capturing is installed again.
    logging.captureWarnings(False)
    logging.captureWarnings(True)


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Set up logging for the process. ``fmt`` is ``json``, ``console`` or ``auto``; lines
    go to ``stream``, by default the process's current standard error. Standard-library
    logging (every library's) is rendered the same way, so with ``json`` each line the
    process writes is one JSON object."""
    out = stream or _CurrentStderr()
    use_console = fmt == "console" or (fmt == "auto" and hasattr(out, "isatty") and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console
        else structlog.processors.JSONRenderer()
    )
    numeric_level = getattr(logging, level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # One write per line (``print`` writes the text and the newline separately): lines of
        # processes sharing one pipe, like a Celery worker's pool, never interleave.
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, out)),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(out, renderer, numeric_level)
    _state["json"] = not use_console


def json_lines() -> bool:
    """True when this process writes its log as JSON lines and standard error is not a
    terminal: a message for the operator (a failure, a shutdown) must then be a log line too,
    not text. Before :func:`configure` ran, ``ORDERSYNC_LOG_FORMAT=json`` decides (a
    container whose configuration cannot even be read still logs JSON)."""
    configured = _state["json"]
    if configured is None:
        configured = os.environ.get("ORDERSYNC_LOG_FORMAT", "").strip().lower() == "json"
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return bool(configured) and not tty


def log_instead_of_text(event: str, level: str = "error", **fields: Any) -> bool:
    """When :func:`json_lines` holds, write ``event`` as one log line (configuring JSON output
    first if nothing did yet) and return True; else False: the caller prints its text."""
    if not json_lines():
        return False
    if _state["json"] is None:
        configure("json")
    getattr(get_logger("ordersync"), level)(event, **fields)
    return True


class Log(Protocol):
    """What code logs through: the structlog bound-logger methods ordersync uses. Each takes
    the event name and its fields (any JSON-ready values; :func:`redact` masks them)."""

    def debug(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def warning(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def error(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def critical(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def exception(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def bind(self, **new_values: Any) -> Log: ...


def get_logger(name: str = "ordersync") -> Log:
    log: Log = structlog.get_logger(name)
    return log
