"""Ledger contracts on SQLite and PostgreSQL: leases, due orders, cursors."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from sync.ledger.models import OrderRow, OrderState
from sync.ledger.store import WATERMARK, Ledger

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(db_url):
    led = Ledger(db_url)
    led.create_schema()
    yield led
    led.dispose()


def add_order(ledger: Ledger, ref: str, state: str = OrderState.PENDING, **kw) -> None:
    with ledger.session() as s:
        s.add(OrderRow(store="s1", ref=ref, source_order_id=ref, first_seen_at=NOW,
                       last_checked_at=NOW, changed_at=NOW, state=state, version=1, attempts=0,
                       terminal=False, deleted=False, **kw))


def test_only_one_claimant_wins(ledger):
    add_order(ledger, "1")
    winners = []
    barrier = threading.Barrier(8)

    def grab(i: int) -> None:
        barrier.wait()
        if ledger.claim("s1", "1", f"w{i}", NOW, timedelta(minutes=2)) is not None:
            winners.append(i)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_expired_lease_is_taken_over(ledger):
    add_order(ledger, "1")
    assert ledger.claim("s1", "1", "a", NOW, timedelta(minutes=2))
    assert ledger.claim("s1", "1", "b", NOW + timedelta(minutes=1), timedelta(minutes=2)) is None
    assert ledger.claim("s1", "1", "b", NOW + timedelta(minutes=3), timedelta(minutes=2))


def test_not_due_orders_are_not_claimed_or_listed(ledger):
    add_order(ledger, "1", next_attempt_at=NOW + timedelta(minutes=5))
    add_order(ledger, "2", state=OrderState.SYNCED)
    add_order(ledger, "3")
    assert ledger.due_refs("s1", NOW) == ["3"]
    assert ledger.claim("s1", "1", "a", NOW, timedelta(minutes=2)) is None
    assert ledger.due_refs("s1", NOW + timedelta(minutes=6)) == ["3", "1"]  # new work first


def test_stores_are_separate(ledger):
    add_order(ledger, "1")
    assert ledger.due_refs("other", NOW) == []
    assert ledger.counts("s1").orders[OrderState.PENDING] == 1
    assert ledger.counts("other").orders[OrderState.PENDING] == 0


def test_cursor_roundtrip_keeps_utc(ledger):
    with ledger.session() as s:
        ledger.set_cursor(s, "s1", WATERMARK, NOW.isoformat(), NOW)
    assert datetime.fromisoformat(ledger.get_cursor("s1", WATERMARK)) == NOW
    assert ledger.get_cursor("s2", WATERMARK) is None
    row = ledger.get_order("s1", "nope")
    assert row is None


def test_a_grown_ledger_is_looked_up_by_its_unique_key_after_refresh_statistics(pg_url):
    """A first import fills an empty table; without statistics PostgreSQL (autovacuum off, or
    not yet run) looked orders up through the refresh index and read the whole store for each
    page — a 100,000-order import slowed to a crawl. After ``refresh_statistics`` the lookup
    uses the (store, ref) key."""
    from sqlalchemy import insert, text

    led = Ledger(pg_url)
    led.create_schema()
    try:
        with led.engine.begin() as conn:
            conn.execute(text("ALTER TABLE ledger_orders SET (autovacuum_enabled = false)"))
            conn.execute(insert(OrderRow.__table__), [
                dict(store="s1", ref=str(i), source_order_id=str(i), first_seen_at=NOW,
                     last_checked_at=NOW, changed_at=NOW,
                     state=OrderState.SYNCED, version=1, attempts=0, terminal=False,
                     deleted=False)
                for i in range(20_000)])
        led.refresh_statistics()
        refs = ", ".join(f"'{i}'" for i in range(0, 20_000, 200))
        with led.engine.begin() as conn:
            plan = "\n".join(r[0] for r in conn.execute(text(
                f"EXPLAIN SELECT id FROM ledger_orders WHERE store = 's1' AND ref IN ({refs})")))
        assert "uq_ledger_orders_store_ref" in plan, plan
    finally:
        led.dispose()
