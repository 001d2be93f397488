"""The benchmark's regression guard: exact call counts per order, and generous throughput floors.

Small and fast (well under a minute together), marked slow like the other end-to-end suites.
The full measurement is ``python -m bench.run``; these tests keep its cost figures honest:

* a backfill costs exactly one UpdateOrder per new order and no event, and exactly the
  ShopWired calls the design gives — per backfill window, the client's keyset paging over the
  regular orders (keyset pages of 100 that re-read their boundary second: ~1 call per 99, then
  the short page that ends the window) and over the archived ones: 12 calls for 1,000 orders
  in one window (the first pass also reads the status list: 13);
* an unchanged order costs 0 WiredPlus calls;
* a changed order costs exactly 1 UpdateOrder, and each event exactly 1 CreateOrderEvent.
"""

from __future__ import annotations

import io
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from sync.clock import SkippingClock
from sync.ledger.models import EventRow, OrderRow
from sync.logs import configure
from sync.sandbox import Sandbox
from sync.service.demo import demo_settings
from sync.service.runtime import Runtime, build_runtime

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.slow

ORDERS = 1000
PAGE = 100
BENCH_TEST_REDIS_DB = 11  # bench.run uses 12, the CLI end-to-end test 7


def _design_calls(sb: Sandbox, start: int, end: int) -> int:
    """The client's keyset paging replayed over the window's regular, then archived, orders
    (``bench.scenarios.list_calls``)."""
    from bench.scenarios import list_calls

    calls = 0
    for flag in (False, True):
        ids = sb.shopwired.created_ids(start, end, archived=flag)
        rows = sorted(
            (int(parsedate_to_datetime(sb.shopwired.orders[i]["created"]).timestamp()), i)
            for i in ids
        )
        calls += list_calls(rows, PAGE)
    return calls


def _writes(sb: Sandbox, since: int) -> Counter[tuple[str, str]]:
    """(endpoint, api_reference_id | event_reference) → accepted writes after ``since``."""
    return Counter((ep, ref) for ep, ref, _ in sb.wiredplus.write_log[since:])


def _hashes(rt: Runtime) -> dict[str, str | None]:
    from sqlalchemy import select

    with rt.ledger.session() as s:
        return {r: h for r, h in s.execute(select(OrderRow.ref, OrderRow.content_hash))}


def _event_refs(rt: Runtime) -> set[str]:
    from sqlalchemy import select

    with rt.ledger.session() as s:
        return set(s.scalars(select(EventRow.event_reference)))


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Sandbox, Runtime]]:
    configure("json", "warning", stream=io.StringIO())
    # Wall time plus skips: step 3 jumps past the default 60 s between two reads of an order.
    sb = Sandbox(seed=23, shopwired_rate_limit=False, hourly_limit=10_000_000,
                 clock=SkippingClock())
    now = sb.clock.now()
    # Every order inside one 31-day backfill window.
    sb.shopwired.generate_orders(ORDERS, created_between=(now - timedelta(days=6),
                                                          now - timedelta(hours=1)))
    with sb:
        settings = demo_settings(
            sb, tmp_path,
            ORDERSYNC_WIREDPLUS_HOURLY_LIMIT="10000000",
            ORDERSYNC_SHOPWIRED_RATE="1000",
            ORDERSYNC_SHOPWIRED_BUCKET="40",
            # The single-call design's exact call counts; BulkOrderUpdate (issue 17):
            # tests/service/test_push_bulk.py and bench.realistic.
            ORDERSYNC_WIREDPLUS_BULK="false",
        )
        rt = build_runtime(settings, clock=sb.clock)
        try:
            yield sb, rt
        finally:
            rt.close()


