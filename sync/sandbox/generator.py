"""Seeded, realistic ShopWired orders, and shop activity that changes them over time.

Contract
--------
:class:`OrderGenerator` produces order dicts in the exact JSON shape of ShopWired's
``GET /v1/orders/{id}`` (docs "Order Properties"): the same seed and the same sequence of calls
give the same orders. Ids and references are unique and strictly increasing per generator.

Money rule (all amounts Decimal, rounded half-up to 2 places, emitted as JSON numbers; the
docs' example reads total 132 = subTotal 100 + shipping 10 + tax 22)::

    products[].originalPrice  unit price before discounts, excl. tax
    products[].price          unit price after discounts, excl. tax (docs: "price paid for
                              the product after discounts were applied")
    subTotal                  Σ originalPrice x quantity      ("excluding discounts", excl. tax)
    Σ discounts[].value       Σ (originalPrice - price) x quantity   (product discounts only)
    shippingTotal             shipping charged, excl. tax, after shipping discounts
    originalShippingTotal     shipping before shipping discounts (= Σ shipping[].value)
    line tax                  round(price x quantity x vatRate / 100)            per line
    shipping tax              round(shippingTotal x shipping[0].vatRate / 100)
    tax.value                 Σ line tax + shipping tax
    Σ fees[].value            surcharges paid by the customer (not taxed)
    total                     subTotal - Σ discounts + shippingTotal + tax.value + Σ fees
    partialPaymentTotal       the part of ``total`` paid by gift voucher / reward points
                              (a payment, not a discount: it is *inside* ``total``)

Choices the documents leave open (all deliberate, keep them in mind when reading fixtures):

* Shipping discounts are not listed in ``discounts[]``; they only show as
  ``originalShippingTotal > shippingTotal``. ``shipping[].value`` is the rate's price before
  shipping discounts.
* ``extras[].value`` is informational; a priced extra is already included in ``price``.
* Guest checkouts carry ``"customer": {"id": null}``; registered customers keep one id (and
  one email) across their orders.
* Absent text is ``""`` (as ``trackingUrl`` in the docs' example), never missing.
* Non-UK orders are exports: every ``vatRate`` (products and shipping) is 0.
* ``refunds[]`` items are ``{"id", "name", "value", "createdAt"}`` with ``createdAt`` in the
  same RFC-2822 form as ``created``; ``Σ refunds.value <= total`` always.
* ``totalWeight`` is a string such as ``"1.3kg"`` (docs), ``products[].weight`` a number (kg).

:class:`Activity` moves existing orders of a :class:`~sync.sandbox.shopwired.ShopWiredSimulator`
through their life (unpaid → paid → processing → shipped with a tracking URL → delivered →
completed; cancellations; partial and full refunds; archiving) and adds new orders, all through
the simulator's thread-safe mutators.
"""

from __future__ import annotations

import copy
import random
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from sync.clock import utc

if TYPE_CHECKING:
    from sync.sandbox.shopwired import ShopWiredSimulator

CENT = Decimal("0.01")
ZERO = Decimal(0)

DEFAULT_STATUSES: tuple[dict[str, Any], ...] = (
    {"id": 1380, "name": "Awaiting Payment", "type": "unpaid", "sortOrder": 1},
    {"id": 1381, "name": "Paid", "type": "paid", "sortOrder": 2},
    {"id": 1384, "name": "Processing", "type": "custom", "sortOrder": 3},
    {"id": 1389, "name": "On Hold", "type": "custom", "sortOrder": 4},
    {"id": 1390, "name": "Awaiting Collection", "type": "custom", "sortOrder": 5},
    {"id": 1382, "name": "Shipped", "type": "shipped", "sortOrder": 6},
    {"id": 1385, "name": "Delivered", "type": "custom", "sortOrder": 7},
    {"id": 1386, "name": "Completed", "type": "custom", "sortOrder": 8},
    {"id": 1383, "name": "Cancelled", "type": "cancelled", "sortOrder": 9},
    {"id": 1387, "name": "Refunded", "type": "custom", "sortOrder": 10},
    {"id": 1388, "name": "Partially Refunded", "type": "custom", "sortOrder": 11},
)
"""The sandbox store's statuses: the docs' 1381 "Paid" plus typical custom ones."""

