"""WebhookEmitter (ShopWired's side of webhooks) and the receiver end to end under uvicorn."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from sync.clock import FakeClock
from sync.ledger.store import Ledger
from sync.sandbox.shopwired import ShopWiredSimulator
from sync.sandbox.webhooks import (
    DeliveryFaults,
    WebhookEmitter,
    serve_asgi,
    shopwired_signature,
)
from sync.webhook import WebhookInbox, make_app

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "sandbox-webhook-secret"
URL = "https://receiver.test/webhooks/shopwired"


class Recorder:
    """An httpx transport that answers 200 and keeps every request."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self.lock:
            self.requests.append(request)
        return httpx.Response(self.status, json={"ok": True})

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def topics(self) -> list[str]:
        return [p["event"]["topic"] for p in self.payloads()]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> ShopWiredSimulator:
    return ShopWiredSimulator(clock=clock, seed=3, enforce_rate_limit=False)


def emitter(sim: ShopWiredSimulator, clock: FakeClock, rec: Recorder, **kw: Any) -> WebhookEmitter:
    kw.setdefault("auto", False)
    return WebhookEmitter(sim, URL, SECRET, clock, transport=httpx.MockTransport(rec),
                          first_event_id=1, **kw)


# ------------------------------------------------------------------ what is sent


def test_every_mutator_becomes_one_signed_event(sim: ShopWiredSimulator, clock: FakeClock):
    rec = Recorder()
    with emitter(sim, clock, rec) as em:
        a, b, c = sim.generate_orders(3)
        sim.set_status(a, 1382, tracking_url="https://track/1")
        refund = sim.add_refund(b, "4.50", "damaged")
        sim.archive(c)
        order = sim.get_order(c)
        assert order is not None
        sim.add_order(order)  # same id again: an update
        assert sim.delete_order(a) and not sim.delete_order(a)  # only real deletions count
        em.flush()
    assert rec.topics() == ["order.finalized"] * 3 + [
        "order.status_changed", "order.refund.created", "order.updated", "order.updated",
        "order.deleted"]
    for req in rec.requests:
        assert req.method == "POST" and str(req.url) == URL
        assert req.headers["content-type"] == "application/json"
        expected = hmac.new(SECRET.encode(), req.content, hashlib.sha256).hexdigest()
        assert req.headers["x-shopwired-signature"] == expected
    p = rec.payloads()
    assert [x["event"]["id"] for x in p] == list(range(1, 9))
    for x in p:
        assert set(x) == {"timestamp", "event"}
        assert set(x["event"]) == {"id", "businessId", "createdAt", "topic", "subjectId",
                                   "subjectType", "data"}
        assert parsedate_to_datetime(x["event"]["createdAt"]) == T0
        assert parsedate_to_datetime(x["timestamp"]) == T0
    assert p[0]["event"]["subjectId"] == a and p[0]["event"]["data"]["object"]["id"] == a
    assert p[3]["event"]["data"] == {
        "newStatus": {"id": 1382, "name": "Shipped", "type": "shipped", "sortOrder": 6}}
    ev = p[4]["event"]
    assert (ev["subjectType"], ev["subjectId"]) == ("order_refund", refund["id"])
    assert ev["data"] == {"id": refund["id"], "orderId": b, "createdAt": refund["createdAt"],
                          "amount": 4.5, "description": "damaged"}
    assert p[5]["event"]["data"]["object"]["archived"] is True
    assert p[7]["event"]["data"]["object"]["id"] == a  # the order as it was
    assert [d.status for d in em.sent] == [200] * 8
    assert all(d.signature_ok and not d.duplicate for d in em.sent)


def test_http_mutations_through_the_simulator_are_observed(sim: ShopWiredSimulator,
                                                           clock: FakeClock):
    rec = Recorder()
    (oid,) = sim.generate_orders(1)
    api = httpx.Client(transport=httpx.MockTransport(sim.handle), auth=("sandbox-key",
                                                                         "sandbox-secret"),
                       base_url="https://api.test/v1")
    with emitter(sim, clock, rec) as em:
        assert api.post(f"/orders/{oid}/status", json={"status": 1381}).status_code == 200
        assert api.delete(f"/orders/{oid}").status_code == 204
        em.flush()
    assert rec.topics() == ["order.status_changed", "order.deleted"]


