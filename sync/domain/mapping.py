"""SourceOrder → WiredPlus ``UpdateOrder`` body (pure).

Every amount is Decimal until the boundary, then rounded half-up to the currency's ISO 4217
exponent (0, 2 or 3 places: JPY ``1250``, GBP ``12.5``, KWD ``12.345``; see
:mod:`sync.domain.money`). Order-level amounts are rounded first; line amounts are then
*allocated* (largest remainder) so that the rounded parts add up to the rounded totals exactly.

Order amounts (``E`` = exponent, ``r(x)`` = x rounded to E places)
==================================================================

===========================  =======================================================================
``grand_total_inc_tax``      G = r(what the customer paid) (ShopWired ``total``, EP ``with_tax``)
``shipping_total``           S = r(shipping charged after shipping discounts, excl. tax)
``shipping_tax_total``       ST = r(tax on shipping) (ShopWired: order tax − Σ line tax; EP: order
                             tax − Σ item tax; 0 when the source shows none)
``shipping_total_inc_tax``   S + ST
``shipping_discount_total``  r(original shipping − shipping charged), never negative
``invoice_tax_total``        PT = r(order tax) − ST: the products' tax
fee lines                    one order line per source fee (ShopWired ``fees[]``): F = Σ r(fee)
products net                 PN = G − PT − S − ST − F. Equal to r(products − discounts) when the
                             source's totals add up; any difference (an order-level discount or
                             surcharge the lines do not show, or rounding) is carried by the
                             product lines, so the body always reconciles. PN < 0 → skipped
``invoice_total``            Σ (row_total + row_total_discount) over all lines (fee lines too)
``invoice_discount_total``   Σ row_total_discount
``invoice_total_inc_tax``    PN + F + PT  (= Σ row_total_inc_tax)
``grand_total``              G − PT − ST  (what was paid, excl. tax)
``number_of_products``       Σ product-line quantities (fee lines excluded)
===========================  =======================================================================

So, in every body: ``invoice_total − invoice_discount_total + invoice_tax_total +
shipping_total + shipping_tax_total = grand_total_inc_tax`` exactly, and
``Σ row_total = invoice_total − invoice_discount_total``, ``Σ row_total_inc_tax =
invoice_total_inc_tax``, ``Σ row_total_discount = invoice_discount_total``.

Per line
========

===========================  =======================================================================
``row_total``                the line's share of PN, allocated in proportion to the source's row
                             totals after discounts, excl. tax
``row_total_inc_tax``        row_total + the line's share of PT (in proportion to the source's
                             line tax; to row totals when the source gives none). A line whose
                             rate says 20 % on an order whose tax is 0 (VAT-exempt, export) gets 0
``product_price``            r(row_total / quantity): a unit price cannot carry more digits than
                             the currency, so ``product_price × quantity`` equals ``row_total``
                             within quantity × ½ minor unit (9.995 × 3 → 10.00, row 29.99)
``product_price_tax``        r(line tax / quantity); ``product_price_inc_tax`` = price + tax
``product_original_price``   r(unit price before discounts), at least ``product_price``
``row_total_discount``       max(0, r(unit price before discounts × quantity) − row_total)
``tax_percent``              0 when the line carries no tax (whatever the product's rate), else
                             the source's rate, else the rate the line's amounts show
``product_name``             the product's title, variations appended: ``Jumper (Size: M, Colour:
                             Oatmeal)`` — the name the email shows
``product_description``      the product's description when the source has one (never the
                             customer's line comment; ShopWired orders have none)
===========================  =======================================================================

A key whose value would be null is left out, in lines as in the order.

Other fields
============

* ``order_status``: the status map's value, unless the refunds say more: refunds summing to at
  least G → ``refunded``; some refund → ``partially-refunded`` unless the status already is a
  refund, or ``cancelled``/``fraud``/``declined``/``disputed`` (:func:`refined_order_status`).
* ``customer_firstname``/``customer_lastname`` and the billing/shipping names: one pair from one
  address — billing when it has a name, else shipping (a gift's recipient is not the buyer).
* ``billing_address1``/``shipping_address1``: the company name when there is one (postal order:
  organisation first), then the street lines in ``address2``.
* ``payment_type``: the source's payment method looked up case-insensitively in
  ``MappingContext.payment_types`` (defaults :data:`DEFAULT_PAYMENT_TYPES`, override with
  ``ORDERSYNC_PAYMENT_TYPES``), else ``MappingContext.default_payment_type`` (``online``);
  ``payment_type_name`` the method as the shop names it.
* ``custom_fields``: only the fields named in ``MappingContext.custom_fields`` (setting
  ``ORDERSYNC_WIREDPLUS_CUSTOM_FIELDS``), under the WiredPlus names configured there. WiredPlus
  accepts only custom fields pre-defined in the account, so none are sent by default
  (:data:`CUSTOM_FIELD_SOURCES` lists what can be sent).
* ``order_update_date`` is not part of the content: :func:`order_update_date` gives the
  source's own update time where it has one (Elastic Path ``updated_at``), else the moment the
  content was last seen to change, so an unchanged order maps to a byte-identical body.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from sync.domain.models import Address, OrderLine, Refund, SourceOrder
from sync.domain.money import (
    allocate,
    currency_exponent,
    round_money,
    to_json_number,
)
from sync.domain.status_map import Resolution
from sync.errors import SkippableError

INTEGRATION = "ordersync"
RESOURCE = "order"
CENT = Decimal("0.01")
ZERO = Decimal(0)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s.]{2,63}$")
ORDER_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
EVENT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

#: Payment method (lower-cased) → WiredPlus ``payment_type``. Anything else is ``online``.
DEFAULT_PAYMENT_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "bank transfer": "bank-transfer",
        "bacs": "bank-transfer",
        "direct bank transfer": "bank-transfer",
        "admin order": "manual",
        "manual": "manual",
        "cash on delivery": "cash-on-delivery",
        "cod": "cash-on-delivery",
        "cash": "cash",
        "pay in store": "in-store",
        "pay on collection": "in-store",
        "cheque": "cheque",
        "invoice": "invoice",
        "pay by invoice": "invoice",
        "ebay": "marketplace",
        "amazon": "marketplace",
        "gift voucher": "voucher",
    }
)

#: Values ordersync can send as custom fields, by the name used in
#: ``ORDERSYNC_WIREDPLUS_CUSTOM_FIELDS``. Order ones go on UpdateOrder, event ones on events.
CUSTOM_FIELD_SOURCES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "tracking_url": "the shop's tracking URL (order, and the dispatched event)",
        "delivery_date": "the delivery date the customer asked for (order)",
        "transaction_id": "the payment gateway's transaction id (order)",
        "variations": "every line's variations, 'Product: Size=M, Colour=Red; …' (order)",
        "line_comments": "the customer's notes on lines, 'Product: engrave …; …' (order)",
        "company": "the billing company name (order)",
        "refund_amount": "the refund's amount, with the currency's decimals (refunded event)",
        "refund_reason": "the refund's reason as the shop wrote it (refunded event)",
    }
)

#: Statuses that already say more than "partially refunded" does.
_KEEP_ON_PARTIAL_REFUND = frozenset(
    {"refunded", "partially-refunded", "cancelled", "fraud", "declined", "disputed"}
)


@dataclass(frozen=True, slots=True)
class MappingContext:
    """Per-deployment settings the mapping needs.

    ``custom_fields`` maps an ordersync field (:data:`CUSTOM_FIELD_SOURCES`) to the name of the
    custom field pre-defined in the WiredPlus account; empty (the default) sends none.
    """

    currency: str = "GBP"
    reference_prefix: str = ""
    payment_types: Mapping[str, str] = field(default_factory=lambda: DEFAULT_PAYMENT_TYPES)
    default_payment_type: str = "online"
    custom_fields: Mapping[str, str] = field(default_factory=dict)


def _name_pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for entry in text.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if not key or (sep and not value):
            raise ValueError(f"{what}: {entry.strip()!r} is not 'name' or 'name=value'")
        pairs.append((key, value if sep else key))
    return pairs


def parse_custom_fields(text: str) -> dict[str, str]:
    """``"tracking_url=Tracking URL, refund_reason"`` → ``{"tracking_url": "Tracking URL",
    "refund_reason": "refund_reason"}``; ValueError for a name not in
    :data:`CUSTOM_FIELD_SOURCES`."""
    out: dict[str, str] = {}
    for key, value in _name_pairs(text, "custom fields"):
        if key not in CUSTOM_FIELD_SOURCES:
            raise ValueError(
                f"custom fields: unknown field {key!r} (choose from "
                f"{', '.join(CUSTOM_FIELD_SOURCES)})"
            )
        out[key] = value
    return out


def parse_payment_types(text: str) -> dict[str, str]:
    """:data:`DEFAULT_PAYMENT_TYPES` overridden by ``"Klarna=finance, Cash=cash"``."""
    out = dict(DEFAULT_PAYMENT_TYPES)
    for key, value in _name_pairs(text, "payment types"):
        if key == value:
            raise ValueError(f"payment types: {key!r} needs '=<payment_type>'")
        out[" ".join(key.split()).lower()] = value
    return out


def to_money(value: Decimal, exponent: int = 2) -> int | float:
    """Round half-up to the currency's places at the boundary; emitted as a JSON number."""
    return to_json_number(value, exponent)


