"""The ledger's fleet tables: stores added at run time, store states, poller leases.

Contract
--------
* ``fleet_stores`` holds :class:`~sync.registry.StoreSpec` JSON (secret references only).
* ``fleet_store_states``: an operator's pause (``paused``, ``paused_reason``) and the
  poller's view of the store's health. Health is written only when it changes, so a healthy
  fleet costs no writes.
* Leases: :meth:`FleetLedger.acquire` gives a store to ``owner`` if nobody holds it or the
  holder's lease expired — one conditional ``UPDATE`` (or an ``INSERT`` that loses cleanly
  to a concurrent one), atomic on SQLite and PostgreSQL alike, so two pollers never both
  hold a store. :meth:`FleetLedger.renew` extends only the leases ``owner`` still holds and
  says which; a store missing from the answer was taken over and must stop being polled.
* Pollers heartbeat in ``fleet_pollers``; :meth:`FleetLedger.live_pollers` counts those seen
  within one lease period (to share the stores evenly).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sync.errors import ConfigError
from sync.ledger.models import PollerLeaseRow, PollerRow, StoreRow, StoreStateRow
from sync.ledger.store import Ledger
from sync.registry import StoreSpec, parse_spec

HEALTHS = ("ok", "credentials", "unreachable", "config")


@dataclass(frozen=True)
class StoreState:
    """A store's pause and health as the ledger holds them."""

    store: str
    paused: bool = False
    paused_reason: str | None = None
    health: str = "ok"
    health_reason: str | None = None
    health_since: datetime | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Lease:
    store: str
    owner: str
    expires_at: datetime


