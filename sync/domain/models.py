"""Source-neutral domain model of a shop order.

Each source adapter (ShopWired today, Elastic Path later) parses its own JSON into
:class:`SourceOrder`; everything downstream — status map, event rules, WiredPlus mapping, the
ledger — works on this model only. Money is :class:`~decimal.Decimal` in major units (pounds),
unrounded; rounding happens once, at the WiredPlus boundary. Datetimes are aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A status as the shop defines it: per-store ``id``, display ``name`` and a ``type``.

    ShopWired types are ``paid | unpaid | cancelled | shipped | custom``.
    """

    id: str
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Address:
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    telephone: str | None = None
    company: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    county: str | None = None
    postcode: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One product line. ``unit_price`` is after discounts and excluding tax."""

    line_id: str
    product_id: str | None
    sku: str | None
    name: str
    unit_price: Decimal
    original_unit_price: Decimal
    quantity: int
    tax_percent: Decimal
    unit_tax: Decimal
    row_total: Decimal
    row_tax: Decimal
    description: str | None = None
    variations: tuple[tuple[str, str], ...] = ()
    comment: str | None = None
    """The customer's note on this line ("please engrave …"); not the product description."""


@dataclass(frozen=True, slots=True)
class Refund:
    """One refund entry; ``key`` is stable for the same refund across fetches."""

    key: str
    amount: Decimal
    reason: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class Fee:
    """A surcharge the customer paid on top of products and shipping (e.g. a payment gateway
    fee), excluding tax; inside the order's grand total."""

    name: str
    amount: Decimal
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class Totals:
    """Order money in major units, excluding tax unless the name says otherwise.

    ``grand_total_inc_tax`` is what the customer paid (ShopWired ``total``).
    """

    products: Decimal
    products_tax: Decimal
    discount: Decimal
    shipping: Decimal
    shipping_tax: Decimal
    shipping_discount: Decimal
    grand_total_inc_tax: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class SourceOrder:
    """An order as read from a shop, normalised. ``order_id`` is the shop's own id."""

    source: str
    order_id: str
    reference: str
    created_at: datetime
    status: SourceStatus
    billing: Address
    shipping: Address
    totals: Totals
    lines: tuple[OrderLine, ...]
    refunds: tuple[Refund, ...] = ()
    fees: tuple[Fee, ...] = ()
    archived: bool = False
    payment_method: str | None = None
    currency: str | None = None
    tracking_url: str | None = None
    delivery_date: str | None = None
    transaction_id: str | None = None
    comments: str | None = None
    customer_id: str | None = None
    is_guest: bool | None = None
    updated_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def email(self) -> str | None:
        """Customer email: billing first, shipping as fallback."""
        return self.billing.email or self.shipping.email
