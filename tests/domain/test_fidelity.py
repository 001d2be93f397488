"""Issue #13, row by row: every field in WiredPlus means what a marketer reading it thinks."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from config import default_status_map_text
from sync.domain.mapping import MappingContext, map_order, order_update_date
from sync.domain.parse_elasticpath import parse_elasticpath_order
from sync.domain.parse_shopwired import parse_shopwired_order, split_name
from sync.domain.status_map import StatusMap


def sw_body(raw: dict[str, Any], status_map: StatusMap, ctx: MappingContext) -> dict[str, Any]:
    order = parse_shopwired_order(raw)
    return map_order(order, status_map.resolve(order.status), ctx)


EP_MAP = StatusMap.from_toml(default_status_map_text("elasticpath"))


def ep_order(currency: str, *, with_tax: int, tax: int, shipping: int = 0,
             items: list[dict[str, Any]] | None = None, updated: str | None = None
             ) -> dict[str, Any]:
    def price(amount: int) -> dict[str, Any]:
        return {"amount": amount, "currency": currency, "formatted": str(amount)}

    stamps = {"created_at": "2026-01-10T09:00:00Z"}
    if updated:
        stamps["updated_at"] = updated
    order = {
        "type": "order", "id": "ep-1", "status": "complete", "payment": "paid",
        "shipping": "unfulfilled",
        "customer": {"name": "Fatima Al-Sabah", "email": "fatima@example.com"},
        "meta": {"timestamps": stamps, "display_price": {
            "with_tax": price(with_tax), "without_tax": price(with_tax - tax),
            "tax": price(tax), "shipping": price(shipping), "discount": price(0)}},
    }
    if items is None:
        items = [{"type": "order_item", "id": "i1", "name": "Oud", "sku": "OUD",
                  "quantity": 1, "unit_price": price(with_tax - tax - shipping),
                  "value": price(with_tax - tax - shipping)}]
    return {"data": order, "included": {"items": items}}


def ep_body(bundle: dict[str, Any]) -> dict[str, Any]:
    order = parse_elasticpath_order(bundle)
    return map_order(order, EP_MAP.resolve(order.status), MappingContext())


# -- row 1: one name pair from one address ------------------------------------------------


def test_gift_order_names_come_from_one_address(sample_order, status_map, ctx):
    sample_order["billingAddress"]["name"] = "Cher"
    sample_order["shippingAddress"]["name"] = "Jane Smith"
    body = sw_body(sample_order, status_map, ctx)
    assert (body["customer_firstname"], body.get("customer_lastname")) == ("Cher", None)
    assert (body["shipping_first_name"], body["shipping_last_name"]) == ("Jane", "Smith")


def test_names_fall_back_to_shipping_as_a_pair(sample_order, status_map, ctx):
    sample_order["billingAddress"]["name"] = ""
    sample_order["shippingAddress"]["name"] = "Jane Smith"
    body = sw_body(sample_order, status_map, ctx)
    assert (body["customer_firstname"], body["customer_lastname"]) == ("Jane", "Smith")


# -- row 2: amounts keep the currency's exponent ----------------------------------------------


def test_three_decimal_currency_keeps_three_decimals():
    body = ep_body(ep_order("KWD", with_tax=12345, tax=0))
    assert body["grand_total_inc_tax"] == 12.345
    assert body["order_lines"][0]["row_total"] == 12.345
    assert body["iso_currency_code"] == "KWD"
    assert ep_body(ep_order("BHD", with_tax=1, tax=0))["grand_total_inc_tax"] == 0.001


def test_zero_decimal_currency_is_whole_numbers():
    body = ep_body(ep_order("JPY", with_tax=1250, tax=0))
    assert body["grand_total_inc_tax"] == 1250 and isinstance(body["grand_total_inc_tax"], int)


# -- row 4: VAT-exempt lines carry no tax the order does not have ----------------------------


def test_vat_exempt_line_gets_the_orders_zero_tax(sample_order, status_map, ctx):
    sample_order.update(tax={"type": "vat", "value": 0}, total=110.0, subTotal=100.0,
                        shippingTotal=10.0, originalShippingTotal=10.0)
    sample_order["products"][0].update(originalPrice=100.0)
    body = sw_body(sample_order, status_map, ctx)
    (line,) = body["order_lines"]
    assert line["product_price_tax"] == 0 and line["row_total_inc_tax"] == 100.0
    assert line["tax_percent"] == 0
    assert body["invoice_tax_total"] == 0 and body["grand_total_inc_tax"] == 110.0
    assert body["invoice_total_inc_tax"] + body["shipping_total_inc_tax"] == 110.0


# -- row 5: the source's own update time -----------------------------------------------------


def test_elasticpath_update_date_is_its_updated_at():
    order = parse_elasticpath_order(
        ep_order("GBP", with_tax=1000, tax=0, updated="2026-01-12T08:30:00.5Z"))
    assert order_update_date(order, None) == "2026-01-12 08:30:00"
    later = datetime(2026, 2, 1, tzinfo=UTC)
    assert order_update_date(order, later) == "2026-01-12 08:30:00"


def test_shopwired_update_date_is_first_sight_then_change(sample_order):
    order = parse_shopwired_order(sample_order)
    assert order_update_date(order, None) == "2015-11-23 18:42:29"
    assert order_update_date(order, datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01 00:00:00"


# -- row 7: refunds that the status type does not show --------------------------------------


@pytest.mark.parametrize(
    "refunds, expected",
    [([132.0], "refunded"), ([100.0, 32.0], "refunded"), ([10.0], "partially-refunded"),
     ([], "processing")],
)
def test_paid_order_with_refunds_says_so(sample_order, status_map, ctx, refunds, expected):
    sample_order["refunds"] = [{"name": f"r{i}", "value": v} for i, v in enumerate(refunds)]
    assert sw_body(sample_order, status_map, ctx)["order_status"] == expected


def test_cancelled_with_partial_refund_stays_cancelled(sample_order, status_map, ctx):
    sample_order["status"] = {"id": 1383, "name": "Cancelled", "type": "cancelled"}
    sample_order["refunds"] = [{"name": "part", "value": 5}]
    assert sw_body(sample_order, status_map, ctx)["order_status"] == "cancelled"


# -- row 9: no nulls inside order lines --------------------------------------------------------


def test_no_nulls_inside_order_lines(sample_order, status_map, ctx):
    sample_order["products"][0].update(sku="", comments="")
    (line,) = sw_body(sample_order, status_map, ctx)["order_lines"]
    assert None not in line.values()
    assert "product_sku" not in line and "product_description" not in line


# -- row 10: payment type from the method --------------------------------------------------


@pytest.mark.parametrize(
    "method, expected",
    [("Bank Transfer", "bank-transfer"), ("Admin Order", "manual"), ("PayPal", "online"),
     ("  bank   transfer ", "bank-transfer"), ("eBay", "marketplace")],
)
def test_payment_type_follows_the_method(sample_order, status_map, ctx, method, expected):
    sample_order["paymentMethod"] = method
    body = sw_body(sample_order, status_map, ctx)
    assert body["payment_type"] == expected
    assert body["payment_type_name"] == method.strip()


def test_payment_type_mapping_is_configurable(sample_order, status_map):
    sample_order["paymentMethod"] = "Klarna"
    ctx = MappingContext(payment_types={"klarna": "finance"})
    assert sw_body(sample_order, status_map, ctx)["payment_type"] == "finance"


# -- row 11: titles, "Last, First", company, variations ------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("Mr John Smith", ("John", "Smith")), ("SMITH, John", ("John", "SMITH")),
     ("Dr. Mary Ann O'Neil", ("Mary", "Ann O'Neil")), ("Cher", ("Cher", None)),
     ("Mr", ("Mr", None)), ("van der Berg, Anna Maria", ("Anna Maria", "van der Berg")),
     ("  ", (None, None))],
)
def test_split_name(name, expected):
    assert split_name(name) == expected


def test_company_is_the_first_address_line(sample_order, status_map, ctx):
    sample_order["billingAddress"]["companyName"] = "Acme Widgets Ltd"
    body = sw_body(sample_order, status_map, ctx)
    assert body["billing_address1"] == "Acme Widgets Ltd"
    assert body["billing_address2"] == "Unit 2, Kestrel Court, Shuttleworth Mead"


# -- row 12: every total reconciles --------------------------------------------------------


def test_fees_are_inside_the_totals(sample_order, status_map, ctx):
    sample_order.update(total=132.85, fees=[{"name": "Payment Gateway Fee", "value": 0.85,
                                             "type": "payment_gateway"}])
    body = sw_body(sample_order, status_map, ctx)
    assert body["grand_total_inc_tax"] == 132.85
    assert body["invoice_total_inc_tax"] + body["shipping_total_inc_tax"] == pytest.approx(132.85)
    fee = body["order_lines"][-1]
    assert (fee["product_name"], fee["row_total"], fee["quantity"]) == (
        "Payment Gateway Fee", 0.85, 1)
    assert body["number_of_products"] == 1  # a fee is not a product


def test_three_decimal_unit_price_rounds_consistently(sample_order, status_map, ctx):
    sample_order.update(subTotal=29.985, total=29.99, tax={"type": "vat", "value": 0},
                        shippingTotal=0, originalShippingTotal=0)
    sample_order["products"][0].update(price=9.995, originalPrice=9.995, quantity=3, vatRate=0)
    body = sw_body(sample_order, status_map, ctx)
    (line,) = body["order_lines"]
    assert line["row_total"] == 29.99 == body["grand_total_inc_tax"]
    assert abs(Decimal(str(line["product_price"])) * 3 - Decimal("29.99")) <= Decimal("0.015")


def test_order_level_discount_not_in_prices_is_a_line_discount(sample_order, status_map, ctx):
    sample_order.update(discounts=[{"name": "£5 off", "value": 5.0}], total=127.0)
    sample_order["products"][0]["originalPrice"] = 100.0
    body = sw_body(sample_order, status_map, ctx)
    (line,) = body["order_lines"]
    assert body["invoice_discount_total"] == line["row_total_discount"] == 5.0
    assert body["grand_total_inc_tax"] == 127.0


# -- row 13: shipping tax where the source shows it ------------------------------------------


def test_elasticpath_shipping_tax_is_order_tax_minus_item_tax():
    def price(amount: int) -> dict[str, Any]:
        return {"amount": amount, "currency": "GBP"}

    item = {"type": "order_item", "id": "i1", "name": "Lamp", "sku": "L", "quantity": 1,
            "unit_price": price(1000), "value": price(1000),
            "meta": {"display_price": {
                "without_tax": {"unit": price(1000), "value": price(1000)},
                "tax": {"unit": price(200), "value": price(200)},
                "with_tax": {"unit": price(1200), "value": price(1200)}}}}
    bundle = ep_order("GBP", with_tax=1800, tax=300, shipping=500, items=[copy.deepcopy(item)])
    body = ep_body(bundle)
    assert body["invoice_tax_total"] == 2.0
    assert body["shipping_tax_total"] == 1.0
    assert body["shipping_total"] == 5.0
    assert body["grand_total_inc_tax"] == 18.0


# -- configuration of rows 8 and 10 ---------------------------------------------------------


def test_custom_field_setting_parses_names_and_renames():
    from sync.domain.mapping import parse_custom_fields

    assert parse_custom_fields("") == {}
    assert parse_custom_fields("tracking_url=Tracking link, refund_reason") == {
        "tracking_url": "Tracking link", "refund_reason": "refund_reason"}
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        parse_custom_fields("colour")
    with pytest.raises(ValueError, match="not 'name' or 'name=value'"):
        parse_custom_fields("tracking_url=")


def test_payment_type_setting_extends_the_defaults():
    from sync.domain.mapping import parse_payment_types

    table = parse_payment_types("Klarna=finance, Bank  Transfer=bacs")
    assert table["klarna"] == "finance" and table["bank transfer"] == "bacs"
    assert table["admin order"] == "manual"
    with pytest.raises(ValueError, match="needs"):
        parse_payment_types("Klarna")


def test_settings_reject_an_unknown_custom_field():
    from config.settings import Settings

    with pytest.raises(ValueError, match="shoe_size"):
        Settings(ORDERSYNC_WIREDPLUS_CUSTOM_FIELDS="shoe_size")
