"""Created-date window arithmetic: the watermark never skips an uncommitted order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sync.domain.windows import Window, advance_watermark, plan_window, split_range

T0 = datetime(2026, 1, 1, tzinfo=UTC)
secs = st.integers(min_value=0, max_value=10_000_000)


def test_window_overlaps_watermark_and_stops_before_now():
    w = plan_window(T0, T0 + timedelta(hours=1), overlap=timedelta(minutes=10),
                    settle=timedelta(seconds=30))
    assert w == Window(T0 - timedelta(minutes=10), T0 + timedelta(minutes=59, seconds=30))


def test_no_window_when_pass_is_inside_settle_delay():
    assert plan_window(T0, T0, overlap=timedelta(0), settle=timedelta(seconds=30)) is None


@given(wm=secs, created=st.lists(secs, max_size=30), end=secs)
def test_watermark_monotone_and_bounded(wm, created, end):
    current = T0 + timedelta(seconds=wm)
    window = Window(T0, T0 + timedelta(seconds=end))
    got = advance_watermark(current, [T0 + timedelta(seconds=c) for c in created], window)
    assert got >= current
    assert got <= max(current, window.end)
    if created:
        assert got <= max(current, T0 + timedelta(seconds=max(created)))


@given(wm=secs, committed=st.lists(secs, min_size=1, max_size=30), later=secs)
def test_an_order_newer_than_the_committed_ones_is_reread(wm, committed, later):
    """Whatever was committed, an uncommitted order created after the newest committed one
    is still inside the next window (overlap ≥ 0)."""
    current = T0 + timedelta(seconds=wm)
    window = Window(T0, T0 + timedelta(seconds=10_000_001))
    new_mark = advance_watermark(current, [T0 + timedelta(seconds=c) for c in committed], window)
    uncommitted = T0 + timedelta(seconds=max(committed) + later)
    if uncommitted >= current:
        nxt = plan_window(new_mark, uncommitted + timedelta(hours=1), overlap=timedelta(0),
                          settle=timedelta(0))
        assert nxt is not None and nxt.start <= uncommitted


@given(start=secs, length=secs, chunk=st.integers(min_value=3600, max_value=5_000_000))
def test_split_range_covers_every_second_once(start, length, chunk):
    a = T0 + timedelta(seconds=start)
    b = a + timedelta(seconds=length)
    parts = list(split_range(a, b, timedelta(seconds=chunk)))
    assert parts[0].start == a and parts[-1].end == b
    for x, y in itertools.pairwise(parts):
        assert y.start == x.end + timedelta(seconds=1)


def test_freshness_targets_follow_how_soon_a_status_changes() -> None:
    from sync.domain.freshness import parse_targets, target_for

    targets = parse_targets(None)
    assert target_for("awaiting-payment", targets) < target_for("shipped", targets) < (
        target_for("completed", targets))
    assert target_for(None, targets) == target_for("made-up", targets)
