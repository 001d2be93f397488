"""A faithful local simulator of the Elastic Path Commerce Cloud orders API (``/v2``).

Contract
--------
``ElasticPathSimulator.handle(request) -> response`` is thread-safe and usable directly as
``httpx.MockTransport(sim.handle)`` or served over HTTP by :mod:`sync.sandbox.server`. Paths
are matched from ``/oauth/`` or ``/v2/`` on, whatever the host or any prefix before it.

Endpoints (sources: the "Update an Order" page in ``shared/api-docs/003_*``; notes:
``wiredplus-elasticpath.md`` Part B)

===============================  ============================================================
``POST /oauth/access_token``     form-encoded ``grant_type=client_credentials&client_id=…
                                 &client_secret=…`` (or ``implicit`` + ``client_id``) →
                                 ``{access_token, token_type: "Bearer", expires_in, expires,
                                 identifier}``, top level or wrapped in ``data``
                                 (``token_shape``)
``GET /v2/orders``               ``filter sort page[limit] page[offset] include`` → ``data``,
                                 ``links``, ``meta.page {limit, offset, current, total}``,
                                 ``meta.results.total``; ``included.items`` with
                                 ``include=items``
``GET /v2/orders/{id}``          ``{"data": order}`` (+ ``included.items``); 404 when missing
``GET /v2/orders/{id}/items``    ``{"data": [order_item, …]}``
``PUT /v2/orders/{id}``          JSON ``{"data": {"type": "order", …}}`` → ``{"data": order}``
===============================  ============================================================

Errors are JSON:API ``{"errors": [{"status": <int>, "title": …, "detail": …}]}`` with the
documented codes: 400 validation / bad filter / bad JSON, 401 ``Unable to validate access
token``, 403 permissions, 404 not found, 405 method, 422 ``Order cannot be updated in its
current state``, 429 rate limited, 500. A 401 on ``PUT`` uses the page's own example shape,
``{"errors": {"status": 401, "title": "Unauthorized"}}`` (one object, not a list), so
clients must accept both.

Documented behaviour simulated
------------------------------
* Tokens expire ``token_ttl`` seconds (3600) after issue, on ``clock.now()``; an expired,
  unknown or missing bearer token gets 401. An implicit token cannot read orders (403).
* Paging: ``page[limit]`` 1–100 (default 25, the guide's figure); ``page[offset]``
  zero-based, in records.
* Filters ``op(field,value)`` joined by ``:`` (AND), at most 10; operands quoted (``"…"``,
  the beta parser) or bare. ``created_at``/``updated_at`` take ``eq gt ge lt le`` with an
  ISO-8601 timestamp (0–9 fractional digits), a ``YYYY-MM-DD`` date (midnight UTC) or epoch
  milliseconds; ``status payment shipping currency external_ref order_number`` take ``eq``;
  ``with_tax without_tax`` take ``gt ge lt le`` (minor units). Anything else: 400 ``Could
  not parse the supplied filter``.
* ``sort``: ``created_at updated_at with_tax status payment shipping``, ``-`` for descending;
  default ``-updated_at``.
* ``PUT`` rules: only ``status`` (only to ``cancelled``), ``shipping`` (only to
  ``fulfilled``), ``shipping_address``, ``external_ref`` (≤ 64 characters), ``order_number``
  and custom (flow) fields may be sent; ``""`` clears ``external_ref``/``order_number``.
  Cancel only when not fulfilled; fulfil only when ``payment`` is ``paid``; change
  ``shipping``/``shipping_address``/``status`` only when not fulfilled — else 422 and nothing
  changes. A body that changes something sets ``updated_at`` to ``clock.now()``.
* Rate limit: at most ``rate_limit_per_second`` (25, a development store) accepted requests
  in any one second of ``clock.monotonic()``; the next gets 429.

Choices where the documents are silent or ambiguous
---------------------------------------------------
* **Offset cap**: the docs say ``/v2/orders`` has a hard offset limit of 10,000 and that
  "past that, an unfiltered request errors". Assumed here: *any* request with
  ``page[offset]`` above ``max_offset`` (10,000) gets 400, filtered or not.
* ``sort=updated_at`` (ascending) is accepted (the docs omit it from the sortable list but
  use ``-updated_at`` in an example). Ties sort by ``id`` (descending for ``-``).
* Timestamps are kept at ``timestamp_digits`` fractional digits (default 3, as in EP's
  ``…59.715Z``; 0–9 allowed, digits past 6 rendered as zeros) and filters compare them at
  that precision; an operand with more digits is truncated to microseconds.
* Authentication is checked before the rate limit (401s use no budget); the token endpoint
  counts against the limit. 429 carries ``Retry-After`` only with ``retry_after_on_429``
  (EP documents no such header). Injected faults (:mod:`sync.sandbox.faults`) come first.
* Switches, changeable while serving: ``revoked = True`` answers the token endpoint 401
  ``Invalid client credentials`` and every other request 401 (issued tokens stop working,
  as when the API key is deleted); ``outage = True`` answers every request 503 with the
  load balancer's HTML page, before anything else.
* ``PUT`` needs ``Content-Type: application/json`` (else 400). Immutable fields (``payment``,
  ``customer``, ``billing_address``, ``meta``, …) get 400; a ``data.id`` other than the path
  id gets 400. Cancelling a cancelled order, or fulfilling a cancelled one, is 422 (the
  first would change nothing, the second is not a state EP describes).
* Money in generated orders is consistent: per item ``without_tax.unit`` is after discounts,
  ``discount.unit`` negative, ``tax.unit`` = round(unit × rate); the order's ``without_tax``
  = Σ item values + ``shipping`` (untaxed), ``with_tax`` = ``without_tax`` + Σ item tax.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final
from urllib.parse import parse_qs

import httpx

from sync.clock import Clock, utc
from sync.sandbox._common import (
    FaultPlan,
    Latency,
    apply_latency_and_timeout,
    fault_response,
    html_response,
    json_response,
    plan_faults,
    whole_seconds,
)
from sync.sandbox.faults import Faults

MAX_LIMIT: Final = 100
DEFAULT_LIMIT: Final = 25
MAX_OFFSET: Final = 10_000
MAX_FILTERS: Final = 10
EXTERNAL_REF_MAX: Final = 64
TOKEN_TTL: Final = 3600
DEVELOPMENT_RATE: Final = 25

STATUS_VALUES: Final = ("incomplete", "processing", "complete", "cancelled")
PAYMENT_VALUES: Final = (
    "unpaid", "authorized", "partially_authorized", "paid", "partially_paid", "refunded",
)
SHIPPING_VALUES: Final = ("unfulfilled", "fulfilled")

_TIMESTAMP_FIELDS: Final = ("created_at", "updated_at")
_EQ_FIELDS: Final = ("status", "payment", "shipping", "currency", "external_ref", "order_number")
_AMOUNT_FIELDS: Final = ("with_tax", "without_tax")
_SORTS: Final = ("created_at", "updated_at", "with_tax", "status", "payment", "shipping")
_INCLUDES: Final = frozenset({"items", "tax_items", "custom_discounts", "promotions"})
_ADDRESS_FIELDS: Final = frozenset(
    {
        "first_name", "last_name", "phone_number", "company_name", "line_1", "line_2", "city",
        "county", "region", "postcode", "country", "instructions",
    }
)
_IMMUTABLE: Final = frozenset(
    {
        "payment", "customer", "contact", "billing_address", "meta", "relationships", "links",
        "anonymized", "currency", "account", "payment_intent_id",
    }
)
_EXPONENTS: Final = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "KWD": 3, "BHD": 3}
_SYMBOLS: Final = {"GBP": "£", "USD": "$", "EUR": "€", "JPY": "¥"}

_FILTER = re.compile(
    r'\s*([a-z]+)\(\s*([a-z_.]+)\s*,\s*("(?:[^"\\]|\\.)*"|[^()"]*?)\s*\)\s*'
)
_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class _ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


_TITLES: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def _error(status: int, detail: str, title: str | None = None) -> httpx.Response:
    """A JSON:API error document with one error."""
    return json_response(
        status,
        {"errors": [{"status": status, "title": title or _TITLES.get(status, "Error"),
                     "detail": detail}]},
    )


def _fault_error(status: int, message: str) -> httpx.Response:
    return _error(status, message)


def parse_ep_timestamp(value: str) -> datetime | None:
    """An EP timestamp (0–9 fractional digits, ``Z``/offset/none = UTC) → aware UTC, or None."""
    m = _TS.match(value.strip())
    if m is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        micro = int((m.group(7) or "").ljust(6, "0")[:6])
        dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None
    offset = m.group(8)
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def _price(amount: int, currency: str) -> dict[str, Any]:
    """``{amount, currency, formatted}`` for an amount in minor units."""
    exp = _exponent(currency)
    major = Decimal(amount).scaleb(-exp)
    sign = "-" if amount < 0 else ""
    symbol = _SYMBOLS.get(currency)
    body = f"{abs(major):,.{exp}f}"
    formatted = f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency}"
    return {"amount": amount, "currency": currency, "formatted": formatted}


def _minor(major: Decimal, currency: str) -> int:
    return int((major * (Decimal(10) ** _exponent(currency))).to_integral_value(ROUND_HALF_UP))


# ------------------------------------------------------------------------- generated data

_FIRST: Final = ("Siobhán", "James", "Zoë", "Łukasz", "Priya", "Renée", "Kwame", "Mary Ann")
_LAST: Final = ("O'Neil", "Macdowall", "Müller", "García", "Nguyen", "Brontë", "van der Berg")
_STREETS: Final = ("High Street", "Carliol Square", "St. Mary's Road", "Ffordd Pen-y-Bryn")
_PLACES: Final = (
    ("Newcastle upon Tyne", "Tyne and Wear", "NE1 6UF", "GB"),
    ("Manchester", "Greater Manchester", "M1 1AE", "GB"),
    ("Cardiff", "South Glamorgan", "CF10 1EP", "GB"),
    ("Dublin", "County Dublin", "D02 X285", "IE"),
    ("Austin", "Texas", "73301", "US"),
)
_PRODUCTS: Final = (
    ("Spam Fritters", "spam-fritters-0716", Decimal("100.00"), 0),
    ("Woodsy", "WDLP100BRO", Decimal("400.00"), 20),
    ("Merino Wool Jumper", "MWJ-M-OAT", Decimal("49.99"), 20),
    ("Café Crème Coffee Beans 1kg", "COF-CC-1K", Decimal("18.50"), 0),
    ("Ceramic Mug — 'Best Mum'", "MUG-MUM", Decimal("7.49"), 20),
    ("Energy-saving LED Bulb (4 pack)", "LED-4PK", Decimal("9.52"), 5),
)
_SHIPPING: Final = (Decimal("0"), Decimal("3.95"), Decimal("4.95"), Decimal("9.95"))
#: (status, payment, shipping), weight.
_COMBOS: Final = (
    (("incomplete", "unpaid", "unfulfilled"), 10),
    (("complete", "paid", "unfulfilled"), 35),
    (("complete", "paid", "fulfilled"), 30),
    (("complete", "authorized", "unfulfilled"), 5),
    (("processing", "paid", "unfulfilled"), 5),
    (("complete", "partially_paid", "unfulfilled"), 2),
    (("cancelled", "unpaid", "unfulfilled"), 5),
    (("cancelled", "refunded", "unfulfilled"), 3),
    (("complete", "refunded", "fulfilled"), 3),
    (("cancelled", "paid", "unfulfilled"), 2),
)


class ElasticPathSimulator:
    """In-memory EP store with the orders API in front of it.

    Public state (read freely; change it only through the mutators):

    * ``orders``: order id → the stored order object (the exact ``data`` JSON shape);
      ``items``: order id → its ``order_item`` objects;
    * ``calls``: Counter of requests keyed ``"GET /v2/orders"``, ``"PUT /v2/orders/{id}"`` …;
      ``responses``: Counter by HTTP status; ``throttled``: number of 429 answers;
    * ``latency``: the API's own response time (``latency`` ± ``jitter`` seconds per
      request, before processing, outside the lock; :class:`~sync.sandbox._common.Latency`);
    * ``faults``: the :class:`~sync.sandbox.faults.Faults` switches;
    * ``rng``: the seeded random source of generated data and tokens.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        seed: int = 0,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        rate_limit_per_second: int = DEVELOPMENT_RATE,
        enforce_rate_limit: bool = True,
        retry_after_on_429: bool = False,
        token_ttl: int = TOKEN_TTL,
        token_shape: str = "flat",
        max_offset: int = MAX_OFFSET,
        default_limit: int = DEFAULT_LIMIT,
        timestamp_digits: int = 3,
        currency: str = "GBP",
        latency: float = 0.0,
        jitter: float = 0.0,
    ) -> None:
        if token_shape not in ("flat", "data"):
            raise ValueError("token_shape must be 'flat' or 'data'")
        if not 0 <= timestamp_digits <= 9:
            raise ValueError("timestamp_digits must be 0-9")
        if rate_limit_per_second < 1:
            raise ValueError("rate_limit_per_second must be >= 1")
        self.clock = clock
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate_limit_per_second = rate_limit_per_second
        self.enforce_rate_limit = enforce_rate_limit
        self.retry_after_on_429 = retry_after_on_429
        self.token_ttl = token_ttl
        self.token_shape = token_shape
        self.max_offset = max_offset
        self.default_limit = default_limit
        self.timestamp_digits = timestamp_digits
        self.currency = currency
        self.faults = Faults(seed=seed)
        self.latency = Latency(latency, jitter, seed=seed)
        self.rng = random.Random(seed)
        self.orders: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self._created: dict[str, datetime] = {}
        self._updated: dict[str, datetime] = {}
        self._tokens: dict[str, tuple[datetime, str]] = {}  # token → (expires, identifier)
        self._accepted: deque[float] = deque()
        self._sorted: dict[str, list[str]] = {}
        self._order_number = 10000
        self._lock = threading.RLock()
        self.calls: Counter[str] = Counter()
        self.responses: Counter[int] = Counter()
        self.throttled = 0
        self.revoked = False
        self.outage = False

    # ================================================================== time

    def _trunc(self, dt: datetime) -> datetime:
        dt = utc(dt)
        if self.timestamp_digits >= 6:
            return dt
        step = 10 ** (6 - self.timestamp_digits)
        return dt.replace(microsecond=dt.microsecond - dt.microsecond % step)

    def render(self, dt: datetime) -> str:
        """``dt`` as EP writes it, with ``timestamp_digits`` fractional digits."""
        dt = utc(dt)
        base = dt.strftime("%Y-%m-%dT%H:%M:%S")
        d = self.timestamp_digits
        if d == 0:
            return base + "Z"
        frac = f"{dt.microsecond:06d}"
        frac = frac[:d] if d <= 6 else frac + "0" * (d - 6)
        return f"{base}.{frac}Z"

    # ================================================================== mutators

    def add_order(
        self, order: Mapping[str, Any], items: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """Store a copy of ``order`` (replacing one with the same id); returns its id.

        Needs a string ``id`` and readable ``meta.timestamps.created_at`` (``updated_at``
        defaults to it); everything else is taken as given, so broken orders can be served.
        When ``items`` is given they become the order's items and
        ``relationships.items.data``.
        """
        return self._store(
            copy.deepcopy(dict(order)),
            None if items is None else [copy.deepcopy(dict(i)) for i in items],
        )

    def _store(self, stored: dict[str, Any], items: list[dict[str, Any]] | None) -> str:
        """:meth:`add_order` without copying (``stored`` and ``items`` are taken over)."""
        oid = stored.get("id")
        if not isinstance(oid, str) or not oid:
            raise ValueError("order needs a string 'id'")
        meta = stored.setdefault("meta", {})
        stamps = meta.setdefault("timestamps", {})
        created = parse_ep_timestamp(str(stamps.get("created_at", "")))
        if created is None:
            raise ValueError("order needs a readable meta.timestamps.created_at")
        updated = parse_ep_timestamp(str(stamps.get("updated_at", ""))) or created
        with self._lock:
            self.orders[oid] = stored
            if items is not None:
                self.items[oid] = items
                stored.setdefault("relationships", {})["items"] = {
                    "data": [{"type": "item", "id": i.get("id")} for i in items]
                }
            else:
                self.items.setdefault(oid, [])
            self._set_times(oid, created, updated)
        return oid

    def _set_times(self, oid: str, created: datetime, updated: datetime) -> None:
        created, updated = self._trunc(created), self._trunc(updated)
        self._created[oid] = created
        self._updated[oid] = updated
        stamps = self.orders[oid].setdefault("meta", {}).setdefault("timestamps", {})
        stamps["created_at"] = self.render(created)
        stamps["updated_at"] = self.render(updated)
        self._sorted.clear()

    def generate_orders(
        self, n: int, *, created_between: tuple[datetime, datetime] | None = None
    ) -> list[str]:
        """Add ``n`` generated orders, ``created_at`` spread over ``created_between``.

        Default window: the 30 days before ``clock.now()``. ``updated_at`` is ``created_at``
        for unpaid incomplete orders, else up to 72 h later (never after the window end or
        now, whichever is later). Same seed, same calls → same orders.
        """
        now = self.clock.now()
        start, end = created_between or (now - timedelta(days=30), now)
        start, end = utc(start), utc(end)
        if end < start:
            raise ValueError("created_between must be (start, end) with start <= end")
        span_ms = int((end - start).total_seconds() * 1000)
        latest = max(now, end)
        with self._lock:
            offsets = sorted(self.rng.randint(0, span_ms) for _ in range(n))
            ids = []
            for off in offsets:
                created = start + timedelta(milliseconds=off)
                order, items = self._make_order(created, latest)
                ids.append(self._store(order, items))
            return ids

    def _make_order(
        self, created: datetime, latest: datetime
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rng = self.rng
        cur = self.currency
        combos, weights = zip(*_COMBOS, strict=True)
        status, payment, shipping = rng.choices(combos, weights=weights)[0]
        if (status, payment) == ("incomplete", "unpaid"):
            updated = created
        else:
            later = created + timedelta(milliseconds=rng.randint(60_000, 72 * 3_600_000))
            updated = min(later, latest) if latest >= created else created
        oid = _uuid(rng)
        items: list[dict[str, Any]] = []
        sum_ex = sum_tax = sum_disc = 0
        for _ in range(rng.randint(1, 3)):
            name, sku, price, rate = rng.choice(_PRODUCTS)
            qty = rng.randint(1, 3)
            original = _minor(price, cur)
            disc = _minor(price * Decimal("0.1"), cur) if rng.random() < 0.2 else 0
            unit_ex = original - disc
            unit_tax = int((Decimal(unit_ex) * rate / 100).to_integral_value(ROUND_HALF_UP))
            unit_inc = unit_ex + unit_tax
            sum_ex += unit_ex * qty
            sum_tax += unit_tax * qty
            sum_disc += disc * qty
            stamp = {"created_at": self.render(created), "updated_at": self.render(created)}
            items.append(
                {
                    "type": "order_item",
                    "id": _uuid(rng),
                    "quantity": qty,
                    "product_id": _uuid(rng),
                    "name": name,
                    "sku": sku,
                    "unit_price": {"amount": original, "currency": cur, "includes_tax": False},
                    "value": {"amount": original * qty, "currency": cur, "includes_tax": False},
                    "links": {},
                    "meta": {
                        "display_price": {
                            "with_tax": {
                                "unit": _price(unit_inc, cur),
                                "value": _price(unit_inc * qty, cur),
                            },
                            "without_tax": {
                                "unit": _price(unit_ex, cur),
                                "value": _price(unit_ex * qty, cur),
                            },
                            "tax": {
                                "unit": _price(unit_tax, cur),
                                "value": _price(unit_tax * qty, cur),
                            },
                            "discount": {
                                "unit": _price(-disc, cur),
                                "value": _price(-disc * qty, cur),
                            },
                            "without_discount": {
                                "unit": _price(unit_inc + disc, cur),
                                "value": _price((unit_inc + disc) * qty, cur),
                            },
                        },
                        "timestamps": stamp,
                    },
                    "relationships": {
                        "cart_item": {"data": {"type": "cart_item", "id": _uuid(rng)}}
                    },
                    "catalog_source": "pim",
                }
            )
        ship = _minor(rng.choice(_SHIPPING), cur)
        without_tax = sum_ex + ship
        with_tax = without_tax + sum_tax
        paid = with_tax if payment in ("paid", "refunded") else 0
        if payment == "partially_paid":
            paid = with_tax // 2
        authorized = with_tax if payment == "authorized" else 0
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first.split()[0].lower()}.{rng.randint(1, 9999)}@example.co.uk"
        city, county, postcode, country = rng.choice(_PLACES)
        address = {
            "first_name": first,
            "last_name": last,
            "company_name": rng.choice(("", "", "Macdowalls")),
            "line_1": f"{rng.randint(1, 200)} {rng.choice(_STREETS)}",
            "line_2": "",
            "city": city,
            "postcode": postcode,
            "county": county,
            "country": country,
        }
        shipping_address = {
            **address,
            "phone_number": f"0{rng.randint(1000000000, 1999999999)}",
            "instructions": rng.choice(("", "", "Leave in porch")),
        }
        order: dict[str, Any] = {
            "type": "order",
            "id": oid,
            "status": status,
            "payment": payment,
            "shipping": shipping,
            "anonymized": False,
            "customer": {"name": f"{first} {last}", "email": email},
            "contact": {"name": f"{first} {last}", "email": email},
            "shipping_address": shipping_address,
            "billing_address": address,
            "links": {},
            "meta": {
                "display_price": {
                    "with_tax": _price(with_tax, cur),
                    "without_tax": _price(without_tax, cur),
                    "tax": _price(sum_tax, cur),
                    "discount": _price(-sum_disc, cur),
                    "balance_owing": _price(with_tax - paid, cur),
                    "paid": _price(paid, cur),
                    "authorized": _price(authorized, cur),
                    "without_discount": _price(with_tax + sum_disc, cur),
                    "shipping": _price(ship, cur),
                    "shipping_discount": _price(0, cur),
                },
                "timestamps": {
                    "created_at": self.render(created),
                    "updated_at": self.render(updated),
                },
                "is_manual": False,
            },
            "relationships": {},
        }
        if payment in ("paid", "refunded"):
            order["meta"]["timestamps"]["fully_paid_at"] = self.render(updated)
        if rng.random() < 0.6:
            cid = _uuid(rng)
            order["customer"]["id"] = cid
            order["relationships"]["customer"] = {"data": {"type": "customer", "id": cid}}
        if rng.random() < 0.5:
            self._order_number += 1
            order["order_number"] = f"ORD-{self._order_number}"
        return order, items

    def _require(self, order_id: str) -> dict[str, Any]:
        order = self.orders.get(order_id)
        if order is None:
            raise KeyError(f"no order {order_id}")
        return order

    def touch(self, order_id: str, at: datetime | None = None) -> None:
        """Set ``updated_at`` to ``at`` (default ``clock.now()``)."""
        with self._lock:
            self._require(order_id)
            when = self.clock.now() if at is None else at
            self._set_times(order_id, self._created[order_id], when)

    def _set_field(self, order_id: str, field: str, value: str) -> dict[str, Any]:
        with self._lock:
            order = self._require(order_id)
            order[field] = value
            if field == "payment" and value == "paid":
                order["meta"].setdefault("timestamps", {})
                self.touch(order_id)
                order["meta"]["timestamps"]["fully_paid_at"] = self.render(
                    self._updated[order_id]
                )
            else:
                self.touch(order_id)
            return copy.deepcopy(order)

    def set_status(self, order_id: str, status: str) -> dict[str, Any]:
        """Set ``status`` (any string: unknown values allowed); bumps ``updated_at``."""
        return self._set_field(order_id, "status", status)

    def set_payment(self, order_id: str, payment: str) -> dict[str, Any]:
        """Set ``payment``; ``paid`` also sets ``fully_paid_at``; bumps ``updated_at``."""
        return self._set_field(order_id, "payment", payment)

    def set_shipping(self, order_id: str, shipping: str) -> dict[str, Any]:
        """Set ``shipping``; bumps ``updated_at``."""
        return self._set_field(order_id, "shipping", shipping)

    def delete_order(self, order_id: str) -> bool:
        """Remove an order; False if there was none."""
        with self._lock:
            if order_id not in self.orders:
                return False
            for table in (self.orders, self.items, self._created, self._updated):
                table.pop(order_id, None)
            self._sorted.clear()
            return True

    def expire_tokens(self) -> None:
        """Make every issued token expired now (as if an hour had passed)."""
        with self._lock:
            now = self.clock.now()
            for token, (_, ident) in list(self._tokens.items()):
                self._tokens[token] = (now, ident)

    def revoke_tokens(self) -> None:
        """Forget every issued token."""
        with self._lock:
            self._tokens.clear()

    def reset_counters(self) -> None:
        """Zero ``calls``, ``responses`` and ``throttled``."""
        with self._lock:
            self.calls.clear()
            self.responses.clear()
            self.throttled = 0

    # ================================================================== queries

    def get_order(self, order_id: str) -> dict[str, Any] | None:
        """A deep copy of one stored order (the ``data`` object), or None."""
        with self._lock:
            order = self.orders.get(order_id)
            return copy.deepcopy(order) if order is not None else None

    def order_ids(self) -> list[str]:
        """All stored order ids (a snapshot)."""
        with self._lock:
            return list(self.orders)

    def updated_at(self, order_id: str) -> datetime:
        """The stored ``updated_at`` of an order."""
        with self._lock:
            return self._updated[order_id]

    def updated_ids(self, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """Ids with ``start ≤ updated_at ≤ end``, oldest update first (a test oracle)."""
        with self._lock:
            return [
                oid
                for oid in self._sorted_ids("updated_at")
                if (start is None or self._updated[oid] >= start)
                and (end is None or self._updated[oid] <= end)
            ]

    def created_ids(self, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """Ids with ``start ≤ created_at ≤ end``, oldest first (a test oracle)."""
        with self._lock:
            return [
                oid
                for oid in self._sorted_ids("created_at")
                if (start is None or self._created[oid] >= start)
                and (end is None or self._created[oid] <= end)
            ]

    # ================================================================== HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one API request (thread-safe). May raise ``httpx.ReadTimeout`` (fault)."""
        method = request.method.upper()
        route, arg = self._route(method, request.url.path)
        with self._lock:
            self.calls[route] += 1
            plan = plan_faults(self.faults, self.clock)
        apply_latency_and_timeout(plan, self.clock, request, self.latency.draw())
        with self._lock:
            response = self._handle_locked(request, method, route, arg, plan)
            self.responses[response.status_code] += 1
            if response.status_code == 429:
                self.throttled += 1
            return response

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None]:
        i = path.find("/oauth/access_token")
        if i >= 0 and path[i:].rstrip("/") == "/oauth/access_token":
            return f"{method} /oauth/access_token", None
        j = path.find("/v2/")
        parts = path[j + 4 :].strip("/").split("/") if j >= 0 else []
        if parts == ["orders"]:
            return f"{method} /v2/orders", None
        if len(parts) in (2, 3) and parts[0] == "orders" and parts[1]:
            if len(parts) == 2:
                return f"{method} /v2/orders/{{id}}", parts[1]
            if parts[2] == "items":
                return f"{method} /v2/orders/{{id}}/items", parts[1]
        return f"{method} {path}", None

    def _handle_locked(
        self,
        request: httpx.Request,
        method: str,
        route: str,
        arg: str | None,
        plan: FaultPlan | None,
    ) -> httpx.Response:
        if self.outage:
            return html_response(503)
        faulted = fault_response(plan, _fault_error)
        if faulted is not None:
            return faulted
        _, _, resource = route.partition(" ")
        allowed: dict[str, tuple[str, ...]] = {
            "/oauth/access_token": ("POST",),
            "/v2/orders": ("GET",),
            "/v2/orders/{id}": ("GET", "PUT"),
            "/v2/orders/{id}/items": ("GET",),
        }
        methods = allowed.get(resource)
        try:
            if resource == "/oauth/access_token":
                if method not in ("POST",):
                    raise _ApiError(405, "Method Not Allowed", f"{method} is not allowed")
                return self._token(request)
            denied = self._authenticate(request, method)
            if denied is not None:
                return denied
            throttled = self._throttle()
            if throttled is not None:
                return throttled
            if methods is None:
                raise _ApiError(404, "Not Found", f"No route for {request.url.path}")
            if method not in methods:
                raise _ApiError(405, "Method Not Allowed", f"{method} is not allowed")
            if resource == "/v2/orders":
                return self._list(request)
            assert arg is not None
            if arg not in self.orders:
                raise _ApiError(404, "Not Found", f"Order {arg[:64]} not found")
            if resource == "/v2/orders/{id}/items":
                return json_response(200, {"data": copy.deepcopy(self.items.get(arg, []))})
            if method == "PUT":
                return self._put(request, arg)
            return self._get_one(request, arg)
        except _ApiError as exc:
            return _error(exc.status, exc.detail, exc.title)

    # ------------------------------------------------------------------ auth and rate

    def _throttle(self) -> httpx.Response | None:
        if not self.enforce_rate_limit:
            return None
        now = self.clock.monotonic()
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
        if len(self._accepted) >= self.rate_limit_per_second:
            resp = _error(429, "Too many requests: rate limit exceeded")
            if self.retry_after_on_429:
                wait = self._accepted[0] + 1.0 - now
                resp.headers["Retry-After"] = str(whole_seconds(wait))
            return resp
        self._accepted.append(now)
        return None

    def _authenticate(self, request: httpx.Request, method: str) -> httpx.Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        entry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if self.revoked or entry is None or self.clock.now() >= entry[0]:
            if method == "PUT":  # the "Update an Order" page's own example shape
                return json_response(401, {"errors": {"status": 401, "title": "Unauthorized"}})
            return _error(401, "Unable to validate access token")
        if entry[1] != "client_credentials":
            return _error(403, "You do not have permission to access this resource")
        return None

    def _token(self, request: httpx.Request) -> httpx.Response:
        ctype = request.headers.get("content-type", "").lower()
        if "application/x-www-form-urlencoded" not in ctype:
            raise _ApiError(400, "Bad Request", "grant_type is required (form-encoded body)")
        try:
            form = parse_qs(request.read().decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise _ApiError(400, "Bad Request", "body is not valid form data") from None
        grant = (form.get("grant_type") or [""])[0]
        client_id = (form.get("client_id") or [""])[0]
        secret = (form.get("client_secret") or [""])[0]
        if grant not in ("client_credentials", "implicit"):
            raise _ApiError(400, "Bad Request", "grant_type must be client_credentials or implicit")
        if self.revoked or client_id != self.client_id or (
            grant == "client_credentials" and secret != self.client_secret
        ):
            raise _ApiError(401, "Unauthorized", "Invalid client credentials")
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        token = f"{self.rng.getrandbits(160):040x}"
        now = self.clock.now()
        expires = now + timedelta(seconds=self.token_ttl)
        self._tokens[token] = (expires, grant)
        doc = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "expires": int(expires.timestamp()),
            "identifier": grant,
        }
        return json_response(200, {"data": doc} if self.token_shape == "data" else doc)

    # ------------------------------------------------------------------ reads

    def _bundle(self, oid: str, with_items: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"data": self.orders[oid]}
        if with_items:
            doc["included"] = {"items": self.items.get(oid, [])}
        return doc

    @staticmethod
    def _includes(params: httpx.QueryParams) -> set[str]:
        raw = params.get("include")
        if not raw:
            return set()
        wanted = {p.strip() for p in raw.split(",") if p.strip()}
        unknown = wanted - _INCLUDES
        if unknown:
            raise _ApiError(400, "Bad Request", f"Unknown include: {sorted(unknown)[0]}")
        return wanted

    def _get_one(self, request: httpx.Request, oid: str) -> httpx.Response:
        includes = self._includes(request.url.params)
        return json_response(200, self._bundle(oid, "items" in includes))

    def _sort_key(self, field: str) -> Callable[[str], Any]:
        if field == "created_at":
            return lambda oid: (self._created[oid], oid)
        if field == "updated_at":
            return lambda oid: (self._updated[oid], oid)
        if field == "with_tax":
            return lambda oid: (self._amount(oid, "with_tax") or 0, oid)
        return lambda oid: (str(self.orders[oid].get(field, "")), oid)

    def _sorted_ids(self, spec: str) -> list[str]:
        cached = self._sorted.get(spec)
        if cached is None:
            field = spec.lstrip("-")
            cached = sorted(self.orders, key=self._sort_key(field), reverse=spec.startswith("-"))
            self._sorted[spec] = cached
        return cached

    def _amount(self, oid: str, name: str) -> int | None:
        meta = self.orders[oid].get("meta")
        dp = meta.get("display_price") if isinstance(meta, Mapping) else None
        obj = dp.get(name) if isinstance(dp, Mapping) else None
        amount = obj.get("amount") if isinstance(obj, Mapping) else None
        return amount if isinstance(amount, int) and not isinstance(amount, bool) else None

    @staticmethod
    def _int_param(params: httpx.QueryParams, name: str, default: int) -> int:
        raw = params.get(name)
        if raw is None or raw == "":
            return default
        text = raw.strip()
        if not (text.isdecimal() or (text.startswith("-") and text[1:].isdecimal())):
            raise _ApiError(400, "Bad Request", f"{name} must be an integer")
        return int(text)

    def _list(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        limit = self._int_param(params, "page[limit]", self.default_limit)
        if not 1 <= limit <= MAX_LIMIT:
            raise _ApiError(400, "Bad Request", f"page[limit] must be between 1 and {MAX_LIMIT}")
        offset = self._int_param(params, "page[offset]", 0)
        if offset < 0:
            raise _ApiError(400, "Bad Request", "page[offset] must be zero or more")
        if offset > self.max_offset:
            raise _ApiError(
                400,
                "Bad Request",
                f"page[offset] must be less than or equal to {self.max_offset}; use filters "
                "to page further",
            )
        sort = params.get("sort") or "-updated_at"
        if sort.lstrip("-") not in _SORTS or sort.count("-") > 1 or "-" in sort[1:]:
            raise _ApiError(400, "Bad Request", f"Invalid sort: {sort[:40]}")
        predicates = self._filters(params.get("filter"))
        includes = self._includes(params)
        matched = [
            oid for oid in self._sorted_ids(sort) if all(p(oid) for p in predicates)
        ]
        page = matched[offset : offset + limit]
        total = len(matched)
        pages = math.ceil(total / limit) if total else 0
        last_offset = max(0, (pages - 1) * limit)

        def link(off: int) -> str:
            return str(request.url.copy_set_param("page[offset]", str(off)))

        doc: dict[str, Any] = {
            "data": [self.orders[oid] for oid in page],
            "links": {
                "current": link(offset),
                "first": link(0),
                "last": link(last_offset),
                "next": link(offset + limit) if offset + limit < total else None,
                "prev": link(max(0, offset - limit)) if offset > 0 else None,
            },
            "meta": {
                "page": {
                    "limit": limit,
                    "offset": offset,
                    "current": offset // limit + 1,
                    "total": pages,
                },
                "results": {"total": total},
            },
        }
        if "items" in includes:
            doc["included"] = {"items": [i for oid in page for i in self.items.get(oid, [])]}
        return json_response(200, doc)

    # ------------------------------------------------------------------ filters

    def _filters(self, raw: str | None) -> list[Callable[[str], bool]]:
        if raw is None or not raw.strip():
            return []
        out: list[Callable[[str], bool]] = []
        pos = 0
        text = raw.strip()
        while pos < len(text):
            m = _FILTER.match(text, pos)
            if m is None:
                raise _ApiError(400, "Bad Request", "Could not parse the supplied filter")
            out.append(self._predicate(m.group(1), m.group(2), m.group(3)))
            pos = m.end()
            if pos < len(text):
                if text[pos] != ":":
                    raise _ApiError(400, "Bad Request", "Could not parse the supplied filter")
                pos += 1
        if len(out) > MAX_FILTERS:
            raise _ApiError(400, "Bad Request", f"At most {MAX_FILTERS} filters are allowed")
        return out

    def _predicate(self, op: str, field: str, operand: str) -> Callable[[str], bool]:
        bad = _ApiError(400, "Bad Request", "Could not parse the supplied filter")
        value = operand
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value) if "\\" in value else value[1:-1]
            except ValueError:
                raise bad from None
        compare: dict[str, Callable[[Any, Any], bool]] = {
            "eq": lambda a, b: bool(a == b),
            "gt": lambda a, b: bool(a > b),
            "ge": lambda a, b: bool(a >= b),
            "lt": lambda a, b: bool(a < b),
            "le": lambda a, b: bool(a <= b),
        }
        fn = compare.get(op)
        if fn is None:
            raise bad
        if field in _TIMESTAMP_FIELDS:
            when = self._filter_time(value)
            if when is None:
                raise bad
            table = self._created if field == "created_at" else self._updated
            return lambda oid: fn(table[oid], when)
        if field in _EQ_FIELDS:
            if op != "eq":
                raise bad
            return lambda oid: self.orders[oid].get(field) == value
        if field in _AMOUNT_FIELDS:
            if op == "eq" or not (value.isdecimal() or (value[1:].isdecimal() and value[0] == "-")):
                raise bad
            number = int(value)
            return lambda oid: (a := self._amount(oid, field)) is not None and fn(a, number)
        raise bad

    def _filter_time(self, value: str) -> datetime | None:
        value = value.strip()
        if value.isdecimal():
            try:
                return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
            except (OverflowError, OSError, ValueError):
                return None
        d = _DATE.match(value)
        if d is not None:
            try:
                return datetime(int(d[1]), int(d[2]), int(d[3]), tzinfo=UTC)
            except ValueError:
                return None
        return parse_ep_timestamp(value)

    # ------------------------------------------------------------------ update

    def _put(self, request: httpx.Request, oid: str) -> httpx.Response:
        ctype = request.headers.get("content-type", "").lower()
        if "application/json" not in ctype:
            raise _ApiError(400, "Bad Request", "Content-Type must be application/json")
        try:
            body = json.loads(request.read() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, "Bad Request", "Request body is not valid JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise _ApiError(400, "Failed Validation", "data: an object is required")
        if data.get("type") != "order":
            raise _ApiError(400, "Failed Validation", "data.type: must be order")
        if "id" in data and data["id"] != oid:
            raise _ApiError(400, "Failed Validation", "data.id: does not match the order")
        order = self.orders[oid]
        fulfilled = order.get("shipping") == "fulfilled"
        changes: dict[str, Any] = {}
        clears: list[str] = []
        state_error = _ApiError(
            422, "Unprocessable Entity", "Order cannot be updated in its current state"
        )
        for key, value in data.items():
            if key in ("type", "id"):
                continue
            if key in _IMMUTABLE:
                raise _ApiError(400, "Failed Validation", f"{key}: cannot be updated")
            if key == "status":
                if value != "cancelled":
                    raise _ApiError(
                        400, "Failed Validation", "status: can only be updated to cancelled"
                    )
                if fulfilled or order.get("status") == "cancelled":
                    raise state_error
                changes[key] = value
            elif key == "shipping":
                if value != "fulfilled":
                    raise _ApiError(
                        400, "Failed Validation", "shipping: can only be updated to fulfilled"
                    )
                if fulfilled or order.get("payment") != "paid" or order.get(
                    "status"
                ) == "cancelled":
                    raise state_error
                changes[key] = value
            elif key == "shipping_address":
                if not isinstance(value, dict) or not all(
                    k in _ADDRESS_FIELDS and isinstance(v, str) for k, v in value.items()
                ):
                    raise _ApiError(
                        400, "Failed Validation", "shipping_address: invalid address fields"
                    )
                if fulfilled:
                    raise state_error
                changes[key] = {**(order.get("shipping_address") or {}), **value}
            elif key in ("external_ref", "order_number"):
                if not isinstance(value, str):
                    raise _ApiError(400, "Failed Validation", f"{key}: must be a string")
                if key == "external_ref" and len(value) > EXTERNAL_REF_MAX:
                    raise _ApiError(
                        400,
                        "Failed Validation",
                        f"external_ref: must be at most {EXTERNAL_REF_MAX} characters",
                    )
                if value == "":
                    clears.append(key)
                else:
                    changes[key] = value
            else:
                changes[key] = copy.deepcopy(value)  # custom (flow) data
        changed = any(order.get(k) != v for k, v in changes.items()) or any(
            k in order for k in clears
        )
        order.update(changes)
        for key in clears:
            order.pop(key, None)
        if changed:
            self.touch(oid)
        return json_response(200, {"data": order})
