"""A body WiredPlus rejects for its custom fields is sent once more without them (issue #13
row 8); any other rejection stays a rejection. Against the WiredPlus simulator, whose account
pre-defines only some custom fields."""

from __future__ import annotations

import httpx
import pytest

from sync.clock import FakeClock
from sync.domain.mapping import is_custom_field_rejection, without_custom_fields
from sync.errors import SkippableError
from sync.sandbox.wiredplus import WiredPlusSimulator
from sync.sinks.wiredplus import WiredPlusClient

ORDER = {
    "api_reference_id": "255", "order_reference": "1001", "customer_email": "a@example.com",
    "order_lines": [{"order_line_id": "255-1", "quantity": 1, "row_total": 10.0}],
}


def _client(sim: WiredPlusSimulator) -> WiredPlusClient:
    return WiredPlusClient("http://wp.sandbox/v1", "sandbox", "sandbox-key", clock=sim.clock,
                           transport=httpx.MockTransport(sim.handle))


def _event(order_id: str, **extra: object) -> dict[str, object]:
    return {"event_reference": "255:status:dispatched", "order_id": order_id,
            "event_type": "dispatched", "event_date": "2026-01-15T12:00:00Z", **extra}


def test_event_with_an_undefined_custom_field_is_sent_without_it() -> None:
    sim = WiredPlusSimulator(clock=FakeClock(), custom_fields=["tracking_url"])
    client = _client(sim)
    oid = client.update_order(ORDER)
    client.create_order_event(_event(oid, custom_fields={"Tracking link": "https://t/1"}))
    (stored,) = sim.events.values()
    assert "custom_fields" not in stored
    assert sim.calls["POST /v1/CreateOrderEvent"] == 2
    assert "pre-defined" in sim.rejections[0][1]


def test_defined_custom_fields_go_through_in_one_call() -> None:
    sim = WiredPlusSimulator(clock=FakeClock(), custom_fields=["tracking_url"])
    client = _client(sim)
    oid = client.update_order({**ORDER, "custom_fields": {"tracking_url": "https://t/1"}})
    client.create_order_event(_event(oid, custom_fields={"tracking_url": "https://t/1"}))
    (stored,) = sim.events.values()
    assert stored["custom_fields"] == {"tracking_url": "https://t/1"}
    assert sim.calls["POST /v1/CreateOrderEvent"] == 1
    assert sim.orders[oid]["custom_fields"] == {"tracking_url": "https://t/1"}


def test_order_with_an_undefined_custom_field_is_sent_without_it() -> None:
    sim = WiredPlusSimulator(clock=FakeClock(), custom_fields=[])
    oid = _client(sim).update_order({**ORDER, "custom_fields": {"variations": "Size=M"}})
    assert "custom_fields" not in sim.orders[oid]


def test_other_rejections_are_not_retried() -> None:
    sim = WiredPlusSimulator(clock=FakeClock(), custom_fields=[])
    client = _client(sim)
    oid = client.update_order(ORDER)
    with pytest.raises(SkippableError, match="event_type"):
        client.create_order_event(_event(oid, event_type="fulfilled",
                                         custom_fields={"x": "y"}))
    assert sim.calls["POST /v1/CreateOrderEvent"] == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [("custom_fields: 'x' is not a pre-defined custom field", True),
     ("Unknown Custom Field: Tracking link", True),
     ("event_type: 'fulfilled' is not one of ...", False),
     ("customer_email: is required", False)],
)
def test_recognising_a_custom_field_rejection(error: str, expected: bool) -> None:
    assert is_custom_field_rejection(error) is expected


def test_without_custom_fields() -> None:
    assert without_custom_fields({"a": 1}) is None
    assert without_custom_fields({"a": 1, "custom_fields": {}}) is None
    assert without_custom_fields({"a": 1, "custom_fields": {"k": "v"}}) == {"a": 1}
