"""Rows 1, 4, 5, 6 and 9 of issue #12: the webhook receiver survives abuse.

Signed bodies with lone surrogates, NULs, malformed or huge ids, or 100,000 nested brackets
are answered 200 (ignored or accepted) — never 500, never a 503 that makes the platform retry
forever; a malformed id never reaches ShopWired, and one ShopWired refuses costs only itself;
idle and trickling connections are dropped; rejected deliveries are logged with the peer's IP
readable.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sync.clock import FakeClock
from sync.ledger.models import RefreshRequestRow, WebhookRow
from sync.ledger.store import Ledger
from sync.logs import get_logger
from sync.webhook import WebhookInbox, make_app, sign
from sync.webhook.serve import HEADER_TIMEOUT, server_options
from tests.hostile.conftest import Rig
from tests.webhook.test_webhook_app import acall

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SECRET = "whsec-hostile"


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    led = Ledger(db_url)
    led.create_schema()
    yield led
    led.dispose()


def _app(ledger: Ledger, source: str = "shopwired") -> Any:
    return make_app(inbox=WebhookInbox(ledger), secret=SECRET, store="shop",
                    clock=FakeClock(NOW), log=get_logger("test.webhook"),
                    source=source)  # type: ignore[arg-type]


def _post(app: Any, raw: bytes, source: str = "shopwired") -> Any:
    if source == "shopwired":
        headers = {"X-ShopWired-Signature": sign(SECRET, raw)}
        path = "/webhooks/shopwired"
    else:
        headers = {"X-MOLTIN-SECRET-KEY": SECRET}
        path = "/webhooks/elasticpath"
    return asyncio.run(acall(app, "POST", path, raw, headers))


def _event(subject: str, event_id: str = "ev-1", topic: str = "order.updated") -> bytes:
    # Built by hand: the JSON escapes are what a hostile sender puts on the wire.
    event = (f'{{"id":"{event_id}","topic":"{topic}","subjectId":{subject},'
             f'"createdAt":"{NOW.isoformat()}"}}')
    return ('{"event":' + event + "}").encode("ascii")


def _refreshes(ledger: Ledger) -> list[str]:
    with ledger.session() as s:
        return [r.source_order_id for r in s.scalars(select(RefreshRequestRow))]


@pytest.mark.parametrize("subject", [r'"\ud800"', r'"12\u00003"', r'"\u001b[2J"', r'"\udfff42"'])
def test_surrogates_and_nuls_in_a_signed_webhook_are_answered_200(
    ledger: Ledger, subject: str
) -> None:
    """Row 1: was 503 on every retry (and a NUL: 503 on PostgreSQL)."""
    resp = _post(_app(ledger), _event(subject, event_id=r"ev-\ud800\u0000"))
    assert resp.status == 200, resp.body
    assert _refreshes(ledger) == []  # not a valid ShopWired id: no refresh
    with ledger.session() as s:
        (row,) = s.scalars(select(WebhookRow))
        row.delivery_id.encode("utf-8")
        assert "\x00" not in row.delivery_id


@pytest.mark.parametrize("subject", ['"' + "9" * 64 + '"', "9" * 64, '"abc"', "-7",
                                     '"1\' OR \'1\'=\'1"', "1.5", "true"])
def test_a_malformed_order_id_is_recorded_without_a_refresh(
    ledger: Ledger, subject: str, captured_log: io.StringIO
) -> None:
    """Row 4: a 64-digit subjectId was stored, then made ShopWired answer 400 on every pass."""
    resp = _post(_app(ledger), _event(subject))
    assert resp.status == 200 and resp.json() == {"result": "accepted"}
    assert _refreshes(ledger) == []
    if subject not in ("1.5", "true"):  # not an id at all: nothing to warn about
        assert "webhook.invalid_order_id" in captured_log.getvalue()


def test_a_valid_id_still_requests_a_refresh(ledger: Ledger) -> None:
    assert _post(_app(ledger), _event('"1234"')).status == 200
    assert _refreshes(ledger) == ["1234"]


def test_elasticpath_ids_are_validated_too(ledger: Ledger) -> None:
    app = _app(ledger, "elasticpath")
    for i, oid in enumerate(["x" * 64 + "y", "a b", "'; DROP TABLE", "\\ud800",
                             "1d67160d-dacb-43ed-80ef-c3c4e7ddf764"]):
        body = json.dumps({"id": f"d{i}", "triggered_by": "order.updated",
                           "payload": {"data": {"type": "order", "id": oid}}})
        assert _post(app, body.encode(), "elasticpath").status == 200
    assert _refreshes(ledger) == ["1d67160d-dacb-43ed-80ef-c3c4e7ddf764"]


@pytest.mark.parametrize("source", ["shopwired", "elasticpath"])
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"event":' * 20_000,
                                  b'{"a":' + b"[" * 40 + b"]" * 40 + b"}"])
def test_deeply_nested_signed_bodies_are_ignored_not_500(
    ledger: Ledger, source: str, body: bytes
) -> None:
    """Row 6: 100k nested ``[`` was a 500 and a traceback; the contract says 200 ignored."""
    resp = _post(_app(ledger, source), body, source)
    assert resp.status == 200 and resp.json() == {"result": "ignored"}


def test_rejected_webhooks_log_the_peer_ip_readably(
    ledger: Ledger, captured_log: io.StringIO
) -> None:
    """Row 9: ``127.0.0.1`` was logged as ``***phone***``."""
    resp = asyncio.run(acall(_app(ledger), "POST", "/webhooks/shopwired", b"{}",
                             {"X-ShopWired-Signature": "00"}))
    assert resp.status == 401
    line = json.loads(captured_log.getvalue().splitlines()[-1])
    assert line["peer"] == "203.0.113.9"
    assert "***phone***" not in captured_log.getvalue()


def test_one_id_shopwired_refuses_costs_only_itself(make_rig: Any) -> None:
    """Row 4, the pass side: refresh requests stored before this fix (any text) and a
    ShopWired that answers 400 for one id: the pass succeeds and the other ids of the batch
    are read."""
    refused: list[int] = []

    def wrap(inner: Any) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            ids = request.url.params.get("ids")
            if ids and "666" in ids.split(","):
                refused.append(len(ids.split(",")))
                return httpx.Response(400, json={"error": "invalid id"})
            return inner(request)
        return httpx.MockTransport(handle)

    rig: Rig = make_rig(orders=5, shopwired=wrap)
    rig.rt.poller.run_pass()
    ids = [str(i) for i in rig.sb.shopwired.order_ids()]
    now = rig.clock.now()
    inbox = WebhookInbox(rig.ledger)
    for n, oid in enumerate([*ids, "666", "9" * 64, "abc", "\U0001f4a5"]):
        inbox.record(rig.store, f"d{n}", "order.updated", oid, now, now)
    report = rig.rt.poller.run_pass()  # raised FatalError (exit 2) before
    assert report is not None
    assert refused and refused[-1] == 1  # split down to the one refused id
    assert _refreshes(rig.ledger) == []  # every request was worked off
    assert any(ln["event"] == "order.id_rejected" for ln in rig.log_lines())


# ------------------------------------------------------------------ row 5: a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Any) -> Iterator[int]:
    """``ordersync webhook``'s uvicorn settings, serving the receiver on a free port."""
    import uvicorn

    led = Ledger(f"sqlite:///{tmp_path / 'wh.db'}")
    led.create_schema()
    app = make_app(inbox=WebhookInbox(led), secret=SECRET, store="shop",
                   clock=FakeClock(datetime.now(UTC)), log=get_logger("test.webhook"))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **server_options()))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(10)
    led.dispose()


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except TimeoutError:
        return False, got


