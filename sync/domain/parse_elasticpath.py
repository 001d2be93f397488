"""Elastic Path Commerce Cloud order JSON → :class:`SourceOrder` (pure).

Input
-----
One *bundle*: ``{"data": <order>, "included": {"items": [<order_item>, ...]}}``, the shape of
``GET /v2/orders/:id?include=items`` and of a webhook ``payload``. A bare order object
(``{"type": "order", ...}``, no ``included``) is accepted too and has no lines. When the order
lists ``relationships.items.data[].id``, only those included items are its lines (a list page
carries the items of every order in one ``included``); an id listed there but absent from
``included`` makes the order unusable (its lines would be incomplete). Without that
relationship every included item belongs to the order. ``included`` may also be a flat
JSON:API array.

Hostile or broken input never escapes as ``TypeError``/``KeyError``: anything unusable raises
:class:`~sync.errors.SkippableError` with a reason. Unknown ``status``/``payment``/``shipping``
values are *not* errors: they become part of a synthetic status (see below).

Money
-----
EP amounts are integers in minor units; major = amount / 10^exponent, the exponent taken from
:data:`CURRENCY_EXPONENTS` (ISO 4217; 2 for any currency not listed). Decimal throughout,
unrounded. Order totals come from ``meta.display_price`` (or straight from ``meta``, the
2024 spec's shape). With ``discount`` and ``shipping_discount`` taken as absolute values (EP
shows discounts negative)::

    grand_total_inc_tax = with_tax
    tax                 = tax                (else with_tax − without_tax)
    shipping            = shipping           (taken as excluding tax; unverified)
    shipping_tax        = tax − Σ item tax   clamped to [0, tax], when the items carry their
                                             own ``display_price.tax``; else 0
    products_tax        = tax − shipping_tax
    shipping_discount   = |shipping_discount|
    discount            = |discount|
    products            = without_tax − shipping + discount   (before discounts, excl. tax)

so the WiredPlus mapping's ``grand_total`` is exactly ``without_tax``. Every non-empty
``currency`` on the order and its lines must agree (``""``, as in EP's own samples on zero
amounts, is ignored); the order's currency is ``with_tax.currency``.

Lines (``included.items``), per item, from ``meta.display_price`` when present::

    unit_price          = without_tax.unit   (after discounts, excl. tax)
    unit_tax            = tax.unit
    row_total, row_tax  = without_tax.value, tax.value  (else unit × quantity)
    original_unit_price = unit_price + |discount.unit|
    tax_percent         = unit_tax / unit_price × 100, to 2 places (0 for a free line)

Without ``display_price`` the raw ``unit_price``/``value`` are used with no tax split (when
``includes_tax`` is true the tax stays inside the price). Items with a negative unit price are
legacy promotion lines: their discount is already in the order's ``display_price.discount``,
so they are left out of the lines. ``line_id`` is the item ``id``; a repeated id is kept once.

Timestamps
----------
ISO-8601 with 0–9 fractional digits (EP sends ``…23Z``, ``…59.715Z`` and
``…58.18733387Z``); digits past microseconds are truncated; ``Z`` or a numeric offset; no
offset means UTC. Result: aware UTC. :func:`format_timestamp` renders a filter operand.

Status
------
EP has three independent enums. They become one synthetic :class:`SourceStatus`:
``id = "<status>:<payment>:<shipping>"`` (each value lower-cased, characters outside
``[a-z0-9_]`` replaced by ``_``, ``unknown`` when absent), ``name = "<status> / <payment> /
<shipping>"`` and a ``type`` for the ``[types.<type>]`` section of a status map, first match
wins (:func:`status_type`):

=====================================  ======================
``payment = refunded``                 ``refunded``
``status = cancelled``                 ``cancelled``
``shipping = fulfilled``               ``fulfilled``
``payment = paid``                     ``paid``
``payment = partially_paid``           ``partially_paid``
``payment = authorized``               ``authorized``
``payment = partially_authorized``     ``partially_authorized``
``payment = unpaid``                   ``unpaid``
anything else                          ``custom``
=====================================  ======================

``refunded`` outranks ``cancelled`` because EP's cancel does not refund ("You must refund
the orders manually"): the usual life is cancelled → refunded, and the refund must show.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sync.domain.models import Address, OrderLine, SourceOrder, SourceStatus, Totals
from sync.domain.money import CURRENCY_EXPONENTS as CURRENCY_EXPONENTS  # re-exported
from sync.domain.money import DEFAULT_EXPONENT as DEFAULT_EXPONENT  # re-exported
from sync.domain.money import currency_exponent
from sync.domain.parse_shopwired import split_name
from sync.domain.text import clean_json
from sync.errors import SkippableError

SOURCE: Final = "elasticpath"
MAX_MONEY: Final = Decimal("100000000")  # 100m major units: anything larger is not an order
MAX_LINES: Final = 2000
MAX_QUANTITY: Final = 1_000_000
MAX_TEXT: Final = 2000
MAX_ID: Final = 64
ZERO: Final = Decimal(0)
TAX_PLACES: Final = Decimal("0.01")


#: The enum values EP documents (2026 spec); others are tolerated.
STATUS_VALUES: Final = ("incomplete", "processing", "complete", "cancelled")
PAYMENT_VALUES: Final = (
    "unpaid", "authorized", "partially_authorized", "paid", "partially_paid", "refunded",
)
SHIPPING_VALUES: Final = ("unfulfilled", "fulfilled")
#: Every ``type`` :func:`status_type` can return.
STATUS_TYPES: Final = (
    "refunded", "cancelled", "fulfilled", "paid", "partially_paid", "authorized",
    "partially_authorized", "unpaid", "custom",
)
UNKNOWN_ENUM: Final = "unknown"

_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"([Zz]|[+-]\d{2}:?\d{2})?$"
)
_ENUM_BAD = re.compile(r"[^a-z0-9_]")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_INT = re.compile(r"^-?\d{1,20}$")
_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""An Elastic Path order id: a UUID in practice; letters, digits, ``-`` and ``_``, at most 64."""