def order_date(dt: datetime) -> str:
    return dt.strftime(ORDER_DATE_FORMAT)


def event_date(dt: datetime) -> str:
    return dt.strftime(EVENT_DATE_FORMAT)


def order_update_date(order: SourceOrder, last_changed: datetime | None) -> str:
    """``order_update_date``: the source's own update time where it has one (Elastic Path
    ``updated_at``), else ``last_changed`` (when ordersync saw the content change; None on
    first sight), else the creation time."""
    return order_date(order.updated_at or last_changed or order.created_at)


def api_reference_id(order_id: str, ctx: MappingContext) -> str:
    return f"{ctx.reference_prefix}{order_id}"


def order_exponent(order: SourceOrder, ctx: MappingContext) -> int:
    """Decimal places of the order's currency (the deployment's when the source has none)."""
    return currency_exponent(order.currency or ctx.currency)


def validate_email(email: str | None) -> str:
    """Trimmed, lower-cased customer email, or SkippableError (WiredPlus requires one)."""
    if not email:
        raise SkippableError("no customer email on the billing or shipping address")
    e = email.strip().lower()
    if not _EMAIL.match(e):
        raise SkippableError("customer email is not a valid address")
    return e


def refined_order_status(
    status: str, refunds: tuple[Refund, ...], grand_total: Decimal, exponent: int
) -> str:
    """The status map's ``order_status``, corrected by the refunds (module docstring)."""
    refunded = round_money(sum((r.amount for r in refunds), ZERO), exponent)
    if refunded <= 0 or status == "refunded":
        return status
    if refunded >= round_money(grand_total, exponent):
        return "refunded"
    if status in _KEEP_ON_PARTIAL_REFUND:
        return status
    return "partially-refunded"


