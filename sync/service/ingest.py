"""Ingest: record what a source returned in the ledger, in one transaction per page.

For each raw order: parse (pure) → resolve status → map to an UpdateOrder body → decide events
against what the ledger knew → write the snapshot, the events and a history line. An order whose
content, status and refunds are unchanged only gets its ``last_checked_at`` touched: it costs
no WiredPlus call.

One order never blocks the others: any failure while parsing, mapping or hashing one record
(a :class:`SkippableError` with its reason, or any other exception, named by its type)
records that order as ``skipped`` — a dead letter with the reason and the raw id — and the
rest of the page goes on. If storing the page fails on the data (not on the connection), the
page is stored again order by order, and an order that still cannot be stored is
dead-lettered the same way; if even its dead letter cannot be written (or the database itself
is the problem), the page fails and is read again — an order is never dropped without a
trace.

A record whose id is not valid for its source (ShopWired: a positive integer; Elastic Path:
a UUID-like token) is dead-lettered under a display id: the
id itself when it is short, safe text, else ``sha256:<24 hex>`` of it — never a silently
truncated id that could collide with another order. An order listed twice in one page is
logged once (``order.duplicate_in_page``); its last copy is used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from sync import jsoncodec
from sync.domain.events import KnownState, decide_events, known_state
from sync.domain.mapping import (
    MappingContext,
    api_reference_id,
    content_hash,
    map_order,
    order_update_date,
)
from sync.domain.models import SourceOrder
from sync.domain.status_map import Resolution, StatusMap
from sync.domain.text import clean_text
from sync.errors import SkippableError
from sync.ledger.models import EventRow, EventState, OrderRow, OrderState
from sync.ledger.store import Ledger
from sync.logs import Log
from sync.sources.base import Source

MAX_DISPLAY_ID = 64
"""Longest raw id stored as it is in a dead letter (the ledger's ``source_order_id``)."""

#: Errors that mean "this data cannot be stored", as opposed to "the database is away"
#: (``OperationalError``, which still fails the page): only these make a page be stored
#: again order by order.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, ArithmeticError, UnicodeError, LookupError, DataError,
    IntegrityError,
)


def _is_data_error(exc: BaseException) -> bool:
    if isinstance(exc, _DATA_ERRORS):
        return True
    # sqlalchemy wraps a bind-time encoding error (e.g. a NUL for PostgreSQL) in a
    # StatementError whose ``orig`` is the real cause.
    return isinstance(exc, StatementError) and isinstance(exc.orig, _DATA_ERRORS)


def display_id(raw: Any) -> str:
    """The id a dead letter is filed under for a record whose id is missing or invalid:
    the record's ``id`` (or ``data.id``) as safe text when it is 1-64 characters, else
    ``sha256:`` + 24 hex digits of it (of the whole record when it has no id). Never
    truncates, so two different long ids never share a dead letter."""
    value: Any = None
    if isinstance(raw, Mapping):
        value = raw.get("id")
        data = raw.get("data")
        if value is None and isinstance(data, Mapping):
            value = data.get("id")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = clean_text(str(value)).strip()
        if 0 < len(text) <= MAX_DISPLAY_ID and not text.startswith("sha256:"):
            return text
        basis = clean_text(str(value))
    else:
        try:
            basis = json.dumps(raw, sort_keys=True, default=repr, ensure_ascii=True)
        except (TypeError, ValueError, RecursionError):
            basis = repr(type(raw))
    return "sha256:" + hashlib.sha256(basis.encode("utf-8", "replace")).hexdigest()[:24]


def _failure_reason(exc: BaseException) -> str:
    """A dead-letter reason for an unexpected failure: its type, never its text (which could
    carry customer data or arbitrary bytes)."""
    return f"unreadable order ({type(exc).__name__})"


@dataclass
class IngestResult:
    """What one ingest call did; see :meth:`add` for running totals."""

    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    out_of_scope: int = 0
    events: int = 0
    to_push: list[str] = field(default_factory=list)
    created: list[datetime] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)

    def add(self, other: IngestResult) -> None:
        """Fold one page's result into a running total in O(1) memory: the counts, and of the
        cursor dates only the newest (all the watermark needs). ``to_push`` and ``seen_ids``
        are per page (the caller acts on them page by page) and are not accumulated, so a
        100,000-order first pass holds no per-order state."""
        self.seen += other.seen
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.skipped += other.skipped
        self.out_of_scope += other.out_of_scope
        self.events += other.events
        newest = max(self.created + other.created, default=None)
        self.created = [newest] if newest is not None else []


