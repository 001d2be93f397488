"""Issue #17: embedded mode keeps several WiredPlus requests in flight (ORDERSYNC_PUSH_CONCURRENCY)
so a slow API does not make the first sync wait request after request — and still never
pushes one order twice at once, and never sends an event before its order.

Real time, small: the WiredPlus simulator answers after 30 ms.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sync.clock import SystemClock
from sync.ledger.models import OrderState
from sync.sandbox import Sandbox
from sync.service.runtime import Runtime, build_runtime

from .conftest import make_settings  # type: ignore[import-not-found]


class _InFlight:
    """A transport in front of the WiredPlus simulator that watches requests in flight."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.lock = threading.Lock()
        self.orders: Counter[str] = Counter()  # api_reference_id → requests in flight
        self.requests = 0
        self.peak = 0
        self.overlaps: list[str] = []

    def _refs(self, request: httpx.Request) -> list[str]:
        try:
            body: Any = json.loads(request.read() or b"{}")
        except ValueError:
            return []
        if "orders" in body:
            return [str(o.get("api_reference_id")) for o in body["orders"]]
        if "api_reference_id" in body:
            return [str(body["api_reference_id"])]
        return []

    def handle(self, request: httpx.Request) -> httpx.Response:
        refs = self._refs(request)
        with self.lock:
            self.overlaps.extend(r for r in refs if self.orders[r])
            self.orders.update(refs)
            self.requests += 1
            self.peak = max(self.peak, self.requests)
        try:
            return self.sb.wiredplus.handle(request)
        finally:
            with self.lock:
                self.orders.subtract(refs)
                self.requests -= 1


def _run(db_url: str, **settings: Any) -> Iterator[tuple[Sandbox, Runtime, _InFlight]]:
    clock = SystemClock()
    sb = Sandbox(seed=11, clock=clock, wiredplus_latency=0.03)
    now = clock.now()
    sb.shopwired.generate_orders(90, created_between=(now - timedelta(hours=20),
                                                      now - timedelta(minutes=10)))
    watch = _InFlight(sb)
    rt = build_runtime(make_settings(db_url, **settings), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=httpx.MockTransport(watch.handle))
    yield sb, rt, watch
    rt.close()


@pytest.fixture
def single(db_url: str) -> Iterator[tuple[Sandbox, Runtime, _InFlight]]:
    yield from _run(db_url, ORDERSYNC_WIREDPLUS_BULK="false")


@pytest.fixture
def bulk(db_url: str) -> Iterator[tuple[Sandbox, Runtime, _InFlight]]:
    yield from _run(db_url)


def _check(sb: Sandbox, rt: Runtime, watch: _InFlight) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rt.poller.run_pass()
        counts = rt.ledger.counts(rt.settings.store)
        if counts.orders[OrderState.PENDING] == 0:
            break
    rows = rt.ledger.all_orders(rt.settings.store)
    assert rows and all(r.state == OrderState.SYNCED for r in rows)
    assert watch.overlaps == []  # no order was ever in two requests at once
    assert set(sb.wiredplus.order_creations.values()) == {1}
    first_write: dict[str, int] = {}
    for i, (kind, ref, _action) in enumerate(sb.wiredplus.write_log):
        if kind == "UpdateOrder":
            first_write.setdefault(ref, i)
    by_reference = {e.get("event_reference"): e for e in sb.wiredplus.events.values()}
    events = 0
    for i, (kind, ref, _action) in enumerate(sb.wiredplus.write_log):
        if kind == "CreateOrderEvent":
            order = sb.wiredplus.orders[str(by_reference[ref]["order_id"])]
            assert first_write[order["api_reference_id"]] < i  # event after its order
            events += 1
    assert events > 0


def test_single_calls_overlap_and_each_order_is_pushed_once(
    single: tuple[Sandbox, Runtime, _InFlight],
) -> None:
    sb, rt, watch = single
    _check(sb, rt, watch)
    assert watch.peak > 1  # several requests were in flight
    assert watch.peak <= rt.settings.push_concurrency


def test_bulk_batches_overlap_and_each_order_is_pushed_once(
    bulk: tuple[Sandbox, Runtime, _InFlight],
) -> None:
    sb, rt, watch = bulk
    _check(sb, rt, watch)
    assert sb.wiredplus.bulk_requests
