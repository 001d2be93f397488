"""Many stores, one deployment: the fleet polls every store of the registry into its own
WiredPlus account, isolates a failing store, follows the registry without a restart, and
shares the stores between pollers through leases.

Real HTTP against the multi-shop sandbox (limits on), the real ledger (SQLite and
PostgreSQL), the product's default settings; time is compressed only through the injected
clock (:class:`SkippingClock`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings, load_settings
from sync.clock import SkippingClock
from sync.ledger.fleet import FleetLedger
from sync.ledger.store import Ledger
from sync.registry import parse_spec
from sync.sandbox.fleet import FleetSandbox, secrets_env, stores_toml
from sync.service.fleet import Fleet
from sync.service.runtime import build_fleet

BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture
def fleet_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[FleetSandbox, Settings]]:
    with FleetSandbox(["acme", "bravo", "charlie"], orders=40, seed=16) as fb:
        registry = tmp_path / "stores.toml"
        registry.write_text(stores_toml(fb), encoding="utf-8")
        for name, value in secrets_env(fb).items():
            monkeypatch.setenv(name, value)
        ledger = Ledger(db_url)
        ledger.create_schema()
        ledger.dispose()
        yield fb, load_settings(database_url=db_url, stores_file=registry)


class Running:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.stop = threading.Event()
        self.thread = threading.Thread(target=fleet.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.fleet.ledger.ledger.dispose()


def synced(fb: FleetSandbox, store: str) -> bool:
    c = fb.counts()[store]
    return c.orders == c.shop_orders > 0


@BOTH
def test_every_store_is_synced_into_its_own_account_and_only_there(fleet_env) -> None:
    fb, settings = fleet_env
    run = Running(build_fleet(settings, clock=SkippingClock()))
    try:
        wait_for(lambda: all(synced(fb, s) for s in fb.stores), what="all stores synced")
    finally:
        run.close()
    counts = fb.counts()
    assert all(c.duplicate_orders == 0 and c.duplicate_events == 0 for c in counts.values())
    assert fb.foreign_records() == []
    ledger = Ledger(settings.database_url)
    try:
        for store in fb.stores:
            assert ledger.counts(store).orders.get("synced") == counts[store].shop_orders
        assert FleetLedger(ledger).leases() == {}  # released on a clean stop
    finally:
        ledger.dispose()


@PG
def test_a_store_with_revoked_credentials_or_a_down_api_does_not_hold_the_others_back(
    fleet_env,
) -> None:
    fb, settings = fleet_env
    fb.revoke("acme")
    fb.outage("bravo", True)
    clock = SkippingClock()
    run = Running(build_fleet(settings, clock=clock))
    ledger = FleetLedger(Ledger(settings.database_url))
    try:
        wait_for(lambda: synced(fb, "charlie"), what="the healthy store synced")
        # The down API's pass fails once the source's retries are spent (about 85 s).
        wait_for(lambda: {s: st.health for s, st in ledger.states().items()}
                 == {"acme": "credentials", "bravo": "unreachable"}, timeout=180,
                 what="both marked")
        states = ledger.states()
        assert "401" in (states["acme"].health_reason or "")
        assert states["acme"].retry_at is not None
        assert states["bravo"].health_reason
        # Fixed at the source: both recover by themselves (next retry / next pass).
        fb.restore("acme")
        fb.outage("bravo", False)
        clock.skip(600)
        wait_for(lambda: synced(fb, "acme") and synced(fb, "bravo"), what="recovered")
        wait_for(lambda: all(st.health == "ok" for st in ledger.states().values()),
                 what="health ok again")
    finally:
        run.close()
        ledger.ledger.dispose()
    assert fb.foreign_records() == []


@BOTH
def test_a_store_added_while_running_syncs_within_one_poll_interval_and_pause_stops_it(
    fleet_env,
) -> None:
    fb, settings = fleet_env
    run = Running(build_fleet(settings, clock=SkippingClock()))
    ledger = FleetLedger(Ledger(settings.database_url))
    try:
        wait_for(lambda: all(synced(fb, s) for s in fb.stores), what="first stores")
        fb.add_store("delta", orders=30)
        import os

        for name, value in secrets_env(fb).items():
            os.environ[name] = value
        url_sw, url_wp = fb.shopwired_url("delta"), fb.wiredplus_url("delta")
        key, _ = fb.shopwired_credentials("delta")
        user, _ = fb.wiredplus_credentials("delta")
        from sync.sandbox.fleet import secret_env_name

        spec = parse_spec("delta", {
            "source": "shopwired", "shopwired_base_url": url_sw, "shopwired_api_key": key,
            "shopwired_api_secret_env": secret_env_name("delta", "shopwired_api_secret"),
            "wiredplus_base_url": url_wp, "wiredplus_api_user": user,
            "wiredplus_api_key_env": secret_env_name("delta", "wiredplus_api_key"),
        }, "ledger")
        added = time.monotonic()
        ledger.add_store(spec, SkippingClock().now())
        wait_for(lambda: synced(fb, "delta"), timeout=settings.poll_interval,
                 what="the added store synced within one poll interval")
        assert time.monotonic() - added < settings.poll_interval
        ledger.set_paused("delta", True, "merchant asked", SkippingClock().now())
        wait_for(lambda: "delta" not in run.fleet.loops and "delta" not in run.fleet.stopping,
                 what="paused store stopped")
        assert "delta" not in ledger.leases()
    finally:
        run.close()
        ledger.ledger.dispose()
    assert fb.foreign_records() == []


@PG
def test_two_pollers_share_the_stores_and_one_that_dies_hands_them_over_within_a_lease(
    fleet_env,
) -> None:
    fb, settings = fleet_env
    clock = SkippingClock()
    first = Running(build_fleet(settings, clock=clock, owner="poller-a"))
    second = Running(build_fleet(settings, clock=clock, owner="poller-b"))
    ledger = FleetLedger(Ledger(settings.database_url))
    try:
        wait_for(lambda: all(synced(fb, s) for s in fb.stores), what="all stores synced")
        wait_for(lambda: len(ledger.leases()) == 3 and {
            lease.owner for lease in ledger.leases().values()} == {"poller-a", "poller-b"},
            what="stores shared between both pollers")
        # poller-a dies without a word (SIGKILL: no release, no more renewals).
        a_stores = {s for s, lease in ledger.leases().items() if lease.owner == "poller-a"}
        first.fleet.renew = lambda: (_ for _ in ()).throw(RuntimeError("killed"))  # type: ignore[method-assign]
        first.fleet.reconcile = lambda: None  # type: ignore[method-assign]
        for loop in list(first.fleet.loops.values()):
            loop.stop.set()
        clock.skip(settings.poller_lease.total_seconds() + 1)
        wait_for(lambda: {lease.owner for lease in ledger.leases().values()} == {"poller-b"}
                 and len(ledger.leases()) == 3, timeout=30, what="handed over")
        assert a_stores <= set(second.fleet.loops)
    finally:
        first.stop.set()
        second.close()
        first.thread.join(timeout=30)
        ledger.ledger.dispose()
    counts = fb.counts()
    assert all(c.duplicate_orders == 0 for c in counts.values())
