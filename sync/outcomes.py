"""The one table that turns every HTTP outcome into what the caller must do.

Every HTTP client (:mod:`sync.sources.shopwired`, :mod:`sync.sinks.wiredplus`,
:mod:`sync.sources.elasticpath`) sends every response or transport exception through
:func:`classify` (or :func:`classify_elasticpath`, which reads the same table), then
:func:`raise_for_outcome`. No other module decides whether a status code is fatal, retryable
or skippable.

The table has two columns because what a status means depends on the direction: a **read**
(ShopWired, Elastic Path GETs and its token) that fails on a 4xx means *our request* is wrong
(fatal), while a **write** (WiredPlus UpdateOrder / CreateOrderEvent, Elastic Path ``PUT``
of ``external_ref``) that fails on a 4xx means *this item* was rejected (skip: dead letter).
Elastic Path's own exceptions to the table: its token endpoint answering 400/401/403/422 is
fatal (wrong client credentials), a 401 elsewhere is retried once with a new token first,
and JSON:API error bodies (``{"errors": [...]}``, ``status`` as int or string) become the
reason.

Kinds
-----
``ok``         success; the caller uses the body.
``retry``      transient; the same request may succeed later (:class:`~sync.errors.RetryableError`).
``fatal``      a human must fix something: credentials, base URL, or a bug in *our* request
               (:class:`~sync.errors.FatalError`). Retrying would only burn rate budget.
``skip``       this one item was rejected; dead-letter it with the reason
               (:class:`~sync.errors.SkippableError`).
``not_found``  the thing asked for does not exist (ShopWired single order); the caller decides.

The rules, first match wins (see :data:`EXCEPTION_RULES`, :data:`STATUS_RULES`,
:data:`STATUS_CLASS_RULES` and the 2xx body rules in :func:`_classify_success`):

====================================  ==============  ================  =========================
When                                  read: SW, EP    write: WP, EP     Why
====================================  ==============  ================  =========================
UnsupportedProtocol, InvalidURL,      fatal           fatal             the base URL or a header
LocalProtocolError, TooManyRedirects                                    (credential) is malformed
TimeoutException, TransportError,     retry           retry             network trouble; the
DecodingError, other RequestError                                       request may not have run
any other exception                   fatal           fatal             a bug: be loud
2xx, body the JSON we expect          ok              ok
2xx, body not JSON / wrong shape      retry           retry             truncated page (SW); we
                                                                        cannot know the id (WP),
                                                                        and upserts are idempotent
2xx, JSON object with ``error``       n/a             skip              WiredPlus reports failure
                                                                        in the body; if the body
                                                                        carries its own ``status``
                                                                        ≥ 400 that status is
                                                                        classified instead
3xx (redirects are not followed)      fatal           fatal             check ``*_BASE_URL``
400                                   fatal           skip              SW: our query is wrong;
                                                                        WP: the order was rejected
401, 403                              fatal           fatal             names the credentials
404                                   not_found       skip              SW single order gone; WP
                                                                        unknown id
405, 415                              fatal           fatal             our request is wrong
408, 409, 425, 429                    retry           retry             429 honours Retry-After
422                                   fatal           skip
other 4xx                             fatal           skip
5xx                                   retry           retry             503 honours Retry-After
anything else (1xx, ≥ 600)            retry           retry             odd proxy; try later
====================================  ==============  ================  =========================

``Retry-After`` (delta-seconds or an HTTP-date) is parsed for every ``retry`` outcome caused by a
status code; it is documented for 429 and 503 and harmless elsewhere.

A reason never copies a response body: :func:`body_reason_text`, the one place a body becomes
reason text, keeps :func:`sync.redact.api_error_excerpt` of it
(the API's error code/message fields, masked, at most 200 characters; an echoed order is
dropped). 401/403 reasons never include the body (it could echo what we sent).

The module is pure: no I/O, no logging. The only clock it may read is ``datetime.now`` when an
HTTP-date ``Retry-After`` arrives and the caller passed no ``now`` (clients always pass one).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final, Literal

import httpx

from sync import jsoncodec
from sync.errors import FatalError, RetryableError, SkippableError, Throttled
from sync.redact import api_error_excerpt

Api = Literal["shopwired", "wiredplus"]
Kind = Literal["ok", "retry", "fatal", "skip", "not_found"]
Expect = Literal["any", "object", "list"]

MAX_REASON_TEXT: Final = 500

#: Which environment variables a human must check after a 401/403, per API.
CREDENTIAL_VARS: Final[Mapping[Api, str]] = MappingProxyType(
    {
        "shopwired": "SHOPWIRED_API_KEY/SHOPWIRED_API_SECRET",
        "wiredplus": "WIREDPLUS_API_USER/WIREDPLUS_API_KEY",
    }
)
BASE_URL_VARS: Final[Mapping[Api, str]] = MappingProxyType(
    {"shopwired": "SHOPWIRED_BASE_URL", "wiredplus": "WIREDPLUS_BASE_URL"}
)
API_NAMES: Final[Mapping[Api, str]] = MappingProxyType(
    {"shopwired": "ShopWired", "wiredplus": "WiredPlus"}
)

#: Elastic Path: names used in its reasons (the client reads with the *read* column, writes
#: ``external_ref`` with the *write* column; see :func:`classify_elasticpath`).
EP_NAME: Final = "Elastic Path"
EP_CREDENTIALS_VARS: Final = "ELASTICPATH_CLIENT_ID/ELASTICPATH_CLIENT_SECRET"
EP_BASE_URL_VAR: Final = "ELASTICPATH_BASE_URL"

#: Exact status codes: code → (read kind: ShopWired, Elastic Path GET; write kind: WiredPlus,
#: Elastic Path PUT).
STATUS_RULES: Final[Mapping[int, tuple[Kind, Kind]]] = MappingProxyType(
    {
        400: ("fatal", "skip"),
        401: ("fatal", "fatal"),
        403: ("fatal", "fatal"),
        404: ("not_found", "skip"),
        405: ("fatal", "fatal"),
        408: ("retry", "retry"),
        409: ("retry", "retry"),
        415: ("fatal", "fatal"),
        422: ("fatal", "skip"),
        425: ("retry", "retry"),
        429: ("retry", "retry"),
    }
)

#: Status classes (``status // 100``) for codes not in :data:`STATUS_RULES`.
STATUS_CLASS_RULES: Final[Mapping[int, tuple[Kind, Kind]]] = MappingProxyType(
    {
        2: ("ok", "ok"),
        3: ("fatal", "fatal"),
        4: ("fatal", "skip"),
        5: ("retry", "retry"),
    }
)
#: Anything outside 200-599.
STATUS_FALLBACK: Final[tuple[Kind, Kind]] = ("retry", "retry")

#: Exceptions, first ``isinstance`` match wins: (type, ShopWired kind, WiredPlus kind).
EXCEPTION_RULES: Final[tuple[tuple[type[BaseException], Kind, Kind], ...]] = (
    (httpx.UnsupportedProtocol, "fatal", "fatal"),
    (httpx.InvalidURL, "fatal", "fatal"),
    (httpx.LocalProtocolError, "fatal", "fatal"),
    (httpx.TooManyRedirects, "fatal", "fatal"),
    (httpx.TimeoutException, "retry", "retry"),
    (httpx.TransportError, "retry", "retry"),
    (httpx.DecodingError, "retry", "retry"),
    (httpx.RequestError, "retry", "retry"),
)
EXCEPTION_FALLBACK: Final[tuple[Kind, Kind]] = ("fatal", "fatal")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one HTTP exchange means for the caller.

    ``retry_after`` is the server's ``Retry-After`` in seconds (≥ 0) when it sent a usable one.
    ``reason`` is a human sentence; it never contains credentials. ``status`` is the HTTP
    status, when there was a response.
    """

    kind: Kind
    retry_after: float | None
    reason: str
    status: int | None = None
    throttled: bool = False
    """A ``retry`` because the API asks us to slow down (429, or 503 with ``Retry-After``):
    it says nothing about the request or the item, and is raised as
    :class:`~sync.errors.Throttled`."""


