"""The whole core loop against the sandbox, on SQLite and PostgreSQL, time from a FakeClock.

Every test drives the production wiring (`build_runtime`) and only swaps the two remote APIs
for the in-process simulators, so what is asserted here is what a merchant would see.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sync.clock import FakeClock
from sync.ledger.models import EventState, OrderState
from sync.ledger.store import WATERMARK
from sync.sandbox import Sandbox
from sync.service.runtime import build_runtime

from .conftest import Harness, _in_scope, make_settings  # type: ignore[import-not-found]


def test_first_pass_imports_the_last_30_days_and_mails_nobody_about_old_orders(
    harness: Harness,
) -> None:
    in_scope = _in_scope(harness)
    harness.run()
    rows = harness.orders()
    assert set(rows) == in_scope  # nothing older than the start date, nothing missing
    assert all(r.state == OrderState.SYNCED for r in rows.values())
    assert len(harness.sb.wiredplus.orders) == len(in_scope)
    day = harness.rt.settings.first_sight_event_window
    for ev in harness.rt.ledger.all_events(harness.store):
        row = harness.rt.ledger.get_order(harness.store, ev.order_ref)
        assert row is not None and row.created_at is not None
        assert row.first_seen_at - row.created_at <= day, "event for an order older than a day"
    assert harness.sb.shopwired.throttled == 0


def test_a_pass_over_an_unchanged_shop_costs_no_wiredplus_call(harness: Harness) -> None:
    harness.run()
    harness.sb.wiredplus.reset_counters()
    harness.run(passes=3)
    assert sum(harness.sb.wiredplus.calls.values()) == 0


def test_status_change_sends_exactly_one_event_however_many_passes_see_it(
    harness: Harness,
) -> None:
    harness.run()
    oid = sorted(_in_scope(harness))[0]
    shipped = harness.sb.shopwired.status_by_name("Shipped")
    assert shipped is not None
    harness.sb.shopwired.set_status(int(oid), shipped["id"], tracking_url="https://t.example/1")
    harness.clock.advance(13 * 3600)  # past every freshness target
    harness.run(passes=4)
    events = [e for e in harness.wp_events_for(oid) if e["event_type"] == "dispatched"]
    assert len(events) == 1
    assert harness.sb.wiredplus.order_by_ref(oid)["order_status"] == "shipped"
    assert all(v == 1 for v in harness.sb.wiredplus.event_creations.values())


def test_a_refund_becomes_one_refunded_event(harness: Harness) -> None:
    harness.run()
    oid = sorted(_in_scope(harness))[1]
    harness.sb.shopwired.add_refund(int(oid), "1.50", "Returned item")
    harness.clock.advance(13 * 3600)
    harness.run(passes=3)
    refunded = [e for e in harness.wp_events_for(oid) if e["event_type"] == "refunded"]
    assert len(refunded) == 1


def test_new_orders_placed_between_passes_are_picked_up_once(harness: Harness) -> None:
    harness.run()
    now = harness.clock.now()
    new_ids = harness.sb.shopwired.generate_orders(5, created_between=(now, now))
    harness.run(passes=3)
    rows = harness.orders()
    for oid in new_ids:
        assert rows[str(oid)].state == OrderState.SYNCED
        assert harness.sb.wiredplus.order_creations[str(oid)] == 1


def test_an_archived_order_is_not_lost(harness: Harness) -> None:
    now = harness.clock.now()
    (oid,) = harness.sb.shopwired.generate_orders(
        1, created_between=(now - timedelta(days=3), now - timedelta(days=3))
    )
    harness.sb.shopwired.archive(oid)
    harness.run()
    assert harness.orders()[str(oid)].state == OrderState.SYNCED


def test_a_crash_mid_window_keeps_the_watermark_and_loses_nothing(harness: Harness) -> None:
    source = harness.rt.poller.source
    real_pages = source.new_order_pages

    def crashing(window: Any) -> Iterator[list[Any]]:
        pages = real_pages(window)
        yield next(pages)  # page 1 is committed...
        raise ConnectionError("process killed between fetch and commit")

    class Crashy:
        """The source, but its scan dies after one page, cannot resume, counts no calls,
        cannot re-list and confirms no deletion."""

        name = source.name
        window_field = source.window_field
        can_relist = False
        statuses, fetch_by_ids = source.statuses, source.fetch_by_ids
        count_created, raw_id, parse = source.count_created, source.raw_id, source.parse
        close, new_order_pages = source.close, staticmethod(crashing)

        def resumable_pages(
            self, window: Any, position: str | None = None
        ) -> Iterator[tuple[list[Any], None]]:
            return ((page, None) for page in self.new_order_pages(window))

        def exists(self, order_id: str) -> bool:
            return True

        def list_created(self, start: Any, end: Any, count: int) -> list[Any]:
            raise NotImplementedError

        def call_count(self) -> None:
            return None

        def check_credentials(self) -> bool:
            return False

    harness.rt.poller.source = Crashy()
    with pytest.raises(ConnectionError):
        harness.rt.poller.run_pass()
    assert harness.rt.ledger.get_cursor(harness.store, WATERMARK) is None
    harness.rt.poller.source = source
    harness.clock.advance(60)
    harness.run(passes=2)
    assert set(harness.orders()) == _in_scope(harness)
    assert all(v == 1 for v in harness.sb.wiredplus.order_creations.values())


def test_responses_lost_after_the_write_never_duplicate_orders_or_events(
    harness: Harness,
) -> None:
    wp = harness.sb.wiredplus
    wp.faults.drop_after_write_rate = 0.4
    harness.run()
    for oid in sorted(_in_scope(harness))[:10]:
        harness.sb.shopwired.add_refund(int(oid), "1.00", "Partial refund")
    for _ in range(40):
        harness.run(gap=600)
    wp.faults.drop_after_write_rate = 0.0
    harness.run(passes=5, gap=3600)
    assert wp.dropped_responses > 0
    assert all(n == 1 for n in wp.order_creations.values())
    assert all(n == 1 for n in wp.event_creations.values())
    counts = harness.rt.ledger.counts(harness.store)
    assert counts.orders[OrderState.PENDING] == 0 and counts.orders[OrderState.DEAD] == 0
    sent = [e for e in harness.rt.ledger.all_events(harness.store) if e.state == EventState.SENT]
    assert len(sent) == len(wp.events)


def test_a_wiredplus_outage_is_retried_from_the_ledger_until_delivered(
    harness: Harness,
) -> None:
    wp = harness.sb.wiredplus
    wp.faults.error_rate = 1.0
    harness.run()
    pending = harness.rt.ledger.counts(harness.store).orders[OrderState.PENDING]
    assert pending == len(_in_scope(harness))
    rows = list(harness.orders().values())
    assert all(r.next_attempt_at is not None and r.last_error for r in rows)
    # Only the pushes before the circuit opened spent an attempt; the rest waited for it.
    assert 1 <= sum(r.attempts for r in rows) <= 5
    wp.faults.error_rate = 0.0
    harness.run(passes=3, gap=600)
    counts = harness.rt.ledger.counts(harness.store)
    assert counts.orders[OrderState.SYNCED] == len(_in_scope(harness))
    assert all(n == 1 for n in wp.order_creations.values())


def test_unmappable_orders_are_skipped_with_a_reason_and_the_pass_goes_on(
    harness: Harness,
) -> None:
    now = harness.clock.now()
    bad = [
        harness.sb.shopwired.add_invalid_order(kind, created=now - timedelta(days=2))
        for kind in ("no_email", "negative_total", "no_products")
    ]
    harness.run()
    rows = harness.orders()
    for oid in bad:
        assert rows[str(oid)].state == OrderState.SKIPPED
        assert rows[str(oid)].last_error
    synced = Counter(r.state for r in rows.values())[OrderState.SYNCED]
    assert synced == len(_in_scope(harness)) - len(bad)


def test_bad_wiredplus_credentials_stop_the_pass_loudly(db_url: str) -> None:
    from sync.errors import FatalError

    clock = FakeClock()
    sb = Sandbox(seed=1, clock=clock, orders=5)
    rt = build_runtime(
        make_settings(db_url, WIREDPLUS_API_KEY="wrong"),
        clock=clock,
        shopwired_transport=sb.shopwired_transport(),
        wiredplus_transport=sb.wiredplus_transport(),
    )
    try:
        with pytest.raises(FatalError, match="WiredPlus"):
            rt.poller.run_pass()
        # Nothing was burnt: no order was dead-lettered because of our own credentials.
        assert rt.ledger.counts(rt.settings.store).orders[OrderState.DEAD] == 0
    finally:
        rt.close()


def test_a_broken_new_order_page_does_not_stop_refreshes_and_deliveries(
    harness: Harness,
) -> None:
    harness.run()
    oid = sorted(_in_scope(harness))[2]
    shipped = harness.sb.shopwired.status_by_name("Shipped")
    assert shipped is not None
    harness.sb.shopwired.set_status(int(oid), shipped["id"])
    harness.clock.advance(13 * 3600)
    source = harness.rt.poller.source

    class BrokenScan:
        def __getattr__(self, name: str) -> Any:
            return getattr(source, name)

        def resumable_pages(
            self, window: Any, position: str | None = None
        ) -> Iterator[tuple[list[Any], None]]:
            return ((page, None) for page in self.new_order_pages(window))

        def new_order_pages(self, window: Any) -> Iterator[list[Any]]:
            raise ValueError("ShopWired sent a page that is not JSON")
            yield []

    harness.rt.poller.source = BrokenScan()  # type: ignore[assignment]
    with pytest.raises(ValueError):
        harness.rt.poller.run_pass()
    # the refresh of open orders still ran and the change was delivered
    assert [e["event_type"] for e in harness.wp_events_for(oid)] == ["dispatched"]
    assert harness.rt.ledger.get_cursor(harness.store, "last_pass_error")


def test_a_429_storm_delays_orders_without_burning_their_attempts(harness: Harness) -> None:
    wp = harness.sb.wiredplus
    wp.faults.throttle_storm_until = harness.clock.monotonic() + 1800
    harness.run()
    rows = list(harness.orders().values())
    assert rows and all(r.state == OrderState.PENDING and r.attempts == 0 for r in rows)
    for _ in range(40):
        harness.run(gap=120)
    counts = harness.rt.ledger.counts(harness.store)
    assert counts.orders[OrderState.SYNCED] == len(_in_scope(harness))
    assert counts.orders[OrderState.DEAD] == 0


def test_an_unchanged_re_read_skips_the_mapping_but_a_row_that_moved_on_is_mapped_again(
    harness: Harness,
) -> None:
    """Re-reads of byte-identical records are only marked as read; if the ledger row no
    longer holds what was last stored (another poller wrote it, an operator edited it), the
    record goes the long way and the row is put right."""
    harness.run()
    oid = sorted(_in_scope(harness))[0]
    ref = harness.rt.ledger.ref_for(harness.store, oid)
    assert ref is not None
    calls: list[str] = []
    parse = harness.rt.source.parse

    def counting_parse(raw: Any) -> Any:
        calls.append(str(raw.get("id")))
        return parse(raw)

    harness.rt.source.parse = counting_parse  # type: ignore[method-assign]
    before = harness.rt.ledger.get_order(harness.store, ref)
    assert before is not None
    harness.clock.advance(13 * 3600)  # past every freshness target: everything re-read
    harness.run(passes=4)
    again = harness.rt.ledger.get_order(harness.store, ref)
    assert again is not None and again.last_checked_at > before.last_checked_at  # re-read
    assert calls == []  # nothing changed: nothing parsed again
    with harness.rt.ledger.session() as s:
        from sync.ledger.models import OrderRow

        row = s.query(OrderRow).filter_by(store=harness.store, ref=ref).one()
        row.content_hash = "edited-elsewhere"
    harness.clock.advance(13 * 3600)
    harness.run(passes=4)
    assert calls == [oid]
    row_after = harness.rt.ledger.get_order(harness.store, ref)
    assert row_after is not None and row_after.content_hash != "edited-elsewhere"
