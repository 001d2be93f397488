"""The Elastic Path route of the webhook receiver, driven in-process (no server): the shared
secret header, topics, ids from the envelope or the deprecated ``resources`` string,
duplicates across retry attempts, the replay window, garbage, sizes and database trouble."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import sync.webhook.app as receiver
from sync.clock import FakeClock
from sync.ledger.models import RefreshRequestRow, WebhookRow
from sync.ledger.store import Ledger
from sync.webhook import (
    ELASTICPATH_ORDER_TOPICS,
    ELASTICPATH_WEBHOOK_PATH,
    WebhookApp,
    WebhookInbox,
    make_app,
)

# verbatim copy of reference fixtures/elasticpath/epdev-webhook-order-paid-payload.json
FIXTURE = Path(__file__).parents[1] / "fixtures" / "epdev-webhook-order-paid-payload.json"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "ep-integration-secret-4b1d"
STORE = "elasticpath"
PATH = "/webhooks/elasticpath"
ORDER = "0f7d3b52-6c1e-4c59-9a4e-2a8f1e5b7c01"


# ------------------------------------------------------------------ a tiny ASGI client


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def acall(app: Any, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Resp:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("198.51.100.7", 41000), "server": ("testserver", 80),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in (headers or {}).items()],
    }
    parts = [body]

    async def receive() -> dict[str, Any]:
        if parts:
            return {"type": "http.request", "body": parts.pop(), "more_body": False}
        await asyncio.sleep(3600)  # pragma: no cover
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Resp(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, out)


def call(app: Any, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> Resp:
    return asyncio.run(acall(app, method, path, body, headers))


class RecLog:
    """A structlog-like logger that keeps every call."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **kw: Any) -> None:
            self.lines.append((level, event, kw))
        return log

    def find(self, event: str) -> list[tuple[str, dict[str, Any]]]:
        return [(lvl, kw) for lvl, ev, kw in self.lines if ev == event]


# ------------------------------------------------------------------ fixtures and builders


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.create_schema()
    yield led
    led.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def log() -> RecLog:
    return RecLog()


@pytest.fixture
def inbox(ledger: Ledger) -> WebhookInbox:
    return WebhookInbox(ledger)


@pytest.fixture
def app(inbox: WebhookInbox, clock: FakeClock, log: RecLog) -> WebhookApp:
    return make_app(inbox=inbox, secret=SECRET, store=STORE, clock=clock, log=log,
                    max_body=8192, source="elasticpath")


def ep_order(oid: str = ORDER, updated: datetime | None = NOW) -> dict[str, Any]:
    order: dict[str, Any] = {
        "type": "order", "id": oid, "status": "complete", "payment": "paid",
        "shipping": "fulfilled",
        "customer": {"name": "Jo Bloggs", "email": "jo.bloggs@example.co.uk"},
        "meta": {"timestamps": {"created_at": "2026-01-14T09:00:00.000Z"}},
    }
    if updated is not None:
        order["meta"]["timestamps"]["updated_at"] = updated.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return order


def envelope(topic: Any = "order.fulfilled", eid: Any = "5b0e9f3a-1d7c-4a51-8c2e-9e1f0a6d3b44",
             order: dict[str, Any] | None = None, attempt: int = 1) -> dict[str, Any]:
    data = order if order is not None else ep_order()
    env: dict[str, Any] = {
        "triggered_by": topic, "attempt": attempt,
        "integration": {"id": "af7bbcc7-f77f-4a8f-abdb-4f039c5c9d81",
                        "integration_type": "webhook", "name": "ordersync",
                        "description": "orders"},
        "resources": json.dumps({"data": data, "included": {"items": []}}),
        "payload": {"data": data, "included": {"items": []}},
        "configuration": {"secret_key": SECRET, "url": "https://sync.example/webhooks/ep"},
    }
    if eid is not None:
        env["id"] = eid
    if topic is None:
        del env["triggered_by"]
    return env


