"""ElasticPathSimulator as a client sees it: tokens, paging, filters, PUT rules, 429, threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.clock import FakeClock
from sync.sandbox.elasticpath import ElasticPathSimulator, parse_ep_timestamp

BASE = "https://useast.api.elasticpath.com"
CLIENT_ID = "sandbox-client-id"
SECRET = "sandbox-client-secret"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> ElasticPathSimulator:
    return ElasticPathSimulator(clock=clock, seed=7, enforce_rate_limit=False)


@pytest.fixture
def http(sim: ElasticPathSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=BASE) as c:
        yield c


def get_token(http: httpx.Client, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
    data.update(form)
    return http.post("/oauth/access_token", data=data)


@pytest.fixture
def auth(http: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}


def orders(
    http: httpx.Client, auth: dict[str, str], **params: Any
) -> httpx.Response:
    return http.get("/v2/orders", params=params, headers=auth)


def ids_of(resp: httpx.Response) -> list[str]:
    return [o["id"] for o in resp.json()["data"]]


def errors(resp: httpx.Response) -> list[dict[str, Any]]:
    body = resp.json()
    errs = body["errors"]
    return errs if isinstance(errs, list) else [errs]


def add(sim: ElasticPathSimulator, created: datetime, updated: datetime | None = None,
        **fields: Any) -> str:
    """One generated order, re-timed to ``created``/``updated``."""
    (oid,) = sim.generate_orders(1, created_between=(created, created))
    sim.orders[oid].update(fields)
    sim.touch(oid, updated or created)
    return oid


# ------------------------------------------------------------------------------ tokens


def test_token_flat_shape(http: httpx.Client, clock: FakeClock) -> None:
    resp = get_token(http)
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["identifier"] == "client_credentials"
    assert body["expires"] == int((clock.now() + timedelta(hours=1)).timestamp())
    assert len(body["access_token"]) >= 32


def test_token_wrapped_shape(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, token_shape="data")
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=BASE) as http:
        body = get_token(http).json()
    assert set(body) == {"data"}
    assert body["data"]["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"client_secret": "wrong"}, 401),
        ({"client_id": "someone-else"}, 401),
        ({"grant_type": "password"}, 400),
        ({"grant_type": ""}, 400),
    ],
)
def test_token_rejections(http: httpx.Client, form: dict[str, str], status: int) -> None:
    resp = get_token(http, **form)
    assert resp.status_code == status
    (err,) = errors(resp)
    assert err["status"] == status and err["title"] and err["detail"]


def test_token_needs_a_form_body(http: httpx.Client) -> None:
    resp = http.post("/oauth/access_token", json={"grant_type": "client_credentials"})
    assert resp.status_code == 400
    assert http.get("/oauth/access_token").status_code == 405


def test_token_expires_after_an_hour(
    http: httpx.Client, auth: dict[str, str], clock: FakeClock
) -> None:
    clock.advance(3599)
    assert orders(http, auth).status_code == 200
    clock.advance(1)
    resp = orders(http, auth)
    assert resp.status_code == 401
    assert errors(resp)[0]["detail"] == "Unable to validate access token"


def test_missing_or_unknown_token(http: httpx.Client, sim: ElasticPathSimulator) -> None:
    assert http.get("/v2/orders").status_code == 401
    assert orders(http, {"Authorization": "Bearer nope"}).status_code == 401
    assert orders(http, {"Authorization": "Basic abc"}).status_code == 401


def test_expire_and_revoke(http: httpx.Client, auth: dict[str, str],
                           sim: ElasticPathSimulator) -> None:
    sim.expire_tokens()
    assert orders(http, auth).status_code == 401
    fresh = {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}
    assert orders(http, fresh).status_code == 200
    sim.revoke_tokens()
    assert orders(http, fresh).status_code == 401


def test_implicit_token_cannot_read_orders(http: httpx.Client) -> None:
    resp = http.post(
        "/oauth/access_token", data={"grant_type": "implicit", "client_id": CLIENT_ID}
    )
    assert resp.status_code == 200 and resp.json()["identifier"] == "implicit"
    implicit = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    assert orders(http, implicit).status_code == 403


def test_put_401_uses_the_documented_object_shape(
    http: httpx.Client, sim: ElasticPathSimulator
) -> None:
    (oid,) = sim.generate_orders(1)
    resp = http.put(f"/v2/orders/{oid}", json={"data": {"type": "order", "external_ref": "x"}})
    assert resp.status_code == 401
    assert resp.json() == {"errors": {"status": 401, "title": "Unauthorized"}}


# ------------------------------------------------------------------------------ list & paging


def test_list_defaults_meta_and_links(
    http: httpx.Client, auth: dict[str, str], sim: ElasticPathSimulator
) -> None:
    sim.generate_orders(60)
    resp = orders(http, auth)
    body = resp.json()
    assert len(body["data"]) == 25  # default page length
    updated = [parse_ep_timestamp(o["meta"]["timestamps"]["updated_at"]) for o in body["data"]]
    assert updated == sorted(updated, reverse=True)  # default sort -updated_at
    assert body["meta"] == {
        "page": {"limit": 25, "offset": 0, "current": 1, "total": 3},
        "results": {"total": 60},
    }
    links = body["links"]
    assert "page%5Boffset%5D=25" in links["next"] or "page[offset]=25" in links["next"]
    assert links["prev"] is None
    assert "included" not in body
    last = orders(http, auth, **{"page[offset]": 50}).json()
    assert len(last["data"]) == 10
    assert last["links"]["next"] is None
    assert last["meta"]["page"]["current"] == 3


def test_empty_result_still_has_paging_meta(http: httpx.Client, auth: dict[str, str]) -> None:
    body = orders(http, auth).json()
    assert body["data"] == []
    assert body["meta"]["results"] == {"total": 0}
    assert body["meta"]["page"]["total"] == 0


def test_paging_covers_everything_once(
    http: httpx.Client, auth: dict[str, str], sim: ElasticPathSimulator
) -> None:
    ids = sim.generate_orders(230)
    seen: list[str] = []
    for offset in range(0, 300, 100):
        seen += ids_of(orders(http, auth, sort="created_at", **{"page[limit]": 100,
                                                                 "page[offset]": offset}))
    assert seen == sim.created_ids() and sorted(seen) == sorted(ids)


@pytest.mark.parametrize(
    "params",
    [{"page[limit]": 0}, {"page[limit]": 101}, {"page[limit]": "x"}, {"page[offset]": -1},
     {"sort": "colour"}, {"sort": "--updated_at"}, {"include": "everything"}],
)
def test_bad_list_parameters(
    http: httpx.Client, auth: dict[str, str], params: dict[str, Any]
) -> None:
    resp = orders(http, auth, **params)
    assert resp.status_code == 400
    assert errors(resp)[0]["status"] == 400


def test_offset_cap(http: httpx.Client, auth: dict[str, str], clock: FakeClock) -> None:
    assert orders(http, auth, **{"page[offset]": 10000}).status_code == 200
    resp = orders(http, auth, **{"page[offset]": 10001})
    assert resp.status_code == 400
    assert "10000" in errors(resp)[0]["detail"]
    filtered = orders(http, auth, filter='ge(updated_at,"2020-01-01T00:00:00Z")',
                      **{"page[offset]": 10001})
    assert filtered.status_code == 400  # assumed: filtered or not
    small = ElasticPathSimulator(clock=clock, max_offset=150, enforce_rate_limit=False)
    with httpx.Client(transport=httpx.MockTransport(small.handle), base_url=BASE) as h:
        tok = {"Authorization": f"Bearer {get_token(h).json()['access_token']}"}
        assert orders(h, tok, **{"page[offset]": 150}).status_code == 200
        assert orders(h, tok, **{"page[offset]": 151}).status_code == 400


def test_sorting(http: httpx.Client, auth: dict[str, str], sim: ElasticPathSimulator) -> None:
    a = add(sim, T0, T0 + timedelta(hours=3))
    b = add(sim, T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    c = add(sim, T0 + timedelta(hours=2), T0 + timedelta(hours=2))
    assert ids_of(orders(http, auth, sort="updated_at")) == [b, c, a]
    assert ids_of(orders(http, auth, sort="-updated_at")) == [a, c, b]
    assert ids_of(orders(http, auth, sort="created_at")) == [a, b, c]
    assert ids_of(orders(http, auth, sort="-created_at")) == [c, b, a]


def test_ties_sort_by_id(http: httpx.Client, auth: dict[str, str],
                         sim: ElasticPathSimulator) -> None:
    ids = [add(sim, T0) for _ in range(5)]
    assert ids_of(orders(http, auth, sort="updated_at")) == sorted(ids)


def test_include_items(http: httpx.Client, auth: dict[str, str],
                       sim: ElasticPathSimulator) -> None:
    sim.generate_orders(30)
    body = orders(http, auth, include="items", **{"page[limit]": 10}).json()
    page_items = {i["id"] for i in body["included"]["items"]}
    listed = {
        ref["id"] for o in body["data"] for ref in o["relationships"]["items"]["data"]
    }
    assert page_items == listed and listed
    assert all(i["type"] == "order_item" for i in body["included"]["items"])
    assert orders(http, auth, include="items,promotions").status_code == 200


# ------------------------------------------------------------------------------ filters


@pytest.fixture
def timeline(sim: ElasticPathSimulator) -> dict[str, str]:
    """Orders created at T0+0h..4h; each updated one day after creation."""
    return {
        f"h{h}": add(sim, T0 + timedelta(hours=h), T0 + timedelta(days=1, hours=h))
        for h in range(5)
    }


def ts(hours: float, days: int = 0) -> str:
    dt = T0 + timedelta(days=days, hours=hours)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (f'ge(created_at,"{ts(2)}")', ["h2", "h3", "h4"]),
        (f'gt(created_at,"{ts(2)}")', ["h3", "h4"]),
        (f'le(created_at,"{ts(2)}")', ["h0", "h1", "h2"]),
        (f'lt(created_at,"{ts(2)}")', ["h0", "h1"]),
        (f'eq(created_at,"{ts(2)}")', ["h2"]),
        (f'ge(updated_at,"{ts(3, 1)}")', ["h3", "h4"]),
        (f'gt(updated_at,"{ts(3, 1)}")', ["h4"]),
        (f'le(updated_at,"{ts(1, 1)}")', ["h0", "h1"]),
        (f"ge(updated_at,{ts(3, 1)})", ["h3", "h4"]),  # unquoted (original parser)
        (f'ge(updated_at,"{ts(1, 1)}"):le(updated_at,"{ts(2, 1)}")', ["h1", "h2"]),
        (f'ge(created_at,"{ts(1)}"):lt(created_at,"{ts(3)}"):ge(updated_at,"{ts(2, 1)}")',
         ["h2"]),
        ("ge(created_at,2026-01-01)", ["h0", "h1", "h2", "h3", "h4"]),
        (f"ge(created_at,{int((T0 + timedelta(hours=4)).timestamp() * 1000)})", ["h4"]),
        # 9 digits: truncated to microseconds, so 03:00:00.000000001 still admits 03:00:00
        ('ge(updated_at,"2026-01-02T03:00:00.000000001Z")', ["h3", "h4"]),
        ('ge(updated_at,"2026-01-02T03:00:00.000001Z")', ["h4"]),
        ('ge(updated_at,"2026-01-02T04:00:00+01:00")', ["h3", "h4"]),
    ],
)
def test_timestamp_filters(
    http: httpx.Client, auth: dict[str, str], timeline: dict[str, str], flt: str,
    expected: list[str],
) -> None:
    resp = orders(http, auth, filter=flt, sort="created_at")
    assert resp.status_code == 200, resp.text
    names = {v: k for k, v in timeline.items()}
    assert [names[i] for i in ids_of(resp)] == expected
    assert resp.json()["meta"]["results"]["total"] == len(expected)


def test_enum_filters(http: httpx.Client, auth: dict[str, str],
                      sim: ElasticPathSimulator) -> None:
    paid = add(sim, T0, payment="paid", status="complete")
    add(sim, T0, payment="unpaid", status="incomplete")
    assert ids_of(orders(http, auth, filter="eq(payment,paid)")) == [paid]
    assert ids_of(orders(http, auth, filter='eq(payment,"paid"):eq(status,complete)')) == [paid]


@pytest.mark.parametrize(
    "flt",
    ["ge(updated_at)", "ge(colour,red)", "like(updated_at,2026)", "ge(updated_at,yesterday)",
     'ge(updated_at,"2026-01-01T00:00:00Z")ge(created_at,"2026-01-01T00:00:00Z")',
     "gt(status,paid)", "ge(updated_at,\"2026-13-01T00:00:00Z\")", 'eq(status,"\\x")',
     "ge(with_tax,-)", "ge(updated_at,99999999999999999999)",
     ":".join(["ge(created_at,2026-01-01)"] * 11)],
)
def test_bad_filters(http: httpx.Client, auth: dict[str, str], flt: str) -> None:
    resp = orders(http, auth, filter=flt)
    assert resp.status_code == 400
    assert errors(resp)[0]["status"] == 400


def test_could_not_parse_message(http: httpx.Client, auth: dict[str, str]) -> None:
    resp = orders(http, auth, filter="nonsense")
    assert errors(resp)[0]["detail"] == "Could not parse the supplied filter"


# ------------------------------------------------------------------------------ single order


def test_get_one_and_items(http: httpx.Client, auth: dict[str, str],
                           sim: ElasticPathSimulator) -> None:
    (oid,) = sim.generate_orders(1)
    body = http.get(f"/v2/orders/{oid}", headers=auth).json()
    assert body["data"]["id"] == oid and "included" not in body
    body = http.get(f"/v2/orders/{oid}", params={"include": "items"}, headers=auth).json()
    assert body["included"]["items"] == sim.items[oid]
    items = http.get(f"/v2/orders/{oid}/items", headers=auth).json()
    assert items["data"] == sim.items[oid]
    missing = http.get("/v2/orders/00000000-0000-0000-0000-000000000000", headers=auth)
    assert missing.status_code == 404
    assert errors(missing)[0]["title"] == "Not Found"
    assert http.delete(f"/v2/orders/{oid}", headers=auth).status_code == 405
    assert http.get("/v2/carts", headers=auth).status_code == 404


# ------------------------------------------------------------------------------ PUT rules


def put(http: httpx.Client, auth: dict[str, str], oid: str, **data: Any) -> httpx.Response:
    return http.put(f"/v2/orders/{oid}", json={"data": {"type": "order", **data}},
                    headers=auth)


@pytest.fixture
def paid(sim: ElasticPathSimulator) -> str:
    return add(sim, T0, status="complete", payment="paid", shipping="unfulfilled")


def test_cancel_unfulfilled(http: httpx.Client, auth: dict[str, str], sim: ElasticPathSimulator,
                            paid: str, clock: FakeClock) -> None:
    clock.advance(5)
    resp = put(http, auth, paid, status="cancelled")
    assert resp.status_code == 200
    assert resp.json()["data"]["status"] == "cancelled"
    assert sim.orders[paid]["status"] == "cancelled"
    assert sim.updated_at(paid) == clock.now()
    assert resp.json()["data"]["meta"]["timestamps"]["updated_at"] == sim.render(clock.now())
    assert put(http, auth, paid, status="cancelled").status_code == 422  # already cancelled
    assert put(http, auth, paid, shipping="fulfilled").status_code == 422  # cancelled


def test_fulfil_paid_then_nothing_but_references(
    http: httpx.Client, auth: dict[str, str], sim: ElasticPathSimulator, paid: str
) -> None:
    assert put(http, auth, paid, shipping="fulfilled").status_code == 200
    assert sim.orders[paid]["shipping"] == "fulfilled"
    for change in ({"status": "cancelled"}, {"shipping": "fulfilled"},
                   {"shipping_address": {"city": "Leeds"}}):
        resp = put(http, auth, paid, **change)
        assert resp.status_code == 422
        assert errors(resp)[0]["detail"] == "Order cannot be updated in its current state"
    assert put(http, auth, paid, external_ref="WP-1", order_number="N-9").status_code == 200
    assert sim.orders[paid]["external_ref"] == "WP-1"


def test_fulfil_needs_payment(http: httpx.Client, auth: dict[str, str],
                              sim: ElasticPathSimulator) -> None:
    for payment in ("unpaid", "authorized", "refunded"):
        oid = add(sim, T0, status="complete", payment=payment, shipping="unfulfilled")
        assert put(http, auth, oid, shipping="fulfilled").status_code == 422


def test_422_changes_nothing(http: httpx.Client, auth: dict[str, str],
                             sim: ElasticPathSimulator, paid: str, clock: FakeClock) -> None:
    sim.set_shipping(paid, "fulfilled")
    before = sim.get_order(paid)
    clock.advance(10)
    assert put(http, auth, paid, external_ref="WP-2", status="cancelled").status_code == 422
    assert sim.get_order(paid) == before


@pytest.mark.parametrize(
    "data",
    [
        {"status": "complete"},
        {"shipping": "unfulfilled"},
        {"payment": "paid"},
        {"billing_address": {"city": "Leeds"}},
        {"external_ref": "x" * 65},
        {"external_ref": 42},
        {"shipping_address": {"planet": "Mars"}},
        {"shipping_address": "Leeds"},
        {"id": "another-order"},
    ],
)
def test_put_validation(http: httpx.Client, auth: dict[str, str], paid: str,
                        data: dict[str, Any]) -> None:
    resp = put(http, auth, paid, **data)
    assert resp.status_code == 400
    assert errors(resp)[0]["status"] == 400


def test_put_body_shape(http: httpx.Client, auth: dict[str, str], paid: str) -> None:
    url = f"/v2/orders/{paid}"
    assert http.put(url, json={"data": {"type": "cart"}}, headers=auth).status_code == 400
    assert http.put(url, json={"type": "order"}, headers=auth).status_code == 400
    assert http.put(url, content=b"{not json", headers={**auth,
                    "Content-Type": "application/json"}).status_code == 400
    assert http.put(url, data={"external_ref": "x"}, headers=auth).status_code == 400
    missing = put(http, auth, "00000000-0000-0000-0000-000000000000", external_ref="x")
    assert missing.status_code == 404


def test_external_ref_limits_and_clearing(
    http: httpx.Client, auth: dict[str, str], sim: ElasticPathSimulator, paid: str,
    clock: FakeClock,
) -> None:
    assert put(http, auth, paid, external_ref="é" * 64).status_code == 200
    assert sim.orders[paid]["external_ref"] == "é" * 64
    clock.advance(1)
    assert put(http, auth, paid, external_ref="").status_code == 200
    assert "external_ref" not in sim.orders[paid]
    assert sim.updated_at(paid) == clock.now()


def test_unchanged_put_does_not_bump(http: httpx.Client, auth: dict[str, str],
                                     sim: ElasticPathSimulator, paid: str,
                                     clock: FakeClock) -> None:
    put(http, auth, paid, external_ref="same")
    stamp = sim.updated_at(paid)
    clock.advance(30)
    assert put(http, auth, paid, external_ref="same").status_code == 200
    assert sim.updated_at(paid) == stamp


def test_address_and_custom_fields(http: httpx.Client, auth: dict[str, str],
                                   sim: ElasticPathSimulator, paid: str) -> None:
    resp = put(http, auth, paid, shipping_address={"city": "Leeds", "postcode": "LS1 4DY"},
               gift_message="Happy birthday")
    assert resp.status_code == 200
    order = sim.orders[paid]
    assert order["shipping_address"]["city"] == "Leeds"
    assert order["shipping_address"]["line_1"]  # merged, not replaced
    assert order["gift_message"] == "Happy birthday"


# ------------------------------------------------------------------------------ rate limit


def test_rate_limit_25_per_second(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=BASE) as http:
        token = get_token(http).json()["access_token"]  # counts as 1
        tok = {"Authorization": f"Bearer {token}"}
        statuses = [orders(http, tok).status_code for _ in range(25)]
        assert statuses == [200] * 24 + [429]
        resp = orders(http, tok)
        assert resp.status_code == 429 and "Retry-After" not in resp.headers
        assert errors(resp)[0]["status"] == 429
        assert orders(http, {"Authorization": "Bearer bad"}).status_code == 401  # no budget
        clock.advance(0.5)
        assert orders(http, tok).status_code == 429
        clock.advance(0.5)
        assert orders(http, tok).status_code == 200
        assert sim.throttled == 3


def test_rate_limit_retry_after_when_enabled(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, rate_limit_per_second=2, retry_after_on_429=True)
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=BASE) as http:
        tok = {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}
        assert orders(http, tok).status_code == 200
        resp = orders(http, tok)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "1"


# ------------------------------------------------------------------------------ data & mutations


def test_generation_is_deterministic_and_consistent(clock: FakeClock) -> None:
    a = ElasticPathSimulator(clock=clock, seed=3)
    b = ElasticPathSimulator(clock=clock, seed=3)
    window = (T0, T0 + timedelta(days=2))
    ids = a.generate_orders(40, created_between=window)
    assert ids == b.generate_orders(40, created_between=window)
    assert a.orders == b.orders and a.items == b.items
    assert len(set(ids)) == 40
    for oid in ids:
        order = a.orders[oid]
        stamps = order["meta"]["timestamps"]
        created = parse_ep_timestamp(stamps["created_at"])
        updated = parse_ep_timestamp(stamps["updated_at"])
        assert created is not None and updated is not None
        assert window[0] <= created <= window[1]
        assert created <= updated <= max(clock.now(), window[1])
        assert stamps["created_at"].endswith("Z") and len(stamps["created_at"]) == 24
        rel = [r["id"] for r in order["relationships"]["items"]["data"]]
        assert rel == [i["id"] for i in a.items[oid]]
        dp = order["meta"]["display_price"]
        assert dp["with_tax"]["amount"] == dp["without_tax"]["amount"] + dp["tax"]["amount"]
        assert dp["with_tax"]["formatted"].startswith("£")
    assert {o["payment"] for o in a.orders.values()} >= {"paid", "unpaid"}


def test_generation_window_validation(sim: ElasticPathSimulator) -> None:
    with pytest.raises(ValueError):
        sim.generate_orders(1, created_between=(T0, T0 - timedelta(days=1)))


@pytest.mark.parametrize(("digits", "example"),
                         [(0, "2026-01-15T12:00:01Z"), (3, "2026-01-15T12:00:01.234Z"),
                          (9, "2026-01-15T12:00:01.234567000Z")])
def test_timestamp_precision(clock: FakeClock, digits: int, example: str) -> None:
    sim = ElasticPathSimulator(clock=clock, timestamp_digits=digits)
    (oid,) = sim.generate_orders(1)
    clock.advance(1.234567)
    sim.touch(oid)
    assert sim.orders[oid]["meta"]["timestamps"]["updated_at"] == example


def test_mutations_bump_updated_at(http: httpx.Client, auth: dict[str, str],
                                   sim: ElasticPathSimulator, clock: FakeClock) -> None:
    oid = add(sim, T0, status="incomplete", payment="unpaid", shipping="unfulfilled")
    since = clock.now()
    flt = f'ge(updated_at,"{since.strftime("%Y-%m-%dT%H:%M:%S.000Z")}")'
    assert ids_of(orders(http, auth, filter=flt)) == []
    clock.advance(1)
    sim.set_payment(oid, "paid")
    assert sim.orders[oid]["meta"]["timestamps"]["fully_paid_at"]
    assert ids_of(orders(http, auth, filter=flt)) == [oid]
    clock.advance(1)
    sim.set_shipping(oid, "fulfilled")
    clock.advance(1)
    sim.set_status(oid, "on_hold_custom")  # unknown values are allowed
    assert sim.updated_at(oid) == clock.now()
    assert sim.orders[oid]["status"] == "on_hold_custom"
    assert sim.updated_ids(since) == [oid]
    assert sim.delete_order(oid) and not sim.delete_order(oid)
    with pytest.raises(KeyError):
        sim.set_status(oid, "complete")


def test_add_order_validation(sim: ElasticPathSimulator) -> None:
    with pytest.raises(ValueError):
        sim.add_order({"id": 5})
    with pytest.raises(ValueError):
        sim.add_order({"id": "x", "meta": {"timestamps": {"created_at": "soon"}}})
    oid = sim.add_order({"id": "bare", "meta": {"timestamps": {"created_at":
                                                                "2026-01-01T00:00:00Z"}}})
    assert sim.updated_at(oid) == T0


def test_faults(http: httpx.Client, auth: dict[str, str], sim: ElasticPathSimulator) -> None:
    sim.faults.error_rate = 1.0
    sim.faults.error_statuses = (500,)
    resp = orders(http, auth)
    assert resp.status_code == 500 and errors(resp)[0]["status"] == 500
    sim.faults.error_statuses = (503,)
    resp = orders(http, auth)
    assert resp.status_code == 503 and resp.headers["content-type"].startswith("text/html")
    sim.faults.clear()
    sim.faults.timeout_rate = 1.0
    with pytest.raises(httpx.ReadTimeout):
        orders(http, auth)


def test_thread_safety(clock: FakeClock) -> None:
    sim = ElasticPathSimulator(clock=clock, seed=5, enforce_rate_limit=False)
    ids = sim.generate_orders(200)
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=BASE) as h:
                tok = {"Authorization": f"Bearer {get_token(h).json()['access_token']}"}
                for i in range(15):
                    oid = ids[(n * 15 + i) % len(ids)]
                    assert orders(h, tok, include="items",
                                  **{"page[limit]": 20}).status_code == 200
                    assert put(h, tok, oid, external_ref=f"t{n}-{i}").status_code == 200
                    sim.touch(oid)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sim.calls["GET /v2/orders"] == 8 * 15
    assert sim.calls["PUT /v2/orders/{id}"] == 8 * 15
    assert sim.responses[200] == 8 * 15 * 2 + 8


# ------------------------------------------------------------------------------ fuzz

_filter_text = st.text(
    alphabet=st.sampled_from(list('gelteq(),:"\\updated_atcrsw0123456789-TZ.+ ')), max_size=60
) | st.text(max_size=30)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "status", "shipping", "external_ref", "shipping_address",
                         "city", "id", "payment", "order_number", "custom"]), c, max_size=4),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def fuzz_target() -> tuple[ElasticPathSimulator, httpx.Client, dict[str, str], str]:
    sim = ElasticPathSimulator(clock=FakeClock(), seed=2, enforce_rate_limit=False)
    (oid,) = sim.generate_orders(1)
    http = httpx.Client(transport=httpx.MockTransport(sim.handle), base_url=BASE)
    return sim, http, {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}, oid


@settings(max_examples=400)
@given(flt=_filter_text, sort=_filter_text, limit=_filter_text, offset=_filter_text,
       include=_filter_text)
def test_fuzz_list_parameters_answer_200_or_400(
    fuzz_target: tuple[ElasticPathSimulator, httpx.Client, dict[str, str], str],
    flt: str, sort: str, limit: str, offset: str, include: str,
) -> None:
    _, http, tok, _ = fuzz_target
    params = {"filter": flt, "sort": sort, "page[limit]": limit, "page[offset]": offset,
              "include": include}
    assert orders(http, tok, **params).status_code in (200, 400)


@settings(max_examples=400)
@given(data=_json)
def test_fuzz_put_bodies_answer_200_400_or_422(
    fuzz_target: tuple[ElasticPathSimulator, httpx.Client, dict[str, str], str], data: Any,
) -> None:
    _, http, tok, oid = fuzz_target
    body = {"type": "order", **data} if isinstance(data, dict) else data
    resp = http.put(f"/v2/orders/{oid}", json={"data": body}, headers=tok)
    assert resp.status_code in (200, 400, 422)
