"""Webhooks in the loop: a delivery makes the next pass re-read that order first, by id; a
deleted order is closed in WiredPlus without an email."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from sync.clock import FakeClock
from sync.ledger.models import OrderState
from sync.sandbox import Sandbox
from sync.service.runtime import build_runtime
from sync.webhook.inbox import WebhookInbox

from .conftest import Harness, make_settings  # type: ignore[import-not-found]


@pytest.fixture
def h(db_url: str) -> Iterator[Harness]:
    clock = FakeClock()
    sb = Sandbox(seed=8, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(120, created_between=(now - timedelta(days=20),
                                                       now - timedelta(hours=30)))
    rt = build_runtime(make_settings(db_url, ORDERSYNC_REFRESH_SHARE="0",
                                         ORDERSYNC_REFRESH_SHARE_WITH_WEBHOOKS="0"), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    harness = Harness(sb, rt, clock)
    harness.run()
    yield harness
    rt.close()


def _deliver(h: Harness, n: int, topic: str, oid: str) -> None:
    WebhookInbox(h.rt.ledger).record(h.store, f"evt-{n}", topic, oid, h.clock.now(),
                                     h.clock.now())


def test_a_webhook_gets_the_change_delivered_in_the_next_pass_without_polling(
    h: Harness,
) -> None:
    oid = sorted(h.orders())[3]
    shipped = h.sb.shopwired.status_by_name("Shipped")
    assert shipped is not None
    h.sb.shopwired.set_status(int(oid), shipped["id"], tracking_url="https://t.example/9")
    h.run()  # polling refresh is off: without a webhook nothing notices
    assert h.orders()[oid].status_id != str(shipped["id"])
    _deliver(h, 1, "order.status_changed", oid)
    _deliver(h, 2, "order.status_changed", oid)  # a retry of the same change
    report = h.rt.poller.run_pass()
    assert report.webhook_calls == 1 and report.webhooks_healthy
    assert [e["event_type"] for e in h.wp_events_for(oid)] == ["dispatched"]
    assert WebhookInbox(h.rt.ledger).pending_refreshes(h.store) == []


def test_a_deleted_order_is_closed_in_wiredplus_and_nobody_is_mailed(h: Harness) -> None:
    oid = sorted(h.orders())[5]
    events_before = len(h.sb.wiredplus.events)
    h.sb.shopwired.delete_order(int(oid))
    _deliver(h, 3, "order.deleted", oid)
    report = h.rt.poller.run_pass()
    row = h.orders()[oid]
    assert row.deleted and row.state == OrderState.SYNCED and report.deleted
    assert h.sb.wiredplus.order_by_ref(oid)["order_status"] == "closed"
    assert len(h.sb.wiredplus.events) == events_before


def test_polling_notices_a_deletion_only_when_the_shop_confirms_it(db_url: str) -> None:
    clock = FakeClock()
    sb = Sandbox(seed=4, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(20, created_between=(now - timedelta(days=5), now))
    rt = build_runtime(make_settings(db_url), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    try:
        h = Harness(sb, rt, clock)
        h.run()
        oid = sorted(h.orders())[0]
        sb.shopwired.delete_order(int(oid))
        h.run(passes=2)
        assert h.orders()[oid].deleted
        assert sb.wiredplus.order_by_ref(oid)["order_status"] == "closed"
    finally:
        rt.close()