INVALID_KINDS: tuple[str, ...] = (
    "no_email",
    "negative_total",
    "string_number",
    "no_products",
    "missing_status",
)
"""Kinds accepted by :meth:`OrderGenerator.make_invalid_order`."""


def money(value: Decimal) -> float:
    """Round half-up to pennies and convert to a JSON number."""
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def cents(value: Decimal) -> Decimal:
    """Round half-up to pennies, staying Decimal."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def rfc2822(dt: datetime) -> str:
    """``Mon, 23 Nov 2015 18:42:29 +0000`` (ShopWired's ``created`` format), in UTC."""
    return format_datetime(utc(dt).replace(microsecond=0))


def dec(value: Any) -> Decimal:
    """A JSON number (float/int) back to an exact Decimal."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


# --------------------------------------------------------------------------------- data pools

_FIRST = (
    "Mary Ann", "James", "Olivia", "Siobhán", "Seán", "Zoë", "Chloé", "Mohammed", "Priya",
    "Gareth", "Rhiannon", "Niamh", "Łukasz", "Agnieszka", "José", "Renée", "Björn", "Oliver",
    "Amelia", "Harry", "Isla", "Jack", "Émilie", "Dafydd", "Aoife", "Kwame", "Mei", "Tom",
)
_LAST = (
    "O'Neil", "O'Brien", "D'Arcy", "Smith", "Jones", "Williams", "Brown", "Taylor", "Davies",
    "Evans", "Müller", "García", "Nguyen", "Khan", "Patel", "Ó Súilleabháin", "MacDonald",
    "Fitzgerald-Smythe", "van der Berg", "Løvgren", "Wright", "Hughes", "Ahmed", "Brontë",
)
_STREETS = (
    "Kestrel Court", "High Street", "Church Lane", "St. Mary's Road", "Station Road",
    "Queen's Parade", "Ffordd Pen-y-Bryn", "Mill Lane", "Victoria Road", "The Crescent",
)
_UK = (
    ("Hapton", "Lancashire", "BB11 5NA"),
    ("Manchester", "Greater Manchester", "M1 1AE"),
    ("Leeds", "West Yorkshire", "LS1 4DY"),
    ("Cardiff", "South Glamorgan", "CF10 1EP"),
    ("Edinburgh", "Midlothian", "EH1 1YZ"),
    ("Belfast", "County Antrim", "BT1 5GS"),
    ("Bristol", "Bristol", "BS1 4DJ"),
    ("London", "Greater London", "SW1A 1AA"),
    ("Norwich", "Norfolk", "NR2 1NH"),
    ("St Albans", "Hertfordshire", "AL1 3JE"),
    ("Newcastle upon Tyne", "Tyne and Wear", "NE1 7RU"),
    ("Llangefni", "Ynys Môn", "LL77 7TW"),
)
_US = (
    ("Austin", "Texas", "73301"),
    ("Portland", "Oregon", "97201"),
    ("Brooklyn", "New York", "11201"),
    ("Springfield", "Illinois", "62701"),
    ("San José", "California", "95113"),
)
_EU = (
    ("Dublin", "County Dublin", "D02 X285", "Ireland"),
    ("Paris", "Île-de-France", "75002", "France"),
    ("München", "Bayern", "80331", "Germany"),
    ("Amsterdam", "Noord-Holland", "1012 JS", "Netherlands"),
    ("A Coruña", "Galicia", "15001", "Spain"),
)
_DOMAINS = ("example.co.uk", "example.com", "mail.example.org", "example.ie", "Example.co.uk")
_COMPANIES = ("", "", "", "", "Acme Widgets Ltd", "O'Reilly & Daughters", "Café Noir SARL")


@dataclass(frozen=True, slots=True)
class _Product:
    id: int
    title: str
    sku: str
    price: Decimal  # excl. VAT
    vat_rate: int
    weight: Decimal
    variations: tuple[tuple[str, tuple[str, ...]], ...] = ()
    extras: tuple[tuple[str, Decimal], ...] = ()


_CATALOGUE = (
    _Product(1238473, "Nike Airmax Trainers", "NK-AM", Decimal("83.33"), 20, Decimal("1.3"),
             (("Size", ("UK7", "UK8", "UK9", "UK10")), ("Colour", ("Black/White Trim", "Red")))),
    _Product(1238480, "Children's Wellington Boots", "KID-WELLY", Decimal("14.99"), 0,
             Decimal("0.9"), (("Size", ("Infant 6", "Infant 8", "Junior 1")),)),
    _Product(1238491, "Hardback Cookbook: Nigella's Feasts", "BK-NIG-01", Decimal("25.00"), 0,
             Decimal("1.1")),
    _Product(1238502, "Energy-saving LED Bulb (4 pack)", "LED-4PK", Decimal("9.52"), 5,
             Decimal("0.3")),
    _Product(1238513, "Child Car Seat", "CS-GRP1", Decimal("119.04"), 5, Decimal("7.5"),
             (("Colour", ("Grey", "Navy")),)),
    _Product(1238524, "Merino Wool Jumper", "MWJ", Decimal("49.99"), 20, Decimal("0.45"),
             (("Size", ("S", "M", "L", "XL")), ("Colour", ("Oatmeal", "Forest Green")))),
    _Product(1238535, "Ceramic Mug \u2014 'Best Mum'", "MUG-MUM", Decimal("7.49"), 20,
             Decimal("0.35"), (), (("Gift Wrap", Decimal("2.50")),)),
    _Product(1238546, "Café Crème Coffee Beans 1kg", "COF-CC-1K", Decimal("18.50"), 0,
             Decimal("1.0"), (("Grind", ("Whole bean", "Espresso", "Cafetière")),)),
    _Product(1238557, "Personalised Leather Wallet", "WAL-PERS", Decimal("29.17"), 20,
             Decimal("0.2"), (("Colour", ("Tan", "Black")),), (("Gift Box", Decimal("0.00")),)),
    _Product(1238568, "Yoga Mat", "YOGA-6MM", Decimal("20.83"), 20, Decimal("1.8"),
             (("Colour", ("Plum", "Teal", "Charcoal")),)),
    _Product(1238579, "Organic Baby Grow (3 pack)", "BABY-GROW-3", Decimal("16.00"), 0,
             Decimal("0.25"), (("Age", ("0-3m", "3-6m", "6-12m")),)),
    _Product(1238580, "Printer Ink Cartridge XL", "INK-XL-BK", Decimal("31.66"), 20,
             Decimal("0.1")),
    _Product(1238591, "Garden Kneeler", "GDN-KNEEL", Decimal("12.49"), 20, Decimal("0.6"),
             (), (("Free Laces", Decimal("0.00")),)),
    _Product(1238602, "Bamboo Toothbrush", "BAM-TB", Decimal("2.99"), 20, Decimal("0.02")),
)

_SHIPPING_UK = (
    ("Royal Mail 2nd Class", Decimal("3.25"), 1),
    ("Royal Mail 1st Class", Decimal("4.95"), 2),
    ("First Class", Decimal("10.00"), 7),
    ("Next Day Courier", Decimal("8.95"), 3),
    ("Click & Collect", Decimal("0.00"), 4),
)
_SHIPPING_US = (("International Tracked", Decimal("19.95"), 5),)
_SHIPPING_EU = (("Europe Tracked", Decimal("12.50"), 6),)

_VOUCHERS = (
    ("Voucher Code (10%)", "10PERCENT", Decimal("0.10")),
    ("Voucher Code (15%)", "SPRING15", Decimal("0.15")),
    ("Voucher Code (20%)", "WELCOME20", Decimal("0.20")),
)
_COMMENTS = (
    "please deliver on Tuesday",
    "Leave with neighbour at no. 12 if we're out",
    "Gift \u2014 please don't include the receipt",
    "Ring the bell twice \U0001f514",
    'Door code is "4521#"',
)
_PAYMENT = (
    ("SagePay", True), ("PayPal", True), ("Stripe", True), ("Amazon", True), ("eBay", True),
)

_STATUS_WEIGHTS = (
    ("Awaiting Payment", 8), ("Paid", 30), ("Processing", 10), ("On Hold", 1),
    ("Awaiting Collection", 2), ("Shipped", 20), ("Delivered", 9), ("Completed", 10),
    ("Cancelled", 5), ("Refunded", 2), ("Partially Refunded", 3),
)
_SHIPPED_NAMES = frozenset({"shipped", "delivered", "completed", "partially refunded"})


def _ascii(text: str) -> str:
    norm = unicodedata.normalize("NFKD", text)
    return "".join(c for c in norm if c.isascii() and (c.isalnum()))


@dataclass
class _Person:
    first: str
    last: str
    email: str
    telephone: str
    customer_id: int | None


class OrderGenerator:
    """Deterministic source of varied, money-consistent ShopWired orders.

    ``statuses`` are the store's order statuses (``{id, name, type, sortOrder}``); statuses
    are picked by name where the store has the usual ones, otherwise uniformly.
    """

    def __init__(
        self,
        seed: int,
        statuses: Sequence[Mapping[str, Any]] = DEFAULT_STATUSES,
        *,
        first_id: int = 100_001,
        first_reference: int = 1001,
    ) -> None:
        self.rng = random.Random(seed)
        self.statuses = [dict(s) for s in statuses]
        if not self.statuses:
            raise ValueError("a store needs at least one order status")
        self._by_name = {str(s["name"]).lower(): s for s in self.statuses}
        self.next_id = first_id
        self.next_reference = first_reference
        self._next_item_id = 9_000_001
        self._next_customer_id = 143_301
        self._customers: list[_Person] = []

    # ------------------------------------------------------------------ identifiers

    def reserve(self, order_id: int, reference: int | None = None) -> None:
        """Make sure later generated ids/references are above an order added by hand."""
        self.next_id = max(self.next_id, order_id + 1)
        if reference is not None:
            self.next_reference = max(self.next_reference, reference + 1)

    def _take_ids(self) -> tuple[int, int]:
        oid, ref = self.next_id, self.next_reference
        self.next_id += self.rng.choice((1, 1, 1, 2, 3))
        self.next_reference += 1
        return oid, ref

    def status_named(self, name: str) -> dict[str, Any] | None:
        """The store status called ``name`` (case-insensitive), if it exists."""
        s = self._by_name.get(name.lower())
        return dict(s) if s is not None else None

    def _pick_status(self) -> dict[str, Any]:
        names = [n for n, _ in _STATUS_WEIGHTS if n.lower() in self._by_name]
        if not names:
            return dict(self.rng.choice(self.statuses))
        weights = [w for n, w in _STATUS_WEIGHTS if n.lower() in self._by_name]
        return dict(self._by_name[self.rng.choices(names, weights)[0].lower()])

    # ------------------------------------------------------------------ people

    def _new_person(self, registered: bool) -> _Person:
        r = self.rng
        first, last = r.choice(_FIRST), r.choice(_LAST)
        local = f"{_ascii(first)}.{_ascii(last)}"
        if r.random() < 0.2:
            local += str(r.randint(1, 99))
        if r.random() < 0.1:
            local += "+shop"
        email = f"{local}@{r.choice(_DOMAINS)}"
        email = email.lower() if r.random() < 0.7 else email
        tel = r.choice(("01234 ", "0161 ", "07700 ", "+44 20 ")) + "".join(
            r.choice(string.digits) for _ in range(6)
        )
        cid = None
        if registered:
            cid = self._next_customer_id
            self._next_customer_id += r.randint(1, 7)
        return _Person(first, last, email, tel, cid)

    def _person(self) -> _Person:
        r = self.rng
        if r.random() < 0.3:
            return self._new_person(registered=False)
        if self._customers and r.random() < 0.4:
            return r.choice(self._customers)
        p = self._new_person(registered=True)
        self._customers.append(p)
        return p

    def _address(self, person: _Person, region: str, *, email: bool = True) -> dict[str, Any]:
        r = self.rng
        line1 = f"{r.randint(1, 240)} {r.choice(_STREETS)}"
        line2 = r.choice(("", "", "", "Flat 3", "Unit 2", "The Old Rectory"))
        line3 = r.choice(("", "", "", "", "Shuttleworth Mead"))
        addr: dict[str, Any] = {
            "name": f"{person.first} {person.last}",
            "emailAddress": person.email if email else "",
            "telephone": person.telephone if email else r.choice(("", person.telephone)),
            "companyName": r.choice(_COMPANIES),
            "addressLine1": line1,
            "addressLine2": line2,
            "addressLine3": line3,
        }
        if region == "US":
            city, state, postcode = r.choice(_US)
            addr.update(city=city, postcode=postcode, state=state, country="United States")
        elif region == "EU":
            city, province, postcode, country = r.choice(_EU)
            addr.update(city=city, postcode=postcode, province=province, country=country)
        else:
            city, province, postcode = r.choice(_UK)
            addr.update(city=city, postcode=postcode, province=province, country="United Kingdom")
        return addr

    # ------------------------------------------------------------------ orders

    def order(
        self,
        created: datetime,
        *,
        now: datetime | None = None,
        status: Mapping[str, Any] | None = None,
        order_id: int | None = None,
        reference: int | None = None,
    ) -> dict[str, Any]:
        """One valid order created at ``created`` (``now`` bounds refund dates).

        Without ``status`` one is drawn with realistic weights; refunded statuses come with
        matching ``refunds[]`` and shipped-like ones usually with a ``trackingUrl``.
        """
        r = self.rng
        created = utc(created).replace(microsecond=0)
        now_ = utc(now) if now is not None else created + timedelta(days=30)
        if order_id is None or reference is None:
            oid, ref = self._take_ids()
            order_id = oid if order_id is None else order_id
            reference = ref if reference is None else reference
        else:
            self.reserve(order_id, reference)
        st = dict(status) if status is not None else self._pick_status()
        st = {"id": st["id"], "name": st["name"], "type": st["type"]}

        region = r.choices(("UK", "US", "EU"), (80, 8, 12))[0]
        buyer = self._person()
        billing = self._address(buyer, region)
        if r.random() < 0.75:
            shipping_addr = copy.deepcopy(billing)
        else:
            recipient = self._new_person(registered=False)
            shipping_addr = self._address(recipient, region, email=r.random() < 0.3)
        export = region != "UK"

        # products ---------------------------------------------------------------
        n_lines = r.choices((1, 2, 3, 4, 5, 6), (40, 25, 15, 10, 6, 4))[0]
        lines: list[dict[str, Any]] = []
        for item in r.sample(_CATALOGUE, n_lines):
            qty = r.choices((1, 2, 3, 10), (75, 15, 8, 2))[0]
            unit = item.price
            extras: list[dict[str, Any]] = []
            for name, value in item.extras:
                if r.random() < 0.5:
                    extras.append({"name": name, "value": money(value)})
                    unit += value
            lines.append(
                {
                    "id": item.id,
                    "itemId": self._next_item_id,
                    "title": item.title,
                    "sku": f"{item.sku}-{r.randint(1, 9)}" if item.variations else item.sku,
                    "_orig": unit,
                    "_price": unit,
                    "quantity": qty,
                    "vatRate": 0 if export else item.vat_rate,
                    "weight": float(item.weight),
                    "variation": [
                        {"name": vname, "value": r.choice(values)}
                        for vname, values in item.variations
                    ],
                    "extras": extras,
                    "comments": "please engrave with I love Jim"
                    if r.random() < 0.08
                    else "",
                }
            )
            self._next_item_id += 1

        # product discounts (each lowers the per-unit price, in whole pennies) -------
        discounts: list[dict[str, Any]] = []
        roll = r.random()
        if roll < 0.2:
            name, code, pct = r.choice(_VOUCHERS)
            value = ZERO
            for ln in lines:
                unit_off = cents(ln["_price"] * pct)
                ln["_price"] -= unit_off
                value += unit_off * ln["quantity"]
            if value > 0:
                discounts.append({"name": name, "value": money(value), "type": "voucher",
                                  "code": code})
        elif roll < 0.27:
            target = next(
                (ln for ln in lines if ln["quantity"] == 1 and ln["_price"] > 10), None
            )
            if target is not None:
                target["_price"] -= Decimal("5.00")
                discounts.append({"name": "Voucher Code (£5 off)", "value": 5.0,
                                  "type": "voucher", "code": "FIVEOFF"})
        if lines and r.random() < 0.05:
            # a second, stacked discount on one line
            ln = r.choice(lines)
            unit_off = cents(ln["_price"] * Decimal("0.05"))
            if unit_off > 0:
                ln["_price"] -= unit_off
                discounts.append({"name": "Loyalty Discount (5%)",
                                  "value": money(unit_off * ln["quantity"]),
                                  "type": "voucher", "code": "LOYAL5"})

        sub_total = sum((ln["_orig"] * ln["quantity"] for ln in lines), ZERO)
        products_tax = ZERO
        weight = ZERO
        products: list[dict[str, Any]] = []
        for ln in lines:
            orig: Decimal = ln.pop("_orig")
            price: Decimal = ln.pop("_price")
            products_tax += cents(price * ln["quantity"] * ln["vatRate"] / 100)
            weight += dec(ln["weight"]) * ln["quantity"]
            ln["price"] = money(price)
            ln["originalPrice"] = money(orig)
            products.append(
                {k: ln[k] for k in ("id", "itemId", "title", "sku", "price", "originalPrice",
                                    "quantity", "vatRate", "weight", "variation", "extras",
                                    "comments")}
            )
        discount_total = sum((dec(d["value"]) for d in discounts), ZERO)

        # shipping ---------------------------------------------------------------
        rates = _SHIPPING_US if region == "US" else _SHIPPING_EU if region == "EU" else _SHIPPING_UK
        rate_name, rate_value, rate_id = r.choice(rates)
        ship_vat = 0 if export else 20
        shipping_total = rate_value
        if rate_value > 0 and (
            (region == "UK" and sub_total - discount_total >= 50 and r.random() < 0.6)
            or r.random() < 0.05
        ):
            shipping_total = ZERO if r.random() < 0.7 else cents(rate_value / 2)
        shipping_tax = cents(shipping_total * ship_vat / 100)
        tax = products_tax + shipping_tax

        fees: list[dict[str, Any]] = []
        if r.random() < 0.08:
            fees.append({"name": "Payment Gateway Fee",
                         "value": money(r.choice((Decimal("0.50"), Decimal("0.85"),
                                                  Decimal("1.20")))),
                         "type": "payment_gateway"})
        fee_total = sum((dec(f["value"]) for f in fees), ZERO)
        total = sub_total - discount_total + shipping_total + tax + fee_total
        partial = ZERO
        if r.random() < 0.06:
            partial = min(total, r.choice((Decimal("5"), Decimal("10"), Decimal("25"))))

        # payment & lifecycle ------------------------------------------------------
        unpaid = st["type"] == "unpaid"
        if unpaid and r.random() < 0.7:
            method, has_txn = "Bank Transfer", False
        else:
            method, has_txn = r.choice(_PAYMENT)
        txn = "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(14))
        tracking = ""
        if st["name"].lower() in _SHIPPED_NAMES and r.random() < 0.85:
            tracking = self.tracking_url(region)
        delivery = ""
        if r.random() < 0.15:
            delivery = (created + timedelta(days=r.randint(2, 10))).strftime("%d/%m/%Y")

        order: dict[str, Any] = {
            "id": order_id,
            "reference": reference,
            "created": rfc2822(created),
            "archived": False,
            "trackingUrl": tracking,
            "status": st,
            "billingAddress": billing,
            "shippingAddress": shipping_addr,
            "paymentMethod": method,
            "total": money(total),
            "subTotal": money(sub_total),
            "shippingTotal": money(shipping_total),
            "originalShippingTotal": money(rate_value),
            "partialPaymentTotal": money(partial),
            "tax": {"type": "vat", "value": money(tax)},
            "discounts": discounts,
            "fees": fees,
            "shipping": [{"name": rate_name, "value": money(rate_value), "id": rate_id,
                          "vatRate": ship_vat}],
            "refunds": [],
            "products": products,
            "totalWeight": f"{_fmt_weight(weight)}kg",
            "comments": r.choice(_COMMENTS) if r.random() < 0.2 else "",
            "customer": {"id": buyer.customer_id},
            "deliveryDate": delivery,
            "transactionId": txn if has_txn and not unpaid else "",
            "acceptsMarketing": r.random() < 0.4,
            "earnedRewardPoints": int(total) if buyer.customer_id and not unpaid else 0,
        }
        name = st["name"].lower()
        if name == "refunded":
            order["refunds"].append(self._refund(1, "Full refund", total, created, now_))
        elif name == "partially refunded":
            ln = r.choice(products)
            value = min(line_gross(ln), total - Decimal("0.01"))
            if value > 0:
                order["refunds"].append(
                    self._refund(1, f"Returned item: {ln['title']}", value, created, now_)
                )
        return order

    def _refund(
        self, refund_id: int, name: str, value: Decimal, created: datetime, now: datetime
    ) -> dict[str, Any]:
        when = created + timedelta(hours=self.rng.randint(2, 24 * 14))
        when = max(created, min(when, now))
        return {"id": refund_id, "name": name, "value": money(value), "createdAt": rfc2822(when)}

    def tracking_url(self, region: str = "UK") -> str:
        """A carrier tracking URL in the style real shops paste into ``trackingUrl``."""
        r = self.rng
        if region == "US":
            return "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400" + "".join(
                r.choice(string.digits) for _ in range(18)
            )
        if r.random() < 0.5:
            code = (
                "".join(r.choice(string.ascii_uppercase) for _ in range(2))
                + "".join(r.choice(string.digits) for _ in range(9))
                + "GB"
            )
            return f"https://www.royalmail.com/track-your-item#/tracking-results/{code}"
        return "https://track.dpd.co.uk/parcels/" + "".join(
            r.choice(string.digits) for _ in range(14)
        )

    def make_invalid_order(
        self, kind: str, created: datetime, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """An order a correct client must skip (and report) rather than crash on.

        ``kind`` is one of :data:`INVALID_KINDS`: ``no_email`` (no ``emailAddress`` key in
        either address), ``negative_total``, ``string_number`` (``products[0].price`` and
        ``tax.value`` are non-numeric strings), ``no_products`` (``products: []``),
        ``missing_status`` (no ``status`` key). ``id`` and ``created`` stay valid so the
        shop can still list it.
        """
        if kind not in INVALID_KINDS:
            raise ValueError(f"unknown invalid-order kind {kind!r}; choose from {INVALID_KINDS}")
        o = self.order(created, now=now)
        if kind == "no_email":
            o["billingAddress"].pop("emailAddress", None)
            o["shippingAddress"].pop("emailAddress", None)
        elif kind == "negative_total":
            o["total"] = -abs(o["total"]) - 12.5
        elif kind == "string_number":
            o["products"][0]["price"] = "twelve pounds"
            o["tax"]["value"] = "N/A"
        elif kind == "no_products":
            o["products"] = []
        elif kind == "missing_status":
            del o["status"]
        return o


def _fmt_weight(weight: Decimal) -> str:
    w = weight.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP).normalize()
    text = format(w, "f")
    return text


def line_gross(product: Mapping[str, Any]) -> Decimal:
    """What a customer paid for one product line: price x quantity plus its tax."""
    net = dec(product["price"]) * int(product["quantity"])
    return net + cents(net * dec(product["vatRate"]) / 100)


def order_money(order: Mapping[str, Any]) -> dict[str, Decimal]:
    """The money components of a generated order as Decimals (used by tests and Activity)."""
    return {
        "subTotal": dec(order["subTotal"]),
        "discounts": sum((dec(d["value"]) for d in order.get("discounts", [])), ZERO),
        "shippingTotal": dec(order["shippingTotal"]),
        "tax": dec(order["tax"]["value"]),
        "fees": sum((dec(f["value"]) for f in order.get("fees", [])), ZERO),
        "total": dec(order["total"]),
        "refunded": sum((dec(x["value"]) for x in order.get("refunds", [])), ZERO),
    }


# ------------------------------------------------------------------------------ activity

_NEXT: dict[str, tuple[tuple[str, int], ...]] = {
    "awaiting payment": (("Paid", 80), ("Cancelled", 20)),
    "paid": (("Processing", 45), ("Shipped", 35), ("Awaiting Collection", 5),
             ("Cancelled", 5), ("refund-full", 5), ("On Hold", 5)),
    "processing": (("Shipped", 85), ("On Hold", 10), ("Cancelled", 5)),
    "on hold": (("Processing", 80), ("Cancelled", 20)),
    "awaiting collection": (("Completed", 100),),
    "shipped": (("Delivered", 80), ("refund-partial", 15), ("refund-full", 5)),
    "delivered": (("Completed", 75), ("refund-partial", 20), ("refund-full", 5)),
    "completed": (("refund-partial", 40), ("archive", 60)),
    "cancelled": (("archive", 100),),
    "refunded": (("archive", 100),),
    "partially refunded": (("refund-partial", 40), ("refund-full", 20), ("archive", 40)),
}


class Activity:
    """Moves a simulated shop's orders through their lives and adds new ones.

    Every change goes through the simulator's public, thread-safe mutators, so it is safe to
    run from a background thread while the simulator serves requests.
    """

    def __init__(self, sim: ShopWiredSimulator, rng: random.Random | None = None) -> None:
        self.sim = sim
        self.rng = rng if rng is not None else random.Random(0)

    def step(self, n_changes: int, n_new: int) -> list[tuple[int, str]]:
        """Apply up to ``n_changes`` changes to existing orders and add ``n_new`` orders.

        Returns what happened as ``(order_id, kind)`` pairs; kinds are ``status:<name>``,
        ``refund:partial``, ``refund:full``, ``archived`` and ``new``. Orders with nothing
        left to happen (archived, or a status unknown to the graph) are skipped.
        """
        done: list[tuple[int, str]] = []
        ids = self.sim.order_ids()
        if ids and n_changes > 0:
            picks = self.rng.sample(ids, min(len(ids), n_changes * 2))
            for oid in picks:
                if len(done) >= n_changes:
                    break
                kind = self._advance(oid)
                if kind is not None:
                    done.append((oid, kind))
        if n_new > 0:
            now = self.sim.clock.now()
            for oid in self.sim.generate_orders(n_new, created_between=(now, now)):
                done.append((oid, "new"))
        return done

    def _advance(self, oid: int) -> str | None:
        order = self.sim.get_order(oid)
        if order is None or order.get("archived") or not isinstance(order.get("status"), dict):
            return None
        options = _NEXT.get(str(order["status"].get("name", "")).lower())
        if not options:
            return None
        choice = self.rng.choices([o for o, _ in options], [w for _, w in options])[0]
        if choice == "archive":
            self.sim.archive(oid)
            return "archived"
        if choice.startswith("refund-"):
            return self._refund(order, full=choice == "refund-full")
        status = self.sim.status_by_name(choice)
        if status is None:
            return None
        tracking = None
        if choice == "Shipped" and not order.get("trackingUrl"):
            region = "US" if order["shippingAddress"].get("country") == "United States" else "UK"
            tracking = self.sim.generator.tracking_url(region)
        self.sim.set_status(oid, status["id"], tracking_url=tracking)
        return f"status:{choice}"

    def _refund(self, order: Mapping[str, Any], *, full: bool) -> str | None:
        try:
            m = order_money(order)
        except (KeyError, TypeError, ArithmeticError, ValueError):
            return None
        left = m["total"] - m["refunded"]
        if left <= 0:
            return None
        oid = int(order["id"])
        if full:
            value, name, status_name = left, "Full refund", "Refunded"
        else:
            product = self.rng.choice(order["products"]) if order.get("products") else None
            gross = line_gross(product) if product is not None else left / 2
            value = cents(min(gross, left))
            name = f"Returned item: {product['title']}" if product is not None else "Refund"
            status_name = "Refunded" if value >= left else "Partially Refunded"
        if value <= 0:
            return None
        self.sim.add_refund(oid, value, name)
        status = self.sim.status_by_name(status_name)
        if status is not None and status["id"] != order["status"]["id"]:
            self.sim.set_status(oid, status["id"])
        return "refund:full" if status_name == "Refunded" else "refund:partial"
