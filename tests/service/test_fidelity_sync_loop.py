"""Issue #13 through the whole sync loop: the production wiring against both simulators.

Custom fields WiredPlus does not know (row 8) cost nothing: the event is sent again without
them. A refund mails once whichever the shop shows first (row 3). A cancelled order that is
later refunded still gets its refund email (row 6).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from sync.clock import FakeClock
from sync.ledger.models import EventState, OrderState
from sync.sandbox import Sandbox
from sync.service.runtime import build_runtime

from .conftest import Harness, make_settings  # type: ignore[import-not-found]


def _harness(db_url: str, **settings: Any) -> Iterator[Harness]:
    clock = FakeClock()
    sb = Sandbox(seed=5, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(12, created_between=(now - timedelta(days=10),
                                                      now - timedelta(days=2)))
    rt = build_runtime(
        make_settings(db_url, **settings),
        clock=clock,
        shopwired_transport=sb.shopwired_transport(),
        wiredplus_transport=sb.wiredplus_transport(),
    )
    yield Harness(sb, rt, clock)
    rt.close()


@pytest.fixture
def unknown_field(db_url: str) -> Iterator[Harness]:
    # "Tracking link" is not pre-defined in the sandbox account
    yield from _harness(db_url, ORDERSYNC_WIREDPLUS_CUSTOM_FIELDS="tracking_url=Tracking link")


@pytest.fixture
def known_field(db_url: str) -> Iterator[Harness]:
    yield from _harness(db_url, ORDERSYNC_WIREDPLUS_CUSTOM_FIELDS="tracking_url")


@pytest.fixture
def plain(db_url: str) -> Iterator[Harness]:
    yield from _harness(db_url)


def _open_order(h: Harness) -> str:
    """An order in a paid-like status (no refunds yet) the test can move on."""
    for oid in sorted(h.orders()):
        raw = h.sb.shopwired.get_order(int(oid))
        if raw and raw["status"]["name"] in ("Paid", "Processing") and not raw["refunds"]:
            return oid
    raise AssertionError("the seeded shop has no paid order")


def _ship(h: Harness, oid: str) -> None:
    shipped = h.sb.shopwired.status_by_name("Shipped")
    assert shipped is not None
    h.sb.shopwired.set_status(int(oid), shipped["id"], tracking_url="https://t.example/9")
    h.clock.advance(13 * 3600)
    h.run(passes=3)


def _events(h: Harness, oid: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in h.wp_events_for(oid) if e["event_type"] == kind]


def test_event_rejected_for_its_custom_fields_is_sent_without_them(
    unknown_field: Harness,
) -> None:
    h = unknown_field
    h.run()
    oid = _open_order(h)
    _ship(h, oid)
    (dispatched,) = _events(h, oid, "dispatched")
    assert "custom_fields" not in dispatched  # the email goes out, without the field
    assert any("pre-defined" in err for _, err in h.sb.wiredplus.rejections)
    assert h.orders()[oid].state == OrderState.SYNCED
    events = [e for e in h.rt.ledger.all_events(h.store) if e.order_ref == oid]
    assert all(e.state == EventState.SENT for e in events)


def test_configured_predefined_custom_field_arrives(known_field: Harness) -> None:
    h = known_field
    h.run()
    oid = _open_order(h)
    _ship(h, oid)
    (dispatched,) = _events(h, oid, "dispatched")
    assert dispatched["custom_fields"] == {"tracking_url": "https://t.example/9"}
    assert h.sb.wiredplus.order_by_ref(oid)["custom_fields"] == {
        "tracking_url": "https://t.example/9"
    }


def test_no_custom_fields_by_default(plain: Harness) -> None:
    h = plain
    h.run()
    oid = _open_order(h)
    _ship(h, oid)
    (dispatched,) = _events(h, oid, "dispatched")
    assert "custom_fields" not in dispatched
    assert not h.sb.wiredplus.rejections


@pytest.mark.parametrize("refund_first", [True, False])
def test_refund_and_refunded_status_on_two_polls_mail_once(plain: Harness,
                                                           refund_first: bool) -> None:
    h = plain
    h.run()
    oid = _open_order(h)
    total = h.sb.shopwired.get_order(int(oid))["total"]
    refunded = h.sb.shopwired.status_by_name("Refunded")
    assert refunded is not None
    steps = [lambda: h.sb.shopwired.add_refund(int(oid), total, "Full refund"),
             lambda: h.sb.shopwired.set_status(int(oid), refunded["id"])]
    for step in steps if refund_first else steps[::-1]:
        step()
        h.clock.advance(13 * 3600)
        h.run(passes=2)
    assert len(_events(h, oid, "refunded")) == 1
    assert h.sb.wiredplus.order_by_ref(oid)["order_status"] == "refunded"


def test_cancelled_then_refunded_order_gets_its_refund_email(plain: Harness) -> None:
    h = plain
    h.run()
    oid = _open_order(h)
    cancelled = h.sb.shopwired.status_by_name("Cancelled")
    assert cancelled is not None
    h.sb.shopwired.set_status(int(oid), cancelled["id"])
    h.clock.advance(13 * 3600)
    h.run(passes=2)
    h.sb.shopwired.add_refund(int(oid), "5.00", "Deposit returned")
    h.clock.advance(13 * 3600)
    h.run(passes=2)
    assert len(_events(h, oid, "cancelled")) == 1
    assert len(_events(h, oid, "refunded")) == 1


@pytest.mark.parametrize("currency", ["KWD", "JPY"])
def test_elasticpath_orders_keep_their_exponent_and_update_time(db_url: str,
                                                                 currency: str) -> None:
    # rows 2 and 5 through the loop: 3- and 0-decimal amounts, EP's own updated_at
    import httpx

    from sync.domain.money import currency_exponent
    from sync.domain.parse_elasticpath import parse_timestamp
    from sync.sandbox.elasticpath import ElasticPathSimulator

    clock = FakeClock()
    sb = Sandbox(seed=8, clock=clock)
    ep = ElasticPathSimulator(clock=clock, seed=8, enforce_rate_limit=False, currency=currency)
    now = clock.now()
    ids = ep.generate_orders(15, created_between=(now - timedelta(days=9), now - timedelta(days=1)))
    rt = build_runtime(
        make_settings(db_url, ORDERSYNC_SOURCE="elasticpath",
                      ELASTICPATH_BASE_URL="http://ep.sandbox",
                      ELASTICPATH_CLIENT_ID="sandbox-client-id",
                      ELASTICPATH_CLIENT_SECRET="sandbox-client-secret"),
        clock=clock, elasticpath_transport=httpx.MockTransport(ep.handle),
        wiredplus_transport=sb.wiredplus_transport(),
    )
    try:
        rt.poller.run_pass()
        exp = currency_exponent(currency)
        checked = 0
        for oid in ids:
            stored = sb.wiredplus.order_by_ref(oid)
            if stored is None:
                continue  # no items: skipped with a reason
            checked += 1
            meta = ep.orders[oid]["meta"]
            paid = meta["display_price"]["with_tax"]["amount"]
            assert stored["grand_total_inc_tax"] == (
                paid if exp == 0 else float(Decimal(paid).scaleb(-exp)))
            updated = parse_timestamp(meta["timestamps"]["updated_at"])
            assert stored["order_update_date"] == updated.strftime("%Y-%m-%d %H:%M:%S")
        assert checked >= 10
    finally:
        rt.close()
