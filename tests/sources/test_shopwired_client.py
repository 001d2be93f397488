"""ShopWiredClient against hand-written MockTransport handlers (no network, no real sleeping)."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from sync.clock import FakeClock
from sync.errors import FatalError, RetryableError
from sync.ratelimit import LeakyBucket, Unlimited
from sync.sources.shopwired import ORDER_FIELDS, ShopWiredClient

BASE = "https://api.ecommerceapi.uk/v1"
KEY = "sw-key-1234567890"
SECRET = "sw-secret-abcdefghij"
FROM = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
TO = datetime(2026, 1, 2, 0, 0, 0, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that replays scripted responses and records requests."""

    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return item
        return item(request)


def make(
    handler: Handler,
    clock: FakeClock | None = None,
    **kw: object,
) -> tuple[ShopWiredClient, FakeClock]:
    clock = clock or FakeClock()
    client = ShopWiredClient(
        BASE,
        KEY,
        SECRET,
        clock=clock,
        transport=httpx.MockTransport(handler),
        rng=random.Random(7),
        **kw,  # type: ignore[arg-type]
    )
    return client, clock


def orders(start: int, n: int) -> list[dict[str, object]]:
    return [{"id": i, "reference": 1000 + i} for i in range(start, start + n)]


def ok(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


# -- URLs, auth, query ------------------------------------------------------------------------


def test_list_orders_url_auth_and_query() -> None:
    rec = Recorder(ok(orders(1, 3)))
    client, _ = make(rec)
    page = client.list_orders(created_from=FROM, created_to=TO, offset=200)
    assert [o["id"] for o in page] == [1, 2, 3]
    (req,) = rec.requests
    assert req.method == "GET"
    assert req.url.scheme == "https"
    assert req.url.host == "api.ecommerceapi.uk"
    assert req.url.path == "/v1/orders"
    params = req.url.params
    assert params["from"] == str(int(FROM.timestamp())) == "1767225600"
    assert params["to"] == "1767312000"
    assert params["count"] == "100"
    assert params["offset"] == "200"
    assert params["sort"] == "date"
    assert params["fields"].split(",") == list(ORDER_FIELDS)
    expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert req.headers["Authorization"] == expected
    assert req.headers["Accept"] == "application/json"
    assert req.headers["User-Agent"] == "ordersync/0.1"
    assert client.calls["orders"] == 1


@pytest.mark.parametrize("base", [BASE, BASE + "/", BASE + "//"])
def test_base_url_keeps_the_version_segment(base: str) -> None:
    rec = Recorder(ok({"count": 4}), ok([]))
    client = ShopWiredClient(
        base, KEY, SECRET, clock=FakeClock(), transport=httpx.MockTransport(rec)
    )
    assert client.count_orders() == 4
    client.order_statuses()
    assert [r.url.path for r in rec.requests] == ["/v1/orders/count", "/v1/order-statuses"]


def test_naive_datetimes_are_utc_and_fields_none_omits_the_param() -> None:
    rec = Recorder(ok([]))
    client, _ = make(rec)
    client.list_orders(
        created_from=datetime(2026, 1, 1), created_to=datetime(2026, 1, 2), offset=0, fields=None
    )
    params = rec.requests[0].url.params
    assert params["from"] == "1767225600"
    assert "fields" not in params


@pytest.mark.parametrize("count", [0, 101, -1])
def test_count_must_be_1_to_100(count: int) -> None:
    client, _ = make(Recorder(ok([])))
    with pytest.raises(ValueError):
        client.list_orders(created_from=FROM, created_to=TO, offset=0, count=count)


# -- paging -----------------------------------------------------------------------------------


def test_paging_stops_on_a_short_page() -> None:
    rec = Recorder(ok(orders(1, 100)), ok(orders(101, 100)), ok(orders(201, 7)))
    client, _ = make(rec)
    pages = list(client.iter_orders_in_window(FROM, TO))
    assert [len(p) for p in pages] == [100, 100, 7]
    assert [r.url.params["offset"] for r in rec.requests] == ["0", "100", "200"]
    assert all(r.url.params["count"] == "100" for r in rec.requests)


def test_paging_stops_on_an_empty_page_without_yielding_it() -> None:
    rec = Recorder(ok(orders(1, 2)), ok([]))
    client, _ = make(rec)
    pages = list(client.iter_orders_in_window(FROM, TO, page_size=2))
    assert pages == [orders(1, 2)]
    assert len(rec.requests) == 2


def test_paging_empty_window() -> None:
    client, _ = make(Recorder(ok([])))
    assert list(client.iter_orders_in_window(FROM, TO)) == []


def test_paging_refuses_to_loop_when_offset_is_ignored() -> None:
    client, _ = make(Recorder(ok(orders(1, 2))))
    with pytest.raises(RetryableError):
        list(client.iter_orders_in_window(FROM, TO, page_size=2))


def test_non_list_page_is_retryable_not_a_type_error() -> None:
    client, _ = make(Recorder(ok({"orders": []})))
    with pytest.raises(RetryableError):
        list(client.iter_orders_in_window(FROM, TO))


def test_truncated_page_is_retryable() -> None:
    client, _ = make(Recorder(httpx.Response(200, text='[{"id": 1}, {"id"')))
    with pytest.raises(RetryableError, match="truncated"):
        client.list_orders(created_from=FROM, created_to=TO, offset=0)


def test_bad_items_are_returned_as_they_are() -> None:
    client, _ = make(Recorder(ok([{"id": 1}, "junk", None, 5])))
    assert list(client.iter_orders_in_window(FROM, TO)) == [[{"id": 1}, "junk", None, 5]]


# -- by id / single / count / statuses --------------------------------------------------------


def test_get_orders_by_ids_batches_of_50() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = [int(i) for i in request.url.params["ids"].split(",")]
        return ok([{"id": i} for i in ids if i % 10 != 0])  # multiples of 10 were deleted

    rec = Recorder(handler)
    client, _ = make(rec)
    ids = [*range(1, 121), 5, 6]  # duplicates asked once
    got = client.get_orders_by_ids(ids)
    batches = [r.url.params["ids"].split(",") for r in rec.requests]
    assert [len(b) for b in batches] == [50, 50, 20]
    assert batches[0][:3] == ["1", "2", "3"]
    assert rec.requests[0].url.params["count"] == "50"
    assert rec.requests[2].url.params["count"] == "20"
    assert rec.requests[0].url.params["fields"].split(",") == list(ORDER_FIELDS)
    assert [o["id"] for o in got] == [i for i in range(1, 121) if i % 10 != 0]
    assert client.calls["orders"] == 3


def test_get_orders_by_ids_empty_makes_no_call() -> None:
    rec = Recorder(ok([]))
    client, _ = make(rec)
    assert client.get_orders_by_ids([]) == []
    assert rec.requests == []


def test_get_orders_by_ids_rejects_non_ints() -> None:
    client, _ = make(Recorder(ok([])))
    with pytest.raises(TypeError):
        client.get_orders_by_ids(["1"])  # type: ignore[list-item]


def test_get_order_and_404() -> None:
    rec = Recorder(ok({"id": 255, "reference": 1001}), httpx.Response(404, json={"code": 404}))
    client, _ = make(rec)
    assert client.get_order(255) == {"id": 255, "reference": 1001}
    assert client.get_order(256) is None
    assert [r.url.path for r in rec.requests] == ["/v1/orders/255", "/v1/orders/256"]
    assert client.calls["orders/{id}"] == 2


def test_404_on_a_list_endpoint_means_a_wrong_base_url() -> None:
    client, _ = make(Recorder(httpx.Response(404)))
    with pytest.raises(FatalError, match="SHOPWIRED_BASE_URL"):
        client.list_orders(created_from=FROM, created_to=TO, offset=0)


def test_count_orders_with_window() -> None:
    rec = Recorder(ok({"count": "99"}))
    client, _ = make(rec)
    assert client.count_orders(created_from=FROM, created_to=TO) == 99
    params = rec.requests[0].url.params
    assert (params["from"], params["to"]) == ("1767225600", "1767312000")


@pytest.mark.parametrize("body", [{}, {"count": "many"}, {"count": -1}, [1]])
def test_count_orders_unusable_body_is_retryable(body: object) -> None:
    client, _ = make(Recorder(ok(body)))
    with pytest.raises(RetryableError):
        client.count_orders()


def test_order_statuses_bare_array() -> None:
    statuses = [{"id": 1, "name": "Paid", "type": "paid"}]
    client, _ = make(Recorder(ok(statuses)))
    assert client.order_statuses() == statuses


# -- throttling -------------------------------------------------------------------------------


def test_429_with_retry_after_waits_exactly_then_retries_the_same_url() -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "7"}), ok(orders(1, 1)))
    client, clock = make(rec)
    page = client.list_orders(created_from=FROM, created_to=TO, offset=300)
    assert page == orders(1, 1)
    assert clock.slept == [7.0]
    assert rec.requests[0].url == rec.requests[1].url
    assert client.throttled == 1
    assert client.calls["orders"] == 2


