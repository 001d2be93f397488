"""Issue #17: orders needing UpdateOrder go out as one WiredPlus BulkOrderUpdate per batch.

A user gets the same ledger as with single calls — each record's result is that order's
outcome (delivered → its events follow; rejected → only that order's dead letter) — in a
fraction of the requests and of the hourly budget; an account without the feature, or
ORDERSYNC_WIREDPLUS_BULK=false, keeps working through UpdateOrder.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sync.clock import FakeClock
from sync.ledger.models import OrderRow, OrderState
from sync.sandbox import Sandbox
from sync.service.dispatch import StopCheck
from sync.service.runtime import Runtime, build_runtime

from .conftest import make_settings  # type: ignore[import-not-found]


@dataclass
class _Collect:
    refs: list[str] = field(default_factory=list)
    should_stop: StopCheck = lambda: False

    def dispatch(self, store: str, refs: Sequence[str]) -> None:
        self.refs.extend(refs)

    def sweep(self, store: str, due: Sequence[tuple[str, Hashable]]) -> None:
        self.refs.extend(ref for ref, _ in due)

    def backlogged(self, store: str) -> bool:
        return False


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

    def push_all(self, rounds: int = 30) -> None:
        """Push every due order until none is pending (the clock jumps past retries)."""
        for _ in range(rounds):
            pending = [r for r, row in self.rows().items() if row.state == OrderState.PENDING]
            if not pending:
                return
            for i in range(0, len(pending), 20):
                self.rt.pusher.push_many(self.store, pending[i : i + 20])
            self.clock.advance(600)


def _env(db_url: str, **settings: Any) -> Iterator[Env]:
    clock = FakeClock()
    sb = Sandbox(seed=7, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(24, created_between=(now - timedelta(hours=20),
                                                      now - timedelta(minutes=10)))
    collect = _Collect()
    rt = build_runtime(make_settings(db_url, **settings), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport(), dispatcher=collect)
    rt.poller.run_pass()
    due = list(dict.fromkeys(collect.refs))
    assert len(due) == 24
    yield Env(sb, rt, clock, due)
    rt.close()


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    yield from _env(db_url)


@pytest.fixture
def env_off(db_url: str) -> Iterator[Env]:
    yield from _env(db_url, ORDERSYNC_WIREDPLUS_BULK="false")


def _assert_each_order_once(env: Env) -> None:
    rows = env.rows()
    assert all(row.state == OrderState.SYNCED for row in rows.values())
    assert set(env.sb.wiredplus.order_creations.values()) == {1}
    assert len(env.sb.wiredplus.orders) == len(rows)
    stored = Counter(o["api_reference_id"] for o in env.sb.wiredplus.orders.values())
    assert set(stored.values()) == {1}
    for row in rows.values():
        assert row.wiredplus_id in env.sb.wiredplus.orders


def _events_after_orders(env: Env) -> None:
    """Every CreateOrderEvent comes after its order's write, in WiredPlus's own log."""
    first_write: dict[str, int] = {}
    for i, (kind, ref, _action) in enumerate(env.sb.wiredplus.write_log):
        if kind == "UpdateOrder":
            first_write.setdefault(ref, i)
    for i, (kind, ref, _action) in enumerate(env.sb.wiredplus.write_log):
        if kind == "CreateOrderEvent":
            event = next((e for e in env.sb.wiredplus.events.values()
                          if e.get("event_reference") == ref), None)
            if event is not None:
                order = env.sb.wiredplus.orders[str(event["order_id"])]
                assert first_write[order["api_reference_id"]] < i


def test_a_batch_goes_out_as_one_bulk_request_and_every_order_is_synced_once(env: Env) -> None:
    results = env.rt.pusher.push_many(env.store, env.due[:20])
    assert {r.outcome for r in results} == {"synced"}
    assert env.sb.wiredplus.bulk_requests == [(20, 0)]
    assert env.rt.wiredplus.calls["UpdateOrder"] == 0
    assert all(r.order_call == "created" and r.wiredplus_id for r in results)
    env.push_all()
    _assert_each_order_once(env)
    _events_after_orders(env)
    assert env.rt.wiredplus.calls["BulkOrderUpdate"] == 2


def test_a_rejected_record_dead_letters_only_its_order(env: Env) -> None:
    bad = env.due[3]
    with env.rt.ledger.session() as s:
        row = s.execute(select(OrderRow).where(OrderRow.ref == bad)).scalar_one()
        body = json.loads(row.payload or "{}")
        body["order_lines"] = []
        row.payload = json.dumps(body)
    results = {r.ref: r for r in env.rt.pusher.push_many(env.store, env.due[:20])}
    assert results[bad].outcome == "dead"
    assert "order_lines" in (results[bad].error or "")
    assert {r.outcome for ref, r in results.items() if ref != bad} == {"synced"}
    assert env.sb.wiredplus.bulk_requests == [(20, 1)]
    assert env.rows()[bad].state == OrderState.DEAD
    assert "sandbox-key" not in (results[bad].error or "")


@pytest.mark.parametrize("status", [403, 404])
def test_an_account_refusing_bulk_falls_back_to_update_order_and_keeps_working(
    env: Env, status: int
) -> None:
    env.sb.wiredplus.bulk_enabled = False
    env.sb.wiredplus.bulk_refusal_status = status
    results = env.rt.pusher.push_many(env.store, env.due[:20])
    assert {r.outcome for r in results} == {"synced"}
    assert env.rt.wiredplus.bulk_enabled is False
    assert env.rt.wiredplus.calls["BulkOrderUpdate"] == 1  # asked once, then remembered
    assert env.rt.wiredplus.calls["UpdateOrder"] == 20
    env.push_all()
    assert env.rt.wiredplus.calls["BulkOrderUpdate"] == 1
    _assert_each_order_once(env)


def test_setting_off_sends_no_bulk_request(env_off: Env) -> None:
    env_off.push_all()
    assert env_off.rt.wiredplus.calls["BulkOrderUpdate"] == 0
    assert env_off.sb.wiredplus.bulk_requests == []
    _assert_each_order_once(env_off)


def test_a_bulk_request_failing_for_good_retries_every_order_without_losing_one(
    env: Env,
) -> None:
    env.sb.wiredplus.faults.error_rate = 1.0
    results = env.rt.pusher.push_many(env.store, env.due[:20])
    assert {r.outcome for r in results} == {"retry"}
    # As with single calls: only the orders tried before the account's circuit opened spent
    # an attempt; the rest wait for it without spending one.
    assert 1 <= sum(row.attempts for row in env.rows().values()) <= 5
    assert env.rt.wiredplus.circuit.state != "closed"
    env.sb.wiredplus.faults.error_rate = 0.0
    env.push_all()
    _assert_each_order_once(env)


def test_lost_bulk_responses_never_duplicate_an_order_or_an_event(env: Env) -> None:
    env.sb.wiredplus.faults.drop_after_write_rate = 0.5
    env.push_all(rounds=60)
    env.sb.wiredplus.faults.drop_after_write_rate = 0.0
    env.push_all()
    assert env.sb.wiredplus.dropped_responses > 0
    _assert_each_order_once(env)
    refs = Counter(e.get("event_reference") for e in env.sb.wiredplus.events.values())
    assert not refs or set(refs.values()) == {1}
    _events_after_orders(env)
