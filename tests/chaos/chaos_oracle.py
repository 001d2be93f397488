"""What a chaos run must have achieved, judged from the simulators' own records.

Recorders (run in the test process, next to the served sandbox):

* :class:`ActivityRecorder` — the shop's life: :meth:`Activity.step` on a thread, every change
  stamped with the wall-clock interval in which it happened;
* :class:`AppearanceLog` — when each order *appeared* in the shop (activity orders, orders the
  page-shuffle fault inserts, invalid orders added mid-run); orders present before the daemon
  started have no entry;
* :func:`read_passes` — the completed passes of the poller, from its JSON log: start, end,
  and the created-date window each one read;
* :class:`LedgerMonitor` — per fault phase: what was pending at its start and end, and when
  everything pending at its end had been delivered (time to drain).

:func:`verify` then compares shop, ledger and WiredPlus. What it can *prove*, and therefore
asserts, is spelled out in RELIABILITY.md; the short version:

* an order is **required** when some completed pass that *started after the order appeared*
  read a window containing its created date — the product's contract is that such an order
  is never lost. Orders the page-shuffle fault back-dates behind every later window are out of
  contract (counted, not required);
* a status event is **provably expected** for the shop's final status of an order when the
  ledger first saw the order before the activity moved it into that status (first_seen_at
  before the change started), or when the order was recent at first sight; it is **provably
  forbidden** when the change happened well before first sight of an old order. Anything in
  between is counted as unprovable and not asserted. Refunds are judged the same way from
  each refund's ``createdAt``.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from config import default_status_map_text
from sync.domain.models import SourceStatus
from sync.domain.status_map import StatusMap
from sync.ledger.models import EventRow, EventState, LogRow, OrderRow, OrderState
from sync.ledger.store import Ledger
from sync.sandbox import Sandbox

# System fields WiredPlus adds to a stored order; everything else is what the client sent.
WP_SYSTEM_KEYS = frozenset({"id", "contact_id", "create_date", "update_date"})
# Not compared: the ledger stamps ``order_update_date`` on every observed change, but an order
# whose content changed and changed back before it was pushed is (rightly) not sent again.
NOT_COMPARED = frozenset({"order_update_date"})


def epoch(dt: datetime | None) -> float:
    return dt.timestamp() if dt is not None else float("nan")


def created_epoch(order: dict[str, Any]) -> float:
    return parsedate_to_datetime(order["created"]).timestamp()


# ------------------------------------------------------------------------------ recorders


@dataclass(frozen=True)
class Change:
    """One change the activity made: it happened within ``[t0, t1]`` (wall-clock seconds)."""

    t0: float
    t1: float
    oid: int
    kind: str  # status:<Name> | refund:partial | refund:full | archived | new


class ActivityLoop:
    """The shop's own life on a thread: :meth:`step` (``n_changes`` changes and ``n_new`` new
    orders) every ``interval`` seconds, plus :meth:`burst` on demand; every change stamped
    with the wall-clock interval it happened in. Subclasses implement :meth:`step`."""

    thread_name = "chaos-activity"

    def __init__(self, interval: float, changes: int, new: int) -> None:
        self.interval = interval
        self.n_changes = changes
        self.n_new = new
        self.changes: list[Any] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stopped_at: float | None = None

    def step(self, changes: int, new: int) -> int:
        raise NotImplementedError

    def burst(self, changes: int, new: int) -> int:
        return self.step(changes, new)

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval):
                self.step(self.n_changes, self.n_new)

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.stopped_at is None:
            self.stopped_at = time.time()

    def by_order(self) -> dict[Any, list[Any]]:
        out: dict[Any, list[Any]] = defaultdict(list)
        with self._lock:
            for ch in self.changes:
                out[ch.oid].append(ch)
        return out


class ActivityRecorder(ActivityLoop):
    """ShopWired's life while faults run: ``changes`` status changes/refunds/archives and
    ``new`` orders every ``interval`` seconds (the sandbox's ``activity``)."""

    def __init__(self, sb: Sandbox, interval: float = 1.0, changes: int = 5, new: int = 1):
        super().__init__(interval, changes, new)
        self.sb = sb

    def step(self, changes: int, new: int) -> int:
        t0 = time.time()
        try:
            done = self.sb.activity.step(changes, new)
        except Exception:
            self.errors.append(traceback.format_exc())
            return 0
        t1 = time.time()
        with self._lock:
            self.changes.extend(Change(t0, t1, oid, kind) for oid, kind in done)
        return len(done)


class AppearanceLog:
    """Notes the wall-clock time right after each order was added to the shop simulator."""

    def __init__(self, sb: Sandbox) -> None:
        self.appeared: dict[int, float] = {}
        sim = self.sim = sb.shopwired
        original = sim.add_order

        def add_order(order: Any) -> int:
            oid = original(order)
            self.appeared[oid] = time.time()
            return oid

        # Instance attribute: the simulator's own calls (generate_orders, the shuffle fault,
        # add_invalid_order) go through it too.
        sim.add_order = add_order  # type: ignore[method-assign]


@dataclass(frozen=True)
class PassInfo:
    start: float  # wall-clock seconds, estimated as log time − duration
    end: float
    window_start: float
    window_end: float


def read_passes(log: Path) -> list[PassInfo]:
    """Completed passes (``pass.done``) of the poller, oldest first."""
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{") or '"pass.done"' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") != "pass.done" or not rec.get("window_start"):
            continue
        end = datetime.fromisoformat(rec["timestamp"]).timestamp()
        out.append(PassInfo(
            start=end - float(rec.get("duration_ms") or 0) / 1000.0,
            end=end,
            window_start=datetime.fromisoformat(rec["window_start"]).timestamp(),
            window_end=datetime.fromisoformat(rec["window_end"]).timestamp(),
        ))
    return out


# --------------------------------------------------------------------------- monitoring


@dataclass
class Phase:
    """One fault: when it ran, what was injected, and how the backlog drained after it."""

    name: str
    title: str
    start: float
    end: float | None = None
    injected: dict[str, Any] = field(default_factory=dict)
    # (pending order ref → its ledger version, pending event ids)
    pending_at_start: tuple[dict[str, int], set[int]] = field(
        default_factory=lambda: ({}, set()))
    pending_at_end: tuple[dict[str, int], set[int]] = field(default_factory=lambda: ({}, set()))
    drained_at: float | None = None

    @property
    def drain_s(self) -> float | None:
        if self.end is None or self.drained_at is None:
            return None
        return round(self.drained_at - self.end, 1)


class LedgerMonitor:
    """Samples the ledger every ``interval`` s on a thread (outages are simply skipped)."""

    def __init__(self, db_url: str, store: str, interval: float = 1.0) -> None:
        self.ledger = Ledger(db_url)
        self.store = store
        self.interval = interval
        self.phases: list[Phase] = []
        self.samples: list[tuple[float, int, int]] = []  # (t, pending orders, pending events)
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._run, name="chaos-monitor", daemon=True)

    def __enter__(self) -> LedgerMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.ledger.dispose()

    def pending(self, attempts: int = 60) -> tuple[dict[str, int], set[int]]:
        """Pending orders (ref → version) and pending event ids (retried through outages)."""
        for i in range(attempts):
            try:
                with self.ledger.session() as s:
                    refs = {ref: version for ref, version in s.execute(
                        select(OrderRow.ref, OrderRow.version).where(
                            OrderRow.store == self.store,
                            OrderRow.state == OrderState.PENDING))}
                    evs = set(s.scalars(select(EventRow.id).where(
                        EventRow.store == self.store, EventRow.state == EventState.PENDING)))
                return refs, evs
            except Exception:
                if i == attempts - 1:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def begin(self, name: str, title: str) -> Phase:
        phase = Phase(name=name, title=title, start=time.time(), pending_at_start=self.pending())
        with self._lock:
            self.phases.append(phase)
        return phase

    def end(self, phase: Phase) -> None:
        phase.end = time.time()
        phase.pending_at_end = self.pending()

    def blockers(self, phase: Phase, limit: int = 10) -> list[str]:
        """Why ``phase`` has not drained yet: the orders and events still in the way."""
        if phase.end is None:
            return []
        refs, evs = phase.pending_at_end
        out = []
        with self.ledger.session() as s:
            for row in s.scalars(select(OrderRow).where(
                    OrderRow.store == self.store, OrderRow.ref.in_(list(refs)))):
                if row.state == OrderState.PENDING or row.version < refs[row.ref]:
                    out.append(f"order {row.ref} {row.state} synced_at={row.synced_at} "
                               f"attempts={row.attempts} next={row.next_attempt_at} "
                               f"lease={row.lease_until} error={(row.last_error or '')[:120]}")
            for ev in s.scalars(select(EventRow).where(
                    EventRow.id.in_(list(evs)), EventRow.state == EventState.PENDING)):
                out.append(f"event {ev.event_reference} pending attempts={ev.attempts}")
        return out[:limit]

    def _drained(self, phase: Phase) -> bool:
        """Every order pending at the phase's end has since been synced at that version or a
        later one (a sync requires the version to be unchanged since the claim, so the data as
        of the snapshot was delivered), and every pending event has been sent."""
        assert phase.end is not None
        refs, evs = phase.pending_at_end
        with self.ledger.session() as s:
            if refs:
                rows = s.execute(select(OrderRow.ref, OrderRow.state, OrderRow.version).where(
                    OrderRow.store == self.store, OrderRow.ref.in_(list(refs)))).all()
                for ref, state, version in rows:
                    if state == OrderState.PENDING or version < refs[ref]:
                        return False
            if evs and s.scalar(select(EventRow.id).where(
                    EventRow.id.in_(list(evs)), EventRow.state == EventState.PENDING).limit(1)):
                return False
        return True

    def sample(self) -> None:
        """One look at the ledger: pending counts, and which phases have drained by now."""
        refs, evs = self.pending(attempts=1)
        now = time.time()
        self.samples.append((now, len(refs), len(evs)))
        open_phases = [p for p in self.phases if p.end is not None and p.drained_at is None]
        for phase in open_phases:
            if self._drained(phase):
                phase.drained_at = now

    def settle(self) -> None:
        """A last sample, taken now (the thread may not have looked since the run drained)."""
        with self._lock:
            retry(self.sample, attempts=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self._lock:
                    self.sample()
            except Exception:
                continue  # PostgreSQL is restarting: sample again later


# ------------------------------------------------------------------------------ verdict


@dataclass
class Verdict:
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    figures: dict[str, Any] = field(default_factory=dict)
    phase_rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, message: str) -> None:
        self.violations[kind].append(message)

    @property
    def kinds(self) -> set[str]:
        return {k for k, v in self.violations.items() if v}

    def summary(self, per_kind: int = 8) -> str:
        parts = []
        for kind in sorted(self.kinds):
            msgs = self.violations[kind]
            parts.append(f"[{kind}] {len(msgs)}: " + "; ".join(msgs[:per_kind]))
        return "\n".join(parts)


