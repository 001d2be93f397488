"""The UpdateOrder body a merchant's WiredPlus account receives for a ShopWired order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.domain.mapping import MappingContext, content_hash, map_order, to_money
from sync.domain.parse_shopwired import parse_shopwired_order
from sync.domain.status_map import StatusMap
from sync.errors import SkippableError


def body_for(raw: dict[str, Any], status_map: StatusMap, ctx: MappingContext) -> dict[str, Any]:
    order = parse_shopwired_order(raw)
    return map_order(order, status_map.resolve(order.status), ctx)


def test_identity_and_customer_fields(sample_order, status_map, ctx):
    body = body_for(sample_order, status_map, ctx)
    assert body["api_reference_id"] == "255"
    assert body["order_reference"] == "1001"
    assert body["api_integration"] == "ordersync"
    assert body["api_resource"] == "order"
    assert body["customer_email"] == "mary.oneil@example.co.uk"
    assert (body["customer_firstname"], body["customer_lastname"]) == ("Mary", "Ann O'Neil")
    assert body["customer_telephone"] == "01234 567890"
    assert body["customer_notes"] == "please deliver on Tuesday"
    assert body["customer_is_guest"] is False


def test_reference_prefix_applies_to_api_reference_id(sample_order, status_map):
    body = body_for(sample_order, status_map, MappingContext(reference_prefix="shop1-"))
    assert body["api_reference_id"] == "shop1-255"


def test_addresses_fold_line3_and_state(sample_order, status_map, ctx):
    body = body_for(sample_order, status_map, ctx)
    assert body["billing_address1"] == "Unit 2"
    assert body["billing_address2"] == "Kestrel Court, Shuttleworth Mead"
    assert body["billing_county"] == "Lancashire"
    assert body["billing_post_code"] == "BB11 5NA"
    assert body["shipping_county"] == "Texas"  # USA: state replaces province
    assert body["shipping_country"] == "United States"
    assert "shipping_address2" not in body  # empty values are left out, not sent as ""


def test_money_matches_the_documented_example(sample_order, status_map, ctx):
    body = body_for(sample_order, status_map, ctx)
    assert body["grand_total_inc_tax"] == 132.00  # ShopWired total, unchanged
    assert body["grand_total"] == 110.00
    assert body["shipping_total"] == 10.00
    assert body["shipping_discount_total"] == 9.95
    assert body["shipping_tax_total"] == 2.00
    assert body["shipping_total_inc_tax"] == 12.00
    assert body["invoice_tax_total"] == 20.00
    # originalPrice 120 is "the price before discounts" (docs): the 20 shows as a discount,
    # so invoice_total is the worth before discounts and the lines add up to it
    assert body["invoice_total"] == 120.00
    assert body["invoice_discount_total"] == 20.00
    assert body["invoice_total_inc_tax"] == 120.00
    assert body["iso_currency_code"] == "GBP"
    assert body["payment_type_name"] == "SagePay"
    assert body["number_of_products"] == 1


def test_lines(sample_order, status_map, ctx):
    sample_order["products"].append(
        {"id": 7, "title": "Laces", "sku": "L1", "price": 2.5, "quantity": 3, "vatRate": 20}
    )
    sample_order.update(subTotal=107.5, total=141.0, tax={"type": "vat", "value": 23.5})
    body = body_for(sample_order, status_map, ctx)
    first, second = body["order_lines"]
    assert first["order_line_id"] == "255-1" and second["order_line_id"] == "255-2"
    assert first["product_sku"] == "NK-AM-9"
    assert first["product_name"] == "Nike Airmax Trainers (Size: UK9, Colour: Black)"
    assert "product_description" not in first  # the line comment is not the description
    assert first["product_original_price"] == 120.00
    assert first["product_price"] == 100.00
    assert first["product_price_tax"] == 20.00
    assert first["product_price_inc_tax"] == 120.00
    assert first["row_total_discount"] == 20.00
    assert second["quantity"] == 3
    assert second["row_total"] == 7.50
    assert second["row_total_inc_tax"] == 9.00
    assert body["number_of_products"] == 4


def test_custom_fields_are_opt_in_and_named_by_configuration(sample_order, status_map, ctx):
    sample_order["trackingUrl"] = "https://track.example/ABC"
    assert "custom_fields" not in body_for(sample_order, status_map, ctx)
    names = {"tracking_url": "Tracking URL", "delivery_date": "delivery_date",
             "transaction_id": "txn", "variations": "variations",
             "line_comments": "Personalisation"}
    body = body_for(sample_order, status_map, MappingContext(custom_fields=names))
    cf = body["custom_fields"]
    assert cf["Tracking URL"] == "https://track.example/ABC"
    assert cf["delivery_date"] == "26/07/2018"
    assert cf["txn"] == "0HJ384JKL227GG"
    assert "Size=UK9" in cf["variations"]
    assert cf["Personalisation"] == "Nike Airmax Trainers: please engrave with I love Jim"


def test_dates_are_utc_in_wiredplus_format(sample_order, status_map, ctx):
    sample_order["created"] = "Mon, 23 Nov 2015 18:42:29 +0100"
    body = body_for(sample_order, status_map, ctx)
    assert body["order_create_date"] == "2015-11-23 17:42:29"
    assert body["order_status"] == "processing"


def test_email_falls_back_to_shipping(sample_order, status_map, ctx):
    sample_order["billingAddress"]["emailAddress"] = ""
    sample_order["shippingAddress"]["emailAddress"] = "Jim@Example.com"
    assert body_for(sample_order, status_map, ctx)["customer_email"] == "jim@example.com"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda o: o["billingAddress"].update(emailAddress=""), "no customer email"),
        (lambda o: o.update(total=-5), "negative"),
        (lambda o: o.update(total="lots"), "not a number"),
        (lambda o: o.update(products=[]), "no product lines"),
        (lambda o: o["products"][0].update(quantity=-1), "quantity"),
        (lambda o: o.update(total=1e300), "out of range"),
        (lambda o: o.update(created="yesterday"), "created"),
    ],
)
def test_unmappable_orders_are_skippable_with_a_reason(sample_order, status_map, ctx, mutate,
                                                       reason):
    mutate(sample_order)
    with pytest.raises(SkippableError, match=reason):
        body_for(sample_order, status_map, ctx)


def test_hash_ignores_update_date_but_not_content(sample_order, status_map, ctx):
    body = body_for(sample_order, status_map, ctx)
    h = content_hash(body)
    assert content_hash({**body, "order_update_date": "2030-01-01 00:00:00"}) == h
    sample_order["status"] = {"id": 1382, "name": "Shipped", "type": "shipped"}
    assert content_hash(body_for(sample_order, status_map, ctx)) != h


@given(st.decimals(min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=6))
def test_money_rounds_half_up_to_two_places(d):
    got = Decimal(str(to_money(d)))
    assert abs(got - d) <= Decimal("0.005")
    assert got == d.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


@settings(max_examples=200)
@given(
    price=st.decimals(min_value=0, max_value=5000, places=2),
    qty=st.integers(min_value=1, max_value=50),
    rate=st.sampled_from([0, 5, 20]),
    ship=st.decimals(min_value=0, max_value=50, places=2),
)
def test_grand_total_always_equals_shopwired_total(sample_order, status_map, ctx, price, qty,
                                                   rate, ship):
    ptax = price * qty * rate / 100
    stax = ship * rate / 100
    total = (price * qty + ship + ptax + stax).quantize(Decimal("0.01"))
    sample_order.update(
        subTotal=float(price * qty), shippingTotal=float(ship), originalShippingTotal=float(ship),
        tax={"type": "vat", "value": float((ptax + stax).quantize(Decimal("0.01")))},
        total=float(total), shipping=[{"name": "Std", "value": float(ship), "vatRate": rate}],
        products=[{"id": 1, "title": "X", "price": float(price), "quantity": qty,
                   "vatRate": rate}],
    )
    body = body_for(sample_order, status_map, ctx)
    assert Decimal(str(body["grand_total_inc_tax"])) == total
    split = Decimal(str(body["invoice_tax_total"])) + Decimal(str(body["shipping_tax_total"]))
    assert abs(split - Decimal(str(body["grand_total_inc_tax"] - body["grand_total"]))) <= Decimal(
        "0.011"
    )
