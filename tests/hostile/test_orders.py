"""Rows 1 and 10 of issue #12: one hostile order never stops the sync.

A lone surrogate, a NUL or control characters in any text field, an id that is not a
ShopWired id, an order listed twice, or any failure while parsing, mapping, hashing or
storing one order: the pass succeeds, the watermark moves, the good orders of the page are
imported, and each bad order is a dead letter with a reason and its raw id.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import DataError

from sync.domain.parse_shopwired import order_id_of, parse_shopwired_order
from sync.domain.text import clean_json, clean_text, json_depth
from sync.ledger.models import OrderState
from sync.ledger.store import WATERMARK
from tests.hostile.conftest import Rig, order_list_mutator

HOSTILE_TEXT = ["\ud800", "a\udfffb", "\x00", "nul\x00here", "\x1b[31mred\x1b[0m", "\x9b2J",
                "[/]", "[bold]x[/bold]", "\u202e", "\x07\x08"]


def _poison(order: dict[str, Any], text: str) -> None:
    """Put ``text`` into every kind of text field ShopWired sends."""
    order["comments"] = text
    order["billingAddress"]["name"] = f"Jane {text}"
    order["shippingAddress"]["addressLine1"] = text
    order["status"]["name"] = text
    for product in order.get("products") or []:
        product["title"] = text
        product["sku"] = text
    order["paymentMethod"] = text


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_clean_text_leaves_nothing_unsafe(text: str) -> None:
    cleaned = clean_text(text)
    assert len(cleaned) == len(text)  # replaced, never deleted: no id can alias another
    cleaned.encode("utf-8")  # no lone surrogate left
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in cleaned)
    assert clean_text(cleaned) == cleaned


def test_clean_json_bounds_depth_and_cleans_keys() -> None:
    deep: Any = "x"
    for _ in range(100):
        deep = [deep]
    assert json_depth("[" * 100_000, stop_at=33) == 33
    cleaned = clean_json({"k\x00": deep, "\ud800": "v\x1b"})
    assert cleaned["\ufffd"] == "v\ufffd" and cleaned["k\ufffd"][0][0][0] is not None


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_text_in_an_order_is_made_safe(sample_order: dict[str, Any], text: str) -> None:
    _poison(sample_order, text)
    order = parse_shopwired_order(sample_order)
    for value in (order.comments, order.billing.last_name, order.shipping.line1,
                  order.status.name, order.lines[0].name, order.payment_method):
        if value is not None:
            value.encode("utf-8")
            assert "\x00" not in value and "\x1b" not in value


@pytest.mark.parametrize("value, expected", [
    (1234, "1234"), ("1234", "1234"), (" 77 ", "77"), ("abc", None), (-7, None), (0, None),
    ("1' OR '1'='1", None), ("9" * 64, None), (10**18, None), (1.5, None), (True, None),
    ("١٢٣", None), ("", None), (None, None),
])
def test_shopwired_ids_are_positive_integers(value: Any, expected: str | None) -> None:
    assert order_id_of(value) == expected


def test_a_page_with_hostile_orders_commits_the_good_ones_and_dead_letters_the_bad(
    make_rig: Any,
) -> None:
    """Row 1 + row 10 end to end, on SQLite and PostgreSQL: the pass succeeds, the
    watermark moves, every good order is pushed, every bad one is a dead letter."""
    bad_ids = ["abc", -7, "1' OR '1'='1", "9" * 64, "x" * 65]

    def mutate(orders: list[Any]) -> list[Any]:
        if not orders:
            return orders
        # Text poison in real orders (they must still import) ...
        _poison(orders[0], "\ud800")
        _poison(orders[1], "nul\x00here\x1b[2J")
        # ... invalid ids (each a dead letter) and a duplicate listing.
        extra = []
        for i, bad in enumerate(bad_ids):
            clone = dict(orders[2 + i % 3])
            clone["id"] = bad
            extra.append(clone)
        return [*orders, *extra, dict(orders[3])]

    rig: Rig = make_rig(orders=10, shopwired=lambda h: order_list_mutator(h, mutate))
    report = rig.rt.poller.run_pass()
    assert report is not None
    assert rig.ledger.get_cursor(rig.store, WATERMARK) is not None
    rows = rig.orders()
    good = {str(i) for i in rig.sb.shopwired.order_ids()}
    assert good <= set(rows)
    assert all(rows[i].state == OrderState.SYNCED for i in good), {
        i: rows[i].state for i in good}
    dead = {d.order_id: d for d in rig.ledger.dead_letters(rig.store)}
    for bad in ("abc", "-7", "1' OR '1'='1", "9" * 64):
        assert dead[bad].reason.startswith("id:"), dead[bad].reason
    long_ids = [k for k in dead if k.startswith("sha256:")]
    assert len(long_ids) == 1  # the 65-char id: filed under its hash, never truncated
    assert not any(len(k) > 64 for k in rows)
    # nothing from an invalid id was pushed
    assert all(rig.sb.wiredplus.order_by_ref(bad) is None for bad in ("abc", "-7"))
    dup = [ln for ln in rig.log_lines() if ln["event"] == "order.duplicate_in_page"]
    assert len(dup) == 1
    pushed = rig.sb.wiredplus.order_by_ref(sorted(good, key=int)[0])
    assert pushed is not None


def test_any_failure_of_one_order_is_its_dead_letter_only(make_rig: Any) -> None:
    """A bug or a shape nobody foresaw (any exception, not only SkippableError) while
    parsing, mapping or hashing one order dead-letters that order with the exception's
    type; the rest of the page is imported."""
    rig: Rig = make_rig(orders=6)
    victim = str(sorted(rig.sb.shopwired.order_ids())[2])
    real_parse = rig.rt.poller.ingestor.source.parse

    def parse(raw: Any) -> Any:
        if str(raw.get("id")) == victim:
            raise RuntimeError("something nobody planned for")
        return real_parse(raw)

    rig.rt.poller.ingestor.source.parse = parse  # type: ignore[method-assign]
    rig.rt.poller.run_pass()
    rows = rig.orders()
    assert rows[victim].state == OrderState.SKIPPED
    assert rows[victim].last_error == "unreadable order (RuntimeError)"
    others = [r for k, r in rows.items() if k != victim]
    assert len(others) == 5 and all(r.state == OrderState.SYNCED for r in others)


def test_a_store_failure_of_one_order_dead_letters_it_and_the_page_commits(
    make_rig: Any,
) -> None:
    """The database refuses one order's data (as PostgreSQL does with a NUL): the page is
    stored again order by order and only that order becomes a dead letter."""
    rig: Rig = make_rig(orders=6)
    victim = str(sorted(rig.sb.shopwired.order_ids())[4])
    ledger = rig.rt.poller.ingestor.ledger
    real_add_orders = ledger.add_orders

    def add_orders(s: Any, rows: Any) -> None:
        if any(row["ref"].endswith(victim) for row in rows):
            raise DataError("INSERT", {}, ValueError("invalid byte sequence"))
        real_add_orders(s, rows)

    ledger.add_orders = add_orders  # type: ignore[method-assign]
    rig.rt.poller.run_pass()
    rows = rig.orders()
    assert rows[victim].state == OrderState.SKIPPED
    assert rows[victim].last_error == "could not be stored (DataError)"
    assert sum(r.state == OrderState.SYNCED for r in rows.values()) == 5
    assert rig.ledger.get_cursor(rig.store, WATERMARK) is not None


def test_when_nothing_can_be_stored_the_pass_fails_instead_of_dropping_orders(
    make_rig: Any,
) -> None:
    """If even the dead letter cannot be written, the page fails and the watermark stays:
    the orders are read again next pass, never dropped without a trace."""
    rig: Rig = make_rig(orders=4)
    ledger = rig.rt.poller.ingestor.ledger

    def log(*_: Any, **__: Any) -> None:
        raise DataError("INSERT", {}, ValueError("the database refuses everything"))

    ledger.log = log  # type: ignore[method-assign]
    ledger.add_log = log  # type: ignore[method-assign]
    ledger.add_orders = log  # type: ignore[method-assign]
    with pytest.raises(DataError):
        rig.rt.poller.run_pass()
    assert rig.ledger.get_cursor(rig.store, WATERMARK) is None
    assert rig.orders() == {}
