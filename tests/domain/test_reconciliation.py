"""Reconciliation property (issue #13): for every mappable order of either source, however
mutated, the UpdateOrder body adds up, every amount has the currency's exponent, and nothing
inside ``order_lines`` is null.

Orders come from the sandbox generators of both sources (every currency exponent: JPY 0,
GBP/EUR 2, KWD/BHD 3), then random mutations a real shop produces: VAT-exempt lines with a
rate, fees, 3-decimal unit prices, order-level discounts the prices do not show, surcharges,
blank SKUs and names, refunds, items without a tax split, taxed shipping.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import default_status_map_text
from sync.clock import FakeClock
from sync.domain.mapping import MappingContext, map_order
from sync.domain.money import currency_exponent, quantum
from sync.domain.parse_elasticpath import parse_elasticpath_order
from sync.domain.parse_shopwired import parse_shopwired_order
from sync.domain.status_map import StatusMap
from sync.errors import SkippableError
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.generator import OrderGenerator

SW_MAP = StatusMap.from_toml(default_status_map_text("shopwired"))
EP_MAP = StatusMap.from_toml(default_status_map_text("elasticpath"))
T0 = datetime(2026, 1, 10, tzinfo=UTC)
ORDER_MONEY = (
    "invoice_tax_total", "invoice_total", "invoice_total_inc_tax", "invoice_discount_total",
    "shipping_tax_total", "shipping_total", "shipping_total_inc_tax", "shipping_discount_total",
    "grand_total", "grand_total_inc_tax",
)
LINE_MONEY = (
    "product_price", "product_price_tax", "product_price_inc_tax", "product_original_price",
    "row_total", "row_total_inc_tax", "row_total_discount",
)
CURRENCIES = ("GBP", "EUR", "JPY", "KWD", "BHD")


def D(value: Any) -> Decimal:
    return Decimal(str(value))


def assert_reconciles(body: dict[str, Any], currency: str, paid: Decimal) -> None:
    """The whole contract of an UpdateOrder body's money (mapping module docstring)."""
    exp = currency_exponent(currency)
    q = quantum(exp)
    assert body["iso_currency_code"] == currency
    for key in ORDER_MONEY:
        value = body[key]
        if exp == 0:
            assert isinstance(value, int), (key, value)
        assert D(value) == D(value).quantize(q), (key, value, "exponent")
        assert D(value) >= 0, (key, value)
    assert None not in body.values()
    lines = body["order_lines"]
    for line in lines:
        assert None not in line.values(), line
        for key in LINE_MONEY:
            assert D(line[key]) == D(line[key]).quantize(q), (key, line[key], "exponent")
            assert D(line[key]) >= 0, (key, line)
        qty = line["quantity"]
        assert abs(D(line["product_price"]) * qty - D(line["row_total"])) <= qty * q / 2
        assert D(line["product_price_inc_tax"]) == D(line["product_price"]) + D(
            line["product_price_tax"])
        assert D(line["row_total_inc_tax"]) >= D(line["row_total"])
        assert D(line["product_original_price"]) >= D(line["product_price"])
    o = {k: D(body[k]) for k in ORDER_MONEY}
    rows = sum((D(ln["row_total"]) for ln in lines), Decimal(0))
    rows_inc = sum((D(ln["row_total_inc_tax"]) for ln in lines), Decimal(0))
    rows_disc = sum((D(ln["row_total_discount"]) for ln in lines), Decimal(0))
    assert rows == o["invoice_total"] - o["invoice_discount_total"]
    assert rows_inc == o["invoice_total_inc_tax"]
    assert rows_disc == o["invoice_discount_total"]
    assert o["invoice_total_inc_tax"] == (
        o["invoice_total"] - o["invoice_discount_total"] + o["invoice_tax_total"])
    assert o["shipping_total_inc_tax"] == o["shipping_total"] + o["shipping_tax_total"]
    # lines + fees + shipping − discounts + tax = grand total, exactly after rounding
    assert o["invoice_total_inc_tax"] + o["shipping_total_inc_tax"] == o["grand_total_inc_tax"]
    assert o["grand_total"] == (
        o["grand_total_inc_tax"] - o["invoice_tax_total"] - o["shipping_tax_total"])
    assert abs(o["grand_total_inc_tax"] - paid) <= q / 2  # what the customer paid


# -- ShopWired ------------------------------------------------------------------------------


