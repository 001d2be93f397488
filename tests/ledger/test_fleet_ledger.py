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


def test_a_dead_pollers_stores_are_taken_over_at_once_and_never_a_live_ones(
    fleet: FleetLedger,
) -> None:
    """acquire_many: the expired leases in one go, a live lease of another poller never,
    a store never leased inserted; racing pollers never both win a store."""
    assert fleet.acquire_many(["s1", "s2", "s3"], "dead", T0, LEASE) == ["s1", "s2", "s3"]
    assert fleet.acquire("s4", "alive", T0 + timedelta(seconds=20), LEASE)
    later = T0 + timedelta(seconds=31)  # the dead poller's leases expired; s4's has not
    got = fleet.acquire_many(["s1", "s2", "s3", "s4", "s5"], "heir", later, LEASE)
    assert got == ["s1", "s2", "s3", "s5"]
    leases = fleet.leases()
    assert {n: lease.owner for n, lease in leases.items()} == {
        "s1": "heir", "s2": "heir", "s3": "heir", "s4": "alive", "s5": "heir"}
    assert fleet.acquire_many(["s1", "s4"], "heir", later, LEASE) == ["s1"]  # its own: kept
    wins: dict[str, list[str]] = {}
    barrier = threading.Barrier(3)
    stores = [f"r{i}" for i in range(10)]

    def race(owner: str) -> None:
        barrier.wait()
        wins[owner] = fleet.acquire_many(stores, owner, later, LEASE)

    threads = [threading.Thread(target=race, args=(f"p{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [name for names in wins.values() for name in names]
    assert sorted(won) == stores  # every store to exactly one poller


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
