"""Many stores, one receiver (issue 16): ``POST /webhooks/{shopwired|elasticpath}/{store}``,
each store verified with its own secret and recorded under its own name; an unknown store is
404 before the body is read, with no database call and no per-request log line; the
directory is asked per request (rotated secrets, added and removed stores); the legacy
single-store route still works."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync.clock import FakeClock
from sync.ledger.models import RefreshRequestRow, WebhookRow
from sync.ledger.store import Ledger
from sync.webhook import (
    WebhookApp,
    WebhookInbox,
    WebhookTarget,
    make_app,
    make_multi_app,
    sign,
)
from tests.webhook.test_webhook_app import NOW, RecLog, Resp, envelope, raw
from tests.webhook.test_webhook_elasticpath import envelope as ep_envelope

SECRET_A = "whsec-store-a-1111"
SECRET_B = "whsec-store-b-2222"
SECRET_EP = "ep-secret-store-c-3333"
SW = "/webhooks/shopwired"
EP = "/webhooks/elasticpath"


# ------------------------------------------------------------------ client, doubles, fixtures


async def arequest(app: Any, method: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> tuple[Resp, int]:
    """One HTTP request through ``app``: the answer and how often the app asked for the
    body (``receive``)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("203.0.113.9", 40000), "server": ("testserver", 80),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in (headers or {}).items()],
    }
    parts = [body]
    receives = 0

    async def receive() -> dict[str, Any]:
        nonlocal receives
        receives += 1
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
    return Resp(start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
                out), receives


