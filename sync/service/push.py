"""Push one order from the ledger to WiredPlus: UpdateOrder first, then its events in order.

Exactly-once effect: the UpdateOrder body always carries the same ``api_reference_id`` (and the
WiredPlus ``id`` once known) and each event its deterministic ``event_reference``, so a retry
after a lost response upserts instead of duplicating. The ledger records each success as soon
as it happens, so a crash between two calls repeats at most one (idempotent) call.

Failures are classified by :mod:`sync.outcomes`: retryable ones are rescheduled in the ledger
(``next_attempt_at``, Svix-like schedule) and dead-lettered when exhausted; a rejected order or
event is dead-lettered at once with the response text; fatal errors release the lease and
propagate so the daemon stops loudly.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import exists, select, update

from sync import metrics
from sync.clock import Clock
from sync.domain.retry import is_exhausted, retry_delay
from sync.errors import FatalError, RetryableError, SkippableError
from sync.ledger.models import EventRow, EventState, OrderRow, OrderState
from sync.ledger.store import Ledger


class Sink(Protocol):
    def update_order(self, payload: dict[str, Any]) -> str: ...
    def create_order_event(self, payload: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class PushPolicy:
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(minutes=2)


@dataclass
class PushResult:
    ref: str
    outcome: str  # synced | retry | dead | busy | fatal
    order_call: str | None = None  # created/updated | None when unchanged
    wiredplus_id: str | None = None
    events_sent: int = 0
    error: str | None = None


class Pusher:
    """Delivers ledger orders to a sink. One instance per process; thread-compatible."""

    def __init__(
        self,
        ledger: Ledger,
        sink: Sink,
        clock: Clock,
        policy: PushPolicy,
        log: Any,
        rng: random.Random | None = None,
        after_create: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.sink = sink
        self.clock = clock
        self.policy = policy
        self.log = log
        self.rng = rng or random.Random()
        self.after_create = after_create
        self.owner = f"{uuid.uuid4().hex[:12]}"

    def push(self, store: str, ref: str) -> PushResult:
        """Push ``ref`` if it is due and nobody else holds it."""
        start = self.clock.monotonic()
        now = self.clock.now()
        owner = f"{self.owner}-{uuid.uuid4().hex[:6]}"
        row = self.ledger.claim(store, ref, owner, now, self.policy.lease)
        if row is None:
            return PushResult(ref, "busy")
        result = PushResult(ref, "synced")
        attempt = row.attempts + 1
        try:
            self._deliver(store, row, owner, result)
        except RetryableError as exc:
            self._fail_retry(store, row, owner, exc, result)
        except SkippableError as exc:
            self._dead_letter(store, row, owner, f"WiredPlus rejected the order: {exc}", result)
        except FatalError as exc:
            self.ledger.release(store, ref, owner)
            result.outcome, result.error = "fatal", str(exc)
            self._log(store, row, result, attempt, start)
            raise
        except Exception as exc:  # an unexpected bug must not strand the order
            self._fail_retry(
                store, row, owner, RetryableError(f"internal error: {type(exc).__name__}: {exc}"),
                result,
            )
        self._log(store, row, result, attempt, start)
        return result

    # -- steps --------------------------------------------------------------------------
    def _deliver(self, store: str, row: OrderRow, owner: str, result: PushResult) -> None:
        wiredplus_id = row.wiredplus_id
        result.wiredplus_id = wiredplus_id
        if row.pushed_hash != row.content_hash or wiredplus_id is None:
            body = json.loads(row.payload or "{}")
            if wiredplus_id:
                body["id"] = wiredplus_id
            wiredplus_id = self.sink.update_order(body)
            result.wiredplus_id = wiredplus_id
            if row.wiredplus_id is None and self.after_create is not None:
                self.after_create(store, row.source_order_id, wiredplus_id)
            result.order_call = "updated" if row.wiredplus_id else "created"
            pushed = {"wiredplus_id": wiredplus_id, "pushed_hash": row.content_hash}
        else:
            pushed = {}
        while True:
            with self.ledger.session() as s:
                events = self.ledger.pending_events(s, store, row.ref)
                if events and pushed:
                    # Record the UpdateOrder before its events go out (they reference its id).
                    self._record_pushed(s, store, row.ref, owner, pushed)
                    pushed = {}
            if not events:
                break
            for ev in events:
                self._send_event(store, row.ref, ev, wiredplus_id, result)
        now = self.clock.now()
        with self.ledger.session() as s:
            if pushed:  # no event: the push is recorded with the state, in one transaction
                self._record_pushed(s, store, row.ref, owner, pushed)
            # Synced only if nothing changed since the claim and no event is waiting.
            res = s.execute(
                update(OrderRow)
                .where(
                    self.ledger.owner_filter(store, row.ref, owner),
                    OrderRow.version == row.version,
                    ~exists(
                        select(EventRow.id).where(
                            EventRow.store == store,
                            EventRow.order_ref == row.ref,
                            EventRow.state == EventState.PENDING,
                        )
                    ),
                )
                .values(
                    state=OrderState.SYNCED,
                    attempts=0,
                    last_error=None,
                    next_attempt_at=None,
                    synced_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                # Changed under us: leave it pending and due now; release the lease.
                s.execute(
                    update(OrderRow)
                    .where(self.ledger.owner_filter(store, row.ref, owner))
                    .values(lease_owner=None, lease_until=None, next_attempt_at=now)
                    .execution_options(synchronize_session=False)
                )
                result.outcome = "requeued"

    def _record_pushed(
        self, s: Any, store: str, ref: str, owner: str, pushed: dict[str, Any]
    ) -> None:
        s.execute(
            update(OrderRow)
            .where(self.ledger.owner_filter(store, ref, owner))
            .values(**pushed)
            .execution_options(synchronize_session=False)
        )
        self.ledger.log(s, store, ref, self.clock.now(), "pushed",
                        {"wiredplus_id": pushed["wiredplus_id"]})

    def _send_event(
        self, store: str, ref: str, ev: EventRow, wiredplus_id: str, result: PushResult
    ) -> None:
        body = json.loads(ev.payload)
        body["order_id"] = wiredplus_id
        if ev.wiredplus_id:
            body["id"] = ev.wiredplus_id
        now = self.clock.now()
        try:
            event_id = self.sink.create_order_event(body)
        except SkippableError as exc:
            with self.ledger.session() as s:
                s.execute(
                    update(EventRow)
                    .where(EventRow.id == ev.id)
                    .values(state=EventState.DEAD, last_error=str(exc)[:2000],
                            attempts=ev.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                self.ledger.log(s, store, ref, now, "event.dead", f"{ev.event_type}: {exc}")
            self.log.warning(
                "event.dead_letter", store=store, ref=ref, event_type=ev.event_type,
                event_reference=ev.event_reference, reason=str(exc)[:300],
            )
            return
        with self.ledger.session() as s:
            s.execute(
                update(EventRow)
                .where(EventRow.id == ev.id)
                .values(state=EventState.SENT, wiredplus_id=event_id, sent_at=now,
                        attempts=ev.attempts + 1, last_error=None)
                .execution_options(synchronize_session=False)
            )
            self.ledger.log(s, store, ref, now, "event.sent", ev.event_type)
        result.events_sent += 1

    def _fail_retry(
        self, store: str, row: OrderRow, owner: str, exc: RetryableError, result: PushResult
    ) -> None:
        # Being throttled (429, or our own budget for the hour is spent) says nothing about
        # this order: wait as told, without spending one of its attempts.
        throttled = exc.status == 429 or "rate budget" in exc.message
        attempts = row.attempts + (0 if throttled else 1)
        if not throttled and is_exhausted(attempts, self.policy.max_attempts):
            self._dead_letter(
                store, row, owner, f"gave up after {attempts} attempts: {exc}", result, attempts
            )
            return
        now = self.clock.now()
        if throttled:
            seconds = exc.retry_after if exc.retry_after is not None else 60.0
            delay = timedelta(seconds=seconds * (1 + self.rng.uniform(0, 0.1)))
        else:
            delay = retry_delay(
                attempts, base=self.policy.retry_base, retry_after=exc.retry_after, rng=self.rng
            )
        with self.ledger.session() as s:
            s.execute(
                update(OrderRow)
                .where(self.ledger.owner_filter(store, row.ref, owner))
                .values(
                    attempts=attempts,
                    last_error=str(exc)[:2000],
                    next_attempt_at=now + delay,
                    lease_owner=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            self.ledger.log(s, store, row.ref, now, "retry", f"in {delay.total_seconds():.0f}s: "
                            f"{exc}")
        result.outcome, result.error = "retry", str(exc)

    def _dead_letter(
        self,
        store: str,
        row: OrderRow,
        owner: str,
        reason: str,
        result: PushResult,
        attempts: int | None = None,
    ) -> None:
        now = self.clock.now()
        with self.ledger.session() as s:
            s.execute(
                update(OrderRow)
                .where(self.ledger.owner_filter(store, row.ref, owner))
                .values(
                    state=OrderState.DEAD,
                    attempts=attempts if attempts is not None else row.attempts + 1,
                    last_error=reason[:2000],
                    next_attempt_at=None,
                    lease_owner=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            self.ledger.log(s, store, row.ref, now, "dead", reason[:500])
        result.outcome, result.error = "dead", reason

    def _log(
        self, store: str, row: OrderRow, result: PushResult, attempt: int, start: float
    ) -> None:
        fields = dict(
            store=store,
            ref=row.ref,
            order_id=row.source_order_id,
            order_reference=row.order_reference,
            wiredplus_id=result.wiredplus_id or row.wiredplus_id,
            order_call=result.order_call or "unchanged",
            events_sent=result.events_sent,
            outcome=result.outcome,
            attempt=attempt,
            duration_ms=round((self.clock.monotonic() - start) * 1000, 1),
        )
        if result.error:
            fields["error"] = result.error[:500]
        metrics.inc("ordersync_orders_pushed_total", store=store, outcome=result.outcome)
        if result.order_call:
            metrics.inc("ordersync_order_calls_total", store=store, kind=result.order_call)
        if result.events_sent:
            metrics.inc("ordersync_events_sent_total", result.events_sent, store=store)
        metrics.observe("ordersync_push_duration_seconds", self.clock.monotonic() - start,
                        store=store)
        if result.outcome in ("synced", "requeued"):
            self.log.info("order.push", **fields)
        else:
            self.log.warning("order.push", **fields)


def next_due_delay(ledger: Ledger, store: str, now: datetime) -> float | None:
    """Seconds until the earliest scheduled retry (None if nothing is pending)."""
    due = ledger.next_due_at(store)
    if due is None:
        return None
    return max((due - now).total_seconds(), 0.0)
