"""Elastic Path order bundles → SourceOrder: money, timestamps, lines, statuses, the EP map.

Also: any JSON at all either parses (and maps) or is a SkippableError — never a crash.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.clock import FakeClock
from sync.domain.mapping import MappingContext, map_order
from sync.domain.parse_elasticpath import (
    STATUS_TYPES,
    all_statuses,
    currency_exponent,
    format_timestamp,
    minor_to_decimal,
    parse_elasticpath_order,
    parse_timestamp,
    status_type,
    synthetic_status,
)
from sync.domain.status_map import StatusMap
from sync.errors import SkippableError
from sync.sandbox.elasticpath import ElasticPathSimulator

EP_MAP_PATH = Path(__file__).resolve().parents[2] / "config" / "elasticpath_status_map.toml"

# The order.paid webhook payload from elasticpath-dev's integrations spec, verbatim.
WEBHOOK_PAYLOAD: dict[str, Any] = {
    "data": {
        "type": "order",
        "id": "1d67160d-dacb-43ed-80ef-c3c4e7ddf764",
        "status": "complete",
        "payment": "paid",
        "shipping": "unfulfilled",
        "customer": {"name": "Ron Swanson", "email": "ron.swanson@moltin.com"},
        "shipping_address": {
            "first_name": "Jack", "last_name": "Macdowall", "phone_number": "123456789",
            "company_name": "Macdowalls", "line_1": "Second Floor, British India House",
            "line_2": "15 Carliol Square", "city": "Newcastle upon Tyne", "postcode": "NE1 6UF",
            "county": "Tyne and Wear", "country": "GB", "instructions": "Leave in porch",
        },
        "billing_address": {
            "first_name": "Jack", "last_name": "Macdowall", "company_name": "Macdowalls",
            "line_1": "Second Floor, British India House", "line_2": "15 Carliol Square",
            "city": "Newcastle upon Tyne", "postcode": "NE1 6UF", "county": "Tyne and Wear",
            "country": "GB",
        },
        "links": {},
        "meta": {
            "display_price": {
                "with_tax": {"amount": 10000, "currency": "GBP", "formatted": "£100.00"},
                "without_tax": {"amount": 10000, "currency": "GBP", "formatted": "£100.00"},
                "tax": {"amount": 0, "currency": "GBP", "formatted": "£0.00"},
            },
            "timestamps": {
                "created_at": "2019-07-04T11:12:23Z", "updated_at": "2019-07-04T11:12:23Z",
            },
        },
        "relationships": {
            "items": {"data": [{"type": "item", "id": "395763ee-1878-4aa0-a7a2-8d4877310d6b"}]}
        },
    },
    "included": {
        "items": [
            {
                "type": "order_item",
                "id": "395763ee-1878-4aa0-a7a2-8d4877310d6b",
                "quantity": 1,
                "product_id": "4f28f222-aa5b-442c-9ce9-c223dc7cf15a",
                "name": "Spam Fritters",
                "sku": "spam-fritters-0716",
                "unit_price": {"amount": 10000, "currency": "GBP", "includes_tax": False},
                "value": {"amount": 10000, "currency": "GBP", "includes_tax": False},
                "links": {},
                "meta": {
                    "display_price": {
                        "with_tax": {
                            "unit": {"amount": 10000, "currency": "GBP", "formatted": "£100.00"},
                            "value": {"amount": 10000, "currency": "GBP", "formatted": "£100.00"},
                        },
                        "without_tax": {
                            "unit": {"amount": 10000, "currency": "GBP", "formatted": "£100.00"},
                            "value": {"amount": 10000, "currency": "GBP", "formatted": "£100.00"},
                        },
                        "tax": {
                            "unit": {"amount": 0, "currency": "GBP", "formatted": "£0.00"},
                            "value": {"amount": 0, "currency": "GBP", "formatted": "£0.00"},
                        },
                    },
                    "timestamps": {
                        "created_at": "2019-07-04T11:12:23Z",
                        "updated_at": "2019-07-04T11:12:23Z",
                    },
                },
                "relationships": {
                    "cart_item": {
                        "data": {"type": "cart_item", "id": "a498b15a-2cc7-49ea-93b3-22143bb403ac"}
                    }
                },
            }
        ]
    },
}


def p(amount: int, currency: str = "GBP") -> dict[str, Any]:
    return {"amount": amount, "currency": currency, "formatted": ""}


def item(
    iid: str, qty: int, unit: int, tax: int = 0, disc: int = 0, currency: str = "GBP"
) -> dict[str, Any]:
    return {
        "type": "order_item",
        "id": iid,
        "quantity": qty,
        "product_id": f"prod-{iid}",
        "name": f"Product {iid}",
        "sku": f"SKU-{iid}",
        "unit_price": {"amount": unit + disc, "currency": currency, "includes_tax": False},
        "value": {"amount": (unit + disc) * qty, "currency": currency, "includes_tax": False},
        "meta": {
            "display_price": {
                "with_tax": {"unit": p(unit + tax, currency), "value": p((unit + tax) * qty,
                                                                          currency)},
                "without_tax": {"unit": p(unit, currency), "value": p(unit * qty, currency)},
                "tax": {"unit": p(tax, currency), "value": p(tax * qty, currency)},
                "discount": {"unit": p(-disc, currency), "value": p(-disc * qty, currency)},
            }
        },
    }


def rich_order(**data_over: Any) -> dict[str, Any]:
    """Two lines (one discounted and taxed), shipping 3.95: totals add up exactly."""
    items = [item("a", 2, 1000, tax=200, disc=100), item("b", 1, 500)]
    data: dict[str, Any] = {
        "type": "order",
        "id": "6d809942-da51-4f07-9350-47fe759b2369",
        "status": "complete",
        "payment": "paid",
        "shipping": "fulfilled",
        "order_number": "ORD-1001",
        "external_ref": "anything",
        "payment_intent_id": "pi_123",
        "customer": {"name": "Brad Bobley", "email": "Brad@Bobley.com", "id": "cust-1"},
        "contact": {"name": "Brad", "email": "contact@bobley.com"},
        "billing_address": {"first_name": "Jack", "last_name": "Macdowall", "region": "WM",
                            "country": "GB", "postcode": "B21 9AF", "line_1": "1 Road",
                            "city": "Birmingham"},
        "shipping_address": {"first_name": "Otis", "last_name": "Sedmak", "country": "US",
                             "phone_number": "(555) 555-1234", "instructions": ""},
        "meta": {
            "display_price": {
                "with_tax": p(3295),
                "without_tax": p(2895),
                "tax": p(400),
                "discount": p(-200),
                "shipping": p(395),
                "shipping_discount": p(0),
                "balance_owing": p(0),
                "paid": p(3295),
            },
            "timestamps": {
                "created_at": "2026-01-10T09:00:00.123Z",
                "updated_at": "2026-01-11T10:00:00.18733387Z",
                "fully_paid_at": "2026-01-10T09:05:00Z",
            },
        },
        "relationships": {"items": {"data": [{"type": "item", "id": "a"},
                                             {"type": "item", "id": "b"}]}},
    }
    data.update(data_over)
    return {"data": data, "included": {"items": items}}


@pytest.fixture(scope="module")
def ep_map() -> StatusMap:
    return StatusMap.from_toml(EP_MAP_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def webhook() -> dict[str, Any]:
    return copy.deepcopy(WEBHOOK_PAYLOAD)


# ------------------------------------------------------------------------------ samples


def test_webhook_payload_parses(webhook: dict[str, Any]) -> None:
    order = parse_elasticpath_order(webhook)
    assert order.source == "elasticpath"
    assert order.order_id == order.reference == "1d67160d-dacb-43ed-80ef-c3c4e7ddf764"
    assert order.created_at == datetime(2019, 7, 4, 11, 12, 23, tzinfo=UTC)
    assert order.updated_at == order.created_at
    assert order.created_at.tzinfo is UTC
    assert order.status.id == "complete:paid:unfulfilled"
    assert order.status.type == "paid"
    assert order.email == "ron.swanson@moltin.com"
    assert order.currency == "GBP"
    assert order.totals.grand_total_inc_tax == Decimal("100.00")
    assert order.totals.products == Decimal("100.00")
    assert order.totals.tax == 0
    assert order.comments == "Leave in porch"
    assert order.is_guest is True and order.customer_id is None
    (line,) = order.lines
    assert line.line_id == "395763ee-1878-4aa0-a7a2-8d4877310d6b"
    assert (line.sku, line.name, line.quantity) == ("spam-fritters-0716", "Spam Fritters", 1)
    assert line.unit_price == line.original_unit_price == Decimal("100.00")
    assert order.shipping.telephone == "123456789"
    assert order.billing.county == "Tyne and Wear"


def test_rich_order_money_and_lines(ep_map: StatusMap) -> None:
    order = parse_elasticpath_order(rich_order())
    t = order.totals
    assert t.grand_total_inc_tax == Decimal("32.95")
    assert t.tax == t.products_tax == Decimal("4.00")
    assert t.shipping == Decimal("3.95") and t.shipping_tax == 0
    assert t.discount == Decimal("2.00")  # EP's negative discount, as a positive amount
    assert t.products == Decimal("27.00")  # Σ original × qty
    a, b = order.lines
    assert (a.unit_price, a.original_unit_price, a.unit_tax) == (
        Decimal("10.00"), Decimal("11.00"), Decimal("2.00"),
    )
    assert (a.row_total, a.row_tax, a.tax_percent) == (
        Decimal("20.00"), Decimal("4.00"), Decimal("20.00"),
    )
    assert b.tax_percent == 0 and b.row_total == Decimal("5.00")
    assert order.reference == "ORD-1001"
    assert order.transaction_id == "pi_123"
    assert order.customer_id == "cust-1" and order.is_guest is False
    assert order.email == "brad@bobley.com"  # customer before contact, lower-cased
    assert order.billing.county == "WM"  # region when county is absent
    assert order.updated_at == datetime(2026, 1, 11, 10, 0, 0, 187333, tzinfo=UTC)
    body = map_order(order, ep_map.resolve(order.status), MappingContext(currency="EUR"))
    assert body["order_status"] == "shipped"
    assert body["iso_currency_code"] == "GBP"  # the order's own currency wins
    assert body["invoice_total"] == 27.00
    assert body["invoice_total_inc_tax"] == 29.00
    assert body["grand_total"] == 28.95
    assert body["grand_total_inc_tax"] == 32.95
    assert body["invoice_total_inc_tax"] + body["shipping_total_inc_tax"] == pytest.approx(
        body["grand_total_inc_tax"]
    )
    assert [ln["order_line_id"] for ln in body["order_lines"]] == ["a", "b"]
    assert "anything" not in json.dumps(body)  # external_ref is not echoed back


def test_spec_2024_shape_prices_directly_under_meta() -> None:
    raw = rich_order()
    meta = raw["data"]["meta"]
    meta.update(meta.pop("display_price"))
    assert parse_elasticpath_order(raw).totals.grand_total_inc_tax == Decimal("32.95")


def test_bare_order_without_included_has_no_lines(webhook: dict[str, Any]) -> None:
    bare = webhook["data"]
    del bare["relationships"]
    order = parse_elasticpath_order(bare)
    assert order.lines == ()


def test_missing_tax_and_without_tax_are_derived() -> None:
    raw = rich_order()
    dp = raw["data"]["meta"]["display_price"]
    del dp["tax"]
    assert parse_elasticpath_order(raw).totals.tax == Decimal("4.00")
    raw = rich_order()
    del raw["data"]["meta"]["display_price"]["without_tax"]
    assert parse_elasticpath_order(raw).totals.products == Decimal("27.00")


def test_empty_currency_on_zero_amounts_is_tolerated() -> None:
    raw = rich_order()
    raw["data"]["meta"]["display_price"]["shipping_discount"] = {
        "amount": 0, "currency": "", "formatted": "",
    }
    assert parse_elasticpath_order(raw).totals.shipping_discount == 0


# ------------------------------------------------------------------------------ money


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (10000, "GBP", Decimal("100.00")),
        (217500, "USD", Decimal("2175.00")),
        (999, "EUR", Decimal("9.99")),
        (1500, "JPY", Decimal("1500")),
        (1500, "jpy", Decimal("1500")),
        (1234, "KWD", Decimal("1.234")),
        (12345, "CLF", Decimal("1.2345")),
        (150, "XYZ", Decimal("1.50")),
        (150, None, Decimal("1.50")),
        (-100, "GBP", Decimal("-1.00")),
        (100.0, "GBP", Decimal("1.00")),
        ("250", "GBP", Decimal("2.50")),
    ],
)
def test_minor_units_by_currency_exponent(
    amount: Any, currency: str | None, expected: Decimal
) -> None:
    value = minor_to_decimal(amount, currency)
    assert value == expected
    assert isinstance(value, Decimal)


@pytest.mark.parametrize("bad", [1.5, "1.5", True, None, "abc", [], 10**20, float("nan")])
def test_minor_units_reject_nonsense(bad: Any) -> None:
    with pytest.raises(SkippableError):
        minor_to_decimal(bad, "GBP")


def test_currency_exponent_defaults_to_two() -> None:
    assert currency_exponent("GBP") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("BHD") == 3
    assert currency_exponent("") == 2


def test_jpy_order_uses_exponent_zero() -> None:
    raw = {
        "data": {
            "type": "order", "id": "jp-1", "status": "complete", "payment": "paid",
            "shipping": "unfulfilled", "customer": {"email": "a@example.jp"},
            "meta": {
                "display_price": {"with_tax": p(1100, "JPY"), "without_tax": p(1000, "JPY"),
                                  "tax": p(100, "JPY")},
                "timestamps": {"created_at": "2026-01-01T00:00:00Z"},
            },
            "relationships": {"items": {"data": [{"type": "item", "id": "x"}]}},
        },
        "included": {"items": [item("x", 1, 1000, tax=100, currency="JPY")]},
    }
    order = parse_elasticpath_order(raw)
    assert order.totals.grand_total_inc_tax == Decimal("1100")
    assert order.lines[0].unit_price == Decimal("1000")
    assert order.lines[0].tax_percent == Decimal("10.00")


# ------------------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2019-07-04T11:12:23Z", 0),
        ("2019-07-04T11:12:23.7Z", 700000),
        ("2019-07-04T11:12:23.71Z", 710000),
        ("2018-04-16T10:11:59.715Z", 715000),
        ("2018-04-16T10:11:59.7151Z", 715100),
        ("2018-04-16T10:11:59.71512Z", 715120),
        ("2018-04-16T10:11:59.715123Z", 715123),
        ("2018-05-24T09:14:58.1873338Z", 187333),
        ("2018-05-24T09:14:58.18733387Z", 187333),
        ("2018-05-24T09:14:58.187333879Z", 187333),
    ],
)
def test_timestamps_with_zero_to_nine_fraction_digits(text: str, micro: int) -> None:
    dt = parse_timestamp(text)
    assert dt.tzinfo is UTC
    assert dt.microsecond == micro


def test_timestamp_offsets_and_naive_mean_utc() -> None:
    assert parse_timestamp("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2026-01-01T00:00:00-0130") == datetime(
        2026, 1, 1, 1, 30, tzinfo=UTC
    )
    assert parse_timestamp("2026-01-01T00:00:00") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2026-01-01 00:00:00z") == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [None, 1562238743, "", "yesterday", "2019-07-04", "2019-13-04T11:12:23Z",
     "2019-02-30T11:12:23Z", "2019-07-04T11:12:23.1234567890Z", "1850-01-01T00:00:00Z",
     "2019-07-04T11:12:23+25:00", "2019-07-04T11:12:23Z junk"],
)
def test_unreadable_timestamps_are_skippable(bad: Any) -> None:
    with pytest.raises(SkippableError):
        parse_timestamp(bad, "meta.timestamps.created_at")


def test_format_timestamp_floors_to_milliseconds() -> None:
    dt = datetime(2018, 5, 24, 9, 14, 58, 187999, tzinfo=UTC)
    assert format_timestamp(dt) == "2018-05-24T09:14:58.187Z"
    assert format_timestamp(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
    plus_one = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(plus_one) == "2026-01-01T00:00:00.000Z"
    assert parse_timestamp(format_timestamp(dt)) == dt.replace(microsecond=187000)


# ------------------------------------------------------------------------------ status


@pytest.mark.parametrize(
    ("status", "payment", "shipping", "expected"),
    [
        ("complete", "paid", "unfulfilled", "paid"),
        ("complete", "paid", "fulfilled", "fulfilled"),
        ("cancelled", "paid", "unfulfilled", "cancelled"),
        ("cancelled", "refunded", "unfulfilled", "refunded"),
        ("complete", "refunded", "fulfilled", "refunded"),
        ("incomplete", "unpaid", "unfulfilled", "unpaid"),
        ("complete", "authorized", "unfulfilled", "authorized"),
        ("complete", "partially_authorized", "unfulfilled", "partially_authorized"),
        ("processing", "partially_paid", "unfulfilled", "partially_paid"),
        ("complete", "pending_review", "unfulfilled", "custom"),
        ("on_hold", "pending_review", "fulfilled", "fulfilled"),
    ],
)
def test_status_type_precedence(status: str, payment: str, shipping: str, expected: str) -> None:
    st_ = synthetic_status(status, payment, shipping)
    assert st_.type == expected == status_type(status, payment, shipping)
    assert st_.id == f"{status}:{payment}:{shipping}"
    assert st_.name == f"{status} / {payment} / {shipping}"


def test_unknown_and_odd_enum_values_are_tolerated() -> None:
    st_ = synthetic_status("Awaiting: Review!", None, 7)
    assert st_.id == "awaiting__review_:unknown:unknown"
    assert st_.type == "custom"
    assert synthetic_status(" PAID ", "PAID", "Fulfilled").id == "paid:paid:fulfilled"
    raw = rich_order(status="frozen", payment="escrow", shipping="teleported")
    order = parse_elasticpath_order(raw)
    assert order.status.id == "frozen:escrow:teleported"
    assert order.status.type == "custom"
    raw = rich_order()
    for key in ("status", "payment", "shipping"):
        del raw["data"][key]
    assert parse_elasticpath_order(raw).status.id == "unknown:unknown:unknown"


def test_fixed_synthetic_status_set() -> None:
    statuses = all_statuses()
    assert len(statuses) == 48
    assert len({s.id for s in statuses}) == 48
    assert {s.type for s in statuses} <= set(STATUS_TYPES)
    assert "custom" not in {s.type for s in statuses}


# ------------------------------------------------------------------------------ status map


def test_ep_map_loads_with_the_existing_loader(ep_map: StatusMap) -> None:
    assert set(ep_map.by_type) == set(STATUS_TYPES) - {"custom"}
    assert not ep_map.by_id and not ep_map.by_name


def test_ep_map_is_package_data() -> None:
    text = resources.files("config").joinpath("elasticpath_status_map.toml").read_text("utf-8")
    assert text == EP_MAP_PATH.read_text(encoding="utf-8")


def test_every_synthetic_status_is_mapped(ep_map: StatusMap) -> None:
    for status in all_statuses():
        assert ep_map.resolve(status).matched, status


@pytest.mark.parametrize(
    ("triple", "order_status", "event"),
    [
        (("cancelled", "unpaid", "unfulfilled"), "cancelled", "cancelled"),
        (("cancelled", "refunded", "unfulfilled"), "refunded", "refunded"),
        (("complete", "refunded", "fulfilled"), "refunded", "refunded"),
        (("complete", "paid", "fulfilled"), "shipped", "dispatched"),
        (("complete", "paid", "unfulfilled"), "processing", "processing"),
        (("processing", "paid", "unfulfilled"), "processing", "processing"),
        (("complete", "authorized", "unfulfilled"), "processing", None),
        (("complete", "partially_paid", "unfulfilled"), "awaiting-payment", None),
        (("incomplete", "unpaid", "unfulfilled"), "awaiting-payment", None),
    ],
)
def test_ep_map_resolutions(
    ep_map: StatusMap, triple: tuple[str, str, str], order_status: str, event: str | None
) -> None:
    res = ep_map.resolve(synthetic_status(*triple))
    assert (res.order_status, res.event, res.matched) == (order_status, event, True)


def test_ep_map_terminal_and_unknown(ep_map: StatusMap) -> None:
    assert ep_map.resolve(synthetic_status("complete", "refunded", "fulfilled")).terminal
    assert not ep_map.resolve(synthetic_status("cancelled", "paid", "unfulfilled")).terminal
    unknown = ep_map.resolve(synthetic_status("complete", "escrow", "unfulfilled"))
    assert (unknown.matched, unknown.order_status) == (False, "unknown")


def test_ep_map_can_be_overridden_by_exact_id(ep_map: StatusMap) -> None:
    base = EP_MAP_PATH.read_text(encoding="utf-8")
    override = '[ids."complete:escrow:unfulfilled"]\norder_status = "under-review"\n'
    merged = StatusMap.from_toml(base, override)
    res = merged.resolve(synthetic_status("complete", "escrow", "unfulfilled"))
    assert res.order_status == "under-review"


# ------------------------------------------------------------------------------ lines


def test_only_the_orders_own_items_are_lines() -> None:
    raw = rich_order()
    raw["included"]["items"].insert(0, item("other-order-item", 5, 99999))
    assert [ln.line_id for ln in parse_elasticpath_order(raw).lines] == ["a", "b"]


def test_listed_item_missing_from_included_is_skippable() -> None:
    raw = rich_order()
    raw["included"]["items"].pop()
    with pytest.raises(SkippableError, match="listed but not included"):
        parse_elasticpath_order(raw)


def test_without_relationships_every_included_item_counts() -> None:
    raw = rich_order()
    del raw["data"]["relationships"]
    assert len(parse_elasticpath_order(raw).lines) == 2


def test_flat_jsonapi_included_list() -> None:
    raw = rich_order()
    raw["included"] = [*raw["included"]["items"], {"type": "promotion", "id": "p"}]
    assert [ln.line_id for ln in parse_elasticpath_order(raw).lines] == ["a", "b"]


def test_duplicate_item_ids_kept_once() -> None:
    raw = rich_order()
    del raw["data"]["relationships"]
    raw["included"]["items"].append(copy.deepcopy(raw["included"]["items"][0]))
    assert [ln.line_id for ln in parse_elasticpath_order(raw).lines] == ["a", "b"]


def test_negative_promotion_lines_are_left_out() -> None:
    raw = rich_order()
    del raw["data"]["relationships"]
    raw["included"]["items"].append(item("promo", 1, -200))
    assert [ln.line_id for ln in parse_elasticpath_order(raw).lines] == ["a", "b"]


def test_item_without_display_price_uses_unit_price() -> None:
    raw = rich_order()
    it = raw["included"]["items"][1]
    del it["meta"]
    it["unit_price"] = {"amount": 500, "currency": "GBP", "includes_tax": True}
    del it["value"]
    line = parse_elasticpath_order(raw).lines[1]
    assert (line.unit_price, line.row_total, line.unit_tax) == (
        Decimal("5.00"), Decimal("5.00"), 0,
    )


def test_item_name_falls_back_to_sku() -> None:
    raw = rich_order()
    raw["included"]["items"][0]["name"] = "   "
    assert parse_elasticpath_order(raw).lines[0].name == "SKU-a"


# ------------------------------------------------------------------------------ people


def test_names_fall_back_to_the_customer_name() -> None:
    raw = rich_order()
    del raw["data"]["billing_address"]
    del raw["data"]["shipping_address"]
    order = parse_elasticpath_order(raw)
    assert (order.billing.first_name, order.billing.last_name) == ("Brad", "Bobley")
    assert order.billing.email == "brad@bobley.com"


def test_contact_email_for_account_checkouts() -> None:
    raw = rich_order()
    del raw["data"]["customer"]
    raw["data"]["relationships"]["account"] = {"data": {"type": "account", "id": "acc-9"}}
    order = parse_elasticpath_order(raw)
    assert order.email == "contact@bobley.com"
    assert order.customer_id == "acc-9" and order.is_guest is False


# ------------------------------------------------------------------------------ unusable


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = doc
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(parts[-1]) if isinstance(target, list) else parts[-1]
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("data.id", _DELETE, "id"),
        ("data.id", 12345, "id"),
        ("data.id", "x" * 65, "id"),
        ("data.type", "cart", "not an order"),
        ("data.meta", _DELETE, "meta"),
        ("data.meta.timestamps.created_at", _DELETE, "created_at"),
        ("data.meta.timestamps.created_at", "soon", "created_at"),
        ("data.meta.timestamps.updated_at", "later", "updated_at"),
        ("data.meta.display_price.with_tax", _DELETE, "with_tax"),
        ("data.meta.display_price.with_tax.amount", 12.5, "with_tax.amount"),
        ("data.meta.display_price.with_tax.amount", _DELETE, "with_tax.amount"),
        ("data.meta.display_price.with_tax.currency", "", "ISO 4217"),
        ("data.meta.display_price.with_tax.currency", "pounds", "ISO 4217"),
        ("data.meta.display_price.tax.currency", "USD", "differs"),
        ("data.meta.display_price.tax.amount", 5000, "tax larger"),
        ("data.meta.display_price.shipping.amount", 99999, "shipping"),
        ("data.meta.display_price.with_tax.amount", -1, "negative"),
        ("data.meta.display_price.with_tax.amount", 10**17, "out of range"),
        ("included.items.0.quantity", 1.5, "quantity"),
        ("included.items.0.quantity", -1, "quantity"),
        ("included.items.0.quantity", True, "quantity"),
        ("included.items.0.id", _DELETE, "not included"),
        ("included.items.0.meta.display_price.without_tax.unit.currency", "EUR", "differs"),
        ("included.items.0.meta.display_price.tax.unit.amount", 5000, "more than the price"),
        ("included.items", "lots", "included.items"),
        ("included.items.0", "an item", "not included"),
        ("data.relationships.items.data", {"id": "a"}, "relationships.items.data"),
        ("data.billing_address", "1 Road", "billing_address"),
        ("data.customer", ["x"], "customer"),
    ],
)
def test_unusable_orders_are_skippable(path: str, value: Any, reason: str) -> None:
    raw = _set(rich_order(), path, value)
    with pytest.raises(SkippableError) as info:
        parse_elasticpath_order(raw)
    assert reason in info.value.message


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("included.items.0.id", _DELETE, "included.items[0].id"),
        ("included.items.0", "an item", "included.items[0]: expected an object"),
        ("included", 42, "included"),
    ],
)
def test_unusable_items_without_relationships(path: str, value: Any, reason: str) -> None:
    raw = rich_order()
    del raw["data"]["relationships"]
    with pytest.raises(SkippableError) as info:
        parse_elasticpath_order(_set(raw, path, value))
    assert reason in info.value.message


@pytest.mark.parametrize("raw", [None, [], "order", 3, {"data": "x"}, {"data": []}])
def test_non_orders_are_skippable(raw: Any) -> None:
    with pytest.raises(SkippableError):
        parse_elasticpath_order(raw)


def test_too_many_lines_is_skippable() -> None:
    raw = rich_order()
    del raw["data"]["relationships"]
    raw["included"]["items"] = [item(f"i{n}", 1, 100) for n in range(2001)]
    with pytest.raises(SkippableError, match="more than"):
        parse_elasticpath_order(raw)


# ------------------------------------------------------------------------------ simulator


def test_simulator_orders_parse_map_and_reconcile(ep_map: StatusMap) -> None:
    sim = ElasticPathSimulator(clock=FakeClock(), seed=11)
    ids = sim.generate_orders(150)
    for oid in ids:
        order = parse_elasticpath_order(
            {"data": sim.orders[oid], "included": {"items": sim.items[oid]}}
        )
        t = order.totals
        rows = sum((ln.row_total for ln in order.lines), Decimal(0))
        row_tax = sum((ln.row_tax for ln in order.lines), Decimal(0))
        assert t.grand_total_inc_tax == rows + row_tax + t.shipping
        assert t.products == sum(
            (ln.original_unit_price * ln.quantity for ln in order.lines), Decimal(0)
        )
        assert ep_map.resolve(order.status).matched
        map_order(order, ep_map.resolve(order.status), MappingContext())


# ------------------------------------------------------------------------------ fuzz

hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "NaN", "Infinity", "-1e999", "1e308", "💥", "GBP",
                     "JPY", "gbp", "2019-07-04T11:12:23Z", "2019-07-04T11:12:23.123456789Z",
                     "9999-12-31T23:59:59Z", "paid", "fulfilled", "cancelled", "a@b.co"]),
)
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**22), max_value=10**22),
    st.floats(allow_nan=True, allow_infinity=True), hostile_text,
)
json_value = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)
MUTATION_PATHS = [
    "data", "included", "data.id", "data.type", "data.status", "data.payment", "data.shipping",
    "data.meta", "data.meta.display_price", "data.meta.display_price.with_tax",
    "data.meta.display_price.with_tax.amount", "data.meta.display_price.with_tax.currency",
    "data.meta.display_price.without_tax.amount", "data.meta.display_price.tax",
    "data.meta.display_price.discount.amount", "data.meta.display_price.shipping.amount",
    "data.meta.timestamps", "data.meta.timestamps.created_at",
    "data.meta.timestamps.updated_at", "data.relationships", "data.relationships.items.data",
    "data.relationships.items.data.0.id", "data.customer", "data.customer.email",
    "data.contact", "data.billing_address", "data.billing_address.first_name",
    "data.shipping_address", "data.order_number", "included.items", "included.items.0",
    "included.items.0.id", "included.items.0.quantity", "included.items.0.unit_price",
    "included.items.0.meta.display_price",
    "included.items.0.meta.display_price.without_tax.unit.amount",
    "included.items.0.meta.display_price.tax.unit.amount",
    "included.items.0.meta.display_price.discount",
]


def mutated(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    def apply(changes: list[tuple[str, Any]]) -> Any:
        doc: Any = json.loads(json.dumps(base))
        for path, value in changes:
            target: Any = doc
            parts = path.split(".")
            for part in parts[:-1]:
                if isinstance(target, list):
                    target = target[0] if target and part.isdigit() else {}
                elif isinstance(target, dict):
                    target = target.setdefault(part, {})
            if isinstance(target, dict):
                target[parts[-1]] = value
            elif isinstance(target, list) and target and parts[-1].isdigit():
                target[0] = value
        return doc

    return st.lists(st.tuples(st.sampled_from(MUTATION_PATHS), json_value), min_size=1,
                    max_size=5).map(apply)


def check(raw: Any, ep_map: StatusMap) -> None:
    try:
        order = parse_elasticpath_order(raw)
        body = map_order(order, ep_map.resolve(order.status), MappingContext())
    except SkippableError as exc:
        assert exc.message
        return
    assert order.created_at.tzinfo is UTC
    json.dumps(body, allow_nan=False)


@settings(max_examples=1500)
@given(data=st.data())
def test_fuzz_mutated_orders_never_crash(ep_map: StatusMap, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from([rich_order(), WEBHOOK_PAYLOAD]))
    check(data.draw(mutated(base)), ep_map)


@settings(max_examples=800)
@given(raw=json_value)
def test_fuzz_arbitrary_json_never_crashes(ep_map: StatusMap, raw: Any) -> None:
    check(raw, ep_map)


@settings(max_examples=300)
@given(raw=json_value)
def test_fuzz_arbitrary_data_object_never_crashes(ep_map: StatusMap, raw: Any) -> None:
    check({"data": raw, "included": {"items": [raw]}}, ep_map)
