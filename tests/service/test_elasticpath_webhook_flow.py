"""Elastic Path webhooks in the loop: an order changes in the EP simulator, the integration's
delivery reaches the real receiver (uvicorn), and ``run_webhook_pass`` re-reads just that order
by id, so the change reaches WiredPlus without waiting for the ``updated_at`` poll."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import structlog

from sync.clock import FakeClock
from sync.ledger.models import OrderState
from sync.sandbox import Sandbox
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.webhooks import DeliveryFaults, ElasticPathWebhookEmitter, serve_asgi
from sync.service.runtime import Runtime, build_runtime
from sync.webhook import WebhookInbox, make_app

from .conftest import make_settings  # type: ignore[import-not-found]

SECRET = "ep-flow-secret"
EP = {
    "ORDERSYNC_SOURCE": "elasticpath",
    "ELASTICPATH_BASE_URL": "http://ep.sandbox",
    "ELASTICPATH_CLIENT_ID": "sandbox-client-id",
    "ELASTICPATH_CLIENT_SECRET": "sandbox-client-secret",
    "ELASTICPATH_WEBHOOK_SECRET": SECRET,
    # polling's refresh of open orders is off: only a webhook can bring the change early
    "ORDERSYNC_REFRESH_SHARE": "0",
    "ORDERSYNC_REFRESH_SHARE_WITH_WEBHOOKS": "0",
}


@dataclass
class World:
    sb: Sandbox
    ep: ElasticPathSimulator
    rt: Runtime
    clock: FakeClock
    url: str

    @property
    def store(self) -> str:
        return self.rt.settings.store

    def wp_events(self, oid: str) -> list[str]:
        wp = self.sb.wiredplus.order_by_ref(oid)
        return [e["event_type"] for e in self.sb.wiredplus.events_for_order(wp["id"])] if wp else []


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    clock = FakeClock()
    sb = Sandbox(seed=6, clock=clock)
    ep = ElasticPathSimulator(clock=clock, seed=6, enforce_rate_limit=False)
    now = clock.now()
    ep.generate_orders(40, created_between=(now - timedelta(days=20), now - timedelta(days=2)))
    rt = build_runtime(make_settings(db_url, **EP), clock=clock,
                       elasticpath_transport=httpx.MockTransport(ep.handle),
                       wiredplus_transport=sb.wiredplus_transport())
    secret = rt.settings.elasticpath_webhook_secret
    assert secret is not None and rt.settings.webhook_secret()[0] == "ELASTICPATH_WEBHOOK_SECRET"
    app = make_app(inbox=WebhookInbox(rt.ledger), secret=secret.get_secret_value(),
                   store=rt.settings.store, clock=clock, log=structlog.get_logger("test"),
                   source="elasticpath")
    try:
        rt.poller.run_pass()
        clock.advance(60)
        with serve_asgi(app) as server:
            yield World(sb, ep, rt, clock, server.url + "/webhooks/elasticpath")
    finally:
        rt.close()


def _unshipped(w: World) -> str:
    rows = [r for r in w.rt.ledger.all_orders(w.store)
            if r.state == OrderState.SYNCED and r.order_status in ("processing",
                                                                   "awaiting-payment")]
    assert rows
    return sorted(r.source_order_id for r in rows)[0]


def test_a_fulfilment_webhook_brings_the_dispatch_email_in_the_next_webhook_pass(
    world: World,
) -> None:
    w = world
    oid = _unshipped(w)
    assert w.wp_events(oid) == []
    emitter = ElasticPathWebhookEmitter(w.ep, w.url, SECRET, w.clock, auto=False,
                                        faults=DeliveryFaults(duplicate=1.0))  # EP retries too
    with emitter:
        w.ep.set_payment(oid, "paid")
        w.ep.set_shipping(oid, "fulfilled")
    # without the deliveries, a webhook pass has nothing to do
    assert w.rt.poller.run_webhook_pass().webhook_calls == 0
    assert w.sb.wiredplus.order_by_ref(oid)["order_status"] != "shipped"
    emitter.flush()
    assert [(d.event.topic if d.event else None, d.status, d.duplicate)
            for d in emitter.sent] == [
        ("order.paid", 200, False), ("order.paid", 200, True),
        ("order.fulfilled", 200, False), ("order.fulfilled", 200, True)]
    w.ep.reset_counters()
    report = w.rt.poller.run_webhook_pass()
    assert report.webhook_calls == 1 and report.webhooks_healthy
    # just that order, by id (a token request aside): no list scan
    assert {k: n for k, n in w.ep.calls.items() if not k.startswith("POST /oauth")} == {
        "GET /v2/orders/{id}": 1}
    wp = w.sb.wiredplus.order_by_ref(oid)
    assert wp is not None and wp["order_status"] == "shipped"
    assert w.wp_events(oid).count("dispatched") == 1
    inbox = WebhookInbox(w.rt.ledger)
    assert inbox.pending_refreshes(w.store) == []
    # a late retry of a delivery already handled changes nothing
    late = emitter.sent[0]
    assert emitter.send_raw(late.body, topic="order.paid").status == 200
    assert inbox.pending_refreshes(w.store) == []
    # the regular pass later finds the same change and sends nothing twice
    w.clock.advance(600)
    w.rt.poller.run_pass()
    assert w.wp_events(oid).count("dispatched") == 1
    assert all(n == 1 for n in w.sb.wiredplus.event_creations.values())


def test_a_cancellation_webhook_for_one_order_leaves_the_others_alone(world: World) -> None:
    w = world
    oid = _unshipped(w)
    before = {r.source_order_id: r.order_status for r in w.rt.ledger.all_orders(w.store)}
    with ElasticPathWebhookEmitter(w.ep, w.url, SECRET, w.clock, auto=False) as emitter:
        w.ep.set_status(oid, "cancelled")
        emitter.flush()
    assert emitter.statuses() == [200]
    w.ep.reset_counters()
    report = w.rt.poller.run_webhook_pass()
    assert report.webhook_calls == 1 and report.webhook.seen == 1
    after = {r.source_order_id: r.order_status for r in w.rt.ledger.all_orders(w.store)}
    assert after[oid] == "cancelled"
    assert {k: v for k, v in after.items() if k != oid} == {
        k: v for k, v in before.items() if k != oid}
    assert w.wp_events(oid) == ["cancelled"]


def test_a_forged_delivery_asks_for_nothing(world: World) -> None:
    w = world
    oid = _unshipped(w)
    with ElasticPathWebhookEmitter(w.ep, w.url, "not-the-secret", w.clock,
                                   auto=False) as emitter:
        w.ep.set_status(oid, "cancelled")
        emitter.flush()
    assert emitter.statuses() == [401]
    assert WebhookInbox(w.rt.ledger).pending_refreshes(w.store) == []
    assert w.rt.poller.run_webhook_pass().webhook_calls == 0
