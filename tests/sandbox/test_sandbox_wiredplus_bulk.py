"""WiredPlus simulator: BulkOrderUpdate (shape assumed, see docs/assumptions.md) and the
``max_update_rows`` / refusal / budget switches the bulk push path is tested against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sync.clock import FakeClock
from sync.sandbox import WiredPlusSimulator

AUTH = ("sandbox", "sandbox-key")


def order_body(ref: str, **changes: Any) -> dict[str, Any]:
    """A valid UpdateOrder body (the shape ordersync's mapping sends)."""
    body: dict[str, Any] = {
        "api_integration": "ordersync",
        "api_resource": "order",
        "api_reference_id": ref,
        "order_reference": f"R{ref}",
        "order_create_date": "2026-01-15 11:59:00",
        "order_update_date": "2026-01-15 11:59:30",
        "order_status": "processing",
        "invoice_total": 100.0,
        "grand_total_inc_tax": 120.0,
        "iso_currency_code": "GBP",
        "customer_email": f"customer{ref}@example.co.uk",
        "order_lines": [
            {"order_line_id": f"{ref}-1", "product_sku": "SKU-1", "product_name": "Mug",
             "product_price": 100.0, "quantity": 1, "row_total": 100.0}
        ],
    }
    body.update(changes)
    return body


def _client(sim: WiredPlusSimulator) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(sim.handle),
                        base_url="https://api.wiredplus.com/v1", auth=AUTH)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> WiredPlusSimulator:
    return WiredPlusSimulator(clock=clock, seed=3)


@pytest.fixture
def client(sim: WiredPlusSimulator) -> Iterator[httpx.Client]:
    with _client(sim) as c:
        yield c


def bulk(client: httpx.Client, records: list[Any]) -> httpx.Response:
    return client.post("/BulkOrderUpdate", json={"orders": records})


# ------------------------------------------------------------------------------ results


