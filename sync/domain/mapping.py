"""SourceOrder → WiredPlus ``UpdateOrder`` body (pure).

Formulas (all amounts in major units; Decimal until the boundary, then rounded half-up to 2
places and emitted as JSON numbers):

=========================  =====================================================================
``invoice_total``          products before discounts, excl. tax (ShopWired ``subTotal``)
``invoice_discount_total`` Σ order discounts (ShopWired ``discounts[].value``)
``invoice_tax_total``      product tax = total tax − shipping tax
``invoice_total_inc_tax``  invoice_total − invoice_discount_total + invoice_tax_total
``shipping_total``         shipping charged after shipping discounts, excl. tax
``shipping_discount_total``original shipping − shipping charged (never negative)
``shipping_tax_total``     tax on shipping (see :mod:`sync.domain.parse_shopwired`)
``shipping_total_inc_tax`` shipping_total + shipping_tax_total
``grand_total_inc_tax``    what the customer paid (ShopWired ``total``), unchanged
``grand_total``            grand_total_inc_tax − total tax
``number_of_products``     Σ line quantities
=========================  =====================================================================

Per line: ``product_price`` = unit price after discounts excl. tax; ``product_original_price``
= before discounts; ``product_price_tax`` = unit tax; ``product_price_inc_tax`` = price + tax;
``row_total`` = row excl. tax; ``row_total_inc_tax`` = row + row tax; ``row_total_discount`` =
(original − price) × quantity.

``order_update_date`` is not part of the content: the caller passes the moment the content was
last seen to change, so an unchanged order maps to a byte-identical body (and costs no call).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sync.domain.models import SourceOrder
from sync.domain.status_map import Resolution
from sync.errors import SkippableError

INTEGRATION = "ordersync"
RESOURCE = "order"
CENT = Decimal("0.01")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s.]{2,63}$")
ORDER_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
EVENT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class MappingContext:
    """Per-deployment settings the mapping needs."""

    currency: str = "GBP"
    reference_prefix: str = ""


def to_money(value: Decimal) -> float:
    """Round half-up to 2 places at the boundary; emitted as a JSON number."""
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def order_date(dt: datetime) -> str:
    return dt.strftime(ORDER_DATE_FORMAT)


def event_date(dt: datetime) -> str:
    return dt.strftime(EVENT_DATE_FORMAT)


def api_reference_id(order_id: str, ctx: MappingContext) -> str:
    return f"{ctx.reference_prefix}{order_id}"


def validate_email(email: str | None) -> str:
    """Trimmed, lower-cased customer email, or SkippableError (WiredPlus requires one)."""
    if not email:
        raise SkippableError("no customer email on the billing or shipping address")
    e = email.strip().lower()
    if not _EMAIL.match(e):
        raise SkippableError("customer email is not a valid address")
    return e


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
    t = order.totals
    if t.grand_total_inc_tax < 0 or t.tax > t.grand_total_inc_tax + t.discount + 1:
        raise SkippableError("order totals are inconsistent (tax larger than the total)")
    b, s = order.billing, order.shipping
    first = b.first_name or s.first_name
    last = b.last_name or s.last_name
    invoice_inc = t.products - t.discount + t.products_tax
    body: dict[str, Any] = {
        "api_integration": INTEGRATION,
        "api_resource": RESOURCE,
        "api_reference_id": api_reference_id(order.order_id, ctx),
        "order_reference": order.reference,
        "order_create_date": order_date(order.created_at),
        "order_status": status.order_status,
        "invoice_tax_total": to_money(t.products_tax),
        "invoice_total": to_money(t.products),
        "invoice_total_inc_tax": to_money(invoice_inc),
        "invoice_discount_total": to_money(t.discount),
        "shipping_tax_total": to_money(t.shipping_tax),
        "shipping_total": to_money(t.shipping),
        "shipping_total_inc_tax": to_money(t.shipping + t.shipping_tax),
        "shipping_discount_total": to_money(t.shipping_discount),
        "grand_total": to_money(t.grand_total_inc_tax - t.tax),
        "grand_total_inc_tax": to_money(t.grand_total_inc_tax),
        "iso_currency_code": (order.currency or ctx.currency).upper(),
        "number_of_products": sum(ln.quantity for ln in order.lines),
        "customer_email": email,
        "customer_firstname": first,
        "customer_lastname": last,
        "customer_telephone": b.telephone or s.telephone,
        "customer_notes": order.comments,
        "billing_first_name": b.first_name,
        "billing_last_name": b.last_name,
        "billing_address1": b.line1,
        "billing_address2": b.line2,
        "billing_city": b.city,
        "billing_county": b.county,
        "billing_post_code": b.postcode,
        "billing_country": b.country,
        "shipping_first_name": s.first_name,
        "shipping_last_name": s.last_name,
        "shipping_address1": s.line1,
        "shipping_address2": s.line2,
        "shipping_city": s.city,
        "shipping_county": s.county,
        "shipping_post_code": s.postcode,
        "shipping_country": s.country,
        "order_lines": [
            {
                "order_line_id": ln.line_id,
                "product_sku": ln.sku,
                "product_name": ln.name,
                "product_description": ln.description,
                "tax_percent": to_money(ln.tax_percent),
                "product_price": to_money(ln.unit_price),
                "product_price_tax": to_money(ln.unit_tax),
                "product_price_inc_tax": to_money(ln.unit_price + ln.unit_tax),
                "product_original_price": to_money(ln.original_unit_price),
                "quantity": ln.quantity,
                "row_total": to_money(ln.row_total),
                "row_total_inc_tax": to_money(ln.row_total + ln.row_tax),
                "row_total_discount": to_money(
                    max(ln.original_unit_price - ln.unit_price, Decimal(0)) * ln.quantity
                ),
            }
            for ln in order.lines
        ],
    }
    if order.payment_method:
        body["payment_type"] = "online"
        body["payment_type_name"] = order.payment_method
    if order.is_guest is not None:
        body["customer_is_guest"] = order.is_guest
    custom = custom_fields(order)
    if custom:
        body["custom_fields"] = custom
    return {k: v for k, v in body.items() if v is not None}


def custom_fields(order: SourceOrder) -> dict[str, str]:
    """Tracking URL, delivery date, transaction id and line variations, where present."""
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
    out.update(order.extra)
    return out


def content_hash(body: dict[str, Any]) -> str:
    """Stable hash of an UpdateOrder body, ignoring ``order_update_date`` and ``id``."""
    stable = {k: v for k, v in body.items() if k not in ("order_update_date", "id")}
    raw = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()
