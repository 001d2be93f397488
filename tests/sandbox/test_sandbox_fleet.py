"""FleetSandbox: many shops and WiredPlus accounts on two ports, routed by store name."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sync.clock import FakeClock
from sync.sandbox.fleet import (
    FleetSandbox,
    ForeignRecord,
    StoreSpec,
    describe_fleet,
    secrets_env,
    stores_toml,
)

HTTP = httpx.Client()  # one client: a new one per request costs ~50 ms (TLS context)


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture
def fleet() -> Iterator[FleetSandbox]:
    stores: list[str | StoreSpec] = ["acme", "bravo", StoreSpec("charlie.eu", orders=7)]
    with FleetSandbox(stores, orders=30, seed=11, clock=FakeClock(), limits=False) as fb:
        yield fb
        assert fb.server_errors == []


def shop_get(fb: FleetSandbox, store: str, path: str, auth: tuple[str, str] | None = None,
             **params: Any) -> httpx.Response:
    creds = auth if auth is not None else fb.shopwired_credentials(store)
    return HTTP.get(fb.shopwired_url(store) + path, auth=creds, params=params)


def order_body(ref: str, reference: int) -> dict[str, Any]:
    return {
        "api_reference_id": ref,
        "order_reference": reference,
        "customer_email": "mary@example.co.uk",
        "order_lines": [{"order_line_id": 1, "product_name": "Mug", "quantity": 1}],
    }


def test_each_store_serves_its_own_orders_with_its_own_credentials(fleet: FleetSandbox) -> None:
    seen: dict[str, set[int]] = {}
    for store, expected in (("acme", 30), ("bravo", 30), ("charlie.eu", 7)):
        r = shop_get(fleet, store, "/orders/count")
        assert r.status_code == 200 and r.json() == {"count": expected}
        page = shop_get(fleet, store, "/orders", count=100, sort="date")
        assert page.status_code == 200
        seen[store] = {o["id"] for o in page.json()}
        assert seen[store] == set(fleet.shop(store).order_ids())
        one = next(iter(seen[store]))
        assert shop_get(fleet, store, f"/orders/{one}", fields="reference").status_code == 200
    # no two shops share an order id, so a record can always be traced to its store
    assert not seen["acme"] & seen["bravo"] and not seen["bravo"] & seen["charlie.eu"]
    # and all of it went through one port
    assert len({fleet.shopwired_url(s).rsplit("/", 2)[0] for s in fleet.stores}) == 1
    assert fleet.shop("acme").calls["GET /v1/orders"] == 1  # the prefix is gone inside


def test_another_stores_credentials_get_401_on_both_apis(fleet: FleetSandbox) -> None:
    acme_shop, acme_wp = fleet.shopwired_credentials("acme"), fleet.wiredplus_credentials("acme")
    assert shop_get(fleet, "bravo", "/orders", auth=acme_shop).status_code == 401
    bravo_order = fleet.shop("bravo").order_ids()[0]
    assert shop_get(fleet, "bravo", f"/orders/{bravo_order}", auth=acme_shop).status_code == 401
    r = HTTP.post(fleet.wiredplus_url("bravo") + "/UpdateOrder", auth=acme_wp,
                   json=order_body(str(bravo_order), 1001))
    assert r.status_code == 401
    assert fleet.account("bravo").orders == {} and fleet.account("acme").orders == {}
    # without credentials, or at an unknown store: 401 / 404
    assert HTTP.get(fleet.shopwired_url("acme") + "/orders").status_code == 401
    assert HTTP.get(fleet.shops_url + "/nobody/v1/orders", auth=acme_shop).status_code == 404
    assert HTTP.get(fleet.accounts_url + "/nobody/v1/GetAccountInfo",
                     auth=acme_wp).status_code == 404
    info = HTTP.get(fleet.wiredplus_url("acme") + "/GetAccountInfo", auth=acme_wp)
    assert info.status_code == 200 and info.json()["api_user"] == acme_wp[0]


def test_revoke_restore_and_outage_hit_one_store_only(fleet: FleetSandbox) -> None:
    fleet.revoke("acme")
    assert shop_get(fleet, "acme", "/orders").status_code == 401
    assert shop_get(fleet, "bravo", "/orders").status_code == 200
    assert "shop credentials revoked" in describe_fleet(fleet).splitlines()[0]
    fleet.restore("acme")
    assert shop_get(fleet, "acme", "/orders").status_code == 200

    fleet.outage("bravo", True)
    down = shop_get(fleet, "bravo", "/orders")
    assert down.status_code == 503 and down.headers["content-type"].startswith("text/html")
    assert shop_get(fleet, "acme", "/orders").status_code == 200
    assert "shop down" in describe_fleet(fleet).splitlines()[1]
    fleet.outage("bravo", False)
    assert shop_get(fleet, "bravo", "/orders").status_code == 200

    fleet.revoke("acme", side="wiredplus")
    creds = fleet.wiredplus_credentials("acme")
    assert HTTP.get(fleet.wiredplus_url("acme") + "/GetAccountInfo",
                     auth=creds).status_code == 401
    fleet.restore("acme", side="wiredplus")
    assert HTTP.get(fleet.wiredplus_url("acme") + "/GetAccountInfo",
                     auth=creds).status_code == 200


def test_add_store_while_serving_and_activity(fleet: FleetSandbox) -> None:
    fleet.start_activity(interval_seconds=0.02, changes_per_tick=2, new_per_tick=1)
    late = fleet.add_store("late-comer", orders=4)
    r = shop_get(fleet, "late-comer", "/orders/count")
    assert r.status_code == 200 and r.json()["count"] >= 4
    assert shop_get(fleet, "late-comer", "/orders",
                    auth=fleet.shopwired_credentials("acme")).status_code == 401
    assert late.index == 3 and fleet.stores[-1] == "late-comer"
    assert "late-comer" in tomllib.loads(stores_toml(fleet))["stores"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not {
        s for s, _, kind in fleet.activity_log if kind == "new"
    } >= set(fleet.stores):
        time.sleep(0.02)
    fleet.stop_activity()
    assert fleet.activity_errors == []
    assert {s for s, _, kind in fleet.activity_log if kind == "new"} == set(fleet.stores)
    with pytest.raises(ValueError, match="already exists"):
        fleet.add_store("acme")


def test_limits_are_per_store() -> None:
    with FleetSandbox(["a", "b"], orders=3, clock=FakeClock(), hourly_limit=5) as fb:
        # the fake clock never drains the 40-deep bucket: the 41st request is refused
        codes = [shop_get(fb, "a", "/orders/count").status_code for _ in range(41)]
        assert codes[:40] == [200] * 40 and codes[40] == 429
        assert shop_get(fb, "b", "/orders/count").status_code == 200  # its own bucket
        creds = fb.wiredplus_credentials("a")
        info = [HTTP.get(fb.wiredplus_url("a") + "/GetAccountInfo", auth=creds).status_code
                for _ in range(6)]
        assert info == [200] * 5 + [429]
        assert HTTP.get(fb.wiredplus_url("b") + "/GetAccountInfo",
                         auth=fb.wiredplus_credentials("b")).status_code == 200


def test_no_limits_means_no_429(fleet: FleetSandbox) -> None:
    codes = {shop_get(fleet, "acme", "/orders/count").status_code for _ in range(60)}
    creds = fleet.wiredplus_credentials("acme")
    with httpx.Client(auth=creds) as c:
        codes |= {c.get(fleet.wiredplus_url("acme") + "/GetAccountInfo").status_code
                  for _ in range(60)}
    assert codes == {200}


def test_stores_toml_and_secrets_env_round_trip(fleet: FleetSandbox) -> None:
    fleet.add_store("ep-shop", orders=2, source="elasticpath",
                    settings={"reference_prefix": "ep-", "wiredplus_bulk": False})
    text = stores_toml(fleet)
    env = secrets_env(fleet)
    doc = tomllib.loads(text)
    assert list(doc) == ["stores"] and list(doc["stores"]) == fleet.stores
    secrets = set(env.values())
    assert not any(secret in text for secret in secrets)  # secrets only by reference
    for name, entry in doc["stores"].items():
        refs = {k: v for k, v in entry.items() if k.endswith("_env")}
        assert all(v in env for v in refs.values())
        assert not [k for k in entry if k.endswith(("_secret", "wiredplus_api_key"))]
        assert entry["wiredplus_base_url"] == fleet.wiredplus_url(name)
        assert entry["wiredplus_api_user"] == fleet.wiredplus_credentials(name)[0]
        assert env[entry["wiredplus_api_key_env"]] == fleet.wiredplus_credentials(name)[1]
    acme = doc["stores"]["acme"]
    assert acme["source"] == "shopwired"
    assert acme["shopwired_api_secret_env"] == "ORDERSYNC_STORE_ACME_SHOPWIRED_API_SECRET"
    assert env["ORDERSYNC_STORE_ACME_SHOPWIRED_API_SECRET"] == fleet.shopwired_credentials(
        "acme")[1]
    assert env["ORDERSYNC_STORE_ACME_SHOPWIRED_WEBHOOK_SECRET"] == fleet.webhook_secret("acme")
    eu = doc["stores"]["charlie.eu"]
    assert eu["shopwired_api_key"] == fleet.shopwired_credentials("charlie.eu")[0]
    assert eu["wiredplus_api_key_env"] == "ORDERSYNC_STORE_CHARLIE_EU_WIREDPLUS_API_KEY"
    ep = doc["stores"]["ep-shop"]
    assert ep["source"] == "elasticpath" and ep["reference_prefix"] == "ep-"
    assert ep["wiredplus_bulk"] is False
    secret_env = ep["elasticpath_client_secret_env"]
    assert secret_env == "ORDERSYNC_STORE_EP_SHOP_ELASTICPATH_CLIENT_SECRET"
    assert "ORDERSYNC_STORE_EP_SHOP_ELASTICPATH_WEBHOOK_SECRET" in env
    # the URLs in the file work with the referenced secrets
    token = HTTP.post(ep["elasticpath_base_url"] + "/oauth/access_token", data={
        "grant_type": "client_credentials", "client_id": ep["elasticpath_client_id"],
        "client_secret": env[ep["elasticpath_client_secret_env"]]})
    assert token.status_code == 200
    listed = HTTP.get(ep["elasticpath_base_url"] + "/v2/orders",
                       headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert listed.status_code == 200 and len(listed.json()["data"]) == 2
    r = HTTP.get(acme["shopwired_base_url"] + "/orders/count",
                  auth=(acme["shopwired_api_key"], env[acme["shopwired_api_secret_env"]]))
    assert r.status_code == 200
    docker = tomllib.loads(stores_toml(fleet, host="host.docker.internal"))
    assert docker["stores"]["acme"]["shopwired_base_url"].startswith(
        "http://host.docker.internal:")
    assert len(describe_fleet(fleet).splitlines()) == len(fleet.stores)


def test_foreign_records_find_a_write_into_the_wrong_account(fleet: FleetSandbox) -> None:
    acme_shop = fleet.shop("acme")
    oid = acme_shop.order_ids()[0]
    ref = str(oid)
    reference = int(acme_shop.orders[oid]["reference"])
    with httpx.Client(auth=fleet.wiredplus_credentials("acme")) as c:
        r = c.post(fleet.wiredplus_url("acme") + "/UpdateOrder", json=order_body(ref, reference))
        assert r.status_code == 200
        wp_id = r.json()["id"]
        ev = c.post(fleet.wiredplus_url("acme") + "/CreateOrderEvent", json={
            "event_reference": f"{ref}:status:processing", "order_id": wp_id,
            "event_type": "processing", "event_date": "2026-01-15T12:00:00Z"})
        assert ev.status_code == 200
    assert fleet.foreign_records() == [] and fleet.foreign_orders() == []
    counts = fleet.counts()
    assert counts["acme"][:3] == (30, 1, 1) and counts["bravo"][:3] == (30, 0, 0)
    # a daemon given bravo's WiredPlus key for acme's shop writes acme's order to bravo
    with httpx.Client(auth=fleet.wiredplus_credentials("bravo")) as c:
        r = c.post(fleet.wiredplus_url("bravo") + "/UpdateOrder", json=order_body(ref, reference))
        assert r.status_code == 200
    assert fleet.foreign_records() == [ForeignRecord("bravo", "order", ref, "acme")]
    assert fleet.foreign_orders() == [("bravo", ref)]


def test_same_seed_same_store_same_data_and_names_are_checked() -> None:
    one = FleetSandbox(["x", "y"], orders=5, seed=4, clock=FakeClock())
    two = FleetSandbox(["y"], orders=5, seed=4, clock=FakeClock())
    a, b = one.shop("y"), two.shop("y")
    assert (a.api_key, a.api_secret) == (b.api_key, b.api_secret)
    assert one.wiredplus_credentials("y") == two.wiredplus_credentials("y")
    assert [(o["reference"], o["total"], o["created"]) for o in a.orders.values()] == \
        [(o["reference"], o["total"], o["created"]) for o in b.orders.values()]
    assert one.shopwired_credentials("x") != one.shopwired_credentials("y")
    for bad in ("", "Acme", "-acme", "a b", "a/b", "x" * 64):
        with pytest.raises(ValueError, match="invalid store name"):
            one.add_store(bad)
    one.add_store("a-b")
    with pytest.raises(ValueError, match="environment variable"):
        one.add_store("a_b")
    with pytest.raises(TypeError):
        one.elasticpath("x")
    with pytest.raises(RuntimeError, match="not running"):
        one.shopwired_url("x")
