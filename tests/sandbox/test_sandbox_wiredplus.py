"""WiredPlusSimulator as a client sees it: validation, upserts, rate limit, faults."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.clock import FakeClock
from sync.sandbox import WiredPlusSimulator

FIXTURES = Path("/work/shared/reference/fixtures/wiredplus")
AUTH = ("sandbox", "sandbox-key")


def order_body(ref: str = "100001", **changes: Any) -> dict[str, Any]:
    """A valid UpdateOrder body in the docs' shape (their example, made valid)."""
    body: dict[str, Any] = {
        "api_integration": "ordersync",
        "api_resource": "order",
        "api_reference_id": ref,
        "order_reference": "1001",
        "order_create_date": "2026-01-15 11:59:00",
        "order_update_date": "2026-01-15 11:59:30",
        "order_status": "processing",
        "invoice_tax_total": 22.0,
        "invoice_total": 100.0,
        "invoice_total_inc_tax": 122.0,
        "invoice_discount_total": 0.0,
        "shipping_tax_total": 2.0,
        "shipping_total": 10.0,
        "shipping_total_inc_tax": 12.0,
        "shipping_discount_total": 0.0,
        "grand_total": 110.0,
        "grand_total_inc_tax": 132.0,
        "iso_currency_code": "GBP",
        "payment_type": "online",
        "payment_type_name": "SagePay",
        "number_of_products": 1,
        "customer_email": "mary.oneil@example.co.uk",
        "customer_firstname": "Mary Ann",
        "customer_lastname": "O'Neil",
        "customer_is_guest": False,
        "customer_notes": None,
        "billing_country": "United Kingdom",
        "order_lines": [
            {
                "order_line_id": "100001-9000001",
                "product_sku": "NK-AM-9",
                "product_name": "Nike Airmax Trainers",
                "tax_percent": 20.0,
                "product_price": 100.0,
                "product_price_tax": 20.0,
                "product_price_inc_tax": 120.0,
                "product_original_price": 100.0,
                "quantity": 1,
                "row_total": 100.0,
                "row_total_inc_tax": 120.0,
                "row_total_discount": 0.0,
            }
        ],
        "custom_fields": {"tracking_url": "https://track.dpd.co.uk/parcels/1"},
    }
    body.update(changes)
    return body


def event_body(order_id: str, ref: str = "100001-shipped", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_reference": ref,
        "order_id": order_id,
        "event_type": "dispatched",
        "event_date": "2026-01-15T12:00:00Z",
        "message": "",
        "order_event_lines": [{"order_line_id": "100001-9000001", "quantity": 1}],
        "custom_fields": {"tracking_url": "https://track.dpd.co.uk/parcels/1"},
    }
    body.update(changes)
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> WiredPlusSimulator:
    return WiredPlusSimulator(clock=clock, seed=3)


@pytest.fixture
def client(sim: WiredPlusSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(sim.handle),
                      base_url="https://api.wiredplus.com/v1", auth=AUTH) as c:
        yield c


def create_order(client: httpx.Client, ref: str = "100001") -> str:
    r = client.post("/UpdateOrder", json=order_body(ref))
    assert r.status_code == 200, r.text
    oid = r.json()["id"]
    assert isinstance(oid, str)
    return oid


# ------------------------------------------------------------------------------ UpdateOrder


