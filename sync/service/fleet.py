"""One poller process, many stores: leases, a loop per store, isolation.

Contract
--------
:class:`Fleet` runs in ``ordersync run``. Every ``registry_every`` seconds it re-reads the
registry (environment store, ``ORDERSYNC_STORES`` file, stores added with ``stores add``) and
the store states, so adding, pausing, resuming or removing a store needs no restart. It
polls the stores whose **lease** it holds (``fleet_poller_leases``):

* it heartbeats (its first look only that: pollers started together then count each other),
  counts the pollers seen within one lease period, and takes free or expired stores up to
  its share (``ceil(stores / pollers)``, all it needs in one statement), handing surplus
  stores back when another poller joins; leases are renewed at every look (and every third
  of the period) from this thread, so a long pass never loses its store. A lease is written
  for the period less three looks (:data:`HOLD_MARGIN_LOOKS` × ``registry_every``: 6 s), so
  a dead poller's stores are taken over within one lease period of its last renewal even
  when the survivor's next look comes late (a busy process: 25 store threads share its
  interpreter; measured 32.5 s with a margin of one look, 2 s). A store whose lease was
  taken over, that was paused or removed, stops after its current step. A poller that
  cannot renew for a whole hold (database gone) stops all its stores: another poller may
  own them by then.
* each held store runs in its own :class:`StoreLoop` thread with its own runtime (source,
  WiredPlus client, limiters: per API key, per account, per client) over the shared ledger,
  so a store with 100,000 orders to backfill takes only its own thread's share of the
  process, never the other stores' passes.
* **isolation**: a store whose credentials are refused (``FatalError``: 401/403) or whose
  settings are invalid is marked ``credentials`` / ``config`` with the reason and retried
  with back-off (``retry_first`` doubling to ``retry_max``; secrets are read again each
  time, so a fixed secret file or a restored key recovers by itself); a store whose API is
  down has its passes fail, is marked ``unreachable`` and retried at each poll interval.
  The other stores carry on. The first successful pass marks it ``ok`` again.

Every log line a store's loop writes carries ``store=`` (structlog context of its thread).
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from config.settings import Settings
from sync.clock import Clock
from sync.errors import ConfigError, FatalError
from sync.ledger.fleet import FleetLedger
from sync.registry import StoreSpec, store_settings
from sync.service.daemon import Schedule, step
from sync.service.poller import PassInterrupted

if TYPE_CHECKING:
    from sync.service.runtime import Runtime

BuildRuntime = Callable[[Settings, Callable[[], bool]], "Runtime"]
"""Builds one store's runtime from its settings and its stop flag (sync.service.runtime)."""


@dataclass(frozen=True)
class FleetPolicy:
    """How pollers share stores and how a failing store is retried (seconds)."""

    lease: timedelta = timedelta(seconds=30)
    registry_every: float = 2.0
    retry_first: float = 30.0
    retry_max: float = 600.0
    tick: float = 0.25


HOLD_MARGIN_LOOKS = 3
"""Looks (``registry_every``) a lease is written short of the lease period: one for the
look that finds it expired, two for that look running late in a busy process."""


