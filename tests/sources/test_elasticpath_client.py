"""ElasticPathClient and ElasticPathSource against the simulator and scripted handlers.

No network and no real sleeping: FakeClock everywhere.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from sync.clock import FakeClock
from sync.domain.windows import Window
from sync.errors import FatalError, RetryableError, SkippableError
from sync.httpclient import DEFAULT_TIMEOUT
from sync.outcomes import classify_elasticpath, jsonapi_errors
from sync.ratelimit import Unlimited
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sources.base import Source
from sync.sources.elasticpath import (
    ELASTICPATH_BUCKET,
    ElasticPathClient,
    ElasticPathSource,
    parse_token_response,
    split_page,
    ts_filter,
)

BASE = "https://useast.api.elasticpath.com"
CLIENT_ID = "sandbox-client-id"
SECRET = "sandbox-client-secret"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAR = T0 + timedelta(days=400)

Handler = Callable[[httpx.Request], httpx.Response]


class Tap:
    """Wraps a handler, recording every request (and optionally acting before it)."""

    def __init__(self, inner: Handler, before: Callable[[httpx.Request], None] | None = None):
        self.inner = inner
        self.before = before
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.before is not None:
            self.before(request)
        return self.inner(request)

    def lists(self) -> list[httpx.QueryParams]:
        return [r.url.params for r in self.requests if r.url.path == "/v2/orders"]


def make(
    handler: Handler, clock: FakeClock | None = None, **kw: Any
) -> tuple[ElasticPathClient, FakeClock]:
    clock = clock or FakeClock()
    kw.setdefault("limiter", Unlimited())
    client = ElasticPathClient(
        BASE, CLIENT_ID, SECRET, clock=clock, transport=httpx.MockTransport(handler),
        rng=random.Random(7), **kw,
    )
    return client, clock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> ElasticPathSimulator:
    return ElasticPathSimulator(clock=clock, seed=3, enforce_rate_limit=False)


def token_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 3600})


def scripted(*responses: httpx.Response | Exception) -> Handler:
    """Token requests always succeed; API calls get ``responses`` in turn (last repeats)."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/access_token":
            return token_ok(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def jsonapi(status: int, detail: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"status": status, "title": "T",
                                                    "detail": detail, **extra}]})


def add(sim: ElasticPathSimulator, created: datetime, updated: datetime | None = None) -> str:
    (oid,) = sim.generate_orders(1, created_between=(created, created))
    sim.touch(oid, updated or created)
    return oid


def flat(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [b["data"]["id"] for page in pages for b in page]


# ------------------------------------------------------------------------------ token


def test_token_request_and_bearer_on_every_call(sim: ElasticPathSimulator,
                                                clock: FakeClock) -> None:
    tap = Tap(sim.handle)
    client, _ = make(tap, clock)
    client.list_orders()
    client.list_orders()
    token_req, first, second = tap.requests
    assert token_req.method == "POST" and token_req.url.path == "/oauth/access_token"
    assert token_req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_req.content.decode()) == {
        "grant_type": ["client_credentials"], "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
    }
    assert "authorization" not in token_req.headers
    assert first.headers["authorization"] == second.headers["authorization"]
    assert first.headers["authorization"].startswith("Bearer ")
    assert client.token_requests == 1


def test_wrapped_token_shape(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, token_shape="data", enforce_rate_limit=False)
    client, _ = make(sim.handle, clock)
    assert client.list_orders()["data"] == []
    assert client.access_token() in sim._tokens


