"""Build the golden input orders (30 per source) and, with ``--expected``, their outputs.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python tests/golden/make_cases.py            # inputs + outputs
    PYTHONPATH=. .venv/bin/python tests/golden/make_cases.py --expected # outputs only

Inputs start from the sandbox generators (fixed seeds) and are then edited into the cases a
marketer cares about (gift orders, vouchers, free shipping, VAT-exempt, partial and full
refunds, 0/2/3-decimal currencies, bundles, fees, names, payment methods). The expected files
are the output of ``ordersync map --events`` and are reviewed by hand before they are
committed: a diff in them is a change in what WiredPlus receives.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sync.clock import FakeClock
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.generator import OrderGenerator

HERE = Path(__file__).resolve().parent
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ROOT = HERE.parents[1]


def _sw_base(gen: OrderGenerator, status: str, *, hours: int = 0) -> dict[str, Any]:
    st = gen.status_named(status)
    assert st is not None, status
    order = gen.order(T0 - timedelta(hours=hours), now=T0, status=st)
    order["created"] = order["created"]  # RFC 2822 already
    return order


def _retotal(o: dict[str, Any]) -> None:
    """Recompute ``tax`` and ``total`` after an edit, with the generator's money rule."""
    from decimal import ROUND_HALF_UP, Decimal

    def d(x: Any) -> Decimal:
        return Decimal(str(x))

    def c(x: Decimal) -> Decimal:
        return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    sub = sum((d(p["originalPrice"]) * p["quantity"] for p in o["products"]), Decimal(0))
    disc = sum((d(x["value"]) for x in o["discounts"]), Decimal(0))
    ptax = sum((c(d(p["price"]) * p["quantity"] * d(p["vatRate"]) / 100) for p in o["products"]),
               Decimal(0))
    ship = d(o["shippingTotal"])
    stax = c(ship * d(o["shipping"][0].get("vatRate", 0)) / 100) if o["shipping"] else Decimal(0)
    fees = sum((d(f["value"]) for f in o.get("fees", [])), Decimal(0))
    o["subTotal"] = float(c(sub))
    o["tax"] = {"type": "vat", "value": float(ptax + stax)}
    o["total"] = float(c(sub - disc + ship + ptax + stax + fees))