def test_idle_and_trickling_connections_are_dropped_and_deliveries_still_served(
    server: int,
) -> None:
    """Row 5: idle or 1-byte-per-second connections were held forever."""
    idle = socket.create_connection(("127.0.0.1", server))
    trickle = socket.create_connection(("127.0.0.1", server))
    slow_body = socket.create_connection(("127.0.0.1", server))
    slow_body.sendall(b"POST /webhooks/shopwired HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 100\r\nX-ShopWired-Signature: 00\r\n\r\n{")
    start = time.monotonic()
    stop = threading.Event()

    def drip() -> None:
        for byte in b"POST /webhooks/shopwired HTTP/1.1\r\nHost: x\r\n":
            if stop.wait(1.0):
                return
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return

    threading.Thread(target=drip, daemon=True).start()
    # Meanwhile a real delivery is answered at once.
    raw = json.dumps({"event": {"id": "e1", "topic": "order.updated", "subjectId": 5,
                                "createdAt": datetime.now(UTC).isoformat()}}).encode()
    ok = httpx.post(f"http://127.0.0.1:{server}/webhooks/shopwired", content=raw,
                    headers={"X-ShopWired-Signature": sign(SECRET, raw)}, timeout=5)
    assert ok.status_code == 200
    limit = HEADER_TIMEOUT + 5
    closed_idle, _ = _closed_within(idle, limit)
    closed_trickle, _ = _closed_within(trickle, limit - (time.monotonic() - start))
    closed_body, answer = _closed_within(slow_body, limit)
    stop.set()
    assert closed_idle and closed_trickle and closed_body
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - start < HEADER_TIMEOUT + 6
    for s in (idle, trickle, slow_body):
        s.close()


def test_the_cli_launches_uvicorn_with_the_limits(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Any) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from sync.cli import app

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda receiver, **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["webhook"], env={
        "SHOPWIRED_WEBHOOK_SECRET": "s", "DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"})
    assert result.exit_code == 0, result.output
    (kw,) = calls
    assert kw["limit_concurrency"] and kw["timeout_keep_alive"] <= 5
    assert kw["http"].header_timeout == HEADER_TIMEOUT
    assert kw["h11_max_incomplete_event_size"] <= 64 * 1024


def test_timedelta_sanity() -> None:
    assert timedelta(seconds=HEADER_TIMEOUT) < timedelta(seconds=30)
