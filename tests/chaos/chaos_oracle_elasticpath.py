"""The Elastic Path chaos run's shop life and verdict, judged from the simulators' own records.

Scope (the product's rule, :meth:`sync.service.poller.Poller.scope_start`): the EP poller
reads orders by ``updated_at``, but only orders **created** on or after the start date are
imported — an order created before it and changed after it is listed by the scan and ignored
(it must not appear in WiredPlus, where a "new order" automation could mail its customer).
**History** is every order created before the start date, changed since or not: it must never
reach the ledger or WiredPlus (the run has a dozen old orders changed after the start date).

* :class:`EPActivity` — the shop's life on a thread: payments, shipments, cancellations,
  refunds and new orders, through the simulator's mutators (each bumps ``updated_at`` as EP
  does), every change stamped with the wall-clock interval in which it happened. It only ever
  touches in-scope orders;
* :func:`verify_ep` compares the EP store, the ledger and WiredPlus once the run has drained.
  Every in-scope order is *required* (there is no fault here that moves orders behind the
  scan: the scan is by ``updated_at`` and every change moves an order forward).

What :func:`verify_ep` asserts (each a violation kind):

* ``lost`` / ``undelivered`` — an in-scope order missing from the ledger / from WiredPlus;
* ``stale`` — WiredPlus holds something other than the ledger's last payload/order_status;
* ``stale-ledger`` — the ledger's status is not the EP order's current
  ``status/payment/shipping`` (through the EP status map: order_status too);
* ``duplicate`` — an order or event created more than once in WiredPlus, or two events of one
  type on one order;
* ``unknown`` — WiredPlus holds an order/event the ledger never recorded;
* ``history`` — a historical order in the ledger or WiredPlus, an event decided at first sight
  of an old order, or any event on an old order the shop never changed after first sight;
* ``event-missing`` — a transition into an event-bearing status the ledger observed (after
  first sight, or at first sight of a recent order), or the activity made after first sight,
  without exactly one event of that type in WiredPlus;
* ``not-drained`` / ``misdirected`` — outbox events not sent, or sent to the wrong order/type;
* ``dead-letters`` — any dead letter other than the orders made invalid on purpose.
"""

from __future__ import annotations

import json
import random
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from config import default_status_map_text
from sync.domain.parse_elasticpath import all_statuses, synthetic_status
from sync.domain.status_map import Resolution, StatusMap
from sync.ledger.models import EventRow, LogRow, OrderRow, OrderState
from sync.ledger.store import Ledger
from sync.sandbox.elasticpath import ElasticPathSimulator, parse_ep_timestamp

from .chaos_oracle import (  # type: ignore[import-not-found]
    NOT_COMPARED,
    WP_SYSTEM_KEYS,
    ActivityLoop,
    Phase,
    Verdict,
    check_outbox,
    epoch,
    phase_row,
)

EP_MAP = StatusMap.from_toml(default_status_map_text("elasticpath"))
STATUS_BY_NAME = {st.name.lower(): st for st in all_statuses()}


def resolve(order: dict[str, Any]) -> tuple[str, Resolution]:
    """(synthetic status id, its resolution) of an EP order as it stands."""
    st = synthetic_status(order.get("status"), order.get("payment"), order.get("shipping"))
    return st.id, EP_MAP.resolve(st)


# ------------------------------------------------------------------------------ activity


@dataclass(frozen=True)
class EPChange:
    """One change the activity made, within ``[t0, t1]`` (wall clock): ``kind`` is the action,
    ``status`` the synthetic status it moved the order into, ``event`` what that status sends."""

    t0: float
    t1: float
    oid: str
    kind: str
    status: str
    event: str | None


