"""ElasticPathWebhookEmitter (Elastic Path's webhook integration in the sandbox), alone and
against the real receiver under uvicorn."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.clock import FakeClock
from sync.ledger.store import Ledger
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.webhooks import (
    EP_MUTATORS,
    DeliveryFaults,
    ElasticPathWebhookEmitter,
    serve_asgi,
)
from sync.webhook import WebhookInbox, make_app

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "sandbox-ep-secret"
URL = "https://receiver.test/webhooks/elasticpath"
SAMPLE = Path(__file__).parents[1] / "fixtures" / "epdev-webhook-order-paid-payload.json"


class Recorder:
    """An httpx transport that answers 200 and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self.lock:
            self.requests.append(request)
        return httpx.Response(200, json={"result": "accepted"})

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def topics(self) -> list[str]:
        return [p["triggered_by"] for p in self.payloads()]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> ElasticPathSimulator:
    ep = ElasticPathSimulator(clock=clock, seed=5, enforce_rate_limit=False)
    ep.generate_orders(5, created_between=(T0 - timedelta(days=3), T0 - timedelta(hours=1)))
    return ep


def emitter(sim: ElasticPathSimulator, clock: FakeClock, rec: Recorder,
            **kw: Any) -> ElasticPathWebhookEmitter:
    kw.setdefault("auto", False)
    return ElasticPathWebhookEmitter(sim, URL, SECRET, clock, transport=httpx.MockTransport(rec),
                                     **kw)


def test_each_change_becomes_one_delivery_with_its_trigger(sim: ElasticPathSimulator,
                                                           clock: FakeClock):
    rec = Recorder()
    oid = sim.order_ids()[0]
    with emitter(sim, clock, rec) as em:
        sim.set_payment(oid, "authorized")
        sim.set_payment(oid, "paid")
        sim.set_shipping(oid, "fulfilled")
        sim.set_status(oid, "complete")
        sim.set_payment(oid, "refunded")
        sim.set_status(oid, "cancelled")
        sim.set_shipping(oid, "unfulfilled")
        (new,) = sim.generate_orders(1)
        order = sim.get_order(new)
        assert order is not None
        sim.add_order(order)  # same id again: an update
        em.flush()
    assert rec.topics() == [
        "order.authorized", "order.paid", "order.fulfilled", "order.updated", "order.refunded",
        "order.cancelled", "order.updated", "order.created", "order.updated"]
    assert [e.order_id for e in em.emitted] == [oid] * 7 + [new] * 2
    assert em.statuses() == [200] * 9


def test_delivery_shape_and_headers_follow_the_reference(sim: ElasticPathSimulator,
                                                         clock: FakeClock):
    rec = Recorder()
    oid = sim.order_ids()[1]
    with emitter(sim, clock, rec) as em:
        clock.advance(60)
        sim.set_shipping(oid, "fulfilled")
        em.flush()
    (req,) = rec.requests
    assert req.headers["x-moltin-secret-key"] == SECRET
    assert req.headers["x-moltin-integration-trigger"] == "order.fulfilled"
    assert req.headers["content-type"] == "application/json"
    body = json.loads(req.content)
    assert set(body) == set(json.loads(SAMPLE.read_text()))
    assert body["triggered_by"] == "order.fulfilled" and body["attempt"] == 1
    assert body["integration"]["integration_type"] == "webhook"
    assert body["configuration"] == {"secret_key": SECRET, "url": URL}
    data = body["payload"]["data"]
    assert data == sim.get_order(oid) and data["shipping"] == "fulfilled"
    assert data["meta"]["timestamps"]["updated_at"] == sim.render(T0 + timedelta(seconds=60))
    assert body["payload"]["included"]["items"] == sim.items[oid]
    assert json.loads(body["resources"]) == body["payload"]  # the deprecated string copy


def test_ids_are_uuids_deterministic_per_seed(sim: ElasticPathSimulator, clock: FakeClock):
    ids = []
    for _ in range(2):
        em = emitter(sim, clock, Recorder(), seed=9)
        ids.append([em.emit("order.updated", o).event_id for o in sim.order_ids()])
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0])
    assert all(len(str(i)) == 36 for i in ids[0])


