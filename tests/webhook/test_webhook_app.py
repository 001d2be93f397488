"""The ASGI webhook receiver, driven in-process (no server): signature, handshake, replay,
duplicates, ordering, topics, sizes, malformed bodies, health, deadlines."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync.clock import FakeClock
from sync.ledger.models import RefreshRequestRow, WebhookRow
from sync.ledger.store import Ledger
from sync.sandbox.generator import rfc2822
from sync.webhook import WebhookApp, WebhookInbox, make_app, sign
from sync.webhook.app import parse_when

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "whsec-test-9f8e7d"
STORE = "shop"
PATH = "/webhooks/shopwired"


# ------------------------------------------------------------------ a tiny sync ASGI client


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def acall(
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    chunks: list[bytes] | None = None,
) -> Resp:
    """Run one HTTP request through an ASGI app and collect the answer."""
    parts = list(chunks) if chunks is not None else [body]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("203.0.113.9", 40000), "server": ("testserver", 80),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in (headers or {}).items()],
    }

    async def receive() -> dict[str, Any]:
        if parts:
            part = parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(parts)}
        await asyncio.sleep(3600)  # pragma: no cover - the app never waits for a disconnect
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    hdrs = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return Resp(start["status"], hdrs, body_out)


def call(app: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         **kw: Any) -> Resp:
    return asyncio.run(acall(app, method, path, body, headers, **kw))


# ------------------------------------------------------------------ fixtures and builders


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
                    max_body=4096)


def envelope(topic: str = "order.updated", eid: Any = 1, subject: Any = 42,
             created: datetime | None = NOW, data: Any = None,
             subject_type: str = "order") -> dict[str, Any]:
    event: dict[str, Any] = {"id": eid, "businessId": 7, "topic": topic, "subjectId": subject,
                             "subjectType": subject_type, "data": data if data is not None else {}}
    if created is not None:
        event["createdAt"] = rfc2822(created)
    return {"timestamp": rfc2822(NOW), "event": event}


def raw(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def post(app: Any, body: bytes | dict[str, Any], signature: str | None = "good",
         **headers: str) -> Resp:
    data = body if isinstance(body, bytes) else raw(body)
    h = {"content-type": "application/json", "content-length": str(len(data)), **headers}
    if signature == "good":
        h["x-shopwired-signature"] = sign(SECRET, data)
    elif signature is not None:
        h["x-shopwired-signature"] = signature
    return call(app, "POST", PATH, data, h)


def webhooks(ledger: Ledger) -> list[WebhookRow]:
    with ledger.session() as s:
        return list(s.scalars(select(WebhookRow).order_by(WebhookRow.id)))


def refreshes(ledger: Ledger) -> list[RefreshRequestRow]:
    with ledger.session() as s:
        return list(s.scalars(select(RefreshRequestRow).order_by(RefreshRequestRow.id)))


# ------------------------------------------------------------------ signature


def test_signed_delivery_is_accepted_and_asks_for_a_refresh(app: WebhookApp, ledger: Ledger,
                                                            log: RecLog):
    r = post(app, envelope("order.finalized", eid=1001, subject=42))
    assert r.status == 200 and r.json() == {"result": "accepted"}
    assert r.headers["content-type"] == "application/json"
    (row,) = webhooks(ledger)
    assert (row.store, row.delivery_id, row.topic, row.source_order_id) == (
        STORE, "1001", "order.finalized", "42")
    assert row.event_created_at == NOW and row.received_at == NOW
    (req,) = refreshes(ledger)
    assert (req.source_order_id, req.reason) == ("42", "webhook:order.finalized")
    (entry,) = log.find("webhook.accepted")
    assert entry[1]["order_id"] == "42" and entry[1]["delivery_id"] == "1001"


def test_signature_is_hmac_sha256_hex_of_the_raw_body():
    body = b'{"event":{"id":1,"topic":"order.updated","subjectId":42,"data":{}}}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected and expected == expected.lower()


def test_bad_signature_is_401_and_logged_without_body_or_secret(app: WebhookApp, ledger: Ledger,
                                                                log: RecLog):
    payload = envelope(data={"object": {"billingAddress": {"emailAddress": "jo@example.com"}}})
    body = raw(payload)
    r = post(app, body, signature=sign("wrong-secret", body))
    assert r.status == 401 and r.json() == {"error": "bad signature"}
    assert webhooks(ledger) == [] and refreshes(ledger) == []
    (level, kw), = log.find("webhook.rejected")
    assert level == "warning" and "does not match" in kw["reason"]
    text = repr(log.lines)
    assert SECRET not in text and "jo@example.com" not in text and "emailAddress" not in text


def test_signature_of_a_different_body_is_rejected(app: WebhookApp, ledger: Ledger):
    body = raw(envelope(subject=42))
    tampered = body.replace(b"42", b"43")
    assert post(app, tampered, signature=sign(SECRET, body)).status == 401
    assert webhooks(ledger) == []


def test_missing_or_empty_signature_is_401(app: WebhookApp, log: RecLog):
    assert post(app, envelope(), signature=None).status == 401
    assert post(app, envelope(), signature="   ").status == 401
    reasons = [kw["reason"] for _, kw in log.find("webhook.rejected")]
    assert reasons == ["missing X-ShopWired-Signature header"] * 2
    assert app.outcomes["missing_signature"] == 2


def test_signature_check_tolerates_case_and_whitespace_but_not_prefixes(app: WebhookApp):
    body = raw(envelope(eid=5))
    assert post(app, body, signature=" " + sign(SECRET, body).upper() + " ").status == 200
    assert post(app, body, signature="sha256=" + sign(SECRET, body)).status == 401
    assert post(app, body, signature="zz\u00e9").status == 401  # non-hex, non-ASCII


# ------------------------------------------------------------------ handshake


def test_verification_handshake_answers_hmac_of_the_token(app: WebhookApp, ledger: Ledger):
    r = post(app, {"timestamp": rfc2822(NOW), "verificationToken": "shopwired-challenge-abc"})
    assert r.status == 200
    expected = hmac.new(SECRET.encode(), b"shopwired-challenge-abc", hashlib.sha256).hexdigest()
    assert r.json() == {"verificationToken": expected}
    assert webhooks(ledger) == []


def test_verification_handshake_echo_mode(inbox: WebhookInbox, clock: FakeClock, log: RecLog):
    app = make_app(inbox=inbox, secret=SECRET, store=STORE, clock=clock, log=log,
                   handshake="echo")
    r = post(app, {"verificationToken": "tok-1"})
    assert r.status == 200 and r.json() == {"verificationToken": "tok-1"}


def test_unsigned_handshake_is_rejected(app: WebhookApp):
    assert post(app, {"verificationToken": "tok"}, signature=None).status == 401


# ------------------------------------------------------------------ replay window


def test_event_older_than_the_replay_window_is_ignored(app: WebhookApp, ledger: Ledger,
                                                       log: RecLog):
    r = post(app, envelope(created=NOW - timedelta(hours=24, seconds=1)))
    assert r.status == 200 and r.json() == {"result": "ignored"}
    assert webhooks(ledger) == [] and refreshes(ledger) == []
    (level, kw), = log.find("webhook.ignored")
    assert level == "warning" and "replay window" in kw["reason"]
    # just inside the window: accepted
    assert post(app, envelope(eid=2, created=NOW - timedelta(hours=23, minutes=59))).json() == {
        "result": "accepted"}


def test_replay_window_is_configurable(inbox: WebhookInbox, clock: FakeClock, log: RecLog):
    app = make_app(inbox=inbox, secret=SECRET, store=STORE, clock=clock, log=log,
                   replay_window=timedelta(minutes=5))
    assert post(app, envelope(created=NOW - timedelta(minutes=6))).json()["result"] == "ignored"
    assert post(app, envelope(created=NOW - timedelta(minutes=4))).json()["result"] == "accepted"


def test_event_date_falls_back_to_the_envelope_timestamp(app: WebhookApp, ledger: Ledger):
    old = envelope(created=None)
    old["timestamp"] = rfc2822(NOW - timedelta(days=3))
    assert post(app, old).json() == {"result": "ignored"}
    undated = envelope(eid=2, created=None)
    del undated["timestamp"]
    assert post(app, undated).json() == {"result": "accepted"}
    garbled = envelope(eid=3, created=None)
    garbled["event"]["createdAt"] = "sometime last week"
    garbled["timestamp"] = "?"
    assert post(app, garbled).json() == {"result": "accepted"}
    assert [r.event_created_at for r in webhooks(ledger)] == [None, None]


@pytest.mark.parametrize("value, expected", [
    ("Tue, 23 Oct 2018 12:08:23 +0000", datetime(2018, 10, 23, 12, 8, 23, tzinfo=UTC)),
    ("Tue, 23 Oct 2018 13:08:23 +0100", datetime(2018, 10, 23, 12, 8, 23, tzinfo=UTC)),
    ("2018-10-23T12:08:23Z", datetime(2018, 10, 23, 12, 8, 23, tzinfo=UTC)),
    ("2018-10-23T12:08:23", datetime(2018, 10, 23, 12, 8, 23, tzinfo=UTC)),
    (1540296503, datetime(2018, 10, 23, 12, 8, 23, tzinfo=UTC)),
    ("yesterday", None), ("", None), (None, None), (True, None), ({}, None), (10**20, None),
])
def test_parse_when(value: Any, expected: datetime | None):
    assert parse_when(value) == expected


# ------------------------------------------------------------------ duplicates and ordering


def test_duplicate_delivery_is_200_without_a_second_refresh(app: WebhookApp, ledger: Ledger,
                                                            inbox: WebhookInbox,
                                                            clock: FakeClock):
    body = raw(envelope(eid=77, subject=42))
    assert post(app, body).json() == {"result": "accepted"}
    inbox.done(STORE, ["42"], now=NOW)  # the scheduler re-read the order
    clock.advance(3600)  # ShopWired retries an hour later (it never saw our 200)
    r = post(app, body)
    assert r.status == 200 and r.json() == {"result": "duplicate"}
    assert len(webhooks(ledger)) == 1 and refreshes(ledger) == []
    assert app.outcomes["duplicate"] == 1


def test_events_without_an_id_dedupe_on_subject_and_time(app: WebhookApp, ledger: Ledger):
    first = envelope(eid=None, subject=42)
    assert post(app, first).json() == {"result": "accepted"}
    assert post(app, first).json() == {"result": "duplicate"}
    later = envelope(eid=None, subject=42, created=NOW + timedelta(seconds=1))
    assert post(app, later).json() == {"result": "accepted"}
    assert [r.delivery_id for r in webhooks(ledger)] == [
        f"order.updated:42:{rfc2822(NOW)}",
        f"order.updated:42:{rfc2822(NOW + timedelta(seconds=1))}",
    ]


def test_very_long_event_ids_are_hashed(app: WebhookApp, ledger: Ledger):
    assert post(app, envelope(eid="x" * 500)).status == 200
    (row,) = webhooks(ledger)
    assert row.delivery_id.startswith("sha256:") and len(row.delivery_id) <= 128


def test_out_of_order_deliveries_are_both_recorded_with_one_refresh(
    app: WebhookApp, ledger: Ledger, clock: FakeClock
):
    newer = envelope("order.status_changed", eid=11, subject=42,
                     created=NOW - timedelta(minutes=1),
                     data={"newStatus": {"id": 1382, "name": "Shipped", "type": "shipped"}})
    older = envelope("order.updated", eid=10, subject=42, created=NOW - timedelta(minutes=5))
    assert post(app, newer).status == 200
    clock.advance(30)
    assert post(app, older).status == 200
    assert [(r.delivery_id, r.topic) for r in webhooks(ledger)] == [
        ("11", "order.status_changed"), ("10", "order.updated")]
    (req,) = refreshes(ledger)
    assert req.source_order_id == "42" and req.requested_at == NOW


# ------------------------------------------------------------------ topics


@pytest.mark.parametrize("topic", ["order.finalized", "order.updated", "order.status_changed",
                                   "order.deleted"])
def test_every_order_topic_requests_a_refresh(app: WebhookApp, ledger: Ledger, topic: str):
    assert post(app, envelope(topic, subject=9)).json() == {"result": "accepted"}
    assert [r.source_order_id for r in refreshes(ledger)] == ["9"]


def test_refund_event_uses_the_order_id_not_the_refund_id(app: WebhookApp, ledger: Ledger):
    data = {"id": 555, "orderId": 42, "createdAt": rfc2822(NOW), "amount": 5.0,
            "description": "damaged"}
    payload = envelope("order.refund.created", eid=3, subject=555, data=data,
                       subject_type="order_refund")
    assert post(app, payload).json() == {"result": "accepted"}
    assert [r.source_order_id for r in refreshes(ledger)] == ["42"]
    assert webhooks(ledger)[0].source_order_id == "42"


def test_refund_event_without_order_id_is_recorded_without_refresh(app: WebhookApp,
                                                                   ledger: Ledger,
                                                                   log: RecLog):
    payload = envelope("order.refund.created", eid=3, subject=555, data={"id": 555},
                       subject_type="order_refund")
    assert post(app, payload).json() == {"result": "accepted"}
    assert len(webhooks(ledger)) == 1 and refreshes(ledger) == []
    assert log.find("webhook.no_order_id")


def test_order_id_falls_back_to_the_embedded_object(app: WebhookApp, ledger: Ledger):
    assert post(app, envelope(subject=None, data={"object": {"id": 314}})).status == 200
    assert [r.source_order_id for r in refreshes(ledger)] == ["314"]


def test_deleted_order_is_recorded_for_the_scheduler(app: WebhookApp, inbox: WebhookInbox):
    post(app, envelope("order.deleted", eid=4, subject=42, data={"object": {"id": 42}}))
    assert inbox.deleted_orders(STORE, ["42", "43"]) == {"42"}
    assert [p.source_order_id for p in inbox.pending_refreshes(STORE, 5)] == ["42"]


@pytest.mark.parametrize("topic", ["product.updated", "customer.created", "order.created", "",
                                   None, 42])
def test_unknown_topic_is_200_and_ignored(app: WebhookApp, ledger: Ledger, log: RecLog,
                                          topic: Any):
    r = post(app, envelope(topic))
    assert r.status == 200 and r.json() == {"result": "ignored"}
    assert webhooks(ledger) == [] and refreshes(ledger) == []
    (level, kw), = log.find("webhook.ignored")
    assert level == "info" and kw["reason"] == "topic not handled"


# ------------------------------------------------------------------ sizes and garbage


def test_declared_oversized_body_is_413(app: WebhookApp, ledger: Ledger):
    body = raw(envelope(data={"pad": "x" * 5000}))
    r = post(app, body)
    assert r.status == 413 and r.headers.get("connection") == "close"
    assert webhooks(ledger) == []


def test_streamed_oversized_body_is_413(app: WebhookApp):
    chunks = [b"x" * 1500] * 3  # no content-length: counted while reading
    r = call(app, "POST", PATH, headers={"x-shopwired-signature": "00"}, chunks=chunks)
    assert r.status == 413
    assert app.outcomes["too_large"] == 1


def test_body_at_the_limit_is_read(app: WebhookApp):
    payload = envelope(data={})
    base = raw(payload)
    payload["event"]["data"] = {"pad": "x" * (4096 - len(base) - len(b'"pad":""'))}
    body = raw(payload)
    assert len(body) == 4096
    assert post(app, body).status == 200
    chunked = call(app, "POST", PATH, headers={"x-shopwired-signature": sign(SECRET, body)},
                   chunks=[body[:1000], body[1000:3000], body[3000:]])
    assert chunked.status == 200 and chunked.json() == {"result": "duplicate"}


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b"[1,2,3]", b'"text"',
                                  b"null"])
def test_signed_garbage_is_200_and_logged(app: WebhookApp, ledger: Ledger, log: RecLog,
                                          body: bytes):
    r = post(app, body)
    assert r.status == 200 and r.json() == {"result": "ignored"}
    assert webhooks(ledger) == []
    (level, kw), = log.find("webhook.ignored")
    assert level == "warning" and "not a JSON object" in kw["reason"]


def test_unsigned_garbage_is_401(app: WebhookApp):
    assert post(app, b"{not json", signature="abc").status == 401


def test_signed_object_that_is_no_event_is_ignored(app: WebhookApp, ledger: Ledger, log: RecLog):
    for payload in ({"hello": "world"}, {"event": "order.updated"}, {"verificationToken": 5}):
        assert post(app, payload).json() == {"result": "ignored"}
    assert webhooks(ledger) == []
    assert len(log.find("webhook.ignored")) == 3


def test_order_ids_that_cannot_be_stored_are_not_requested(app: WebhookApp, ledger: Ledger):
    assert post(app, envelope(subject="9" * 100)).status == 200
    assert post(app, envelope(eid=2, subject=True)).status == 200
    assert refreshes(ledger) == [] and len(webhooks(ledger)) == 2


# ------------------------------------------------------------------ database trouble


class _FailingInbox:
    def __init__(self, exc: BaseException | None = None, delay: float = 0.0,
                 healthy: bool = True) -> None:
        self.exc, self.delay, self.healthy = exc, delay, healthy
        self.calls = 0

    def record(self, *args: Any) -> bool:
        self.calls += 1
        time.sleep(self.delay)
        if self.exc is not None:
            raise self.exc
        return True

    def ping(self) -> bool:
        time.sleep(self.delay)
        if self.exc is not None:
            raise self.exc
        return self.healthy


def test_database_error_is_503_so_shopwired_retries(clock: FakeClock, log: RecLog):
    app = make_app(inbox=_FailingInbox(RuntimeError("connection refused to 10.0.0.5")),
                   secret=SECRET, store=STORE, clock=clock, log=log)
    r = post(app, envelope())
    assert r.status == 503
    (level, kw), = log.find("webhook.failed")
    assert level == "error" and kw["error"] == "RuntimeError"


def test_slow_database_is_503_within_the_deadline(clock: FakeClock, log: RecLog):
    app = make_app(inbox=_FailingInbox(delay=1.0), secret=SECRET, store=STORE, clock=clock,
                   log=log, db_timeout=0.2)
    body = raw(envelope())

    async def timed() -> tuple[Resp, float]:
        started = time.perf_counter()
        r = await acall(app, "POST", PATH, body, {"x-shopwired-signature": sign(SECRET, body)})
        return r, time.perf_counter() - started  # the answer, not the stuck thread's end

    r, elapsed = asyncio.run(timed())
    assert r.status == 503 and elapsed < 0.9
    assert app.outcomes["db_timeout"] == 1


def test_recording_does_not_block_the_event_loop(clock: FakeClock, log: RecLog):
    inbox = _FailingInbox(delay=0.4)
    app = make_app(inbox=inbox, secret=SECRET, store=STORE, clock=clock, log=log)

    async def many() -> list[Resp]:
        reqs = []
        for i in range(4):
            body = raw(envelope(eid=i))
            reqs.append(acall(app, "POST", PATH, body,
                              {"x-shopwired-signature": sign(SECRET, body)}))
        return await asyncio.gather(*reqs, acall(app, "GET", "/healthz"))

    started = time.perf_counter()
    results = asyncio.run(many())
    elapsed = time.perf_counter() - started
    assert [r.status for r in results] == [200] * 5
    assert inbox.calls == 4
    assert elapsed < 1.2, f"requests were serialised ({elapsed:.2f}s)"


# ------------------------------------------------------------------ health and routing


def test_health_ok(app: WebhookApp):
    r = call(app, "GET", "/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}
    head = call(app, "HEAD", "/healthz")
    assert head.status == 200 and head.body == b""


def test_health_503_when_the_database_does_not_answer(tmp_path: Path, clock: FakeClock,
                                                      log: RecLog):
    bare = Ledger(f"sqlite:///{tmp_path / 'empty.db'}")  # no schema
    try:
        app = make_app(inbox=WebhookInbox(bare), secret=SECRET, store=STORE, clock=clock,
                       log=log)
        r = call(app, "GET", "/healthz")
        assert r.status == 503 and r.json() == {"status": "unavailable"}
    finally:
        bare.dispose()
    for inbox in (_FailingInbox(healthy=False), _FailingInbox(RuntimeError("x")),
                  _FailingInbox(delay=1.0)):
        app = make_app(inbox=inbox, secret=SECRET, store=STORE, clock=clock, log=log,
                       db_timeout=0.2)
        assert call(app, "GET", "/healthz").status == 503


def test_routing(app: WebhookApp):
    assert call(app, "GET", "/nope").status == 404
    r = call(app, "GET", PATH)
    assert r.status == 405 and r.headers["allow"] == "POST"
    assert call(app, "POST", "/healthz").headers["allow"] == "GET, HEAD"
    body = raw(envelope())
    assert call(app, "POST", PATH + "/", body,
                {"x-shopwired-signature": sign(SECRET, body)}).status == 200


def test_lifespan_and_other_scopes(app: WebhookApp, log: RecLog):
    async def run() -> list[dict[str, Any]]:
        inbound = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return inbound.pop(0)

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        await app({"type": "websocket", "path": "/"}, receive, send)
        return sent

    sent = asyncio.run(run())
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                         "lifespan.shutdown.complete", "websocket.close"]
    assert log.find("webhook.receiver.start") and log.find("webhook.receiver.stop")


def test_factory_rejects_an_empty_secret(inbox: WebhookInbox, clock: FakeClock, log: RecLog):
    with pytest.raises(ValueError, match="secret"):
        make_app(inbox=inbox, secret="", store=STORE, clock=clock, log=log)
