"""Poller leases and store states in the ledger: a store is held by one poller at a time,
an expired lease is taken over, health is written only when it changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sync.ledger.fleet import FleetLedger
from sync.ledger.store import Ledger

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
def fleet(db_url: str) -> Iterator[FleetLedger]:
    ledger = Ledger(db_url)
    ledger.create_schema()
    yield FleetLedger(ledger)
    ledger.dispose()


def test_a_store_is_held_by_one_poller_until_its_lease_expires(fleet: FleetLedger) -> None:
    assert fleet.acquire("acme", "a", T0, LEASE)
    assert not fleet.acquire("acme", "b", T0 + timedelta(seconds=29), LEASE)
    assert fleet.renew("a", ["acme"], T0 + timedelta(seconds=20), LEASE) == {"acme"}
    assert not fleet.acquire("acme", "b", T0 + timedelta(seconds=45), LEASE)  # renewed
    assert fleet.acquire("acme", "b", T0 + timedelta(seconds=51), LEASE)  # expired: taken
    assert fleet.renew("a", ["acme"], T0 + timedelta(seconds=52), LEASE) == set()  # lost
    fleet.release("a", ["acme"])  # not a's any more: nothing happens
    assert fleet.leases()["acme"].owner == "b"
    fleet.release("b", ["acme"])
    assert fleet.leases() == {}


def test_pollers_racing_for_a_store_never_both_get_it(fleet: FleetLedger) -> None:
    for round_ in range(5):
        store = f"s{round_}"
        wins: list[str] = []
        barrier = threading.Barrier(4)

        def race(owner: str, store: str = store, barrier: threading.Barrier = barrier,
                 wins: list[str] = wins) -> None:
            barrier.wait()
            if fleet.acquire(store, owner, T0, LEASE):
                wins.append(owner)

        threads = [threading.Thread(target=race, args=(f"p{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1, wins


def test_health_and_pause_are_recorded_and_pollers_counted(fleet: FleetLedger) -> None:
    fleet.set_health("acme", "ok", None, T0)
    assert fleet.states() == {}  # a healthy store costs no row
    fleet.set_health("acme", "credentials", "HTTP 401", T0, T0 + timedelta(seconds=30))
    fleet.set_health("acme", "credentials", "HTTP 401", T0 + timedelta(seconds=5),
                     T0 + timedelta(seconds=30))
    st = fleet.states()["acme"]
    assert (st.health, st.health_reason, st.health_since) == ("credentials", "HTTP 401", T0)
    fleet.set_paused("acme", True, "holiday", T0)
    assert fleet.states()["acme"].paused and fleet.states()["acme"].paused_reason == "holiday"
    fleet.set_health("acme", "ok", None, T0 + timedelta(minutes=1))
    assert fleet.states()["acme"].health == "ok" and fleet.states()["acme"].paused
    fleet.heartbeat("a", "host", 1, T0)
    fleet.heartbeat("b", "host", 2, T0 - timedelta(minutes=5))
    assert fleet.live_pollers(T0, LEASE) == ["a"]
    fleet.acquire("acme", "a", T0, LEASE)
    fleet.forget_poller("a")
    assert fleet.live_pollers(T0, LEASE) == [] and fleet.leases() == {}
