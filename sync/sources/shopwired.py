"""HTTP client for the ShopWired REST API (orders, order statuses).

It returns raw JSON (dicts and lists of dicts); :mod:`sync.domain.parse_shopwired` turns
orders into domain objects. Contract of every public method:

* every request runs through the one request pipeline (:mod:`sync.apiclient`): it first
  waits on the limiter (:data:`~sync.ratelimit.SHOPWIRED_BUCKET` by default), so the
  documented leaky bucket (40, 2/s) is never overrun by this process;
* every transient outcome — 5xx, timeouts, connection resets, a 2xx whose body is not the
  JSON shape expected (a truncated page), 429 — is retried **in place**: ``Retry-After`` when
  sent, else full-jitter backoff from 1 s capped at 30 s, at most ``max_retries`` times;
  then :class:`~sync.errors.RetryableError` (:class:`~sync.errors.Throttled` for a 429);
* the rest by :func:`sync.outcomes.classify`: 401/403 raise FatalError naming
  ``SHOPWIRED_API_KEY/SHOPWIRED_API_SECRET``, a 400 (our query is malformed) is fatal, and
  so is a 404 anywhere but a single order (the base URL is wrong); items inside a list are
  returned as they are, even if not dicts.

Error messages never contain the key or secret. One debug log line per HTTP call
(``endpoint``, ``status``, ``duration_ms``, ``outcome``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
import structlog

from sync.apiclient import ApiProfile, PooledApiClient
from sync.clock import Clock, utc
from sync.domain.retry import RequestRetry
from sync.errors import RetryableError
from sync.httpclient import DEFAULT_TIMEOUT, Exchange, Redactor, build_client
from sync.logs import Log
from sync.outcomes import Expect, Outcome, classify
from sync.ratelimit import SHOPWIRED_BUCKET, LeakyBucket, Limiter

#: Every order property the domain mapping reads; sent as ``fields=`` to keep pages small.
ORDER_FIELDS: Final[tuple[str, ...]] = (
    "id",
    "reference",
    "created",
    "archived",
    "trackingUrl",
    "status",
    "billingAddress",
    "shippingAddress",
    "paymentMethod",
    "total",
    "subTotal",
    "shippingTotal",
    "originalShippingTotal",
    "partialPaymentTotal",
    "tax",
    "discounts",
    "fees",
    "shipping",
    "refunds",
    "products",
    "comments",
    "customer",
    "deliveryDate",
    "transactionId",
    "acceptsMarketing",
)

MAX_PAGE_SIZE: Final = 100
MAX_IDS_PER_CALL: Final = 50
#: In-place retries of one read (5xx, timeouts, resets, truncated pages, 429): at 10 % faults
#: nine tries in a row fail once in a billion requests.
MAX_RETRIES: Final = 8
#: A read is not retried in place once this long has passed since its first try.
RETRY_BUDGET_S: Final = 300.0

#: Rows of the current created second read again at the start of the next page: up to this
#: many orders archived or deleted behind the paging position cannot shift a row out of sight.
SAME_SECOND_OVERLAP: Final = 10

# Endpoint labels (keys of ``ShopWiredClient.calls``).
EP_ORDERS: Final = "orders"
EP_ORDER: Final = "orders/{id}"
EP_COUNT: Final = "orders/count"
EP_STATUSES: Final = "order-statuses"


@dataclass(frozen=True, slots=True)
class ScanPosition:
    """Where a created-date scan stands: ``read_in_second`` rows of the orders created in
    UNIX second ``second`` have been read (see :meth:`ShopWiredClient.iter_order_pages`)."""

    second: int
    read_in_second: int


def _unix(dt: datetime) -> int:
    """UNIX seconds of ``dt`` (naive = UTC), floored."""
    return int(utc(dt).timestamp() // 1)


def _created_at(item: Any) -> datetime | None:
    """An order's ``created`` (RFC 2822) as an aware datetime, or None if unreadable."""
    if not isinstance(item, dict) or not isinstance(item.get("created"), str):
        return None
    try:
        return utc(parsedate_to_datetime(item["created"]))
    except (TypeError, ValueError, IndexError):
        return None


def _fields_param(fields: Sequence[str] | None) -> dict[str, str]:
    if fields is None:
        return {}
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of property names, not a string")
    return {"fields": ",".join(fields)} if fields else {}


def _order_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"order ids must be ints, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"order id must not be negative: {value}")
    return value