def poller_id() -> str:
    """``host:pid:random`` — unique per process, readable in ``ordersync stores list``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class StoreLoop:
    """One store's daemon loop on its own thread (see the module docstring)."""

    def __init__(self, spec: StoreSpec, fleet: Fleet) -> None:
        self.spec = spec
        self.fleet = fleet
        self.stop = threading.Event()
        self.health = "unknown"
        self.thread = threading.Thread(target=self._run, name=f"store-{spec.name}",
                                       daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        self.thread.start()

    def _mark(self, health: str, reason: str | None, retry_in: float | None = None) -> None:
        if health == self.health == "ok":
            return
        clock = self.fleet.clock
        retry_at = clock.now() + timedelta(seconds=retry_in) if retry_in is not None else None
        try:
            self.fleet.ledger.set_health(self.name, health, reason, clock.now(), retry_at)
            self.health = health
        except Exception as exc:  # the database may be the thing that is down
            self.fleet.log.warning("store.health_not_recorded", health=health,
                                   error=f"{type(exc).__name__}: {exc}"[:300])

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds`` of the fleet's clock (real ticks, so a stop is seen at once)."""
        clock = self.fleet.clock
        until = clock.monotonic() + seconds
        while not self.stop.is_set() and clock.monotonic() < until:
            self.stop.wait(min(self.fleet.policy.tick, max(0.0, until - clock.monotonic())))

    def _run(self) -> None:
        structlog.contextvars.bind_contextvars(store=self.name)
        log = self.fleet.log
        policy = self.fleet.policy
        delay = policy.retry_first
        while not self.stop.is_set():
            try:
                settings = store_settings(self.fleet.base, self.spec)
                rt = self.fleet.build(settings, self.stop.is_set)
            except ConfigError as exc:
                log.error("store.config_invalid", error=exc.message, retry_in=delay)
                self._mark("config", exc.message, delay)
                self._wait(delay)
                delay = min(delay * 2, policy.retry_max)
                continue
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:500]
                log.error("store.start_failed", error=reason, retry_in=delay)
                self._mark("unreachable", reason, delay)
                self._wait(delay)
                delay = min(delay * 2, policy.retry_max)
                continue
            log.info("store.start", source=settings.source, poll_interval=settings.poll_interval)
            try:
                self._poll(rt, settings.poll_interval)
                break
            except FatalError as exc:
                reason = str(exc)[:500]
                log.error("store.credentials_refused", error=reason, retry_in=delay,
                          hint="fix the store's credentials; it is retried by itself")
                self._mark("credentials", reason, delay)
            finally:
                rt.close()
            self._wait(delay)
            delay = min(delay * 2, policy.retry_max)
        log.info("store.stop")

    def _poll(self, rt: Runtime, interval: float) -> None:
        clock = self.fleet.clock
        schedule = Schedule(interval, clock.monotonic())
        schedule.next_due_check = schedule.next_full
        while not self.stop.is_set():
            try:
                step(rt.poller, clock.monotonic(), schedule)
                if schedule.full:
                    self._mark("ok", None)
            except PassInterrupted:
                return
            except FatalError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:500]
                self.fleet.log.error("pass.failed" if schedule.full else "between_passes.failed",
                                     error=reason)
                if schedule.full:
                    self._mark("unreachable", reason, max(0.0, schedule.next_full
                                                          - clock.monotonic()))
            self.stop.wait(max(0.0, min(self.fleet.policy.tick,
                                        schedule.next_full - clock.monotonic())))


