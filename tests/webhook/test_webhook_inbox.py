"""WebhookInbox contracts on SQLite and PostgreSQL: dedupe, one refresh per order, races."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from sync.clock import FakeClock
from sync.ledger.models import RefreshRequestRow, WebhookRow
from sync.ledger.store import Ledger
from sync.webhook.inbox import PRIORITY_WEBHOOK, PendingRefresh, RequestBoard, WebhookInbox

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
S = "shop"


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    led = Ledger(db_url)
    led.create_schema()
    yield led
    led.dispose()


@pytest.fixture
def inbox(ledger: Ledger) -> WebhookInbox:
    return WebhookInbox(ledger)


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def webhook_rows(ledger: Ledger, store: str = S) -> list[WebhookRow]:
    with ledger.session() as s:
        return list(s.scalars(select(WebhookRow).where(WebhookRow.store == store)
                              .order_by(WebhookRow.id)))


def refresh_rows(ledger: Ledger, store: str = S) -> list[RefreshRequestRow]:
    with ledger.session() as s:
        return list(s.scalars(select(RefreshRequestRow).where(RefreshRequestRow.store == store)
                              .order_by(RefreshRequestRow.id)))


def test_first_delivery_is_recorded_with_a_refresh_request(inbox: WebhookInbox, ledger: Ledger):
    assert inbox.record(S, "e1", "order.updated", "42", at(-1), NOW) is True
    (row,) = webhook_rows(ledger)
    assert (row.delivery_id, row.topic, row.source_order_id) == ("e1", "order.updated", "42")
    assert row.event_created_at == at(-1) and row.received_at == NOW
    assert row.processed_at is None
    (req,) = refresh_rows(ledger)
    assert (req.source_order_id, req.reason, req.priority) == (
        "42", "webhook:order.updated", PRIORITY_WEBHOOK)
    assert req.requested_at == NOW
    assert inbox.pending_refreshes(S, 10) == [
        PendingRefresh("42", "webhook:order.updated", NOW)
    ]
    # a PendingRefresh is a plain (order id, reason, requested_at) tuple
    oid, reason, requested = inbox.pending_refreshes(S, 10)[0]
    assert (oid, reason, requested) == ("42", "webhook:order.updated", NOW)


def test_duplicate_delivery_changes_nothing(inbox: WebhookInbox, ledger: Ledger):
    assert inbox.record(S, "e1", "order.updated", "42", NOW, NOW)
    assert inbox.record(S, "e1", "order.updated", "42", NOW, at(5)) is False
    assert len(webhook_rows(ledger)) == 1
    (req,) = refresh_rows(ledger)
    assert req.requested_at == NOW
    # the same delivery id in another store is a different delivery
    assert inbox.record("other", "e1", "order.updated", "42", NOW, NOW) is True


def test_second_request_keeps_earliest_time_and_lowest_priority(
    inbox: WebhookInbox, ledger: Ledger
):
    assert inbox.record(S, "e2", "order.status_changed", "42", at(1), at(10))
    # an older event delivered later (out of order): both recorded, still one request
    assert inbox.record(S, "e1", "order.updated", "42", at(0), at(20))
    assert [r.delivery_id for r in webhook_rows(ledger)] == ["e2", "e1"]
    (req,) = refresh_rows(ledger)
    assert req.requested_at == at(10)
    assert req.reason == "webhook:order.status_changed"
    # a more urgent request wins priority and reason, but not the time
    assert inbox.record(S, "e3", "order.deleted", "42", at(2), at(30), priority=1)
    (req,) = refresh_rows(ledger)
    assert (req.priority, req.reason, req.requested_at) == (1, "webhook:order.deleted", at(10))
    # a less urgent one later changes nothing
    assert inbox.record(S, "e4", "order.updated", "42", at(3), at(40), priority=50)
    (req,) = refresh_rows(ledger)
    assert (req.priority, req.reason, req.requested_at) == (1, "webhook:order.deleted", at(10))
    # an earlier receipt time (clock skew between receivers) does move the time back
    assert inbox.record(S, "e5", "order.updated", "42", at(3), at(5))
    assert refresh_rows(ledger)[0].requested_at == at(5)


def test_delivery_without_an_order_id_requests_nothing(inbox: WebhookInbox, ledger: Ledger):
    assert inbox.record(S, "e1", "order.refund.created", None, NOW, NOW)
    assert len(webhook_rows(ledger)) == 1
    assert refresh_rows(ledger) == []


def test_record_is_one_transaction(
    inbox: WebhookInbox, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
):
    def boom(*a: object, **kw: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(WebhookInbox, "request_refresh", staticmethod(boom))
    with pytest.raises(RuntimeError):
        inbox.record(S, "e1", "order.updated", "42", NOW, NOW)
    assert webhook_rows(ledger) == [] and refresh_rows(ledger) == []


def test_pending_refreshes_order_and_limit(inbox: WebhookInbox):
    inbox.record(S, "a", "order.updated", "1", NOW, at(3))
    inbox.record(S, "b", "order.updated", "2", NOW, at(1))
    inbox.record(S, "c", "order.deleted", "3", NOW, at(9), priority=0)
    inbox.record(S, "d", "order.updated", "4", NOW, at(2))
    inbox.record("other", "e", "order.updated", "5", NOW, at(0))
    assert [p.source_order_id for p in inbox.pending_refreshes(S, 10)] == ["3", "2", "4", "1"]
    assert [p.source_order_id for p in inbox.pending_refreshes(S, 2)] == ["3", "2"]


def test_done_drops_requests_and_stamps_deliveries(inbox: WebhookInbox, ledger: Ledger):
    inbox.record(S, "a", "order.updated", "1", NOW, at(1))
    inbox.record(S, "b", "order.updated", "1", NOW, at(2))
    inbox.record(S, "c", "order.updated", "2", NOW, at(3))
    assert inbox.done(S, ["1", "99"], now=at(4)) == 1
    assert [p.source_order_id for p in inbox.pending_refreshes(S, 10)] == ["2"]
    stamped = {r.delivery_id: r.processed_at for r in webhook_rows(ledger)}
    assert stamped == {"a": at(4), "b": at(4), "c": None}
    assert inbox.done(S, []) == 0


def test_done_keeps_a_request_when_a_webhook_arrived_during_the_read(
    inbox: WebhookInbox, ledger: Ledger
):
    inbox.record(S, "a", "order.updated", "1", NOW, at(1))
    inbox.record(S, "b", "order.updated", "2", NOW, at(1))
    read_at = at(2)  # the scheduler starts reading orders 1 and 2
    inbox.record(S, "c", "order.status_changed", "1", NOW, at(3))  # order 1 changes meanwhile
    assert inbox.done(S, ["1", "2"], read_at=read_at, now=at(4)) == 1
    assert [p.source_order_id for p in inbox.pending_refreshes(S, 10)] == ["1"]
    stamped = {r.delivery_id: r.processed_at for r in webhook_rows(ledger)}
    assert stamped == {"a": at(4), "b": at(4), "c": None}
    # the next round (started after c arrived) clears it
    assert inbox.done(S, ["1"], read_at=at(5), now=at(6)) == 1
    assert inbox.pending_refreshes(S, 10) == []


def test_deleted_orders(inbox: WebhookInbox):
    inbox.record(S, "a", "order.updated", "1", NOW, NOW)
    inbox.record(S, "b", "order.deleted", "2", NOW, NOW)
    inbox.record(S, "c", "order.deleted", "3", NOW, NOW)
    inbox.record("other", "d", "order.deleted", "1", NOW, NOW)
    assert inbox.deleted_orders(S, ["1", "2", "4"]) == {"2"}
    assert inbox.deleted_orders(S, []) == set()
    # a deletion still asks for a refresh (an ids= call confirms it)
    assert "2" in {p.source_order_id for p in inbox.pending_refreshes(S, 10)}


def test_stats(inbox: WebhookInbox):
    empty = inbox.stats(S, since=at(-60))
    assert (empty.received, empty.last_received_at, empty.pending_refreshes) == (0, None, 0)
    inbox.record(S, "a", "order.updated", "1", NOW, at(-120))
    inbox.record(S, "b", "order.updated", "1", NOW, at(-30))
    inbox.record(S, "c", "order.deleted", "2", NOW, at(-5))
    inbox.record(S, "c", "order.deleted", "2", NOW, at(-4))  # duplicate: not stored
    inbox.done(S, ["1"], now=at(-1))
    st = inbox.stats(S, since=at(-60))
    assert st.received == 2
    assert st.by_topic == {"order.updated": 1, "order.deleted": 1}
    assert st.last_received_at == at(-5)
    assert st.unprocessed == 1 and st.pending_refreshes == 1


def test_ping(inbox: WebhookInbox, tmp_path: Path):
    assert inbox.ping() is True
    bare = Ledger(f"sqlite:///{tmp_path / 'no-schema.db'}")
    try:
        assert WebhookInbox(bare).ping() is False
    finally:
        bare.dispose()
    nowhere = Ledger("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    try:
        assert WebhookInbox(nowhere).ping() is False
    finally:
        nowhere.dispose()


def _together(n: int, fn: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_deliveries_for_one_order_make_one_request(
    inbox: WebhookInbox, ledger: Ledger
):
    results = _together(8, lambda i: inbox.record(S, f"e{i}", "order.updated", "7", NOW,
                                                  at(i)))
    assert results == [True] * 8
    assert len(webhook_rows(ledger)) == 8
    (req,) = refresh_rows(ledger)
    assert req.requested_at == NOW


def test_concurrent_copies_of_one_delivery_are_recorded_once(inbox: WebhookInbox, ledger: Ledger):
    results = _together(8, lambda i: inbox.record(S, "same", "order.updated", "7", NOW, at(i)))
    assert results.count(True) == 1 and results.count(False) == 7
    with ledger.session() as s:
        assert s.scalar(select(func.count()).select_from(WebhookRow)) == 1
        assert s.scalar(select(func.count()).select_from(RefreshRequestRow)) == 1


# -- the board of requests one poller process shares between its stores ---------------------
def _count_statements(ledger: Ledger) -> list[str]:
    seen: list[str] = []
    event.listen(ledger.engine, "before_cursor_execute",
                 lambda conn, cur, statement, *a: seen.append(statement))
    return seen


def test_fifty_store_loops_read_the_requests_once_a_tick_not_once_each(ledger: Ledger):
    clock = FakeClock()
    board = RequestBoard(ledger, clock, every=0.25)
    inboxes = {f"s{i}": WebhookInbox(ledger, clock, board=board) for i in range(50)}
    inboxes["s7"].record("s7", "d1", "order.updated", "42", clock.now(), clock.now())
    statements = _count_statements(ledger)
    for _ in range(8):  # two seconds of the daemon's ticks, every store's loop looking
        waiting = [s for s, inbox in inboxes.items() if inbox.has_requests(s)]
        assert waiting == ["s7"]
        clock.advance(0.25)
    reads = [q for q in statements if "ledger_refresh_requests" in q]
    assert len(reads) == 8  # was 400: one per store per tick


def test_a_request_is_seen_within_a_tick_and_settled_once_read(ledger: Ledger):
    clock = FakeClock()
    board = RequestBoard(ledger, clock, every=0.25)
    inbox = WebhookInbox(ledger, clock, board=board)
    assert inbox.has_requests(S) is False
    inbox.record(S, "d1", "order.updated", "42", clock.now(), clock.now())
    clock.advance(0.25)
    assert inbox.has_requests(S) is True
    inbox.done(S, ["42"], read_at=clock.now())
    assert inbox.has_requests(S) is False  # at once, not a tick later
    clock.advance(0.25)
    assert inbox.has_requests(S) is False
    assert WebhookInbox(ledger).has_requests(S) is False  # without a board: its own read