@dataclass
class World:
    """Everything :func:`verify` reads, captured once after the run has drained."""

    shop: dict[int, dict[str, Any]]
    statuses: dict[int, dict[str, Any]]
    rows: dict[str, OrderRow]
    events: list[EventRow]
    logs: dict[str, list[LogRow]]
    wp: Any  # the WiredPlus simulator (its records are read as they are)

    @classmethod
    def capture(cls, sb: Sandbox, ledger: Ledger, store: str) -> World:
        sim = sb.shopwired
        shop = {oid: o for oid in sim.order_ids() if (o := sim.get_order(oid)) is not None}
        logs: dict[str, list[LogRow]] = defaultdict(list)
        with ledger.session() as s:
            for row in s.scalars(
                select(LogRow).where(LogRow.store == store).order_by(LogRow.id)
            ):
                logs[row.ref].append(row)
        return cls(
            shop=shop,
            statuses={int(st["id"]): st for st in sim.statuses},
            rows={r.ref: r for r in ledger.all_orders(store)},
            events=ledger.all_events(store),
            logs=logs,
            wp=sb.wiredplus,
        )


def _status_events(world: World) -> dict[int, str | None]:
    """Shop status id → the event its arrival triggers, per the (default) status map."""
    smap = StatusMap.from_toml(default_status_map_text())
    return {
        sid: smap.resolve(SourceStatus(id=str(sid), name=str(st["name"]),
                                       type=str(st["type"]).lower())).event
        for sid, st in world.statuses.items()
    }


