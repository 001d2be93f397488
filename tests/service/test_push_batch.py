"""Batched pushes (``Pusher.push_many``): one claim, one closing transaction, same guarantees.

* the whole batch is claimed (and marked in doubt) before any WiredPlus call;
* an order with pending events has its UpdateOrder recorded before its first event goes out;
* a batch whose closing transaction is lost only causes idempotent resends once the leases
  have passed: every order ends up synced, once in WiredPlus;
* a fatal error records what already succeeded and releases the rest;
* a batch that comes near the end of its leases gives back the orders it has not started.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from sync.apiclient import Circuit, CircuitPolicy
from sync.clock import FakeClock
from sync.errors import FatalError
from sync.ledger.models import EventRow, EventState, OrderRow, OrderState
from sync.sandbox import Sandbox
from sync.service.dispatch import StopCheck
from sync.service.runtime import Runtime, build_runtime
from sync.sinks.wiredplus import BulkRecordResult, BulkRefused

from .conftest import make_settings  # type: ignore[import-not-found]


@dataclass
class _Collect:
    """A dispatcher that only remembers what it was asked to push."""

    refs: list[str] = field(default_factory=list)
    should_stop: StopCheck = lambda: False

    def dispatch(self, store: str, refs: Sequence[str]) -> None:
        self.refs.extend(refs)

    def sweep(self, store: str, due: Sequence[tuple[str, Hashable]]) -> None:
        self.refs.extend(ref for ref, _ in due)

    def backlogged(self, store: str) -> bool:
        return False


class _SpySink:
    """Base of the test sinks below (each wraps the real one): one UpdateOrder per order (no
    BulkOrderUpdate) and never down (a circuit of its own that nothing opens)."""

    bulk_enabled = False
    max_update_rows = 1
    circuit = Circuit(FakeClock(), CircuitPolicy(), "spy")

    def bulk_update_orders(self, payloads: Sequence[Mapping[str, Any]]) -> list[BulkRecordResult]:
        raise BulkRefused("this test sink sends orders one by one")


@dataclass
class Env:
    sb: Sandbox
    rt: Runtime
    clock: FakeClock
    due: list[str]

    @property
    def store(self) -> str:
        return self.rt.settings.store

    def rows(self) -> dict[str, OrderRow]:
        return {r.ref: r for r in self.rt.ledger.all_orders(self.store)}


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    clock = FakeClock()
    sb = Sandbox(seed=5, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(30, created_between=(now - timedelta(days=20),
                                                      now - timedelta(days=2)))
    sb.shopwired.generate_orders(12, created_between=(now - timedelta(hours=20),
                                                      now - timedelta(minutes=10)))
    collect = _Collect()
    rt = build_runtime(make_settings(db_url), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport(), dispatcher=collect)
    rt.poller.run_pass()
    due = list(dict.fromkeys(collect.refs))
    assert len(due) == 42
    yield Env(sb, rt, clock, due)
    rt.close()


def _commits(env: Env) -> list[int]:
    count = [0]

    def on_commit(conn: Any) -> None:
        count[0] += 1

    event.listen(env.rt.ledger.engine, "commit", on_commit)
    return count


def _pending_event_refs(env: Env) -> set[str]:
    with env.rt.ledger.session() as s:
        return set(s.scalars(select(EventRow.order_ref).where(
            EventRow.store == env.store, EventRow.state == EventState.PENDING)))


def test_a_batch_without_events_is_claimed_once_and_recorded_once(env: Env) -> None:
    with_events = _pending_event_refs(env)
    batch = [r for r in env.due if r not in with_events][:20]
    assert len(batch) == 20
    commits = _commits(env)
    results = env.rt.pusher.push_many(env.store, batch)
    assert [r.ref for r in results] == batch
    assert {r.outcome for r in results} == {"synced"}
    assert commits[0] == 2  # the claim, the closing transaction
    rows = env.rows()
    for ref in batch:
        row = rows[ref]
        assert row.state == OrderState.SYNCED and row.lease_owner is None
        assert row.pushed_hash == row.content_hash and row.wiredplus_id
        assert env.sb.wiredplus.order_by_ref(ref)["id"] == row.wiredplus_id
    history = env.rt.ledger.history(env.store, batch[0])
    assert [h.action for h in history][-1] == "pushed"


def test_every_order_is_leased_and_in_doubt_before_the_first_call(env: Env) -> None:
    batch = env.due[:20]
    seen: list[dict[str, tuple[str | None, str | None]]] = []
    real = env.rt.pusher.sink

    class Spy(_SpySink):
        def update_order(self, payload: dict[str, Any]) -> str:
            if not seen:
                seen.append({r.ref: (r.lease_owner, r.pushed_hash) for r in env.rows().values()
                             if r.ref in batch})
            return real.update_order(payload)

        def create_order_event(self, payload: dict[str, Any]) -> str:
            return real.create_order_event(payload)

    env.rt.pusher.sink = Spy()
    env.rt.pusher.push_many(env.store, batch)
    assert seen and all(owner is not None and pushed is None
                        for owner, pushed in seen[0].values())


def test_an_order_with_events_is_recorded_before_its_events_go_out(env: Env) -> None:
    with_events = _pending_event_refs(env)
    assert with_events, "the sandbox should give some young orders an event"
    real = env.rt.pusher.sink
    checked: list[str] = []

    class Spy(_SpySink):
        def update_order(self, payload: dict[str, Any]) -> str:
            return real.update_order(payload)

        def create_order_event(self, payload: dict[str, Any]) -> str:
            rows = {r.wiredplus_id: r for r in env.rows().values()}
            row = rows[payload["order_id"]]  # the WiredPlus id is already in the ledger
            assert row.pushed_hash == row.content_hash
            checked.append(row.ref)
            return real.create_order_event(payload)

    env.rt.pusher.sink = Spy()
    results = env.rt.pusher.push_many(env.store, env.due[:42])
    assert {r.outcome for r in results} == {"synced"}
    assert set(checked) == with_events
    assert not _pending_event_refs(env)
    assert sum(r.events_sent for r in results) == len(checked)


def test_a_lost_closing_transaction_only_resends_idempotently(env: Env) -> None:
    batch = env.due[:20]
    ledger = env.rt.ledger
    real_connection = ledger.connection
    calls = [0]

    def broken() -> Any:
        calls[0] += 1
        if calls[0] == 2:  # the first is the claim; the second the closing transaction
            raise RuntimeError("database went away")
        return real_connection()

    ledger.connection = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        env.rt.pusher.push_many(env.store, batch)
    ledger.connection = real_connection  # type: ignore[method-assign]
    rows = env.rows()
    assert all(rows[r].lease_owner and rows[r].pushed_hash is None for r in batch)
    assert env.rt.pusher.push_many(env.store, batch)[0].outcome == "busy"  # lease held
    env.clock.advance(env.rt.settings.lease.total_seconds() + 1)
    results = env.rt.pusher.push_many(env.store, env.due)
    assert {r.outcome for r in results} == {"synced"}
    rows = env.rows()
    for ref in env.due:
        assert rows[ref].state == OrderState.SYNCED
        assert env.sb.wiredplus.order_by_ref(ref)["id"] == rows[ref].wiredplus_id
    assert len({o["api_reference_id"] for o in env.sb.wiredplus.orders.values()}) == len(
        env.sb.wiredplus.orders) == len(env.due)


def test_a_fatal_error_records_what_succeeded_and_releases_the_rest(env: Env) -> None:
    batch = [r for r in env.due if r not in _pending_event_refs(env)][:10]
    real = env.rt.pusher.sink
    sent: list[str] = []

    class FailsAtFour(_SpySink):
        def update_order(self, payload: dict[str, Any]) -> str:
            if len(sent) == 3:
                raise FatalError("WiredPlus refused our credentials")
            sent.append(payload["api_reference_id"])
            return real.update_order(payload)

        def create_order_event(self, payload: dict[str, Any]) -> str:
            return real.create_order_event(payload)

    env.rt.pusher.sink = FailsAtFour()
    with pytest.raises(FatalError):
        env.rt.pusher.push_many(env.store, batch)
    rows = env.rows()
    for ref in batch:
        row = rows[ref]
        assert row.lease_owner is None
        if ref in sent:
            assert row.state == OrderState.SYNCED and row.pushed_hash == row.content_hash
        else:
            assert row.state == OrderState.PENDING and row.attempts == 0


def test_a_slow_batch_gives_back_what_it_has_not_started(env: Env) -> None:
    batch = [r for r in env.due if r not in _pending_event_refs(env)][:10]
    real = env.rt.pusher.sink
    lease = env.rt.settings.lease.total_seconds()

    class Slow(_SpySink):
        def update_order(self, payload: dict[str, Any]) -> str:
            env.clock.advance(lease / 4)
            return real.update_order(payload)

        def create_order_event(self, payload: dict[str, Any]) -> str:
            return real.create_order_event(payload)

    env.rt.pusher.sink = Slow()
    results = env.rt.pusher.push_many(env.store, batch)
    outcomes = [r.outcome for r in results]
    assert outcomes[:2] == ["synced", "synced"] and set(outcomes[2:]) == {"busy"}
    rows = env.rows()
    assert all(rows[r].lease_owner is None for r in batch)
    env.rt.pusher.sink = real
    again = [r.outcome for r in env.rt.pusher.push_many(env.store, batch)]
    assert again[:2] == ["busy", "busy"] and set(again[2:]) == {"synced"}  # done / still due