def test_calls_per_order_are_exact_backfill_idle_pass_and_changes(
    embedded: tuple[Sandbox, Runtime],
) -> None:
    sb, rt = embedded
    sw, wp = sb.shopwired, sb.wiredplus
    now = sb.clock.now()
    since, until = now - timedelta(days=6, hours=1), now

    # 1. Backfill: one UpdateOrder per new order, no event, the designed ShopWired calls.
    started = time.perf_counter()
    result = rt.poller.backfill(since, until)
    took = time.perf_counter() - started
    assert result.new == ORDERS
    writes = _writes(sb, 0)
    assert sum(writes.values()) == ORDERS
    assert all(ep == "UpdateOrder" and n == 1 for (ep, _), n in writes.items())
    assert wp.calls["POST /v1/CreateOrderEvent"] == 0
    design = _design_calls(sb, int(since.timestamp()), int(until.timestamp()))
    # ≈ 1 call per 99 new orders (keyset pages re-read their boundary second, so an order
    # leaving the list between pages cannot shift another out of sight) + the closing short
    # page + 1 archived page.
    assert design <= ORDERS // (PAGE - 1) + 3
    assert sum(sw.calls.values()) == design
    assert sw.throttled == 0
    assert ORDERS / took >= 10, f"embedded backfill only {ORDERS / took:.1f} orders/s"

    # 2. A first pass over the unchanged shop: 0 WiredPlus calls for 1,000 unchanged orders
    #    (only the hourly budget probe); ShopWired: the status list + the window's pages.
    sw.reset_counters()
    wp.reset_counters()
    log_at = len(wp.write_log)
    report = rt.poller.run_pass()
    assert report.new.seen == ORDERS and report.new.unchanged == ORDERS
    assert report.new.changed == report.new.new == 0
    assert wp.calls["POST /v1/UpdateOrder"] == 0
    assert wp.calls["POST /v1/CreateOrderEvent"] == 0
    assert sum(wp.calls.values()) == wp.calls["GET /v1/GetAccountInfo"] == 1
    assert len(wp.write_log) == log_at
    assert report.window is not None
    window_calls = _design_calls(sb, report.window.start_unix, int(report.window.end.timestamp()))
    assert sum(sw.calls.values()) == 1 + window_calls  # + the status list
    assert report.refresh_calls == 0

    # 3. The shop changes: exactly 1 UpdateOrder per changed order, 1 call per event,
    #    nothing for the rest.
    hashes_before, events_before = _hashes(rt), _event_refs(rt)
    changes = sb.activity.step(40, 0)
    assert changes
    clock = sb.clock
    assert isinstance(clock, SkippingClock)
    clock.skip(61)  # past the settle delay and the floor between two reads of an order
    sw.reset_counters()
    wp.reset_counters()
    log_at = len(wp.write_log)
    rt.poller.run_pass()
    hashes_after, events_after = _hashes(rt), _event_refs(rt)
    changed = {r for r, h in hashes_after.items() if hashes_before.get(r) != h}
    new_events = events_after - events_before
    assert changed and new_events
    writes = _writes(sb, log_at)
    sent_orders = {ref: n for (ep, ref), n in writes.items() if ep == "UpdateOrder"}
    sent_events = {ref: n for (ep, ref), n in writes.items() if ep == "CreateOrderEvent"}
    assert sent_orders == dict.fromkeys(changed, 1)
    assert sent_events == dict.fromkeys(new_events, 1)
    assert wp.calls["POST /v1/UpdateOrder"] == len(changed)
    assert wp.calls["POST /v1/CreateOrderEvent"] == len(new_events)
    assert sum(wp.calls.values()) == len(changed) + len(new_events)
    assert sw.throttled == 0 and not wp.rejections


@pytest.mark.postgres
@pytest.mark.redis
def test_broker_backfill_with_a_real_worker_is_exact_and_not_slow(tmp_path: Path) -> None:
    from bench import scenarios
    from bench.harness import services_available

    pg_ok, redis_ok = services_available(
        redis=f"redis://127.0.0.1:6379/{BENCH_TEST_REDIS_DB}"
    )
    if not (pg_ok and redis_ok):
        pytest.skip("PostgreSQL or Redis not reachable")
    ctx = scenarios.Context(quick=True, work=tmp_path, redis_db=BENCH_TEST_REDIS_DB,
                            deadline=time.monotonic() + 120, log=lambda _: None)
    orders = 200
    try:
        r: dict[str, Any] = scenarios.backfill(
            ctx, orders=orders, workers=1, db="postgres", label="test-broker",
            then=scenarios.incremental_pass(15, ctx), timeout=90,
        )
    except scenarios.InfraRestarted as exc:  # someone else restarted PostgreSQL or Redis
        pytest.skip(str(exc))
    # Backfill: each order sent exactly once, no event, the designed ShopWired calls.
    assert r["wiredplus_update_calls"] == orders
    assert r["orders_sent_once"] == orders and r["orders_sent_twice_or_more"] == 0
    assert r["wiredplus_event_calls"] == 0 and r["duplicate_orders"] == 0
    assert r["rejections"] == 0 and r["shopwired_429"] == 0
    assert r["shopwired_calls"] == r["shopwired_design_calls"]
    assert r["ledger_synced"] == orders and r["queue_left"] == 0
    # Generous floors: the full benchmark measures the real figures.
    assert r["orders_per_s"] >= 5, r
    assert max(r["peak_rss_mb"].values()) <= 200, r["peak_rss_mb"]
    inc = r["then"]
    assert inc["exit_code"] == 0
    assert inc["changed_orders"] > 0 and inc["events_decided"] > 0
    assert inc["updateorder_calls"] == inc["changed_orders"]
    assert inc["changed_orders_sent_exactly_once"] == inc["changed_orders"]
    assert inc["event_calls"] == inc["events_decided"]
    assert inc["events_sent_exactly_once"] == inc["events_decided"]
    assert inc["calls_for_unchanged_orders"] == 0 and inc["unexpected_event_calls"] == 0
    assert inc["shopwired_calls"] == inc["shopwired_design_calls"]