def test_token_renewed_before_expiry(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    client, _ = make(sim.handle, clock)
    first = client.access_token()
    clock.advance(3600 - 300 - 1)
    assert client.access_token() == first
    clock.advance(2)
    client.list_orders()
    assert client.access_token() != first
    assert client.token_requests == 2
    assert sim.responses[401] == 0  # renewed before it ever failed


def test_token_renewed_once_on_401(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    client, _ = make(sim.handle, clock)
    client.list_orders()
    sim.revoke_tokens()
    client.list_orders()
    assert client.token_requests == 2
    assert sim.responses[401] == 1


def test_401s_with_fresh_tokens_every_time_are_fatal() -> None:
    tap = Tap(scripted(jsonapi(401, "Unable to validate access token")))
    client, _ = make(tap)
    with pytest.raises(FatalError) as info:
        client.list_orders()
    assert "ELASTICPATH_CLIENT_ID/ELASTICPATH_CLIENT_SECRET" in str(info.value)
    assert [r.url.path for r in tap.requests] == [
        "/oauth/access_token", "/v2/orders", "/oauth/access_token", "/v2/orders",
        "/oauth/access_token", "/v2/orders",
    ]


def test_a_token_revoked_while_its_replacement_is_fetched_is_not_fatal(
    sim: ElasticPathSimulator, clock: FakeClock
) -> None:
    """Seen in the chaos run: the new token was revoked before its first use."""
    real_token = sim.handle

    def handler(request: httpx.Request) -> httpx.Response:
        response = real_token(request)
        if request.url.path == "/oauth/access_token" and sim.calls[
                "POST /oauth/access_token"] == 2:
            sim.revoke_tokens()  # the replacement dies on the way back
        return response

    client, _ = make(handler, clock)
    client.list_orders()
    sim.revoke_tokens()
    client.list_orders()
    assert client.token_requests == 3
    assert sim.responses[401] == 2


@pytest.mark.parametrize("status", [400, 401, 403, 422])
def test_rejected_token_request_is_fatal_and_redacted(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # A server echoing what we sent must not leak it into our errors.
        return jsonapi(status, f"bad client {CLIENT_ID} / {SECRET}")

    client, _ = make(handler)
    with pytest.raises(FatalError) as info:
        client.list_orders()
    text = str(info.value)
    assert "ELASTICPATH_CLIENT_ID/ELASTICPATH_CLIENT_SECRET" in text
    assert SECRET not in text and CLIENT_ID not in text


def test_wrong_secret_against_simulator(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    client = ElasticPathClient(BASE, CLIENT_ID, "wrong-secret-xyz", clock=clock,
                               transport=httpx.MockTransport(sim.handle), limiter=Unlimited())
    with pytest.raises(FatalError, match="refused a client-credentials token"):
        client.list_orders()


def test_parse_token_response_shapes() -> None:
    now = T0
    flat_tok = parse_token_response({"access_token": "a", "expires_in": 3600}, now)
    wrapped = parse_token_response({"data": {"access_token": "a", "expires_in": 3600}}, now)
    assert flat_tok == wrapped
    assert flat_tok.expires_at == now + timedelta(hours=1)
    assert flat_tok.renew_at == now + timedelta(minutes=55)
    by_epoch = parse_token_response(
        {"access_token": "a", "expires": int((now + timedelta(minutes=30)).timestamp())}, now
    )
    assert by_epoch.expires_at == now + timedelta(minutes=30)
    both = parse_token_response(
        {"access_token": "a", "expires_in": 3600,
         "expires": int((now + timedelta(minutes=20)).timestamp())}, now,
    )
    assert both.expires_at == now + timedelta(minutes=20)  # the earlier wins
    skewed = parse_token_response(
        {"access_token": "a", "expires": int((now - timedelta(hours=2)).timestamp())}, now
    )
    assert skewed.expires_at == now + timedelta(hours=1)  # a past epoch is ignored
    short = parse_token_response({"access_token": "a", "expires_in": 60}, now)
    assert short.renew_at == now + timedelta(seconds=30)  # half-life, not margin
    for bad in ({}, {"access_token": ""}, {"data": {"token": "x"}}, [], "x"):
        with pytest.raises(RetryableError):
            parse_token_response(bad, now)


# ------------------------------------------------------------------------------ list


def test_list_query_parameters(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    tap = Tap(sim.handle)
    client, _ = make(tap, clock)
    client.list_orders(
        filters=[ts_filter("ge", "updated_at", datetime(2026, 1, 2, 3, 4, 5, 678901,
                                                        tzinfo=UTC))],
        limit=100, offset=200,
    )
    params = tap.lists()[0]
    assert params["filter"] == 'ge(updated_at,"2026-01-02T03:04:05.678Z")'
    assert params["sort"] == "updated_at"
    assert params["page[limit]"] == "100"
    assert params["page[offset]"] == "200"
    assert params["include"] == "items"


def test_list_argument_validation(sim: ElasticPathSimulator) -> None:
    client, _ = make(sim.handle)
    for kwargs in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 10_001}):
        with pytest.raises(ValueError):
            client.list_orders(**kwargs)


def test_ts_filter_rounding() -> None:
    dt = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert ts_filter("ge", "created_at", dt) == 'ge(created_at,"2026-01-01T00:00:00.123Z")'
    assert ts_filter("le", "created_at", dt) == 'le(created_at,"2026-01-01T00:00:00.124Z")'
    exact = dt.replace(microsecond=123000)
    assert ts_filter("le", "updated_at", exact) == 'le(updated_at,"2026-01-01T00:00:00.123Z")'
    with pytest.raises(ValueError):
        ts_filter("like", "updated_at", dt)
    with pytest.raises(ValueError):
        ts_filter("ge", "status", dt)


def test_split_page_gives_each_order_its_own_items(sim: ElasticPathSimulator) -> None:
    client, _ = make(sim.handle)
    sim.generate_orders(12)
    body = client.list_orders()
    bundles = split_page(body)
    assert len(bundles) == 12
    for b in bundles:
        oid = b["data"]["id"]
        assert b["included"]["items"] == sim.items[oid]
    assert split_page({"data": ["junk"]}) == [{"data": "junk"}]


# ------------------------------------------------------------------------------ delta scan


def test_scan_returns_every_order_once_oldest_update_first(
    sim: ElasticPathSimulator, clock: FakeClock
) -> None:
    ids = sim.generate_orders(450, created_between=(T0, T0 + timedelta(days=20)))
    tap = Tap(sim.handle)
    client, _ = make(tap, clock)
    pages = list(client.iter_orders_updated(T0, FAR))
    seen = flat(pages)
    assert sorted(seen) == sorted(ids)
    assert seen == sim.updated_ids()
    assert all(pages)
    assert all(p["page[offset]"] == "0" for p in tap.lists())  # the window moves instead
    assert all(p["page[limit]"] == "100" for p in tap.lists())
    assert all("le(updated_at," in p["filter"] for p in tap.lists())


def test_scan_window_bounds(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    before = add(sim, T0, T0 + timedelta(hours=1))
    inside = [add(sim, T0, T0 + timedelta(hours=h)) for h in (2, 3, 4)]
    after = add(sim, T0, T0 + timedelta(hours=5))
    client, _ = make(sim.handle, clock)
    got = flat(list(client.iter_orders_updated(T0 + timedelta(hours=2),
                                               T0 + timedelta(hours=4))))
    assert got == inside
    assert before not in got and after not in got
    assert list(client.iter_orders_updated(T0 + timedelta(days=9))) == []


def test_scan_through_ties_uses_offsets(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    tied = [add(sim, T0, T0 + timedelta(hours=1)) for _ in range(250)]
    later = [add(sim, T0, T0 + timedelta(hours=2)) for _ in range(30)]
    tap = Tap(sim.handle)
    client, _ = make(tap, clock)
    seen = flat(list(client.iter_orders_updated(T0)))
    assert sorted(seen) == sorted(tied + later) and len(seen) == 280
    offsets = [int(p["page[offset]"]) for p in tap.lists()]
    # the window moves to the tie first (offset 0), then steps through it by offset
    assert offsets[:4] == [0, 0, 100, 200]


def test_more_ties_than_the_offset_cap_is_fatal(sim: ElasticPathSimulator,
                                                clock: FakeClock) -> None:
    for _ in range(40):
        add(sim, T0, T0 + timedelta(hours=1))
    client, _ = make(sim.handle, clock, offset_cap=25)
    with pytest.raises(FatalError, match="share updated_at"):
        list(client.iter_orders_updated(T0, page_limit=10))


def test_scan_never_exceeds_a_small_server_offset_cap(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, seed=4, enforce_rate_limit=False, max_offset=150)
    ids = sim.generate_orders(1200, created_between=(T0, T0 + timedelta(days=5)))
    tap = Tap(sim.handle)
    client, _ = make(tap, clock, offset_cap=150)
    assert sorted(flat(list(client.iter_orders_updated(T0, FAR)))) == sorted(ids)
    assert sim.responses[400] == 0
    assert max(int(p["page[offset]"]) for p in tap.lists()) <= 150


def test_updates_during_the_scan_lose_nothing(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, seed=9, enforce_rate_limit=False)
    ids = sim.generate_orders(500, created_between=(T0, T0 + timedelta(days=10)))
    order_by_update = sim.updated_ids()
    rng = random.Random(1)
    lists = 0

    def churn(request: httpx.Request) -> None:
        nonlocal lists
        if request.url.path != "/v2/orders":
            return
        lists += 1
        if lists >= 2:  # between pages: some orders not read yet, some read, are changed
            clock.advance(1)
            for oid in rng.sample(order_by_update[200:], 5) + rng.sample(order_by_update[:100], 2):
                sim.touch(oid)

    client, _ = make(Tap(sim.handle, churn), clock)
    seen = flat(list(client.iter_orders_updated(T0)))
    assert set(seen) == set(ids)  # nothing skipped
    assert len(seen) >= len(ids)  # changed ones may come again, with their new state


def test_missing_included_items_are_fetched_per_order(
    sim: ElasticPathSimulator, clock: FakeClock
) -> None:
    ids = sim.generate_orders(5)

    def strip_included(request: httpx.Request) -> httpx.Response:
        resp = sim.handle(request)
        if request.url.path == "/v2/orders":
            body = json.loads(resp.content)
            body.pop("included", None)
            return httpx.Response(200, json=body)
        return resp

    client, _ = make(strip_included, clock)
    source = ElasticPathSource(client)
    pages = list(source.new_order_pages(Window(T0 - timedelta(days=60), FAR)))
    orders = [source.parse(raw) for page in pages for raw in page]
    assert sorted(o.order_id for o in orders) == sorted(ids)
    assert all(o.lines for o in orders)
    assert client.calls["orders/{id}/items"] == 5


# ------------------------------------------------------------------------------ throttling


def test_429_is_waited_out_and_the_request_repeated(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, seed=1)  # 25/s enforced
    client, _ = make(sim.handle, clock)  # no client-side limiter: provoke 429s
    for _ in range(40):
        client.list_orders(limit=1)
    assert sim.throttled > 0
    assert client.throttled == sim.throttled
    assert clock.slept  # backoff through the injected clock, never real sleep
    assert client.calls["orders"] == 40 + sim.throttled


def test_default_limiter_keeps_under_25_per_second(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, seed=1)
    client = ElasticPathClient(BASE, CLIENT_ID, SECRET, clock=clock,
                               transport=httpx.MockTransport(sim.handle))
    assert ELASTICPATH_BUCKET.capacity + ELASTICPATH_BUCKET.leak_per_second <= 25
    for _ in range(120):
        client.list_orders(limit=1)
    assert sim.throttled == 0


def test_429_with_retry_after_then_gives_up() -> None:
    throttled = jsonapi(429, "Too many requests")
    throttled.headers["Retry-After"] = "7"
    client, clock = make(scripted(throttled), max_retries=2)
    with pytest.raises(RetryableError) as info:
        client.list_orders()
    assert info.value.retry_after == 7.0 and info.value.status == 429
    assert clock.slept == [7.0, 7.0]
    client0, clock0 = make(scripted(throttled), max_retries=0)
    with pytest.raises(RetryableError):
        client0.list_orders()
    assert clock0.slept == []


def test_long_retry_after_is_not_waited_in_process() -> None:
    throttled = jsonapi(429, "slow down")
    throttled.headers["Retry-After"] = "3600"
    client, clock = make(scripted(throttled))
    with pytest.raises(RetryableError) as info:
        client.list_orders()
    assert info.value.retry_after == 3600.0
    assert clock.slept == []


def test_429_without_retry_after_backs_off_then_succeeds() -> None:
    ok = httpx.Response(200, json={"data": [], "meta": {}})
    client, clock = make(scripted(jsonapi(429, "x"), jsonapi(429, "x"), ok))
    assert client.list_orders()["data"] == []
    assert len(clock.slept) == 2 and all(0 <= s <= 30 for s in clock.slept)


# ------------------------------------------------------------------------------ outcomes


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (jsonapi(500, "boom", request_id="req-1"), RetryableError),
        (httpx.Response(503, text="<html>503</html>"), RetryableError),
        (jsonapi(409, "conflict"), RetryableError),
        (jsonapi(400, "Could not parse the supplied filter"), FatalError),
        (jsonapi(403, "forbidden"), FatalError),
        (jsonapi(404, "no such route"), FatalError),
        (httpx.Response(301, headers={"Location": "https://elsewhere"}), FatalError),
        (httpx.Response(200, text='{"data": [tru'), RetryableError),
        (httpx.Response(200, json=[1, 2]), RetryableError),
        (httpx.Response(200, json={"meta": {}}), RetryableError),
        (httpx.ReadTimeout("slow"), RetryableError),
        (httpx.ConnectError("refused"), RetryableError),
        (httpx.UnsupportedProtocol("ftp"), FatalError),
    ],
)
def test_list_outcomes(response: httpx.Response | Exception, error: type[Exception]) -> None:
    client, _ = make(scripted(response))
    with pytest.raises(error):
        client.list_orders()


def test_error_messages_carry_jsonapi_details() -> None:
    client, _ = make(scripted(jsonapi(400, "Could not parse the supplied filter")))
    with pytest.raises(FatalError, match="Could not parse the supplied filter"):
        client.list_orders(filters=["nonsense"])
    client, _ = make(scripted(jsonapi(500, "boom", request_id="req-42")))
    with pytest.raises(RetryableError, match="req-42"):
        client.list_orders()


def test_jsonapi_errors_shapes() -> None:
    assert jsonapi_errors(json.dumps({"errors": [
        {"status": 422, "title": "Unprocessable", "detail": "Order cannot be updated"},
        {"status": "400", "title": "Bad"},
    ]})) == ["Unprocessable: Order cannot be updated (status 422)", "Bad (status 400)"]
    assert jsonapi_errors('{"errors": {"status": 401, "title": "Unauthorized"}}') == [
        "Unauthorized (status 401)"
    ]
    assert jsonapi_errors(json.dumps({"errors": [{"detail": "x", "request_id": "r1"}]})) == [
        "x (request r1)"
    ]
    for junk in ("", "<html>", "[]", '{"errors": 5}', '{"errors": [1, null]}'):
        assert jsonapi_errors(junk) == []


@pytest.mark.parametrize(
    ("status", "read", "write"),
    [(400, "fatal", "skip"), (401, "fatal", "fatal"), (403, "fatal", "fatal"),
     (404, "not_found", "skip"), (405, "fatal", "fatal"), (409, "retry", "retry"),
     (418, "fatal", "skip"), (422, "fatal", "skip"), (429, "retry", "retry"),
     (500, "retry", "retry"), (503, "retry", "retry"), (302, "fatal", "fatal"),
     (200, "ok", "ok"), (700, "retry", "retry")],
)
def test_outcome_table(status: int, read: str, write: str) -> None:
    body = "{}" if status == 200 else ""
    assert classify_elasticpath(status, None, body, None).kind == read
    assert classify_elasticpath(status, None, body, None, write=True).kind == write


def test_retry_after_parsed_only_for_retries() -> None:
    assert classify_elasticpath(429, None, "", "12").retry_after == 12.0
    assert classify_elasticpath(400, None, "", "12").retry_after is None


# ------------------------------------------------------------------------------ single orders


def test_get_order_and_get_orders(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    a, b = sim.generate_orders(2)
    client, _ = make(sim.handle, clock)
    bundle = client.get_order(a)
    assert bundle is not None
    assert bundle["data"]["id"] == a and bundle["included"]["items"] == sim.items[a]
    gone = "00000000-0000-4000-8000-000000000000"
    assert client.get_order(gone) is None
    got = client.get_orders([a, gone, b, a])
    assert [x["data"]["id"] for x in got] == [a, b]
    assert client.calls["orders/{id}"] == 2 + 3  # duplicates asked for once
    for bad in ("", "../orders", "a/b", "x" * 65, 5):
        with pytest.raises(ValueError):
            client.get_order(bad)  # type: ignore[arg-type]


def test_get_order_items(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    (oid,) = sim.generate_orders(1)
    client, _ = make(sim.handle, clock)
    assert client.get_order_items(oid) == sim.items[oid]
    assert client.get_order_items("00000000-0000-4000-8000-000000000000") is None


def test_count_orders(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    sim.generate_orders(70, created_between=(T0, T0 + timedelta(days=10)))
    client, _ = make(sim.handle, clock)
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=6)
    assert client.count_orders(created_from=start, created_to=end) == len(
        sim.created_ids(start, end)
    )
    assert client.count_orders() == 70
    bad, _ = make(scripted(httpx.Response(200, json={"data": [], "meta": {}})))
    with pytest.raises(RetryableError):
        bad.count_orders()
    as_text, _ = make(scripted(httpx.Response(
        200, json={"data": [], "meta": {"results": {"total": "12"}}})))
    assert as_text.count_orders() == 12


# ------------------------------------------------------------------------------ external_ref


def test_update_external_ref(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    (oid,) = sim.generate_orders(1)
    tap = Tap(sim.handle)
    client, _ = make(tap, clock)
    data = client.update_external_ref(oid, "WP-12345")
    assert data["external_ref"] == "WP-12345"
    assert sim.orders[oid]["external_ref"] == "WP-12345"
    put = tap.requests[-1]
    assert put.method == "PUT" and put.url.path == f"/v2/orders/{oid}"
    assert put.headers["content-type"] == "application/json"
    assert json.loads(put.content) == {"data": {"type": "order", "external_ref": "WP-12345"}}
    client.update_external_ref(oid, "")
    assert "external_ref" not in sim.orders[oid]
    assert client.update_external_ref(oid, "x" * 64)["external_ref"] == "x" * 64


def test_external_ref_limit_is_enforced_before_any_call(sim: ElasticPathSimulator) -> None:
    (oid,) = sim.generate_orders(1)
    tap = Tap(sim.handle)
    client, _ = make(tap)
    with pytest.raises(ValueError, match="64"):
        client.update_external_ref(oid, "x" * 65)
    with pytest.raises(ValueError):
        client.update_external_ref(oid, 42)  # type: ignore[arg-type]
    assert tap.requests == []


def test_update_external_ref_errors(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    client, _ = make(sim.handle, clock)
    with pytest.raises(SkippableError, match="Not Found"):
        client.update_external_ref("00000000-0000-4000-8000-000000000000", "x")
    unprocessable, _ = make(scripted(jsonapi(422, "Order cannot be updated in its current "
                                                  "state")))
    with pytest.raises(SkippableError, match="current state"):
        unprocessable.update_external_ref("abc", "x")
    busy, _ = make(scripted(jsonapi(503, "busy")))
    with pytest.raises(RetryableError):
        busy.update_external_ref("abc", "x")


def test_put_401_object_shape_triggers_renewal(sim: ElasticPathSimulator,
                                               clock: FakeClock) -> None:
    (oid,) = sim.generate_orders(1)
    client, _ = make(sim.handle, clock)
    client.access_token()
    sim.revoke_tokens()
    assert client.update_external_ref(oid, "WP-9")["external_ref"] == "WP-9"
    assert client.token_requests == 2


# ------------------------------------------------------------------------------ construction


def test_base_url_forms_and_timeouts(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    for base in (BASE, BASE + "/", BASE + "/v2", BASE + "/v2/"):
        tap = Tap(sim.handle)
        client = ElasticPathClient(base, CLIENT_ID, SECRET, clock=clock,
                                   transport=httpx.MockTransport(tap), limiter=Unlimited())
        client.list_orders()
        assert [str(r.url).split("?")[0] for r in tap.requests] == [
            BASE + "/oauth/access_token", BASE + "/v2/orders",
        ]
        assert client._http.timeout == DEFAULT_TIMEOUT
        client.close()
    custom = httpx.Timeout(5, connect=2)
    with ElasticPathClient(BASE, CLIENT_ID, SECRET, clock=clock, timeout=custom) as c:
        assert c._http.timeout == custom
    for bad in ({"base_url": " "}, {"client_id": ""}, {"client_secret": ""}):
        args = {"base_url": BASE, "client_id": CLIENT_ID, "client_secret": SECRET, **bad}
        with pytest.raises(ValueError):
            ElasticPathClient(args["base_url"], args["client_id"], args["client_secret"],
                              clock=clock)


# ------------------------------------------------------------------------------ source


def test_source_protocol(sim: ElasticPathSimulator, clock: FakeClock) -> None:
    ids = sim.generate_orders(30, created_between=(T0, T0 + timedelta(days=3)))
    client, _ = make(sim.handle, clock)
    source: Source = ElasticPathSource(client)
    assert source.name == "elasticpath"
    assert len(source.statuses()) == 48
    window = Window(T0, FAR)
    raws = [raw for page in source.new_order_pages(window) for raw in page]
    assert sorted(source.raw_id(r) or "" for r in raws) == sorted(ids)
    parsed = [source.parse(r) for r in raws]
    assert {o.order_id for o in parsed} == set(ids)
    fetched = source.fetch_by_ids([ids[0], "not an id!", ids[1]])
    assert [source.raw_id(r) for r in fetched] == [ids[0], ids[1]]
    assert source.fetch_by_ids([]) == [] and source.fetch_by_ids(["../x"]) == []
    assert source.count_created(Window(T0, T0 + timedelta(days=3))) == 30
    assert source.raw_id({"data": {"id": 5}}) is None and source.raw_id("x") is None
    source.close()


def test_source_window_is_an_updated_at_window(sim: ElasticPathSimulator,
                                               clock: FakeClock) -> None:
    old = add(sim, T0 - timedelta(days=300), T0 + timedelta(hours=1))  # created long ago
    add(sim, T0 - timedelta(days=300))
    client, _ = make(sim.handle, clock)
    source = ElasticPathSource(client)
    pages = list(source.new_order_pages(Window(T0, T0 + timedelta(hours=2))))
    assert flat(pages) == [old]