# ------------------------------------------------------------------------------ scalars


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    s = str(value).replace("\x00", "").strip()
    return s[:limit] if s else None


def _mapping(value: Any, where: str, *, required: bool = False) -> Mapping[str, Any] | None:
    if value is None:
        if required:
            raise SkippableError(f"{where}: missing")
        return None
    if not isinstance(value, Mapping):
        raise SkippableError(f"{where}: expected an object")
    return value


def minor_to_decimal(amount: Any, currency: str | None, where: str = "amount") -> Decimal:
    """An EP integer amount in minor units → Decimal major units (``10000`` GBP → ``100``).

    Accepts ints, integral floats and integer strings; raises SkippableError for anything
    else, for fractions of a minor unit and for amounts beyond :data:`MAX_MONEY`.
    """
    if isinstance(amount, bool):
        raise SkippableError(f"{where}: expected an integer amount, got a boolean")
    if isinstance(amount, int):
        minor = amount
    elif isinstance(amount, float):
        if not math.isfinite(amount) or not amount.is_integer():
            raise SkippableError(f"{where}: {amount!r} is not a whole number of minor units")
        minor = int(amount)
    elif isinstance(amount, str) and _INT.match(amount.strip()):
        minor = int(amount.strip())
    else:
        shown = str(amount)[:40] if isinstance(amount, str | int | float) else type(amount)
        raise SkippableError(f"{where}: {shown!r} is not an integer amount")
    try:
        value = Decimal(minor).scaleb(-currency_exponent(currency))
    except (InvalidOperation, ValueError, OverflowError):
        raise SkippableError(f"{where}: amount out of range") from None
    if abs(value) > MAX_MONEY:
        raise SkippableError(f"{where}: amount {value} is out of range")
    return value


