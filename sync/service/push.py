"""Push ledger orders to WiredPlus: UpdateOrder first, then its events in order.

Exactly-once effect: the UpdateOrder body always carries the same ``api_reference_id`` (and the
WiredPlus ``id`` once known) and each event its deterministic ``event_reference``, so a retry
after a lost response upserts instead of duplicating. Orders are pushed in batches
(:meth:`Pusher.push_many`, one Celery message of up to 20 refs — 50 with BulkOrderUpdate):

* issue #17: the orders of a batch needing UpdateOrder go out as BulkOrderUpdate requests when
  the sink offers it; each record's result stands in for that order's single call (delivered →
  its events follow; rejected → its dead letter; a throttle or open circuit → every order
  waits without spending an attempt); a refused or failed bulk request sends them one by one;

* one statement claims the whole batch (:meth:`Ledger.claim_many`): every lease is taken — and
  every payload about to be pushed marked *in doubt* — before any WiredPlus call;
* an order with pending events records its UpdateOrder (own transaction) *before* its events
  go out (they reference the WiredPlus id), and each event's success as it happens;
* every other success is recorded, with the ``synced`` transition, in one closing transaction
  for the batch. A crash before it only leaves leased, in-doubt orders: after the lease they
  are pushed again — an idempotent resend, never a lost or duplicated effect;
* ``synced`` requires the ``version`` unchanged since the claim and no pending event;
  otherwise the order stays pending and due now (``requeued``);
* a batch starts no order later than :data:`CALL_ALLOWANCE_S` before its leases expire (slow
  WiredPlus) and releases the rest, so no UpdateOrder can land after its lease was taken over.

Failures are classified by :mod:`sync.outcomes`: retryable ones are rescheduled in the ledger
(``next_attempt_at``, Svix-like schedule) and dead-lettered when exhausted; a rejected order or
event is dead-lettered at once with the response text; fatal errors record what succeeded,
release the leases and propagate so the daemon stops loudly. One ``order.push`` log line per
order action (ids, outcome, attempt, duration, events sent).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy.orm import Session

from sync import metrics
from sync.apiclient import Circuit
from sync.clock import Clock
from sync.domain.lifecycle import (
    Deferred,
    EventStateName,
    Failed,
    OrderSnapshot,
    Rejected,
    RetryPolicy,
    after_event,
    after_push,
)
from sync.errors import FatalError, RetryableError, SkippableError, Throttled, Unavailable
from sync.ledger.models import EventRow
from sync.ledger.store import ClaimedOrder, Ledger, PushDone
from sync.logs import Log
from sync.sinks.wiredplus import BulkDelivered, BulkRecordResult, BulkRefused, BulkRejected

_BulkAnswer = str | RetryableError | SkippableError | FatalError
"""An order's UpdateOrder outcome from BulkOrderUpdate: its WiredPlus id or the error."""


class Sink(Protocol):
    """Where orders go (:class:`~sync.sinks.wiredplus.WiredPlusClient`)."""

    def update_order(self, payload: dict[str, Any]) -> str:
        """UpdateOrder (an upsert by ``api_reference_id``); the sink's order id."""
        ...

    def create_order_event(self, payload: dict[str, Any]) -> str:
        """CreateOrderEvent (an upsert by ``event_reference``); the event id."""
        ...

    @property
    def bulk_enabled(self) -> bool:
        """Whether :meth:`bulk_update_orders` may be tried (False: one call per order)."""
        ...

    @property
    def max_update_rows(self) -> int:
        """Most records one :meth:`bulk_update_orders` takes."""
        ...

    def bulk_update_orders(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[BulkRecordResult]:
        """BulkOrderUpdate: one result per payload, in order; raises BulkRefused when the
        sink will not take it (send one by one)."""
        ...

    @property
    def circuit(self) -> Circuit:
        """The account's circuit: not ``closed`` while the sink fails for everybody."""
        ...


THROTTLE_DEFAULT_S = 60.0
"""A throttle without ``Retry-After``: wait this long (no attempt spent)."""
OUTAGE_DEFAULT_S = 1.0
"""The failure that opened the account's circuit: look again after the first probe delay."""

CALL_ALLOWANCE_S = 85.0
"""The worst time one order's UpdateOrder may take to reach WiredPlus (30 s client-side rate
wait + 10 s of in-place retries + 10 s connect + 30 s read + margin). A batch starts no order
later than this before its leases expire, so no payload can land after a newer push that took
an expired lease over."""


@dataclass(frozen=True)
class PushPolicy:
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=5)
    lease: timedelta = timedelta(minutes=2)


