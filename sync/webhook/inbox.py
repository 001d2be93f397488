"""The webhook inbox: accepted deliveries and the order refreshes they ask for, in the ledger.

Contracts
---------
* :meth:`WebhookInbox.record` is the receiver's only write. In **one** transaction it inserts
  the :class:`~sync.ledger.models.WebhookRow` (unique on ``(store, delivery_id)``) and upserts
  the order's :class:`~sync.ledger.models.RefreshRequestRow` (unique on ``(store,
  source_order_id)``): a second request for the same order keeps the **earliest**
  ``requested_at`` and the **lowest** priority number (= soonest); the reason follows the
  winning priority (on a tie the existing reason stays). Either both rows are written or
  neither is.
* A duplicate delivery (same ``delivery_id``) writes nothing and returns ``False``; it never
  requests a second refresh.
* Races are settled by the database, not by a read-before-write: the webhook insert comes
  first and a unique violation on it means "duplicate"; a unique violation on the refresh
  insert (another transaction requested the same order first) rolls everything back and the
  whole transaction is retried, which then takes the update path. This works the same on
  SQLite and PostgreSQL without savepoints or dialect-specific ``ON CONFLICT``.
* :meth:`WebhookInbox.done` is what the scheduler calls after re-reading orders. Given
  ``read_at`` (when it started reading), a request is kept if a webhook for that order
  arrived *after* ``read_at`` (or the request itself is newer), so a change that lands while
  the order is being read is never lost.
* Nothing here parses payloads or knows HTTP: :mod:`sync.webhook.app` does that.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sync.clock import Clock, SystemClock
from sync.ledger.models import RefreshRequestRow, UTCDateTime, WebhookRow
from sync.ledger.store import Ledger

ORDER_FINALIZED = "order.finalized"
ORDER_UPDATED = "order.updated"
ORDER_STATUS_CHANGED = "order.status_changed"
ORDER_REFUND_CREATED = "order.refund.created"
ORDER_DELETED = "order.deleted"

ORDER_TOPICS: frozenset[str] = frozenset(
    {ORDER_FINALIZED, ORDER_UPDATED, ORDER_STATUS_CHANGED, ORDER_REFUND_CREATED, ORDER_DELETED}
)
"""The ShopWired topics that make the receiver request an order refresh (reference §4)."""

ELASTICPATH_ORDER_TOPICS: frozenset[str] = frozenset(
    {
        "order.created",
        "order.updated",
        "order.paid",
        "order.authorized",
        "order.fulfilled",
        "order.cancelled",
        "order.refunded",
    }
)
"""The Elastic Path integration triggers that make the receiver request an order refresh
(``wiredplus-elasticpath.md`` B.6). None of them is a deletion."""

PRIORITY_WEBHOOK = 10
"""Default priority of a webhook-triggered refresh (lower = sooner). Leaves room below for
operator requests (0..9) and above for background repairs (audit, 20+)."""

_RETRIES = 3


class PendingRefresh(NamedTuple):
    """One order waiting to be re-read: ``(source_order_id, reason, requested_at)``."""

    source_order_id: str
    reason: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookStats:
    """What ``ordersync status`` shows about webhooks for one store.

    ``received`` counts accepted (first) deliveries received at or after ``since``;
    duplicates are not stored, so they are not counted here (the receiver logs them).
    ``last_received_at`` is the newest delivery ever, ``None`` if there was none.
    """

    since: datetime
    received: int
    by_topic: dict[str, int] = field(default_factory=dict)
    unprocessed: int = 0
    pending_refreshes: int = 0
    last_received_at: datetime | None = None


def _reason(topic: str) -> str:
    return f"webhook:{topic}"[:64]


class RequestBoard:
    """Which stores have refresh requests waiting, for every store loop of one poller
    process: one read of the whole table at most every ``every`` seconds (the daemon's
    tick), however many stores the process polls. Without it each store's loop asked the
    ledger on every tick — for 50 stores, 200 queries a second that almost always found
    nothing.

    Contract: :meth:`has_requests` is at most ``every`` seconds behind the ledger (a
    webhook-announced order waits that much longer, still well under a second); after
    :meth:`settled` the store counts as having none until the next read. Thread-safe.
    """

    def __init__(self, ledger: Ledger, clock: Clock, every: float = 0.25) -> None:
        self.ledger = ledger
        self.clock = clock
        self.every = every
        self._lock = threading.Lock()
        self._stores: set[str] = set()
        self._read_at: float | None = None

    def has_requests(self, store: str) -> bool:
        with self._lock:
            mono = self.clock.monotonic()
            if self._read_at is None or mono - self._read_at >= self.every:
                with self.ledger.session() as s:
                    self._stores = set(s.scalars(select(RefreshRequestRow.store).distinct()))
                self._read_at = mono
            return store in self._stores

    def settled(self, store: str) -> None:
        """``store`` just dealt with its requests: none until the next read says otherwise."""
        with self._lock:
            self._stores.discard(store)


class WebhookInbox:
    """Ledger access for the webhook receiver and the refresh scheduler.

    Thread-safe (every call is its own transaction); the receiver calls it from worker
    threads. ``clock`` only supplies ``processed_at`` in :meth:`done`.
    """

    def __init__(self, ledger: Ledger, clock: Clock | None = None,
                 board: RequestBoard | None = None) -> None:
        self.ledger = ledger
        self.clock: Clock = clock or SystemClock()
        self.board = board

    def has_requests(self, store: str) -> bool:
        """Whether ``store`` has refresh requests waiting: from the shared
        :class:`RequestBoard` when there is one (at most its ``every`` seconds old), else one
        indexed read."""
        if self.board is not None:
            return self.board.has_requests(store)
        return bool(self.pending_refreshes(store, 1))

    # -- the receiver's write ---------------------------------------------------------------
    def record(
        self,
        store: str,
        delivery_id: str,
        topic: str,
        order_id: str | None,
        event_created_at: datetime | None,
        now: datetime,
        *,
        priority: int = PRIORITY_WEBHOOK,
    ) -> bool:
        """Store one delivery and request a refresh of ``order_id``; False if a duplicate.

        ``order_id`` ``None`` records the delivery without requesting anything (an order
        event whose order cannot be identified). ``now`` (aware UTC) becomes ``received_at``
        and, for a new request, ``requested_at``. Raises on database errors other than the
        handled unique violations (the caller answers non-200 so the platform retries).
        """
        for _ in range(_RETRIES):
            stage = "webhook"
            try:
                with self.ledger.session() as s:
                    s.add(
                        WebhookRow(
                            store=store,
                            delivery_id=delivery_id,
                            topic=topic,
                            source_order_id=order_id,
                            event_created_at=event_created_at,
                            received_at=now,
                        )
                    )
                    s.flush()
                    stage = "refresh"
                    if order_id is not None:
                        self.request_refresh(
                            s, store, order_id, _reason(topic), now, priority=priority
                        )
                return True
            except IntegrityError:
                if stage == "webhook":
                    return False
                # Another transaction inserted this order's refresh request between our
                # UPDATE and INSERT; everything was rolled back, go again (now an UPDATE).
                continue
        raise RuntimeError(f"could not record webhook {delivery_id!r} after {_RETRIES} tries")

    @staticmethod
    def request_refresh(
        s: Session,
        store: str,
        order_id: str,
        reason: str,
        now: datetime,
        *,
        priority: int = PRIORITY_WEBHOOK,
    ) -> None:
        """Upsert a refresh request inside the caller's transaction ``s``.

        Keeps the earliest ``requested_at`` and the lowest priority. May raise
        ``IntegrityError`` on flush when a concurrent transaction inserted the same order's
        request first; the caller retries its transaction (see :meth:`record`).
        """
        col = RefreshRequestRow
        now_lit = literal(now, type_=UTCDateTime())
        prio_lit = literal(priority)
        wins = col.priority > prio_lit
        res = s.execute(
            update(col)
            .where(col.store == store, col.source_order_id == order_id)
            .values(
                requested_at=case((col.requested_at > now_lit, now_lit), else_=col.requested_at),
                priority=case((wins, prio_lit), else_=col.priority),
                reason=case((wins, literal(reason)), else_=col.reason),
            )
            .execution_options(synchronize_session=False)
        )
        if res.rowcount == 0:  # type: ignore[attr-defined]
            s.add(
                RefreshRequestRow(
                    store=store,
                    source_order_id=order_id,
                    reason=reason,
                    priority=priority,
                    requested_at=now,
                )
            )
            s.flush()

    # -- the scheduler's side --------------------------------------------------------------
    def pending_refreshes(self, store: str, limit: int = 50) -> list[PendingRefresh]:
        """Orders to re-read, most urgent first (priority, then ``requested_at``, then id)."""
        col = RefreshRequestRow
        with self.ledger.session() as s:
            rows = s.execute(
                select(col.source_order_id, col.reason, col.requested_at)
                .where(col.store == store)
                .order_by(col.priority, col.requested_at, col.id)
                .limit(limit)
            )
            return [PendingRefresh(r[0], r[1], r[2]) for r in rows]

    def done(
        self,
        store: str,
        order_ids: Iterable[str],
        *,
        read_at: datetime | None = None,
        now: datetime | None = None,
    ) -> int:
        """Orders were re-read: drop their refresh requests, stamp their deliveries processed.

        Without ``read_at`` every request for ``order_ids`` is dropped. With ``read_at``
        (when the re-read started) a request survives if it was made after ``read_at`` or a
        delivery for that order arrived after ``read_at``; only deliveries received at or
        before ``read_at`` are stamped. ``now`` (default: the clock) is the ``processed_at``.
        Returns the number of requests dropped.
        """
        ids = sorted({str(o) for o in order_ids})
        if not ids:
            return 0
        if self.board is not None:
            self.board.settled(store)
        stamp = now or self.clock.now()
        rq, wh = RefreshRequestRow, WebhookRow
        with self.ledger.session() as s:
            cond: ColumnElement[bool] = and_(rq.store == store, rq.source_order_id.in_(ids))
            mark: ColumnElement[bool] = and_(
                wh.store == store, wh.source_order_id.in_(ids), wh.processed_at.is_(None)
            )
            if read_at is not None:
                newer = (
                    select(wh.id)
                    .where(
                        wh.store == rq.store,
                        wh.source_order_id == rq.source_order_id,
                        wh.received_at > read_at,
                    )
                    .correlate(rq)
                )
                cond = and_(cond, rq.requested_at <= read_at, ~exists(newer))
                mark = and_(mark, wh.received_at <= read_at)
            res = s.execute(delete(rq).where(cond).execution_options(synchronize_session=False))
            s.execute(
                update(wh)
                .where(mark)
                .values(processed_at=stamp)
                .execution_options(synchronize_session=False)
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    def deleted_orders(self, store: str, order_ids: Sequence[str]) -> set[str]:
        """Which of ``order_ids`` had an ``order.deleted`` delivery (processed or not)."""
        ids = sorted({str(o) for o in order_ids})
        if not ids:
            return set()
        with self.ledger.session() as s:
            return {
                str(v)
                for v in s.scalars(
                    select(WebhookRow.source_order_id)
                    .where(
                        WebhookRow.store == store,
                        WebhookRow.topic == ORDER_DELETED,
                        WebhookRow.source_order_id.in_(ids),
                    )
                    .distinct()
                )
            }

    # -- status and health -----------------------------------------------------------------
    def stats(self, store: str, since: datetime) -> WebhookStats:
        """Counts for ``ordersync status``: deliveries since ``since``, backlog, last one."""
        wh, rq = WebhookRow, RefreshRequestRow
        with self.ledger.session() as s:
            by_topic = {
                str(t): int(n)
                for t, n in s.execute(
                    select(wh.topic, func.count())
                    .where(wh.store == store, wh.received_at >= since)
                    .group_by(wh.topic)
                ).all()
            }
            unprocessed = s.scalar(
                select(func.count())
                .select_from(wh)
                .where(wh.store == store, wh.processed_at.is_(None))
            )
            pending = s.scalar(select(func.count()).select_from(rq).where(rq.store == store))
            last = s.scalar(select(func.max(wh.received_at)).where(wh.store == store))
        return WebhookStats(
            since=since,
            received=sum(by_topic.values()),
            by_topic=by_topic,
            unprocessed=int(unprocessed or 0),
            pending_refreshes=int(pending or 0),
            last_received_at=last,
        )

    def ping(self) -> bool:
        """True when the database answers and the webhook table exists; never raises."""
        try:
            with self.ledger.session() as s:
                s.execute(select(WebhookRow.id).limit(1)).all()
            return True
        except Exception:
            return False