class FleetLedger:
    """Fleet-table access over a :class:`~sync.ledger.store.Ledger`'s engine."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- stores added at run time --------------------------------------------------------
    def managed_stores(self) -> list[StoreSpec]:
        with self.ledger.session() as s:
            rows = s.scalars(select(StoreRow).order_by(StoreRow.name)).all()
            return [parse_spec(r.name, json.loads(r.spec), "ledger") for r in rows]

    def add_store(self, spec: StoreSpec, now: datetime) -> None:
        """Record a new store; ConfigError if the name is taken."""
        try:
            with self.ledger.session() as s:
                s.add(StoreRow(name=spec.name, spec=spec.to_json(), created_at=now,
                               updated_at=now))
        except IntegrityError:
            raise ConfigError(f"store {spec.name} exists already") from None

    def remove_store(self, name: str) -> bool:
        """Forget a store added with ``stores add`` (its orders stay in the ledger)."""
        with self.ledger.session() as s:
            gone = s.connection().execute(delete(StoreRow).where(StoreRow.name == name)).rowcount
            s.execute(delete(StoreStateRow).where(StoreStateRow.store == name))
            return bool(gone)

    # -- states --------------------------------------------------------------------------
    def states(self) -> dict[str, StoreState]:
        with self.ledger.session() as s:
            return {
                r.store: StoreState(r.store, r.paused, r.paused_reason, r.health,
                                    r.health_reason, r.health_since, r.retry_at)
                for r in s.scalars(select(StoreStateRow)).all()
            }

    @staticmethod
    def _row(s: Session, store: str, now: datetime) -> StoreStateRow:
        row = s.get(StoreStateRow, store)
        if row is None:
            row = StoreStateRow(store=store, paused=False, health="ok", updated_at=now)
            s.add(row)
        return row

    def set_paused(self, store: str, paused: bool, reason: str | None, now: datetime) -> None:
        with self.ledger.session() as s:
            row = self._row(s, store, now)
            row.paused = paused
            row.paused_reason = reason if paused else None
            row.updated_at = now

    def set_health(self, store: str, health: str, reason: str | None, now: datetime,
                   retry_at: datetime | None = None) -> None:
        """Record the store's health; a no-op when neither health nor reason changed
        (``retry_at`` is updated with them)."""
        assert health in HEALTHS
        with self.ledger.session() as s:
            row = s.get(StoreStateRow, store)
            if row is None:
                if health == "ok":
                    return
                row = self._row(s, store, now)
            if row.health == health and row.health_reason == reason and row.retry_at == retry_at:
                return
            if row.health != health:
                row.health_since = now
            row.health, row.health_reason, row.retry_at = health, reason, retry_at
            row.updated_at = now

    # -- pollers and leases --------------------------------------------------------------
    def heartbeat(self, owner: str, host: str, pid: int, now: datetime) -> None:
        with self.ledger.session() as s:
            row = s.get(PollerRow, owner)
            if row is None:
                s.add(PollerRow(owner=owner, host=host[:255], pid=pid, started_at=now,
                                seen_at=now))
            else:
                row.seen_at = now

    def live_pollers(self, now: datetime, period: timedelta) -> list[str]:
        with self.ledger.session() as s:
            return list(s.scalars(select(PollerRow.owner).where(PollerRow.seen_at > now - period)
                                  .order_by(PollerRow.owner)).all())

    def forget_poller(self, owner: str) -> None:
        with self.ledger.session() as s:
            s.execute(delete(PollerRow).where(PollerRow.owner == owner))
            s.execute(delete(PollerLeaseRow).where(PollerLeaseRow.owner == owner))

    def leases(self) -> dict[str, Lease]:
        with self.ledger.session() as s:
            return {r.store: Lease(r.store, r.owner, r.expires_at)
                    for r in s.scalars(select(PollerLeaseRow)).all()}

    def acquire(self, store: str, owner: str, now: datetime, period: timedelta) -> bool:
        """Take ``store`` for ``owner`` until ``now + period`` if it is free, expired or
        already ``owner``'s. True when ``owner`` holds it afterwards."""
        with self.ledger.session() as s:
            taken = s.connection().execute(
                update(PollerLeaseRow)
                .where(PollerLeaseRow.store == store,
                       (PollerLeaseRow.owner == owner) | (PollerLeaseRow.expires_at < now))
                .values(owner=owner, acquired_at=now, expires_at=now + period)
            ).rowcount
            if taken:
                return True
            exists = s.get(PollerLeaseRow, store) is not None
        return not exists and self._insert_lease(store, owner, now, period)

    def _insert_lease(self, store: str, owner: str, now: datetime, period: timedelta) -> bool:
        """A first lease on ``store``; False when another poller inserted it first."""
        try:
            with self.ledger.session() as s:
                s.add(PollerLeaseRow(store=store, owner=owner, acquired_at=now,
                                     expires_at=now + period))
        except IntegrityError:
            return False
        return True

    def acquire_many(self, stores: Sequence[str], owner: str, now: datetime,
                     period: timedelta) -> list[str]:
        """:meth:`acquire` for several stores: the existing leases among them that are free,
        expired or already ``owner``'s are taken in one statement (a poller taking over a
        dead one's 25 stores makes one round trip, not 25 — each of which waits for the
        interpreter among 25 busy store threads); stores never leased are inserted one by
        one. Returns the stores ``owner`` holds afterwards, in the order given."""
        if not stores:
            return []
        with self.ledger.session() as s:
            conn = s.connection()
            taken = set(conn.execute(
                update(PollerLeaseRow)
                .where(PollerLeaseRow.store.in_(list(stores)),
                       (PollerLeaseRow.owner == owner) | (PollerLeaseRow.expires_at < now))
                .values(owner=owner, acquired_at=now, expires_at=now + period)
                .returning(PollerLeaseRow.store)
            ).scalars())
            others = [name for name in stores if name not in taken]
            existing = set(conn.execute(
                select(PollerLeaseRow.store).where(PollerLeaseRow.store.in_(others))
            ).scalars()) if others else set()
        for name in stores:
            if (name not in taken and name not in existing
                    and self._insert_lease(name, owner, now, period)):
                taken.add(name)
        return [name for name in stores if name in taken]

    def renew(self, owner: str, stores: Sequence[str], now: datetime,
              period: timedelta) -> set[str]:
        """Extend ``owner``'s leases on ``stores`` that it still holds; returns those."""
        if not stores:
            return set()
        with self.ledger.session() as s:
            s.execute(update(PollerLeaseRow)
                      .where(PollerLeaseRow.owner == owner, PollerLeaseRow.store.in_(stores))
                      .values(expires_at=now + period))
            return set(s.scalars(select(PollerLeaseRow.store).where(
                PollerLeaseRow.owner == owner, PollerLeaseRow.store.in_(stores))).all())

    def release(self, owner: str, stores: Iterable[str]) -> None:
        names = list(stores)
        if not names:
            return
        with self.ledger.session() as s:
            s.execute(delete(PollerLeaseRow).where(PollerLeaseRow.owner == owner,
                                                   PollerLeaseRow.store.in_(names)))
