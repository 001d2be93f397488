"""WiredPlusClient against hand-written MockTransport handlers (no network, no real sleeping)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from sync.clock import FakeClock
from sync.errors import FatalError, RetryableError, SkippableError, Throttled
from sync.ratelimit import HourlyBudget, Unlimited
from sync.sinks.wiredplus import AccountInfo, WiredPlusClient

BASE = "https://api.wiredplus.com/v1"
USER = "ordersync"
KEY = "wp-key-0123456789abcdef"

Handler = Callable[[httpx.Request], httpx.Response]

ORDER = {
    "api_integration": "ShopWired",
    "api_resource": "order",
    "api_reference_id": "shop1-255",
    "order_reference": "1001",
    "customer_email": "foo@bar.com",
    "grand_total": 17.5,
    "number_of_products": 2,
    "order_lines": [{"order_line_id": "255-1", "quantity": 2, "row_total": 10.0}],
}
EVENT = {
    "event_reference": "shop1-255:dispatched",
    "order_id": "9876",
    "event_type": "dispatched",
    "event_date": "2026-01-15T12:00:00Z",
}


class Recorder:
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


def make(handler: Handler, clock: FakeClock | None = None, **kw: object) -> WiredPlusClient:
    return WiredPlusClient(
        BASE,
        USER,
        KEY,
        clock=clock or FakeClock(),
        transport=httpx.MockTransport(handler),
        **kw,  # type: ignore[arg-type]
    )


def ok(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


# -- happy path -------------------------------------------------------------------------------


def test_update_order_posts_compact_json_with_basic_auth() -> None:
    rec = Recorder(ok({"id": 9876, "status": 200, "message": "Order created"}))
    client = make(rec)
    assert client.update_order(ORDER) == "9876"
    (req,) = rec.requests
    assert req.method == "POST"
    assert str(req.url) == "https://api.wiredplus.com/v1/UpdateOrder"
    assert req.headers["Content-Type"] == "application/json"
    assert req.content == json.dumps(ORDER, separators=(",", ":")).encode()
    assert json.loads(req.content) == ORDER
    expected = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    assert req.headers["Authorization"] == expected
    assert req.headers["Accept"] == "application/json"
    assert client.calls["UpdateOrder"] == 1


def test_same_payload_same_bytes() -> None:
    rec = Recorder(ok({"id": "1"}))
    client = make(rec)
    client.update_order(ORDER)
    client.update_order(dict(ORDER))
    assert rec.requests[0].content == rec.requests[1].content


@pytest.mark.parametrize(
    ("raw", "expected"), [("abc123", "abc123"), (42, "42"), (" 42 ", "42"), (42.0, "42")]
)
def test_ids_are_coerced_to_str(raw: object, expected: str) -> None:
    client = make(Recorder(ok({"id": raw})))
    assert client.update_order(ORDER) == expected


def test_create_order_event() -> None:
    rec = Recorder(ok({"id": "492a93255ab4", "status": 200, "message": "Event created"}))
    client = make(rec)
    assert client.create_order_event(EVENT) == "492a93255ab4"
    assert rec.requests[0].url.path == "/v1/CreateOrderEvent"
    assert json.loads(rec.requests[0].content) == EVENT
    assert client.calls["CreateOrderEvent"] == 1


def test_base_url_with_trailing_slash() -> None:
    rec = Recorder(ok({"id": 1}))
    client = WiredPlusClient(
        BASE + "/", USER, KEY, clock=FakeClock(), transport=httpx.MockTransport(rec)
    )
    client.update_order(ORDER)
    assert rec.requests[0].url.path == "/v1/UpdateOrder"


def test_payload_that_is_not_json_ready_is_a_bug() -> None:
    client = make(Recorder(ok({"id": 1})))
    with pytest.raises(ValueError):
        client.update_order({**ORDER, "grand_total": float("nan")})


# -- account info -----------------------------------------------------------------------------


def test_account_info_tolerates_strings_and_feeds_the_budget() -> None:
    clock = FakeClock()
    reset = int(clock.now().timestamp()) + 900
    body = {
        "account_name": "Acme",
        "api_user": USER,
        "ratelimit_limit": "1000",
        "ratelimit_remaining": "0",
        "ratelimit_reset": str(reset),
        "max_update_rows": "50",
        "max_return_rows": 500,
        "number_of_contacts": 12,
    }
    rec = Recorder(ok(body))
    budget = HourlyBudget(5000, clock)
    client = make(rec, clock=clock, limiter=budget)
    info = client.account_info()
    assert info == AccountInfo(
        account_name="Acme",
        api_user=USER,
        ratelimit_limit=1000,
        ratelimit_remaining=0,
        ratelimit_reset=datetime.fromtimestamp(reset, UTC),
        max_update_rows=50,
        max_return_rows=500,
    )
    assert info.ratelimit_reset is not None and info.ratelimit_reset.tzinfo is not None
    assert rec.requests[0].method == "GET"
    assert rec.requests[0].url.path == "/v1/GetAccountInfo"
    assert budget.limit == 1000
    assert budget.try_acquire() == pytest.approx(900.0)  # remaining 0 until the reset


def test_account_info_nested_and_partial() -> None:
    client = make(Recorder(ok({"data": {"ratelimit_limit": 100, "ratelimit_reset": "junk"}})))
    info = client.account_info()
    assert info.ratelimit_limit == 100
    assert info.ratelimit_reset is None
    assert info.account_name is None


# -- failures (no retries inside the sink) -----------------------------------------------------


def test_400_is_skippable_with_the_response_text() -> None:
    body = json.dumps({"status": 400, "error": "customer_email is required"})
    rec = Recorder(httpx.Response(400, text=body))
    client = make(rec)
    with pytest.raises(SkippableError, match="customer_email is required") as err:
        client.update_order(ORDER)
    assert err.value.status == 400
    assert err.value.endpoint == "UpdateOrder"
    assert len(rec.requests) == 1


def test_422_is_skippable() -> None:
    client = make(Recorder(httpx.Response(422, text="order_lines: invalid")))
    with pytest.raises(SkippableError, match="order_lines"):
        client.update_order(ORDER)


def test_long_error_text_is_truncated() -> None:
    client = make(Recorder(httpx.Response(400, text="bad " * 1000)))
    with pytest.raises(SkippableError) as err:
        client.update_order(ORDER)
    assert len(err.value.message) < 600


def test_error_key_in_a_2xx_body_is_skippable() -> None:
    client = make(Recorder(ok({"status": 200, "error": "Contact could not be created"})))
    with pytest.raises(SkippableError, match="Contact could not be created"):
        client.update_order(ORDER)


def test_2xx_without_an_id_is_retryable() -> None:
    client = make(Recorder(ok({"status": 200, "message": "ok"})))
    with pytest.raises(RetryableError, match="no id"):
        client.update_order(ORDER)


def test_2xx_that_is_not_json_is_retryable() -> None:
    client = make(Recorder(httpx.Response(200, text="<html>maintenance</html>")))
    with pytest.raises(RetryableError):
        client.create_order_event(EVENT)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_fatal_and_never_shows_the_key(status: int) -> None:
    client = make(Recorder(httpx.Response(status, text=f"bad key {KEY}")))
    with pytest.raises(FatalError) as err:
        client.update_order(ORDER)
    assert "WIREDPLUS_API_USER/WIREDPLUS_API_KEY" in str(err.value)
    assert KEY not in str(err.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_briefly_in_place_then_raised(status: int) -> None:
    # Issue 11: a short in-place retry (upserts are idempotent); the ledger does the rest.
    rec = Recorder(httpx.Response(status, text="down"))
    clock = FakeClock()
    client = make(rec, clock=clock, limiter=Unlimited())
    with pytest.raises(RetryableError) as err:
        client.update_order(ORDER)
    assert not isinstance(err.value, Throttled)
    assert err.value.status == status
    assert len(rec.requests) == 4
    assert sum(clock.slept) <= 10.0


def test_a_lost_response_is_sent_again_in_place() -> None:
    rec = Recorder(httpx.RemoteProtocolError("no response"), ok({"id": 7}))
    client = make(rec, limiter=Unlimited())
    assert client.update_order(ORDER) == "7"
    assert rec.requests[0].content == rec.requests[1].content


def test_a_timeout_is_not_retried_in_place() -> None:
    rec = Recorder(httpx.ReadTimeout("slow"), ok({"id": 7}))
    client = make(rec, limiter=Unlimited())
    with pytest.raises(RetryableError):
        client.update_order(ORDER)
    assert len(rec.requests) == 1


def test_429_with_short_retry_after_is_waited_in_place() -> None:
    clock = FakeClock()
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "1"}), ok({"id": 3}))
    client = make(rec, clock=clock, limiter=Unlimited())
    assert client.update_order(ORDER) == "3"
    assert clock.slept == [1.0]


def test_429_raises_with_retry_after_and_penalises_the_budget() -> None:
    clock = FakeClock()
    budget = HourlyBudget(5000, clock)
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "20"}))
    client = make(rec, clock=clock, limiter=budget)
    with pytest.raises(Throttled) as err:
        client.update_order(ORDER)
    assert err.value.retry_after == 20.0
    assert len(rec.requests) == 1
    assert clock.slept == []
    assert budget.try_acquire() == pytest.approx(20.0)


def test_short_limiter_wait_is_slept_long_one_becomes_retryable() -> None:
    clock = FakeClock()
    budget = HourlyBudget(5000, clock)
    client = make(Recorder(ok({"id": 1})), clock=clock, limiter=budget, max_limiter_wait=30.0)
    budget.penalize(10.0)
    assert client.update_order(ORDER) == "1"
    assert clock.slept == [pytest.approx(10.0)]
    budget.penalize(300.0)
    with pytest.raises(Throttled) as err:
        client.update_order(ORDER)
    assert err.value.retry_after == pytest.approx(300.0)
    assert client.calls["UpdateOrder"] == 1


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
    ],
)
def test_transport_errors_are_retryable(exc: Exception) -> None:
    client = make(Recorder(exc), limiter=Unlimited())
    with pytest.raises(RetryableError) as err:
        client.create_order_event(EVENT)
    assert err.value.__cause__ is exc


def test_404_unknown_id_is_skippable() -> None:
    client = make(Recorder(httpx.Response(404, json={"status": 404, "error": "Order not found"})))
    with pytest.raises(SkippableError, match="Order not found"):
        client.create_order_event(EVENT)