def test_an_order_that_is_gone_is_type_and_id_only(sim: ElasticPathSimulator,
                                                   clock: FakeClock):
    rec = Recorder()
    em = emitter(sim, clock, rec)
    em.emit("order.updated", "no-such-order")
    em.flush()
    assert rec.payloads()[0]["payload"] == {"data": {"type": "order", "id": "no-such-order"},
                                            "included": {}}


def test_faults_duplicate_is_an_ep_retry_and_bad_secret_is_a_wrong_header(
    sim: ElasticPathSimulator, clock: FakeClock
):
    rec = Recorder()
    oid = sim.order_ids()[2]
    em = emitter(sim, clock, rec, faults=DeliveryFaults(duplicate=1.0))
    with em:
        sim.set_status(oid, "cancelled")
        em.flush()
    first, retry = rec.payloads()
    assert first["id"] == retry["id"] and (first["attempt"], retry["attempt"]) == (1, 2)
    assert [d.duplicate for d in em.sent] == [False, True]
    rec2 = Recorder()
    em2 = emitter(sim, clock, rec2, faults=DeliveryFaults(bad_signature=1.0))
    with em2:
        sim.set_status(oid, "complete")
        em2.flush()
    assert rec2.requests[0].headers["x-moltin-secret-key"] != SECRET
    assert em2.sent[0].signature_ok is False


def test_detach_restores_the_simulator(sim: ElasticPathSimulator, clock: FakeClock):
    before = {name: getattr(sim, name) for name in EP_MUTATORS}
    rec = Recorder()
    em = emitter(sim, clock, rec).attach()
    assert all(name in sim.__dict__ for name in EP_MUTATORS)
    em.detach()
    assert not any(name in sim.__dict__ for name in EP_MUTATORS)
    assert {name: getattr(sim, name) for name in EP_MUTATORS} == before
    sim.set_status(sim.order_ids()[0], "cancelled")
    assert em.emitted == [] and rec.requests == []


def test_send_raw(sim: ElasticPathSimulator, clock: FakeClock):
    rec = Recorder()
    em = emitter(sim, clock, rec)
    em.send_raw(b"{}", secret=None, topic="order.paid")
    em.send_raw(b"{}", secret="bad")
    em.send_raw(b"{}")
    h = [r.headers for r in rec.requests]
    assert "x-moltin-secret-key" not in h[0]
    assert h[0]["x-moltin-integration-trigger"] == "order.paid"
    assert h[1]["x-moltin-secret-key"] != SECRET and h[2]["x-moltin-secret-key"] == SECRET
    assert [d.signature_ok for d in em.sent] == [False, False, True]


# ------------------------------------------------------------------ against the receiver


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.create_schema()
    yield led
    led.dispose()


def test_the_receiver_under_uvicorn_accepts_dedupes_and_rejects(
    sim: ElasticPathSimulator, clock: FakeClock, ledger: Ledger
):
    import structlog

    inbox = WebhookInbox(ledger)
    app = make_app(inbox=inbox, secret=SECRET, store="elasticpath", clock=clock,
                   log=structlog.get_logger("test"), source="elasticpath")
    a, b = sim.order_ids()[:2]
    with serve_asgi(app) as server:
        url = server.url + "/webhooks/elasticpath"
        with ElasticPathWebhookEmitter(sim, url, SECRET, clock,
                                       faults=DeliveryFaults(duplicate=1.0)) as em:
            sim.set_payment(a, "paid")
            sim.set_shipping(a, "fulfilled")
            sim.set_status(b, "cancelled")
            em.flush()
        answers = [json.loads(d.response)["result"] for d in em.sent]
        assert answers == ["accepted", "duplicate"] * 3
        forged = ElasticPathWebhookEmitter(sim, url, "guessed", clock, auto=False)
        forged.emit("order.updated", a)
        forged.flush()
        assert forged.statuses() == [401]
    assert sorted(p.source_order_id for p in inbox.pending_refreshes("elasticpath")) == sorted(
        [a, b])
    stats = inbox.stats("elasticpath", since=T0 - timedelta(hours=1))
    assert stats.by_topic == {"order.paid": 1, "order.fulfilled": 1, "order.cancelled": 1}