@dataclass
class Fleet:
    """The stores this poller process holds, kept in step with the registry and leases."""

    base: Settings
    ledger: FleetLedger
    clock: Clock
    log: Any
    build: BuildRuntime
    load_specs: Callable[[], list[StoreSpec]]
    policy: FleetPolicy = field(default_factory=FleetPolicy)
    owner: str = field(default_factory=poller_id)
    loops: dict[str, StoreLoop] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    """The stores this poller polls, kept up to date (the metrics endpoint reports these)."""
    stopping: dict[str, StoreLoop] = field(default_factory=dict)
    """Stores asked to stop whose current step has not ended: their lease is still renewed
    (nobody else polls them meanwhile) and released once their thread ended."""
    _renewed_at: float | None = None
    _announced: bool = False

    def run(self, stop: threading.Event) -> None:
        """Reconcile and renew until ``stop``; then stop every store and release its lease."""
        next_reconcile = next_renew = self.clock.monotonic()
        try:
            while not stop.is_set():
                mono = self.clock.monotonic()
                try:
                    if mono >= next_reconcile:
                        next_reconcile = mono + self.policy.registry_every
                        self.reconcile()
                    elif mono >= next_renew:
                        self.renew()
                    if mono >= next_renew:
                        next_renew = mono + self.policy.lease.total_seconds() / 3
                except FatalError:
                    raise
                except Exception as exc:
                    self.log.error("fleet.step_failed", error=f"{type(exc).__name__}: {exc}"[:500])
                self._expire_if_unrenewed()
                stop.wait(self.policy.tick)
        finally:
            self.shutdown()

    # -- reconciliation ------------------------------------------------------------------
    def _preference(self, name: str) -> str:
        """Pollers prefer different stores (less contention when several start at once)."""
        return hashlib.sha256(f"{self.owner}/{name}".encode()).hexdigest()

    @property
    def _hold(self) -> timedelta:
        """How long a lease is written for (and a heartbeat counts): the lease period less
        :data:`HOLD_MARGIN_LOOKS` looks, so that a dead poller's stores are taken over
        within ``lease`` of its last renewal. Renewals come every look: the margin never
        costs a live poller its stores."""
        return self.policy.lease - timedelta(
            seconds=HOLD_MARGIN_LOOKS * self.policy.registry_every)

    def reconcile(self) -> None:
        """One look at the registry, the states and the leases (see the module docstring)."""
        now = self.clock.now()
        try:
            specs = {s.name: s for s in self.load_specs()}
        except ConfigError as exc:  # a broken registry file: keep polling what we have
            self.log.error("registry.invalid", error=exc.message)
            specs = {name: loop.spec for name, loop in self.loops.items()}
        states = self.ledger.states()
        wanted = {n: s for n, s in specs.items()
                  if not (states.get(n) and states[n].paused)}
        self.ledger.heartbeat(self.owner, socket.gethostname(), os.getpid(), now)
        if not self._announced:
            # Seen before taking anything: pollers started together each count the others
            # at their next look instead of one taking every store (and handing half back
            # only as their first passes end).
            self._announced = True
            return
        # Pollers seen within one lease hold: a dead one stops counting when its leases
        # expire, so its stores are all taken at once.
        pollers = max(1, len(self.ledger.live_pollers(now, self._hold)))
        share = math.ceil(len(wanted) / pollers) if wanted else 0
        for name in list(self.loops):
            loop = self.loops[name]
            if name not in wanted:
                self._drop(name, "paused" if name in specs else "removed")
            elif wanted[name] != loop.spec:
                self._drop(name, "changed")  # taken again below with its new settings
        held = set(self.renew()) - set(self.stopping)
        # One read of every lease: only free or expired ones are tried (a poller with 25
        # stores does not ask for the other poller's 25 at every look).
        others = {store for store, lease in self.ledger.leases().items()
                  if lease.owner != self.owner and lease.expires_at >= now}
        free = [name for name in sorted(wanted, key=self._preference)
                if name not in held and name not in self.stopping and name not in others]
        for name in self.ledger.acquire_many(free[: max(0, share - len(held))], self.owner,
                                             now, self._hold):
            held.add(name)
            self._start(wanted[name])
        for name in sorted(held, key=self._preference, reverse=True)[: max(0, len(held) - share)]:
            self._drop(name, "rebalanced")
        self.held[:] = sorted(self.loops)

    def renew(self) -> list[str]:
        """Extend this poller's leases; stop the stores it lost; release the leases of
        stopped stores whose thread ended. Returns the stores it holds."""
        names = [*self.loops, *self.stopping]
        kept = self.ledger.renew(self.owner, names, self.clock.now(), self._hold)
        self._renewed_at = self.clock.monotonic()
        for name in list(self.loops):
            if name not in kept:
                self.log.warning("lease.lost", store=name, hint="another poller took it over")
                self._park(name)
        ended = [n for n, loop in self.stopping.items() if not loop.thread.is_alive()]
        # Released before it leaves ``stopping``: whoever sees it gone sees it free.
        self.ledger.release(self.owner, [n for n in ended if n in kept])
        for name in ended:
            del self.stopping[name]
        return sorted(set(kept) - set(ended))

    def _expire_if_unrenewed(self) -> None:
        if self._renewed_at is None or not (self.loops or self.stopping):
            return
        if self.clock.monotonic() - self._renewed_at > self._hold.total_seconds():
            self.log.error("lease.expired", stores=sorted(self.loops),
                           hint="could not renew for a whole lease period; stopping them")
            for name in list(self.loops):
                self._park(name)

    def _start(self, spec: StoreSpec) -> None:
        self.log.info("lease.acquired", store=spec.name, owner=self.owner)
        loop = StoreLoop(spec, self)
        self.loops[spec.name] = loop
        loop.start()

    def _stop_loop(self, name: str) -> StoreLoop | None:
        loop = self.loops.pop(name, None)
        if loop is not None:
            loop.stop.set()
        return loop

    def _park(self, name: str) -> None:
        """Stop a store after its current step; it is not started again here until that
        thread ended (never two threads on one store), and its lease, if still held, is
        released then."""
        loop = self._stop_loop(name)
        if loop is not None:
            self.stopping[name] = loop

    def _drop(self, name: str, why: str) -> None:
        self.log.info("store.released", store=name, reason=why)
        self._park(name)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop every store after its current step and release the leases at once, so
        another poller takes them without waiting for them to expire."""
        loops = [*self.loops.values(), *self.stopping.values()]
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.thread.join(timeout=timeout)
        self.loops.clear()
        self.stopping.clear()
        try:
            self.ledger.forget_poller(self.owner)
        except Exception as exc:
            self.log.warning("fleet.release_failed", error=f"{type(exc).__name__}: {exc}"[:300])