class ShopWiredClient(PooledApiClient):
    """Reads orders from one ShopWired store (see the module docstring for the contract).

    ``base_url`` includes the version, e.g. ``https://api.ecommerceapi.uk/v1``; all paths are
    relative to it. ``limiter`` defaults to a fresh :class:`~sync.ratelimit.LeakyBucket` with
    :data:`~sync.ratelimit.SHOPWIRED_BUCKET`; pass a shared one when several clients use the
    same store. ``rng`` drives the backoff jitter (seed it in tests). A ``Retry-After`` longer
    than ``max_retry_after`` seconds is not waited out in-process: Throttled is raised at
    once with that ``retry_after``.

    Attributes: ``calls`` counts HTTP requests by endpoint label (``orders``, ``orders/{id}``,
    ``orders/count``, ``order-statuses``); ``throttled`` counts 429 (and 503 + Retry-After)
    responses; ``circuit`` is the account's :class:`~sync.apiclient.Circuit`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        clock: Clock,
        transport: httpx.BaseTransport | None = None,
        limiter: Limiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = MAX_RETRIES,
        logger: Log | None = None,
        rng: random.Random | None = None,
        max_retry_after: float = 300.0,
    ) -> None:
        self._init_pipeline(
            ApiProfile(
                "shopwired", "ShopWired",
                RequestRetry(max_retries=max_retries, budget=RETRY_BUDGET_S),
                max_retry_after=max_retry_after,
            ),
            clock=clock,
            limiter=(
                limiter if limiter is not None
                else LeakyBucket.from_spec(SHOPWIRED_BUCKET, clock)
            ),
            http=build_client(
                base_url, (api_key, api_secret), transport=transport, timeout=timeout
            ),
            log=logger if logger is not None else structlog.get_logger("ordersync.shopwired"),
            rng=rng,
            redactor=Redactor(api_key, api_secret, mask_user=True),
        )

    def _get(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, str | int],
        *,
        expect: Expect,
        allow_not_found: bool = False,
    ) -> Any:
        """GET ``path`` through the pipeline; the decoded JSON, or None for a 404 when
        ``allow_not_found``."""

        def classify_read(ex: Exchange) -> Outcome:
            return classify("shopwired", ex.status, ex.exc, ex.text, ex.retry_after,
                            expect=expect, now=self._clock.now())

        return self._request_json(
            endpoint, "GET", path, classify=classify_read, allow_not_found=allow_not_found,
            base_url_hint="SHOPWIRED_BASE_URL (it must include the version, e.g. "
            "https://api.ecommerceapi.uk/v1)",
            params=dict(params),
        )

    # -- orders ------------------------------------------------------------------------------
    def list_orders(
        self,
        *,
        created_from: datetime,
        created_to: datetime,
        offset: int,
        count: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | None = ORDER_FIELDS,
        sort: str = "date",
        archived: bool | None = None,
    ) -> list[Any]:
        """One page of orders created in [``created_from``, ``created_to``] (UNIX seconds).

        ``count`` is 1 to 100 (ValueError otherwise), ``offset`` ≥ 0. ``fields=None`` or ``()``
        asks for every property. ``archived`` sends ``archived=0|1``; without it ShopWired
        lists regular (non-archived) orders only. Returns the bare array as sent.
        """
        if not 1 <= count <= MAX_PAGE_SIZE:
            raise ValueError(f"count must be between 1 and {MAX_PAGE_SIZE}, got {count}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        params: dict[str, str | int] = {
            "from": _unix(created_from),
            "to": _unix(created_to),
            "count": count,
            "offset": offset,
            "sort": sort,
            **_fields_param(fields),
        }
        if archived is not None:
            params["archived"] = 1 if archived else 0
        page: list[Any] = self._get(EP_ORDERS, "orders", params, expect="list")
        return page

    def iter_orders_in_window(
        self,
        created_from: datetime,
        created_to: datetime,
        *,
        page_size: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | None = ORDER_FIELDS,
        archived: bool | None = None,
    ) -> Iterator[list[Any]]:
        """Pages of orders created in the window, oldest first (:meth:`iter_order_pages`
        without the positions)."""
        for page, _ in self.iter_order_pages(created_from, created_to, page_size=page_size,
                                             fields=fields, archived=archived):
            yield page

    def iter_order_pages(
        self,
        created_from: datetime,
        created_to: datetime,
        *,
        page_size: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | None = ORDER_FIELDS,
        archived: bool | None = None,
        resume: ScanPosition | None = None,
    ) -> Iterator[tuple[list[Any], ScanPosition]]:
        """Pages of orders created in the window, oldest first, each with the position to
        resume from after it (``resume`` continues a scan that stopped there).

        Keyset paging on ``(created second, rank within that second)``: each request starts
        at the created second of the last row received (``from`` is inclusive) at the offset
        of the rows of that second already read **minus** :data:`SAME_SECOND_OVERLAP`. So

        * any number of orders sharing one second is read completely (a bulk import of 500
          in one second pages through it, 90 new rows a page), and no page is ever asked
          for twice — every full page moves the position forward;
        * an order archived or deleted *behind* the position between two requests shifts the
          rows by one: the overlap re-reads it instead of skipping a row (offset paging
          would lose it). Rows already yielded are dropped.

        Rows without a readable ``created`` are paged by offset. Stops after a short page (an
        empty page is not yielded). Raises RetryableError if the server ignores the paging
        (the same request would be sent twice), rather than looping for ever.
        """
        second = resume.second if resume is not None else _unix(created_from)
        read_in_second = resume.read_in_second if resume is not None else 0
        overlap = min(SAME_SECOND_OVERLAP, page_size // 2)
        seen: set[Any] = set()  # ids yielded at ``second``
        dated = True  # False: the last page had no readable dates, page by offset alone
        while True:
            offset = max(0, read_in_second - (overlap if dated else 0))
            page = self.list_orders(
                created_from=datetime.fromtimestamp(second, UTC),
                created_to=created_to,
                offset=offset,
                count=page_size,
                fields=fields,
                archived=archived,
            )
            if not page:
                return
            ids = [item.get("id") if isinstance(item, dict) else None for item in page]
            fresh = [item for item, oid in zip(page, ids, strict=True)
                     if oid is None or oid not in seen]
            seconds = [_unix(c) if (c := _created_at(item)) is not None else None
                       for item in page]
            if len(page) == page_size and not fresh:
                raise RetryableError(
                    f"ShopWired returned the same page twice (from {second}, offset {offset})",
                    endpoint=EP_ORDERS,
                )
            last = max((x for x in seconds if x is not None), default=None)
            dated = last is not None
            if last is None or last <= second:
                read_in_second = offset + len(page)  # the page is inside one second
                seen |= {i for i in ids if i is not None}
            else:
                second = last
                at_last = [oid for oid, x in zip(ids, seconds, strict=True) if x == last]
                read_in_second = len(at_last)
                seen = {i for i in at_last if i is not None}
            position = ScanPosition(second, read_in_second)
            if fresh:
                yield fresh, position
            if len(page) < page_size:
                return

    def get_orders_by_ids(
        self, ids: Sequence[int], fields: Sequence[str] | None = ORDER_FIELDS
    ) -> list[Any]:
        """Current state of the given orders, 50 ids per call (``ids=1,2,3``), concatenated.

        Duplicate ids are asked for once; ids the shop does not return (deleted) are simply
        absent. No call is made for an empty ``ids``.
        """
        unique = list(dict.fromkeys(_order_id(i) for i in ids))
        out: list[Any] = []
        for start in range(0, len(unique), MAX_IDS_PER_CALL):
            batch = unique[start : start + MAX_IDS_PER_CALL]
            params: dict[str, str | int] = {
                "ids": ",".join(str(i) for i in batch),
                "count": len(batch),
                **_fields_param(fields),
            }
            page: list[Any] = self._get(EP_ORDERS, "orders", params, expect="list")
            out.extend(page)
        return out

    def get_order(
        self, order_id: int, fields: Sequence[str] | None = ORDER_FIELDS
    ) -> dict[str, Any] | None:
        """One order, or None when ShopWired answers 404."""
        oid = _order_id(order_id)
        order: dict[str, Any] | None = self._get(
            EP_ORDER, f"orders/{oid}", _fields_param(fields), expect="object", allow_not_found=True
        )
        return order

    def count_orders(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        archived: bool | None = None,
    ) -> int:
        """``GET orders/count`` (optionally by created date) → the ``count`` as an int.

        A body without a usable integer ``count`` raises RetryableError.
        """
        params: dict[str, str | int] = {}
        if created_from is not None:
            params["from"] = _unix(created_from)
        if created_to is not None:
            params["to"] = _unix(created_to)
        if archived is not None:
            params["archived"] = 1 if archived else 0
        body: dict[str, Any] = self._get(EP_COUNT, "orders/count", params, expect="object")
        value = body.get("count")
        if isinstance(value, str) and value.strip().isdecimal():
            return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, float) and value.is_integer() and value >= 0:
            return int(value)
        raise RetryableError("ShopWired sent no usable order count", endpoint=EP_COUNT)

    def order_statuses(self) -> list[Any]:
        """Every order status of the store (``GET order-statuses``, one bare array)."""
        statuses: list[Any] = self._get(EP_STATUSES, "order-statuses", {}, expect="list")
        return statuses
