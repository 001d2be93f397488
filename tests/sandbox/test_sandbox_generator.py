"""OrderGenerator: realistic, deterministic, money-consistent orders; Activity over time."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.clock import FakeClock
from sync.sandbox import INVALID_KINDS, Activity, OrderGenerator, ShopWiredSimulator

CENT = Decimal("0.01")
CREATED = datetime(2026, 1, 10, 8, 30, 15, tzinfo=UTC)
NOW = datetime(2026, 2, 20, tzinfo=UTC)


def d(value: Any) -> Decimal:
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def pennies(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def check_money(o: dict[str, Any]) -> None:
    """The documented rule in sync/sandbox/generator.py, checked exactly in Decimal."""
    for key in ("total", "subTotal", "shippingTotal", "originalShippingTotal",
                "partialPaymentTotal"):
        assert d(o[key]) == pennies(d(o[key])) and d(o[key]) >= 0, key
    products = o["products"]
    assert 1 <= len(products) <= 6
    sub = sum((d(p["originalPrice"]) * p["quantity"] for p in products), Decimal(0))
    net = sum((d(p["price"]) * p["quantity"] for p in products), Decimal(0))
    discounts = sum((d(x["value"]) for x in o["discounts"]), Decimal(0))
    assert d(o["subTotal"]) == sub
    assert discounts == sub - net
    line_tax = sum(
        (pennies(d(p["price"]) * p["quantity"] * p["vatRate"] / 100) for p in products),
        Decimal(0),
    )
    (rate,) = o["shipping"]
    ship_tax = pennies(d(o["shippingTotal"]) * rate["vatRate"] / 100)
    assert d(o["tax"]["value"]) == line_tax + ship_tax
    fees = sum((d(f["value"]) for f in o["fees"]), Decimal(0))
    assert d(o["total"]) == (
        d(o["subTotal"]) - discounts + d(o["shippingTotal"]) + d(o["tax"]["value"]) + fees
    )
    assert d(o["originalShippingTotal"]) >= d(o["shippingTotal"])
    assert d(rate["value"]) == d(o["originalShippingTotal"])
    assert d(o["partialPaymentTotal"]) <= d(o["total"])
    refunded = sum((d(x["value"]) for x in o["refunds"]), Decimal(0))
    assert refunded <= d(o["total"])
    for p in products:
        assert d(p["price"]) > 0 and d(p["price"]) <= d(p["originalPrice"])
        assert p["vatRate"] in (0, 5, 20) and isinstance(p["quantity"], int)


def check_shape(o: dict[str, Any]) -> None:
    assert isinstance(o["id"], int) and isinstance(o["reference"], int)
    created = parsedate_to_datetime(o["created"])
    assert o["created"].endswith(" +0000") and created.tzinfo is not None
    assert set(o["status"]) == {"id", "name", "type"}
    assert o["status"]["type"] in {"paid", "unpaid", "cancelled", "shipped", "custom"}
    assert o["tax"]["type"] == "vat"
    for which in ("billingAddress", "shippingAddress"):
        addr = o[which]
        base = {"name", "emailAddress", "telephone", "companyName", "addressLine1",
                "addressLine2", "addressLine3", "city", "postcode", "country"}
        if addr["country"] == "United States":
            assert set(addr) == base | {"state"}
        else:
            assert set(addr) == base | {"province"}
    assert "@" in o["billingAddress"]["emailAddress"]
    assert o["totalWeight"].endswith("kg")
    if o["deliveryDate"]:
        datetime.strptime(o["deliveryDate"], "%d/%m/%Y")
    for r in o["refunds"]:
        assert set(r) == {"id", "name", "value", "createdAt"}
        assert parsedate_to_datetime(r["createdAt"]) >= created
    for p in o["products"]:
        assert {"id", "itemId", "title", "sku", "price", "originalPrice", "quantity", "vatRate",
                "weight", "variation", "extras", "comments"} == set(p)
    assert set(o["customer"]) == {"id"}


@settings(max_examples=60)
@given(seed=st.integers(min_value=0, max_value=2**32), n=st.integers(min_value=1, max_value=8))
def test_generated_money_adds_up_exactly(seed: int, n: int) -> None:
    gen = OrderGenerator(seed)
    for i in range(n):
        order = gen.order(CREATED + timedelta(hours=i), now=NOW)
        check_money(order)
        check_shape(order)


def test_generator_is_deterministic_and_ids_increase() -> None:
    a = [OrderGenerator(5).order(CREATED, now=NOW) for _ in range(1)]
    b = [OrderGenerator(5).order(CREATED, now=NOW) for _ in range(1)]
    assert a == b
    gen = OrderGenerator(5)
    orders = [gen.order(CREATED, now=NOW) for _ in range(50)]
    ids = [o["id"] for o in orders]
    refs = [o["reference"] for o in orders]
    assert ids == sorted(set(ids)) and refs == sorted(set(refs))
    assert OrderGenerator(6).order(CREATED, now=NOW) != a[0]


def test_generated_orders_are_varied() -> None:
    gen = OrderGenerator(1)
    orders = [gen.order(CREATED, now=NOW) for _ in range(400)]
    countries = Counter(o["billingAddress"]["country"] for o in orders)
    assert countries["United Kingdom"] > 250 and countries["United States"] > 5
    assert len(countries) >= 4
    names = " ".join(o["billingAddress"]["name"] for o in orders)
    assert "'" in names and any(ord(c) > 127 for c in names)
    assert {p["vatRate"] for o in orders for p in o["products"]} == {0, 5, 20}
    assert any(o["discounts"] and o["discounts"][0].get("code") for o in orders)
    assert any(d(o["originalShippingTotal"]) > d(o["shippingTotal"]) for o in orders)
    assert any(o["fees"] for o in orders)
    assert any(o["trackingUrl"] for o in orders)
    assert any(o["deliveryDate"] for o in orders)
    assert any(o["transactionId"] for o in orders)
    assert any(o["refunds"] for o in orders)
    assert any(d(o["partialPaymentTotal"]) > 0 for o in orders)
    assert any(o["customer"]["id"] is None for o in orders)
    registered = Counter(o["customer"]["id"] for o in orders if o["customer"]["id"])
    assert registered.most_common(1)[0][1] > 1  # repeat customers
    assert any(p["variation"] for o in orders for p in o["products"])
    assert len({o["status"]["name"] for o in orders}) >= 9
    assert max(len(o["products"]) for o in orders) == 6


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_invalid_orders_are_broken_in_the_named_way(kind: str) -> None:
    o = OrderGenerator(2).make_invalid_order(kind, CREATED)
    assert isinstance(o["id"], int) and parsedate_to_datetime(o["created"])
    if kind == "no_email":
        assert "emailAddress" not in o["billingAddress"]
        assert "emailAddress" not in o["shippingAddress"]
    elif kind == "negative_total":
        assert o["total"] < 0
    elif kind == "string_number":
        assert isinstance(o["products"][0]["price"], str)
    elif kind == "no_products":
        assert o["products"] == []
    elif kind == "missing_status":
        assert "status" not in o
    with pytest.raises(ValueError):
        OrderGenerator(2).make_invalid_order("nonsense", CREATED)


def test_generated_orders_are_understood_by_our_parser() -> None:
    parse_mod = pytest.importorskip("sync.domain.parse_shopwired")
    errors = pytest.importorskip("sync.errors")
    gen = OrderGenerator(9)
    for _ in range(100):
        parse_mod.parse_shopwired_order(gen.order(CREATED, now=NOW))
    for kind in ("negative_total", "string_number", "missing_status"):
        with pytest.raises(errors.SkippableError):
            parse_mod.parse_shopwired_order(gen.make_invalid_order(kind, CREATED))


# ------------------------------------------------------------------------------ activity


def test_activity_moves_orders_forward_and_adds_new_ones() -> None:
    clock = FakeClock()
    sim = ShopWiredSimulator(clock=clock, seed=4)
    sim.generate_orders(150)
    activity = Activity(sim, random.Random(1))
    done: list[tuple[int, str]] = []
    for _ in range(40):
        clock.advance(60)
        done += activity.step(5, 1)
    kinds = Counter(kind.split(":")[0] for _, kind in done)
    assert kinds["new"] == 40 and kinds["status"] > 20
    assert kinds["refund"] > 0 and kinds["archived"] > 0
    assert len(sim.orders) == 190
    for oid, kind in done:
        order = sim.orders[oid]
        check_money(order)  # refunds never exceed the total
        if kind == "status:Shipped":
            assert order["trackingUrl"]
        if kind == "new":
            assert parsedate_to_datetime(order["created"]) <= clock.now()
        if kind == "refund:full":
            assert sum(d(r["value"]) for r in order["refunds"]) == d(order["total"])
    statuses = Counter(o["status"]["name"] for o in sim.orders.values())
    assert statuses["Completed"] + statuses["Delivered"] > 0


def test_activity_is_reproducible() -> None:
    def run() -> list[tuple[int, str]]:
        sim = ShopWiredSimulator(clock=FakeClock(), seed=4)
        sim.generate_orders(50)
        activity = Activity(sim, random.Random(2))
        return [x for _ in range(10) for x in activity.step(3, 1)]

    assert run() == run()
