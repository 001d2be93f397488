"""The refresh plan: how polling re-reads open orders within a bound set by the budget (pure).

ShopWired has no updated-since filter, so a status change or a refund on an order the ledger
already holds is only noticed by reading that order again (``ids=``, 50 per call). This module
decides, without any I/O:

* **how many calls polling may spend** — a share of the ShopWired rate (``share × rate``);
  the new-order scan and webhook refreshes are paid from it first, re-reads get the rest
  (:class:`RefreshPacer`, which also spreads the calls evenly: never a burst that empties
  the bucket other clients of the same API key draw from);
* **how stale an open order may get** — the *staleness bound*: the longest interval between
  two reads of any open order, so that every order's reads together fit in what is left of the
  share (:func:`plan_refresh`). Freshness targets by status (:mod:`sync.domain.freshness`)
  decide the order within the bound: a status whose target is shorter than the bound gets the
  extra reads it asks for as long as they fit, every other order is read once per bound;
* **which orders to read next** — the most overdue against their planned interval
  (:func:`most_overdue`);
* **how to read them** — ``ids=`` (50 known orders a call) or re-listing their created-date
  range (100 a call): re-listing where most orders of the range are open and its reads are
  worth more than the ``ids=`` call's, counting each read by how much of the order's
  interval has passed (:func:`relist_window`).

With 2 calls/s and the default 30 % share, re-reads get about 0.57 calls/s (28 orders/s):
in turn, 2,000 open orders are all re-read every 71 s, 20,000 every 12 minutes; statuses
likely to change may take extra reads, which at most stretches that to 3 and 30 minutes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sync.domain.freshness import target_for

IDS_PER_CALL = 50
"""Orders one ``ids=`` call reads."""
LIST_PER_CALL = 100
"""Orders one created-date listing call reads."""
EXTRA_READS_AT_MOST = 0.6
"""Of the re-read calls, the most that may go to orders read more often than in turn (their
freshness target is shorter than the round robin): the bound is then at most 2.5 round
robins — with 2 calls/s and the 30 % share, about 3 minutes for 2,000 open orders and 30 for
20,000, whatever their statuses."""


def polling_calls_per_second(rate: float, share: float) -> float:
    """Calls per second polling may spend in all: ``share`` (0–1) of the API's ``rate``."""
    return max(0.0, rate) * min(max(0.0, share), 1.0)


@dataclass(frozen=True)
class RefreshPlan:
    """What polling can promise with the calls it has.

    ``bound`` is None when there is no budget for re-reads at all (polling off, or scans and
    webhook refreshes take the whole share): then no open order is re-read by polling.
    """

    open_orders: int
    calls_per_second: float
    bound: timedelta | None
    intervals: Mapping[str, timedelta] = field(default_factory=dict)
    calls_per_hour: float = 0.0

    def interval_for(self, order_status: str | None) -> timedelta | None:
        """How long after its last read an order of this status is due again."""
        if self.bound is None:
            return None
        return min(self.intervals.get(order_status or "unknown", self.bound), self.bound)

    def exceeds(self, alert: timedelta) -> bool:
        """True when the bound is longer than ``alert`` (or there is no bound at all)."""
        return self.bound is None or self.bound > alert


