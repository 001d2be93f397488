"""Installing never brings last year's orders into WiredPlus, whichever path finds them.

Only orders *created* on or after the start date (``ORDERSYNC_START_DATE``, else 30 days before
the first pass — fixed then, so it does not slide) are imported. An old order touched today is
listed by Elastic Path's ``updated_at`` scan and may be named by a ShopWired webhook; in
WiredPlus it would look like a new order, and a "new order" automation could mail its customer.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from sync.clock import FakeClock
from sync.sandbox import Sandbox
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.service.poller import SCOPE_START
from sync.service.runtime import build_runtime

from .conftest import Harness, make_settings  # type: ignore[import-not-found]

EP = {
    "ORDERSYNC_SOURCE": "elasticpath",
    "ELASTICPATH_BASE_URL": "http://ep.sandbox",
    "ELASTICPATH_CLIENT_ID": "sandbox-client-id",
    "ELASTICPATH_CLIENT_SECRET": "sandbox-client-secret",
}


def test_an_old_elasticpath_order_changed_today_stays_out_of_wiredplus(db_url: str) -> None:
    clock = FakeClock()
    sb = Sandbox(seed=4, clock=clock)
    ep = ElasticPathSimulator(clock=clock, seed=4, enforce_rate_limit=False)
    now = clock.now()
    old = ep.generate_orders(5, created_between=(now - timedelta(days=90),
                                                 now - timedelta(days=60)))
    recent = ep.generate_orders(5, created_between=(now - timedelta(days=9),
                                                    now - timedelta(days=2)))
    for oid in old:
        ep.set_shipping(oid, "fulfilled")  # today: updated_at moves into the scan's window
    clock.advance(120)
    rt = build_runtime(make_settings(db_url, **EP), clock=clock,
                       elasticpath_transport=httpx.MockTransport(ep.handle),
                       wiredplus_transport=sb.wiredplus_transport())
    try:
        report = rt.poller.run_pass()
        assert report.new.out_of_scope == len(old)
        in_ledger = {r.source_order_id for r in rt.ledger.all_orders("elasticpath")}
        assert in_ledger == set(recent)
        assert {o["api_reference_id"] for o in sb.wiredplus.orders.values()} == set(recent)
        assert not sb.wiredplus.events
        clock.advance(3600)  # a later pass (the overlap may list them again): still nothing
        rt.poller.run_pass()
        assert {r.source_order_id for r in rt.ledger.all_orders("elasticpath")} == set(recent)
    finally:
        rt.close()


def test_a_webhook_for_an_order_from_before_the_start_date_imports_nothing(
    harness: Harness,
) -> None:
    harness.run()
    start = harness.rt.poller.scope_start(harness.clock.now())
    old = harness.sb.shopwired.created_ids(None, int(start.timestamp()) - 1)
    assert old, "the harness has history before the start date"
    inbox = harness.rt.poller.inbox
    assert inbox is not None
    now = harness.clock.now()
    inbox.record(harness.store, "d-1", "order.status_changed", str(old[0]), now, now)
    report = harness.rt.poller.run_webhook_pass()
    assert report.webhook.out_of_scope == 1
    assert str(old[0]) not in harness.orders()
    assert harness.sb.wiredplus.order_by_ref(str(old[0])) is None


def test_the_default_start_is_fixed_at_the_first_pass_and_backfill_moves_it_back(
    harness: Harness,
) -> None:
    first = harness.clock.now()
    harness.run()
    poller = harness.rt.poller
    fixed = poller.scope_start(first)
    assert fixed == harness.rt.settings.effective_start(first)
    harness.clock.advance(10 * 86400)  # the 30-day default would have slid 10 days
    assert poller.scope_start(harness.clock.now()) == fixed
    since = fixed - timedelta(days=100)
    poller.backfill(since, fixed)
    assert poller.scope_start(harness.clock.now()) == since
    assert harness.rt.ledger.get_cursor(harness.store, SCOPE_START) == since.isoformat()


def test_a_large_first_import_refreshes_the_database_statistics_as_it_grows(
    db_url: str, monkeypatch: Any
) -> None:
    """1,000 new orders, then each doubling: the planner keeps up with a fresh ledger."""
    clock = FakeClock()
    sb = Sandbox(seed=6, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(2_100, created_between=(now - timedelta(days=20),
                                                         now - timedelta(hours=1)))
    rt = build_runtime(make_settings(db_url), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    calls: list[int] = []
    real = rt.ledger.refresh_statistics
    monkeypatch.setattr(rt.ledger, "refresh_statistics",
                        lambda: (calls.append(rt.ledger.new_orders), real())[1])
    try:
        rt.poller.run_pass()
    finally:
        rt.close()
    assert len(calls) == 2 and 1_000 <= calls[0] < 1_100 and 2_000 <= calls[1] < 2_100