def test_update_order_creates_then_updates_by_api_reference_id(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    r1 = client.post("/UpdateOrder", json=order_body())
    assert r1.status_code == 200
    body1 = r1.json()
    assert body1["status"] == 200 and body1["message"] == "Order created"
    assert re.fullmatch(r"[0-9a-f]{32}", body1["id"]) and "error" not in body1
    r2 = client.post("/UpdateOrder", json=order_body(order_status="shipped"))
    assert r2.json() == {"id": body1["id"], "status": 200, "message": "Order updated"}
    assert len(sim.orders) == 1
    stored = sim.orders[body1["id"]]
    assert stored["order_status"] == "shipped" and stored["api_reference_id"] == "100001"
    assert sim.orders_by_ref == {"100001": body1["id"]}
    assert sim.order_creations["100001"] == 1
    assert sim.write_log == [
        ("UpdateOrder", "100001", "created"),
        ("UpdateOrder", "100001", "updated"),
    ]
    assert sim.calls["POST /v1/UpdateOrder"] == 2


def test_update_by_id_and_unknown_id(sim: WiredPlusSimulator, client: httpx.Client) -> None:
    oid = create_order(client)
    r = client.post("/UpdateOrder", json=order_body(id=oid, order_status="completed"))
    assert r.json()["message"] == "Order updated" and r.json()["id"] == oid
    r = client.post("/UpdateOrder", json=order_body(id="0" * 32))
    assert r.status_code == 404
    assert r.json()["status"] == 404 and r.json()["error"].startswith("id:")
    other = create_order(client, "100002")
    r = client.post("/UpdateOrder", json=order_body("100002", id=oid))
    assert r.status_code == 400 and r.json()["error"].startswith("api_reference_id:")
    assert sim.orders[other]["api_reference_id"] == "100002"


def test_an_update_replaces_the_stored_order(sim: WiredPlusSimulator, client: httpx.Client) -> None:
    oid = create_order(client)
    body = order_body()
    del body["custom_fields"]
    client.post("/UpdateOrder", json=body)
    assert "custom_fields" not in sim.orders[oid]
    assert sim.orders[oid]["create_date"] == "2026-01-15 12:00:00"


def _without(key: str) -> dict[str, Any]:
    body = order_body()
    del body[key]
    return body


def _line(**changes: Any) -> dict[str, Any]:
    body = order_body()
    body["order_lines"][0].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_without("customer_email"), "customer_email"),
        (order_body(customer_email=""), "customer_email"),
        (order_body(customer_email="not-an-email"), "customer_email"),
        (_without("api_reference_id"), "api_reference_id"),
        (order_body(api_reference_id=100001), "api_reference_id"),
        (_without("order_reference"), "order_reference"),
        (_without("order_lines"), "order_lines"),
        (order_body(order_lines=[]), "order_lines"),
        (order_body(order_lines={"order_line_id": 1}), "order_lines"),
        (_line(order_line_id=None), "order_lines[0].order_line_id"),
        (_line(quantity=1.5), "order_lines[0].quantity"),
        (_line(quantity="1"), "order_lines[0].quantity"),
        (_line(product_price="100.00"), "order_lines[0].product_price"),
        (order_body(order_status="paid"), "order_status"),
        (order_body(order_status="Shipped"), "order_status"),
        (order_body(order_create_date="2019-12-1113:00:00"), "order_create_date"),
        (order_body(order_create_date="2026-01-15T11:59:00Z"), "order_create_date"),
        (order_body(order_update_date="2026-02-30 10:00:00"), "order_update_date"),
        (order_body(grand_total_inc_tax="132.00"), "grand_total_inc_tax"),
        (order_body(grand_total=True), "grand_total"),
        (order_body(invoice_total=-1.0), "invoice_total"),
        (order_body(iso_currency_code="gbp"), "iso_currency_code"),
        (order_body(iso_currency_code="POUND"), "iso_currency_code"),
        (order_body(custom_fields=[{"tracking_url": "x"}]), "custom_fields"),
        (order_body(customer_is_guest="no"), "customer_is_guest"),
        (order_body(number_of_products=1.0), "number_of_products"),
    ],
)
def test_update_order_validation_errors_name_the_field(
    sim: WiredPlusSimulator, client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    r = client.post("/UpdateOrder", json=body)
    assert r.status_code == 400
    out = r.json()
    assert out["status"] == 400
    assert out["error"].startswith(f"{field}: "), out["error"]
    assert "id" not in out
    assert not sim.orders
    assert sim.rejections == [("UpdateOrder", out["error"])]


def test_the_docs_example_body_is_rejected_as_it_omits_order_reference(
    client: httpx.Client,
) -> None:
    body = json.loads((FIXTURES / "update-order-request.json").read_text())
    del body["id"]  # "abc" is not an order of this account
    r = client.post("/UpdateOrder", json=body)
    assert r.status_code == 400 and r.json()["error"].startswith("order_reference:")
    body["order_reference"] = "abc-1020"
    assert client.post("/UpdateOrder", json=body).status_code == 200


def test_non_json_bodies_are_400(client: httpx.Client) -> None:
    assert client.post("/UpdateOrder", content=b"{not json").status_code == 400
    assert client.post("/UpdateOrder", json=[order_body()]).status_code == 400


def test_unknown_keys_are_accepted_but_recorded(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    body = order_body(shopwired_status_id=1381)
    body["order_lines"][0]["colour"] = "red"
    assert client.post("/UpdateOrder", json=body).status_code == 200
    assert sim.unknown_keys == {
        "UpdateOrder.shopwired_status_id": 1,
        "UpdateOrder.order_lines[].colour": 1,
    }


def test_contacts_are_matched_by_email(sim: WiredPlusSimulator, client: httpx.Client) -> None:
    a = create_order(client, "1")
    b = create_order(client, "2")
    r = client.post("/UpdateOrder", json=order_body("3", customer_email="Other@Example.com"))
    c = r.json()["id"]
    assert sim.orders[a]["contact_id"] == sim.orders[b]["contact_id"] != sim.orders[c][
        "contact_id"]
    assert len(sim.contacts) == 2


# ------------------------------------------------------------------------------ events


def test_event_upsert_by_event_reference_creates_once(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    oid = create_order(client)
    r1 = client.post("/CreateOrderEvent", json=event_body(oid))
    assert r1.status_code == 200, r1.text
    assert r1.json()["message"] == "Event created"
    eid = r1.json()["id"]
    r2 = client.post("/CreateOrderEvent", json=event_body(oid, message="On its way"))
    assert r2.json() == {"id": eid, "status": 200, "message": "Event updated"}
    r3 = client.post("/CreateOrderEvent", json=event_body(oid, id=eid, event_type="delivered"))
    assert r3.json()["message"] == "Event updated"
    assert sim.event_creations == {"100001-shipped": 1}
    assert sim.events[eid]["event_type"] == "delivered"
    assert sim.events_by_ref == {"100001-shipped": eid}
    assert [e["id"] for e in sim.events_for_order(oid)] == [eid]
    assert "date_created" in sim.events[eid] and "date_updated" in sim.events[eid]


def test_fullfilled_is_the_documented_spelling(client: httpx.Client) -> None:
    oid = create_order(client)
    ok = client.post("/CreateOrderEvent", json=event_body(oid, "e1", event_type="fullfilled"))
    assert ok.status_code == 200
    bad = client.post("/CreateOrderEvent", json=event_body(oid, "e2", event_type="fulfilled"))
    assert bad.status_code == 400 and bad.json()["error"].startswith("event_type: ")


def test_event_for_unknown_order_is_refused(sim: WiredPlusSimulator, client: httpx.Client) -> None:
    r = client.post("/CreateOrderEvent", json=event_body("f" * 32))
    assert r.status_code == 404
    assert r.json()["error"].startswith("order_id: ")
    create_order(client)
    # the ShopWired id is not a WiredPlus order id
    r = client.post("/CreateOrderEvent", json=event_body(100001))  # type: ignore[arg-type]
    assert r.status_code == 400 and r.json()["error"].startswith("order_id: ")
    assert not sim.events and not sim.event_creations


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_reference": None}, "event_reference"),
        ({"event_type": "shipped"}, "event_type"),
        ({"event_date": "2026-01-15 12:00:00"}, "event_date"),
        ({"event_date": "2026-01-15T12:00:00+00:00"}, "event_date"),
        ({"event_date": "2026-01-15T12:00:00.000Z"}, "event_date"),
        ({"event_date": None}, "event_date"),
        ({"order_event_lines": {"order_line_id": "100001-9000001"}}, "order_event_lines"),
        ({"order_event_lines": [{"order_line_id": "nope"}]}, "order_event_lines[0].order_line_id"),
        ({"order_event_lines": [{"quantity": 1}]}, "order_event_lines[0].order_line_id"),
        ({"order_event_lines": [{"order_line_id": "100001-9000001", "quantity": 0.5}]},
         "order_event_lines[0].quantity"),
        ({"custom_fields": "tracking"}, "custom_fields"),
        ({"message": 12}, "message"),
    ],
)
def test_event_validation_errors_name_the_field(
    sim: WiredPlusSimulator, client: httpx.Client, changes: dict[str, Any], field: str
) -> None:
    oid = create_order(client)
    r = client.post("/CreateOrderEvent", json=event_body(oid, **changes))
    assert r.status_code == 400
    assert r.json()["error"].startswith(f"{field}: "), r.json()
    assert not sim.events


def test_event_with_unknown_id_is_404(client: httpx.Client) -> None:
    oid = create_order(client)
    r = client.post("/CreateOrderEvent", json=event_body(oid, id="a" * 32))
    assert r.status_code == 404 and r.json()["error"].startswith("id: ")


def test_the_docs_event_example_is_valid_once_it_points_at_real_ids(
    client: httpx.Client,
) -> None:
    body = json.loads((FIXTURES / "create-order-event-request.json").read_text())
    order = order_body()
    order["order_lines"][0]["order_line_id"] = "abc123"
    oid = client.post("/UpdateOrder", json=order).json()["id"]
    del body["id"]
    body["order_id"] = oid
    assert client.post("/CreateOrderEvent", json=body).json()["message"] == "Event created"


# ------------------------------------------------------------------------------ auth, limits


@pytest.mark.parametrize("auth", [None, ("sandbox", "nope"), ("sandbox-key", "sandbox")])
def test_bad_credentials_are_401(sim: WiredPlusSimulator, auth: tuple[str, str] | None) -> None:
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1",
                      auth=auth) as c:
        r = c.post("/UpdateOrder", json=order_body())
    assert r.status_code == 401 and r.json()["status"] == 401 and "error" in r.json()
    assert not sim.orders