@dataclass
class PushResult:
    ref: str
    outcome: str  # synced | requeued | retry | dead | busy | fatal
    order_call: str | None = None  # created/updated | None when unchanged
    wiredplus_id: str | None = None
    events_sent: int = 0
    error: str | None = None


@dataclass(slots=True)
class _Unrecorded:
    """A delivered order whose success waits for the batch's closing transaction."""

    row: ClaimedOrder
    result: PushResult
    pushed: dict[str, Any]  # {"wiredplus_id", "pushed_hash"} or {} (already recorded / none)
    attempt: int
    elapsed: float  # seconds spent on this order's calls


class Pusher:
    """Delivers ledger orders to a sink. One instance per process; thread-compatible."""

    def __init__(
        self,
        ledger: Ledger,
        sink: Sink,
        clock: Clock,
        policy: PushPolicy,
        log: Log,
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
        return self.push_many(store, [ref])[0]

    def push_many(self, store: str, refs: Sequence[str]) -> list[PushResult]:
        """Push each of ``refs`` that is due and not held by anybody else (contract: module
        docstring); one result per distinct ref, in order (``busy`` for those not claimed)."""
        unique = list(dict.fromkeys(refs))
        if not unique:
            return []
        owner = f"{self.owner}-{uuid.uuid4().hex[:6]}"
        results = {ref: PushResult(ref, "busy") for ref in unique}
        lease_s = self.policy.lease.total_seconds()
        deadline = self.clock.monotonic() + max(lease_s - CALL_ALLOWANCE_S, lease_s / 6)
        claimed, with_events = self.ledger.claim_many(
            store, unique, owner, self.clock.now(), self.policy.lease
        )
        unrecorded: list[_Unrecorded] = []
        fatal: FatalError | None = None
        rest: list[str] = []
        bulk = self._bulk_update(claimed)
        for i, row in enumerate(claimed):
            if fatal is not None or (i and self.clock.monotonic() > deadline):
                rest.append(row.ref)
                continue
            try:
                self._push_one(store, row, owner, row.ref in with_events, results[row.ref],
                               unrecorded, bulk.get(row.ref))
            except FatalError as exc:
                fatal = exc
        if rest:
            self.ledger.release(store, owner, rest)
        self._record(store, owner, unrecorded)
        if fatal is not None:
            raise fatal
        return [results[ref] for ref in unique]

    # -- steps --------------------------------------------------------------------------
    def _bulk_update(self, claimed: Sequence[ClaimedOrder]) -> dict[str, _BulkAnswer]:
        """Issue #17: the UpdateOrder of every claimed order that needs one, sent as
        BulkOrderUpdate requests (at most ``max_update_rows`` each) when the sink offers bulk
        and at least two orders need it. Returns each order's answer — its WiredPlus id or
        the error a single UpdateOrder would have raised (a throttle, an open circuit or a
        fatal answer to the whole request is every record's) — which :meth:`_deliver` uses in
        place of the call. Orders without an answer (bulk refused or off, or the request
        failed for good) are sent one by one."""
        if not self.sink.bulk_enabled:
            return {}
        due = [row for row in claimed if _needs_update(row)]
        if len(due) < 2:
            return {}
        size = max(self.sink.max_update_rows, 1)
        answers: dict[str, _BulkAnswer] = {}
        for i in range(0, len(due), size):
            chunk = due[i : i + size]
            try:
                results = self.sink.bulk_update_orders([_update_body(row) for row in chunk])
            except BulkRefused:
                return answers
            except (Throttled, Unavailable, FatalError) as exc:
                # Throttled / circuit open: every order waits, no attempt spent; fatal: stop.
                for row in chunk:
                    answers[row.ref] = exc
                continue
            except RetryableError:
                # The request failed after its in-place retries: its orders go one by one,
                # so a failure costs attempts exactly as single calls do (at most the few
                # before the account's circuit opens) and a record WiredPlus chokes on
                # cannot hold the others back.
                continue
            for row, res in zip(chunk, results, strict=True):
                if isinstance(res, BulkDelivered):
                    answers[row.ref] = res.wiredplus_id
                elif isinstance(res, BulkRejected):
                    answers[row.ref] = SkippableError(res.reason, endpoint="BulkOrderUpdate")
                else:
                    answers[row.ref] = RetryableError(res.reason, endpoint="BulkOrderUpdate")
        return answers

    def _push_one(
        self, store: str, row: ClaimedOrder, owner: str, has_events: bool, result: PushResult,
        unrecorded: list[_Unrecorded], answer: _BulkAnswer | None = None,
    ) -> None:
        start = self.clock.monotonic()
        result.outcome = "synced"
        attempt = row.attempts + 1
        try:
            pushed = self._deliver(store, row, owner, has_events, result, answer)
        except RetryableError as exc:
            self._fail_retry(store, row, owner, exc, result)
        except SkippableError as exc:
            self._dead_letter(store, row, owner, f"WiredPlus rejected the order: {exc}", result)
        except FatalError as exc:
            self.ledger.release(store, owner, [row.ref])
            result.outcome, result.error = "fatal", str(exc)
            self._log(store, row, result, attempt, self.clock.monotonic() - start)
            raise
        except Exception as exc:  # an unexpected bug must not strand the order
            self._fail_retry(
                store, row, owner, RetryableError(f"internal error: {type(exc).__name__}: {exc}"),
                result,
            )
        else:
            unrecorded.append(
                _Unrecorded(row, result, pushed, attempt, self.clock.monotonic() - start)
            )
            return
        self._log(store, row, result, attempt, self.clock.monotonic() - start)

    def _deliver(
        self, store: str, row: ClaimedOrder, owner: str, has_events: bool, result: PushResult,
        answer: _BulkAnswer | None = None,
    ) -> dict[str, Any]:
        """The calls for one order; returns what is left to record (the UpdateOrder's result
        when it was not recorded before events, else ``{}``). ``answer`` is its UpdateOrder's
        outcome already obtained through BulkOrderUpdate (an id, or the error to raise)."""
        wiredplus_id = row.wiredplus_id
        result.wiredplus_id = wiredplus_id
        pushed: dict[str, Any] = {}
        if _needs_update(row):
            if isinstance(answer, Exception):
                raise answer
            wiredplus_id = answer if answer is not None else self.sink.update_order(
                _update_body(row)
            )
            result.wiredplus_id = wiredplus_id
            if row.wiredplus_id is None and self.after_create is not None:
                self.after_create(store, row.source_order_id, wiredplus_id)
            result.order_call = "updated" if row.wiredplus_id else "created"
            pushed = {"wiredplus_id": wiredplus_id, "pushed_hash": row.content_hash}
        while has_events:
            with self.ledger.session() as s:
                events = self.ledger.pending_events(s, store, row.ref)
                if events and pushed:
                    # Record the UpdateOrder before its events go out (they reference its id).
                    self._record_pushed(s, store, row.ref, owner, pushed)
                    pushed = {}
            if not events:
                break
            assert wiredplus_id is not None
            for ev in events:
                self._send_event(store, row.ref, ev, wiredplus_id, result)
        return pushed

    def _record(self, store: str, owner: str, unrecorded: list[_Unrecorded]) -> None:
        """The batch's closing transaction: each delivered order's UpdateOrder and its
        ``synced`` (or ``requeued``) transition, in ascending id order (the order ingest's
        flushes lock rows in, so the two never deadlock); then one log line per order."""
        if not unrecorded:
            return
        started = self.clock.monotonic()
        now = self.clock.now()
        try:
            requeued = self.ledger.finish_batch(store, owner, now, [
                PushDone(u.row.ref, u.row.version, u.pushed.get("wiredplus_id"),
                         u.pushed.get("pushed_hash"))
                for u in unrecorded
            ])
            for u in unrecorded:
                if u.row.ref in requeued:
                    u.result.outcome = "requeued"
        except Exception as exc:
            # Nothing recorded: the orders stay leased and in doubt, and are pushed again
            # (idempotently) once the lease has passed.
            for u in unrecorded:
                u.result.outcome = "retry"
                u.result.error = f"could not record the push: {type(exc).__name__}: {exc}"
                self._log(store, u.row, u.result, u.attempt, u.elapsed)
            raise
        spent = self.clock.monotonic() - started
        for u in unrecorded:
            self._log(store, u.row, u.result, u.attempt, u.elapsed + spent)

    def _record_pushed(
        self, s: Session, store: str, ref: str, owner: str, pushed: dict[str, Any]
    ) -> None:
        self.ledger.record_pushed(s, store, ref, owner, pushed["wiredplus_id"],
                                  pushed.get("pushed_hash"), self.clock.now())

    def _send_event(
        self, store: str, ref: str, ev: EventRow, wiredplus_id: str, result: PushResult
    ) -> None:
        body = json.loads(ev.payload)
        body["order_id"] = wiredplus_id
        if ev.wiredplus_id:
            body["id"] = ev.wiredplus_id
        now = self.clock.now()
        state = cast(EventStateName, ev.state)
        try:
            event_id = self.sink.create_order_event(body)
        except SkippableError as exc:
            self.ledger.record_event(
                store, ref, ev, after_event(state, ev.attempts, sent=False, reason=str(exc)), now
            )
            self.log.warning(
                "event.dead_letter", store=store, ref=ref, event_type=ev.event_type,
                event_reference=ev.event_reference, reason=str(exc)[:300],
            )
            return
        self.ledger.record_event(
            store, ref, ev, after_event(state, ev.attempts, sent=True), now, event_id
        )
        result.events_sent += 1

    def _fail_retry(
        self, store: str, row: ClaimedOrder, owner: str, exc: RetryableError,
        result: PushResult
    ) -> None:
        # Being throttled (429, or our own budget for the hour is spent) or finding WiredPlus
        # failing for everybody (the account's circuit is open — also when this very failure
        # opened it) says nothing about this order: it is deferred without spending one of
        # its attempts. Only a failure while the account works for others is its own.
        outcome: Deferred | Failed
        if isinstance(exc, Throttled | Unavailable) or self._sink_down():
            if exc.retry_after is not None:
                seconds = exc.retry_after
            else:
                seconds = THROTTLE_DEFAULT_S if isinstance(exc, Throttled) else OUTAGE_DEFAULT_S
            outcome = Deferred(seconds, str(exc))
        else:
            outcome = Failed(str(exc), exc.retry_after)
        self._apply(store, row, owner, outcome, result)

    def _dead_letter(
        self, store: str, row: ClaimedOrder, owner: str, reason: str, result: PushResult
    ) -> None:
        self._apply(store, row, owner, Rejected(reason), result)

    def _apply(
        self, store: str, row: ClaimedOrder, owner: str, outcome: Deferred | Failed | Rejected,
        result: PushResult,
    ) -> None:
        """The state machine decides (:func:`sync.domain.lifecycle.after_push`), the ledger
        writes."""
        snapshot = OrderSnapshot("pending", row.attempts, row.version)
        t = after_push(snapshot, outcome, now=self.clock.now(), rng=self.rng,
                       policy=RetryPolicy(self.policy.max_attempts, self.policy.retry_base))
        self.ledger.apply_push(store, row.ref, owner, t, self.clock.now())
        result.outcome = "dead" if t.state == "dead" else "retry"
        result.error = t.last_error if t.state == "dead" else outcome.reason

    def _sink_down(self) -> bool:
        """Whether the sink's account circuit is open (WiredPlus fails for everybody)."""
        return self.sink.circuit.state != "closed"

    def _log(
        self, store: str, row: ClaimedOrder, result: PushResult, attempt: int, duration: float
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
            duration_ms=round(duration * 1000, 1),
        )
        if result.error:
            fields["error"] = result.error[:500]
        metrics.inc("ordersync_orders_pushed_total", store=store, outcome=result.outcome)
        if result.order_call:
            metrics.inc("ordersync_order_calls_total", store=store, kind=result.order_call)
        if result.events_sent:
            metrics.inc("ordersync_events_sent_total", result.events_sent, store=store)
        metrics.observe("ordersync_push_duration_seconds", duration, store=store)
        if result.outcome in ("synced", "requeued"):
            self.log.info("order.push", **fields)
        else:
            self.log.warning("order.push", **fields)


def _needs_update(row: ClaimedOrder) -> bool:
    """Whether ``row`` needs an UpdateOrder (changed since pushed, or never pushed)."""
    return row.pushed_hash != row.content_hash or row.wiredplus_id is None


def _update_body(row: ClaimedOrder) -> dict[str, Any]:
    """The UpdateOrder body of ``row`` (with its WiredPlus id once known: an upsert)."""
    body: dict[str, Any] = json.loads(row.payload or "{}")
    if row.wiredplus_id:
        body["id"] = row.wiredplus_id
    return body


def next_due_delay(ledger: Ledger, store: str, now: datetime) -> float | None:
    """Seconds until the earliest scheduled retry (None if nothing is pending)."""
    due = ledger.next_due_at(store)
    if due is None:
        return None
    return max((due - now).total_seconds(), 0.0)
