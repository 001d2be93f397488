"""Which emails-to-be (order events) a change produces — and, above all, which it must not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sync.domain.events import KnownState, decide_events, known_state
from sync.domain.parse_shopwired import parse_shopwired_order

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
PAID = {"id": 1381, "name": "Paid", "type": "paid"}
SHIPPED = {"id": 1382, "name": "Shipped", "type": "shipped"}
UNPAID = {"id": 1380, "name": "Awaiting Payment", "type": "unpaid"}
REFUNDED = {"id": 1390, "name": "Refunded", "type": "custom"}


def order(raw: dict[str, Any], *, status=PAID, created=NOW - timedelta(hours=1), refunds=(),
          tracking=""):
    raw = dict(raw, status=status, refunds=list(refunds), trackingUrl=tracking,
               created=created.strftime("%a, %d %b %Y %H:%M:%S +0000"))
    return parse_shopwired_order(raw)


def decide(prev, o, status_map, ctx, allow=True):
    return decide_events(prev, o, status_map.resolve(o.status), ctx, now=NOW,
                         first_sight_window=DAY, allow_events=allow)


def test_recent_new_paid_order_gets_processing(sample_order, status_map, ctx):
    evs = decide(None, order(sample_order), status_map, ctx)
    assert [e.event_type for e in evs] == ["processing"]
    assert evs[0].payload["event_date"] == "2026-01-15T12:00:00Z"


def test_history_is_never_mailed(sample_order, status_map, ctx):
    old = order(sample_order, status=SHIPPED, created=NOW - timedelta(days=40),
                refunds=[{"name": "x", "value": 5}])
    assert decide(None, old, status_map, ctx) == []


def test_backfill_never_emits_even_for_recent_orders(sample_order, status_map, ctx):
    assert decide(None, order(sample_order), status_map, ctx, allow=False) == []


def test_status_change_to_shipped_is_dispatched_with_tracking(sample_order, status_map, ctx):
    prev = KnownState("1381", frozenset())
    o = order(sample_order, status=SHIPPED, tracking="https://t.example/1")
    (ev,) = decide(prev, o, status_map, ctx)
    assert ev.event_type == "dispatched"
    assert ev.payload["custom_fields"] == {"tracking_url": "https://t.example/1"}
    assert ev.event_reference == "255:status:dispatched"


def test_unchanged_status_gives_nothing(sample_order, status_map, ctx):
    o = order(sample_order)
    assert decide(known_state(o), o, status_map, ctx) == []


def test_change_into_status_without_event_gives_nothing(sample_order, status_map, ctx):
    prev = KnownState("1381", frozenset())
    assert decide(prev, order(sample_order, status=UNPAID), status_map, ctx) == []


def test_each_new_refund_is_one_refunded_event(sample_order, status_map, ctx):
    r1 = {"id": 11, "name": "Shoes returned", "value": 10}
    r2 = {"id": 12, "name": "Coat returned", "value": 20.5}
    prev = known_state(order(sample_order, refunds=[r1]))
    evs = decide(prev, order(sample_order, refunds=[r1, r2]), status_map, ctx)
    assert [(e.event_type, e.payload["custom_fields"]["refund_amount"]) for e in evs] == [
        ("refunded", "20.50")
    ]


def test_refund_status_with_refund_entries_mails_once(sample_order, status_map, ctx):
    prev = KnownState("1381", frozenset())
    o = order(sample_order, status=REFUNDED, refunds=[{"name": "all", "value": 132}])
    evs = decide(prev, o, status_map, ctx)
    assert [e.event_type for e in evs] == ["refunded"]


def test_event_references_are_deterministic(sample_order, status_map, ctx):
    prev = KnownState("1381", frozenset())
    a = decide(prev, order(sample_order, status=SHIPPED), status_map, ctx)
    b = decide(prev, order(sample_order, status=SHIPPED), status_map, ctx)
    assert [e.event_reference for e in a] == [e.event_reference for e in b]


@given(
    hours=st.floats(min_value=0, max_value=24 * 400, allow_nan=False),
    status=st.sampled_from([PAID, SHIPPED, UNPAID, REFUNDED]),
)
def test_first_sight_events_only_inside_window(sample_order, status_map, ctx, hours, status):
    o = order(sample_order, status=status, created=NOW - timedelta(hours=hours))
    evs = decide(None, o, status_map, ctx)
    if hours > 24:
        assert evs == []


def test_two_statuses_with_the_same_email_mail_once(sample_order, status_map, ctx):
    from datetime import UTC, datetime, timedelta

    from sync.domain.events import KnownState, decide_events
    from sync.domain.parse_shopwired import parse_shopwired_order

    now = datetime(2026, 1, 15, tzinfo=UTC)
    sample_order["status"] = {"id": 1, "name": "Paid", "type": "paid"}
    first = parse_shopwired_order(sample_order)
    sample_order["status"] = {"id": 2, "name": "Paid - backorder", "type": "paid"}
    second = parse_shopwired_order(sample_order)
    a = decide_events(KnownState("0", frozenset()), first, status_map.resolve(first.status), ctx,
                      now=now, first_sight_window=timedelta(days=1))
    b = decide_events(KnownState("1", frozenset()), second, status_map.resolve(second.status),
                      ctx, now=now, first_sight_window=timedelta(days=1))
    assert [e.event_type for e in a] == [e.event_type for e in b] == ["processing"]
    assert a[0].event_reference == b[0].event_reference  # the ledger keeps only the first