def parse_timestamp(value: Any, where: str = "timestamp") -> datetime:
    """EP ISO-8601 (0–9 fractional digits) → aware UTC datetime; SkippableError if unreadable."""
    if not isinstance(value, str):
        raise SkippableError(f"{where}: missing or not a string")
    m = _TS.match(value.strip())
    if m is None:
        raise SkippableError(f"{where}: unreadable timestamp {value[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = (m.group(7) or "").ljust(6, "0")[:6]
    tz: timezone = UTC
    offset = m.group(8)
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise SkippableError(f"{where}: bad UTC offset in {value[:40]!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    if not 1990 <= year <= 2200:
        raise SkippableError(f"{where}: implausible date {value[:40]!r}")
    try:
        dt = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=tz)
    except ValueError:
        raise SkippableError(f"{where}: impossible date {value[:40]!r}") from None
    return dt.astimezone(UTC)


def format_timestamp(dt: datetime) -> str:
    """``2018-04-16T10:11:59.715Z``: UTC, milliseconds **floored** (a ``ge`` filter built from
    it never excludes the instant it came from). Naive datetimes are taken as UTC."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{dt.microsecond // 1000:03d}Z"


# ------------------------------------------------------------------------------ status


def _enum(value: Any) -> str:
    if not isinstance(value, str):
        return UNKNOWN_ENUM
    cleaned = _ENUM_BAD.sub("_", value.strip().lower())[:32]
    return cleaned or UNKNOWN_ENUM


def status_type(status: str, payment: str, shipping: str) -> str:
    """The map ``type`` of an (already normalised) EP status triple; see the module table."""
    if payment == "refunded":
        return "refunded"
    if status == "cancelled":
        return "cancelled"
    if shipping == "fulfilled":
        return "fulfilled"
    if payment in ("paid", "partially_paid", "authorized", "partially_authorized", "unpaid"):
        return payment
    return "custom"


def synthetic_status(status: Any, payment: Any, shipping: Any) -> SourceStatus:
    """One :class:`SourceStatus` for EP's three enums (never raises; unknown values kept)."""
    s, p, sh = _enum(status), _enum(payment), _enum(shipping)
    return SourceStatus(id=f"{s}:{p}:{sh}", name=f"{s} / {p} / {sh}", type=status_type(s, p, sh))


def all_statuses() -> list[SourceStatus]:
    """The fixed synthetic set: every documented combination (4 × 6 × 2 = 48)."""
    return [
        synthetic_status(s, p, sh)
        for s, p, sh in itertools.product(STATUS_VALUES, PAYMENT_VALUES, SHIPPING_VALUES)
    ]


# ------------------------------------------------------------------------------ money


class _Money:
    """Reads ``{amount, currency}`` objects of one order, enforcing a single currency."""

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def read(
        self, obj: Any, where: str, *, required: bool = False, allow_negative: bool = False
    ) -> Decimal | None:
        """The major-unit amount, None when absent and not ``required``."""
        m = _mapping(obj, where, required=required)
        if m is None:
            return None
        raw_currency = m.get("currency")
        if raw_currency not in (None, ""):
            code = raw_currency.strip().upper() if isinstance(raw_currency, str) else None
            if code != self.currency:
                raise SkippableError(
                    f"{where}.currency: {str(raw_currency)[:10]!r} differs from the order "
                    f"currency {self.currency}"
                )
        amount = m.get("amount")
        if amount is None:
            if required:
                raise SkippableError(f"{where}.amount: missing")
            return None
        value = minor_to_decimal(amount, self.currency, f"{where}.amount")
        if value < 0 and not allow_negative:
            raise SkippableError(f"{where}.amount: negative amount {value}")
        return value


def _order_currency(prices: Mapping[str, Any]) -> str:
    with_tax = _mapping(prices.get("with_tax"), "display_price.with_tax", required=True)
    assert with_tax is not None
    raw = with_tax.get("currency")
    code = raw.strip().upper() if isinstance(raw, str) else ""
    if not _CURRENCY.match(code):
        raise SkippableError(
            f"display_price.with_tax.currency: {str(raw)[:10]!r} is not an ISO 4217 code"
        )
    return code


def _totals(prices: Mapping[str, Any], money: _Money) -> Totals:
    w = "display_price"
    with_tax = money.read(prices.get("with_tax"), f"{w}.with_tax", required=True)
    assert with_tax is not None
    without_tax = money.read(prices.get("without_tax"), f"{w}.without_tax")
    tax = money.read(prices.get("tax"), f"{w}.tax")
    if tax is None:
        tax = with_tax - without_tax if without_tax is not None else ZERO
    if without_tax is None:
        without_tax = with_tax - tax
    if tax < 0 or without_tax < 0 or tax > with_tax:
        raise SkippableError(f"{w}: tax larger than the total (with_tax {with_tax}, tax {tax})")
    shipping = money.read(prices.get("shipping"), f"{w}.shipping") or ZERO
    discount = abs(
        money.read(prices.get("discount"), f"{w}.discount", allow_negative=True) or ZERO
    )
    shipping_discount = abs(
        money.read(prices.get("shipping_discount"), f"{w}.shipping_discount", allow_negative=True)
        or ZERO
    )
    products = without_tax - shipping + discount
    if products < 0:
        raise SkippableError(f"{w}: shipping {shipping} is larger than the total {without_tax}")
    return Totals(
        products=products,
        products_tax=tax,
        discount=discount,
        shipping=shipping,
        shipping_tax=ZERO,
        shipping_discount=shipping_discount,
        grand_total_inc_tax=with_tax,
        tax=tax,
    )


# ------------------------------------------------------------------------------ lines


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SkippableError(f"{where}.quantity: not a number")
    try:
        q = Decimal(str(value).strip())
    except InvalidOperation:
        raise SkippableError(f"{where}.quantity: {str(value)[:40]!r} is not a number") from None
    if not q.is_finite() or q != q.to_integral_value() or q < 0 or q > MAX_QUANTITY:
        raise SkippableError(f"{where}.quantity: {str(value)[:40]} is not a sane whole number")
    return int(q)


def _included_items(included: Any) -> list[Any]:
    if included is None:
        return []
    if isinstance(included, Mapping):
        items = included.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise SkippableError("included.items: expected a list")
        return items
    if isinstance(included, list):  # flat JSON:API ``included``
        return [i for i in included if isinstance(i, Mapping) and i.get("type") == "order_item"]
    raise SkippableError("included: expected an object or a list")


def _item_ids(order: Mapping[str, Any]) -> list[str] | None:
    """Ids in ``relationships.items.data``; None when the order does not say."""
    rel = order.get("relationships")
    if not isinstance(rel, Mapping):
        return None
    items = rel.get("items")
    if not isinstance(items, Mapping):
        return None
    data = items.get("data")
    if data is None:
        return None
    if not isinstance(data, list):
        raise SkippableError("relationships.items.data: expected a list")
    ids: list[str] = []
    for i, ref in enumerate(data):
        rid = _text(ref.get("id"), MAX_ID) if isinstance(ref, Mapping) else None
        if rid is None:
            raise SkippableError(f"relationships.items.data[{i}]: no id")
        ids.append(rid)
    return ids


def order_items(bundle_included: Any, order: Mapping[str, Any]) -> list[Any]:
    """The included items that belong to ``order`` (see the module docstring)."""
    items = _included_items(bundle_included)
    wanted = _item_ids(order)
    if wanted is None:
        return items
    by_id: dict[str, Any] = {}
    for item in items:
        iid = _text(item.get("id"), MAX_ID) if isinstance(item, Mapping) else None
        if iid is not None:
            by_id.setdefault(iid, item)
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise SkippableError(
            f"order item {missing[0]} is listed but not included (fetch with include=items)"
        )
    return [by_id[i] for i in dict.fromkeys(wanted)]


def _split(block: Any, part: str, where: str) -> Any:
    m = _mapping(block, where)
    return None if m is None else m.get(part)


def _line(item: Any, where: str, money: _Money) -> OrderLine | None:
    if not isinstance(item, Mapping):
        raise SkippableError(f"{where}: expected an object")
    line_id = _text(item.get("id"), MAX_ID)
    if line_id is None:
        raise SkippableError(f"{where}.id: missing")
    qty = _quantity(item.get("quantity", 1), where)
    meta = _mapping(item.get("meta"), f"{where}.meta")
    dp = _mapping(meta.get("display_price"), f"{where}.meta.display_price") if meta else None
    unit: Decimal | None = None
    if dp is not None and dp.get("without_tax") is not None:
        d = f"{where}.display_price"
        unit = money.read(
            _split(dp.get("without_tax"), "unit", f"{d}.without_tax"),
            f"{d}.without_tax.unit",
            required=True,
            allow_negative=True,
        )
        assert unit is not None
        row = money.read(
            _split(dp.get("without_tax"), "value", f"{d}.without_tax"),
            f"{d}.without_tax.value",
            allow_negative=True,
        )
        unit_tax = money.read(_split(dp.get("tax"), "unit", f"{d}.tax"), f"{d}.tax.unit")
        row_tax = money.read(_split(dp.get("tax"), "value", f"{d}.tax"), f"{d}.tax.value")
        disc = money.read(
            _split(dp.get("discount"), "unit", f"{d}.discount"),
            f"{d}.discount.unit",
            allow_negative=True,
        )
    else:
        unit = money.read(
            item.get("unit_price"), f"{where}.unit_price", required=True, allow_negative=True
        )
        assert unit is not None
        row = money.read(item.get("value"), f"{where}.value", allow_negative=True)
        unit_tax = row_tax = disc = None
    if unit < 0:
        return None  # legacy promotion line: already inside display_price.discount
    unit_tax = unit_tax or ZERO
    row = unit * qty if row is None else row
    row_tax = unit_tax * qty if row_tax is None else row_tax
    if row < 0:
        raise SkippableError(f"{where}: negative row total {row}")
    tax_percent = (unit_tax / unit * 100).quantize(TAX_PLACES) if unit > 0 else ZERO
    if tax_percent > 100:
        raise SkippableError(f"{where}: tax {unit_tax} is more than the price {unit}")
    return OrderLine(
        line_id=line_id,
        product_id=_text(item.get("product_id"), MAX_ID),
        sku=_text(item.get("sku"), 128),
        name=_text(item.get("name"), 500) or _text(item.get("sku"), 500) or "Product",
        unit_price=unit,
        original_unit_price=unit + abs(disc or ZERO),
        quantity=qty,
        tax_percent=tax_percent,
        unit_tax=unit_tax,
        row_total=row,
        row_tax=row_tax,
    )


def _lines(items: Sequence[Any], money: _Money) -> tuple[OrderLine, ...]:
    if len(items) > MAX_LINES:
        raise SkippableError(f"included.items: {len(items)} lines is more than {MAX_LINES}")
    out: list[OrderLine] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        line = _line(item, f"included.items[{i}]", money)
        if line is not None and line.line_id not in seen:
            seen.add(line.line_id)
            out.append(line)
    return tuple(out)


def _with_shipping_tax(totals: Totals, lines: Sequence[OrderLine], items: Sequence[Any]) -> Totals:
    """Split the order's tax into products and shipping where the source shows it: when the
    items carry their own tax (``meta.display_price.tax``), shipping tax = order tax − Σ item
    tax, clamped to ``[0, order tax]``; otherwise all tax stays with the products."""
    shown = any(
        isinstance(i, Mapping)
        and isinstance(i.get("meta"), Mapping)
        and isinstance(i["meta"].get("display_price"), Mapping)
        and i["meta"]["display_price"].get("tax") is not None
        for i in items
    )
    if not shown:
        return totals
    items_tax = sum((ln.row_tax for ln in lines), ZERO)
    shipping_tax = min(max(totals.tax - items_tax, ZERO), totals.tax)
    return replace(totals, shipping_tax=shipping_tax, products_tax=totals.tax - shipping_tax)


# ------------------------------------------------------------------------------ people


def _address(raw: Any, where: str, *, email: str | None) -> Address:
    m = _mapping(raw, where)
    if m is None:
        return Address(email=email)
    return Address(
        first_name=_text(m.get("first_name"), 100),
        last_name=_text(m.get("last_name"), 100),
        email=email,
        telephone=_text(m.get("phone_number"), 50),
        company=_text(m.get("company_name"), 200),
        line1=_text(m.get("line_1"), 200),
        line2=_text(m.get("line_2"), 200),
        city=_text(m.get("city"), 100),
        county=_text(m.get("county"), 100) or _text(m.get("region"), 100),
        postcode=_text(m.get("postcode"), 20),
        country=_text(m.get("country"), 100),
    )


def _person(order: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(email, name) from ``customer`` then ``contact``."""
    email = name = None
    for key in ("customer", "contact"):
        m = _mapping(order.get(key), key)
        if m is None:
            continue
        email = email or _text(m.get("email"), 254)
        name = name or _text(m.get("name"), 200)
    return (email.lower() if email else None), name


def _relationship_id(order: Mapping[str, Any], name: str) -> str | None:
    rel = order.get("relationships")
    if not isinstance(rel, Mapping):
        return None
    target = rel.get(name)
    data = target.get("data") if isinstance(target, Mapping) else None
    return _text(data.get("id"), MAX_ID) if isinstance(data, Mapping) else None


# ------------------------------------------------------------------------------ order


def _unbundle(raw: Any) -> tuple[Mapping[str, Any], Any]:
    if not isinstance(raw, Mapping):
        raise SkippableError(f"order is not a JSON object ({type(raw).__name__})")
    data = raw.get("data")
    if isinstance(data, Mapping):
        return data, raw.get("included")
    if data is not None:
        raise SkippableError("data: expected an order object")
    return raw, None


def bundle_order_id(raw: Any) -> str | None:
    """The order id of a bundle or bare order, if it has a usable one (never raises)."""
    if not isinstance(raw, Mapping):
        return None
    data = raw.get("data")
    order = data if isinstance(data, Mapping) else raw
    value = order.get("id")
    if isinstance(value, str) and _ORDER_ID.fullmatch(value.strip()):
        return value.strip()
    return None


def parse_elasticpath_order(raw: Any) -> SourceOrder:
    """Normalise one EP order bundle (see the module docstring for every rule).

    Every string is first made safe (:func:`sync.domain.text.clean_json`: no lone
    surrogates, NUL or control characters). Raises :class:`SkippableError` when the order
    cannot be understood; the message says why.
    """
    order, included = _unbundle(clean_json(raw))
    order_id = bundle_order_id(order)
    if order_id is None:
        raise SkippableError(
            "id: missing, or not 1-64 letters, digits, '-' or '_' (Elastic Path ids are UUIDs)"
        )
    rtype = order.get("type")
    if rtype is not None and rtype != "order":
        raise SkippableError(f"type: {str(rtype)[:40]!r} is not an order")
    try:
        meta = _mapping(order.get("meta"), "meta", required=True)
        assert meta is not None
        stamps = _mapping(meta.get("timestamps"), "meta.timestamps", required=True)
        assert stamps is not None
        created = parse_timestamp(stamps.get("created_at"), "meta.timestamps.created_at")
        updated = (
            parse_timestamp(stamps.get("updated_at"), "meta.timestamps.updated_at")
            if stamps.get("updated_at") is not None
            else None
        )
        dp = meta.get("display_price")
        prices = _mapping(dp, "meta.display_price") if dp is not None else meta
        assert prices is not None
        currency = _order_currency(prices)
        money = _Money(currency)
        totals = _totals(prices, money)
        items = order_items(included, order)
        lines = _lines(items, money)
        totals = _with_shipping_tax(totals, lines, items)
        email, name = _person(order)
        billing = _address(order.get("billing_address"), "billing_address", email=email)
        shipping = _address(order.get("shipping_address"), "shipping_address", email=None)
        if not (billing.first_name or billing.last_name or shipping.first_name):
            first, last = split_name(name)
            billing = replace(billing, first_name=first, last_name=last)
        ship_raw = order.get("shipping_address")
        instructions = (
            _text(ship_raw.get("instructions"), MAX_TEXT) if isinstance(ship_raw, Mapping) else None
        )
        customer = order.get("customer")
        customer_id = (
            _text(customer.get("id"), MAX_ID) if isinstance(customer, Mapping) else None
        ) or _relationship_id(order, "customer")
        account_id = _relationship_id(order, "account")
        return SourceOrder(
            source=SOURCE,
            order_id=order_id,
            reference=_text(order.get("order_number"), MAX_ID) or order_id,
            created_at=created,
            status=synthetic_status(
                order.get("status"), order.get("payment"), order.get("shipping")
            ),
            billing=billing,
            shipping=shipping,
            totals=totals,
            lines=lines,
            currency=currency,
            transaction_id=_text(order.get("payment_intent_id"), 200),
            comments=instructions,
            customer_id=customer_id or account_id,
            is_guest=customer_id is None and account_id is None,
            updated_at=updated,
        )
    except SkippableError:
        raise
    except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError) as exc:
        # Defensive net: the parser is fuzzed, but a new shape must never stop the line.
        raise SkippableError(f"unreadable order: {type(exc).__name__}") from None