def test_detach_restores_the_simulator(sim: ShopWiredSimulator, clock: FakeClock):
    rec = Recorder()
    em = emitter(sim, clock, rec).attach()
    assert em.attached and "set_status" in vars(sim)
    em.detach()
    assert not em.attached
    assert not {"add_order", "archive", "set_status", "add_refund", "delete_order"} & set(
        vars(sim))
    sim.generate_orders(2)
    assert em.emitted == [] and rec.requests == []
    em.detach()  # idempotent


def test_detach_refuses_to_drop_a_later_wrapper(sim: ShopWiredSimulator, clock: FakeClock):
    em = emitter(sim, clock, Recorder()).attach()
    inner = sim.set_status
    sim.set_status = lambda *a, **kw: inner(*a, **kw)  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="re-wrapped"):
        em.detach()
    sim.set_status = inner  # type: ignore[method-assign]
    em.detach()


def test_faults_duplicate_bad_signature_backdate(sim: ShopWiredSimulator, clock: FakeClock):
    rec = Recorder()
    faults = DeliveryFaults(duplicate=1.0, bad_signature=1.0, backdate=timedelta(hours=30))
    with emitter(sim, clock, rec, faults=faults) as em:
        sim.generate_orders(1)
        em.flush()
    assert len(rec.requests) == 2 and rec.requests[0].content == rec.requests[1].content
    assert [d.duplicate for d in em.sent] == [False, True]
    for req in rec.requests:
        assert req.headers["x-shopwired-signature"] != shopwired_signature(SECRET, req.content)
    assert not any(d.signature_ok for d in em.sent)
    created = parsedate_to_datetime(rec.payloads()[0]["event"]["createdAt"])
    assert created == T0 - timedelta(hours=30)


def test_reorder_shuffles_a_batch_deterministically(sim: ShopWiredSimulator, clock: FakeClock):
    orders: list[list[int]] = []
    for _ in range(2):
        rec = Recorder()
        local = ShopWiredSimulator(clock=clock, seed=3, enforce_rate_limit=False)
        with emitter(local, clock, rec, faults=DeliveryFaults(reorder=True, seed=11)) as em:
            local.generate_orders(8)
            em.flush()
        orders.append([p["event"]["id"] for p in rec.payloads()])
    assert sorted(orders[0]) == list(range(1, 9))
    assert orders[0] != list(range(1, 9))
    assert orders[0] == orders[1]


def test_delay_waits_real_time(sim: ShopWiredSimulator, clock: FakeClock):
    rec = Recorder()
    with emitter(sim, clock, rec, faults=DeliveryFaults(delay=0.15)) as em:
        sim.generate_orders(2)
        started = time.perf_counter()
        em.flush()
        assert time.perf_counter() - started >= 0.3


def test_auto_mode_sends_from_a_background_thread(sim: ShopWiredSimulator, clock: FakeClock):
    rec = Recorder()
    with emitter(sim, clock, rec, auto=True) as em:
        sim.generate_orders(5)
        em.flush(timeout=10)
        assert len(rec.requests) == 5 and em.pending == []
        assert threading.current_thread().name not in {"webhook-emitter"}
    assert em.statuses() == [200] * 5


def test_manual_mode_holds_events_until_flush(sim: ShopWiredSimulator, clock: FakeClock):
    rec = Recorder()
    em = emitter(sim, clock, rec).attach()
    sim.generate_orders(3)
    assert len(em.pending) == 3 and rec.requests == []
    em.flush()
    assert em.pending == [] and len(rec.requests) == 3
    em.detach()


def test_transport_errors_are_recorded(sim: ShopWiredSimulator, clock: FakeClock):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    em = WebhookEmitter(sim, URL, SECRET, clock, auto=False,
                        transport=httpx.MockTransport(down))
    with em:
        sim.generate_orders(1)
        em.flush()
    (d,) = em.sent
    assert d.status is None and d.error is not None and "ConnectError" in d.error