def request(app: Any, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[Resp, int]:
    return asyncio.run(arequest(app, method, path, body, headers))


def post_sw(app: Any, store: str, payload: dict[str, Any], secret: str) -> Resp:
    data = raw(payload)
    headers = {"content-length": str(len(data)), "x-shopwired-signature": sign(secret, data)}
    return request(app, "POST", f"{SW}/{store}", data, headers)[0]


def post_ep(app: Any, store: str, payload: dict[str, Any], secret: str) -> Resp:
    data = raw(payload)
    return request(app, "POST", f"{EP}/{store}", data,
                   {"content-length": str(len(data)), "x-moltin-secret-key": secret})[0]


class Directory:
    """A store directory that counts lookups; edit ``targets`` to rotate, add or remove."""

    def __init__(self, *targets: WebhookTarget) -> None:
        self.targets = {t.store: t for t in targets}
        self.calls: list[str] = []

    def __call__(self, store: str) -> WebhookTarget | None:
        self.calls.append(store)
        return self.targets.get(store)


class UntouchableInbox:
    """An inbox that fails the test if the app calls it at all."""

    def __init__(self) -> None:
        self.touched: list[str] = []

    def record(self, *args: Any, **kw: Any) -> bool:
        self.touched.append("record")
        raise AssertionError("the inbox must not be touched")

    def ping(self) -> bool:
        self.touched.append("ping")
        raise AssertionError("the inbox must not be touched")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.create_schema()
    yield led
    led.dispose()


@pytest.fixture
def log() -> RecLog:
    return RecLog()


@pytest.fixture
def directory() -> Directory:
    return Directory(WebhookTarget("a", "shopwired", SECRET_A),
                     WebhookTarget("b", "shopwired", SECRET_B),
                     WebhookTarget("c", "elasticpath", SECRET_EP))


@pytest.fixture
def app(ledger: Ledger, directory: Directory, log: RecLog) -> WebhookApp:
    return make_multi_app(inbox=WebhookInbox(ledger), directory=directory,
                          clock=FakeClock(NOW), log=log, max_body=4096)


def rows(ledger: Ledger) -> list[tuple[str, str]]:
    with ledger.session() as s:
        return [(r.store, r.delivery_id)
                for r in s.scalars(select(WebhookRow).order_by(WebhookRow.id))]


def refreshes(ledger: Ledger) -> list[tuple[str, str]]:
    with ledger.session() as s:
        return [(r.store, r.source_order_id)
                for r in s.scalars(select(RefreshRequestRow).order_by(RefreshRequestRow.id))]


# ------------------------------------------------------------------ per-store verification


def test_each_store_accepts_its_own_signature_and_records_under_its_name(
    app: WebhookApp, ledger: Ledger, log: RecLog
):
    assert post_sw(app, "a", envelope(eid="e1", subject=11), SECRET_A).json() == {
        "result": "accepted"}
    assert post_sw(app, "b", envelope(eid="e1", subject=22), SECRET_B).json() == {
        "result": "accepted"}
    # the same event id in two stores is two deliveries; again in one store, a duplicate
    assert post_sw(app, "a", envelope(eid="e1", subject=11), SECRET_A).json() == {
        "result": "duplicate"}
    assert rows(ledger) == [("a", "e1"), ("b", "e1")]
    assert refreshes(ledger) == [("a", "11"), ("b", "22")]
    assert app.store_outcomes == {("a", "accepted"): 1, ("b", "accepted"): 1,
                                  ("a", "duplicate"): 1}
    assert [kw["store"] for _, kw in log.find("webhook.accepted")] == ["a", "b"]


def test_one_stores_signature_on_another_stores_route_is_401(app: WebhookApp, ledger: Ledger,
                                                             log: RecLog):
    r = post_sw(app, "b", envelope(), SECRET_A)
    assert r.status == 401 and r.json() == {"error": "bad signature"}
    r = post_ep(app, "c", ep_envelope(), SECRET_A)
    assert r.status == 401 and r.json() == {"error": "bad secret key"}
    assert rows(ledger) == [] and refreshes(ledger) == []
    assert [kw["store"] for _, kw in log.find("webhook.rejected")] == ["b", "c"]
    assert app.store_outcomes == {("b", "bad_signature"): 1, ("c", "bad_secret"): 1}
    text = repr(log.lines)
    assert SECRET_A not in text and SECRET_B not in text and SECRET_EP not in text


def test_an_unsigned_delivery_to_a_known_store_is_401(app: WebhookApp, ledger: Ledger):
    data = raw(envelope())
    r, _ = request(app, "POST", f"{SW}/a", data)
    assert r.status == 401 and r.json() == {"error": "missing signature"}
    assert rows(ledger) == []


def test_elasticpath_store_on_its_own_route(app: WebhookApp, ledger: Ledger):
    assert post_ep(app, "c", ep_envelope(), SECRET_EP).json() == {"result": "accepted"}
    assert rows(ledger) == [("c", "5b0e9f3a-1d7c-4a51-8c2e-9e1f0a6d3b44")]


def test_the_handshake_answers_with_the_stores_secret(app: WebhookApp, log: RecLog):
    r = post_sw(app, "b", {"timestamp": 1, "verificationToken": "tok"}, SECRET_B)
    assert r.json() == {"verificationToken": hmac.new(SECRET_B.encode(), b"tok",
                                                       hashlib.sha256).hexdigest()}
    (_, kw), = log.find("webhook.handshake")
    assert kw["store"] == "b"


def test_limits_and_methods_apply_per_store(app: WebhookApp, ledger: Ledger, log: RecLog):
    big = b"{" + b" " * 5000 + b"}"
    r, _ = request(app, "POST", f"{SW}/a", big, {"content-length": str(len(big))})
    assert r.status == 413
    (_, kw), = log.find("webhook.rejected")
    assert kw["store"] == "a"
    r, receives = request(app, "GET", f"{SW}/a")
    assert r.status == 405 and r.headers["allow"] == "POST" and receives == 0
    data = raw(envelope())
    r, _ = request(app, "POST", f"{SW}/a/", data, {"x-shopwired-signature": sign(SECRET_A, data)})
    assert r.status == 200  # a trailing slash is the same route, as for the legacy one


# ------------------------------------------------------------------ unknown stores cost nothing


def test_unknown_store_is_404_before_the_body_with_no_inbox_call(directory: Directory,
                                                                  log: RecLog):
    inbox = UntouchableInbox()
    app = make_multi_app(inbox=inbox, directory=directory, clock=FakeClock(NOW), log=log)
    data = raw(envelope())
    r, receives = request(app, "POST", f"{SW}/nope", data,
                          {"x-shopwired-signature": sign(SECRET_A, data)})
    assert r.status == 404 and r.json() == {"error": "not found"}
    assert receives == 0  # the body was never read
    assert r.headers.get("connection") == "close"
    assert inbox.touched == []
    assert directory.calls == ["nope"]
    assert app.outcomes["unknown_store"] == 1 and app.store_outcomes == {}
    assert not [line for line in log.lines if line[0] == "info"]
    r, receives = request(app, "GET", f"{SW}/nope")  # not a 405: nothing there at all
    assert r.status == 404 and receives == 0


def test_a_flood_of_unknown_stores_logs_one_sampled_warning(directory: Directory,
                                                            log: RecLog):
    inbox = UntouchableInbox()
    app = make_multi_app(inbox=inbox, directory=directory, clock=FakeClock(NOW), log=log)

    async def flood() -> list[int]:
        out = []
        for i in range(500):
            r, receives = await arequest(app, "POST", f"{SW}/shop-{i}", b"x" * 100)
            assert receives == 0
            out.append(r.status)
        return out

    assert set(asyncio.run(flood())) == {404}
    assert inbox.touched == []
    assert app.outcomes["unknown_store"] == 500
    assert [(lvl, ev) for lvl, ev, _ in log.lines] == [("warning", "webhook.rejected")]
    (_, kw), = log.find("webhook.rejected")
    assert kw["reason"] == "unknown store" and kw["store"] == "shop-0"


def test_a_store_of_the_other_platform_is_404(directory: Directory, log: RecLog):
    inbox = UntouchableInbox()
    app = make_multi_app(inbox=inbox, directory=directory, clock=FakeClock(NOW), log=log)
    r, receives = request(app, "POST", f"{SW}/c", raw(envelope()),
                          {"x-shopwired-signature": sign(SECRET_EP, raw(envelope()))})
    assert r.status == 404 and receives == 0
    r, receives = request(app, "POST", f"{EP}/a", raw(ep_envelope()),
                          {"x-moltin-secret-key": SECRET_A})
    assert r.status == 404 and receives == 0
    assert inbox.touched == [] and app.outcomes["unknown_store"] == 2


@pytest.mark.parametrize("path", [f"{SW}/a/extra", f"{SW}/" + "x" * 65, f"{EP}/c/x/y",
                                  "/webhooks/other/a", "/webhooks/a"])
def test_paths_that_cannot_name_a_store_are_404_without_a_lookup(directory: Directory,
                                                                 log: RecLog, path: str):
    inbox = UntouchableInbox()
    app = make_multi_app(inbox=inbox, directory=directory, clock=FakeClock(NOW), log=log)
    r, receives = request(app, "POST", path, b"{}")
    assert r.status == 404 and receives == 0
    assert directory.calls == [] and inbox.touched == []


def test_a_failing_directory_is_503_so_the_platform_retries(log: RecLog):
    def broken(store: str) -> WebhookTarget | None:
        raise OSError("config store unreachable")

    inbox = UntouchableInbox()
    app = make_multi_app(inbox=inbox, directory=broken, clock=FakeClock(NOW), log=log)
    r, receives = request(app, "POST", f"{SW}/a", b"{}")
    assert r.status == 503 and receives == 0 and inbox.touched == []
    (level, kw), = log.find("webhook.failed")
    assert level == "error" and kw["store"] == "a" and kw["error"] == "OSError"


# ------------------------------------------------------------------ the directory is live


def test_a_rotated_secret_and_added_or_removed_stores_apply_without_a_restart(
    app: WebhookApp, ledger: Ledger, directory: Directory
):
    assert post_sw(app, "a", envelope(eid="1"), SECRET_A).status == 200
    directory.targets["a"] = WebhookTarget("a", "shopwired", "whsec-rotated")
    assert post_sw(app, "a", envelope(eid="2"), SECRET_A).status == 401
    assert post_sw(app, "a", envelope(eid="3"), "whsec-rotated").status == 200

    assert post_sw(app, "d", envelope(eid="4"), "whsec-d").status == 404
    directory.targets["d"] = WebhookTarget("d", "shopwired", "whsec-d")
    assert post_sw(app, "d", envelope(eid="5"), "whsec-d").status == 200

    del directory.targets["b"]
    assert post_sw(app, "b", envelope(eid="6"), SECRET_B).status == 404
    assert rows(ledger) == [("a", "1"), ("a", "3"), ("d", "5")]
    assert directory.calls.count("a") == 3  # looked up per request


# ------------------------------------------------------------------ legacy route


def test_the_legacy_route_still_works_next_to_the_per_store_ones(
    ledger: Ledger, directory: Directory, log: RecLog
):
    legacy = WebhookTarget("shop", "shopwired", "whsec-legacy")
    app = make_multi_app(inbox=WebhookInbox(ledger), directory=directory,
                         clock=FakeClock(NOW), log=log, default=legacy)
    data = raw(envelope(eid="L"))
    r, _ = request(app, "POST", SW, data, {"x-shopwired-signature": sign("whsec-legacy", data)})
    assert r.json() == {"result": "accepted"}
    assert post_sw(app, "a", envelope(eid="A"), SECRET_A).status == 200
    assert rows(ledger) == [("shop", "L"), ("a", "A")]
    assert directory.calls == ["a"]  # the legacy route needs no lookup
    assert (app.store, app.source, app.path) == ("shop", "shopwired", SW)


def test_without_a_default_the_legacy_route_is_404(app: WebhookApp):
    r, receives = request(app, "POST", SW, b"{}")
    assert r.status == 404 and receives == 0
    assert request(app, "GET", "/nope")[0].status == 404


def test_make_app_is_unchanged_and_serves_no_per_store_route(ledger: Ledger, log: RecLog):
    app = make_app(inbox=WebhookInbox(ledger), secret=SECRET_A, store="a",
                   clock=FakeClock(NOW), log=log)
    data = raw(envelope())
    assert request(app, "POST", f"{SW}/a", data,
                   {"x-shopwired-signature": sign(SECRET_A, data)})[0].status == 404
    assert request(app, "POST", SW, data,
                   {"x-shopwired-signature": sign(SECRET_A, data)})[0].status == 200
    assert rows(ledger) == [("a", "1")]


def test_health_is_served_by_the_multi_app(app: WebhookApp):
    r, _ = request(app, "GET", "/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}


def test_lifespan_lists_the_per_store_routes(app: WebhookApp, log: RecLog):
    async def run() -> None:
        inbound = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return inbound.pop(0)

        async def send(m: dict[str, Any]) -> None:
            pass

        await app({"type": "lifespan"}, receive, send)

    asyncio.run(run())
    (_, kw), = log.find("webhook.receiver.start")
    assert kw["per_store"] == [f"{SW}/{{store}}", f"{EP}/{{store}}"]


# ------------------------------------------------------------------ the target


def test_the_target_hides_its_secret_and_rejects_bad_values():
    t = WebhookTarget("a", "shopwired", SECRET_A)
    assert SECRET_A not in repr(t) and SECRET_A not in json.dumps(str(t))
    with pytest.raises(ValueError, match="secret"):
        WebhookTarget("a", "shopwired", "")
    with pytest.raises(ValueError, match="secret"):
        WebhookTarget("c", "elasticpath", "   ")
    with pytest.raises(ValueError, match="source"):
        WebhookTarget("a", "woocommerce", SECRET_A)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="store"):
        WebhookTarget("", "shopwired", SECRET_A)


def test_a_receiver_needs_a_default_or_a_directory(ledger: Ledger, log: RecLog):
    with pytest.raises(ValueError, match="directory"):
        WebhookApp(inbox=WebhookInbox(ledger), clock=FakeClock(NOW), log=log, max_body=10,
                   replay_window=NOW - NOW, db_timeout=1.0, handshake="hmac")