_WS = re.compile(r"\s+")


def body_reason_text(body_text: str, limit: int = MAX_REASON_TEXT) -> str:
    """The one place an API response body becomes reason text (logs, ``show``, dead letters):
    every reason built from a body goes through here. It keeps the redacted excerpt of
    :func:`sync.redact.api_error_excerpt` (the API's error fields, masked; never an echoed
    order), cut to ``limit`` characters."""
    return truncate(api_error_excerpt(body_text), limit)


def truncate(text: str, limit: int = MAX_REASON_TEXT) -> str:
    """``text`` with whitespace runs collapsed, cut to ``limit`` characters (``…`` marks a cut)."""
    text = _WS.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


#: Returned by :func:`decode_json` for an empty or non-JSON body.
INVALID_JSON: Final = object()


_last_decoded = threading.local()


def decode_json(text: str) -> Any:
    """The JSON value of ``text``, or :data:`INVALID_JSON` when it is empty or not JSON.

    A response is decoded once: the classifier checks its shape and the client then returns
    the value, both from the same ``str`` object, so each thread keeps the value of the last
    text it decoded and hands it out once more for that very object (callers only read it;
    a page is not kept alive past its second use)."""
    last = getattr(_last_decoded, "pair", None)
    if last is not None and last[0] is text:
        _last_decoded.pair = None
        return last[1]
    if not text.strip():
        value: Any = INVALID_JSON
    else:
        try:
            value = jsoncodec.loads(text)
        except (ValueError, RecursionError):
            value = INVALID_JSON
    _last_decoded.pair = (text, value)
    return value


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unusable.

    Accepts delta-seconds (``"120"``, tolerating ``"1.5"``) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, measured from ``now``). Past dates and negative
    numbers give 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ref = now if now is not None else datetime.now(UTC)
        seconds = (when - ref).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _pick(api: Api, pair: tuple[Kind, Kind]) -> Kind:
    return pair[0] if api == "shopwired" else pair[1]