def test_account_info_and_hourly_rate_limit(clock: FakeClock) -> None:
    sim = WiredPlusSimulator(clock=clock, hourly_limit=5, enforce_rate_limit=True)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1",
                      auth=AUTH) as c:
        info = c.get("/GetAccountInfo").json()
        reset = int(clock.now().timestamp()) + 3600  # FakeClock starts on the hour
        assert info == {
            "account_name": "Sandbox Shop Ltd",
            "api_user": "sandbox",
            "ratelimit_limit": 5,
            "ratelimit_remaining": 4,
            "ratelimit_reset": reset,
            "max_return_rows": 500,
            "max_update_rows": 50,
            "number_of_contacts": 0,
            "send_balance": 25000,
        }
        for i in range(4):
            assert c.post("/UpdateOrder", json=order_body(str(i))).status_code == 200
        clock.advance(600)
        r = c.post("/UpdateOrder", json=order_body("x"))
        assert r.status_code == 429 and r.headers["Retry-After"] == "3000"
        assert c.get("/GetAccountInfo").status_code == 429
        clock.advance(3000)
        info = c.get("/GetAccountInfo").json()
        assert info["ratelimit_remaining"] == 4 and info["ratelimit_reset"] == reset + 3600
        assert info["number_of_contacts"] == 1