def plan_refresh(
    open_by_status: Mapping[str | None, int],
    *,
    calls_per_second: float,
    targets: Mapping[str, timedelta],
    floor: timedelta,
) -> RefreshPlan:
    """The staleness bound and each status's re-read interval for these open orders.

    ``calls_per_second`` is what re-reads may spend (the share left after scans and webhook
    refreshes); each call reads :data:`IDS_PER_CALL` orders. ``floor`` is the shortest interval
    any order is re-read at (0: the budget alone decides).

    Reading every open order in turn would re-read each once per ``open ÷ capacity`` (the
    *round robin*). Statuses whose freshness target is shorter than that get extra reads, but
    extra reads never take more than :data:`EXTRA_READS_AT_MOST` of the calls, so the bound
    stays within ``round robin ÷ (1 − EXTRA_READS_AT_MOST)``: each status is read every
    ``min(target, bound)`` when that fits (the shortest such bound, found by water-filling);
    otherwise the targets are stretched alike until it does.
    """
    counts: dict[str, int] = {}
    for status, n in open_by_status.items():
        if n > 0:
            key = status or "unknown"
            counts[key] = counts.get(key, 0) + n
    total = sum(counts.values())
    if calls_per_second <= 0:
        return RefreshPlan(total, 0.0, None)
    floor_s = max(floor.total_seconds(), 1e-3)
    if total == 0:
        return RefreshPlan(0, calls_per_second, timedelta(seconds=floor_s))
    capacity = calls_per_second * IDS_PER_CALL  # orders per second
    groups = sorted(
        (max(target_for(s, targets).total_seconds(), floor_s), n, s) for s, n in counts.items()
    )
    round_robin = max(total / capacity, floor_s)
    longest = round_robin / (1.0 - EXTRA_READS_AT_MOST)
    bound_s = _water_fill(groups, capacity, floor_s)
    stretch = 1.0
    if bound_s is None or bound_s > longest:
        bound_s = longest
        stretch = _stretch(groups, capacity, bound_s)
    # Rounded *up* to the microsecond: rounding down would plan more reads than fit.
    intervals = {s: _at_least(min(t * stretch, bound_s)) for t, _, s in groups}
    bound_s = max(i.total_seconds() for i in intervals.values())  # the longest planned
    demand = sum(n / intervals[s].total_seconds() for _, n, s in groups)  # orders/s
    return RefreshPlan(
        open_orders=total,
        calls_per_second=calls_per_second,
        bound=timedelta(seconds=bound_s),
        intervals=intervals,
        calls_per_hour=demand * 3600 / IDS_PER_CALL,
    )


def _at_least(seconds: float) -> timedelta:
    """``seconds`` as a timedelta, rounded up to the next microsecond (never shorter)."""
    return timedelta(microseconds=math.ceil(seconds * 1_000_000 - 1e-6))


def _water_fill(groups: list[tuple[float, int, str]], capacity: float,
                floor_s: float) -> float | None:
    """The shortest bound B with every group read every ``min(target, B)`` within
    ``capacity`` orders/s; None when even the targets alone do not fit."""
    for k in range(len(groups)):
        left = capacity - sum(n / t for t, n, _ in groups[:k])
        if left <= 0:
            return None
        b = max(sum(n for _, n, _ in groups[k:]) / left, floor_s)
        if (k == 0 or groups[k - 1][0] < b) and b <= groups[k][0]:
            return b
    return None


