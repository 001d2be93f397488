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
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
import structlog

from sync.apiclient import ApiProfile, PooledApiClient
from sync.clock import Clock, utc
from sync.domain.retry import RequestRetry
from sync.errors import RetryableError
from sync.httpclient import DEFAULT_TIMEOUT, Exchange, Redactor, build_client
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

# Endpoint labels (keys of ``ShopWiredClient.calls``).
EP_ORDERS: Final = "orders"
EP_ORDER: Final = "orders/{id}"
EP_COUNT: Final = "orders/count"
EP_STATUSES: Final = "order-statuses"


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
        logger: Any = None,
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
        """Pages of orders created in the window, oldest first, paged by created date.

        Keyset paging: each request starts at the created second of the last row received
        (``from`` is inclusive) with offset 0, so an order archived or deleted *behind* the
        cursor between two requests cannot shift a row out of sight (offset paging would skip
        one). Rows of that second already yielded are dropped (about one call per 99 orders).
        Rows without a readable ``created`` are paged by offset.
        Stops after a short page (an empty page is not yielded). Raises RetryableError if the
        server sends the same page twice (it ignored the paging), rather than looping for ever.
        """
        cursor = created_from
        skip = 0
        seen_at_cursor: set[Any] = set()
        previous_ids: list[Any] | None = None
        while True:
            page = self.list_orders(
                created_from=cursor,
                created_to=created_to,
                offset=skip,
                count=page_size,
                fields=fields,
                archived=archived,
            )
            if not page:
                return
            ids = [item.get("id") if isinstance(item, dict) else None for item in page]
            if previous_ids is not None and ids == previous_ids and any(i is not None for i in ids):
                raise RetryableError(
                    f"ShopWired returned the same page twice (from {_unix(cursor)}, "
                    f"offset {skip})",
                    endpoint=EP_ORDERS,
                )
            previous_ids = ids
            fresh = [
                item for item in page
                if not (isinstance(item, dict) and item.get("id") in seen_at_cursor)
            ]
            if fresh:
                yield fresh
            if len(page) < page_size:
                return
            last = _created_at(page[-1])
            if last is None or _unix(last) <= _unix(cursor):
                skip += len(page)  # a page-full second (or no date): page within it
                seen_at_cursor |= {i for i in ids if i is not None}
            else:
                cursor = last
                seen_at_cursor = {
                    item.get("id") for item in page
                    if isinstance(item, dict) and (c := _created_at(item)) is not None
                    and _unix(c) == _unix(last)
                }
                # Offset 0, not "after the rows of that second already read": one of them may
                # have left the list meanwhile, and the next row would be skipped (lost). The
                # few rows of one second are read twice instead; duplicates are dropped.
                skip = 0

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
