"""Structured logging: JSON lines (or a pretty console on a TTY), with redaction.

Every line passes :func:`redact` last: e-mail addresses and phone numbers anywhere in a value
are masked, address/name fields are masked by key, and anything whose key looks like a
credential is replaced entirely. Code should not log PII in the first place; this is the net.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d\s().-]{7,}\d(?![\w.])")
_SECRET_KEYS = re.compile(r"secret|password|passwd|api_key|apikey|token|authorization", re.I)
_PII_KEYS = re.compile(
    r"(address|post_?code|telephone|phone|mobile|firstname|lastname|first_name|last_name"
    r"|customer_name)",
    re.I,
)


def mask_text(text: str) -> str:
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub("***phone***", text)


_ID_KEYS = re.compile(r"(^|_)(id|ids|ref|refs|reference|event|at|timestamp|window_\w+)$", re.I)


def _mask(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "***"
    if _PII_KEYS.search(key) and value is not None:
        return "***"
    if isinstance(value, str):
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


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Set up structlog for the process. ``fmt`` is ``json``, ``console`` or ``auto``; lines
    go to ``stream``, by default the process's current standard error."""
    out = stream or _CurrentStderr()
    use_console = fmt == "console" or (fmt == "auto" and hasattr(out, "isatty") and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, out)),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "ordersync") -> Any:
    return structlog.get_logger(name)