def raw(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def post(app: Any, body: bytes | dict[str, Any], secret: str | None = SECRET,
         **headers: str) -> Resp:
    data = body if isinstance(body, bytes) else raw(body)
    h = {"content-type": "application/json", "content-length": str(len(data)), **headers}
    if secret is not None:
        h["x-moltin-secret-key"] = secret
    return call(app, "POST", PATH, data, h)


def webhooks(ledger: Ledger) -> list[WebhookRow]:
    with ledger.session() as s:
        return list(s.scalars(select(WebhookRow).order_by(WebhookRow.id)))


def refreshes(ledger: Ledger) -> list[RefreshRequestRow]:
    with ledger.session() as s:
        return list(s.scalars(select(RefreshRequestRow).order_by(RefreshRequestRow.id)))


# ------------------------------------------------------------------ the documented payload


def test_the_documented_order_paid_payload_is_accepted(inbox: WebhookInbox, ledger: Ledger,
                                                       log: RecLog):
    body = FIXTURE.read_bytes()
    clock = FakeClock(datetime(2019, 7, 4, 11, 30, tzinfo=UTC))  # the sample's own day
    app = make_app(inbox=inbox, secret="secret_squirrel", store=STORE, clock=clock, log=log,
                   source="elasticpath")
    r = post(app, body, secret="secret_squirrel", **{"x-moltin-integration-trigger": "order.paid"})
    assert r.status == 200 and r.json() == {"result": "accepted"}
    (row,) = webhooks(ledger)
    assert (row.store, row.delivery_id, row.topic, row.source_order_id) == (
        STORE, "21a361c9-b117-4d16-be2d-5ed2dbdaa95b", "order.paid",
        "1d67160d-dacb-43ed-80ef-c3c4e7ddf764")
    assert row.event_created_at == datetime(2019, 7, 4, 11, 12, 23, tzinfo=UTC)
    (req,) = refreshes(ledger)
    assert (req.source_order_id, req.reason) == ("1d67160d-dacb-43ed-80ef-c3c4e7ddf764",
                                                 "webhook:order.paid")
    text = repr(log.lines)
    assert "secret_squirrel" not in text and "ron.swanson" not in text


def test_the_documented_payload_is_stale_on_any_later_day(app: WebhookApp, ledger: Ledger):
    """The sample's order was last updated in 2019: far outside the replay window."""
    assert post(app, FIXTURE.read_bytes()).json() == {"result": "ignored"}
    assert webhooks(ledger) == []


# ------------------------------------------------------------------ the secret


def test_missing_or_blank_secret_is_401_and_nothing_is_recorded(app: WebhookApp,
                                                                ledger: Ledger, log: RecLog):
    assert post(app, envelope(), secret=None).status == 401
    r = post(app, envelope(), secret="   ")
    assert r.status == 401 and r.json() == {"error": "missing secret key"}
    assert webhooks(ledger) == [] and refreshes(ledger) == []
    reasons = [(lvl, kw["reason"]) for lvl, kw in log.find("webhook.rejected")]
    assert reasons == [("warning", "missing X-MOLTIN-SECRET-KEY header")] * 2
    assert app.outcomes["missing_secret"] == 2


def test_wrong_secret_is_401_and_logged_without_body_or_secrets(app: WebhookApp,
                                                                ledger: Ledger, log: RecLog):
    for wrong in ("nope", SECRET + "x", SECRET[:-1], SECRET.upper(), "é" + SECRET):
        r = post(app, envelope(), secret=wrong)
        assert r.status == 401 and r.json() == {"error": "bad secret key"}
    assert webhooks(ledger) == [] and refreshes(ledger) == []
    lines = log.find("webhook.rejected")
    assert len(lines) == 5 and app.outcomes["bad_secret"] == 5
    assert all(lvl == "warning" and "does not match" in kw["reason"] for lvl, kw in lines)
    text = repr(log.lines)
    for leak in (SECRET, "nope", "jo.bloggs", ORDER, "secret_key"):
        assert leak not in text


def test_the_secret_is_compared_in_constant_time(app: WebhookApp, ledger: Ledger,
                                                 monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[Any, Any]] = []
    real = receiver.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(receiver.hmac, "compare_digest", spy)
    assert post(app, envelope(), secret="guess").status == 401
    assert post(app, envelope(), secret=f" {SECRET} ").status == 200
    assert calls == [(SECRET.encode(), b"guess"), (SECRET.encode(), SECRET.encode())]
    # the decision is compare_digest's: were it to say yes, a wrong secret would pass
    monkeypatch.setattr(receiver.hmac, "compare_digest", lambda a, b: True)
    assert post(app, envelope(eid="other"), secret="guess").status == 200


def test_the_body_secret_key_is_not_a_credential(app: WebhookApp, ledger: Ledger):
    """`configuration.secret_key` in the body proves nothing: only the header counts."""
    assert post(app, envelope(), secret=None).status == 401
    forged = envelope()
    forged["configuration"]["secret_key"] = "whatever"
    assert post(app, forged).json() == {"result": "accepted"}


def test_surrounding_whitespace_of_the_configured_secret_is_ignored(
    inbox: WebhookInbox, clock: FakeClock, log: RecLog
):
    app = make_app(inbox=inbox, secret=f"  {SECRET}\n", store=STORE, clock=clock, log=log,
                   source="elasticpath")
    assert post(app, envelope()).status == 200


def test_factory_rejects_a_blank_secret_or_an_unknown_source(inbox: WebhookInbox,
                                                             clock: FakeClock, log: RecLog):
    for secret in ("", "   "):
        with pytest.raises(ValueError, match="secret"):
            make_app(inbox=inbox, secret=secret, store=STORE, clock=clock, log=log,
                     source="elasticpath")
    with pytest.raises(ValueError, match="source"):
        make_app(inbox=inbox, secret=SECRET, store=STORE, clock=clock, log=log,
                 source="bigcommerce")  # type: ignore[arg-type]


# ------------------------------------------------------------------ topics


@pytest.mark.parametrize("topic", sorted(ELASTICPATH_ORDER_TOPICS))
def test_every_order_trigger_requests_a_refresh(app: WebhookApp, ledger: Ledger, topic: str):
    assert post(app, envelope(topic)).json() == {"result": "accepted"}
    assert [(r.source_order_id, r.reason) for r in refreshes(ledger)] == [
        (ORDER, f"webhook:{topic}")]


def test_the_order_triggers_are_the_documented_seven():
    assert {
        "order.created", "order.updated", "order.paid", "order.authorized", "order.fulfilled",
        "order.cancelled", "order.refunded"} == ELASTICPATH_ORDER_TOPICS


@pytest.mark.parametrize("topic", ["product.updated", "customer.created", "order.finalized",
                                   "order.status_changed", "order.deleted", "", 42])
def test_other_triggers_are_200_and_ignored(app: WebhookApp, ledger: Ledger, log: RecLog,
                                            topic: Any):
    r = post(app, envelope(topic))
    assert r.status == 200 and r.json() == {"result": "ignored"}
    assert webhooks(ledger) == [] and refreshes(ledger) == []
    (level, kw), = log.find("webhook.ignored")
    assert level == "info" and kw["reason"] == "topic not handled"
    assert app.outcomes["unknown_topic"] == 1


def test_topic_falls_back_to_the_trigger_header(app: WebhookApp, ledger: Ledger):
    body = envelope(topic=None)
    assert post(app, body).json() == {"result": "ignored"}  # no topic anywhere
    r = post(app, body, **{"x-moltin-integration-trigger": "order.fulfilled"})
    assert r.json() == {"result": "accepted"}
    assert [w.topic for w in webhooks(ledger)] == ["order.fulfilled"]
    # the body's triggered_by wins over the header
    other = envelope("order.cancelled", eid="e-2")
    post(app, other, **{"x-moltin-integration-trigger": "product.updated"})
    assert [w.topic for w in webhooks(ledger)] == ["order.fulfilled", "order.cancelled"]


# ------------------------------------------------------------------ duplicates


def test_a_retry_attempt_is_a_duplicate_without_a_second_refresh(
    app: WebhookApp, ledger: Ledger, inbox: WebhookInbox, clock: FakeClock
):
    assert post(app, envelope(attempt=1)).json() == {"result": "accepted"}
    inbox.done(STORE, [ORDER], now=NOW)  # the poller re-read the order
    clock.advance(600)  # EP retries later (it never saw our 2xx)
    r = post(app, envelope(attempt=2))
    assert r.status == 200 and r.json() == {"result": "duplicate"}
    assert post(app, envelope(attempt=1)).json() == {"result": "duplicate"}
    assert len(webhooks(ledger)) == 1 and refreshes(ledger) == []
    assert app.outcomes["duplicate"] == 2


def test_two_changes_of_one_order_are_two_deliveries_and_one_refresh(app: WebhookApp,
                                                                     ledger: Ledger):
    assert post(app, envelope("order.paid", eid="a")).json() == {"result": "accepted"}
    assert post(app, envelope("order.fulfilled", eid="b")).json() == {"result": "accepted"}
    assert [w.delivery_id for w in webhooks(ledger)] == ["a", "b"]
    assert [r.source_order_id for r in refreshes(ledger)] == [ORDER]


def test_without_an_id_the_delivery_is_identified_by_its_content(app: WebhookApp,
                                                                 ledger: Ledger):
    first = envelope(eid=None, attempt=1)
    assert post(app, first).json() == {"result": "accepted"}
    retry = envelope(eid=None, attempt=3)
    retry["configuration"]["url"] = "https://elsewhere.example/"  # not part of the identity
    assert post(app, retry).json() == {"result": "duplicate"}
    changed = envelope(eid=None, order=ep_order(updated=NOW - timedelta(minutes=1)))
    assert post(app, changed).json() == {"result": "accepted"}
    ids = [w.delivery_id for w in webhooks(ledger)]
    assert len(ids) == 2 and all(i.startswith("sha256:") and len(i) == 71 for i in ids)


def test_long_ids_are_hashed(app: WebhookApp, ledger: Ledger):
    assert post(app, envelope(eid="x" * 300)).status == 200
    (row,) = webhooks(ledger)
    assert row.delivery_id.startswith("sha256:") and len(row.delivery_id) <= 128


# ------------------------------------------------------------------ which order


def test_order_id_falls_back_to_the_deprecated_resources_string(app: WebhookApp,
                                                                ledger: Ledger):
    old = ep_order(oid="7c0d1a2b-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
                   updated=NOW - timedelta(minutes=2))
    body = envelope(eid="r-1", order=old)
    del body["payload"]
    assert post(app, body).json() == {"result": "accepted"}
    no_id = envelope(eid="r-2", order=old)
    no_id["payload"] = {"data": {"type": "order"}}  # payload without an id: resources decide
    assert post(app, no_id).json() == {"result": "accepted"}
    rows = webhooks(ledger)
    assert [w.source_order_id for w in rows] == [old["id"]] * 2
    assert rows[0].event_created_at == NOW - timedelta(minutes=2)
    assert [r.source_order_id for r in refreshes(ledger)] == [old["id"]]


def test_no_order_id_anywhere_is_recorded_without_a_refresh(app: WebhookApp, ledger: Ledger,
                                                            log: RecLog):
    bodies = []
    for n, resources in enumerate(["{not json", "[]", json.dumps({"data": {"id": True}})]):
        body = envelope(eid=f"n-{n}")
        body["payload"] = {"data": None}
        body["resources"] = resources
        bodies.append(body)
    for body in bodies:
        assert post(app, body).json() == {"result": "accepted"}
    assert len(webhooks(ledger)) == 3 and refreshes(ledger) == []
    assert len(log.find("webhook.no_order_id")) == 3


def test_a_deleted_resource_with_only_type_and_id_still_asks_for_a_refresh(app: WebhookApp,
                                                                           ledger: Ledger):
    body = envelope("order.updated", order={"type": "order", "id": ORDER})
    body["resources"] = json.dumps({"data": {"type": "order", "id": ORDER}})
    assert post(app, body).json() == {"result": "accepted"}
    (row,) = webhooks(ledger)
    assert row.source_order_id == ORDER and row.event_created_at is None
    assert [r.source_order_id for r in refreshes(ledger)] == [ORDER]


# ------------------------------------------------------------------ replay window


def test_replay_window_uses_the_orders_updated_at_only_when_present(app: WebhookApp,
                                                                    ledger: Ledger,
                                                                    log: RecLog):
    stale = envelope(eid="s-1", order=ep_order(updated=NOW - timedelta(hours=24, seconds=1)))
    assert post(app, stale).json() == {"result": "ignored"}
    (level, kw), = log.find("webhook.ignored")
    assert level == "warning" and "replay window" in kw["reason"]
    fresh = envelope(eid="s-2", order=ep_order(updated=NOW - timedelta(hours=23)))
    assert post(app, fresh).json() == {"result": "accepted"}
    undated = envelope(eid="s-3", order=ep_order(updated=None))
    assert post(app, undated).json() == {"result": "accepted"}
    garbled = ep_order()
    garbled["meta"]["timestamps"]["updated_at"] = "last Tuesday"
    assert post(app, envelope(eid="s-4", order=garbled)).json() == {"result": "accepted"}
    assert [w.event_created_at for w in webhooks(ledger)] == [
        NOW - timedelta(hours=23), None, None]


# ------------------------------------------------------------------ garbage and sizes


@pytest.mark.parametrize("body", [b"{not json", b"\xff", b"", b"[1]", b'"text"', b"null"])
def test_authentic_garbage_is_200_and_logged(app: WebhookApp, ledger: Ledger, log: RecLog,
                                             body: bytes):
    r = post(app, body)
    assert r.status == 200 and r.json() == {"result": "ignored"}
    assert webhooks(ledger) == []
    (level, kw), = log.find("webhook.ignored")
    assert level == "warning" and "not a JSON object" in kw["reason"]


def test_unauthenticated_garbage_is_401(app: WebhookApp):
    assert post(app, b"{not json", secret="x").status == 401


def test_oversized_body_is_413_before_anything_else(app: WebhookApp, ledger: Ledger):
    big = envelope()
    big["payload"]["included"]["items"] = [{"pad": "x" * 9000}]
    r = post(app, big, secret=None)
    assert r.status == 413 and r.headers.get("connection") == "close"
    assert webhooks(ledger) == []


# ------------------------------------------------------------------ database trouble


class _FailingInbox:
    def __init__(self, exc: BaseException | None = None, delay: float = 0.0) -> None:
        self.exc, self.delay = exc, delay

    def record(self, *args: Any) -> bool:
        time.sleep(self.delay)
        if self.exc is not None:
            raise self.exc
        return True

    def ping(self) -> bool:
        return True


def test_database_error_or_timeout_is_503(clock: FakeClock, log: RecLog):
    broken = make_app(inbox=_FailingInbox(RuntimeError("db down")), secret=SECRET,
                      store=STORE, clock=clock, log=log, source="elasticpath")
    assert post(broken, envelope()).status == 503
    (level, kw), = log.find("webhook.failed")
    assert level == "error" and kw["error"] == "RuntimeError"
    slow = make_app(inbox=_FailingInbox(delay=1.0), secret=SECRET, store=STORE, clock=clock,
                    log=log, db_timeout=0.2, source="elasticpath")
    body = raw(envelope())

    async def timed() -> tuple[Resp, float]:
        started = time.perf_counter()
        r = await acall(slow, "POST", PATH, body, {"x-moltin-secret-key": SECRET})
        return r, time.perf_counter() - started  # the answer, not the stuck thread's end

    r, elapsed = asyncio.run(timed())
    assert r.status == 503 and r.json() == {"error": "try again later"}
    assert elapsed < 0.9
    assert slow.outcomes["db_timeout"] == 1


def test_a_real_database_failure_is_503_and_recorded_after_recovery(tmp_path: Path,
                                                                    clock: FakeClock,
                                                                    log: RecLog):
    led = Ledger(f"sqlite:///{tmp_path / 'late.db'}")  # no schema yet: every insert fails
    try:
        app = make_app(inbox=WebhookInbox(led), secret=SECRET, store=STORE, clock=clock,
                       log=log, source="elasticpath")
        assert post(app, envelope()).status == 503
        assert call(app, "GET", "/healthz").status == 503
        led.create_schema()
        assert post(app, envelope(attempt=2)).json() == {"result": "accepted"}
        assert [r.source_order_id for r in refreshes(led)] == [ORDER]
    finally:
        led.dispose()


# ------------------------------------------------------------------ routing


def test_one_app_serves_one_source(app: WebhookApp, inbox: WebhookInbox, clock: FakeClock,
                                   log: RecLog):
    assert ELASTICPATH_WEBHOOK_PATH == PATH and app.path == PATH
    body = raw(envelope())
    h = {"x-moltin-secret-key": SECRET}
    assert call(app, "POST", "/webhooks/shopwired", body, h).status == 404
    r = call(app, "GET", PATH)
    assert r.status == 405 and r.headers["allow"] == "POST"
    assert call(app, "POST", PATH + "/", body, h).status == 200
    assert call(app, "GET", "/healthz").json() == {"status": "ok"}
    shopwired = make_app(inbox=inbox, secret=SECRET, store="shopwired", clock=clock, log=log)
    assert call(shopwired, "POST", PATH, body, h).status == 404


def test_lifespan_names_the_route(app: WebhookApp, log: RecLog):
    async def run() -> None:
        inbound = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return inbound.pop(0)

        async def send(m: dict[str, Any]) -> None:
            pass

        await app({"type": "lifespan"}, receive, send)

    asyncio.run(run())
    (_, kw), = log.find("webhook.receiver.start")
    assert kw == {"store": STORE, "path": PATH}


def test_the_envelope_builder_matches_the_documented_shape():
    """Guard for the tests above: same keys as the saved sample."""
    sample = json.loads(FIXTURE.read_text())
    assert set(envelope()) == set(sample)
    assert set(copy.deepcopy(envelope())["payload"]) == set(sample["payload"])