def payment_type(method: str, ctx: MappingContext) -> str:
    """WiredPlus ``payment_type`` for a shop's payment method name (case-insensitive)."""
    key = " ".join(method.split()).lower()
    return ctx.payment_types.get(key, ctx.default_payment_type)


def name_pair(billing: Address, shipping: Address) -> tuple[str | None, str | None]:
    """(first, last) from one address: billing when it has a name, else shipping."""
    if billing.first_name or billing.last_name:
        return billing.first_name, billing.last_name
    return shipping.first_name, shipping.last_name


def address_lines(a: Address) -> tuple[str | None, str | None]:
    """(address1, address2): company first when there is one, then the street lines."""
    if a.company:
        rest = ", ".join(p for p in (a.line1, a.line2) if p)
        return a.company, rest or None
    return a.line1, a.line2


def line_name(ln: OrderLine) -> str:
    """The product title with its variations: ``Jumper (Size: M, Colour: Oatmeal)``."""
    shown = [f"{n}: {v}" if n else v for n, v in ln.variations if v]
    return f"{ln.name} ({', '.join(shown)})" if shown else ln.name


@dataclass(frozen=True, slots=True)
class _Row:
    line_id: str
    sku: str | None
    name: str
    description: str | None
    quantity: int
    row: Decimal
    tax: Decimal
    original_unit: Decimal
    source_rate: Decimal
    is_product: bool


def _tax_percent(row: _Row) -> Decimal:
    """The rate the shop charged when the line carries tax; 0 when it carries none (a
    VAT-exempt or zero-rated line, whatever rate the product has); else the rate the line's
    own amounts show."""
    if row.tax == 0:
        return ZERO
    if row.source_rate > 0:
        return row.source_rate
    if row.row > 0:
        return (row.tax / row.row * 100).quantize(CENT)
    return ZERO