def shopwired_cases() -> dict[str, dict[str, Any]]:
    gen = OrderGenerator(20260302, first_id=700_001, first_reference=5001)
    cases: dict[str, dict[str, Any]] = {}

    def add(name: str, status: str, edit: Callable[[dict[str, Any]], None] | None = None,
            *, retotal: bool = False) -> None:
        o = _sw_base(gen, status, hours=len(cases) * 7)
        if edit:
            edit(o)
        if retotal:
            _retotal(o)
        cases[f"{len(cases) + 1:02d}-{name}"] = o

    fixture = json.loads((ROOT / "tests" / "fixtures" / "shopwired_order.json").read_text())
    cases["01-docs-example"] = fixture

    def gift(o: dict[str, Any]) -> None:
        o["billingAddress"]["name"] = "Cher"
        o["shippingAddress"] = copy.deepcopy(o["billingAddress"])
        o["shippingAddress"].update(name="Jane Smith", emailAddress="", telephone="",
                                    addressLine1="4 Rose Lane", city="York",
                                    postcode="YO1 7HH", province="North Yorkshire")
        o["comments"] = "Gift \u2014 please don't include the receipt"

    add("gift-order", "Paid", gift)

    def voucher(o: dict[str, Any]) -> None:
        for p in o["products"]:
            off = round(p["originalPrice"] * 0.1, 2)
            p["price"] = round(p["originalPrice"] - off, 2)
        o["discounts"] = [{"name": "Voucher Code (10%)", "type": "voucher", "code": "10PERCENT",
                           "value": round(sum((p["originalPrice"] - p["price"]) * p["quantity"]
                                              for p in o["products"]), 2)}]

    add("voucher-10-percent", "Paid", voucher, retotal=True)

    def five_off(o: dict[str, Any]) -> None:
        p = o["products"][0]
        p["price"] = round(p["originalPrice"] - 5 / p["quantity"], 2)
        o["discounts"] = [{"name": "Voucher Code (£5 off)", "value": round(
            (p["originalPrice"] - p["price"]) * p["quantity"], 2), "type": "voucher",
            "code": "FIVEOFF"}]

    add("voucher-five-off", "Processing", five_off, retotal=True)

    def free_shipping(o: dict[str, Any]) -> None:
        o["shipping"] = [{"name": "Royal Mail 1st Class", "value": 4.95, "id": 2, "vatRate": 20}]
        o["originalShippingTotal"] = 4.95
        o["shippingTotal"] = 0.0

    add("free-shipping", "Paid", free_shipping, retotal=True)

    def half_shipping(o: dict[str, Any]) -> None:
        o["shipping"] = [{"name": "Next Day Courier", "value": 8.95, "id": 3, "vatRate": 20}]
        o["originalShippingTotal"] = 8.95
        o["shippingTotal"] = 4.48

    add("half-price-shipping", "Shipped", half_shipping, retotal=True)

    def vat_exempt(o: dict[str, Any]) -> None:
        _retotal(o)
        o["total"] = round(o["total"] - o["tax"]["value"], 2)
        o["tax"]["value"] = 0.0  # lines keep their vatRate; the order charged no VAT

    add("vat-exempt-with-rates", "Paid", vat_exempt)

    def export(o: dict[str, Any]) -> None:
        for p in o["products"]:
            p["vatRate"] = 0
        o["shipping"] = [{"name": "Europe Tracked", "value": 12.5, "id": 6, "vatRate": 0}]
        o["shippingTotal"] = o["originalShippingTotal"] = 12.5
        for a in (o["billingAddress"], o["shippingAddress"]):
            a.update(city="Dublin", province="County Dublin", postcode="D02 X285",
                     country="Ireland")

    add("export-zero-rated", "Paid", export, retotal=True)

    def us(o: dict[str, Any]) -> None:
        for p in o["products"]:
            p["vatRate"] = 0
        o["shipping"] = [{"name": "International Tracked", "value": 19.95, "id": 5,
                          "vatRate": 0}]
        o["shippingTotal"] = o["originalShippingTotal"] = 19.95
        for a in (o["billingAddress"], o["shippingAddress"]):
            a.pop("province", None)
            a.update(city="Austin", state="Texas", postcode="73301", country="United States")

    add("usa-state", "Paid", us, retotal=True)

    def partial_refund(o: dict[str, Any]) -> None:
        o["refunds"] = [{"id": 1, "name": f"Returned item: {o['products'][0]['title']}",
                         "value": round(o["products"][0]["price"] * 1.2, 2),
                         "createdAt": "Sun, 01 Mar 2026 10:00:00 +0000"}]

    add("partial-refund", "Partially Refunded", partial_refund, retotal=True)

    def full_refund(o: dict[str, Any]) -> None:
        _retotal(o)
        o["refunds"] = [{"id": 1, "name": "Full refund", "value": o["total"],
                         "createdAt": "Sun, 01 Mar 2026 11:00:00 +0000"}]

    add("full-refund", "Refunded", full_refund)

    def paid_but_refunded(o: dict[str, Any]) -> None:
        _retotal(o)
        half = round(o["total"] / 2, 2)
        o["refunds"] = [{"name": "Refund part 1", "value": half},
                        {"name": "Refund part 2", "value": round(o["total"] - half, 2)}]

    add("paid-status-refunds-sum-to-total", "Paid", paid_but_refunded)

    def fee(o: dict[str, Any]) -> None:
        o["fees"] = [{"name": "Payment Gateway Fee", "value": 0.85, "type": "payment_gateway"}]

    add("gateway-fee", "Paid", fee, retotal=True)

    def sub_penny(o: dict[str, Any]) -> None:
        o["products"] = [dict(o["products"][0], price=9.995, originalPrice=9.995, quantity=3,
                              vatRate=0, variation=[], comments="")]
        o["shipping"] = [{"name": "Click & Collect", "value": 0.0, "id": 4, "vatRate": 20}]
        o["shippingTotal"] = o["originalShippingTotal"] = 0.0
        o["discounts"] = []
        o["subTotal"] = 29.985
        o["tax"] = {"type": "vat", "value": 0.0}
        o["total"] = 29.99

    add("sub-penny-unit-price", "Paid", sub_penny)

    def bundle(o: dict[str, Any]) -> None:
        o["products"][0].update(title="Coffee Lover's Gift Set", sku="BUNDLE-COF",
                                bundleProducts=[
                                    {"title": "Ceramic Mug \u2014 'Best Mum'", "sku": "MUG-MUM"},
                                    {"title": "Café Crème Coffee Beans 1kg",
                                     "sku": "COF-CC-1K"}])

    add("bundle", "Paid", bundle)

    def bank_transfer(o: dict[str, Any]) -> None:
        o["paymentMethod"] = "Bank Transfer"
        o["transactionId"] = ""

    add("bank-transfer-unpaid", "Awaiting Payment", bank_transfer)

    def admin_order(o: dict[str, Any]) -> None:
        o["paymentMethod"] = "Admin Order"

    add("admin-order", "Paid", admin_order)

    def title(o: dict[str, Any]) -> None:
        o["billingAddress"]["name"] = "Mr John Smith"

    add("name-with-title", "Paid", title)

    def last_first(o: dict[str, Any]) -> None:
        o["billingAddress"]["name"] = "SMITH, John"

    add("name-last-comma-first", "Paid", last_first)

    def company(o: dict[str, Any]) -> None:
        o["billingAddress"]["companyName"] = "Acme Widgets Ltd"
        o["shippingAddress"]["companyName"] = "Acme Widgets Ltd"

    add("company-address", "Processing", company)

    def blank_sku(o: dict[str, Any]) -> None:
        for p in o["products"]:
            p["sku"] = ""
            p["comments"] = ""

    add("empty-sku-no-comment", "Paid", blank_sku)

    def engrave(o: dict[str, Any]) -> None:
        o["products"][0]["comments"] = "please engrave with I love Jim"

    add("line-comment-engraving", "Paid", engrave)

    def variations(o: dict[str, Any]) -> None:
        o["products"][0]["variation"] = [{"name": "Size", "value": "UK9"},
                                         {"name": "Colour", "value": "Black/White Trim"}]

    add("variations-in-name", "Paid", variations)
    add("shipped-with-tracking", "Shipped",
        lambda o: o.update(trackingUrl="https://track.dpd.co.uk/parcels/15501234567890"))
    add("cancelled", "Cancelled")
    add("delivered-custom-status", "Delivered")

    def partial_payment(o: dict[str, Any]) -> None:
        o["partialPaymentTotal"] = 10.0  # paid by gift voucher: a payment, inside total

    add("gift-voucher-partial-payment", "Paid", partial_payment)

    def stacked(o: dict[str, Any]) -> None:
        voucher(o)
        p = o["products"][-1]
        off = round(p["price"] * 0.05, 2)
        p["price"] = round(p["price"] - off, 2)
        o["discounts"].append({"name": "Loyalty Discount (5%)", "type": "voucher",
                               "code": "LOYAL5", "value": round(off * p["quantity"], 2)})

    add("stacked-discounts", "Paid", stacked, retotal=True)

    def bulk(o: dict[str, Any]) -> None:
        o["products"] = [dict(o["products"][0], quantity=10)]

    add("ten-of-one", "Paid", bulk, retotal=True)

    def unicode_notes(o: dict[str, Any]) -> None:
        o["billingAddress"]["name"] = "Siobhán Ó Súilleabháin"
        o["comments"] = "Ring the bell twice \U0001f514"

    add("unicode-and-notes", "Paid", unicode_notes)
    assert len(cases) == 30, len(cases)
    return cases


