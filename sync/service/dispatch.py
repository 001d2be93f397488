"""How pushes are carried out: in-process (embedded mode) or as Celery tasks.

The ledger decides *what* is due; a dispatcher only says "look at these orders now". Losing a
dispatch is harmless — the sweeper in every pass re-dispatches whatever is still due.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from sync.clock import Clock
from sync.service.push import Pusher, PushResult


class StopCheck(Protocol):
    """``() -> bool``: whether a stop was asked for. (A callable protocol, not
    ``Callable[[], bool]``: mypy takes a dataclass field of that type with a default for a
    read-only, method-like member, which a settable protocol member does not accept.)"""

    def __call__(self) -> bool: ...


class Dispatcher(Protocol):
    """Carries out pushes: in-process (:class:`InlineDispatcher`) or through the broker
    (:class:`QueueDispatcher`)."""

    should_stop: StopCheck
    """Asked between pushes (SIGTERM): when true, what is not started stays pending."""

    def dispatch(self, store: str, refs: Sequence[str]) -> None:
        """A change was just recorded for ``refs``: push them now."""
        ...

    def sweep(self, store: str, due: Sequence[tuple[str, Hashable]]) -> None:
        """The per-pass re-dispatch of everything still due (each ref with the stamp of its
        work, :meth:`~sync.ledger.store.Ledger.due_work`)."""
        ...

    def backlogged(self, store: str) -> bool:
        """True while this dispatcher itself holds work of the store still to be sent or
        taken (then the due orders it would find in the ledger are mostly those: the
        between-pass sweep can wait, and :meth:`dispatch` with no refs moves the backlog)."""
        ...


@dataclass
class InlineDispatcher:
    """Embedded mode: push each order right here; when ``dispatch`` returns, all are done."""

    pusher: Pusher
    outcomes: Counter[str] = field(default_factory=Counter)
    events_sent: int = 0
    order_calls: int = 0
    on_result: Callable[[str], None] | None = None
    should_stop: StopCheck = lambda: False  # SIGTERM: leave the rest pending

    batch: int = 20  # orders per ``Pusher.push_many`` (one claim, one closing transaction)
    # Issue #17: batches pushed at once (ORDERSYNC_PUSH_CONCURRENCY), so WiredPlus's latency
    # overlaps. Batches hold disjoint orders and each order's lease keeps it from being pushed
    # twice at once; within a batch an order's events still follow its UpdateOrder.
    concurrency: int = 1

    def dispatch(self, store: str, refs: Sequence[str]) -> None:
        """Push each order now, ``batch`` at a time, up to ``concurrency`` batches at once;
        returns when all are done. When ``should_stop`` turns true the batches not started
        stay pending in the ledger, where the next pass (or run) finds them."""
        unique = list(dict.fromkeys(refs))
        size = max(self.batch, 1)
        if self.concurrency > 1 and not self.pusher.sink.bulk_enabled:
            # One call per order: smaller batches keep ``concurrency`` requests in flight.
            size = min(size, max(1, -(-len(unique) // self.concurrency)))
        batches = [unique[i : i + size] for i in range(0, len(unique), size)]
        if self.concurrency <= 1 or len(batches) <= 1:
            for chunk in batches:
                if self.should_stop():
                    return
                self._count(self.pusher.push_many(store, chunk))
            return

        def run(chunk: list[str]) -> list[PushResult]:
            return [] if self.should_stop() else self.pusher.push_many(store, chunk)

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches)),
                                thread_name_prefix="ordersync-push") as pool:
            futures = [pool.submit(run, chunk) for chunk in batches]
            for future in futures:  # a fatal error propagates once all have finished
                self._count(future.result())

    def sweep(self, store: str, due: Sequence[tuple[str, Hashable]]) -> None:
        """Push every due order now (:meth:`dispatch`): in-process there is no queue that
        could still hold an earlier dispatch, so the stamps are not needed."""
        refs = [ref for ref, _ in due]
        if refs:
            self.dispatch(store, refs)

    def backlogged(self, store: str) -> bool:
        """Never: in-process pushes are done when :meth:`dispatch` returns."""
        return False

    def _count(self, results: list[PushResult]) -> None:
        for result in results:
            self.outcomes[result.outcome] += 1
            self.events_sent += result.events_sent
            self.order_calls += 1 if result.order_call else 0
            if self.on_result:
                self.on_result(result.outcome)


PRIORITY_STEPS = (0, 3, 6, 9)
"""Broker priorities a batch may get, first served first (kombu's Redis steps: each is a list
of its own, and a worker takes from the lowest non-empty one)."""


def batch_priority(ahead: int, batch: int) -> int:
    """The priority of a store's batch with ``ahead`` of its orders already queued: 0 with
    none (its first batch: a store just added, a change), 3 within four batches, 6 within
    ten, 9 beyond (a backfill's steady state)."""
    if ahead < batch:
        return PRIORITY_STEPS[0]
    if ahead < 4 * batch:
        return PRIORITY_STEPS[1]
    if ahead < 10 * batch:
        return PRIORITY_STEPS[2]
    return PRIORITY_STEPS[3]


CHECK_OLDEST = 500
"""Queued sends looked up per check while a store is at its share."""

PRUNE_AT = 20_000
"""Remembered sends (order, when) above which the ones older than the cooldown are dropped."""


@dataclass
class QueueDispatcher:
    """Broker mode: hand each order to ``send`` (a Celery ``delay``).

    ``dispatch`` (a change was just recorded) sends at once. ``sweep`` (the re-dispatch of
    everything still due) sends an order at most once per ``cooldown`` seconds, so a slow
    queue is not flooded while a lost message is still re-sent within a cooldown.

    **A store's share of the workers** (``max_queued``): at most that many of one store's
    orders wait in the broker queue at a time; the rest wait in the ledger (still pending,
    nothing lost) and are sent as the workers take the store's earlier ones — checked with
    ``still_queued`` (the ledger: which of these are pending and not claimed by a worker) at
    most every ``recheck`` seconds while the store is at its limit. So a store backfilling
    100,000 orders holds at most ``max_queued`` orders ahead of another store's change in
    the shared FIFO queue, instead of its whole backlog. None = no limit.

    **Who goes first** (with ``max_queued``): each batch carries a broker priority
    (:func:`batch_priority`) from how many of its store's orders are queued ahead of it —
    0 (first) when none are, later the longer the store's queue. The broker hands out
    lower numbers first (Redis: one list per step, :data:`PRIORITY_STEPS`), so a store
    just added, or a single change, is taken before the backlogs of 50 stores' first
    syncs; stores with long queues share what is left, first in first out."""

    send: Callable[[str, str], None]
    clock: Clock
    cooldown: float = 120.0
    _recent: dict[tuple[str, str], float] = field(default_factory=dict)
    _stamps: dict[tuple[str, str], Hashable] = field(default_factory=dict)
    sent: int = 0
    # One broker message per ``batch`` orders (a worker pushes them one by one): the broker
    # round trips per order drop from one to 1/batch. None = one message per order.
    send_many: Callable[[str, list[str], int], None] | None = None
    batch: int = 20
    # Sending only enqueues (a worker pushes), so nothing long runs to be stopped: never read.
    should_stop: StopCheck = lambda: False
    max_queued: int | None = None
    still_queued: Callable[[str, Sequence[str]], Collection[str]] | None = None
    recheck: float = 0.5
    _queued: dict[str, dict[str, float]] = field(default_factory=dict)
    _waiting: dict[str, dict[str, Hashable | None]] = field(default_factory=dict)
    _checked: dict[str, float] = field(default_factory=dict)
    _prune_at: int = PRUNE_AT

    def _send(self, store: str, refs: list[str], ahead: int) -> None:
        """Send ``refs``; ``ahead`` of the store's orders are already queued."""
        if self.send_many is None:
            for ref in refs:
                self.send(store, ref)
        else:
            for i in range(0, len(refs), self.batch):
                self.send_many(store, refs[i : i + self.batch],
                               batch_priority(ahead + i, self.batch))
        self.sent += len(refs)

    def _prune(self, now: float) -> None:
        """Forget sends older than the cooldown: memory stays bounded over a long backfill.
        Amortised: after a prune the next waits until the map has doubled (at least
        :data:`PRUNE_AT` entries), so a store that sent 100,000 orders within one cooldown —
        none of them old enough to forget — is not copied over again on every dispatch (a
        backfilling store's loop spent most of its time doing that)."""
        if len(self._recent) > self._prune_at:
            self._recent = {k: t for k, t in self._recent.items() if now - t < self.cooldown}
            self._stamps = {k: v for k, v in self._stamps.items() if k in self._recent}
            self._prune_at = max(PRUNE_AT, 2 * len(self._recent))

    def backlogged(self, store: str) -> bool:
        return bool(self._waiting.get(store)) or bool(self._queued.get(store))

    def queued(self, store: str) -> int:
        """The store's orders sent and, as far as this dispatcher knows, still queued."""
        return len(self._queued.get(store, {}))

    def waiting(self, store: str) -> int:
        """The store's orders held back by ``max_queued`` (pending in the ledger)."""
        return len(self._waiting.get(store, {}))

    def dispatch(self, store: str, refs: Sequence[str]) -> None:
        now = self.clock.monotonic()
        self._prune(now)
        waiting = self._waiting.setdefault(store, {})
        for ref in refs:
            waiting.setdefault(ref, None)
        self._drain(store, now)

    def sweep(self, store: str, due: Sequence[tuple[str, Hashable]]) -> None:
        """Re-send due work. The cooldown is keyed on the work, not the order: an order whose
        stamp (:meth:`~sync.ledger.store.Ledger.due_work`) changed is sent at once — a retry
        or a deferral came due (a throttled push is rescheduled without spending an attempt,
        with a new ``next_attempt_at``), or it changed again. The very same work is re-sent
        only after ``cooldown`` (its message may still be queued — or lost with a flushed
        broker)."""
        now = self.clock.monotonic()
        self._prune(now)
        waiting = self._waiting.setdefault(store, {})
        for ref, stamp in due:
            key = (store, ref)
            last = self._recent.get(key)
            if last is not None and self._stamps.get(key) == stamp and now - last < self.cooldown:
                continue
            waiting[ref] = stamp
        self._drain(store, now)

    def _drain(self, store: str, now: float) -> None:
        """Send the store's waiting orders, oldest first, as far as its share allows."""
        waiting = self._waiting.get(store)
        if not waiting:
            return
        room = self._room(store, now)
        if room <= 0:
            return
        refs = list(islice(waiting, room))
        queued = self._queued.setdefault(store, {})
        ahead = len(queued)
        for ref in refs:
            stamp = waiting.pop(ref)
            key = (store, ref)
            self._recent[key] = now
            if stamp is not None:
                self._stamps[key] = stamp
            if self.max_queued is not None:
                queued[ref] = now
        self._send(store, refs, ahead)

    def _room(self, store: str, now: float) -> int:
        if self.max_queued is None:
            return sys.maxsize
        queued = self._queued.setdefault(store, {})
        if len(queued) >= self.max_queued and now - self._checked.get(store, -1e18) >= self.recheck:
            self._checked[store] = now
            # The queue is first in, first out: the oldest sends are the ones taken first,
            # so looking at them is enough (a bounded query however large the share).
            oldest = list(islice(queued, CHECK_OLDEST))
            alive = (set(self.still_queued(store, oldest))
                     if self.still_queued is not None else set(oldest))
            # A message older than the cooldown may be lost (a flushed broker): the sweep
            # sends that order again, so it no longer counts against the share.
            for ref in oldest:
                if ref not in alive or now - queued[ref] >= self.cooldown:
                    del queued[ref]
        return self.max_queued - len(queued)

    def forget(self, store: str, ref: str) -> None:
        self._recent.pop((store, ref), None)