def test_unknown_method_and_wrong_verb(client: httpx.Client) -> None:
    assert client.get("/GetOrders").status_code == 404
    assert client.get("/UpdateOrder").status_code == 405
    assert client.post("/GetAccountInfo").status_code == 405


# ------------------------------------------------------------------------------ faults


def test_drop_after_write_stores_then_loses_the_answer(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    sim.faults.drop_after_write_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/UpdateOrder", json=order_body())
    assert len(sim.orders) == 1 and sim.dropped_responses == 1
    # invalid writes are not writes: their 400 arrives
    assert client.post("/UpdateOrder", json=order_body(customer_email="x")).status_code == 400
    sim.faults.drop_after_write_rate = 0.0
    r = client.post("/UpdateOrder", json=order_body())  # the client's retry
    assert r.json()["message"] == "Order updated"
    assert sim.order_creations["100001"] == 1


def test_pre_processing_faults(sim: WiredPlusSimulator, client: httpx.Client,
                               clock: FakeClock) -> None:
    sim.faults.timeout_rate = 1.0
    with pytest.raises(httpx.ReadTimeout):
        client.post("/UpdateOrder", json=order_body())
    assert not sim.orders
    sim.faults.clear()
    sim.faults.error_rate = 1.0
    codes = {client.post("/UpdateOrder", json=order_body()).status_code for _ in range(30)}
    assert codes == {500, 502, 503} and not sim.orders
    r = client.post("/UpdateOrder", json=order_body())
    assert r.status_code >= 500
    sim.faults.clear()
    sim.faults.throttle_storm_until = clock.monotonic() + 7.5
    r = client.get("/GetAccountInfo")
    assert r.status_code == 429 and r.headers["Retry-After"] == "8"
    clock.advance(8)
    assert client.get("/GetAccountInfo").status_code == 200
    sim.faults.latency_seconds = 0.25
    before = clock.monotonic()
    client.get("/GetAccountInfo")
    assert clock.monotonic() - before == pytest.approx(0.25)
    assert clock.slept[-1] == 0.25


def test_error_bodies_of_502_503_are_not_json(sim: WiredPlusSimulator,
                                               client: httpx.Client) -> None:
    sim.faults.error_rate = 1.0
    sim.faults.error_statuses = (502,)
    r = client.get("/GetAccountInfo")
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_faults_are_reproducible_with_a_seed(clock: FakeClock) -> None:
    def run() -> list[int]:
        sim = WiredPlusSimulator(clock=clock, seed=11)
        sim.faults.error_rate = 0.3
        with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1",
                          auth=AUTH) as c:
            return [c.get("/GetAccountInfo").status_code for _ in range(40)]

    first = run()
    assert first == run()
    assert 200 in first and any(code >= 500 for code in first)


def test_stored_orders_are_copies(sim: WiredPlusSimulator, client: httpx.Client) -> None:
    body = order_body()
    original = copy.deepcopy(body)
    oid = create_order(client)
    assert body == original
    assert sim.orders[oid]["order_lines"] == original["order_lines"]