def verify(
    world: World,
    *,
    scope_start: float,
    passes: list[PassInfo],
    appeared: dict[int, float],
    activity: dict[int, list[Change]],
    invalid_ids: Iterable[int],
    dead_letters: list[dict[str, Any]] | None,
    first_sight_window: timedelta,
    phases: list[Phase],
    margin: float = 5.0,
) -> Verdict:
    v = Verdict()
    wp = world.wp
    invalid = set(invalid_ids)
    fsw = first_sight_window.total_seconds()
    event_of = _status_events(world)
    status_id_by_name = {str(st["name"]).lower(): sid for sid, st in world.statuses.items()}
    rows, shop = world.rows, world.shop
    ledger_events = {e.event_reference: e for e in world.events}
    # WiredPlus events per (WiredPlus order id, event type): a status event is judged by its
    # type, so the check does not depend on how references are spelled.
    by_type: Counter[tuple[str, str]] = Counter(
        (str(e.get("order_id")), str(e.get("event_type"))) for e in wp.events.values())

    def emails(ref: str, event_type: str) -> int:
        return by_type[(str(wp.orders_by_ref.get(ref)), event_type)]

    def refund_emails(ref: str, refund_id: Any) -> int:
        wid = wp.orders_by_ref.get(ref)
        return sum(1 for e in wp.events.values()
                   if e.get("order_id") == wid and e.get("event_type") == "refunded"
                   and ":refund:" in str(e.get("event_reference"))
                   and str(e.get("event_reference")).endswith(f"id-{refund_id}"))

    def ref_of(oid: int) -> str:
        return str(oid)

    def recent(row: OrderRow) -> bool:
        return 0 <= epoch(row.first_seen_at) - epoch(row.created_at) <= fsw

    # -- which orders the daemon owed us ----------------------------------------------------
    def required(oid: int, created: float) -> bool:
        appeared_at = appeared.get(oid, float("-inf"))
        return any(p.start - 1.0 > appeared_at and p.window_start <= created <= p.window_end
                   for p in passes)

    in_scope = {oid for oid, o in shop.items() if created_epoch(o) >= scope_start}
    history = {oid for oid, o in shop.items() if created_epoch(o) < scope_start}
    required_ids = {oid for oid in in_scope if required(oid, created_epoch(shop[oid]))}
    out_of_contract = in_scope - required_ids
    for oid in sorted(required_ids):
        row = rows.get(ref_of(oid))
        if row is None:
            covering = [p for p in passes if p.window_start <= created_epoch(shop[oid])
                        <= p.window_end and p.start - 1.0 > appeared.get(oid, float("-inf"))]
            v.add("lost", f"order {oid} (created {shop[oid]['created']}, "
                          f"{'appeared mid-run' if oid in appeared else 'there from the start'})"
                          f" was in the window of {len(covering)} completed pass(es) "
                          f"(first at {covering[0].start:.0f}) but never reached the ledger")
            continue
        if oid in invalid:
            if row.state != OrderState.SKIPPED:
                v.add("dead-letters", f"invalid order {oid} is {row.state}, expected skipped")
            continue
        if ref_of(oid) not in wp.orders_by_ref:
            v.add("undelivered", f"order {oid} is in the ledger ({row.state}) but not in WiredPlus")

    # -- every ledger order: final state, delivered as the ledger last saw it ---------------
    delivered_ok: set[str] = set()
    for ref, row in rows.items():
        oid = int(row.source_order_id)
        if row.created_at is not None and epoch(row.created_at) < scope_start:
            v.add("history", f"order {oid} created {row.created_at} is before the start date")
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
        if current is not None:  # still in the shop: the ledger must be up to date with it
            sid = str(current["status"]["id"])
            refunds = sorted(f"id-{r['id']}" for r in current.get("refunds") or [])
            known = sorted(json.loads(row.refund_keys or "[]"))
            if row.status_id != sid or refunds != known:
                v.add("stale-ledger", f"order {oid}: shop status {sid} refunds {refunds}, "
                                      f"ledger status {row.status_id} refunds {known}")
                continue
        delivered_ok.add(ref)

    # -- nothing twice, nothing unknown -----------------------------------------------------
    for ref, n in wp.order_creations.items():
        if n != 1:
            v.add("duplicate", f"order {ref} created {n} times in WiredPlus")
    for ref, n in wp.event_creations.items():
        if n != 1:
            v.add("duplicate", f"event {ref} created {n} times in WiredPlus")
    for ref in wp.orders_by_ref:
        if ref not in rows:
            v.add("unknown", f"WiredPlus holds order {ref} the ledger never recorded")
        elif int(ref) in history:
            v.add("history", f"historical order {ref} was sent to WiredPlus")
    for ref in wp.events_by_ref:
        if ref not in ledger_events:
            v.add("unknown", f"WiredPlus holds event {ref} that is not in the outbox")
    for (order_wid, event_type), n in by_type.items():
        if event_type != "refunded" and n > 1:
            v.add("duplicate", f"WiredPlus order {order_wid} got {n} {event_type!r} events")

    # -- the outbox: every decided event delivered once, to the right order -----------------
    check_outbox(v, world.events, wp, rows, recent)

    # -- what the ledger observed must have produced its events -----------------------------
    observed_transitions = 0
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
            sid = status_id_by_name.get(name)
            first = entry.action == "seen"
            if sid is not None and name != prev:
                event = event_of.get(sid)
                if event and event != "refunded" and (not first or recent(row)):
                    observed_transitions += 1
                    if emails(ref, event) != 1:
                        v.add("event-missing", f"ledger saw order {ref} move into {name!r} "
                                               f"but {emails(ref, event)} {event!r} events "
                                               "reached WiredPlus (expected 1)")
            prev = name

    # -- the shop's own history: final status and refunds -----------------------------------
    provable = unprovable = forbidden = 0
    for oid, row_ in ((int(r.source_order_id), r) for r in rows.values()):
        current = shop.get(oid)
        if current is None or row_.state == OrderState.SKIPPED or oid in invalid:
            continue
        ref = row_.ref
        fs = epoch(row_.first_seen_at)
        sid = int(current["status"]["id"])
        event = event_of.get(sid)
        name = str(current["status"]["name"])
        if event and event != "refunded":
            into = [c for c in activity.get(oid, []) if c.kind == f"status:{name}"]
            last = into[-1] if into else None
            n = emails(ref, event)
            if recent(row_) or (last is not None and fs < last.t0):
                provable += 1
                if n != 1:
                    v.add("event-missing", f"order {oid} moved into {name!r} after it was "
                                           f"first seen; {n} {event!r} events (expected 1)")
            elif last is None or last.t1 + margin < fs:
                forbidden += 1
                if n:
                    v.add("history", f"order {oid} was already {name!r} when first seen "
                                     f"(created {current['created']}); yet {n} {event!r} "
                                     "event(s) were sent")
            else:
                unprovable += 1
        for refund in current.get("refunds") or []:
            made = parsedate_to_datetime(refund["createdAt"]).timestamp()
            n = refund_emails(ref, refund["id"])
            if recent(row_) or made >= fs:
                provable += 1
                if n != 1:
                    v.add("event-missing", f"refund {refund['id']} of order {oid} came after "
                                           f"first sight; {n} refund events (expected 1)")
            elif made + 1 + margin < fs:
                forbidden += 1
                if n:
                    v.add("history", f"refund {refund['id']} of order {oid} predates first "
                                     f"sight of an old order; yet it was mailed")
            else:
                unprovable += 1

    # -- dead letters: only the orders made invalid on purpose ------------------------------
    if dead_letters is None:
        v.add("dead-letters", "`ordersync dlq list --json` failed (see the results file)")
        dead_letters = []
    dl_ids = {int(d["order"]) for d in dead_letters}
    dl_kinds = Counter(d["kind"] for d in dead_letters)
    expected_dl = {oid for oid in invalid if ref_of(oid) in rows}
    if dl_ids != expected_dl or set(dl_kinds) - {"unmappable"}:
        v.add("dead-letters", f"dead letters {sorted(dl_ids)} ({dict(dl_kinds)}), expected the "
                              f"invalid orders {sorted(expected_dl)} as unmappable")
    for oid in invalid & required_ids:
        if oid in shop and oid not in dl_ids:
            v.add("dead-letters", f"invalid order {oid} is not in the dead-letter list")

    # -- figures ------------------------------------------------------------------------------
    valid_required = {oid for oid in required_ids if oid not in invalid}
    lost_ids = {oid for oid in valid_required if ref_of(oid) not in rows}
    v.figures = {
        "shop_orders": len(shop),
        "history_orders": len(history),
        "in_scope_orders": len(in_scope),
        "required_orders": len(valid_required),
        "required_delivered": sum(1 for oid in valid_required if ref_of(oid) in delivered_ok),
        "out_of_contract_orders": len(out_of_contract),
        "out_of_contract_ingested": sum(1 for o in out_of_contract if ref_of(o) in rows),
        "ledger_orders": len(rows),
        "wiredplus_orders": len(wp.orders_by_ref),
        "orders_delivered_current": len(delivered_ok),
        "orders_lost": len(lost_ids),
        "orders_duplicated": sum(1 for n in wp.order_creations.values() if n > 1),
        "ledger_events": len(world.events),
        "wiredplus_events": len(wp.events_by_ref),
        "events_duplicated": sum(1 for n in wp.event_creations.values() if n > 1),
        "events_lost": sum(1 for e in world.events if e.event_reference not in wp.events_by_ref),
        "observed_event_transitions": observed_transitions,
        "activity_events_provable": provable,
        "activity_events_forbidden_checked": forbidden,
        "activity_events_unprovable": unprovable,
        "dead_letters": len(dead_letters),
        "invalid_orders": len(invalid),
    }
    lost_at = {}
    for oid in lost_ids:
        created = created_epoch(shop[oid])
        lost_at[ref_of(oid)] = min(p.start for p in passes if p.window_start <= created
                                   <= p.window_end)
    skipped = {r for r, row in rows.items() if row.state == OrderState.SKIPPED}
    v.phase_rows = [phase_row(p, world, delivered_ok, lost_at=lost_at, skipped=skipped,
                              first=i == 0)
                    for i, p in enumerate(phases)]
    return v


