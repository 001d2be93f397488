"""The completeness audit finds orders the ledger never saw and repairs them."""

from __future__ import annotations

from datetime import timedelta

from sync.ledger.models import OrderState

from .conftest import Harness, _in_scope  # type: ignore[import-not-found]


def test_audit_finds_orders_the_scan_missed_and_the_next_pass_imports_them(
    harness: Harness,
) -> None:
    harness.run()
    # Orders that appear in the past after the watermark moved (restored from a backup, or a
    # shop whose created dates are back-dated): the created-date scan cannot see them.
    now = harness.clock.now()
    late = harness.sb.shopwired.generate_orders(
        3, created_between=(now - timedelta(days=10), now - timedelta(days=9)))
    auditor = harness.rt.poller.auditor
    start = harness.rt.settings.effective_start(now)
    report = auditor.run(start, now, repair=False)
    assert sorted(report.missing) == sorted(str(i) for i in late)
    assert len(report.drifting) == 1
    calls_when_clean = len(report.windows) * 2
    assert report.calls == calls_when_clean + 1  # one page read for the drifting window
    auditor.run(start, now, repair=True)
    harness.run()
    rows = harness.orders()
    assert all(rows[str(i)].state == OrderState.SYNCED for i in late)
    assert set(rows) == _in_scope(harness)
    # nobody was mailed about 9-day-old orders
    assert all(not harness.wp_events_for(str(i)) for i in late)
    assert auditor.run(start, harness.clock.now()).missing == []


def test_the_daemon_audits_on_its_schedule_and_repairs_by_itself(harness: Harness) -> None:
    harness.run()
    now = harness.clock.now()
    (late,) = harness.sb.shopwired.generate_orders(
        1, created_between=(now - timedelta(days=5), now - timedelta(days=5)))
    harness.clock.advance(7 * 3600)  # past ORDERSYNC_AUDIT_INTERVAL (6 h)
    report = harness.rt.poller.run_pass()
    assert report.audit_missing == 1
    harness.run()
    assert harness.orders()[str(late)].state == OrderState.SYNCED
