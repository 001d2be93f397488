"""The ledger: engine, sessions and the queries every other room needs.

Contracts:

* ``claim_many`` (``claim`` for one) is the only way to start pushing an order: an atomic
  compare-and-set on a lease in one ``UPDATE … RETURNING``, so two workers never push the same
  order at once (identical on SQLite and PostgreSQL; on PostgreSQL rows locked by another
  transaction are skipped, never waited for, so a batch claim cannot deadlock with ingest).
* ``finish_batch`` marks an order synced only if nobody changed it since the claim
  (``version``), so an order updated mid-push stays pending and is pushed again.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    any_,
    bindparam,
    case,
    create_engine,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from sync.domain.lifecycle import EventTransition, OrderTransition

if TYPE_CHECKING:
    from sync.domain.refresh_plan import OpenOrder
from sync.ledger.models import (
    Base,
    CursorRow,
    EventRow,
    EventState,
    LogRow,
    OrderRow,
    OrderState,
)

WATERMARK = "new_orders_watermark"
#: JSON: where a new-order scan that stopped part-way resumes (sync.service.poller), or "".
SCAN_RESUME = "new_orders_scan_resume"
LAST_PASS_OK = "last_pass_ok"
LAST_PASS_ERROR = "last_pass_error"
LAST_PASS_CALLS = "last_pass_calls"
WorkStamp = tuple[int, int, str]
"""(version, attempts, next attempt ISO or ""): see :meth:`Ledger.due_work`."""
LAST_AUDIT = "last_audit"  # JSON: how the last pass spent its ShopWired calls
REFRESH_PLAN = "refresh_plan"  # JSON: open orders, staleness bound and percentiles (poller)


ANALYZE_FIRST_AT = 1_000
"""New orders after which the ledger's statistics are first refreshed (then at 2×, 4× …)."""
ANALYZE_LOCK_KEY = 0x6F72_6473_796E_63  # "ordsync": the advisory lock of a statistics refresh