def _stretch(groups: list[tuple[float, int, str]], capacity: float, bound_s: float) -> float:
    """The smallest factor ≥ 1 by which to lengthen every target so that reading each group
    every ``min(factor × target, bound)`` fits in ``capacity`` (bisection; at the bound for
    everyone it always fits)."""

    def demand(f: float) -> float:
        return sum(n / min(f * t, bound_s) for t, n, _ in groups)

    lo, hi = 1.0, max(bound_s / groups[0][0], 1.0)
    if demand(lo) <= capacity:
        return lo
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if demand(mid) <= capacity else (mid, hi)
    return hi


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An open order as the planner sees it."""

    ref: str
    order_id: str
    order_status: str | None
    last_checked_at: datetime
    created_at: datetime | None = None


def overdue_by(order: OpenOrder, plan: RefreshPlan, now: datetime) -> timedelta | None:
    """How long past its planned re-read ``order`` is (negative: not due yet; None: never)."""
    interval = plan.interval_for(order.order_status)
    if interval is None:
        return None
    return now - (order.last_checked_at + interval)


def most_overdue(
    orders: Iterable[OpenOrder], plan: RefreshPlan, now: datetime, limit: int,
    *, ahead: bool = False,
) -> list[OpenOrder]:
    """Up to ``limit`` orders due for a re-read, the most overdue first (ties: oldest read).

    With ``ahead``, orders not due yet follow the due ones, the nearest to due first: calls
    the share has to spare read ahead, so the sweep never bunches up (after an install every
    order was read at once and would otherwise all fall due at once, a bound later)."""
    # Most overdue first = earliest planned read first (``overdue_by`` is now minus it), so
    # the order does not depend on ``now``; one interval lookup per status, and only the
    # ``limit`` first are sorted out of a pool that may hold several calls' worth.
    intervals: dict[str | None, timedelta | None] = {}
    due: list[tuple[datetime, datetime, str, OpenOrder]] = []
    for o in orders:
        status = o.order_status
        if status in intervals:
            interval = intervals[status]
        else:
            interval = intervals[status] = plan.interval_for(status)
        if interval is None:
            continue
        planned = o.last_checked_at + interval
        if ahead or planned <= now:
            due.append((planned, o.last_checked_at, o.ref, o))
    return [d[3] for d in heapq.nsmallest(max(limit, 0), due, key=lambda d: d[:3])]


Read = Literal["ids", "list"]


def read_cost(kind: Read, orders: int) -> int:
    """ShopWired calls to read ``orders`` by ``ids=`` (the due ones) or by listing the
    created-date range they span (every order created in it, due or not, 100 a page; the
    range is cut where the ledger's orders fill a page, so no closing call is needed)."""
    if orders <= 0:
        return 0
    return math.ceil(orders / (IDS_PER_CALL if kind == "ids" else LIST_PER_CALL))


def cheaper_read(due: int, listed: int) -> Read:
    """``ids=`` for ``due`` known orders, or re-listing the created-date range they span
    (``listed`` orders created in it, open or not) — whichever is fewer calls (ties: ids)."""
    return "list" if read_cost("list", listed) < read_cost("ids", due) else "ids"


def read_worth(order: OpenOrder, plan: RefreshPlan, now: datetime) -> float:
    """What re-reading ``order`` now is worth: the share of its planned interval that has
    passed since its last read (0 just read, 1 due now, above 1 overdue; 0 when the plan
    re-reads nothing). A read ahead of time is not wasted — it pushes the order's next read
    out — but only by the time that passed, so it is worth that share of a due read."""
    interval = plan.interval_for(order.order_status)
    if interval is None:
        return 0.0
    return max(0.0, (now - order.last_checked_at) / max(interval, timedelta(milliseconds=1)))


def relist_window(
    window: Sequence[tuple[OpenOrder, bool]],
    now: datetime,
    floor: timedelta = timedelta(0),
    *,
    plan: RefreshPlan,
    chunk: Sequence[OpenOrder],
) -> tuple[datetime, datetime] | None:
    """Whether to re-list a page instead of an ``ids=`` call, and which created range.

    ``window`` is what the ledger holds from the most urgent order on, by created date (each
    with whether it is open), at most one page (:data:`LIST_PER_CALL`); ``chunk`` is what the
    ``ids=`` call would read instead (the most overdue open orders, at most
    :data:`IDS_PER_CALL`). Returns the created range to list when both hold, else None:

    * it is fewer calls for this range — most of its orders open (a young shop, a busy week):
      by ``ids=`` a call per 50 open orders, by listing a call per 100 orders created;
    * its reads are worth more than the ``ids=`` call's, each read weighted by
      :func:`read_worth` (the share of the order's planned interval that has passed). The
      100 orders created next to the most overdue one are often not due: re-listing them
      for the one or two that are (the short-interval statuses, spread over every date)
      would spend the plan's 50 due reads a call on orders read minutes ago, and the other
      overdue orders would fall behind the bound.

    Orders read less than ``floor`` ago count for nothing; closed orders in the range are
    read but worth nothing; an order without a created date ends the range (it cannot be
    listed past)."""
    dated: list[tuple[OpenOrder, bool]] = []
    for o, is_open in window[:LIST_PER_CALL]:
        if o.created_at is None:
            break
        dated.append((o, is_open))
    wanted = [o for o, is_open in dated if is_open and now - o.last_checked_at >= floor]
    if not dated or cheaper_read(len(wanted), len(dated)) != "list":
        return None
    listed = sum(read_worth(o, plan, now) for o in wanted)
    by_id = sum(read_worth(o, plan, now) for o in chunk[:IDS_PER_CALL]
                if now - o.last_checked_at >= floor)
    if listed <= by_id:
        return None
    first, last = dated[0][0].created_at, dated[-1][0].created_at
    assert first is not None and last is not None
    return first, last


@dataclass
class RefreshPacer:
    """Spends a rate of calls evenly (pure: time is passed in, in monotonic seconds).

    Credit accrues at ``rate`` calls per second up to ``burst`` calls (so an idle spell never
    turns into a burst). The poller runs it at the re-read rate (the share minus what the
    new-order scan and webhook refreshes took on average) and spends each re-read's calls,
    retries included, from it. :meth:`pause` says how long to wait before the next re-read
    keeps the pace.
    """

    rate: float
    burst: float
    credit: float = 0.0
    at: float | None = None

    def accrue(self, now: float) -> float:
        """Bring the credit up to ``now``; returns it."""
        if self.at is not None and now > self.at:
            self.credit = min(self.burst, self.credit + (now - self.at) * self.rate)
        if self.at is None or now > self.at:
            self.at = now
        return self.credit

    def spend(self, calls: float, now: float) -> None:
        self.accrue(now)
        self.credit -= calls

    def absorb(self, calls: float, now: float) -> None:
        """Calls made outside the re-reads (a scan page, a webhook refresh) use up credit
        saved for a burst, never more: right after them no burst follows, but a long scan
        does not stop re-reads until it is paid back (the rate already leaves it room)."""
        self.accrue(now)
        self.credit = max(min(self.credit, 0.0), self.credit - calls)

    def available(self, now: float) -> int:
        """Whole calls that may be made now."""
        return max(0, math.floor(self.accrue(now) + 1e-9)) if self.rate > 0 else 0

    def pause(self) -> float:
        """Seconds between two re-reads at this rate."""
        return 1.0 / self.rate if self.rate > 0 else math.inf


DUE_POOL_CALLS = 8
"""Re-read calls' worth of due candidates one ledger look fetches (per status); the pool is
used up across calls instead of querying every status again before each call."""
DUE_POOL_MAX_AGE_S = 10.0
"""Seconds a pool of due candidates is used before the ledger is asked again (orders that
passed the re-read floor since are then seen)."""


class DuePool:
    """Due candidates of one round of re-reads, fetched from the ledger once for several
    calls (a busy poller spent a quarter of its CPU asking before every call). Taking the
    most overdue from the pool gives what a fresh ledger look would, as long as every status
    whose look was cut at the limit still holds a whole call of unread candidates: within a
    status the least recently read is the most overdue, and the ones the look left out were
    read more recently than all of them. The pool asks for a new look otherwise, and after
    :data:`DUE_POOL_MAX_AGE_S` in any case (orders crossing the re-read floor since are then
    seen). The statuses the plan does not name share one look ordered by last read; a larger
    look there can only find more overdue orders than the per-call one did."""

    def __init__(self) -> None:
        self.candidates: list[OpenOrder] = []
        self._cut: set[str | None] = set()
        self._known: set[str] = set()
        self._fetched_at: float | None = None

    def fill(self, due: Sequence[OpenOrder], limit: int, statuses: set[str],
             mono: float) -> None:
        """The ledger's answer: ``due`` holds up to ``limit`` orders of each of ``statuses``
        and up to ``limit`` of every other status together (the ledger's look)."""
        self.candidates = list(due)
        self._known = statuses
        counts: dict[str | None, int] = {}
        for o in due:
            key = self._group(o)
            counts[key] = counts.get(key, 0) + 1
        self._cut = {g for g, n in counts.items() if n >= limit}
        self._fetched_at = mono

    def _group(self, order: OpenOrder) -> str | None:
        status = order.order_status
        return status if status in self._known else None

    def read(self, refs: Iterable[str]) -> None:
        """``refs`` were just read: they are no longer candidates."""
        done = set(refs)
        if done:
            self.candidates = [o for o in self.candidates if o.ref not in done]

    def next_chunk(self, plan: RefreshPlan, now: datetime, mono: float,
                   look: Callable[[], None]) -> list[OpenOrder]:
        """The next call's orders (:func:`most_overdue`, reading ahead), calling ``look`` to
        refill the pool from the ledger first when it is needed, and once more when the pool
        is used up (anything due since?). Empty: nothing is due."""
        looked = self.needs_look(mono)
        if looked:
            look()
        chunk = most_overdue(self.candidates, plan, now, IDS_PER_CALL, ahead=True)
        if not chunk and not looked:
            look()
            chunk = most_overdue(self.candidates, plan, now, IDS_PER_CALL, ahead=True)
        return chunk

    def needs_look(self, mono: float) -> bool:
        """Whether the ledger must be asked again before taking the next call's orders."""
        if self._fetched_at is None or mono - self._fetched_at >= DUE_POOL_MAX_AGE_S:
            return True
        if not self._cut:
            return False
        left: dict[str | None, int] = {}
        for o in self.candidates:
            key = self._group(o)
            left[key] = left.get(key, 0) + 1
        return any(left.get(g, 0) < IDS_PER_CALL for g in self._cut)