@dataclass(frozen=True)
class _Prepared:
    ref: str
    order_id: str
    order: SourceOrder | None
    resolution: Resolution | None
    body: dict[str, Any] | None
    digest: str | None
    error: str | None
    raw: Any = None  # kept when ``seen`` is set (to prepare it in full if needed)
    seen: _Seen | None = None  # byte-identical to the record last stored: not parsed again
    fingerprint: bytes | None = None


@dataclass(frozen=True)
class _Seen:
    """What the last successful store of an order recorded: the raw record's fingerprint,
    the body's content hash and the date the watermark follows."""

    fingerprint: bytes
    digest: str
    cursor_date: datetime


SEEN_LIMIT = 500_000
"""Orders per store whose last stored record is remembered (about 100 bytes each)."""


def fingerprint(raw: Any) -> bytes | None:
    """A digest of a raw record's exact content (None if it cannot be serialised)."""
    try:
        data = jsoncodec.canonical_bytes(raw)
    except (TypeError, ValueError):
        return None
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class Ingestor:
    """Turns raw source records into ledger rows for one store."""

    ledger: Ledger
    source: Source
    store: str
    status_map: StatusMap
    mapping: MappingContext
    first_sight_window: timedelta
    log: Log
    on_unknown_status: Callable[[str, str], None] | None = None
    # Re-reads of open orders are mostly unchanged: a record byte-identical to the one last
    # stored (the mapping is a pure function of the record and this store's fixed settings)
    # is not parsed, mapped and hashed again — the ledger row is only marked as read, as the
    # long way would do. The row must still hold that record's hash; else the long way.
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def _cursor_date(self, order: SourceOrder) -> datetime:
        """The date the source's windows are on: created (ShopWired) or updated (Elastic
        Path), so the watermark follows what the scan filters by."""
        if self.source.window_field == "updated" and order.updated_at:
            return order.updated_at
        return order.created_at

    def _prepare(self, raw: Any) -> _Prepared:
        """Parse, resolve, map and hash one record. Never raises: a failure comes back as a
        :class:`_Prepared` with ``error`` set (a dead letter to record)."""
        try:
            order_id = self.source.raw_id(raw)
        except Exception:  # a hostile record must not escape as an exception
            order_id = None
        if order_id is None:
            order_id = display_id(raw)
            try:
                self.source.parse(raw)  # for the parser's reason (the id's problem)
                reason = "id: missing or not a valid order id"
            except SkippableError as exc:
                reason = exc.message
            except Exception as exc:
                reason = _failure_reason(exc)
            ref = api_reference_id(order_id, self.mapping)
            return _Prepared(ref, order_id, None, None, None, None, reason)
        ref = api_reference_id(order_id, self.mapping)
        fp = fingerprint(raw)
        seen = self._seen.get(ref)
        if fp is not None and seen is not None and seen.fingerprint == fp:
            return _Prepared(ref, order_id, None, None, None, seen.digest, None, raw=raw,
                             seen=seen, fingerprint=fp)
        return self._prepare_in_full(raw, ref, order_id, fp)

    def _prepare_in_full(self, raw: Any, ref: str, order_id: str,
                         fp: bytes | None) -> _Prepared:
        try:
            order = self.source.parse(raw)
            resolution = self.status_map.resolve(order.status)
            if not resolution.matched and self.on_unknown_status:
                self.on_unknown_status(order.status.id, order.status.name)
            body = map_order(order, resolution, self.mapping)
            digest = content_hash(body)
        except SkippableError as exc:
            return _Prepared(ref, order_id, None, None, None, None, exc.message)
        except Exception as exc:  # any bug or hostile shape: this order only
            self.log.warning("order.unreadable", store=self.store, ref=ref,
                             error=type(exc).__name__)
            return _Prepared(ref, order_id, None, None, None, None, _failure_reason(exc))
        return _Prepared(ref, order_id, order, resolution, body, digest, None, fingerprint=fp)

    def ingest(
        self,
        raws: Sequence[Any],
        *,
        now: datetime,
        allow_events: bool,
        not_before: datetime | None = None,
    ) -> IngestResult:
        """Record one page. Commits once; returns what needs pushing.

        An order the ledger does not know yet and created before ``not_before`` is out of
        scope: it is not recorded and never reaches WiredPlus (counted in ``out_of_scope``,
        still listed in ``seen_ids`` and ``created`` — it exists, and the watermark may pass
        it). Orders the ledger already knows are always followed.

        If the page cannot be stored because of its data, it is stored again order by order
        and each order that still fails is dead-lettered (see the module docstring); a
        database that is unreachable still raises (the pass fails and is retried).
        """
        prepared: dict[str, _Prepared] = {}
        duplicates: set[str] = set()
        for raw in raws:
            p = self._prepare(raw)
            if p.ref in prepared and p.ref not in duplicates:
                duplicates.add(p.ref)
                self.log.warning("order.duplicate_in_page", store=self.store, ref=p.ref,
                                 order_id=p.order_id)
            prepared[p.ref] = p  # a later duplicate in the same page wins
        try:
            return self._store(prepared, now=now, allow_events=allow_events,
                               not_before=not_before)
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            self.log.warning("page.store_failed", store=self.store, orders=len(prepared),
                             error=type(exc).__name__)
        result = IngestResult()
        for ref, p in prepared.items():
            try:
                part = self._store({ref: p}, now=now, allow_events=allow_events,
                                   not_before=not_before)
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                failed = _Prepared(ref, p.order_id, None, None, None, None,
                                   f"could not be stored ({type(exc).__name__})")
                # If even the dead letter cannot be written, the page fails (and is read
                # again): an order is never dropped without a trace in the ledger.
                part = self._store({ref: failed}, now=now, allow_events=allow_events,
                                   not_before=not_before)
            result.add(part)  # counts and the newest cursor date
            result.to_push.extend(part.to_push)
            result.seen_ids |= part.seen_ids
        return result

    def _mark_unchanged(self, s: Session, prepared: dict[str, _Prepared], now: datetime,
                        result: IngestResult) -> dict[str, _Prepared]:
        """The re-read fast path: records byte-identical to the one last stored whose row
        still holds that record's content hash (and is not a skipped one) are only marked as
        read — a light read of two columns and one update, no row loaded, no mapping.
        Returns the records left for the long way (the others, and any whose row differs: a
        change made by another process, a replay)."""
        quick = {ref: p for ref, p in prepared.items() if p.seen is not None}
        if not quick:
            return prepared
        marks = self.ledger.read_marks(s, self.store, list(quick))
        done: list[str] = []
        for ref, p in quick.items():
            mark = marks.get(ref)
            assert p.seen is not None
            if (mark is None or mark.state == OrderState.SKIPPED
                    or mark.content_hash != p.seen.digest):
                continue
            result.seen_ids.add(p.order_id)
            result.created.append(p.seen.cursor_date)
            result.unchanged += 1
            done.append(ref)
        self.ledger.checked(s, self.store, done, now)
        finished = set(done)
        return {ref: p for ref, p in prepared.items() if ref not in finished}

    def _store(
        self,
        prepared: dict[str, _Prepared],
        *,
        now: datetime,
        allow_events: bool,
        not_before: datetime | None,
    ) -> IngestResult:
        """Write prepared orders in one transaction (see :meth:`ingest`)."""
        result = IngestResult()
        result.seen = len(prepared)
        stored: dict[str, _Seen] = {}
        # Orders seen for the first time are inserted together at the end (one executemany,
        # no row objects); so are the page's history lines.
        new_rows: dict[str, dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        with self.ledger.session() as s:
            rest = self._mark_unchanged(s, prepared, now, result)
            rows = self.ledger.load_orders(s, self.store, list(rest))
            candidate_events: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
            for ref, p in rest.items():
                result.seen_ids.add(p.order_id)
                row = rows.get(ref)
                if p.seen is not None:  # its row differs (see _mark_unchanged)
                    p = self._prepare_in_full(p.raw, ref, p.order_id, p.fingerprint)
                if p.error is not None:
                    self._record_skip(s, row, p, now, result)
                    continue
                assert p.order and p.resolution and p.body is not None and p.digest
                if p.fingerprint is not None:
                    stored[ref] = _Seen(p.fingerprint, p.digest, self._cursor_date(p.order))
                result.created.append(self._cursor_date(p.order))
                if row is None and not_before is not None and p.order.created_at < not_before:
                    result.out_of_scope += 1
                    continue
                previous = _known(row)
                new_state = known_state(p.order, p.resolution, previous)
                if (
                    row is not None
                    and row.state != OrderState.SKIPPED
                    and row.content_hash == p.digest
                    and previous == new_state
                ):
                    row.last_checked_at = now
                    result.unchanged += 1
                    continue
                decisions = decide_events(
                    previous,
                    p.order,
                    p.resolution,
                    self.mapping,
                    now=now,
                    first_sight_window=self.first_sight_window,
                    allow_events=allow_events,
                )
                candidate_events[ref] = [
                    (d.event_reference, d.event_type, d.payload) for d in decisions
                ]
                body = dict(p.body)
                body["order_update_date"] = order_update_date(p.order, None if row is None else now)
                facts: dict[str, Any] = {
                    "order_reference": p.order.reference,
                    "created_at": p.order.created_at,
                    "last_checked_at": now,
                    "changed_at": now,
                    "status_id": p.order.status.id,
                    "status_name": p.order.status.name[:100],
                    "order_status": p.resolution.order_status,
                    "terminal": p.resolution.terminal,
                    "refund_keys": json.dumps(sorted(new_state.refund_keys)),
                }
                if row is None:
                    # Never pushed: due now (its events, if any, follow its UpdateOrder).
                    new_rows[ref] = {
                        "store": self.store, "ref": ref, "source_order_id": p.order_id,
                        "first_seen_at": now, "synced_at": None, "version": 1,
                        "attempts": 0, "deleted": False, "state": OrderState.PENDING,
                        "next_attempt_at": now, "last_error": None, "pushed_hash": None,
                        "wiredplus_id": None, "lease_owner": None, "lease_until": None,
                        "payload": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                        "content_hash": p.digest, **facts,
                    }
                    result.new += 1
                    action = "seen"
                else:
                    result.changed += 1
                    row.version = (row.version or 0) + 1
                    action = "changed"
                    for column, value in facts.items():
                        setattr(row, column, value)
                    if row.content_hash != p.digest or row.payload is None:
                        row.payload = json.dumps(body, separators=(",", ":"),
                                                 ensure_ascii=False)
                        row.content_hash = p.digest
                history.append(self.ledger.log_entry(
                    self.store, ref, now, action,
                    {"status": p.order.status.name, "order_status": p.resolution.order_status},
                ))
            # Events: insert those not already recorded (a reference is sent at most once).
            all_refs = [e[0] for evs in candidate_events.values() for e in evs]
            existing = self.ledger.existing_event_refs(s, self.store, all_refs)
            for ref, evs in candidate_events.items():
                fresh = [e for e in evs if e[0] not in existing]
                for event_ref, event_type, payload in fresh:
                    existing.add(event_ref)
                    s.add(
                        EventRow(
                            store=self.store,
                            order_ref=ref,
                            event_reference=event_ref,
                            event_type=event_type,
                            payload=json.dumps(payload, separators=(",", ":")),
                            state=EventState.PENDING,
                            attempts=0,
                            created_at=now,
                        )
                    )
                    history.append(self.ledger.log_entry(self.store, ref, now, "event.decided",
                                                         event_type))
                result.events += len(fresh)
                if ref in new_rows:
                    result.to_push.append(ref)  # inserted pending, due now
                    continue
                row = rows[ref]
                needs_push = row.pushed_hash != row.content_hash or bool(fresh)
                if needs_push or row.state in (OrderState.PENDING, OrderState.SKIPPED,
                                               OrderState.DEAD):
                    row.state = OrderState.PENDING
                    row.attempts = 0
                    row.next_attempt_at = now
                    row.last_error = None
                    result.to_push.append(ref)
            self.ledger.add_orders(s, list(new_rows.values()))
            self.ledger.add_log(s, history)
        if len(self._seen) + len(stored) > SEEN_LIMIT:
            self._seen.clear()
        self._seen.update(stored)  # only once committed
        return result

    def _record_skip(
        self, s: Session, row: OrderRow | None, p: _Prepared, now: datetime,
        result: IngestResult,
    ) -> None:
        result.skipped += 1
        reason = p.error or "unmappable"
        if row is not None and row.state == OrderState.SKIPPED and row.last_error == reason:
            row.last_checked_at = now
            return
        self.log.warning("order.skipped", store=self.store, ref=p.ref, reason=reason)
        if row is None:
            row = OrderRow(
                store=self.store,
                ref=p.ref,
                source_order_id=p.order_id,
                first_seen_at=now,
                last_checked_at=now,
                changed_at=now,
                version=1,
                attempts=0,
                terminal=False,
                deleted=False,
                state=OrderState.SKIPPED,
            )
            s.add(row)
        row.state = OrderState.SKIPPED
        row.last_error = reason
        row.last_checked_at = now
        row.changed_at = now
        row.content_hash = None  # so a corrected order is treated as changed
        self.ledger.log(s, self.store, p.ref, now, "skipped", reason)


def _known(row: OrderRow | None) -> KnownState | None:
    if row is None or row.status_id is None:
        return None
    try:
        keys = frozenset(str(k) for k in json.loads(row.refund_keys or "[]"))
    except (ValueError, TypeError):
        keys = frozenset()
    return KnownState(status_id=row.status_id, refund_keys=keys)