def _ep_bundle(sim: ElasticPathSimulator, oid: str) -> dict[str, Any]:
    return {"data": copy.deepcopy(sim.orders[oid]),
            "included": {"items": copy.deepcopy(sim.items.get(oid, []))}}


def elasticpath_cases() -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {}
    plan = [("GBP", 10), ("EUR", 3), ("JPY", 6), ("KWD", 7), ("BHD", 4)]
    for seed, (currency, n) in enumerate(plan):
        sim = ElasticPathSimulator(clock=FakeClock(T0), seed=900 + seed, currency=currency)
        ids = [i for i in sim.generate_orders(n * 3) if sim.items.get(i)]
        for oid in ids[:n]:
            b = _ep_bundle(sim, oid)
            o = b["data"]
            name = f"{currency.lower()}-{o['status']}-{o['payment']}-{o['shipping']}"
            cases[f"{len(cases) + 1:02d}-{name}"] = b
    names = list(cases)

    def edit(i: int, label: str, fn: Callable[[dict[str, Any]], None]) -> None:
        old = names[i]
        b = cases.pop(old)
        fn(b)
        cases[f"{old[:2]}-{old[3:]}-{label}"] = b

    def shipping_tax(b: dict[str, Any]) -> None:  # row 13: taxed shipping
        dp = b["data"]["meta"]["display_price"]
        cur = dp["with_tax"]["currency"]
        ship = (dp.get("shipping") or {}).get("amount") or 0
        if not ship:
            ship = 500
            dp["shipping"] = {"amount": ship, "currency": cur}
            dp["with_tax"]["amount"] += ship
            dp["without_tax"]["amount"] += ship
        tax = ship // 5
        dp["with_tax"]["amount"] += tax
        dp["tax"]["amount"] += tax

    def gift(b: dict[str, Any]) -> None:  # row 1: the buyer is not the recipient
        b["data"]["billing_address"].update(first_name="Cher", last_name="")
        b["data"]["shipping_address"].update(first_name="Jane", last_name="Smith")

    def no_split(b: dict[str, Any]) -> None:  # items without meta.display_price
        for item in b["included"]["items"]:
            item.pop("meta", None)

    def discount(b: dict[str, Any]) -> None:  # a cart discount the items do not show
        dp = b["data"]["meta"]["display_price"]
        cur = dp["with_tax"]["currency"]
        off = max(dp["without_tax"]["amount"] // 20, 1)
        dp["discount"] = {"amount": -off, "currency": cur}
        dp["with_tax"]["amount"] -= off
        dp["without_tax"]["amount"] -= off

    def blank_sku(b: dict[str, Any]) -> None:
        for item in b["included"]["items"]:
            item["sku"] = ""

    def contact_name(b: dict[str, Any]) -> None:  # no names on addresses: the contact's
        for key in ("billing_address", "shipping_address"):
            b["data"][key].update(first_name="", last_name="")
        b["data"].setdefault("contact", {})["name"] = "Dr. Amira Haddad"
        if isinstance(b["data"].get("customer"), dict):
            b["data"]["customer"].pop("name", None)

    edit(1, "taxed-shipping", shipping_tax)
    edit(2, "gift-order", gift)
    edit(3, "items-without-tax-split", no_split)
    edit(4, "cart-discount", discount)
    def refunded(b: dict[str, Any]) -> None:  # EP payment refunded (after fulfilment)
        b["data"]["payment"] = "refunded"

    edit(7, "payment-refunded", refunded)
    edit(11, "taxed-shipping", shipping_tax)
    edit(14, "cart-discount", discount)
    edit(20, "taxed-shipping", shipping_tax)
    edit(22, "empty-sku", blank_sku)
    edit(24, "contact-name-only", contact_name)
    edit(27, "cart-discount", discount)
    assert len(cases) == 30, len(cases)
    return dict(sorted(cases.items()))


SOURCES: dict[str, Callable[[], dict[str, dict[str, Any]]]] = {
    "shopwired": shopwired_cases,
    "elasticpath": elasticpath_cases,
}


def run_map(source: str, orders: list[Any]) -> list[Any]:
    """``ordersync map --events`` over ``orders`` (one process), its JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERSYNC_", "WIREDPLUS_"))}
    env.update(ORDERSYNC_SOURCE=source, ORDERSYNC_CURRENCY="GBP")
    exe = Path(sys.executable).with_name("ordersync")
    proc = subprocess.run([str(exe), "map", "--events", "-"], input=json.dumps(orders),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    result: list[Any] = json.loads(proc.stdout)
    return result


def main(argv: list[str]) -> None:
    for source, build in SOURCES.items():
        folder = HERE / source
        folder.mkdir(exist_ok=True)
        if "--expected" not in argv:
            for old in folder.glob("*.json"):
                old.unlink()
            for name, order in build().items():
                (folder / f"{name}.json").write_text(
                    json.dumps(order, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        inputs = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".expected.json"))
        outputs = run_map(source, [json.loads(p.read_text("utf-8")) for p in inputs])
        for path, out in zip(inputs, outputs, strict=True):
            path.with_suffix(".expected.json").write_text(
                json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