def _sw_mutate(raw: dict[str, Any], data: st.DataObject) -> None:
    products = raw["products"]
    kinds = data.draw(st.sets(st.sampled_from(
        ["vat_exempt", "fee", "three_dp", "order_discount", "surcharge", "blank", "refund",
         "names", "zero_qty_price"])))
    if "vat_exempt" in kinds:  # rates on lines, but the order charged no tax
        raw["total"] = round(raw["total"] - raw["tax"]["value"], 2)
        raw["tax"]["value"] = 0
    if "fee" in kinds:
        fee = data.draw(st.sampled_from([0.5, 0.85, 1.2]))
        raw["fees"] = [*raw.get("fees", []), {"name": "Card fee", "value": fee,
                                              "type": "payment_gateway"}]
        raw["total"] = round(raw["total"] + fee, 2)
    if "three_dp" in kinds:
        p = data.draw(st.sampled_from(products))
        p["price"] = round(p["price"] + 0.005, 3)
        p["originalPrice"] = max(p["originalPrice"], p["price"])
    if "order_discount" in kinds:  # a voucher the prices do not show
        off = data.draw(st.sampled_from([1.0, 5.0]))
        if raw["total"] - off > raw["tax"]["value"] + raw["shippingTotal"] + 1:
            raw["discounts"] = [*raw["discounts"], {"name": "Promo", "value": off}]
            raw["total"] = round(raw["total"] - off, 2)
    if "surcharge" in kinds:  # the total is a little more than its parts say
        raw["total"] = round(raw["total"] + 0.03, 2)
    if "blank" in kinds:
        for p in products:
            p["sku"] = ""
            p["comments"] = ""
    if "refund" in kinds:
        raw["refunds"] = [{"name": "Part", "value": round(raw["total"] / 3, 2)}]
    if "names" in kinds:
        raw["billingAddress"]["name"] = data.draw(
            st.sampled_from(["Cher", "SMITH, John", "Mr John Smith", "", "Dr. A B C"]))
    if "zero_qty_price" in kinds:
        p = data.draw(st.sampled_from(products))
        p["price"] = 0.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), currency=st.sampled_from(CURRENCIES), data=st.data())
def test_shopwired_bodies_reconcile(seed: int, currency: str, data: st.DataObject) -> None:
    raw = OrderGenerator(seed).order(T0 - timedelta(days=seed % 30))
    _sw_mutate(raw, data)
    try:
        order = parse_shopwired_order(copy.deepcopy(raw))
        body = map_order(order, SW_MAP.resolve(order.status), MappingContext(currency=currency))
    except SkippableError:
        return  # not mappable: skipped with a reason, never sent wrong
    assert_reconciles(body, currency, D(raw["total"]))


def test_generated_shopwired_orders_are_all_mappable() -> None:
    gen = OrderGenerator(7)
    for i in range(300):
        raw = gen.order(T0 - timedelta(hours=i))
        order = parse_shopwired_order(raw)
        body = map_order(order, SW_MAP.resolve(order.status), MappingContext())
        assert_reconciles(body, "GBP", D(raw["total"]))
        # the generator's own figures survive unchanged (fees are lines of the invoice)
        fees = sum((D(f["value"]) for f in raw["fees"]), Decimal(0))
        assert D(body["invoice_total"]) == D(raw["subTotal"]) + fees
        assert D(body["invoice_discount_total"]) == sum(
            (D(d["value"]) for d in raw["discounts"]), Decimal(0))
        assert D(body["shipping_total"]) == D(raw["shippingTotal"])


# -- Elastic Path ---------------------------------------------------------------------------


def _ep_bundles(seed: int, currency: str, n: int) -> list[dict[str, Any]]:
    sim = ElasticPathSimulator(clock=FakeClock(T0), seed=seed, currency=currency)
    ids = sim.generate_orders(n)
    return [{"data": copy.deepcopy(sim.orders[i]),
             "included": {"items": copy.deepcopy(sim.items.get(i, []))}} for i in ids]


def _ep_mutate(bundle: dict[str, Any], data: st.DataObject) -> None:
    dp = bundle["data"]["meta"]["display_price"]
    items = bundle["included"]["items"]
    kinds = data.draw(st.sets(st.sampled_from(
        ["shipping_tax", "no_split", "blank", "discount", "odd_total"])))
    if "shipping_tax" in kinds and dp["shipping"]["amount"]:
        extra = max(dp["shipping"]["amount"] // 5, 1)
        for key in ("with_tax", "tax"):
            dp[key]["amount"] += extra
    if "no_split" in kinds:
        for item in items:
            item.get("meta", {}).pop("display_price", None)
    if "blank" in kinds:
        for item in items:
            item["sku"] = ""
    if "discount" in kinds and dp["without_tax"]["amount"] > 100:
        dp["discount"] = {"amount": -50, "currency": dp["with_tax"]["currency"]}
        for key in ("with_tax", "without_tax"):
            dp[key]["amount"] -= 50
    if "odd_total" in kinds:
        for key in ("with_tax", "without_tax"):
            dp[key]["amount"] += 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), currency=st.sampled_from(CURRENCIES), data=st.data())
def test_elasticpath_bodies_reconcile(seed: int, currency: str, data: st.DataObject) -> None:
    (bundle,) = _ep_bundles(seed, currency, 1)
    _ep_mutate(bundle, data)
    paid = bundle["data"]["meta"]["display_price"]["with_tax"]["amount"]
    try:
        order = parse_elasticpath_order(bundle)
        body = map_order(order, EP_MAP.resolve(order.status), MappingContext())
    except SkippableError:
        return
    exp = currency_exponent(currency)
    assert_reconciles(body, currency, Decimal(paid).scaleb(-exp))


def test_generated_elasticpath_orders_are_all_mappable() -> None:
    for currency in CURRENCIES:
        for bundle in _ep_bundles(11, currency, 60):
            if not bundle["included"]["items"]:
                continue
            order = parse_elasticpath_order(bundle)
            body = map_order(order, EP_MAP.resolve(order.status), MappingContext())
            paid = bundle["data"]["meta"]["display_price"]["with_tax"]["amount"]
            assert_reconciles(body, currency, Decimal(paid).scaleb(-currency_exponent(currency)))
