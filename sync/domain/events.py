"""Which CreateOrderEvent calls an observed change deserves (pure).

``decide_events(previous, order, resolution, ...)`` compares what the ledger knew about an order
with the order just read and returns the events to send, each with a deterministic
``event_reference`` so a retry upserts instead of duplicating.

Rules:

* a status change *into* a status whose map entry names an event → that event
  (``dispatched`` carries the tracking URL in ``custom_fields``);
* each refund entry not seen before → one ``refunded`` event, its amount with the currency's
  decimals (``12.345`` KWD, ``1250`` JPY);
* one refund, one email, whichever the shop shows first: a change into a status whose event
  is ``refunded`` sends nothing when the order has refund entries (new or already mailed);
  a ``refunded`` status email sent while the order had no entries is remembered
  (:data:`STATUS_REFUND_KEY` among the known refund keys), and the refund entries that then
  appear are recorded without a second email (later, further refunds still mail);
* refund keys name the refund, not its position (see ``parse_shopwired``); keys written by
  earlier versions (``n<position>-<digest>``) still match the same refund;
* custom fields (tracking URL on ``dispatched``, refund amount/reason on ``refunded``) are
  sent only when configured (``MappingContext.custom_fields``), under the configured names;
* **no emails for history**: an order seen for the first time gets events only when
  ``allow_events`` is set and it was created within ``first_sight_window`` of ``now``;
  otherwise its current status and refunds are recorded as already known.
* the same email is never sent twice: a status event's reference names its event type (a
  refund's, the refund), so a status that flips back and forth, or moves between two statuses
  mapped to the same event, produces that event once per order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sync.domain.mapping import (
    MappingContext,
    api_reference_id,
    event_date,
    order_exponent,
    select_custom_fields,
)
from sync.domain.models import Refund, SourceOrder
from sync.domain.money import format_amount
from sync.domain.status_map import Resolution

#: Remembered among an order's refund keys when a ``refunded`` status email went out before
#: the shop listed any refund entry.
STATUS_REFUND_KEY = "~status-refunded"


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
    known = previous.refund_keys if previous else frozenset()
    new_refunds = [r for r in order.refunds if not refund_is_known(r, known)]
    refund_mailed_by_status = STATUS_REFUND_KEY in known
    if refund_mailed_by_status and not any(not k.startswith("~") for k in known):
        new_refunds = []  # the refund the status email already announced
    exponent = order_exponent(order, ctx)
    out: list[EventDecision] = []
    status_changed = previous is None or previous.status_id != order.status.id
    refund_already_told = bool(order.refunds) or refund_mailed_by_status
    if status_changed and resolution.event and not (
        resolution.event == "refunded" and refund_already_told
    ):
        values: dict[str, str] = {}
        if resolution.event == "dispatched" and order.tracking_url:
            values["tracking_url"] = order.tracking_url
        custom = select_custom_fields(values, ctx.custom_fields)
        payload: dict[str, Any] = {
            # Keyed on the event type, not the status id: moving between two statuses that
            # send the same email (two "paid" statuses, or a flip back and forth) mails once.
            "event_reference": event_reference(order_ref, "status", resolution.event),
            "event_type": resolution.event,
            "event_date": event_date(now),
            "message": f"Order {order.reference} is now {status_words(order, resolution)}",
        }
        if custom:
            payload["custom_fields"] = custom
        out.append(EventDecision(payload["event_reference"], resolution.event, payload))
    for refund in new_refunds:
        ref = event_reference(order_ref, "refund", refund.key)
        amount = format_amount(refund.amount, exponent)
        values = {"refund_amount": amount}
        if refund.reason:
            values["refund_reason"] = refund.reason
        payload = {
            "event_reference": ref,
            "event_type": "refunded",
            "event_date": event_date(refund.created_at or now),
            "message": f"Refund of {amount} on order {order.reference}",
        }
        custom = select_custom_fields(values, ctx.custom_fields)
        if custom:
            payload["custom_fields"] = custom
        out.append(EventDecision(ref, "refunded", payload))
    return out


def status_words(order: SourceOrder, resolution: Resolution) -> str:
    """The status as a customer-facing message names it: the shop's own status name
    ("Shipped"), or, for Elastic Path's synthetic "complete / paid / fulfilled", the
    WiredPlus status it maps to ("shipped")."""
    name = order.status.name
    if not name or " / " in name:
        return resolution.order_status.replace("-", " ")
    return name


def refund_is_known(refund: Refund, known: frozenset[str]) -> bool:
    """Whether ``refund`` is among ``known`` keys, also under an earlier version's key
    (``n<position>-<digest>``: the k-th id-less refund with a digest matches when at least k
    such old keys carry that digest)."""
    if refund.key in known:
        return True
    if not refund.key.startswith("c") or "-" not in refund.key:
        return False
    digest, _, occurrence = refund.key[1:].partition("-")
    legacy = Counter(
        k.partition("-")[2] for k in known if k.startswith("n") and "-" in k
    )
    return occurrence.isdigit() and legacy[digest] >= int(occurrence)


def known_state(
    order: SourceOrder,
    resolution: Resolution | None = None,
    previous: KnownState | None = None,
) -> KnownState:
    """The state to remember after recording ``order`` (with ``resolution``, its status map
    entry, and ``previous``, what was known before)."""
    keys = {r.key for r in order.refunds}
    if previous is not None:
        # keep markers, and old-format keys of refunds still listed under a new key
        keys |= {k for k in previous.refund_keys if k.startswith("~")}
        keys |= {
            k for k in previous.refund_keys if k.startswith("n") and "-" in k and order.refunds
        }
    if resolution is not None and resolution.event == "refunded" and not order.refunds:
        keys.add(STATUS_REFUND_KEY)
    return KnownState(status_id=order.status.id, refund_keys=frozenset(keys))