def test_429_with_an_http_date_retry_after() -> None:
    clock = FakeClock()  # 2026-01-15 12:00:00 UTC
    rec = Recorder(
        httpx.Response(429, headers={"Retry-After": "Thu, 15 Jan 2026 12:00:12 GMT"}), ok([])
    )
    client, _ = make(rec, clock=clock)
    client.order_statuses()
    assert clock.slept == [12.0]


def test_503_with_retry_after_is_waited_out_too() -> None:
    rec = Recorder(httpx.Response(503, headers={"Retry-After": "2"}), ok([]))
    client, clock = make(rec)
    client.order_statuses()
    assert clock.slept == [2.0]


def test_429_without_retry_after_backs_off_with_capped_jitter() -> None:
    rec = Recorder(*([httpx.Response(429)] * 8), ok([]))
    client, clock = make(rec, limiter=Unlimited())
    client.order_statuses()
    assert len(clock.slept) == 8
    caps = [min(30.0, 2.0**i) for i in range(8)]
    assert all(0 <= s <= cap for s, cap in zip(clock.slept, caps, strict=True))
    assert max(clock.slept) <= 30.0
    assert client.throttled == 8


def test_429_backoff_is_reproducible_with_a_seeded_rng() -> None:
    slept = []
    for _ in range(2):
        client, clock = make(Recorder(httpx.Response(429), ok([])), limiter=Unlimited())
        client.order_statuses()
        slept.append(clock.slept)
    assert slept[0] == slept[1]


