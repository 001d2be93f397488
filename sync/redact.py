"""A bounded, redacted excerpt of an API's error body (pure, no I/O).

APIs that reject an order often echo it back: the customer's name, street, e-mail and phone
would then land in reasons, the ledger's ``last_error``, log lines and CLI output. Whatever
an API sends, :func:`api_error_excerpt` keeps only

* from a JSON body: the API's own error fields (``error``, ``code``, ``error_code``,
  ``message``, ``status``, ``field``, ``type``, ``request_id``; JSON:API
  ``errors[].code/status/title/detail/request_id``, at most 3 errors),
  scalar values only, each masked and cut to :data:`FIELD_LIMIT` characters; any other key —
  where an echoed order would be — is dropped. A JSON body without such fields becomes
  ``"(JSON object, N bytes)"``;
* from a non-JSON body: the HTML ``<title>``, or the text itself when it is one short line;
  longer text becomes ``"(text body, N bytes)"``;

and masks in what is kept: e-mail addresses, phone numbers, anything in quotes (APIs quote
the value they reject), and ``{…}`` / ``[…]`` fragments. The result is at most
:data:`MAX_EXCERPT` characters on one line, and never contains control characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from sync.domain.text import clean_text, json_depth

MAX_EXCERPT: Final = 200
FIELD_LIMIT: Final = 120
SHORT_TEXT: Final = 120
ERROR_KEYS: Final = (
    "error", "error_code", "code", "message", "error_description", "status", "field", "param",
    "type", "request_id",
)
JSONAPI_KEYS: Final = ("code", "status", "title", "detail", "request_id")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|“[^”]*”|‘[^’]*’|`[^`]*`")
_BRACED = re.compile(r"\{.*\}|\[.*\]", re.DOTALL)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_WS = re.compile(r"\s+")


def mask_fragment(text: str) -> str:
    """``text`` on one line with quoted values, JSON-ish fragments, e-mails and phone numbers
    masked (``"…"``, ``{…}``, ``***@***``, ``***phone***``)."""
    from sync.logs import mask_phones  # the one phone rule (keeps IPs, times, durations)

    text = _WS.sub(" ", clean_text(text)).strip()
    text = _BRACED.sub(lambda m: m.group(0)[0] + "…" + m.group(0)[-1], text)
    text = _QUOTED.sub("'…'", text)
    text = _EMAIL.sub("***@***", text)
    return mask_phones(text)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return _cut(mask_fragment(value), FIELD_LIMIT)
    return None


def _fields(obj: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for key in keys:
        value = obj.get(key)
        if isinstance(value, Mapping):  # {"error": {"code": ..., "message": ...}}
            out.extend(f"{key}.{part}" for part in _fields(value, ERROR_KEYS))
            continue
        text = _scalar(value)
        if text is not None:
            out.append(f"{key}={text}")
    return out


def api_error_excerpt(body_text: str, limit: int = MAX_EXCERPT) -> str:
    """The redacted excerpt of an API response body described in the module docstring
    (``""`` for an empty body). Never raises."""
    try:
        return _cut(_excerpt(body_text), limit)
    except Exception:  # a redaction helper must never be the thing that fails
        return f"(unreadable body, {len(body_text)} characters)"


def _excerpt(body_text: str) -> str:
    text = body_text.strip()
    if not text:
        return ""
    size = len(text.encode("utf-8", "replace"))
    value: Any = None
    if text[0] in "{[" and json_depth(text, stop_at=33) <= 32:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
    if isinstance(value, Mapping):
        parts = _fields(value, ERROR_KEYS)
        errors = value.get("errors")
        if isinstance(errors, Mapping):
            errors = [errors]
        if isinstance(errors, list):
            for err in errors[:3]:
                if isinstance(err, Mapping):
                    parts.extend(_fields(err, JSONAPI_KEYS))
                elif (scalar := _scalar(err)) is not None:
                    parts.append(scalar)
        return "; ".join(parts) if parts else f"(JSON object, {size} bytes)"
    if isinstance(value, list):
        return f"(JSON array, {size} bytes)"
    title = _TITLE.search(text)
    if title:
        return _cut(mask_fragment(title.group(1)), FIELD_LIMIT)
    if "<" in text and ">" in text:
        text = _TAG.sub(" ", text)
    line = _WS.sub(" ", text).strip()
    if len(line) <= SHORT_TEXT and "\n" not in body_text.strip():
        return mask_fragment(line)
    return f"(text body, {size} bytes)"
