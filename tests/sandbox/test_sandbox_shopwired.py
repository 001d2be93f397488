"""ShopWiredSimulator as a client sees it: paging, filters, errors, auth, the leaky bucket."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from sync.clock import FakeClock
from sync.sandbox import ShopWiredSimulator

AUTH = ("sandbox-key", "sandbox-secret")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> ShopWiredSimulator:
    return ShopWiredSimulator(clock=clock, enforce_rate_limit=False, seed=7)


@pytest.fixture
def client(sim: ShopWiredSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=httpx.MockTransport(sim.handle), base_url="https://api.ecommerceapi.uk/v1",
        auth=AUTH,
    ) as c:
        yield c


def created_ts(order: dict[str, Any]) -> int:
    return int(parsedate_to_datetime(order["created"]).timestamp())


def add_at(sim: ShopWiredSimulator, when: datetime, **extra: Any) -> int:
    order = sim.generator.order(when, now=when + timedelta(days=60))
    order.update(extra)
    return sim.add_order(order)


# ------------------------------------------------------------------------------ paging


def test_paging_until_a_short_page_sees_every_order_once_oldest_first(
    sim: ShopWiredSimulator, client: httpx.Client
) -> None:
    sim.generate_orders(237)
    seen: list[dict[str, Any]] = []
    offset, pages = 0, 0
    while True:
        r = client.get("/orders", params={"count": 100, "offset": offset, "sort": "date"})
        assert r.status_code == 200
        page = r.json()
        assert isinstance(page, list)  # a bare array, no envelope
        seen.extend(page)
        pages += 1
        if len(page) < 100:
            break
        offset += 100
    assert pages == 3
    assert [o["id"] for o in seen] == sim.created_ids(archived=False)
    keys = [(created_ts(o), o["id"]) for o in seen]
    assert keys == sorted(keys)
    assert client.get("/orders/count").json() == {"count": 237}


def test_default_page_is_50_and_date_desc_is_the_reverse(
    sim: ShopWiredSimulator, client: httpx.Client
) -> None:
    sim.generate_orders(120)
    assert len(client.get("/orders").json()) == 50
    asc = [o["id"] for o in client.get("/orders", params={"count": 100}).json()]
    asc += [o["id"] for o in client.get("/orders", params={"count": 100, "offset": 100}).json()]
    desc = [o["id"] for o in client.get("/orders", params={"count": 100, "sort": "date_desc"})
            .json()]
    desc += [o["id"] for o in client.get(
        "/orders", params={"count": 100, "offset": 100, "sort": "date_desc"}).json()]
    assert desc == list(reversed(asc))


@pytest.mark.parametrize(
    "params",
    [
        {"count": 101},
        {"count": 0},
        {"count": "ten"},
        {"offset": -1},
        {"sort": "created"},
        {"archived": "true"},
        {"from": "2026-01-01"},
        {"ids": ",".join(str(i) for i in range(1, 52))},
        {"ids": "1,two"},
    ],
)
def test_bad_list_parameters_are_400_with_code_and_message(
    client: httpx.Client, params: dict[str, Any]
) -> None:
    r = client.get("/orders", params=params)
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"code", "message"} and isinstance(body["code"], int)


def test_count_100_and_50_ids_are_allowed(sim: ShopWiredSimulator, client: httpx.Client) -> None:
    ids = sim.generate_orders(60)
    assert len(client.get("/orders", params={"count": 100}).json()) == 60
    r = client.get("/orders", params={"ids": ",".join(map(str, ids[:50]))})
    assert r.status_code == 200 and len(r.json()) == 50


def test_from_and_to_filter_created_inclusively(
    sim: ShopWiredSimulator, client: httpx.Client
) -> None:
    base = datetime(2026, 1, 10, 9, 0, 0, tzinfo=UTC)
    ids = [add_at(sim, base + timedelta(seconds=s)) for s in (0, 1, 2, 3, 4)]
    start = int(base.timestamp()) + 1
    end = start + 2
    got = [o["id"] for o in client.get("/orders", params={"from": start, "to": end}).json()]
    assert got == ids[1:4]
    assert client.get("/orders/count", params={"from": start, "to": end}).json() == {"count": 3}
    assert [o["id"] for o in client.get("/orders", params={"from": end}).json()] == ids[3:]
    assert [o["id"] for o in client.get("/orders", params={"to": start}).json()] == ids[:2]


def test_fields_returns_only_the_named_properties_and_always_id(
    sim: ShopWiredSimulator, client: httpx.Client
) -> None:
    (oid,) = sim.generate_orders(1)
    (listed,) = client.get("/orders", params={"fields": "reference,total,nonsense"}).json()
    assert set(listed) == {"id", "reference", "total"}
    single = client.get(f"/orders/{oid}", params={"fields": "status"}).json()
    assert set(single) == {"id", "status"}
    full = client.get(f"/orders/{oid}").json()
    assert full == sim.orders[oid]


def test_ids_returns_known_orders_only_even_archived_ones(
    sim: ShopWiredSimulator, client: httpx.Client
) -> None:
    a, b, c = sim.generate_orders(3)
    sim.archive(b)
    got = client.get("/orders", params={"ids": f"{c},{a},999999,{b}"}).json()
    assert [o["id"] for o in got] == [a, b, c]  # sorted by created, unknown id absent
    assert client.get("/orders", params={"ids": f"{a},{b}", "archived": 0}).json()[0]["id"] == a


def test_archived_orders_are_not_regular_orders(
    sim: ShopWiredSimulator, client: httpx.Client
) -> None:
    ids = sim.generate_orders(5)
    sim.archive(ids[1])
    assert [o["id"] for o in client.get("/orders").json()] == ids[:1] + ids[2:]
    assert [o["id"] for o in client.get("/orders", params={"archived": 1}).json()] == [ids[1]]
    assert client.get("/orders/count", params={"archived": 1}).json() == {"count": 1}
    assert client.get("/orders/count").json() == {"count": 4}
    assert client.get(f"/orders/{ids[1]}").json()["archived"] is True


def test_status_filter_uses_status_ids(sim: ShopWiredSimulator, client: httpx.Client) -> None:
    ids = sim.generate_orders(30)
    for oid in ids[:4]:
        sim.set_status(oid, 1389)  # On Hold
    on_hold = client.get("/orders", params={"status": 1389}).json()
    assert sorted(o["id"] for o in on_hold) == sorted(
        oid for oid in ids if sim.orders[oid]["status"]["id"] == 1389
    )
    assert all(o["status"] == {"id": 1389, "name": "On Hold", "type": "custom"} for o in on_hold)
    assert client.get("/orders", params={"status": 4242}).json() == []


def test_single_order_statuses_status_update_and_delete(
    sim: ShopWiredSimulator, client: httpx.Client
) -> None:
    (oid,) = sim.generate_orders(1)
    assert client.get("/orders/424242").status_code == 404
    assert set(client.get("/orders/424242").json()) == {"code", "message"}
    statuses = client.get("/order-statuses").json()
    assert {"id": 1381, "name": "Paid", "type": "paid", "sortOrder": 2} in statuses
    assert client.post(f"/orders/{oid}/status", content=b'{"status": 1382}').status_code == 415
    assert client.post(f"/orders/{oid}/status", json={"status": 1}).status_code == 422
    assert client.post(f"/orders/{oid}/status", json={"status": "Shipped"}).status_code == 422
    url = "https://www.royalmail.com/track-your-item#/tracking-results/AB123456789GB"
    r = client.post(f"/orders/{oid}/status", json={"status": 1382, "trackingUrl": url,
                                                   "sendEmail": False})
    assert r.status_code == 200
    assert r.json()["status"] == {"id": 1382, "name": "Shipped", "type": "shipped"}
    assert sim.orders[oid]["trackingUrl"] == url
    assert client.get("/orders", params={"status": 1382}).json()[0]["id"] == oid
    r = client.delete(f"/orders/{oid}")
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/orders/{oid}").status_code == 404
    assert client.delete(f"/orders/{oid}").status_code == 404
    assert client.put(f"/orders/{oid}", json={}).status_code == 405
    assert client.get("/products").status_code == 404


def test_calls_are_counted_per_endpoint(sim: ShopWiredSimulator, client: httpx.Client) -> None:
    (oid,) = sim.generate_orders(1)
    client.get("/orders")
    client.get("/orders")
    client.get(f"/orders/{oid}")
    client.get("/orders/count")
    assert sim.calls["GET /v1/orders"] == 2
    assert sim.calls["GET /v1/orders/{id}"] == 1
    assert sim.calls["GET /v1/orders/count"] == 1
    assert sim.responses[200] == 4
    sim.reset_counters()
    assert not sim.calls and sim.throttled == 0


# ------------------------------------------------------------------------------ auth & limits


@pytest.mark.parametrize("auth", [None, ("sandbox-key", "wrong"), ("other", "sandbox-secret")])
def test_wrong_or_missing_credentials_are_401(
    sim: ShopWiredSimulator, auth: tuple[str, str] | None
) -> None:
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1",
                      auth=auth) as c:
        r = c.get("/orders")
    assert r.status_code == 401
    assert r.json()["message"] == "Unauthorized" and "code" in r.json()


def test_leaky_bucket_refuses_the_41st_rapid_call_and_recovers_as_it_drains(
    clock: FakeClock,
) -> None:
    sim = ShopWiredSimulator(clock=clock)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1",
                      auth=AUTH) as c:
        assert all(c.get("/orders/count").status_code == 200 for _ in range(40))
        r = c.get("/orders/count")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        assert set(r.json()) == {"code", "message"}
        assert sim.throttled == 1
        assert c.get("/orders/count").status_code == 429  # refused calls do not fill it
        clock.advance(0.5)  # drains one unit at 2/s
        assert c.get("/orders/count").status_code == 200
        assert c.get("/orders/count").status_code == 429
        clock.advance(20)  # 40 units drained
        assert all(c.get("/orders/count").status_code == 200 for _ in range(40))
        assert sim.throttled == 3
        assert sim.responses[429] == 3


def test_retry_after_can_be_left_out_like_the_undocumented_real_api(clock: FakeClock) -> None:
    sim = ShopWiredSimulator(clock=clock, bucket_size=2, retry_after_on_429=False)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1",
                      auth=AUTH) as c:
        c.get("/orders")
        c.get("/orders")
        r = c.get("/orders")
    assert r.status_code == 429 and "Retry-After" not in r.headers


def test_unauthorised_calls_do_not_use_the_bucket(clock: FakeClock) -> None:
    sim = ShopWiredSimulator(clock=clock, bucket_size=1)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1") as c:
        for _ in range(3):
            assert c.get("/orders").status_code == 401
        assert c.get("/orders", auth=AUTH).status_code == 200


# ------------------------------------------------------------------------------ mutators


def test_mutators_keep_the_indexes_right(sim: ShopWiredSimulator, client: httpx.Client) -> None:
    ids = sim.generate_orders(10)
    sim.delete_order(ids[0])
    sim.set_status(ids[1], 1383)
    refund = sim.add_refund(ids[2], "12.50", "Returned item")
    assert refund["value"] == 12.5 and refund["name"] == "Returned item"
    assert "createdAt" in refund and isinstance(refund["id"], int)
    assert client.get(f"/orders/{ids[2]}").json()["refunds"][-1] == refund
    assert client.get("/orders/count").json() == {"count": 9}
    assert client.get("/orders/count", params={"status": 1383}).json()["count"] >= 1
    with pytest.raises(KeyError):
        sim.set_status(ids[0], 1381)
    with pytest.raises(ValueError):
        sim.set_status(ids[1], 999)
    with pytest.raises(ValueError):
        sim.add_order({"id": "x", "created": "Mon, 23 Nov 2015 18:42:29 +0000"})


def test_generated_ids_and_references_increase_with_created(sim: ShopWiredSimulator) -> None:
    ids = sim.generate_orders(50)
    assert ids == sorted(ids) and len(set(ids)) == 50
    refs = [sim.orders[i]["reference"] for i in ids]
    assert refs == sorted(refs) and len(set(refs)) == 50
    assert [created_ts(sim.orders[i]) for i in ids] == sorted(
        created_ts(sim.orders[i]) for i in ids
    )


def test_shuffle_between_pages_changes_the_shop_under_offset_paging(
    sim: ShopWiredSimulator, client: httpx.Client, clock: FakeClock
) -> None:
    now = clock.now()
    sim.generate_orders(250, created_between=(now - timedelta(days=3), now))
    start, end = int((now - timedelta(days=3)).timestamp()), int(now.timestamp())
    sim.faults.shuffle_between_pages = True
    sim.faults.shuffle_delete_probability = 1.0
    seen: list[int] = []
    offset = 0
    while True:
        page = client.get(
            "/orders", params={"count": 100, "offset": offset, "from": start, "to": end}
        ).json()
        seen.extend(o["id"] for o in page)
        if len(page) < 100:
            break
        offset += 100
    inserted = [oid for kind, oid in sim.shuffle_log if kind == "inserted"]
    deleted = [oid for kind, oid in sim.shuffle_log if kind == "deleted"]
    assert inserted and deleted
    assert all(start <= created_ts(sim.orders[i]) <= end for i in inserted)
    # offset paging over a changing list either repeats rows or misses some
    truth = set(sim.created_ids(start, end, archived=False))
    assert len(seen) != len(set(seen)) or not truth <= set(seen)