def among(dialect: str, column: ColumnElement[Any] | InstrumentedAttribute[Any],
          values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values`` for the hot paths (re-reads, first sight, dispatch, claims). On
    PostgreSQL it is one array parameter, ``column = ANY(:values)``: the statement text is the
    same whatever the number of values, so SQLAlchemy compiles it once and psycopg converts
    it once (an ``IN`` list of 100 values is 100 parameters, each coerced by SQLAlchemy and,
    past 50, the query re-parsed by psycopg in Python on every execution). The btree index
    serves both forms alike."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def _dialect(s: Session | Connection) -> str:
    return s.get_bind().dialect.name if isinstance(s, Session) else s.dialect.name


class ReadMark(NamedTuple):
    """An order row as a re-read sees it (:meth:`Ledger.read_marks`)."""

    state: str
    content_hash: str | None


def make_engine(url: str, *, threads: int = 5) -> Engine:
    """Engine with sane settings for concurrent workers (WAL + busy timeout on SQLite).
    ``threads``: how many threads of the process use it at once (a poller serving many
    stores: one per store). PostgreSQL keeps that many connections plus 5 open, at least 10
    and at most 25, and opens up to 10 more for a burst: a thread seldom waits for one, and
    two pollers and four workers stay well inside PostgreSQL's default 100 connections. The
    kept connections are the pool's size, not its overflow: an overflow connection is closed
    when it is given back, and a poller whose store threads each opened one per transaction
    spent more CPU (its own and PostgreSQL's, a backend forked per connection) connecting
    than syncing."""
    if url.startswith("sqlite"):
        # A small pool per process (connections are opened after a fork, never shared):
        # reconnecting per transaction costs more than the push itself.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=5, max_overflow=10,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kept = max(10, min(threads + 5, 25))
    return create_engine(url, pool_pre_ping=True, pool_size=kept, max_overflow=10)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One row of ``ordersync dlq list``."""

    ref: str
    order_id: str
    order_reference: str | None
    kind: str  # order | event <type> | unmappable
    reason: str
    attempts: int
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class ClaimedOrder:
    """What a pusher needs of an order it holds the lease on (values as of the claim, i.e.
    ``pushed_hash`` already marked in doubt when a push is about to happen)."""

    id: int
    ref: str
    source_order_id: str
    order_reference: str | None
    payload: str | None
    content_hash: str | None
    pushed_hash: str | None
    wiredplus_id: str | None
    version: int
    attempts: int


@dataclass(frozen=True, slots=True)
class PushDone:
    """A delivered order for :meth:`Ledger.finish_batch`: its claimed ``version`` and, when its
    UpdateOrder was not recorded yet, what WiredPlus answered (else ``wiredplus_id`` None)."""

    ref: str
    version: int
    wiredplus_id: str | None = None
    pushed_hash: str | None = None


_ORDERS = cast(Table, OrderRow.__table__)
_O = _ORDERS.c
_E = cast(Table, EventRow.__table__).c
_LOG = cast(Table, LogRow.__table__)
# The hot push path's statements, built once (Core, bound per order).
_HELD = (
    (_O.store == bindparam("b_store"))
    & (_O.ref == bindparam("b_ref"))
    & (_O.lease_owner == bindparam("b_owner"))
)
_NO_PENDING_EVENT = ~exists(
    select(_E.id).where(
        _E.store == bindparam("b_store"),
        _E.order_ref == bindparam("b_ref"),
        _E.state == EventState.PENDING,
    )
)
_SYNCED_VALUES: dict[str, Any] = dict(
    state=OrderState.SYNCED, attempts=0, last_error=None, next_attempt_at=None,
    synced_at=bindparam("b_now"), lease_owner=None, lease_until=None,
)
_REQUEUE_VALUES: dict[str, Any] = dict(
    lease_owner=None, lease_until=None, next_attempt_at=bindparam("b_now"),
)
_PUSHED_VALUES: dict[str, Any] = dict(
    wiredplus_id=bindparam("b_wiredplus_id"), pushed_hash=bindparam("b_pushed_hash"),
)
_SYNCED_WHERE = (_HELD, _O.version == bindparam("b_version"), _NO_PENDING_EVENT)
_SYNCED = update(_ORDERS).where(*_SYNCED_WHERE).values(**_SYNCED_VALUES)
_SYNCED_PUSHED = update(_ORDERS).where(*_SYNCED_WHERE).values(**_SYNCED_VALUES,
                                                              **_PUSHED_VALUES)
_REQUEUE = update(_ORDERS).where(_HELD).values(**_REQUEUE_VALUES)
_REQUEUE_PUSHED = update(_ORDERS).where(_HELD).values(**_REQUEUE_VALUES, **_PUSHED_VALUES)
_RELEASE = update(_ORDERS).where(_HELD).values(lease_owner=None, lease_until=None)
_CLAIM_COLUMNS = (_O.id, _O.ref, _O.source_order_id, _O.order_reference, _O.payload,
                  _O.content_hash, _O.pushed_hash, _O.wiredplus_id, _O.version, _O.attempts)


@dataclass(frozen=True, slots=True)
class Staleness:
    """Ages of the last reads of the open orders polling follows (:meth:`Ledger.staleness`)."""

    open_orders: int
    p50_s: float
    p95_s: float
    max_s: float


@dataclass(frozen=True, slots=True)
class Counts:
    orders: dict[str, int]
    events: dict[str, int]


class Ledger:
    """Access to the ledger database."""

    def __init__(self, url: str, *, threads: int = 5) -> None:
        self.url = url
        self.engine = make_engine(url, threads=threads)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Orders added through this ledger (every store of the process): see note_growth.
        self.new_orders = 0
        self._analyze_at = ANALYZE_FIRST_AT
        self._growth_lock = threading.Lock()
        self._analyzing = threading.Lock()

    def create_schema(self) -> None:
        """Create or upgrade the schema with the Alembic migrations (never ``create_all``)."""
        from sync.ledger.schema import create_or_upgrade

        create_or_upgrade(self.url)

    def check_schema(self) -> None:
        """Raise ConfigError unless the database is at this version's revision."""
        from sync.ledger.schema import check_schema

        check_schema(self.url)

    def drop_schema(self) -> None:
        Base.metadata.drop_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def note_growth(self, new_orders: int) -> bool:
        """Count ``new_orders`` added through this ledger — by every store of the process,
        so a poller serving 50 stores refreshes the statistics as the *table* grows, not 50
        times as fast — and :meth:`refresh_statistics` each time as many again were added
        (1,000, 2,000, 4,000 …). True when it refreshed them; a failure only costs speed
        and is raised to the caller to log."""
        with self._growth_lock:
            self.new_orders += new_orders
            if self.new_orders < self._analyze_at:
                return False
            self._analyze_at = max(self._analyze_at * 2, self.new_orders)
        return self.refresh_statistics()

    def refresh_statistics(self) -> bool:
        """``ANALYZE`` the ledger's busy tables, so the query planner knows their size.

        A first import fills an empty ``ledger_orders`` with up to hundreds of thousands of
        rows in minutes. Until the table is analysed PostgreSQL plans for an empty table and
        may look orders up through the wrong index (measured: a 100,000-order import slowed
        to a crawl, each ``ref IN (…)`` lookup reading the whole store through an index on
        the re-read due time, since dropped). Autovacuum would analyse it eventually, when it is
        on; the poller calls this as the ledger grows (:class:`~sync.service.poller.Poller`).
        """
        tables = ", ".join(
            t.__tablename__ for t in (OrderRow, EventRow, LogRow)
        )
        # One refresh at a time: skipped (False) while another thread of this process, or
        # another process (a transaction-scoped advisory lock), is at it — their ANALYZEs
        # would queue on the tables' lock, each holding a store's pass for minutes.
        if not self._analyzing.acquire(blocking=False):
            return False
        try:
            with self.engine.begin() as conn:
                if self.engine.dialect.name != "postgresql":
                    conn.exec_driver_sql("ANALYZE")
                    return True
                if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"),
                                    {"key": ANALYZE_LOCK_KEY}).scalar():
                    return False
                conn.exec_driver_sql(f"ANALYZE {tables}")
                return True
        finally:
            self._analyzing.release()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        with self._sessions() as s, s.begin():
            yield s

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """One transaction on a Core connection (no ORM: for the hot push path)."""
        with self.engine.begin() as conn:
            yield conn

    # -- cursors ------------------------------------------------------------------------
    def get_cursor(self, store: str, name: str) -> str | None:
        with self.session() as s:
            row = s.get(CursorRow, (store, name))
            return row.value if row else None

    @staticmethod
    def set_cursor(s: Session, store: str, name: str, value: str, now: datetime) -> None:
        row = s.get(CursorRow, (store, name))
        if row is None:
            s.add(CursorRow(store=store, name=name, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now

    # -- reads --------------------------------------------------------------------------
    @staticmethod
    def read_marks(s: Session, store: str, refs: Sequence[str]) -> dict[str, ReadMark]:
        """What a re-read needs to know to leave an order as it is — its state and content
        hash — without loading the whole row (one indexed read)."""
        if not refs:
            return {}
        rows = s.execute(
            select(OrderRow.ref, OrderRow.state, OrderRow.content_hash)
            .where(OrderRow.store == store,
                   among(_dialect(s), OrderRow.ref, list(set(refs))))
        )
        return {r[0]: ReadMark(r[1], r[2]) for r in rows}

    @staticmethod
    def load_orders(s: Session, store: str, refs: Sequence[str]) -> dict[str, OrderRow]:
        if not refs:
            return {}
        rows = s.scalars(
            select(OrderRow).where(OrderRow.store == store,
                                   among(_dialect(s), OrderRow.ref, list(set(refs))))
        )
        return {r.ref: r for r in rows}

    @staticmethod
    def existing_event_refs(s: Session, store: str, refs: Sequence[str]) -> set[str]:
        if not refs:
            return set()
        return set(
            s.scalars(
                select(EventRow.event_reference).where(
                    EventRow.store == store,
                    among(_dialect(s), EventRow.event_reference, list(set(refs))),
                )
            )
        )

    def get_order(self, store: str, ref: str) -> OrderRow | None:
        with self.session() as s:
            return s.scalar(select(OrderRow).where(OrderRow.store == store, OrderRow.ref == ref))

    def find_order(self, store: str, key: str) -> OrderRow | None:
        """By api_reference_id, shop order id or shop order reference."""
        with self.session() as s:
            return s.scalars(
                select(OrderRow).where(
                    OrderRow.store == store,
                    or_(
                        OrderRow.ref == key,
                        OrderRow.source_order_id == key,
                        OrderRow.order_reference == key,
                    ),
                )
            ).first()

    def all_orders(self, store: str) -> list[OrderRow]:
        """Every order of ``store`` (for checks, audits and small tools: loads them all)."""
        with self.session() as s:
            return list(s.scalars(select(OrderRow).where(OrderRow.store == store)))

    def all_events(self, store: str) -> list[EventRow]:
        """Every event of ``store``, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(select(EventRow).where(EventRow.store == store).order_by(EventRow.id))
            )

    def ref_for(self, store: str, source_order_id: str) -> str | None:
        """The ledger key (api_reference_id) of a shop order id, if known."""
        with self.session() as s:
            return s.scalars(
                select(OrderRow.ref).where(
                    OrderRow.store == store, OrderRow.source_order_id == source_order_id
                )
            ).first()

    def events_for(self, store: str, ref: str) -> list[EventRow]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(EventRow)
                    .where(EventRow.store == store, EventRow.order_ref == ref)
                    .order_by(EventRow.id)
                )
            )

    def history(self, store: str, ref: str, limit: int = 200) -> list[LogRow]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(LogRow)
                    .where(LogRow.store == store, LogRow.ref == ref)
                    .order_by(LogRow.id)
                    .limit(limit)
                )
            )

    def due_refs(self, store: str, now: datetime, limit: int = 10_000) -> list[str]:
        """Orders that should be pushed now (pending, due, not leased by a live worker)."""
        return [ref for ref, _ in self.due_work(store, now, limit)]

    def due_work(
        self, store: str, now: datetime, limit: int = 10_000
    ) -> list[tuple[str, WorkStamp]]:
        """Like :meth:`due_refs`, each with a stamp ``(version, attempts, next attempt)``
        that changes whenever there is new work for the order: a change, a failed attempt,
        or a deferral (a throttled push, an open circuit) that rescheduled it without
        spending an attempt."""
        with self.session() as s:
            return [
                (r[0], (int(r[1] or 0), int(r[2] or 0), r[3].isoformat() if r[3] else ""))
                for r in s.execute(
                    select(OrderRow.ref, OrderRow.version, OrderRow.attempts,
                           OrderRow.next_attempt_at)
                    .where(
                        OrderRow.store == store,
                        OrderRow.state == OrderState.PENDING,
                        or_(OrderRow.next_attempt_at.is_(None), OrderRow.next_attempt_at <= now),
                        or_(OrderRow.lease_until.is_(None), OrderRow.lease_until < now),
                    )
                    .order_by(OrderRow.next_attempt_at.asc().nulls_first(), OrderRow.id)
                    .limit(limit)
                )
            ]

    def still_waiting(self, store: str, refs: Sequence[str], now: datetime) -> set[str]:
        """Those of ``refs`` still pending and not claimed by a worker (their queued push
        has not been taken yet)."""
        found: set[str] = set()
        with self.session() as s:
            for i in range(0, len(refs), 1000):
                found.update(s.scalars(
                    select(OrderRow.ref).where(
                        OrderRow.store == store,
                        among(_dialect(s), OrderRow.ref, refs[i : i + 1000]),
                        OrderRow.state == OrderState.PENDING,
                        or_(OrderRow.lease_until.is_(None), OrderRow.lease_until < now),
                    )
                ).all())
        return found

    def next_due_at(self, store: str) -> datetime | None:
        with self.session() as s:
            return s.scalar(
                select(func.min(OrderRow.next_attempt_at)).where(
                    OrderRow.store == store, OrderRow.state == OrderState.PENDING
                )
            )

    def _open_orders(self, store: str, created_after: datetime) -> Any:
        """``WHERE`` of the open orders polling re-reads (not terminal, not deleted, within
        the refresh horizon)."""
        return and_(
            OrderRow.store == store,
            OrderRow.terminal.is_(False),
            OrderRow.deleted.is_(False),
            or_(OrderRow.created_at.is_(None), OrderRow.created_at >= created_after),
        )

    def open_orders_by_status(self, store: str, *, created_after: datetime) -> dict[
        str | None, int
    ]:
        """How many open orders polling follows, by WiredPlus status (None: not mapped)."""
        with self.session() as s:
            rows = s.execute(
                select(OrderRow.order_status, func.count())
                .where(self._open_orders(store, created_after))
                .group_by(OrderRow.order_status)
            )
            return {r[0]: int(r[1]) for r in rows}

    def open_orders_due(
        self,
        store: str,
        *,
        created_after: datetime,
        cutoffs: Mapping[str, datetime],
        other_cutoff: datetime | None,
        limit: int,
        checked_before: datetime | None = None,
    ) -> list[OpenOrder]:
        """Open orders read last before their status's cutoff (statuses not in ``cutoffs``,
        and orders without a status, before ``other_cutoff``; none of those when it is
        None), up to ``limit`` per status, least recently read first within each status.
        The caller merges them (:func:`sync.domain.refresh_plan.most_overdue`). With
        ``checked_before``, orders read at or after that moment are left out whatever their
        cutoff. Each status is one indexed read (``ix_ledger_orders_open_status``); the
        others' read walks the open orders until it finds ``limit`` of them, so a caller
        that knows there are none passes None."""
        from sync.domain.refresh_plan import OpenOrder

        cols = (OrderRow.ref, OrderRow.source_order_id, OrderRow.order_status,
                OrderRow.last_checked_at, OrderRow.created_at)
        base = self._open_orders(store, created_after)
        if checked_before is not None:
            base = and_(base, OrderRow.last_checked_at < checked_before)
        groups: list[Any] = [
            and_(OrderRow.order_status == status, OrderRow.last_checked_at < cut)
            for status, cut in cutoffs.items()
        ]
        if other_cutoff is not None:
            others = or_(OrderRow.order_status.is_(None),
                         OrderRow.order_status.not_in(list(cutoffs)) if cutoffs else true())
            groups.append(and_(others, OrderRow.last_checked_at < other_cutoff))
        out: list[OpenOrder] = []
        with self.session() as s:
            for cond in groups:
                rows = s.execute(
                    select(*cols).where(base, cond)
                    .order_by(OrderRow.last_checked_at, OrderRow.id).limit(limit)
                )
                out.extend(OpenOrder(r[0], r[1], r[2], r[3], r[4]) for r in rows)
        return out

    def created_from(
        self, store: str, *, start: datetime, limit: int
    ) -> list[tuple[OpenOrder, bool]]:
        """The ledger's orders created at or after ``start`` (deleted ones aside), oldest
        first, each with whether polling follows it (not terminal): what re-listing that
        created range would return."""
        from sync.domain.refresh_plan import OpenOrder

        with self.session() as s:
            rows = s.execute(
                select(OrderRow.ref, OrderRow.source_order_id, OrderRow.order_status,
                       OrderRow.last_checked_at, OrderRow.created_at, OrderRow.terminal)
                .where(OrderRow.store == store, OrderRow.deleted.is_(False),
                       OrderRow.created_at >= start)
                .order_by(OrderRow.created_at, OrderRow.id).limit(limit)
            )
            return [(OpenOrder(r[0], r[1], r[2], r[3], r[4]), not r[5]) for r in rows]

    def oldest_open_read(self, store: str, *, created_after: datetime) -> datetime | None:
        """When the least recently read open order polling follows was read (None: there is
        none). One indexed read (``ix_ledger_orders_refresh``)."""
        with self.session() as s:
            return self._read_at_rank(s, self._open_orders(store, created_after), 0)

    @staticmethod
    def _read_at_rank(s: Session, cond: Any, rank: int) -> datetime | None:
        """When the ``rank``-th least recently read order matching ``cond`` was read (rank 0:
        the stalest); None past the last one."""
        at: datetime | None = s.scalar(select(OrderRow.last_checked_at).where(cond)
                                       .order_by(OrderRow.last_checked_at)
                                       .offset(rank).limit(1))
        return at

    def staleness(self, store: str, *, created_after: datetime, now: datetime) -> Staleness:
        """How long ago the open orders polling follows were last read: count, p50, p95 and
        max in seconds (nearest rank; zeros when there are none). Three indexed reads."""
        cond = self._open_orders(store, created_after)
        with self.session() as s:
            n = int(s.scalar(select(func.count()).select_from(OrderRow).where(cond)) or 0)
            if n == 0:
                return Staleness(0, 0.0, 0.0, 0.0)

            def age_at_rank(rank: int) -> float:
                at = self._read_at_rank(s, cond, rank)
                return max(0.0, (now - at).total_seconds()) if at is not None else 0.0

            return Staleness(
                open_orders=n,
                p50_s=age_at_rank(n - math.ceil(0.50 * n)),
                p95_s=age_at_rank(n - math.ceil(0.95 * n)),
                max_s=age_at_rank(0),
            )

    def counts(self, store: str | None = None) -> Counts:
        with self.session() as s:
            oq = select(OrderRow.state, func.count()).group_by(OrderRow.state)
            eq = select(EventRow.state, func.count()).group_by(EventRow.state)
            if store:
                oq = oq.where(OrderRow.store == store)
                eq = eq.where(EventRow.store == store)
            orders = {st: 0 for st in OrderState.ALL}
            orders |= {str(r[0]): int(r[1]) for r in s.execute(oq).all()}
            events = {st: 0 for st in EventState.ALL}
            events |= {str(r[0]): int(r[1]) for r in s.execute(eq).all()}
            return Counts(orders=orders, events=events)

    def problems(self, store: str, limit: int = 10) -> list[OrderRow]:
        """Most recent orders that are dead, skipped or retrying with an error."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(OrderRow)
                    .where(
                        OrderRow.store == store,
                        OrderRow.last_error.is_not(None),
                        OrderRow.state != OrderState.SYNCED,
                    )
                    .order_by(OrderRow.changed_at.desc())
                    .limit(limit)
                )
            )

    def mark_deleted(self, store: str, ref: str, now: datetime, *, close: bool) -> bool:
        """The shop deleted this order: mark it (never refreshed again) and, with ``close``,
        queue an UpdateOrder with ``order_status`` = ``closed`` — no event is ever sent for a
        deletion. Returns False if it was already marked."""
        from sync.domain.mapping import content_hash

        with self.session() as s:
            row = s.scalars(
                select(OrderRow).where(OrderRow.store == store, OrderRow.ref == ref)
            ).first()
            if row is None or row.deleted:
                return False
            row.deleted = True
            row.terminal = True
            row.last_checked_at = now
            if close and row.payload:
                body = json.loads(row.payload)
                body["order_status"] = "closed"
                body["order_update_date"] = now.strftime("%Y-%m-%d %H:%M:%S")
                row.payload = json.dumps(body)
                row.content_hash = content_hash(body)
                row.order_status = "closed"
                row.state = OrderState.PENDING
                row.attempts = 0
                row.next_attempt_at = None
                row.version = row.version + 1
                row.changed_at = now
            self.log(s, store, ref, now, "deleted",
                     "closed in WiredPlus" if close else "left as is in WiredPlus")
            return True

    # -- dead letters -------------------------------------------------------------------
    def dead_letters(self, store: str, limit: int = 500) -> list[DeadLetter]:
        """Everything that needs a human: dead orders, dead events and unmappable orders,
        most recent first."""
        out: list[DeadLetter] = []
        with self.session() as s:
            rows = s.scalars(
                select(OrderRow)
                .where(
                    OrderRow.store == store,
                    OrderRow.state.in_([OrderState.DEAD, OrderState.SKIPPED]),
                )
                .order_by(OrderRow.changed_at.desc())
                .limit(limit)
            )
            for r in rows:
                out.append(DeadLetter(
                    ref=r.ref, order_id=r.source_order_id, order_reference=r.order_reference,
                    kind="order" if r.state == OrderState.DEAD else "unmappable",
                    reason=r.last_error or "", attempts=r.attempts, last_seen=r.last_checked_at,
                ))
            events = s.execute(
                select(EventRow, OrderRow.source_order_id, OrderRow.order_reference)
                .join(OrderRow, and_(OrderRow.store == EventRow.store,
                                     OrderRow.ref == EventRow.order_ref))
                .where(EventRow.store == store, EventRow.state == EventState.DEAD)
                .order_by(EventRow.id.desc())
                .limit(limit)
            )
            for ev, oid, oref in events:
                out.append(DeadLetter(
                    ref=ev.order_ref, order_id=oid, order_reference=oref,
                    kind=f"event {ev.event_type}", reason=ev.last_error or "",
                    attempts=ev.attempts, last_seen=ev.sent_at or ev.created_at,
                ))
        out.sort(key=lambda d: d.last_seen, reverse=True)
        return out[:limit]

    def replay(self, store: str, keys: Sequence[str] | None, now: datetime) -> list[str]:
        """Put dead orders and dead events back on the normal path (pending, due now, attempts
        reset); unmappable orders are queued for a re-read from the shop. ``keys`` are order
        ids, references or api_reference_ids; ``None`` replays everything. Returns the refs
        that were revived."""
        revived: list[str] = []
        with self.session() as s:
            q = select(OrderRow).where(OrderRow.store == store)
            if keys is not None:
                ks = [str(k) for k in keys]
                q = q.where(or_(OrderRow.ref.in_(ks), OrderRow.source_order_id.in_(ks),
                                OrderRow.order_reference.in_(ks)))
            dead_event_refs = set(s.scalars(
                select(EventRow.order_ref).where(
                    EventRow.store == store, EventRow.state == EventState.DEAD
                )
            ))
            for row in s.scalars(q):
                if row.state == OrderState.SKIPPED:
                    row.last_checked_at = datetime(1970, 1, 1, tzinfo=now.tzinfo)
                    self.log(s, store, row.ref, now, "replay", "re-read from the shop")
                    revived.append(row.ref)
                    continue
                if row.state != OrderState.DEAD and row.ref not in dead_event_refs:
                    continue
                s.execute(
                    update(EventRow)
                    .where(EventRow.store == store, EventRow.order_ref == row.ref,
                           EventRow.state == EventState.DEAD)
                    .values(state=EventState.PENDING, attempts=0, last_error=None)
                    .execution_options(synchronize_session=False)
                )
                row.state = OrderState.PENDING
                row.attempts = 0
                row.last_error = None
                row.next_attempt_at = None
                row.lease_owner = None
                row.lease_until = None
                row.version = row.version + 1
                self.log(s, store, row.ref, now, "replay", "back on the normal path")
                revived.append(row.ref)
        return revived

    # -- push protocol ------------------------------------------------------------------
    def claim(
        self, store: str, ref: str, owner: str, now: datetime, lease: timedelta
    ) -> ClaimedOrder | None:
        """Take the push lease on a due, pending order; None if not due or someone has it
        (:meth:`claim_many` for one order)."""
        claimed, _ = self.claim_many(store, [ref], owner, now, lease)
        return claimed[0] if claimed else None

    def claim_many(
        self, store: str, refs: Sequence[str], owner: str, now: datetime, lease: timedelta
    ) -> tuple[list[ClaimedOrder], set[str]]:
        """Take the push lease on several due, pending orders in one statement (``UPDATE …
        RETURNING``): the orders whose lease was taken (ascending id) and, of those, the refs
        with pending events. Orders not due, leased by someone else or — on PostgreSQL —
        locked by a concurrent transaction are left out (the caller reports them busy;
        whatever is still due is dispatched again by the next pass).

        Taking the lease also marks an order's pushed payload *in doubt* when a push is about
        to happen (``pushed_hash`` differs from ``content_hash``): from this moment until the
        holder records success, WiredPlus may hold the new payload or the old one (a lost
        response, a killed worker). Keeping the old hash would let a later change *back* to the
        old payload look already delivered. In the same statement, so a crash needs no cleanup.
        """
        unique = list(dict.fromkeys(refs))
        if not unique:
            return [], set()
        due = and_(
            _O.store == store,
            among(self.engine.dialect.name, _O.ref, unique),
            _O.state == OrderState.PENDING,
            or_(_O.next_attempt_at.is_(None), _O.next_attempt_at <= now),
            or_(_O.lease_until.is_(None), _O.lease_until < now),
        )
        stmt = update(_ORDERS)
        if self.engine.dialect.name == "postgresql":
            ids = select(_O.id).where(due).order_by(_O.id).with_for_update(skip_locked=True)
            stmt = stmt.where(_O.id.in_(ids.scalar_subquery()), due)
        else:
            stmt = stmt.where(due)
        stmt = stmt.values(
            lease_owner=owner,
            lease_until=now + lease,
            pushed_hash=case((_O.pushed_hash == _O.content_hash, _O.pushed_hash), else_=None),
        ).returning(*_CLAIM_COLUMNS)
        with self.connection() as conn:
            rows = sorted((ClaimedOrder(*r) for r in conn.execute(stmt)), key=lambda c: c.id)
            return rows, self._refs_with_events(conn, store, [c.ref for c in rows])

    @staticmethod
    def _refs_with_events(conn: Connection, store: str, refs: Sequence[str]) -> set[str]:
        if not refs:
            return set()
        return set(conn.scalars(
            select(_E.order_ref).distinct().where(
                _E.store == store, among(conn.dialect.name, _E.order_ref, list(refs)),
                _E.state == EventState.PENDING
            )
        ))

    @staticmethod
    def pending_events(s: Session, store: str, ref: str) -> list[EventRow]:
        return list(
            s.scalars(
                select(EventRow)
                .where(
                    EventRow.store == store,
                    EventRow.order_ref == ref,
                    EventRow.state == EventState.PENDING,
                )
                .order_by(EventRow.id)
            )
        )

    def release(self, store: str, owner: str, refs: Sequence[str]) -> None:
        """Give back ``owner``'s leases on ``refs`` untouched: still due, pushed later."""
        if refs:
            with self.connection() as conn:
                conn.execute(_RELEASE, [{"b_store": store, "b_ref": r, "b_owner": owner}
                                        for r in refs])

    def finish_batch(
        self, store: str, owner: str, now: datetime, done: Sequence[PushDone]
    ) -> set[str]:
        """One transaction for a batch's delivered orders, in the given (ascending id) order:
        record each UpdateOrder still unrecorded (``wiredplus_id``/``pushed_hash`` and a
        ``pushed`` history row) and mark the order synced — only if ``owner`` still holds it,
        its ``version`` is the claimed one and no event is pending. Otherwise the lease is
        released and the order left due now. Returns the refs left due (``requeued``)."""
        requeued: set[str] = set()
        history: list[dict[str, Any]] = []
        with self.connection() as conn:
            for d in done:
                params: dict[str, Any] = {"b_store": store, "b_ref": d.ref, "b_owner": owner,
                                          "b_version": d.version, "b_now": now}
                synced, requeue = _SYNCED, _REQUEUE
                if d.wiredplus_id is not None:
                    params.update(b_wiredplus_id=d.wiredplus_id, b_pushed_hash=d.pushed_hash)
                    synced, requeue = _SYNCED_PUSHED, _REQUEUE_PUSHED
                    history.append({"store": store, "ref": d.ref, "at": now, "action": "pushed",
                                    "detail": json.dumps({"wiredplus_id": d.wiredplus_id})})
                if conn.execute(synced, params).rowcount != 1:
                    conn.execute(requeue, params)
                    requeued.add(d.ref)
            if history:
                conn.execute(insert(_LOG), history)
        return requeued

    # -- lifecycle writes (sync.domain.lifecycle decides, the ledger writes) --------------
    def apply_push(
        self, store: str, ref: str, owner: str, t: OrderTransition, now: datetime
    ) -> None:
        """Write a push's transition (not a delivery: :meth:`finish_batch`) to the order
        ``owner`` holds, release its lease, and add the history line."""
        with self.session() as s:
            s.execute(
                update(OrderRow)
                .where(self.owner_filter(store, ref, owner))
                .values(state=t.state, attempts=t.attempts, next_attempt_at=t.next_attempt_at,
                        last_error=t.last_error[:2000] if t.last_error else None,
                        lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            self.log(s, store, ref, now, t.action, t.detail[:500])

    def record_pushed(
        self, s: Session, store: str, ref: str, owner: str, wiredplus_id: str,
        pushed_hash: str | None, now: datetime,
    ) -> None:
        """An UpdateOrder's result, recorded before the order's events go out (in ``s``)."""
        s.execute(
            update(OrderRow)
            .where(self.owner_filter(store, ref, owner))
            .values(wiredplus_id=wiredplus_id, pushed_hash=pushed_hash)
            .execution_options(synchronize_session=False)
        )
        self.log(s, store, ref, now, "pushed", {"wiredplus_id": wiredplus_id})

    def record_event(
        self, store: str, ref: str, event: EventRow, t: EventTransition, now: datetime,
        wiredplus_id: str | None = None,
    ) -> None:
        """Write an event's transition (:func:`sync.domain.lifecycle.after_event`): only a
        still-pending row changes, so an event is never marked sent twice."""
        values: dict[str, Any] = {"state": t.state, "attempts": t.attempts,
                                  "last_error": t.last_error[:2000] if t.last_error else None}
        if t.state == EventState.SENT:
            values.update(wiredplus_id=wiredplus_id, sent_at=now)
        with self.session() as s:
            s.execute(
                update(EventRow)
                .where(EventRow.id == event.id, EventRow.state == EventState.PENDING)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            action = "event.sent" if t.state == EventState.SENT else "event.dead"
            detail = event.event_type if t.last_error is None else (
                f"{event.event_type}: {t.last_error}")
            self.log(s, store, ref, now, action, detail)

    def mark_checked(self, store: str, refs: Sequence[str], now: datetime) -> None:
        """The shop was asked about these orders now (when they are read again follows from
        their status and this moment: :mod:`sync.domain.refresh_plan`)."""
        with self.session() as s:
            self.checked(s, store, refs, now)

    @staticmethod
    def checked(s: Session, store: str, refs: Sequence[str], now: datetime) -> None:
        """:meth:`mark_checked` inside the caller's transaction (one statement; rows the
        session has loaded are not refreshed: pass refs it has not loaded)."""
        if refs:
            s.execute(
                update(OrderRow)
                .where(OrderRow.store == store, among(_dialect(s), OrderRow.ref, list(refs)))
                .values(last_checked_at=now)
                .execution_options(synchronize_session=False)
            )

    @staticmethod
    def add_orders(s: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Insert orders the ledger does not hold yet (a store's first sight of them), each
        a dict of :class:`OrderRow` columns, in one executemany inside the caller's
        transaction: no row object, no ``RETURNING`` (the ORM's one multi-row statement per
        page had over 2,000 parameters, which psycopg converts in Python every time). A
        second copy of a ``(store, ref)`` raises ``IntegrityError`` like an added row."""
        if rows:
            s.execute(insert(_ORDERS), list(rows))

    @staticmethod
    def add_log(s: Session, entries: Sequence[dict[str, Any]]) -> None:
        """History lines (``store``, ``ref``, ``at``, ``action``, ``detail`` as text) in one
        executemany inside the caller's transaction; see :meth:`log` for one."""
        if entries:
            s.execute(insert(_LOG), list(entries))

    @staticmethod
    def log_entry(store: str, ref: str, at: datetime, action: str,
                  detail: Any = None) -> dict[str, Any]:
        """One history line for :meth:`add_log` (``detail`` other than text as JSON)."""
        text = detail if isinstance(detail, str) or detail is None else json.dumps(detail)
        return {"store": store, "ref": ref, "at": at, "action": action, "detail": text}

    @staticmethod
    def log(
        s: Session, store: str, ref: str, at: datetime, action: str, detail: Any = None
    ) -> None:
        s.add(LogRow(**Ledger.log_entry(store, ref, at, action, detail)))

    @staticmethod
    def owner_filter(store: str, ref: str, owner: str) -> Any:
        return and_(OrderRow.store == store, OrderRow.ref == ref, OrderRow.lease_owner == owner)
