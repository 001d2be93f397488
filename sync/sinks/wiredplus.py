"""HTTP client for the WiredPlus v1 API: UpdateOrder, CreateOrderEvent, GetAccountInfo.

Every call runs through the one request pipeline (:mod:`sync.apiclient`). Delivery
guarantees are driven by the caller's ledger; the client only retries briefly in place:

* it waits on its own client-side limiter (an :class:`~sync.ratelimit.HourlyBudget` by
  default); if that wait would exceed ``max_limiter_wait`` it raises
  :class:`~sync.errors.Throttled` with ``retry_after`` instead of holding a worker;
* 5xx, connection errors, a lost response and 429 are retried in place up to
  :data:`MAX_RETRIES` times within :data:`RETRY_BUDGET_S` seconds (``Retry-After`` when sent;
  a 429 — or 503 with Retry-After — also penalises the limiter); a timeout is not retried in
  place. What remains raises RetryableError (:class:`~sync.errors.Throttled` for a throttle,
  :class:`~sync.errors.Unavailable` while the account's circuit is open);
* 400/422, other 4xx, a 404 and a 2xx body with an ``error`` raise
  :class:`~sync.errors.SkippableError` with WiredPlus's text (≤ 500 characters);
* 401/403 raise :class:`~sync.errors.FatalError` naming ``WIREDPLUS_API_USER/WIREDPLUS_API_KEY``;
* a 2xx without a JSON object carrying an ``id`` raises RetryableError: we cannot know the
  WiredPlus id, and both writes are upserts (by ``api_reference_id`` / ``event_reference``),
  so sending again is safe.

Every outcome is classified by :func:`sync.outcomes.classify`. Payloads are serialised
compactly (``json.dumps(payload, separators=(",", ":"))``), so the same payload always sends
the same bytes. Messages never contain the API key.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from sync.apiclient import ApiProfile, PooledApiClient
from sync.clock import Clock
from sync.domain.mapping import is_custom_field_rejection, without_custom_fields
from sync.domain.retry import RequestRetry
from sync.errors import RetryableError, SkippableError
from sync.httpclient import DEFAULT_TIMEOUT, Exchange, Redactor, build_client
from sync.logs import Log
from sync.outcomes import Outcome, body_reason_text, classify
from sync.ratelimit import AccountAwareLimiter, HourlyBudget, Limiter

#: Calls per hour assumed until GetAccountInfo reports the real budget.
DEFAULT_HOURLY_LIMIT: Final = 5000

#: In-place retries of one call (5xx, resets, a lost response, 429 with a short Retry-After).
#: Both writes are upserts, so sending again is safe. Kept short: the order's lease must
#: outlast the call (sync.service.push.CALL_ALLOWANCE_S), and the ledger retries the rest.
MAX_RETRIES: Final = 3
RETRY_BUDGET_S: Final = 10.0
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 4.0

EP_UPDATE_ORDER: Final = "UpdateOrder"
EP_CREATE_EVENT: Final = "CreateOrderEvent"
EP_ACCOUNT_INFO: Final = "GetAccountInfo"
EP_BULK_UPDATE: Final = "BulkOrderUpdate"

#: Records per BulkOrderUpdate until GetAccountInfo reports ``max_update_rows``.
DEFAULT_MAX_UPDATE_ROWS: Final = 50


@dataclass(frozen=True, slots=True)
class BulkDelivered:
    """One BulkOrderUpdate record stored by WiredPlus: its WiredPlus order id."""

    wiredplus_id: str


@dataclass(frozen=True, slots=True)
class BulkRejected:
    """One record WiredPlus refused (this order's dead letter); ``reason`` is redacted."""

    reason: str


@dataclass(frozen=True, slots=True)
class BulkUnanswered:
    """A record whose result could not be read: retry it (UpdateOrder is an upsert)."""

    reason: str


BulkRecordResult = BulkDelivered | BulkRejected | BulkUnanswered


class BulkRefused(Exception):
    """WiredPlus (or the account) refuses BulkOrderUpdate: send these orders one by one with
    UpdateOrder. Nothing was stored."""


def _to_utc_datetime(value: Any) -> datetime | None:
    """UNIX seconds (int, float or digit string; milliseconds tolerated) or an ISO date string.

    Anything unreadable gives None: a bad reset time must not make the account unreadable.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            text = value.strip()
            try:
                number = float(text)
            except ValueError:
                dt = datetime.fromisoformat(text)
                return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        elif isinstance(value, int | float):
            number = float(value)
        else:
            return None
        if number > 1e11:  # milliseconds
            number /= 1000.0
        return datetime.fromtimestamp(number, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _to_int(value: Any) -> int | None:
    """An int from an int, an integral float or a numeric string; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    if not number.is_integer():
        return None
    return int(number)


class AccountInfo(BaseModel):
    """``GetAccountInfo``: the account and its hourly API budget.

    Numbers may arrive as strings. ``ratelimit_reset`` is an aware UTC datetime (WiredPlus
    sends UNIX seconds). Any field WiredPlus leaves out is None: the live shape is not
    documented in full, so nothing here is required.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    account_name: str | None = None
    api_user: str | None = None
    ratelimit_limit: int | None = None
    ratelimit_remaining: int | None = None
    ratelimit_reset: datetime | None = None
    max_update_rows: int | None = None
    max_return_rows: int | None = None

    @field_validator("ratelimit_reset", mode="before")
    @classmethod
    def _reset(cls, value: Any) -> Any:
        return _to_utc_datetime(value)

    @field_validator("account_name", "api_user", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return None

    @field_validator(
        "ratelimit_limit",
        "ratelimit_remaining",
        "max_update_rows",
        "max_return_rows",
        mode="before",
    )
    @classmethod
    def _number(cls, value: Any) -> Any:
        return _to_int(value)


def _wp_id(value: Any) -> str | None:
    """A WiredPlus id as a string: ints, integral floats and non-blank strings."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _account_body(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object holding the account fields: the body itself or one level down."""
    if "ratelimit_limit" in body or "account_name" in body:
        return body
    for value in body.values():
        if isinstance(value, Mapping) and ("ratelimit_limit" in value or "account_name" in value):
            return value
    return body


class WiredPlusClient(PooledApiClient):
    """Writes orders and order events to one WiredPlus account (contract: module docstring).

    ``base_url`` includes the version, e.g. ``https://api.wiredplus.com/v1``. Basic auth is
    (``api_user`` = the API key's name, ``api_key``). ``limiter`` defaults to an
    :class:`~sync.ratelimit.HourlyBudget` of :data:`DEFAULT_HOURLY_LIMIT` calls per hour;
    :meth:`account_info` feeds the reported budget to any limiter that has
    ``update_from_account_info``. ``calls`` counts requests by method name.
    """

    def __init__(
        self,
        base_url: str,
        api_user: str,
        api_key: str,
        *,
        clock: Clock,
        transport: httpx.BaseTransport | None = None,
        limiter: Limiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        logger: Log | None = None,
        max_limiter_wait: float = 30.0,
        max_retries: int = MAX_RETRIES,
        rng: random.Random | None = None,
        bulk: bool = True,
    ) -> None:
        #: Whether :meth:`bulk_update_orders` may be tried (ORDERSYNC_WIREDPLUS_BULK); turned
        #: off for good once the account refuses it.
        self.bulk_enabled = bulk
        self.max_update_rows = DEFAULT_MAX_UPDATE_ROWS
        self._init_pipeline(
            ApiProfile(
                "wiredplus", "WiredPlus",
                RequestRetry(max_retries=max_retries, base=BACKOFF_BASE, cap=BACKOFF_CAP,
                             budget=RETRY_BUDGET_S, retry_timeouts=False),
                max_limiter_wait=max_limiter_wait,
                max_retry_after=RETRY_BUDGET_S,
            ),
            clock=clock,
            limiter=(
                limiter if limiter is not None else HourlyBudget(DEFAULT_HOURLY_LIMIT, clock)
            ),
            http=build_client(
                base_url, (api_user, api_key), transport=transport, timeout=timeout
            ),
            log=logger if logger is not None else structlog.get_logger("ordersync.wiredplus"),
            rng=rng,
            redactor=Redactor(api_user, api_key, mask_user=False),
        )

    def _call(self, endpoint: str, method: str, **kwargs: Any) -> dict[str, Any]:
        """One request through the pipeline; the decoded JSON object of a successful answer,
        else raises."""

        def classify_write(ex: Exchange) -> Outcome:
            return classify("wiredplus", ex.status, ex.exc, ex.text, ex.retry_after,
                            expect="object", now=self._clock.now())

        body: dict[str, Any] = self._request_json(
            endpoint, method, endpoint, classify=classify_write,
            base_url_hint="WIREDPLUS_BASE_URL", **kwargs,
        )
        return body

    def _post(self, endpoint: str, payload: Mapping[str, Any]) -> str:
        content = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
        body = self._call(
            endpoint,
            "POST",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        wp_id = _wp_id(body.get("id"))
        if wp_id is None:
            raise RetryableError(
                "WiredPlus accepted the request but sent no id; it will be sent again",
                endpoint=endpoint,
            )
        return wp_id

    # -- API ---------------------------------------------------------------------------------
    def update_order(self, payload: Mapping[str, Any]) -> str:
        """POST ``UpdateOrder`` (an upsert by ``api_reference_id``); the WiredPlus order id.

        ``payload`` must be JSON-ready (ValueError/TypeError otherwise: a mapping bug).
        """
        return self._post_custom_fields_optional(EP_UPDATE_ORDER, payload)

    def create_order_event(self, payload: Mapping[str, Any]) -> str:
        """POST ``CreateOrderEvent`` (an upsert by ``event_reference``); the event id."""
        return self._post_custom_fields_optional(EP_CREATE_EVENT, payload)

    # -- issue #13 row 8: custom fields never cost an order or its email ----------------------
    def _post_custom_fields_optional(self, endpoint: str, payload: Mapping[str, Any]) -> str:
        """POST; a body WiredPlus rejects for its custom fields (not pre-defined in the
        account) is sent once more without them, and the rejection logged."""
        try:
            return self._post(endpoint, payload)
        except SkippableError as err:
            bare = without_custom_fields(payload)
            if bare is None or not is_custom_field_rejection(err.message):
                raise
            self._log.warning("wiredplus.custom_fields_rejected", endpoint=endpoint,
                              reason=err.message, fields=sorted(payload["custom_fields"]))
            return self._post(endpoint, bare)

    # -- issue #17: BulkOrderUpdate ------------------------------------------------------------
    def bulk_update_orders(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[BulkRecordResult]:
        """POST ``BulkOrderUpdate`` (``{"orders": [...]}``, at most :attr:`max_update_rows`
        records); one result per payload, in order (WiredPlus answers by position).

        Same pipeline as :meth:`update_order`: one budget unit per request, transient failures
        retried in place (every record is an upsert by ``api_reference_id``, so resending is
        harmless), what remains raises RetryableError / Throttled / Unavailable for the whole
        request, 401 raises FatalError. A 403/404 (the feature is not enabled for the account
        or the API has no such method) turns bulk off for this client and raises
        :class:`BulkRefused`: the caller sends UpdateOrder instead (a real credentials
        problem then surfaces there as fatal). A whole-request rejection (400) raises
        BulkRefused without turning bulk off. A record rejected for its custom fields is sent
        once more without them, as :meth:`update_order` does.
        """
        if not self.bulk_enabled:
            raise BulkRefused("BulkOrderUpdate is turned off")
        if not payloads or len(payloads) > self.max_update_rows:
            raise ValueError(f"a BulkOrderUpdate takes 1..{self.max_update_rows} orders")
        content = json.dumps({"orders": list(payloads)}, separators=(",", ":"),
                             allow_nan=False).encode("utf-8")

        def classify_bulk(ex: Exchange) -> Outcome:
            return classify("wiredplus", ex.status, ex.exc, ex.text, ex.retry_after,
                            expect="object", now=self._clock.now())

        ex, outcome = self._request(
            EP_BULK_UPDATE, "POST", EP_BULK_UPDATE, classify=classify_bulk, content=content,
            headers={"Content-Type": "application/json"},
        )
        if ex.status in (403, 404) and outcome.kind in ("fatal", "not_found", "skip"):
            self.bulk_enabled = False
            reason = self._redact(body_reason_text(ex.text, 200))
            self._log.warning("wiredplus.bulk_refused", status=ex.status, reason=reason)
            raise BulkRefused(f"WiredPlus refused BulkOrderUpdate ({ex.status}): {reason}")
        if outcome.kind == "skip":
            raise BulkRefused(self._redact(outcome.reason))
        if outcome.kind != "ok":
            self._raise(outcome, EP_BULK_UPDATE, ex.exc)
        body = json.loads(ex.text)
        entries = body.get("results") if isinstance(body, dict) else None
        if not isinstance(entries, list) or len(entries) != len(payloads):
            raise RetryableError(
                "WiredPlus answered BulkOrderUpdate without one result per order; the orders "
                "will be sent again", endpoint=EP_BULK_UPDATE,
            )
        results = [self._bulk_result(entry) for entry in entries]
        return self._resend_without_custom_fields(payloads, results)

    def _bulk_result(self, entry: Any) -> BulkRecordResult:
        if not isinstance(entry, Mapping):
            return BulkUnanswered("WiredPlus sent an unreadable BulkOrderUpdate result")
        error = entry.get("error")
        status = _to_int(entry.get("status"))
        if error not in (None, "", False) or (status is not None and status >= 400):
            text = error if isinstance(error, str) else json.dumps(error)
            return BulkRejected(
                self._redact(f"WiredPlus rejected the data: {body_reason_text(text)}")
            )
        wp_id = _wp_id(entry.get("id"))
        if wp_id is None:
            return BulkUnanswered("WiredPlus stored the order but sent no id")
        return BulkDelivered(wp_id)

    def _resend_without_custom_fields(
        self, payloads: Sequence[Mapping[str, Any]], results: list[BulkRecordResult]
    ) -> list[BulkRecordResult]:
        again: list[int] = []
        bare_payloads: list[Mapping[str, Any]] = []
        for i, (payload, result) in enumerate(zip(payloads, results, strict=True)):
            if isinstance(result, BulkRejected) and is_custom_field_rejection(result.reason):
                bare = without_custom_fields(payload)
                if bare is not None:
                    self._log.warning("wiredplus.custom_fields_rejected",
                                      endpoint=EP_BULK_UPDATE, reason=result.reason,
                                      fields=sorted(payload["custom_fields"]))
                    again.append(i)
                    bare_payloads.append(bare)
        if again:
            for i, result in zip(again, self.bulk_update_orders(bare_payloads), strict=True):
                results[i] = result
        return results

    def account_info(self) -> AccountInfo:
        """GET ``GetAccountInfo``; also hands the budget to the limiter when it can take it.

        An answer that cannot be read as account info raises RetryableError.
        """
        body = self._call(EP_ACCOUNT_INFO, "GET")
        try:
            info = AccountInfo.model_validate(dict(_account_body(body)))
        except ValidationError as exc:
            raise RetryableError(
                f"WiredPlus sent unreadable account info ({exc.error_count()} problems)",
                endpoint=EP_ACCOUNT_INFO,
            ) from None
        if isinstance(self._limiter, AccountAwareLimiter):
            self._limiter.update_from_account_info(
                info.ratelimit_limit, info.ratelimit_remaining, info.ratelimit_reset
            )
        if info.max_update_rows is not None and info.max_update_rows >= 1:
            self.max_update_rows = info.max_update_rows
        return info