# ------------------------------------------------------------------ end to end under uvicorn


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    led = Ledger(db_url)
    led.create_schema()
    yield led
    led.dispose()


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **kw: Any) -> None:
            with self.lock:
                self.lines.append((level, event, kw))
        return log


def test_end_to_end_real_http(ledger: Ledger, sim: ShopWiredSimulator, clock: FakeClock):
    inbox = WebhookInbox(ledger)
    log = _Log()
    app = make_app(inbox=inbox, secret=SECRET, store="e2e", clock=clock, log=log)
    with serve_asgi(app) as server:
        url = f"{server.url}/webhooks/shopwired"
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}

        # 1. the shop goes about its business; ShopWired delivers in order, in real time
        with WebhookEmitter(sim, url, SECRET, clock) as em:
            handshake = em.verify("token-123")
            new = sim.generate_orders(6)
            sim.set_status(new[0], 1381)
            sim.set_status(new[0], 1382, tracking_url="https://track/x")
            sim.add_refund(new[1], 3, "goodwill")
            sim.archive(new[2])
            sim.delete_order(new[3])
            em.flush(timeout=30)
        assert handshake.status == 200
        assert json.loads(handshake.response) == {
            "verificationToken": hmac.new(SECRET.encode(), b"token-123",
                                          hashlib.sha256).hexdigest()}
        first = em.sent[1:]
        assert len(first) == 11
        assert all(d.status == 200 for d in first), [d.status for d in first]
        assert max(d.elapsed for d in em.sent) < 5.0
        pending = {p.source_order_id for p in inbox.pending_refreshes("e2e", 100)}
        assert pending == {str(o) for o in new}
        assert inbox.deleted_orders("e2e", [str(o) for o in new]) == {str(new[3])}
        assert inbox.stats("e2e", since=T0 - timedelta(hours=1)).received == 11

        # 2. a bad day: every event twice, a batch out of order, a slow sender
        inbox.done("e2e", [str(o) for o in new])
        faults = DeliveryFaults(duplicate=1.0, reorder=True, delay=0.01, seed=5)
        with WebhookEmitter(sim, url, SECRET, clock, faults=faults, auto=False,
                            first_event_id=10_000) as em2:
            for _ in range(3):
                sim.set_status(new[4], 1384)
                sim.add_refund(new[4], 1, "partial")
            sim.set_status(new[5], 1383)
            em2.flush()
        assert len(em2.sent) == 14 and all(d.status == 200 for d in em2.sent)
        assert max(d.elapsed for d in em2.sent) < 5.0
        results = [json.loads(d.response)["result"] for d in em2.sent]
        assert results.count("accepted") == 7 and results.count("duplicate") == 7
        assert sorted(p.source_order_id for p in inbox.pending_refreshes("e2e", 100)) == sorted(
            [str(new[4]), str(new[5])])

        # 3. forged and stale deliveries change nothing
        inbox.done("e2e", [str(new[4]), str(new[5])])
        forged = WebhookEmitter(sim, url, SECRET, clock, auto=False, first_event_id=20_000,
                                faults=DeliveryFaults(bad_signature=1.0))
        with forged:
            sim.set_status(new[1], 1383)
            forged.flush()
        stale = WebhookEmitter(sim, url, SECRET, clock, auto=False, first_event_id=30_000,
                               faults=DeliveryFaults(backdate=timedelta(days=2)))
        with stale:
            sim.set_status(new[2], 1383)
            stale.flush()
        assert [d.status for d in forged.sent] == [401]
        assert [d.status for d in stale.sent] == [200]
        assert json.loads(stale.sent[0].response) == {"result": "ignored"}
        assert inbox.pending_refreshes("e2e", 100) == []
        assert not any(SECRET in repr(kw) for _, _, kw in log.lines)
    assert not server.alive  # uvicorn shut down cleanly
    events = [e for _, e, _ in log.lines]
    assert "webhook.receiver.start" in events and "webhook.receiver.stop" in events
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=1)


def test_serve_asgi_reports_a_failed_start():
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "nope"})

    with pytest.raises(RuntimeError, match="did not start"):
        serve_asgi(broken, startup_timeout=5)
