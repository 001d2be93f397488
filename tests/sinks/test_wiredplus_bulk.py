"""Issue #17: WiredPlusClient.bulk_update_orders — one result per record, by position."""

from __future__ import annotations

import json

import httpx
import pytest

from sync.clock import FakeClock
from sync.errors import FatalError, RetryableError
from sync.ratelimit import HourlyBudget
from sync.sinks.wiredplus import (
    BulkDelivered,
    BulkRefused,
    BulkRejected,
    BulkUnanswered,
    WiredPlusClient,
)


def _client(handler: httpx.MockTransport, clock: FakeClock, **kw: object) -> WiredPlusClient:
    return WiredPlusClient("http://wp.test/v1", "keyname", "s3cr3t-key", clock=clock,
                           transport=handler, **kw)  # type: ignore[arg-type]


def _answer(body: object, status: int = 200) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


def test_results_are_matched_by_position_and_typed() -> None:
    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"status": 200, "message": "3 processed", "results": [
            {"id": "a1", "status": 200, "message": "Order created"},
            {"status": 400, "error": "customer_email: s3cr3t-key is not an email"},
            {"status": 200, "message": "Order updated"},
        ]})

    clock = FakeClock()
    budget = HourlyBudget(5000, clock)
    client = _client(httpx.MockTransport(handler), clock, limiter=budget)
    results = client.bulk_update_orders([{"api_reference_id": str(i)} for i in range(3)])
    assert seen == [{"orders": [{"api_reference_id": "0"}, {"api_reference_id": "1"},
                                {"api_reference_id": "2"}]}]
    assert results[0] == BulkDelivered("a1")
    assert isinstance(results[1], BulkRejected) and "customer_email" in results[1].reason
    assert "s3cr3t-key" not in results[1].reason  # redacted like any reason
    assert isinstance(results[2], BulkUnanswered)
    assert client.calls["BulkOrderUpdate"] == 1


def test_a_result_count_that_does_not_match_is_retryable() -> None:
    client = _client(_answer({"status": 200, "results": [{"id": "x", "status": 200}]}),
                     FakeClock())
    with pytest.raises(RetryableError):
        client.bulk_update_orders([{"api_reference_id": "1"}, {"api_reference_id": "2"}])
    assert client.bulk_enabled is True


@pytest.mark.parametrize("status", [403, 404])
def test_a_refused_feature_turns_bulk_off_instead_of_stopping(status: int) -> None:
    body = {"status": status,
            "error": "BulkOrderUpdate: this feature is not enabled for your account"}
    client = _client(_answer(body, status), FakeClock())
    with pytest.raises(BulkRefused):
        client.bulk_update_orders([{"api_reference_id": "1"}, {"api_reference_id": "2"}])
    assert client.bulk_enabled is False
    with pytest.raises(BulkRefused):  # remembered: no second request
        client.bulk_update_orders([{"api_reference_id": "1"}, {"api_reference_id": "2"}])
    assert client.calls["BulkOrderUpdate"] == 1


def test_bad_credentials_stay_fatal() -> None:
    client = _client(_answer({"status": 401, "error": "Unauthorized"}, 401), FakeClock())
    with pytest.raises(FatalError):
        client.bulk_update_orders([{"api_reference_id": "1"}, {"api_reference_id": "2"}])


def test_max_update_rows_comes_from_account_info() -> None:
    info = {"account_name": "a", "ratelimit_limit": 5000, "max_update_rows": 25}
    client = _client(_answer(info), FakeClock())
    client.account_info()
    assert client.max_update_rows == 25
    with pytest.raises(ValueError):
        client.bulk_update_orders([{"api_reference_id": str(i)} for i in range(26)])