def _allocate_lines(order: SourceOrder, exponent: int) -> tuple[list[_Row], dict[str, Decimal]]:
    """Round the order's totals and allocate them to lines (module docstring, "Order
    amounts"); returns the rows and the order-level figures."""
    t = order.totals
    def r(x: Decimal) -> Decimal:
        return round_money(x, exponent)

    grand = r(t.grand_total_inc_tax)
    ship, ship_tax = r(t.shipping), r(t.shipping_tax)
    products_tax = r(t.tax) - ship_tax  # rounded parts of the rounded whole
    fees = [r(f.amount) for f in order.fees]
    if products_tax < 0 or products_tax + ship_tax > grand:
        raise SkippableError("order totals are inconsistent (tax larger than the total)")
    products_net = grand - products_tax - ship - ship_tax - sum(fees, ZERO)
    if products_net < 0:
        raise SkippableError(
            f"order totals are inconsistent (shipping, tax and fees exceed the total {grand})"
        )
    src_rows = [ln.row_total for ln in order.lines]
    nets = allocate(products_net, src_rows, exponent)
    src_tax = [ln.row_tax for ln in order.lines]
    tax_weights = src_tax if sum(src_tax, ZERO) > 0 else nets
    taxes = allocate(products_tax, tax_weights, exponent)
    rows = [
        _Row(
            line_id=ln.line_id,
            sku=ln.sku,
            name=line_name(ln),
            description=ln.description,
            quantity=ln.quantity,
            row=net,
            tax=tax,
            original_unit=ln.original_unit_price,
            source_rate=ln.tax_percent,
            is_product=True,
        )
        for ln, net, tax in zip(order.lines, nets, taxes, strict=True)
    ]
    for i, (fee, amount) in enumerate(zip(order.fees, fees, strict=True)):
        rows.append(
            _Row(
                line_id=f"{order.order_id}-fee-{i + 1}",
                sku=f"fee:{fee.kind}" if fee.kind else "fee",
                name=fee.name,
                description=None,
                quantity=1,
                row=amount,
                tax=ZERO,
                original_unit=amount,
                source_rate=ZERO,
                is_product=False,
            )
        )
    figures = {
        "grand": grand,
        "ship": ship,
        "ship_tax": ship_tax,
        "ship_discount": r(max(t.shipping_discount, ZERO)),
        "products_tax": products_tax,
    }
    return rows, figures


def _line_body(row: _Row, exponent: int) -> tuple[dict[str, Any], Decimal]:
    """One ``order_lines`` entry (no null values) and its row discount."""
    def m(x: Decimal) -> int | float:
        return to_json_number(x, exponent)

    qty = row.quantity
    unit = round_money(row.row / qty, exponent) if qty else row.row
    unit_tax = round_money(row.tax / qty, exponent) if qty else row.tax
    original = max(round_money(row.original_unit, exponent), unit)
    discount = max(round_money(row.original_unit * qty, exponent) - row.row, ZERO)
    line: dict[str, Any] = {
        "order_line_id": row.line_id,
        "product_sku": row.sku,
        "product_name": row.name,
        "product_description": row.description,
        "tax_percent": float(_tax_percent(row).quantize(CENT)),
        "product_price": m(unit),
        "product_price_tax": m(unit_tax),
        "product_price_inc_tax": m(unit + unit_tax),
        "product_original_price": m(original),
        "quantity": qty,
        "row_total": m(row.row),
        "row_total_inc_tax": m(row.row + row.tax),
        "row_total_discount": m(discount),
    }
    return {k: v for k, v in line.items() if v is not None}, discount