def phase_row(
    phase: Phase, world: World, delivered_ok: set[str], *, lost_at: dict[str, float],
    skipped: set[str], first: bool,
) -> dict[str, Any]:
    """Figures of one fault: the work that existed while it ran, and what became of it."""
    assert phase.end is not None
    start = datetime.fromtimestamp(phase.start, UTC)
    end = datetime.fromtimestamp(phase.end, UTC)
    refs = set(phase.pending_at_start[0])
    for ref, entries in world.logs.items():
        if any(e.action in ("seen", "changed") and start <= e.at <= end for e in entries):
            refs.add(ref)
    refs -= skipped
    # An order that never reached the ledger is charged to the phase in which the first pass
    # that should have read it started.
    refs |= {ref for ref, t in lost_at.items()
             if (first or phase.start <= t) and t <= phase.end}
    event_ids = set(phase.pending_at_start[1])
    evs = [e for e in world.events if e.id in event_ids or start <= e.created_at <= end]
    wp = world.wp
    delivered = refs & delivered_ok
    ev_delivered = [e for e in evs if e.event_reference in wp.events_by_ref]
    return {
        "fault": phase.title,
        "name": phase.name,
        "injected": phase.injected,
        "duration_s": round(phase.end - phase.start, 1),
        "orders_expected": len(refs),
        "orders_delivered": len(delivered),
        "orders_lost": len(refs - delivered),
        "orders_duplicated": sum(1 for r in refs if wp.order_creations.get(r, 0) > 1),
        "events_expected": len(evs),
        "events_delivered": len(ev_delivered),
        "events_lost": len(evs) - len(ev_delivered),
        "events_duplicated": sum(1 for e in evs if wp.event_creations.get(e.event_reference,
                                                                          0) > 1),
        "pending_at_end": [len(phase.pending_at_end[0]), len(phase.pending_at_end[1])],
        "drain_s": phase.drain_s,
    }