def test_429_gives_up_after_max_retries() -> None:
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "1"}))
    client, clock = make(rec, max_retries=3)
    with pytest.raises(RetryableError) as err:
        client.order_statuses()
    assert len(rec.requests) == 4
    assert clock.slept == [1.0, 1.0, 1.0]
    assert err.value.status == 429


def test_huge_retry_after_is_not_slept_in_process() -> None:
    client, clock = make(Recorder(httpx.Response(429, headers={"Retry-After": "3600"})))
    with pytest.raises(RetryableError) as err:
        client.order_statuses()
    assert err.value.retry_after == 3600.0
    assert clock.slept == []


def test_429_penalises_a_shared_limiter() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(36, 2.0, clock)
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "5"}), ok([]))
    client, _ = make(rec, clock=clock, limiter=bucket)
    client.order_statuses()
    # the server's bucket was full: ours is modelled as full minus what drained in 5 s
    assert bucket.level() == pytest.approx(36 - 10 + 1)


def test_requests_wait_on_the_limiter() -> None:
    clock = FakeClock()
    client, _ = make(Recorder(ok([])), clock=clock, limiter=LeakyBucket(2, 2.0, clock))
    for _ in range(4):
        client.order_statuses()
    assert clock.slept == [pytest.approx(0.5), pytest.approx(0.5)]


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_fatal_names_env_vars_and_hides_the_secret(status: int) -> None:
    body = json.dumps({"code": 1, "message": f"bad key {KEY}:{SECRET}"})
    client, _ = make(Recorder(httpx.Response(status, text=body)))
    with pytest.raises(FatalError) as err:
        client.order_statuses()
    message = str(err.value)
    assert "SHOPWIRED_API_KEY/SHOPWIRED_API_SECRET" in message
    assert SECRET not in message
    assert KEY not in message


