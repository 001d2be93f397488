"""Which emails-to-be (order events) a change produces — and, above all, which it must not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sync.domain.events import KnownState, decide_events, known_state
from sync.domain.mapping import MappingContext
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


def test_status_change_to_shipped_is_dispatched_with_tracking(sample_order, status_map):
    ctx = MappingContext(custom_fields={"tracking_url": "Tracking link"})
    prev = KnownState("1381", frozenset())
    o = order(sample_order, status=SHIPPED, tracking="https://t.example/1")
    (ev,) = decide(prev, o, status_map, ctx)
    assert ev.event_type == "dispatched"
    assert ev.payload["custom_fields"] == {"Tracking link": "https://t.example/1"}
    assert ev.event_reference == "255:status:dispatched"


def test_custom_fields_are_sent_only_when_configured(sample_order, status_map, ctx):
    prev = KnownState("1381", frozenset())
    o = order(sample_order, status=SHIPPED, tracking="https://t.example/1")
    (ev,) = decide(prev, o, status_map, ctx)
    assert "custom_fields" not in ev.payload  # WiredPlus rejects fields not pre-defined


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
    ctx = MappingContext(custom_fields={"refund_amount": "refund_amount"})
    evs = decide(prev, order(sample_order, refunds=[r1, r2]), status_map, ctx)
    assert [(e.event_type, e.payload["custom_fields"]["refund_amount"]) for e in evs] == [
        ("refunded", "20.50")
    ]
    assert evs[0].payload["message"] == "Refund of 20.50 on order 1001"


def follow(observations, status_map, ctx):
    """Feed successive observations of one order as the sync loop does; all events sent."""
    prev, sent = None, []
    for o in observations:
        resolution = status_map.resolve(o.status)
        sent += decide(prev, o, status_map, ctx)
        prev = known_state(o, resolution, prev)
    return sent


REFUND = {"name": "Full refund", "value": 132}


def test_refund_entry_then_refunded_status_mails_once(sample_order, status_map, ctx):
    # row 3: the refund is listed first, the status follows on the next poll
    sent = follow(
        [order(sample_order), order(sample_order, refunds=[REFUND]),
         order(sample_order, status=REFUNDED, refunds=[REFUND])],
        status_map, ctx,
    )
    assert [e.event_type for e in sent] == ["processing", "refunded"]


def test_refunded_status_then_refund_entry_mails_once(sample_order, status_map, ctx):
    # row 3, the other way round: the status first, the refund entry on the next poll
    sent = follow(
        [order(sample_order), order(sample_order, status=REFUNDED),
         order(sample_order, status=REFUNDED, refunds=[REFUND])],
        status_map, ctx,
    )
    assert [e.event_type for e in sent] == ["processing", "refunded"]


def test_a_later_second_refund_still_mails(sample_order, status_map, ctx):
    second = {"name": "Goodwill", "value": 5}
    sent = follow(
        [order(sample_order, status=REFUNDED),
         order(sample_order, status=REFUNDED, refunds=[REFUND]),
         order(sample_order, status=REFUNDED, refunds=[REFUND, second])],
        status_map, ctx,
    )
    assert [e.event_type for e in sent] == ["refunded", "refunded"]


def test_refund_keys_do_not_depend_on_list_order(sample_order):
    a = {"name": "Shoes", "value": 1}
    b = {"name": "Coat", "value": 2}
    one = order(sample_order, refunds=[a, b]).refunds
    two = order(sample_order, refunds=[b, a]).refunds
    assert {r.key for r in one} == {r.key for r in two}
    dup = order(sample_order, refunds=[a, a]).refunds
    assert len({r.key for r in dup}) == 2  # two identical refunds are two refunds


def test_refunds_known_under_old_positional_keys_are_not_mailed_again(sample_order,
                                                                      status_map, ctx):
    from sync.domain.parse_shopwired import refund_digest

    a = {"name": "Shoes", "value": 1}
    o = order(sample_order, refunds=[a])
    legacy = f"n1-{refund_digest('Shoes', o.refunds[0].amount)}"
    assert decide(KnownState("1381", frozenset({legacy})), o, status_map, ctx) == []


def test_cancelled_is_not_terminal_so_a_later_refund_is_seen(status_map):
    # row 6: only statuses after which nothing can follow are terminal
    from sync.domain.models import SourceStatus

    cancelled = status_map.resolve(SourceStatus("1383", "Cancelled", "cancelled"))
    assert cancelled.order_status == "cancelled" and not cancelled.terminal
    refunded = status_map.resolve(SourceStatus("1387", "Refunded", "custom"))
    assert refunded.terminal


def test_cancelled_then_refunded_mails_the_refund(sample_order, status_map, ctx):
    cancelled = {"id": 1383, "name": "Cancelled", "type": "cancelled"}
    sent = follow(
        [order(sample_order, status=cancelled),
         order(sample_order, status=cancelled, refunds=[REFUND])],
        status_map, ctx,
    )
    assert [e.event_type for e in sent] == ["cancelled", "refunded"]


def test_refund_amounts_keep_the_currency_exponent(sample_order, status_map):
    from dataclasses import replace
    from decimal import Decimal

    ctx = MappingContext(custom_fields={"refund_amount": "Refund"})
    o = order(sample_order, refunds=[{"id": 1, "name": "part", "value": 1}])
    kwd = replace(o, currency="KWD", refunds=(replace(o.refunds[0], amount=Decimal("0.001")),))
    (ev,) = [e for e in decide(KnownState("1381", frozenset()), kwd, status_map, ctx)]
    assert ev.payload["custom_fields"] == {"Refund": "0.001"}
    jpy = replace(o, currency="JPY", refunds=(replace(o.refunds[0], amount=Decimal("1250")),))
    (ev,) = decide(KnownState("1381", frozenset()), jpy, status_map, ctx)
    assert ev.payload["message"] == "Refund of 1250 on order 1001"


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


@given(steps=st.lists(st.sampled_from(["refund", "refunded_status", "paid_status", "poll"]),
                      min_size=1, max_size=8))
def test_refund_emails_never_outnumber_refunds(sample_order, status_map, ctx, steps):
    """Whatever order the shop shows refunds and refund statuses in, each refund is mailed at
    most once, and a refund shown only by its status is mailed once."""
    refunds: list[dict[str, Any]] = []
    status = PAID
    observations = []
    for step in steps:
        if step == "refund":
            refunds = [*refunds, {"name": f"r{len(refunds)}", "value": 10 + len(refunds)}]
        elif step == "refunded_status":
            status = REFUNDED
        elif step == "paid_status":
            status = PAID
        observations.append(order(sample_order, status=status, refunds=refunds))
    sent = [e for e in follow(observations, status_map, ctx) if e.event_type == "refunded"]
    assert len({e.event_reference for e in sent}) == len(sent)
    assert len(sent) <= max(len(refunds), 1)
    if refunds or any(s == "refunded_status" for s in steps):
        assert sent, "a refund the customer should hear about was never mailed"