def retry_gaps(logs: Iterable[Path]) -> dict[str, Any]:
    """From the workers' ``order.push`` lines: how long an order waited after a failed attempt
    before the next one (the schedule says ORDERSYNC_RETRY_BASE for the first retry)."""
    pushes: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for log in logs:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            i = line.find("{")
            if i < 0 or '"order.push"' not in line:
                continue
            try:
                rec = json.loads(line[i:])
            except ValueError:
                continue
            when = datetime.fromisoformat(rec["timestamp"]).timestamp()
            pushes[str(rec.get("ref"))].append((when, str(rec.get("outcome"))))
    gaps = sorted(b[0] - a[0] for seq in pushes.values()
                  for a, b in zip(sorted(seq), sorted(seq)[1:], strict=False)
                  if a[1] == "retry")
    outcomes = Counter(o for seq in pushes.values() for _, o in seq)
    if not gaps:
        return {"retries": 0, "outcomes": dict(outcomes)}
    return {"retries": len(gaps), "min_s": round(gaps[0], 1),
            "median_s": round(gaps[len(gaps) // 2], 1), "max_s": round(gaps[-1], 1),
            "outcomes": dict(outcomes)}


def retry(fn: Callable[[], Any], attempts: int = 30, pause: float = 1.0) -> Any:
    """Call ``fn`` until it does not raise (used around reads right after an outage)."""
    for i in range(attempts):
        try:
            return fn()
        except Exception:
            if i == attempts - 1:
                raise
            time.sleep(pause)
    return None


def check_outbox(v: Verdict, events: Any, wp: Any, rows: dict[str, OrderRow],
                 recent: Callable[[OrderRow], bool]) -> None:
    """Every decided event sent once, to the right WiredPlus order and type; none decided at
    first sight of an old order (shared by both chaos runs' verdicts)."""
    for ev in events:
        if ev.state != EventState.SENT:
            v.add("not-drained", f"event {ev.event_reference} is {ev.state} ({ev.last_error})")
            continue
        wid = wp.events_by_ref.get(ev.event_reference)
        stored = wp.events.get(wid) if wid else None
        order_wid = wp.orders_by_ref.get(ev.order_ref)
        if stored is None:
            v.add("undelivered", f"event {ev.event_reference} sent per ledger, not in WiredPlus")
        elif stored.get("event_type") != ev.event_type or stored.get("order_id") != order_wid:
            v.add("misdirected", f"event {ev.event_reference}: {stored.get('event_type')} on "
                                 f"{stored.get('order_id')}, expected {ev.event_type} on "
                                 f"{order_wid}")
        row = rows.get(ev.order_ref)
        if row is not None and abs(epoch(ev.created_at) - epoch(row.first_seen_at)) < 1e-3 \
                and not recent(row):
            v.add("history", f"event {ev.event_reference} decided at first sight of an order "
                             f"created {row.created_at}, first seen {row.first_seen_at}")
