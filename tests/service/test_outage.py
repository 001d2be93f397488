"""Issue 11: outage versus bad order, at product defaults on a FakeClock.

* WiredPlus down for 10 minutes: the account's circuit opens, nothing is sent but probes
  (≤ one per 30 s), no attempt is spent while it is open, and everything pending is delivered
  within 60 s of recovery (the daemon dispatches due work every second between passes).
* Broker mode, 429 with ``Retry-After``: the sweeper re-sends the order at once when its
  deferral comes due (the stamp carries the next attempt), not after its 120 s cooldown.
* The per-order schedule starts in seconds and ends in the dead letters after about a day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from sync.clock import FakeClock
from sync.domain.retry import horizon, retry_delay
from sync.ledger.models import OrderState
from sync.sandbox import Sandbox
from sync.service.dispatch import QueueDispatcher
from sync.service.runtime import Runtime, build_runtime

from .conftest import make_settings  # type: ignore[import-not-found]


@pytest.fixture
def shop(db_url: str) -> Iterator[tuple[Sandbox, Runtime, FakeClock]]:
    clock = FakeClock()
    sb = Sandbox(seed=9, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(
        120, created_between=(now - timedelta(days=2), now - timedelta(minutes=5)))
    rt = build_runtime(
        make_settings(db_url), clock=clock,
        shopwired_transport=sb.shopwired_transport(),
        wiredplus_transport=sb.wiredplus_transport(),
    )
    yield sb, rt, clock
    rt.close()


def _daemon_seconds(rt: Runtime, clock: FakeClock, seconds: int) -> None:
    """What `ordersync run` does between passes: dispatch due work every second."""
    for _ in range(seconds):
        clock.advance(1.0)
        rt.poller.dispatch_due()


def test_the_per_order_schedule_starts_in_seconds_and_ends_after_about_a_day() -> None:
    assert retry_delay(1).total_seconds() <= 6
    assert timedelta(hours=20) <= horizon(8) <= timedelta(hours=28)


def test_a_ten_minute_wiredplus_outage_drains_within_a_minute_of_recovery(
    shop: tuple[Sandbox, Runtime, FakeClock],
) -> None:
    sb, rt, clock = shop
    wp = sb.wiredplus
    wp.faults.error_rate = 1.0  # every request 500/502/503: WiredPlus is down
    rt.poller.run_pass()
    circuit = rt.pusher.sink.circuit  # type: ignore[attr-defined]
    assert circuit.state != "closed"
    store = rt.settings.store
    calls_at_open = sum(wp.calls.values()) if hasattr(wp, "calls") else None
    for _ in range(10):  # ten minutes down, a pass a minute
        _daemon_seconds(rt, clock, 59)
        rt.poller.run_pass()  # a WiredPlus outage fails no pass
        clock.advance(1)
    rows = rt.ledger.all_orders(store)
    assert all(r.state == OrderState.PENDING for r in rows)
    # At most the few requests before the circuit opened were charged; none while open.
    assert sum(r.attempts for r in rows) <= 4
    if calls_at_open is not None:
        assert sum(wp.calls.values()) - calls_at_open <= 10 * 2 + 8  # probes only
    wp.faults.error_rate = 0.0
    _daemon_seconds(rt, clock, 60)
    rows = rt.ledger.all_orders(store)
    assert {r.state for r in rows} == {OrderState.SYNCED}
    assert circuit.state == "closed"


def test_broker_mode_sends_a_throttled_order_again_when_its_retry_after_ends(
    shop: tuple[Sandbox, Runtime, FakeClock],
) -> None:
    sb, rt, clock = shop
    sent: list[str] = []
    queue = QueueDispatcher(send=lambda store, ref: sent.append(ref), clock=clock)
    rt.poller.dispatcher = queue
    rt.poller.ingestor.dispatcher = queue  # type: ignore[attr-defined]
    rt.poller.run_pass()  # broker mode: everything is queued, nothing pushed yet
    store = rt.settings.store
    ref = rt.ledger.all_orders(store)[0].ref
    # A storm longer than the client waits in place (Retry-After 30 s): the push is deferred.
    sb.wiredplus.faults.throttle_storm_until = clock.monotonic() + 30
    assert rt.pusher.push(store, ref).outcome == "retry"  # a worker: throttled, deferred
    assert rt.ledger.get_order(store, ref).attempts == 0  # type: ignore[union-attr]
    sent.clear()
    _daemon_seconds(rt, clock, 36)
    assert ref in sent  # when the Retry-After ends, not after the sweeper's 120 s cooldown