def _describe_json(value: Any) -> str:
    if value is INVALID_JSON:
        return "no JSON"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return f"JSON {type(value).__name__}"


def _status_reason(api: Api, status: int, kind: Kind, body_text: str) -> str:
    name = API_NAMES[api]
    creds = CREDENTIAL_VARS[api]
    if status == 401:
        return f"{name} rejected the credentials: check {creds}"
    if status == 403:
        extra = (
            " and that the key has permission for this endpoint"
            if api == "shopwired"
            else " and that the orders feature is enabled for the account"
        )
        return f"{name} refused access: check {creds}{extra}"
    if 300 <= status < 400:
        return f"{name} answered with a redirect: check {BASE_URL_VARS[api]}"
    if status == 404 and kind == "not_found":
        return f"not found on {name}"
    text = body_reason_text(body_text)
    if kind == "fatal":
        lead = f"{name} says our request is invalid (a bug or configuration problem)"
    elif kind == "skip":
        lead = f"{name} rejected the data"
    elif status == 429:
        lead = f"{name} rate limit exceeded"
    else:
        lead = f"{name} is unavailable or busy"
    return f"{lead}: {text}" if text else lead


def _from_status(
    api: Api, status: int, body_text: str, retry_after_header: str | None, now: datetime | None
) -> Outcome:
    pair = STATUS_RULES.get(status) or STATUS_CLASS_RULES.get(status // 100) or STATUS_FALLBACK
    kind = _pick(api, pair)
    retry_after = parse_retry_after(retry_after_header, now=now) if kind == "retry" else None
    return Outcome(kind, retry_after, _status_reason(api, status, kind, body_text), status,
                   is_throttle(kind, status, retry_after))


def is_throttle(kind: Kind, status: int, retry_after: float | None) -> bool:
    """A ``retry`` that asks us to slow down: 429, or 503 with a usable ``Retry-After``."""
    return kind == "retry" and (status == 429 or (status == 503 and retry_after is not None))


def int_or_digits(value: Any) -> int | None:
    """A JSON int or a string of digits as int (WiredPlus repeats the HTTP status in its body,
    Elastic Path sends ``status`` and totals either way); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return None


def _classify_success(
    api: Api,
    status: int,
    body_text: str,
    retry_after_header: str | None,
    expect: Expect,
    now: datetime | None,
) -> Outcome:
    name = API_NAMES[api]
    needs_json = expect != "any" or api == "wiredplus"
    value = decode_json(body_text) if needs_json else INVALID_JSON
    if api == "wiredplus" and isinstance(value, dict):
        error = value.get("error")
        if error not in (None, "", False):
            error_text = error if isinstance(error, str) else json.dumps(error)
            inner = int_or_digits(value.get("status"))
            if inner is not None and inner >= 400:
                inner_outcome = _from_status(api, inner, error_text, retry_after_header, now)
                return Outcome(
                    inner_outcome.kind,
                    inner_outcome.retry_after,
                    inner_outcome.reason,
                    status,
                    inner_outcome.throttled,
                )
            return Outcome(
                "skip", None, f"{name} rejected the data: {body_reason_text(error_text)}", status
            )
    if expect == "list" and not isinstance(value, list):
        return Outcome(
            "retry",
            None,
            f"{name} sent {_describe_json(value)} where a JSON array was expected "
            f"(truncated or garbled response): {body_reason_text(body_text, 200)}",
            status,
        )
    if expect == "object" and not isinstance(value, dict):
        return Outcome(
            "retry",
            None,
            f"{name} sent {_describe_json(value)} where a JSON object was expected "
            f"(truncated or garbled response): {body_reason_text(body_text, 200)}",
            status,
        )
    return Outcome("ok", None, "ok", status)


def _from_exception(api: Api, exc: BaseException) -> Outcome:
    column = 0 if api == "shopwired" else 1
    return _exception_outcome(exc, column, API_NAMES[api],
                              f"{BASE_URL_VARS[api]} and {CREDENTIAL_VARS[api]}")


def _exception_outcome(exc: BaseException, column: int, name: str, check: str) -> Outcome:
    """:data:`EXCEPTION_RULES` (``column`` 0 = read, 1 = write) and the reason for a request
    that got no response; ``check`` names the settings a fatal one points at."""
    kind: Kind = EXCEPTION_FALLBACK[column]
    for exc_type, read_kind, write_kind in EXCEPTION_RULES:
        if isinstance(exc, exc_type):
            kind = (read_kind, write_kind)[column]
            break
    detail = truncate(f"{type(exc).__name__}: {exc}", 300)
    if isinstance(exc, httpx.TimeoutException):
        reason = f"{name} timed out ({detail})"
    elif kind == "retry":
        reason = f"could not reach {name} ({detail})"
    elif isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        reason = f"cannot send requests to {name}: check {check} ({detail})"
    else:
        reason = f"unexpected error talking to {name} ({detail})"
    return Outcome(kind, None, reason, None)


def classify(
    api: Api,
    status: int | None,
    exc: BaseException | None,
    body_text: str,
    retry_after_header: str | None,
    *,
    expect: Expect = "any",
    now: datetime | None = None,
) -> Outcome:
    """Classify one HTTP exchange by the module's table.

    Pass ``exc`` (and ``status=None``) when no response arrived, else the response's status,
    text and ``Retry-After`` header. ``expect`` is the JSON shape a 2xx body must have
    (``"list"`` for a bare array, ``"object"``, or ``"any"`` = do not inspect); a 2xx body that
    does not match is ``retry``. ``now`` anchors an HTTP-date ``Retry-After``.

    Raises ValueError when given neither a status nor an exception.
    """
    if exc is not None:
        return _from_exception(api, exc)
    if status is None:
        raise ValueError("classify needs a status or an exception")
    if 200 <= status < 300:
        return _classify_success(api, status, body_text, retry_after_header, expect, now)
    return _from_status(api, status, body_text, retry_after_header, now)


def raise_for_outcome(outcome: Outcome, endpoint: str) -> None:
    """Raise the :mod:`sync.errors` exception matching ``outcome``; return for ok/not_found.

    ``retry`` → RetryableError (carrying ``retry_after``; :class:`~sync.errors.Throttled`
    when the outcome is ``throttled``), ``fatal`` → FatalError,
    ``skip`` → SkippableError. The error's ``endpoint`` and ``status`` are filled in.
    """
    if outcome.kind in ("ok", "not_found"):
        return
    if outcome.kind == "retry":
        error_type = Throttled if outcome.throttled else RetryableError
        raise error_type(
            outcome.reason,
            endpoint=endpoint,
            status=outcome.status,
            retry_after=outcome.retry_after,
        )
    if outcome.kind == "fatal":
        raise FatalError(outcome.reason, endpoint=endpoint, status=outcome.status)
    raise SkippableError(outcome.reason, endpoint=endpoint, status=outcome.status)


# ====================================================================== Elastic Path


def jsonapi_errors(body_text: str) -> list[str]:
    """Readable messages from a JSON:API error body (``errors`` as a list or one object).

    Each is ``"<title>: <detail> (status <n>, request <id>)"`` with the parts present; the
    ``status`` may be an int or a string. Empty when the body is not such a document.
    """
    value = decode_json(body_text)
    if not isinstance(value, Mapping):
        return []
    errors = value.get("errors")
    if isinstance(errors, Mapping):
        errors = [errors]
    if not isinstance(errors, list):
        return []
    out: list[str] = []
    for err in errors[:5]:
        if not isinstance(err, Mapping):
            continue
        title = err.get("title") if isinstance(err.get("title"), str) else None
        detail = err.get("detail") if isinstance(err.get("detail"), str) else None
        text = ": ".join(p for p in (title, detail) if p) or "error"
        notes = []
        status = int_or_digits(err.get("status"))
        if status is not None:
            notes.append(f"status {status}")
        request_id = err.get("request_id")
        if isinstance(request_id, str) and request_id:
            notes.append(f"request {request_id[:64]}")
        out.append(f"{text} ({', '.join(notes)})" if notes else text)
    return out


def _body_reason(body_text: str) -> str:
    return body_reason_text(body_text)


def classify_elasticpath(
    status: int | None,
    exc: BaseException | None,
    body_text: str,
    retry_after_header: str | None,
    *,
    write: bool = False,
    token: bool = False,
    now: datetime | None = None,
) -> Outcome:
    """Classify one Elastic Path exchange by the same table: the *read* column
    (:data:`STATUS_RULES`, :data:`STATUS_CLASS_RULES`, :data:`EXCEPTION_RULES`) for GETs and the
    token, the *write* column when ``write`` (``PUT /v2/orders/:id``).

    A 2xx body must be a JSON object (else ``retry``). ``token`` marks the token endpoint,
    where 400/401/403/422 mean the credentials are wrong (``fatal``).
    """
    if exc is not None:
        return _exception_outcome(exc, 1 if write else 0, EP_NAME, EP_BASE_URL_VAR)
    if status is None:
        raise ValueError("classify_elasticpath needs a status or an exception")
    if 200 <= status < 300:
        value = decode_json(body_text)
        if isinstance(value, dict):
            return Outcome("ok", None, "ok", status)
        shape = "no JSON" if value is INVALID_JSON else f"JSON {type(value).__name__}"
        return Outcome(
            "retry",
            None,
            f"{EP_NAME} sent {shape} where a JSON object was expected (truncated or garbled "
            f"response): {body_reason_text(body_text, 200)}",
            status,
        )
    if token and status in (400, 401, 403, 422):
        return Outcome(
            "fatal",
            None,
            f"{EP_NAME} refused a client-credentials token: check {EP_CREDENTIALS_VARS} "
            f"({_body_reason(body_text)})",
            status,
        )
    pair = (
        STATUS_RULES.get(status) or STATUS_CLASS_RULES.get(status // 100) or STATUS_FALLBACK
    )
    kind = pair[1] if write else pair[0]
    retry_after = parse_retry_after(retry_after_header, now=now) if kind == "retry" else None
    if status == 401:
        reason = f"{EP_NAME} rejected the access token twice: check {EP_CREDENTIALS_VARS}"
    elif status == 403:
        reason = (
            f"{EP_NAME} refused access: check {EP_CREDENTIALS_VARS} and that the key is a "
            "client_credentials key with the Seller Admin role"
        )
    elif 300 <= status < 400:
        reason = f"{EP_NAME} answered with a redirect: check {EP_BASE_URL_VAR}"
    elif kind == "not_found":
        reason = f"not found on {EP_NAME}"
    else:
        lead = {
            "fatal": f"{EP_NAME} says our request is invalid (a bug or configuration problem)",
            "skip": f"{EP_NAME} rejected the change",
        }.get(kind)
        if lead is None:
            busy = "rate limit exceeded" if status == 429 else "is unavailable"
            lead = f"{EP_NAME} {busy}"
        text = _body_reason(body_text)
        reason = f"{lead}: {text}" if text else lead
    return Outcome(kind, retry_after, reason, status, is_throttle(kind, status, retry_after))
