"""Which CreateOrderEvent calls an observed change deserves (pure).

``decide_events(previous, order, resolution, ...)`` compares what the ledger knew about an order
with the order just read and returns the events to send, each with a deterministic
``event_reference`` so a retry upserts instead of duplicating.

Rules:

* a status change *into* a status whose map entry names an event → that event
  (``dispatched`` carries the tracking URL in ``custom_fields``);
* each refund entry not seen before → one ``refunded`` event;
* when a change into a refund status arrives together with new refund entries, only the
  refund entries' events are sent (one refund, one email);
* **no emails for history**: an order seen for the first time gets events only when
  ``allow_events`` is set and it was created within ``first_sight_window`` of ``now``;
  otherwise its current status and refunds are recorded as already known.
* the same email is never sent twice: a status event's reference names its event type (a
  refund's, the refund), so a status that flips back and forth, or moves between two statuses
  mapped to the same event, produces that event once per order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sync.domain.mapping import MappingContext, api_reference_id, event_date, to_money
from sync.domain.models import SourceOrder
from sync.domain.status_map import Resolution


@dataclass(frozen=True, slots=True)
class KnownState:
    """What the ledger remembers of an order from the last observation."""

    status_id: str
    refund_keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class EventDecision:
    """One event to send. ``payload`` lacks ``order_id`` (known only after UpdateOrder)."""

    event_reference: str
    event_type: str
    payload: dict[str, Any]


def event_reference(order_ref: str, kind: str, key: str) -> str:
    return f"{order_ref}:{kind}:{key}"


def is_first_sight_recent(created_at: datetime, now: datetime, window: timedelta) -> bool:
    return timedelta(0) <= now - created_at <= window or created_at > now


def decide_events(
    previous: KnownState | None,
    order: SourceOrder,
    resolution: Resolution,
    ctx: MappingContext,
    *,
    now: datetime,
    first_sight_window: timedelta,
    allow_events: bool = True,
) -> list[EventDecision]:
    """Events for the move from ``previous`` to ``order`` (empty list when none)."""
    if not allow_events:
        return []
    if previous is None and not is_first_sight_recent(order.created_at, now, first_sight_window):
        return []
    order_ref = api_reference_id(order.order_id, ctx)
    known_refunds = previous.refund_keys if previous else frozenset()
    new_refunds = [r for r in order.refunds if r.key not in known_refunds]
    out: list[EventDecision] = []
    status_changed = previous is None or previous.status_id != order.status.id
    if status_changed and resolution.event and not (
        resolution.event == "refunded" and new_refunds
    ):
        custom: dict[str, str] = {}
        if resolution.event == "dispatched" and order.tracking_url:
            custom["tracking_url"] = order.tracking_url
        payload: dict[str, Any] = {
            # Keyed on the event type, not the status id: moving between two statuses that
            # send the same email (two "paid" statuses, or a flip back and forth) mails once.
            "event_reference": event_reference(order_ref, "status", resolution.event),
            "event_type": resolution.event,
            "event_date": event_date(now),
            "message": f"Order {order.reference} is now {order.status.name or resolution.event}",
        }
        if custom:
            payload["custom_fields"] = custom
        out.append(EventDecision(payload["event_reference"], resolution.event, payload))
    for refund in new_refunds:
        ref = event_reference(order_ref, "refund", refund.key)
        custom = {"refund_amount": f"{to_money(refund.amount):.2f}"}
        if refund.reason:
            custom["refund_reason"] = refund.reason
        out.append(
            EventDecision(
                ref,
                "refunded",
                {
                    "event_reference": ref,
                    "event_type": "refunded",
                    "event_date": event_date(refund.created_at or now),
                    "message": f"Refund of {to_money(refund.amount):.2f} on order "
                    f"{order.reference}",
                    "custom_fields": custom,
                },
            )
        )
    return out


def known_state(order: SourceOrder) -> KnownState:
    """The state to remember after recording ``order``."""
    return KnownState(
        status_id=order.status.id, refund_keys=frozenset(r.key for r in order.refunds)
    )