def test_400_is_fatal() -> None:
    client, _ = make(Recorder(httpx.Response(400, json={"code": 2, "message": "Bad filter"})))
    with pytest.raises(FatalError, match="Bad filter"):
        client.list_orders(created_from=FROM, created_to=TO, offset=0)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_is_retried_in_place_then_raised(status: int) -> None:
    # Issue 11: a 5xx no longer fails the pass; the same read is retried with capped jitter.
    rec = Recorder(httpx.Response(status, text="oops"))
    client, clock = make(rec, limiter=Unlimited())
    with pytest.raises(RetryableError) as err:
        client.order_statuses()
    assert err.value.status == status
    assert len(rec.requests) == 9
    assert all(0 <= s <= min(30.0, 2.0**i) for i, s in enumerate(clock.slept))


@pytest.mark.parametrize(
    "fault",
    [httpx.Response(500, text="oops"), httpx.Response(503, text="<html>busy</html>"),
     httpx.ReadTimeout("slow"), httpx.ConnectError("reset"),
     httpx.RemoteProtocolError("peer closed"), httpx.Response(200, text='[{"id": 1')],
)
def test_transient_read_faults_are_retried_in_place(fault: object) -> None:
    rec = Recorder(fault, fault, ok([{"id": 1}]))  # type: ignore[arg-type]
    client, clock = make(rec, limiter=Unlimited())
    assert client.order_statuses() == [{"id": 1}]
    assert len(rec.requests) == 3 and len(clock.slept) == 2


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
        httpx.ReadError("connection reset"),
    ],
)
def test_transport_errors_are_retryable(exc: Exception) -> None:
    client, _ = make(Recorder(exc))
    with pytest.raises(RetryableError) as err:
        client.list_orders(created_from=FROM, created_to=TO, offset=0)
    assert err.value.__cause__ is exc


def test_secret_in_a_transport_error_message_is_redacted() -> None:
    token = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    client, _ = make(Recorder(httpx.LocalProtocolError(f"Illegal header value b'Basic {token}'")))
    with pytest.raises(FatalError) as err:
        client.order_statuses()
    assert token not in str(err.value)
    assert SECRET not in str(err.value)


def test_logs_one_debug_line_per_call_without_credentials() -> None:
    events: list[tuple[str, dict[str, object]]] = []

    class Log:
        def debug(self, event: str, **kw: object) -> None:
            events.append((event, kw))

    rec = Recorder(httpx.Response(429, headers={"Retry-After": "1"}), ok([]))
    client, _ = make(rec, logger=Log())
    client.order_statuses()
    assert len(events) == 2
    assert events[1][1]["endpoint"] == "order-statuses"
    assert events[1][1]["status"] == 200
    assert "duration_ms" in events[1][1]
    assert SECRET not in repr(events) and KEY not in repr(events)


def test_context_manager_closes() -> None:
    client, _ = make(Recorder(ok([])))
    with client as c:
        c.order_statuses()
    with pytest.raises(RuntimeError):
        client.order_statuses()
