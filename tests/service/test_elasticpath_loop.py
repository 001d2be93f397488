"""Elastic Path through the same pipeline: same ledger, pusher, events and rules — and side by
side with ShopWired in one database, each store with its own watermark."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from sync.clock import FakeClock
from sync.ledger.models import OrderState
from sync.ledger.store import WATERMARK
from sync.sandbox import Sandbox
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.service.runtime import build_pusher, build_runtime

from .conftest import make_settings  # type: ignore[import-not-found]

EP = {
    "ORDERSYNC_SOURCE": "elasticpath",
    "ELASTICPATH_BASE_URL": "http://ep.sandbox",
    "ELASTICPATH_CLIENT_ID": "sandbox-client-id",
    "ELASTICPATH_CLIENT_SECRET": "sandbox-client-secret",
}


def _ep_world(db_url: str, clock: FakeClock, **extra: Any):  # type: ignore[no-untyped-def]
    sb = Sandbox(seed=2, clock=clock)
    ep = ElasticPathSimulator(clock=clock, seed=2, enforce_rate_limit=False)
    now = clock.now()
    ep.generate_orders(40, created_between=(now - timedelta(days=200), now - timedelta(days=60)))
    ep.generate_orders(50, created_between=(now - timedelta(days=20), now - timedelta(days=3)))
    ep.generate_orders(6, created_between=(now - timedelta(hours=10), now - timedelta(hours=1)))
    rt = build_runtime(make_settings(db_url, **EP, **extra), clock=clock,
                       elasticpath_transport=httpx.MockTransport(ep.handle),
                       wiredplus_transport=sb.wiredplus_transport())
    return sb, ep, rt


def test_elasticpath_orders_and_events_arrive_in_wiredplus(db_url: str) -> None:
    clock = FakeClock()
    sb, ep, rt = _ep_world(db_url, clock)
    try:
        assert rt.settings.store == "elasticpath"
        rt.poller.run_pass()
        start = rt.settings.effective_start(clock.now())
        expected = set(ep.updated_ids(start, clock.now() - rt.settings.settle_delay))
        rows = {r.source_order_id: r for r in rt.ledger.all_orders("elasticpath")}
        assert expected <= set(rows)
        synced = [r for r in rows.values() if r.state == OrderState.SYNCED]
        assert synced and all(sb.wiredplus.order_by_ref(r.ref) for r in synced)
        # no email about orders created before install (older than the first-sight window)
        day = rt.settings.first_sight_event_window
        for ev in rt.ledger.all_events("elasticpath"):
            row = rt.ledger.get_order("elasticpath", ev.order_ref)
            assert row is not None and row.created_at is not None
            assert row.first_seen_at - row.created_at <= day
        # a shipment becomes one dispatched event; the updated_at scan notices it
        target = next(r for r in synced if r.order_status in ("processing", "awaiting-payment"))
        ep.set_payment(target.source_order_id, "paid")
        ep.set_shipping(target.source_order_id, "fulfilled")
        clock.advance(120)
        rt.poller.run_pass()
        clock.advance(120)
        rt.poller.run_pass()
        wp = sb.wiredplus.order_by_ref(target.ref)
        assert wp is not None and wp["order_status"] == "shipped"
        types = [e["event_type"] for e in sb.wiredplus.events_for_order(wp["id"])]
        assert types.count("dispatched") == 1
        assert all(n == 1 for n in sb.wiredplus.event_creations.values())
        assert all(n == 1 for n in sb.wiredplus.order_creations.values())
    finally:
        rt.close()


def test_external_ref_write_back_is_optional_and_stores_the_wiredplus_id(db_url: str) -> None:
    clock = FakeClock()
    _sb, ep, rt = _ep_world(db_url, clock, ELASTICPATH_WRITE_BACK_EXTERNAL_REF="true")
    try:
        rt.poller.run_pass()
        row = next(r for r in rt.ledger.all_orders("elasticpath")
                   if r.state == OrderState.SYNCED)
        assert ep.orders[row.source_order_id].get("external_ref") == f"wiredplus:{row.wiredplus_id}"
    finally:
        rt.close()


def test_both_sources_side_by_side_in_one_database_with_one_pusher(db_url: str) -> None:
    from sync.service.dispatch import QueueDispatcher

    clock = FakeClock()
    sb, ep, ep_rt = _ep_world(db_url, clock)
    sent: list[tuple[str, str]] = []
    queue = QueueDispatcher(send=lambda store, ref: sent.append((store, ref)), clock=clock)
    ep_rt.close()
    now = clock.now()
    sb.shopwired.generate_orders(30, created_between=(now - timedelta(days=10), now))
    ep_rt = build_runtime(make_settings(db_url, **EP), clock=clock, dispatcher=queue,
                          elasticpath_transport=httpx.MockTransport(ep.handle),
                          wiredplus_transport=sb.wiredplus_transport())
    sw_rt = build_runtime(make_settings(db_url), clock=clock, dispatcher=queue,
                          shopwired_transport=sb.shopwired_transport(),
                          wiredplus_transport=sb.wiredplus_transport())
    # one "worker": WiredPlus credentials only, serves both stores
    pusher, ledger, wiredplus = build_pusher(
        make_settings(db_url, SHOPWIRED_API_KEY="", SHOPWIRED_API_SECRET=""), clock=clock,
        wiredplus_transport=sb.wiredplus_transport())
    try:
        ep_rt.poller.run_pass()
        sw_rt.poller.run_pass()
        for store, ref in sent:
            pusher.push(store, ref)
        stores = {s for s, _ in sent}
        assert stores == {"elasticpath", "shopwired"}
        for store in stores:
            counts = ledger.counts(store)
            assert counts.orders[OrderState.PENDING] == 0
            assert ledger.get_cursor(store, WATERMARK) is not None
        assert ledger.get_cursor("shopwired", WATERMARK) != ledger.get_cursor(
            "elasticpath", WATERMARK)
        n = sum(ledger.counts(s).orders[OrderState.SYNCED] for s in stores)
        assert len(sb.wiredplus.orders) == n
    finally:
        ep_rt.close()
        sw_rt.close()
        wiredplus.close()
        ledger.dispose()
