"""ShopWired order JSON → :class:`SourceOrder` (pure).

Hostile or broken input never escapes as a ``TypeError``/``KeyError``: anything that cannot be
understood raises :class:`~sync.errors.SkippableError` with a reason a merchant can act on.

ShopWired money conventions (docs example: total 132 = subTotal 100 + shipping 10 + tax 22):
product ``price`` is after discounts and excludes tax when tax is charged; ``originalPrice`` is
before discounts; ``shippingTotal`` is after shipping discounts, ``originalShippingTotal``
before; ``tax.value`` is product tax plus shipping tax; ``total`` is what the customer paid.
Derived here:

* product tax per unit  = ``priceVat`` if given, else ``price × vatRate / 100``
* shipping tax          = 0 when no shipping is charged; else ``tax.value − Σ product tax``
  (each line's tax rounded to pennies first, as ShopWired does) clamped to ``[0, tax.value]``
  when the products carry VAT rates, else ``shippingTotal ×
  shipping[0].vatRate / 100``
* fees                  = ``fees[]`` (name, value, type), each a surcharge inside ``total``
* line ``comments``     = the customer's note on the line (never the product description)
* line description      = a bundle's constituents (``bundleProducts[]``, the shape of
  ``embed=bundle_products``; key name unverified), else none: orders carry no description
* product discount      = Σ ``discounts[].value``
* shipping discount     = ``max(0, originalShippingTotal − shippingTotal)``
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

from sync.domain.models import (
    Address,
    Fee,
    OrderLine,
    Refund,
    SourceOrder,
    SourceStatus,
    Totals,
)
from sync.domain.text import clean_json
from sync.errors import SkippableError

SOURCE = "shopwired"
MAX_MONEY = Decimal("100000000")  # £100m: anything larger is nonsense, not an order
MAX_LINES = 2000
MAX_QUANTITY = 1_000_000
MAX_TEXT = 2000
MAX_ORDER_ID = 10**18 - 1
"""ShopWired order ids are positive integers; 18 digits is far beyond any real one and still
fits every integer column and query parameter on the way."""
ZERO = Decimal(0)
PENNY = Decimal("0.01")


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    s = str(value).replace("\x00", "").strip()
    return s[:limit] if s else None


def money(value: Any, where: str, *, allow_negative: bool = False) -> Decimal:
    """Parse a money amount (number or numeric string) into Decimal; reject nonsense."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, bool):
        raise SkippableError(f"{where}: expected a number, got a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SkippableError(f"{where}: not a finite number")
        d = Decimal(repr(value))
    elif isinstance(value, int | str):
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise SkippableError(f"{where}: {str(value)[:40]!r} is not a number") from None
    else:
        raise SkippableError(f"{where}: expected a number, got {type(value).__name__}")
    if not d.is_finite():
        raise SkippableError(f"{where}: not a finite number")
    if abs(d) > MAX_MONEY:
        raise SkippableError(f"{where}: amount {d} is out of range")
    if d < 0 and not allow_negative:
        raise SkippableError(f"{where}: negative amount {d}")
    return d


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise SkippableError(f"{where}: quantity is a boolean")
    try:
        q = Decimal(str(value))
    except InvalidOperation:
        raise SkippableError(f"{where}: quantity {str(value)[:40]!r} is not a number") from None
    if not q.is_finite() or q != q.to_integral_value() or q < 0 or q > MAX_QUANTITY:
        raise SkippableError(f"{where}: quantity {str(value)[:40]} is not a sane whole number")
    return int(q)


def parse_created(value: Any) -> datetime:
    """``"Mon, 23 Nov 2015 18:42:29 +0000"`` (or ISO-8601) → aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        raise SkippableError("created: missing or not a string")
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SkippableError(f"created: unreadable date {value[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if not 1990 <= dt.year <= 2200:
        raise SkippableError(f"created: implausible date {value[:40]!r}")
    return dt.astimezone(UTC)


#: Honorifics dropped from the front of a name ("Mr John Smith" → John / Smith).
TITLES = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "lady", "lord", "rev",
        "revd", "fr", "capt", "master",
    }
)


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """One name field → (first, last), the pair a "Dear …" greeting needs.

    * ``"Mary Ann O'Neil"`` → (``"Mary"``, ``"Ann O'Neil"``): first word, then the rest;
    * ``"Mr John Smith"`` → (``"John"``, ``"Smith"``): a leading title (:data:`TITLES`, with
      or without a full stop) is dropped unless it is the only word;
    * ``"SMITH, John"`` → (``"John"``, ``"SMITH"``): one comma means "Last, First";
    * a single word is a first name (``"Cher"`` → (``"Cher"``, None)).
    """
    if not name:
        return None, None
    if name.count(",") == 1:
        last_part, first_part = (p.strip() for p in name.split(","))
        if last_part and first_part:
            first, rest = split_name(first_part)
            first_words = " ".join(w for w in (first, rest) if w)
            return first_words or None, last_part
    parts = name.split()
    while len(parts) > 1 and parts[0].rstrip(".").lower() in TITLES:
        parts = parts[1:]
    if not parts:
        return None, None
    return parts[0], (" ".join(parts[1:]) or None)


def _address(raw: Any, where: str) -> Address:
    if raw is None:
        return Address()
    if not isinstance(raw, Mapping):
        raise SkippableError(f"{where}: expected an object")
    first, last = split_name(_text(raw.get("name"), 200))
    line2 = ", ".join(
        p for p in (_text(raw.get("addressLine2"), 200), _text(raw.get("addressLine3"), 200)) if p
    )
    email = _text(raw.get("emailAddress"), 254)
    return Address(
        first_name=first,
        last_name=last,
        email=email.lower() if email else None,
        telephone=_text(raw.get("telephone"), 50),
        company=_text(raw.get("companyName"), 200),
        line1=_text(raw.get("addressLine1"), 200),
        line2=line2 or None,
        city=_text(raw.get("city"), 100),
        county=_text(raw.get("province"), 100) or _text(raw.get("state"), 100),
        postcode=_text(raw.get("postcode"), 20),
        country=_text(raw.get("country"), 100),
    )


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SkippableError(f"{key}: expected a list")
    return value


def _lines(raw: Mapping[str, Any], order_id: str) -> tuple[OrderLine, ...]:
    products = _list(raw, "products")
    if len(products) > MAX_LINES:
        raise SkippableError(f"products: {len(products)} lines is more than {MAX_LINES}")
    lines: list[OrderLine] = []
    seen: set[str] = set()
    for i, p in enumerate(products):
        where = f"products[{i}]"
        if not isinstance(p, Mapping):
            raise SkippableError(f"{where}: expected an object")
        price = money(p.get("price"), f"{where}.price")
        original = money(p.get("originalPrice"), f"{where}.originalPrice") if p.get(
            "originalPrice"
        ) not in (None, "") else price
        qty = _quantity(p.get("quantity", 1), where)
        rate = money(p.get("vatRate"), f"{where}.vatRate")
        if rate > 100:
            raise SkippableError(f"{where}.vatRate: {rate}% is not a tax rate")
        unit_tax = (
            money(p.get("priceVat"), f"{where}.priceVat")
            if p.get("priceVat") not in (None, "")
            else price * rate / 100
        )
        item = _text(p.get("itemId"), 64)
        line_id = f"{order_id}-{item}" if item else f"{order_id}-{i + 1}"
        if line_id in seen:
            line_id = f"{order_id}-{i + 1}"
        seen.add(line_id)
        variations = tuple(
            (str(_text(v.get("name"), 100) or ""), str(_text(v.get("value"), 200) or ""))
            for v in (p.get("variation") or [])
            if isinstance(v, Mapping)
        ) if isinstance(p.get("variation"), list) else ()
        row_total = (
            money(p.get("total"), f"{where}.total")
            if p.get("total") not in (None, "")
            else price * qty
        )
        row_tax = (
            money(p.get("totalVat"), f"{where}.totalVat")
            if p.get("totalVat") not in (None, "")
            else unit_tax * qty
        )
        lines.append(
            OrderLine(
                description=_bundle_description(p),
                line_id=line_id,
                product_id=_text(p.get("id"), 64),
                sku=_text(p.get("sku"), 128),
                name=_text(p.get("title"), 500) or _text(p.get("name"), 500) or "Product",
                unit_price=price,
                original_unit_price=max(original, price),
                quantity=qty,
                tax_percent=rate,
                unit_tax=unit_tax,
                row_total=row_total,
                row_tax=row_tax,
                variations=variations,
                comment=_text(p.get("comments"), 500),
            )
        )
    return tuple(lines)


def refund_digest(name: Any, amount: Decimal) -> str:
    """8 hex digits naming an id-less refund's content (also inside pre-1.x ``n<i>-`` keys)."""
    return hashlib.sha256(f"{name}|{amount}".encode()).hexdigest()[:8]


def _bundle_description(product: Mapping[str, Any]) -> str | None:
    """What a bundle contains (``embed=bundle_products``: title and SKU of each constituent),
    as the line's product description: ``Bundle of: Mug (MUG-1), Coffee (COF-2)``."""
    parts = product.get("bundleProducts", product.get("bundle_products"))
    if not isinstance(parts, list):
        return None
    names = []
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        title, sku = _text(part.get("title"), 200), _text(part.get("sku"), 128)
        if title or sku:
            names.append(f"{title} ({sku})" if title and sku else str(title or sku))
    return ("Bundle of: " + ", ".join(names))[:500] if names else None


def _refunds(raw: Mapping[str, Any]) -> tuple[Refund, ...]:
    out: list[Refund] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(_list(raw, "refunds")):
        where = f"refunds[{i}]"
        if not isinstance(r, Mapping):
            raise SkippableError(f"{where}: expected an object")
        amount = money(
            r.get("value") if r.get("value") is not None else r.get("amount"), f"{where}.value"
        )
        rid = _text(r.get("id"), 64)
        if rid:
            key = f"id-{rid}"
        else:
            # No id: the key is the refund's content plus how many identical refunds came
            # before it, so it does not depend on where the refund sits in the list.
            digest = refund_digest(r.get("name"), amount)
            seen[digest] = seen.get(digest, 0) + 1
            key = f"c{digest}-{seen[digest]}"
        created = None
        if r.get("createdAt"):
            try:
                created = parse_created(r.get("createdAt"))
            except SkippableError:
                created = None
        reason = _text(r.get("name"), 300) or _text(r.get("description"), 300)
        out.append(Refund(key=key, amount=amount, reason=reason, created_at=created))
    return tuple(out)


def _fees(raw: Mapping[str, Any]) -> tuple[Fee, ...]:
    out: list[Fee] = []
    for i, f in enumerate(_list(raw, "fees")):
        where = f"fees[{i}]"
        if not isinstance(f, Mapping):
            raise SkippableError(f"{where}: expected an object")
        amount = money(f.get("value"), f"{where}.value")
        if amount == ZERO:
            continue
        out.append(
            Fee(
                name=_text(f.get("name"), 200) or "Fee",
                amount=amount,
                kind=_text(f.get("type"), 64),
            )
        )
    return tuple(out)


def _status(raw: Mapping[str, Any]) -> SourceStatus:
    st = raw.get("status")
    if not isinstance(st, Mapping):
        raise SkippableError("status: missing or not an object")
    sid = _text(st.get("id"), 64)
    if sid is None:
        raise SkippableError("status.id: missing")
    return SourceStatus(
        id=sid,
        name=_text(st.get("name"), 100) or "",
        type=(_text(st.get("type"), 32) or "custom").lower(),
    )


def order_id_of(value: Any) -> str | None:
    """A ShopWired order id as canonical text (``"1234"``), or None unless ``value`` is a
    positive integer up to :data:`MAX_ORDER_ID` (a JSON int or a string of ASCII digits;
    ``"abc"``, ``-7``, ``"1' OR '1'='1"``, ``1.5``, ``true`` and 64-digit ids are all None).
    Never truncates, never raises."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            return None
        value = int(text)
    if not isinstance(value, int) or not 1 <= value <= MAX_ORDER_ID:
        return None
    return str(value)


def parse_shopwired_order(raw: Any) -> SourceOrder:
    """Normalise one ShopWired order object.

    Every string is first made safe (:func:`sync.domain.text.clean_json`: no lone
    surrogates, NUL or control characters). Raises :class:`SkippableError` when the order
    cannot be understood; the message says why.
    """
    raw = clean_json(raw)
    if not isinstance(raw, Mapping):
        raise SkippableError(f"order is not a JSON object ({type(raw).__name__})")
    order_id = order_id_of(raw.get("id"))
    if order_id is None:
        raise SkippableError(
            "id: missing or not a positive whole number (ShopWired order ids are integers)"
        )
    try:
        created = parse_created(raw.get("created"))
        billing = _address(raw.get("billingAddress"), "billingAddress")
        shipping = _address(raw.get("shippingAddress"), "shippingAddress")
        lines = _lines(raw, order_id)
        total = money(raw.get("total"), "total")
        sub_total = money(raw.get("subTotal"), "subTotal")
        shipping_total = money(raw.get("shippingTotal"), "shippingTotal")
        original_shipping = (
            money(raw.get("originalShippingTotal"), "originalShippingTotal")
            if raw.get("originalShippingTotal") not in (None, "")
            else shipping_total
        )
        tax_raw = raw.get("tax")
        if tax_raw is not None and not isinstance(tax_raw, Mapping):
            raise SkippableError("tax: expected an object")
        tax = money(tax_raw.get("value"), "tax.value") if tax_raw else ZERO
        discount = ZERO
        for i, d in enumerate(_list(raw, "discounts")):
            if not isinstance(d, Mapping):
                raise SkippableError(f"discounts[{i}]: expected an object")
            discount += money(d.get("value"), f"discounts[{i}].value")
        ship_rates = [s for s in _list(raw, "shipping") if isinstance(s, Mapping)]
        # ShopWired rounds tax per line to pennies; the rest of tax.value is shipping's
        products_tax_lines = sum(
            (ln.row_tax.quantize(PENNY, rounding=ROUND_HALF_UP) for ln in lines), ZERO
        )
        if shipping_total == ZERO:
            shipping_tax = ZERO  # nothing charged, nothing taxed
        elif lines and any(ln.tax_percent for ln in lines):
            shipping_tax = min(max(tax - products_tax_lines, ZERO), tax)
        elif ship_rates:
            rate = money(ship_rates[0].get("vatRate"), "shipping[0].vatRate")
            shipping_tax = min(shipping_total * rate / 100, tax)
        else:
            shipping_tax = ZERO
        products_tax = tax - shipping_tax
        if sub_total == ZERO and lines:
            sub_total = sum((ln.original_unit_price * ln.quantity for ln in lines), ZERO)
        totals = Totals(
            products=sub_total,
            products_tax=products_tax,
            discount=discount,
            shipping=shipping_total,
            shipping_tax=shipping_tax,
            shipping_discount=max(original_shipping - shipping_total, ZERO),
            grand_total_inc_tax=total,
            tax=tax,
        )
        customer = raw.get("customer")
        customer_id = (
            _text(customer.get("id"), 64) if isinstance(customer, Mapping) else None
        )
        customer_type = (
            _text(customer.get("type"), 32) if isinstance(customer, Mapping) else None
        )
        is_guest: bool | None
        if customer_type:
            is_guest = customer_type.lower() == "guest"
        else:
            is_guest = None if customer is None else customer_id is None
        archived = raw.get("archived")
        return SourceOrder(
            source=SOURCE,
            order_id=order_id,
            reference=_text(raw.get("reference"), 64) or order_id,
            created_at=created,
            status=_status(raw),
            billing=billing,
            shipping=shipping,
            totals=totals,
            lines=lines,
            refunds=_refunds(raw),
            fees=_fees(raw),
            archived=bool(archived) if isinstance(archived, bool) else False,
            payment_method=_text(raw.get("paymentMethod"), 100),
            tracking_url=_text(raw.get("trackingUrl"), 1000),
            delivery_date=_text(raw.get("deliveryDate"), 40),
            transaction_id=_text(raw.get("transactionId"), 200),
            comments=_text(raw.get("comments"), MAX_TEXT),
            customer_id=customer_id,
            is_guest=is_guest,
        )
    except SkippableError:
        raise
    except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError) as exc:
        # Defensive net: the parser is fuzzed, but a new shape must never stop the line.
        raise SkippableError(f"unreadable order: {type(exc).__name__}") from None