class EPActivity(ActivityLoop):
    """``changes`` status/payment/shipping changes and ``new`` orders every ``interval`` s on a
    thread (plus :meth:`burst`), only on the orders of ``pool`` (in scope) and new ones."""

    thread_name = "ep-chaos-activity"

    def __init__(self, ep: ElasticPathSimulator, pool: Iterable[str], *, seed: int,
                 interval: float = 1.0, changes: int = 3, new: int = 1) -> None:
        super().__init__(interval, changes, new)
        self.ep = ep
        self.pool = list(pool)
        self.rng = random.Random(f"ep-activity-{seed}")
        self.appeared: dict[str, float] = {}

    def _act(self, oid: str) -> str | None:
        """Apply one action that fits the order's state; its name, or None if none fits."""
        ep = self.ep
        o = ep.orders[oid]
        s, p, sh = o.get("status"), o.get("payment"), o.get("shipping")
        options = []
        if s != "cancelled" and p in ("unpaid", "authorized", "partially_paid",
                                      "partially_authorized"):
            options.append("pay")
        if s != "cancelled" and p == "paid" and sh == "unfulfilled":
            options += ["ship", "ship"]
        if s != "cancelled" and sh == "unfulfilled" and p != "refunded":
            options.append("cancel")
        if p == "paid":
            options.append("refund")
        if not options:
            return None
        action = self.rng.choice(options)
        if action == "pay":
            if s == "incomplete":
                ep.set_status(oid, "complete")
            ep.set_payment(oid, "paid")
        elif action == "ship":
            ep.set_shipping(oid, "fulfilled")
        elif action == "cancel":
            ep.set_status(oid, "cancelled")
        else:
            ep.set_payment(oid, "refunded")
        return action

    def step(self, changes: int, new: int) -> int:
        t0 = time.time()
        done: list[tuple[str, str]] = []
        try:
            with self.ep._lock:  # one consistent step: the server answers before or after it
                for _ in range(changes):
                    for _try in range(8):
                        oid = self.rng.choice(self.pool)
                        action = self._act(oid)
                        if action is not None:
                            done.append((oid, action))
                            break
                if new:
                    now = self.ep.clock.now()
                    ids = self.ep.generate_orders(new, created_between=(
                        now - timedelta(seconds=2), now))
                    self.pool.extend(ids)
                    done += [(oid, "new") for oid in ids]
                states = {oid: resolve(self.ep.orders[oid]) for oid, _ in done}
        except Exception:
            self.errors.append(traceback.format_exc())
            return 0
        t1 = time.time()
        with self._lock:
            for oid, kind in done:
                sid, res = states[oid]
                self.changes.append(EPChange(t0, t1, oid, kind, sid, res.event))
                if kind == "new":
                    self.appeared[oid] = t1
        return len(done)



def invalid_copy(ep: ElasticPathSimulator, template_id: str, *, created: datetime,
                 new_id: str) -> str:
    """Add an order EP itself would serve but WiredPlus cannot take: no customer email."""
    order = ep.get_order(template_id)
    assert order is not None
    order["id"] = new_id
    for key in ("customer", "contact"):
        if isinstance(order.get(key), dict):
            order[key].pop("email", None)
    order.pop("order_number", None)
    stamp = ep.render(created)
    order["meta"]["timestamps"] = {"created_at": stamp, "updated_at": stamp}
    order.get("relationships", {}).pop("items", None)
    items = [dict(item, id=f"{new_id[:24]}-item-{k}")
             for k, item in enumerate(ep.items.get(template_id, []))]
    return ep.add_order(order, items)


# ------------------------------------------------------------------------------ verdict


@dataclass
class EPWorld:
    """The EP store, the ledger and WiredPlus, captured once after the run has drained.
    (``logs``, ``events`` and ``wp`` are what :func:`chaos_oracle.phase_row` reads.)"""

    shop: dict[str, dict[str, Any]]
    created: dict[str, datetime]
    updated: dict[str, datetime]
    rows: dict[str, OrderRow]
    events: list[EventRow]
    logs: dict[str, list[LogRow]]
    wp: Any

    @classmethod
    def capture(cls, ep: ElasticPathSimulator, wp: Any, ledger: Ledger, store: str) -> EPWorld:
        shop = {oid: o for oid in ep.order_ids() if (o := ep.get_order(oid)) is not None}
        created = {}
        for oid, o in shop.items():
            when = parse_ep_timestamp(o["meta"]["timestamps"]["created_at"])
            assert when is not None
            created[oid] = when
        updated = {oid: ep.updated_at(oid) for oid in shop}
        logs: dict[str, list[LogRow]] = defaultdict(list)
        with ledger.session() as s:
            for row in s.scalars(select(LogRow).where(LogRow.store == store)
                                 .order_by(LogRow.id)):
                logs[row.ref].append(row)
        return cls(shop=shop, created=created, updated=updated,
                   rows={r.ref: r for r in ledger.all_orders(store)},
                   events=ledger.all_events(store), logs=logs, wp=wp)


