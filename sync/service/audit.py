"""Completeness audit: does the ledger hold every order the shop holds?

For each created-date window the shop's own count (``GET /orders/count``, regular + archived)
is compared with the ledger's. Windows that match cost one or two calls and nothing else; a
window that drifts is read in full (ids only matter) to name the missing orders. With
``repair`` those orders get a refresh request, so the next pass reads them by id through the
normal path (first-sight rules apply: a missing *old* order is imported without an email).

Contract: the audit never writes to WiredPlus and never moves the watermark. Orders the
ledger marked deleted are not expected in the shop's count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from sync.clock import Clock
from sync.domain.windows import Window, split_range
from sync.ledger.models import OrderRow
from sync.ledger.store import Ledger
from sync.logs import Log
from sync.sources.base import Source
from sync.webhook.inbox import WebhookInbox

PRIORITY_AUDIT = 50  # after webhook refreshes (lower number = sooner)


@dataclass
class WindowAudit:
    window: Window
    shop: int
    ledger: int
    missing: list[str] = field(default_factory=list)

    @property
    def drift(self) -> int:
        return self.shop - self.ledger


@dataclass
class AuditReport:
    windows: list[WindowAudit] = field(default_factory=list)
    calls: int = 0
    repaired: int = 0

    @property
    def missing(self) -> list[str]:
        return [oid for w in self.windows for oid in w.missing]

    @property
    def drifting(self) -> list[WindowAudit]:
        return [w for w in self.windows if w.drift != 0]


class Auditor:
    """Runs audits for one store."""

    def __init__(self, *, ledger: Ledger, source: Source, inbox: WebhookInbox, store: str,
                 clock: Clock, log: Log) -> None:
        self.ledger = ledger
        self.source = source
        self.inbox = inbox
        self.store = store
        self.clock = clock
        self.log = log

    def ledger_ids(self, window: Window) -> set[str]:
        with self.ledger.session() as s:
            return set(s.scalars(
                select(OrderRow.source_order_id).where(
                    OrderRow.store == self.store,
                    OrderRow.deleted.is_(False),
                    OrderRow.created_at >= window.start,
                    OrderRow.created_at < window.end + timedelta(seconds=1),
                )
            ))

    def ledger_count(self, window: Window) -> int:
        with self.ledger.session() as s:
            return int(s.scalar(
                select(func.count()).select_from(OrderRow).where(
                    OrderRow.store == self.store,
                    OrderRow.deleted.is_(False),
                    OrderRow.created_at >= window.start,
                    OrderRow.created_at < window.end + timedelta(seconds=1),
                )
            ) or 0)

    def run(self, since: datetime, until: datetime, *, chunk: timedelta = timedelta(days=7),
            repair: bool = False) -> AuditReport:
        report = AuditReport()
        for window in split_range(since, until, chunk):
            shop = self.source.count_created(window)
            report.calls += 2
            mine = self.ledger_count(window)
            wa = WindowAudit(window, shop, mine)
            if shop > mine:
                seen: set[str] = set()
                for page in self.source.new_order_pages(window):
                    report.calls += 1
                    for raw in page:
                        oid = self.source.raw_id(raw)
                        if oid:
                            seen.add(oid)
                wa.missing = sorted(seen - self.ledger_ids(window), key=_num)
            if wa.drift:
                self.log.warning(
                    "audit.drift", store=self.store, window_start=window.start.isoformat(),
                    window_end=window.end.isoformat(), shop=shop, ledger=mine,
                    missing=len(wa.missing),
                )
            report.windows.append(wa)
        if repair and report.missing:
            report.repaired = self.request_refresh(report.missing)
        self.log.info("audit.done", store=self.store, windows=len(report.windows),
                      drifting=len(report.drifting), missing=len(report.missing),
                      repaired=report.repaired, calls=report.calls)
        return report

    def request_refresh(self, order_ids: list[str]) -> int:
        now = self.clock.now()
        with self.ledger.session() as s:
            for oid in order_ids:
                self.inbox.request_refresh(s, self.store, oid, "audit", now,
                                           priority=PRIORITY_AUDIT)
        return len(order_ids)


def _num(oid: str) -> tuple[int, str]:
    return (int(oid), oid) if oid.isdecimal() else (0, oid)