def test_one_result_per_record_in_request_order_and_a_bad_record_fails_alone(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    r = bulk(client, [order_body("1"), order_body("2", customer_email="not-an-email"),
                      "not an object", order_body("3")])
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == 200
    assert body["message"] == "4 orders processed: 2 stored, 2 failed"
    results = body["results"]
    assert len(results) == 4
    assert results[0] == {"id": sim.orders_by_ref["1"], "status": 200,
                          "message": "Order created"}
    assert results[1] == {"status": 400, "error": "customer_email: must be a valid email address"}
    assert results[2] == {"status": 400, "error": "orders[2]: must be an object"}
    assert results[3] == {"id": sim.orders_by_ref["3"], "status": 200,
                          "message": "Order created"}
    assert set(sim.orders_by_ref) == {"1", "3"}
    assert sim.write_log == [("UpdateOrder", "1", "created"), ("UpdateOrder", "3", "created")]
    assert sim.bulk_requests == [(4, 2)]
    assert sim.rejections == [
        ("BulkOrderUpdate", "orders[1]: customer_email: must be a valid email address"),
        ("BulkOrderUpdate", "orders[2]: orders[2]: must be an object"),
    ]
    assert sim.calls["POST /v1/BulkOrderUpdate"] == 1


def test_bulk_and_single_calls_share_one_upsert_identity(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    single = client.post("/UpdateOrder", json=order_body("A")).json()["id"]
    r = bulk(client, [order_body("A", order_status="shipped"), order_body("B")]).json()
    assert r["results"][0] == {"id": single, "status": 200, "message": "Order updated"}
    created_b = r["results"][1]["id"]
    again = client.post("/UpdateOrder", json=order_body("B", order_status="completed")).json()
    assert again == {"id": created_b, "status": 200, "message": "Order updated"}
    # by id, as UpdateOrder: a known id updates, an unknown one is that record's 404
    r = bulk(client, [order_body("B", id=created_b, order_status="closed"),
                      order_body("C", id="f" * 32)]).json()
    assert r["results"][0]["id"] == created_b and r["results"][0]["status"] == 200
    assert r["results"][1] == {"status": 404, "error": f"id: order {'f' * 32!r} not found"}
    assert sim.order_creations == {"A": 1, "B": 1}
    assert sim.order_by_ref("B")["order_status"] == "closed"  # type: ignore[index]


def test_a_bulk_write_stores_exactly_what_single_writes_store() -> None:
    bodies = [order_body(str(i), order_status="shipped" if i % 2 else "processing")
              for i in range(5)]
    one_by_one = WiredPlusSimulator(clock=FakeClock(), seed=9)
    in_bulk = WiredPlusSimulator(clock=FakeClock(), seed=9)
    with _client(one_by_one) as c:
        singles = [c.post("/UpdateOrder", json=b).json() for b in bodies]
    with _client(in_bulk) as c:
        results = bulk(c, bodies).json()["results"]
    assert results == singles
    assert in_bulk.orders == one_by_one.orders
    assert in_bulk.contacts == one_by_one.contacts
    assert in_bulk.write_log == one_by_one.write_log


def test_a_reference_repeated_in_one_request_is_created_then_updated(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    r = bulk(client, [order_body("7"), order_body("7", order_status="shipped")]).json()
    first, second = r["results"]
    assert first["message"] == "Order created" and second["message"] == "Order updated"
    assert first["id"] == second["id"] and sim.order_creations["7"] == 1


def test_order_reference_is_optional_on_bulk_only(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    record = order_body("8")
    del record["order_reference"]
    assert bulk(client, [record]).json()["results"][0]["status"] == 200
    assert "order_reference" not in sim.order_by_ref("8")  # type: ignore[operator]
    single = client.post("/UpdateOrder", json=dict(record, api_reference_id="9"))
    assert single.status_code == 400 and "order_reference" in single.json()["error"]


# ------------------------------------------------------------------------------ the limit


def test_more_than_max_update_rows_is_refused_whole(
    sim: WiredPlusSimulator, client: httpx.Client
) -> None:
    assert client.get("/GetAccountInfo").json()["max_update_rows"] == 50
    r = bulk(client, [order_body(str(i)) for i in range(51)])
    assert r.status_code == 400
    assert r.json() == {"status": 400, "error": "orders: at most 50 orders per request "
                                                "(max_update_rows), got 51"}
    assert not sim.orders
    ok = bulk(client, [order_body(str(i)) for i in range(50)])
    assert ok.status_code == 200 and len(ok.json()["results"]) == 50 and len(sim.orders) == 50


def test_max_update_rows_is_configurable_and_reported(clock: FakeClock) -> None:
    sim = WiredPlusSimulator(clock=clock, max_update_rows=10)
    with _client(sim) as c:
        assert c.get("/GetAccountInfo").json()["max_update_rows"] == 10
        assert bulk(c, [order_body(str(i)) for i in range(11)]).status_code == 400
        assert bulk(c, [order_body(str(i)) for i in range(10)]).status_code == 200
    with pytest.raises(ValueError):
        WiredPlusSimulator(clock=clock, max_update_rows=0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "orders: is required (an array of orders)"),
        ({"orders": []}, "orders: must contain at least one order"),
        ({"orders": {"a": 1}}, "orders: must be an array of orders"),
        ([], "body: must be a JSON object"),
    ],
)
def test_malformed_requests_are_400_and_store_nothing(
    sim: WiredPlusSimulator, client: httpx.Client, body: Any, error: str
) -> None:
    r = client.post("/BulkOrderUpdate", json=body)
    assert r.status_code == 400 and r.json() == {"status": 400, "error": error}
    assert not sim.orders
    assert client.get("/BulkOrderUpdate").status_code == 405


# ------------------------------------------------------------------------------ refusal


@pytest.mark.parametrize("status", [403, 404])
def test_an_account_without_the_feature_refuses_bulk_but_takes_single_calls(
    clock: FakeClock, status: int
) -> None:
    sim = WiredPlusSimulator(clock=clock, bulk_enabled=False, bulk_refusal_status=status)
    with _client(sim) as c:
        r = bulk(c, [order_body("1")])
        assert r.status_code == status
        assert r.json() == {"status": status, "error": "BulkOrderUpdate: this feature is not "
                                                       "enabled for your account"}
        assert not sim.orders and not sim.bulk_requests and not sim.rejections
        assert c.get("/GetAccountInfo").json()["max_update_rows"] == 50
        assert c.post("/UpdateOrder", json=order_body("1")).status_code == 200
        sim.bulk_enabled = True  # switchable while traffic flows
        assert bulk(c, [order_body("2")]).status_code == 200
    with pytest.raises(ValueError):
        WiredPlusSimulator(clock=clock, bulk_refusal_status=500)


# ------------------------------------------------------------------------------ budget


def test_by_default_a_bulk_request_costs_one_unit_of_the_hourly_budget(clock: FakeClock) -> None:
    sim = WiredPlusSimulator(clock=clock, hourly_limit=3, enforce_rate_limit=True)
    with _client(sim) as c:
        assert bulk(c, [order_body(str(i)) for i in range(50)]).status_code == 200
        assert sim.ratelimit_remaining == 2
        assert bulk(c, [order_body(f"b{i}") for i in range(50)]).status_code == 200
        assert c.get("/GetAccountInfo").json()["ratelimit_remaining"] == 0
        r = bulk(c, [order_body("late")])
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert len(sim.orders) == 100


def test_per_record_cost_charges_each_record_and_refuses_what_does_not_fit(
    clock: FakeClock,
) -> None:
    sim = WiredPlusSimulator(clock=clock, hourly_limit=5, enforce_rate_limit=True,
                             bulk_cost="record")
    with _client(sim) as c:
        assert bulk(c, [order_body(str(i)) for i in range(3)]).status_code == 200
        assert sim.ratelimit_remaining == 2
        r = bulk(c, [order_body(f"x{i}") for i in range(3)])
        assert r.status_code == 429 and r.headers["Retry-After"]
        assert "3 records need 3" in r.json()["error"]
        assert sim.ratelimit_remaining == 2  # refused whole: nothing charged, nothing stored
        assert not any(ref.startswith("x") for ref in sim.orders_by_ref)
        assert bulk(c, [order_body("y0"), order_body("y1")]).status_code == 200
        assert sim.ratelimit_remaining == 0
    with pytest.raises(ValueError):
        WiredPlusSimulator(clock=clock, bulk_cost="free")


# ------------------------------------------------------------------------------ faults


def test_faults_apply_to_bulk_requests(sim: WiredPlusSimulator, client: httpx.Client) -> None:
    sim.faults.error_rate = 1.0
    sim.faults.error_statuses = (500,)
    assert bulk(client, [order_body("1")]).status_code == 500
    assert not sim.orders
    sim.faults.clear()
    sim.faults.throttle_storm_until = sim.clock.monotonic() + 5
    r = bulk(client, [order_body("1")])
    assert r.status_code == 429 and r.headers["Retry-After"] == "5"
    sim.faults.clear()
    sim.faults.timeout_rate = 1.0
    with pytest.raises(httpx.ReadTimeout):
        bulk(client, [order_body("1")])
    assert not sim.orders
    sim.faults.clear()
    # the answer of a stored bulk write is lost: every record is stored all the same
    sim.faults.drop_after_write_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        bulk(client, [order_body("1"), order_body("2")])
    assert set(sim.orders_by_ref) == {"1", "2"} and sim.dropped_responses == 1
    # a request that stored nothing is not a write: its answer arrives
    r = bulk(client, [order_body("3", customer_email="x")])
    assert r.status_code == 200 and r.json()["results"][0]["status"] == 400
    sim.faults.clear()
    # retried after the lost answer: the same orders, updated, not created twice
    again = bulk(client, [order_body("1"), order_body("2")]).json()["results"]
    assert [x["message"] for x in again] == ["Order updated", "Order updated"]
    assert sim.order_creations == {"1": 1, "2": 1}


def test_bulk_over_real_http() -> None:
    from sync.sandbox import Sandbox

    with Sandbox(seed=4) as sb, httpx.Client(base_url=sb.wiredplus_url,
                                             auth=sb.wiredplus_credentials) as c:
        r = c.post("/BulkOrderUpdate",
                   content=json.dumps({"orders": [order_body("1"), order_body("2")]}),
                   headers={"content-type": "application/json"})
        assert r.status_code == 200
        assert [x["status"] for x in r.json()["results"]] == [200, 200]
        assert not sb.server_errors
