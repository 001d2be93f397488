"""The order lifecycle as one explicit state machine (pure: no I/O, no clock of its own).

An order row is ``pending`` → ``synced`` | ``dead`` (``skipped`` when it cannot be mapped,
decided by ingest). A push attempt ends in one :data:`PushOutcome`; :func:`after_push` turns
the row's snapshot and that outcome into the :class:`OrderTransition` the ledger writes — the
ledger (:mod:`sync.ledger.store`) is the only writer of order and event rows.

=====================  ===========================================================  =========
outcome                transition                                                   attempts
=====================  ===========================================================  =========
Delivered              ``synced`` if the version is the claimed one and no event     kept
                       is pending, else stays ``pending``, due now (requeued)
Rejected(reason)       ``dead`` with the reason (WiredPlus refused this order)       +1
Deferred(retry_after)  ``pending``, due after ``retry_after`` (+0-10 % jitter):      kept
                       a throttle or an open circuit says nothing about the order
Failed(reason, ra)     ``pending``, due by the per-order schedule                     +1
                       (:func:`sync.domain.retry.retry_delay`, ``ra`` a floor); when
                       the attempts are used up ``dead``: "gave up after n attempts"
=====================  ===========================================================  =========

Events: ``pending`` → ``sent`` (once: :func:`after_event` refuses to send a sent or dead
event again) | ``dead`` (rejected, with the reason).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from sync.domain.retry import is_exhausted, retry_delay

OrderStateName = Literal["pending", "synced", "skipped", "dead"]
EventStateName = Literal["pending", "sent", "dead"]

DEFERRAL_JITTER: Final = 0.1


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """What the state machine needs of a claimed order row."""

    state: OrderStateName
    attempts: int
    version: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """UpdateOrder (and every event sent so far) succeeded; ``version_now`` is the row's
    version at the end, ``events_pending`` whether an event is still waiting."""

    version_now: int
    events_pending: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """WiredPlus refused this order (4xx): nothing will change that but a new version."""

    reason: str


@dataclass(frozen=True, slots=True)
class Deferred:
    """Not about this order: throttled (429, our hourly budget) or the account's circuit is
    open. ``retry_after`` seconds until it may be tried again."""

    retry_after: float
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A transient failure of this order while the account works for others."""

    reason: str
    retry_after: float | None = None


PushOutcome = Delivered | Rejected | Deferred | Failed


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class OrderTransition:
    """What the ledger writes: the new state, attempts, when it is due next (None = now or
    never), the error kept on the row, and one history line (action, detail)."""

    state: OrderStateName
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    action: str
    detail: str


def after_push(
    row: OrderSnapshot,
    outcome: PushOutcome,
    *,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> OrderTransition:
    """The transition of a claimed ``pending`` order after one push (table: module docstring).

    Raises ValueError for a row that is not ``pending`` (only pending orders are claimed)."""
    if row.state != "pending":
        raise ValueError(f"only a pending order is pushed, not a {row.state} one")
    if isinstance(outcome, Delivered):
        if outcome.version_now == row.version and not outcome.events_pending:
            return OrderTransition("synced", row.attempts, None, None, "synced", "")
        return OrderTransition("pending", row.attempts, None, None, "requeued",
                               "changed while it was pushed")
    if isinstance(outcome, Rejected):
        return OrderTransition("dead", row.attempts + 1, None, outcome.reason, "dead",
                               outcome.reason)
    if isinstance(outcome, Deferred):
        seconds = max(outcome.retry_after, 0.0) * (1 + rng.uniform(0, DEFERRAL_JITTER))
        return OrderTransition("pending", row.attempts, now + timedelta(seconds=seconds),
                               outcome.reason, "deferred",
                               f"in {seconds:.0f}s: {outcome.reason}")
    attempts = row.attempts + 1
    if is_exhausted(attempts, policy.max_attempts):
        reason = f"gave up after {attempts} attempts: {outcome.reason}"
        return OrderTransition("dead", attempts, None, reason, "dead", reason)
    delay = retry_delay(attempts, base=policy.retry_base, retry_after=outcome.retry_after,
                        rng=rng)
    return OrderTransition("pending", attempts, now + delay, outcome.reason, "retry",
                           f"in {delay.total_seconds():.0f}s: {outcome.reason}")


@dataclass(frozen=True, slots=True)
class EventTransition:
    state: EventStateName
    attempts: int
    last_error: str | None


def after_event(
    state: EventStateName, attempts: int, *, sent: bool, reason: str | None = None
) -> EventTransition:
    """An event's transition after CreateOrderEvent: ``sent`` or rejected (``reason``).

    Raises ValueError when the event is not ``pending``: a sent event is never sent again,
    a dead one only after a replay made it pending."""
    if state != "pending":
        raise ValueError(f"a {state} event is not sent again")
    if sent:
        return EventTransition("sent", attempts + 1, None)
    return EventTransition("dead", attempts + 1, reason or "rejected")