def map_order(
    order: SourceOrder, status: Resolution, ctx: MappingContext
) -> dict[str, Any]:
    """Build the UpdateOrder body without ``order_update_date`` and without ``id``.

    Raises :class:`SkippableError` for orders WiredPlus cannot take (no email, no lines,
    totals that do not add up to something sane).
    """
    email = validate_email(order.email)
    if not order.lines:
        raise SkippableError("order has no product lines (WiredPlus requires order_lines)")
    if order.totals.grand_total_inc_tax < 0:
        raise SkippableError("order totals are inconsistent (negative total)")
    exp = order_exponent(order, ctx)
    def m(x: Decimal) -> int | float:
        return to_json_number(x, exp)

    rows, f = _allocate_lines(order, exp)
    lines: list[dict[str, Any]] = []
    discount_total = net_total = ZERO
    for row in rows:
        line, discount = _line_body(row, exp)
        lines.append(line)
        discount_total += discount
        net_total += row.row
    b, s = order.billing, order.shipping
    first, last = name_pair(b, s)
    b1, b2 = address_lines(b)
    s1, s2 = address_lines(s)
    body: dict[str, Any] = {
        "api_integration": INTEGRATION,
        "api_resource": RESOURCE,
        "api_reference_id": api_reference_id(order.order_id, ctx),
        "order_reference": order.reference,
        "order_create_date": order_date(order.created_at),
        "order_status": refined_order_status(
            status.order_status, order.refunds, order.totals.grand_total_inc_tax, exp
        ),
        "invoice_tax_total": m(f["products_tax"]),
        "invoice_total": m(net_total + discount_total),
        "invoice_total_inc_tax": m(net_total + f["products_tax"]),
        "invoice_discount_total": m(discount_total),
        "shipping_tax_total": m(f["ship_tax"]),
        "shipping_total": m(f["ship"]),
        "shipping_total_inc_tax": m(f["ship"] + f["ship_tax"]),
        "shipping_discount_total": m(f["ship_discount"]),
        "grand_total": m(f["grand"] - f["products_tax"] - f["ship_tax"]),
        "grand_total_inc_tax": m(f["grand"]),
        "iso_currency_code": (order.currency or ctx.currency).upper(),
        "number_of_products": sum(r.quantity for r in rows if r.is_product),
        "customer_email": email,
        "customer_firstname": first,
        "customer_lastname": last,
        "customer_telephone": b.telephone or s.telephone,
        "customer_notes": order.comments,
        "billing_first_name": b.first_name,
        "billing_last_name": b.last_name,
        "billing_address1": b1,
        "billing_address2": b2,
        "billing_city": b.city,
        "billing_county": b.county,
        "billing_post_code": b.postcode,
        "billing_country": b.country,
        "shipping_first_name": s.first_name,
        "shipping_last_name": s.last_name,
        "shipping_address1": s1,
        "shipping_address2": s2,
        "shipping_city": s.city,
        "shipping_county": s.county,
        "shipping_post_code": s.postcode,
        "shipping_country": s.country,
        "order_lines": lines,
    }
    if order.payment_method:
        body["payment_type"] = payment_type(order.payment_method, ctx)
        body["payment_type_name"] = order.payment_method
    if order.is_guest is not None:
        body["customer_is_guest"] = order.is_guest
    custom = select_custom_fields(order_custom_values(order), ctx.custom_fields)
    if custom:
        body["custom_fields"] = custom
    return {k: v for k, v in body.items() if v is not None}


def order_custom_values(order: SourceOrder) -> dict[str, str]:
    """Every order value that can be sent as a custom field, by ordersync name."""
    out: dict[str, str] = {}
    if order.tracking_url:
        out["tracking_url"] = order.tracking_url
    if order.delivery_date:
        out["delivery_date"] = order.delivery_date
    if order.transaction_id:
        out["transaction_id"] = order.transaction_id
    variations = [
        f"{ln.name}: " + ", ".join(f"{n}={v}" for n, v in ln.variations)
        for ln in order.lines
        if ln.variations
    ]
    if variations:
        out["variations"] = "; ".join(variations)[:2000]
    comments = [f"{ln.name}: {ln.comment}" for ln in order.lines if ln.comment]
    if comments:
        out["line_comments"] = "; ".join(comments)[:2000]
    if order.billing.company:
        out["company"] = order.billing.company
    out.update(order.extra)
    return out


def select_custom_fields(
    values: Mapping[str, str], configured: Mapping[str, str]
) -> dict[str, str]:
    """The configured subset of ``values``, renamed to the WiredPlus field names."""
    return {configured[k]: v for k, v in values.items() if k in configured and v}


def custom_fields(order: SourceOrder, ctx: MappingContext | None = None) -> dict[str, str]:
    """The ``custom_fields`` an UpdateOrder body for ``order`` carries under ``ctx``."""
    return select_custom_fields(
        order_custom_values(order), (ctx or MappingContext()).custom_fields
    )


def without_custom_fields(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """``body`` without its ``custom_fields``; None when it has none (nothing to retry)."""
    if not body.get("custom_fields"):
        return None
    return {k: v for k, v in body.items() if k != "custom_fields"}


def is_custom_field_rejection(error: str) -> bool:
    """Whether a WiredPlus rejection (its ``error`` text) is about custom fields.

    WiredPlus's wording is not documented (docs/assumptions.md): any rejection naming
    ``custom_fields`` / "custom field" counts, so a body rejected for them is sent again
    without them rather than dead-lettered with its email.
    """
    text = error.lower()
    return "custom_field" in text or "custom field" in text


def content_hash(body: dict[str, Any]) -> str:
    """Stable hash of an UpdateOrder body, ignoring ``order_update_date`` and ``id``."""
    stable = {k: v for k, v in body.items() if k not in ("order_update_date", "id")}
    raw = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()