def verify_ep(
    world: EPWorld,
    *,
    start: datetime,
    activity: dict[str, list[EPChange]],
    invalid_ids: Iterable[str],
    dead_letters: list[dict[str, Any]] | None,
    first_sight_window: timedelta,
    phases: list[Phase],
) -> Verdict:
    v = Verdict()
    wp = world.wp
    invalid = set(invalid_ids)
    fsw = first_sight_window.total_seconds()
    rows, shop = world.rows, world.shop
    by_oid = {r.source_order_id: r for r in rows.values()}
    ledger_events = {e.event_reference: e for e in world.events}
    by_type: Counter[tuple[str, str]] = Counter(
        (str(e.get("order_id")), str(e.get("event_type"))) for e in wp.events.values())

    def emails(ref: str, event_type: str) -> int:
        return by_type[(str(wp.orders_by_ref.get(ref)), event_type)]

    def recent(row: OrderRow) -> bool:
        return bool(0 <= epoch(row.first_seen_at) - epoch(row.created_at) <= fsw)

    in_scope = {oid for oid in shop if world.created[oid] >= start}
    history = set(shop) - in_scope
    old_changed = {oid for oid in history if world.updated[oid] >= start}
    valid_scope = in_scope - invalid

    # -- every in-scope order reached the ledger and WiredPlus ------------------------------
    for oid in sorted(in_scope):
        row = by_oid.get(oid)
        if row is None:
            v.add("lost", f"order {oid} (updated {world.updated[oid]}, "
                          f"{'new mid-run' if oid in activity else 'there from the start'}) "
                          "never reached the ledger")
            continue
        if oid in invalid:
            if row.state != OrderState.SKIPPED:
                v.add("dead-letters", f"invalid order {oid} is {row.state}, expected skipped")
            continue
        if row.ref not in wp.orders_by_ref:
            v.add("undelivered", f"order {oid} is in the ledger ({row.state}) but not in "
                                 "WiredPlus")

    # -- every ledger order: delivered as the ledger last saw it, ledger = shop ----------------
    delivered_ok: set[str] = set()
    for ref, row in rows.items():
        oid = row.source_order_id
        if oid in history:
            v.add("history", f"order {oid} (created {world.created[oid]}, before the start "
                             f"date; updated {world.updated[oid]}) is in the ledger")
        if row.state == OrderState.SKIPPED:
            if oid not in invalid:
                v.add("dead-letters", f"valid order {oid} was skipped: {row.last_error}")
            continue
        if row.state != OrderState.SYNCED:
            v.add("not-drained", f"order {oid} is {row.state} ({row.last_error})")
            continue
        stored = wp.order_by_ref(ref)
        if stored is None:
            v.add("undelivered", f"order {oid} synced in the ledger but absent from WiredPlus")
            continue
        payload = json.loads(row.payload or "{}")
        diff = sorted(k for k, val in payload.items()
                      if stored.get(k) != val and k not in NOT_COMPARED)
        extra = sorted(set(stored) - set(payload) - WP_SYSTEM_KEYS - NOT_COMPARED)
        if stored.get("order_status") != row.order_status or diff or extra:
            v.add("stale", f"order {oid}: WiredPlus order_status {stored.get('order_status')!r}"
                           f" vs ledger {row.order_status!r}; differing fields {diff + extra}")
            continue
        current = shop.get(oid)
        if current is not None:
            sid, res = resolve(current)
            if row.status_id != sid or row.order_status != res.order_status:
                v.add("stale-ledger", f"order {oid}: EP {sid} (→ {res.order_status}), ledger "
                                      f"{row.status_id} (→ {row.order_status})")
                continue
        delivered_ok.add(ref)

    # -- nothing twice, nothing unknown, nothing historical in WiredPlus -----------------------
    for ref, n in wp.order_creations.items():
        if n != 1:
            v.add("duplicate", f"order {ref} created {n} times in WiredPlus")
    for ref, n in wp.event_creations.items():
        if n != 1:
            v.add("duplicate", f"event {ref} created {n} times in WiredPlus")
    for ref in wp.orders_by_ref:
        row = rows.get(ref)
        if row is None:
            v.add("unknown", f"WiredPlus holds order {ref} the ledger never recorded")
        elif row.source_order_id in history:
            v.add("history", f"historical order {ref} was sent to WiredPlus")
    for ref in wp.events_by_ref:
        if ref not in ledger_events:
            v.add("unknown", f"WiredPlus holds event {ref} that is not in the outbox")
    for (order_wid, event_type), n in by_type.items():
        if n > 1:
            v.add("duplicate", f"WiredPlus order {order_wid} got {n} {event_type!r} events")

    # -- the outbox: every decided event delivered once, to the right order -----------------
    check_outbox(v, world.events, wp, rows, recent)

    # -- what the ledger observed must have produced its events -----------------------------
    observed = 0
    for ref, entries in world.logs.items():
        row = rows.get(ref)
        if row is None or row.state == OrderState.SKIPPED:
            continue
        prev: str | None = None
        for entry in entries:
            if entry.action not in ("seen", "changed"):
                continue
            try:
                name = str(json.loads(entry.detail or "{}").get("status", "")).lower()
            except ValueError:
                continue
            st = STATUS_BY_NAME.get(name)
            first = entry.action == "seen"
            if st is not None and name != prev:
                event = EP_MAP.resolve(st).event
                if event and (not first or recent(row)):
                    observed += 1
                    if emails(ref, event) != 1:
                        v.add("event-missing", f"ledger saw order {ref} move into {name!r} "
                                               f"but {emails(ref, event)} {event!r} events "
                                               "reached WiredPlus (expected 1)")
            prev = name

    # -- the shop's own history: the final status's event, and silence for the untouched -----
    provable = forbidden = unprovable = 0
    for ref, row in rows.items():
        oid = row.source_order_id
        current = shop.get(oid)
        if current is None or row.state == OrderState.SKIPPED or oid in invalid:
            continue
        fs = epoch(row.first_seen_at)
        _sid, res = resolve(current)
        changes = [c for c in activity.get(oid, []) if c.kind != "new"]
        if res.event:
            into = [c for c in changes if c.event == res.event]
            n = emails(ref, res.event)
            if recent(row) or any(fs < c.t0 for c in into):
                provable += 1
                if n != 1:
                    v.add("event-missing", f"order {oid} moved into {res.event!r} territory "
                                           f"after first sight (or is recent); {n} events "
                                           "(expected 1)")
            else:
                unprovable += 1
        if not changes and not recent(row):
            forbidden += 1
            sent = [e.get("event_type") for e in wp.events_for_order(
                wp.orders_by_ref.get(ref, ""))] if ref in wp.orders_by_ref else []
            if sent:
                v.add("history", f"old order {oid} the shop never changed after install got "
                                 f"events {sent}")

    # -- dead letters: only the orders made invalid on purpose ------------------------------
    if dead_letters is None:
        v.add("dead-letters", "`ordersync dlq list --json` failed (see the results file)")
        dead_letters = []
    dl_ids = {str(d["order"]) for d in dead_letters}
    dl_kinds = Counter(d["kind"] for d in dead_letters)
    expected_dl = {oid for oid in invalid if oid in by_oid}
    if dl_ids != expected_dl or set(dl_kinds) - {"unmappable"}:
        v.add("dead-letters", f"dead letters {sorted(dl_ids)} ({dict(dl_kinds)}), expected the "
                              f"invalid orders {sorted(expected_dl)} as unmappable")

    # -- figures ------------------------------------------------------------------------------
    lost = {oid for oid in valid_scope if oid not in by_oid}
    required_delivered = sum(1 for oid in valid_scope
                             if oid in by_oid and by_oid[oid].ref in delivered_ok)
    v.figures = {
        "shop_orders": len(shop),
        "history_orders": len(history),
        "in_scope_orders": len(in_scope),
        "old_orders_changed_after_start": len(old_changed),
        "required_orders": len(valid_scope),
        "required_delivered": required_delivered,
        "ledger_orders": len(rows),
        "wiredplus_orders": len(wp.orders_by_ref),
        "orders_delivered_current": len(delivered_ok),
        "orders_lost": len(lost),
        "orders_duplicated": sum(1 for n in wp.order_creations.values() if n > 1),
        "ledger_events": len(world.events),
        "wiredplus_events": len(wp.events_by_ref),
        "events_duplicated": sum(1 for n in wp.event_creations.values() if n > 1),
        "events_lost": sum(1 for e in world.events if e.event_reference not in wp.events_by_ref),
        "observed_event_transitions": observed,
        "activity_events_provable": provable,
        "untouched_old_orders_checked_silent": forbidden,
        "final_status_events_unprovable": unprovable,
        "dead_letters": len(dead_letters),
        "invalid_orders": len(invalid),
    }
    skipped = {r for r, row in rows.items() if row.state == OrderState.SKIPPED}
    # No scan can push an EP order behind it, so a lost order is charged to the first phase.
    lost_at = {oid: phases[0].start for oid in lost} if phases else {}
    v.phase_rows = [phase_row(p, world, delivered_ok, lost_at=lost_at, skipped=skipped,
                              first=i == 0) for i, p in enumerate(phases)]
    return v
