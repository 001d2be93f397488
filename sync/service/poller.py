"""A pass: read the shop, record it in the ledger, then dispatch what is due.

Order of work in one pass (each step commits before the next starts):

1. refresh the status list if stale (cached for an hour);
2. **new orders** — the created-date window ``[watermark − overlap, pass start − settle]``,
   page by page; each page is committed on its own; the watermark moves only after every page
   of the window is committed, to the newest committed created date;
3. **refresh** — open orders the ledger holds, least recently checked first, 50 per ``ids=``
   call, within a per-pass call budget;
4. **dispatch** — every order that is pending and due (this also sweeps up anything whose
   earlier dispatch was lost).

A crash anywhere loses nothing: uncommitted pages are simply read again.
"""

from __future__ import annotations

import functools
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sync import metrics
from sync.clock import Clock
from sync.domain.freshness import parse_targets
from sync.domain.refresh_plan import (
    DUE_POOL_CALLS,
    LIST_PER_CALL,
    DuePool,
    OpenOrder,
    RefreshPacer,
    RefreshPlan,
    plan_refresh,
    polling_calls_per_second,
    relist_window,
)
from sync.domain.windows import Window, advance_watermark, plan_window, split_range
from sync.errors import FatalError, RetryableError, SkippableError
from sync.ledger.store import (
    LAST_AUDIT,
    LAST_PASS_CALLS,
    LAST_PASS_ERROR,
    LAST_PASS_OK,
    REFRESH_PLAN,
    SCAN_RESUME,
    WATERMARK,
    Ledger,
)
from sync.logs import Log
from sync.service.audit import Auditor
from sync.service.dispatch import Dispatcher
from sync.service.ingest import Ingestor, IngestResult
from sync.sinks.wiredplus import AccountInfo
from sync.sources.base import Source
from sync.webhook.inbox import WebhookInbox

IDS_PER_CALL = 50
BACKLOG_SWEEP_S = 15.0
"""While the dispatcher holds a store's backlog, the between-pass sweep of due orders runs at
most this often (a retry that came due meanwhile waits at most this long)."""
RESERVED_WINDOW = 600.0
"""Seconds of scan and webhook calls the refresh plan averages to know what re-reads get."""
REFRESH_BURST = 4.0
"""Most re-read calls polling makes back to back (a tenth of ShopWired's 40-call bucket, so
other clients of the same API key always find room); the rest are spread between passes."""
REFRESH_IDLE_MIN_S = 1.0
"""Least time re-reads leave the ledger alone after finding nothing due."""
SCOPE_START = "scope_start"
"""Cursor: the earliest created date ordersync imports (see :meth:`Poller.scope_start`)."""


class PassInterrupted(Exception):
    """A pass stopped early on request (SIGTERM); everything committed so far is safe."""
STATUS_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class PollPolicy:
    overlap: timedelta = timedelta(minutes=10)
    settle: timedelta = timedelta(seconds=30)
    # Re-reading open orders (sync.domain.refresh_plan): a share of the source's rate.
    source_rate: float = 2.0
    refresh_share: float = 0.30
    refresh_share_with_webhooks: float = 0.05
    freshness_targets: Mapping[str, timedelta] = field(
        default_factory=lambda: parse_targets(None))
    refresh_min_interval: timedelta = timedelta(0)
    staleness_alert: timedelta = timedelta(hours=1)
    refresh_horizon: timedelta = timedelta(days=90)
    webhook_calls_per_pass: int = 20
    # With webhooks arriving (one within this long), polling refreshes back off to a quarter.
    webhooks_healthy_within: timedelta = timedelta(hours=1)
    close_deleted: bool = True


@dataclass
class PassReport:
    started_at: datetime
    window: Window | None = None
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    new: IngestResult = field(default_factory=IngestResult)
    refresh: IngestResult = field(default_factory=IngestResult)
    refresh_calls: int = 0
    refresh_relists: int = 0  # of which created-date listings instead of ids=
    refresh_plan: RefreshPlan | None = None
    webhook: IngestResult = field(default_factory=IngestResult)
    webhook_calls: int = 0
    webhooks_healthy: bool = False
    deleted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dispatched: int = 0
    new_pages: int = 0
    audit_missing: int | None = None
    duration_s: float = 0.0


class Poller:
    """Runs passes for one store of one source."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        source: Source,
        ingestor: Ingestor,
        dispatcher: Dispatcher,
        clock: Clock,
        policy: PollPolicy,
        start_at: Callable[[datetime], datetime],
        log: Log,
        budget_probe: Callable[[], AccountInfo] | None = None,
        stop_requested: Callable[[], bool] | None = None,
        inbox: WebhookInbox | None = None,
        auditor: Auditor | None = None,
        audit_every: timedelta | None = None,
    ) -> None:
        self.ledger = ledger
        self.source = source
        self.ingestor = ingestor
        self.dispatcher = dispatcher
        self.clock = clock
        self.policy = policy
        self.start_at = start_at
        self.log = log
        self.store = ingestor.store
        self.budget_probe = budget_probe
        self.inbox = inbox  # when webhooks are configured
        self.auditor = auditor
        self.audit_every = audit_every
        self.stop_requested = stop_requested or (lambda: False)
        self._budget_at: float | None = None
        self._statuses_at: float | None = None
        self._warned_statuses: set[str] = set()
        # Re-reads' pacer; its rate is set at each pass. A new poller starts with a full
        # burst, so a one-off ``ordersync poll --once`` re-reads the most overdue orders too.
        self._pacer = RefreshPacer(rate=0.0, burst=REFRESH_BURST, credit=REFRESH_BURST)
        self._other_calls: deque[tuple[float, int]] = deque()
        self._alerted_at: float | None = None
        self._plan: RefreshPlan | None = None
        self._between = PassReport(started_at=clock.now())  # re-reads between passes
        self._calls_seen = source.call_count() or 0
        self._backlog_sweep_at = 0.0
        self._refresh_idle_until = 0.0  # monotonic: no open order can be due before then
        ingestor.on_unknown_status = self._warn_unknown_status

    def _note_growth(self, new_orders: int) -> None:
        """Tell the ledger how many orders this pass added: it refreshes the database's
        statistics as it grows, so a first import stays fast on a fresh ledger
        (:meth:`Ledger.note_growth`); a failure only costs speed."""
        try:
            self.ledger.note_growth(new_orders)
        except Exception as exc:
            self.log.warning("ledger.analyze_failed", store=self.store, error=str(exc)[:200])

    # -- statuses -----------------------------------------------------------------------
    def _warn_unknown_status(self, status_id: str, name: str) -> None:
        if status_id not in self._warned_statuses:
            self._warned_statuses.add(status_id)
            self.log.warning(
                "status.unmapped",
                store=self.store,
                status_id=status_id,
                status_name=name,
                hint="sent as 'unknown'; map it in ORDERSYNC_STATUS_MAP",
            )

    def refresh_statuses(self, force: bool = False) -> None:
        mono = self.clock.monotonic()
        if not force and self._statuses_at is not None and (
            mono - self._statuses_at < STATUS_TTL.total_seconds()
        ):
            return
        statuses = self.source.statuses()
        self._statuses_at = mono
        for st in statuses:
            if not self.ingestor.status_map.resolve(st).matched:
                self._warn_unknown_status(st.id, st.name)

    def refresh_budget(self) -> None:
        """Learn the sink's hourly budget (WiredPlus ``GetAccountInfo``), at most hourly.

        A retryable failure only logs a warning (the configured budget stays in force);
        a fatal one (bad credentials) propagates and stops the daemon.
        """
        if self.budget_probe is None:
            return
        mono = self.clock.monotonic()
        if self._budget_at is not None and mono - self._budget_at < STATUS_TTL.total_seconds():
            return
        self._budget_at = mono
        try:
            info = self.budget_probe()
        except (RetryableError, SkippableError) as exc:
            self.log.warning("budget.unknown", store=self.store, error=str(exc)[:300])
            return
        self.log.info(
            "budget.learned",
            store=self.store,
            limit=info.ratelimit_limit,
            remaining=info.ratelimit_remaining,
        )

    # -- watermark ----------------------------------------------------------------------
    def watermark(self, now: datetime) -> datetime:
        raw = self.ledger.get_cursor(self.store, WATERMARK)
        return datetime.fromisoformat(raw) if raw else self.start_at(now)

    def scope_start(self, now: datetime) -> datetime:
        """The earliest *created* date an order may have to be imported, whatever path finds
        it (the scan, a webhook, an Elastic Path ``updated_at`` window, a refresh request).

        Fixed at the first pass (``ORDERSYNC_START_DATE``, else 30 days before it) and kept in
        the ledger, so the default does not slide forward; an earlier ``ORDERSYNC_START_DATE``
        or an ``ordersync backfill --since`` moves it back. Orders already in the ledger are
        always followed. Without this an old order touched today (Elastic Path lists it by
        ``updated_at``; a ShopWired webhook names it) would appear in WiredPlus, where a
        "new order" automation could mail its customer about last year's purchase.
        """
        configured = self.start_at(now)
        raw = self.ledger.get_cursor(self.store, SCOPE_START)
        if raw is not None:
            return min(datetime.fromisoformat(raw), configured)
        with self.ledger.session() as s:
            self.ledger.set_cursor(s, self.store, SCOPE_START, configured.isoformat(), now)
        return configured

    def _lower_scope_start(self, since: datetime) -> None:
        now = self.clock.now()
        if since < self.scope_start(now):
            with self.ledger.session() as s:
                self.ledger.set_cursor(s, self.store, SCOPE_START, since.isoformat(), now)

    # -- the pass -----------------------------------------------------------------------
    def run_pass(self) -> PassReport:
        now = self.clock.now()
        mono = self.clock.monotonic()
        report = PassReport(started_at=now)
        try:
            self.refresh_budget()
            self.refresh_statuses()
            # Each step stands on its own: a failure in one (say a page ShopWired keeps
            # answering with broken JSON) must not stop the others from delivering what is
            # already known. The first failure is re-raised at the end; fatal ones at once.
            failure: Exception | None = None
            steps: tuple[Callable[[], None], ...] = (
                lambda: self._webhook_refreshes(report),
                lambda: self._scan_new(report, now),
                lambda: self._refresh_open(report),
                lambda: self._dispatch_due(report),
                lambda: self._audit_if_due(report),
            )
            for step in steps:
                try:
                    step()
                except (PassInterrupted, FatalError):
                    raise
                except Exception as exc:
                    self.log.error("pass.step_failed", store=self.store,
                                   error=f"{type(exc).__name__}: {exc}"[:500])
                    failure = failure or exc
            if failure is not None:
                raise failure
        except PassInterrupted:
            self.log.info("pass.interrupted", store=self.store, reason="stop requested")
            raise
        except Exception as exc:
            metrics.inc("ordersync_passes_total", store=self.store, result="failed")
            with self.ledger.session() as s:
                self.ledger.set_cursor(
                    s, self.store, LAST_PASS_ERROR,
                    f"{self.clock.now().isoformat()} {type(exc).__name__}: {exc}"[:1000],
                    self.clock.now(),
                )
            raise
        report.duration_s = self.clock.monotonic() - mono
        metrics.inc("ordersync_passes_total", store=self.store, result="ok")
        metrics.observe("ordersync_pass_duration_seconds", report.duration_s, store=self.store)
        skipped = report.new.skipped + report.refresh.skipped + report.webhook.skipped
        if skipped:
            metrics.inc("ordersync_orders_skipped_total", skipped, store=self.store)
        split = json.dumps({
            "webhook_refresh_calls": report.webhook_calls,
            "new_order_pages": report.new_pages,
            "refresh_calls": report.refresh_calls,
            "webhooks_healthy": report.webhooks_healthy,
        })
        with self.ledger.session() as s:
            self.ledger.set_cursor(s, self.store, LAST_PASS_OK, now.isoformat(), self.clock.now())
            self.ledger.set_cursor(s, self.store, LAST_PASS_CALLS, split, self.clock.now())
        self.log.info(
            "pass.done",
            store=self.store,
            window_start=report.window.start.isoformat() if report.window else None,
            window_end=report.window.end.isoformat() if report.window else None,
            watermark=report.watermark_after.isoformat() if report.watermark_after else None,
            new_seen=report.new.seen,
            new_orders=report.new.new,
            changed=report.new.changed + report.refresh.changed,
            skipped=report.new.skipped + report.refresh.skipped,
            out_of_scope=report.new.out_of_scope + report.webhook.out_of_scope,
            events=report.new.events + report.refresh.events,
            refreshed=report.refresh.seen,
            refresh_calls=report.refresh_calls,
            webhook_refreshed=report.webhook.seen,
            webhook_calls=report.webhook_calls,
            webhooks_healthy=report.webhooks_healthy,
            deleted=len(report.deleted),
            missing=len(report.missing),
            dispatched=report.dispatched,
            duration_ms=round(report.duration_s * 1000, 1),
        )
        self._heartbeat(report)
        return report

    def _audit_if_due(self, report: PassReport) -> None:
        """The slow safety net: compare the shop's counts with the ledger over the scanned
        range every ``audit_every``; missing orders are queued for the next pass."""
        if self.auditor is None or not self.audit_every or report.watermark_after is None:
            return
        now = self.clock.now()
        last = self.ledger.get_cursor(self.store, LAST_AUDIT)
        if last is None:  # a fresh install has just read everything: first audit later
            with self.ledger.session() as s:
                self.ledger.set_cursor(s, self.store, LAST_AUDIT, now.isoformat(), now)
            return
        if now - datetime.fromisoformat(last) < self.audit_every:
            return
        since = max(self.start_at(now), now - self.policy.refresh_horizon)
        result = self.auditor.run(since, report.watermark_after, repair=True)
        report.audit_missing = len(result.missing)
        with self.ledger.session() as s:
            self.ledger.set_cursor(s, self.store, LAST_AUDIT, now.isoformat(), now)

    def run_webhook_pass(self) -> PassReport:
        """Between full passes: only re-read the orders webhooks announced (by id) and push
        what changed. Costs one ShopWired call per 50 announced orders."""
        report = PassReport(started_at=self.clock.now())
        self._webhook_refreshes(report)
        if report.webhook_calls:
            self._account_other_calls(report.webhook_calls)  # re-reads get what is left
            self.log.info("pass.webhooks", store=self.store, calls=report.webhook_calls,
                          refreshed=report.webhook.seen, changed=report.webhook.changed,
                          events=report.webhook.events)
        return report

    def _heartbeat(self, report: PassReport) -> None:
        """One line per pass that says whether the sync is healthy, for log-only operators."""
        counts = self.ledger.counts(self.store)
        mark = report.watermark_after
        self.log.info(
            "heartbeat",
            store=self.store,
            watermark_lag_s=round((report.started_at - mark).total_seconds(), 1)
            if mark else None,
            pending=counts.orders.get("pending", 0),
            dead_letters=counts.orders.get("dead", 0) + counts.events.get("dead", 0),
            skipped=counts.orders.get("skipped", 0),
            synced=counts.orders.get("synced", 0),
            source_calls=report.new_pages + report.refresh_calls + report.webhook_calls,
            webhooks_healthy=report.webhooks_healthy,
        )

    def _scan_new(self, report: PassReport, now: datetime) -> None:
        """The new-order scan. Each page is committed with the position after it
        (:data:`SCAN_RESUME`, tied to the watermark it started from): a pass that fails on
        page k keeps pages 1…k−1, and the next pass finishes *that* window from page k instead
        of reading it from its start again. Only when a window is read to its end does the
        watermark move (and the resume point go)."""
        watermark = self.watermark(now)
        report.watermark_before = watermark
        basis = self.ledger.get_cursor(self.store, WATERMARK) or ""
        resume = self._scan_resume(basis)
        position: str | None = None
        newest: list[datetime] = []
        window: Window | None
        if resume is not None:
            window, position, newest = resume
        else:
            window = plan_window(
                watermark, now, overlap=self.policy.overlap, settle=self.policy.settle
            )
        report.window = window
        if window is None:
            report.watermark_after = watermark
            return
        scope = self.scope_start(now)
        for page, after in self.source.resumable_pages(window, position):
            report.new_pages += 1
            result = self.ingestor.ingest(page, now=self.clock.now(), allow_events=True,
                                           not_before=scope)
            report.new.add(result)
            self._note_growth(result.new)
            if after is not None:
                self._save_scan_resume(basis, window, after, newest + report.new.created)
            self.dispatcher.dispatch(self.store, result.to_push)
            if self.stop_requested():
                # Committed pages stay committed; the watermark stays put, so the next run
                # resumes the window where it stopped.
                raise PassInterrupted("stop requested during the new-order scan")
        # Every page of the window is committed: only now may the watermark move.
        new_mark = advance_watermark(watermark, newest + report.new.created, window)
        with self.ledger.session() as s:
            self.ledger.set_cursor(s, self.store, WATERMARK, new_mark.isoformat(), self.clock.now())
            self.ledger.set_cursor(s, self.store, SCAN_RESUME, "", self.clock.now())
        report.watermark_after = new_mark

    def _scan_resume(self, basis: str) -> tuple[Window, str, list[datetime]] | None:
        """(window, position, newest created committed) of a scan that stopped part-way from
        the watermark cursor value ``basis`` ("" before the first); None when there is none
        (or it belongs to another watermark)."""
        raw = self.ledger.get_cursor(self.store, SCAN_RESUME)
        if not raw:
            return None
        try:
            doc = json.loads(raw)
            if doc["watermark"] != basis:
                return None
            window = Window(datetime.fromisoformat(doc["start"]),
                            datetime.fromisoformat(doc["end"]))
            newest = [datetime.fromisoformat(doc["newest"])] if doc.get("newest") else []
            return window, str(doc["position"]), newest
        except (ValueError, TypeError, KeyError):
            return None

    def _save_scan_resume(
        self, basis: str, window: Window, position: str, created: list[datetime]
    ) -> None:
        newest = max(created, default=None)
        doc = {"watermark": basis, "start": window.start.isoformat(),
               "end": window.end.isoformat(), "position": position,
               "newest": newest.isoformat() if newest is not None else None}
        with self.ledger.session() as s:
            self.ledger.set_cursor(s, self.store, SCAN_RESUME, json.dumps(doc), self.clock.now())

    def _webhook_refreshes(self, report: PassReport) -> None:
        """First call on the budget: re-read the orders webhooks told us about (by id)."""
        if self.inbox is None:
            return
        now = self.clock.now()
        stats = self.inbox.stats(self.store, since=now - self.policy.webhooks_healthy_within)
        report.webhooks_healthy = stats.last_received_at is not None and (
            now - stats.last_received_at <= self.policy.webhooks_healthy_within
        )
        scope = self.scope_start(now)
        for _ in range(max(self.policy.webhook_calls_per_pass, 0)):
            if self.stop_requested():
                return
            pending = self.inbox.pending_refreshes(self.store, IDS_PER_CALL)
            if not pending:
                return
            ids = [p.source_order_id for p in pending]
            read_at = self.clock.now()
            raws = self.source.fetch_by_ids(ids)
            report.webhook_calls += 1
            result = self.ingestor.ingest(raws, now=self.clock.now(), allow_events=True,
                                           not_before=scope)
            report.webhook.add(result)
            missing = [oid for oid in ids if oid not in result.seen_ids]
            if missing:
                self._handle_missing(missing, report, told_deleted=set(
                    self.inbox.deleted_orders(self.store, missing)))
            self.inbox.done(self.store, ids, read_at=read_at, now=self.clock.now())
            self.dispatcher.dispatch(self.store, result.to_push)

    def _handle_missing(
        self, order_ids: Sequence[str], report: PassReport, told_deleted: set[str]
    ) -> None:
        """Orders an ``ids=`` answer left out. Deleted only when the shop confirms it (404 on
        the single-order endpoint, or an ``order.deleted`` webhook); otherwise just noted."""
        now = self.clock.now()
        for oid in order_ids:
            ref = self.ledger.ref_for(self.store, oid)
            if ref is None:
                continue
            confirmed = oid in told_deleted
            if not confirmed:
                confirmed = not self.source.exists(oid)
            if confirmed:
                if self.ledger.mark_deleted(self.store, ref, now,
                                            close=self.policy.close_deleted):
                    report.deleted.append(ref)
                    self.log.info("order.deleted", store=self.store, ref=ref, order_id=oid,
                                  policy="close" if self.policy.close_deleted else "ignore")
                    self.dispatcher.dispatch(self.store, [ref])
            else:
                report.missing.append(ref)
                self._mark_checked([ref])

    def _refresh_open(self, report: PassReport) -> None:
        """Plan the re-reads of open orders (:mod:`sync.domain.refresh_plan`) and make the
        ones the polling share allows now. The new-order scan and webhook refreshes come
        first: re-reads are paced at the share *minus* what those took on average over the
        last :data:`RESERVED_WINDOW` seconds, so a long scan (a backfill, a burst of new
        orders, retries through a 429 storm) slows re-reads evenly instead of stopping them
        until its calls are paid back. At most :data:`REFRESH_BURST` re-reads run back to
        back — the daemon spreads the rest between passes (:meth:`refresh_tick`). What was
        re-read since the last pass is counted in this pass's report."""
        between, self._between = self._between, PassReport(started_at=self.clock.now())
        report.refresh.add(between.refresh)
        report.refresh_calls += between.refresh_calls
        report.refresh_relists += between.refresh_relists
        report.deleted.extend(between.deleted)
        report.missing.extend(between.missing)
        share = (self.policy.refresh_share_with_webhooks if report.webhooks_healthy
                 else self.policy.refresh_share)
        share_rate = polling_calls_per_second(self.policy.source_rate, share)
        mono = self.clock.monotonic()
        # A source that does not count its calls: what this pass knows it made.
        self._account_other_calls(report.new_pages + report.webhook_calls)
        self._pacer.accrue(mono)  # at the old rate up to now
        self._pacer.rate = max(0.0, share_rate - self._reserved_rate())
        self._plan = self._plan_refresh(report, self._pacer.rate, share_rate)
        # Orders read earlier in this pass (the new-order scan) are fresh already.
        self._spend_refresh_credit(report, fresh_since=report.started_at)

    def refresh_tick(self) -> int:
        """Between passes (the daemon calls this every tick): re-read the most overdue open
        orders when the polling share has a whole call to spare; returns the calls made.
        Nothing before the first pass has planned."""
        if self._plan is None or self._plan.bound is None:
            return 0
        if self._pacer.available(self.clock.monotonic()) < 1:
            return 0
        before = self._between.refresh_calls
        self._spend_refresh_credit(self._between)
        return self._between.refresh_calls - before

    def _spend_refresh_credit(
        self, report: PassReport, fresh_since: datetime | None = None
    ) -> None:
        plan, pacer = self._plan, self._pacer
        if plan is None or plan.bound is None:
            return
        if fresh_since is None and self.clock.monotonic() < self._refresh_idle_until:
            return
        horizon = self.clock.now() - self.policy.refresh_horizon
        pool = DuePool()
        while pacer.available(self.clock.monotonic()) >= 1:
            if self.stop_requested():
                return
            now = self.clock.now()
            chunk = pool.next_chunk(
                plan, now, self.clock.monotonic(),
                functools.partial(self._look_for_due, pool, plan, now, horizon, fresh_since))
            if not chunk:
                self._idle_until_due(horizon, now)
                return
            self._account_other_calls(0)  # e.g. a webhook pass since the last look
            window = self._relist_window(chunk, plan, now)
            if window is not None:
                self._relist(report, *window)
                pool.read(o.ref for o, _ in window[2])
            else:
                self._read_open(report, [(o.ref, o.order_id) for o in chunk])
            pool.read(o.ref for o in chunk)
            # This re-read and its retries are paid from the pacer (one call when the
            # source does not count its calls).
            made = self._count_other_calls()
            pacer.spend(1 if made is None else max(made, 1), self.clock.monotonic())

    def _idle_until_due(self, horizon: datetime, now: datetime) -> None:
        """Nothing is due: every open order was read within the re-read floor. Until the
        least recently read one passes the floor, the ticks between passes skip the ledger
        (a store whose budget outruns its orders — a small shop, or limits off — asked it
        for every status four times a second). At least :data:`REFRESH_IDLE_MIN_S`; a pass
        looks again whatever this says."""
        oldest = self.ledger.oldest_open_read(self.store, created_after=horizon)
        floor = self.policy.refresh_min_interval
        wait = (floor if oldest is None else oldest + floor - now).total_seconds()
        self._refresh_idle_until = self.clock.monotonic() + max(REFRESH_IDLE_MIN_S, wait)

    def _look_for_due(self, pool: DuePool, plan: RefreshPlan, now: datetime,
                      horizon: datetime, fresh_since: datetime | None) -> None:
        """Fill ``pool`` from the ledger: every open order read at least the floor ago is a
        candidate (calls to spare read ahead); per status the least recently read, merged
        most overdue first by the caller. Orders without a (known) status only when the plan
        counted some: a status first seen since the plan is planned, and read, from the next
        pass on. Enough for :data:`DUE_POOL_CALLS` calls (fewer when the pacer allows fewer)."""
        eligible = now - self.policy.refresh_min_interval
        statuses = [s for s in plan.intervals if s != "unknown"]
        cutoffs = dict.fromkeys((s for s in statuses if s), eligible)
        calls = int(min(max(self._pacer.available(self.clock.monotonic()), 1.0),
                        DUE_POOL_CALLS))
        limit = IDS_PER_CALL * calls
        due = self.ledger.open_orders_due(
            self.store,
            created_after=horizon,
            cutoffs=cutoffs,
            other_cutoff=eligible if "unknown" in plan.intervals else None,
            limit=limit,
            checked_before=fresh_since,
        )
        pool.fill(due, limit, set(cutoffs), self.clock.monotonic())

    def _relist_window(
        self, chunk: Sequence[OpenOrder], plan: RefreshPlan, now: datetime
    ) -> tuple[datetime, datetime, list[tuple[OpenOrder, bool]]] | None:
        """The created range to re-list instead of reading ``chunk`` (the most overdue
        first) by ``ids=``, when the orders created from its first one on are mostly open
        and worth more to read (:func:`~sync.domain.refresh_plan.relist_window`): one
        listing call reads up to 100 of them, ``ids=`` only 50. Only where the source
        offers it (:attr:`~sync.sources.base.Source.can_relist`: ShopWired). Returns the
        range and the ledger's orders in it (each with whether it is open)."""
        oldest_due = chunk[0]
        if oldest_due.created_at is None or not self.source.can_relist:
            return None
        window = self.ledger.created_from(self.store, start=oldest_due.created_at,
                                          limit=LIST_PER_CALL)
        span = relist_window(window, now, self.policy.refresh_min_interval,
                             plan=plan, chunk=chunk)
        return None if span is None else (*span, window)

    def _relist(self, report: PassReport, start: datetime, end: datetime,
                window: Sequence[tuple[OpenOrder, bool]]) -> None:
        """One listing call: the (regular) orders created in ``[start, end]``, up to 100;
        only the ledger's (``window``) are recorded — finding orders the ledger lacks is the
        scan's and the audit's job. The window's open orders the listing left out (archived
        since, deleted, or past the page's end) are read by ``ids=`` right away: left due,
        the most overdue of them would pick the same range again and again, and every other
        open order would wait behind it."""
        page = self.source.list_created(start, end, LIST_PER_CALL)
        report.refresh_calls += 1
        report.refresh_relists += 1
        known = {o.order_id for o, _ in window}
        raws = [raw for raw in page if self.source.raw_id(raw) in known]
        # Ledger orders only (known ones are always followed): no scope to apply.
        result = self.ingestor.ingest(raws, now=self.clock.now(), allow_events=True)
        report.refresh.add(result)
        self.dispatcher.dispatch(self.store, result.to_push)
        unlisted = [(o.ref, o.order_id) for o, is_open in window
                    if is_open and o.order_id not in result.seen_ids
                    and o.created_at is not None and start <= o.created_at <= end]
        for i in range(0, len(unlisted), IDS_PER_CALL):
            self._read_open(report, unlisted[i:i + IDS_PER_CALL])

    def _count_other_calls(self) -> int | None:
        """Source calls made since the last look — scans, webhook refreshes, the status
        list, audits, retries (None when the source does not count its calls)."""
        total = self.source.call_count()
        if total is None:
            return None
        delta, self._calls_seen = total - self._calls_seen, total
        return max(delta, 0)

    def _read_open(self, report: PassReport, chunk: Sequence[tuple[str, str]]) -> None:
        """One ``ids=`` call for ``chunk`` (ref, shop order id): record, push what changed."""
        raws = self.source.fetch_by_ids([oid for _, oid in chunk])
        report.refresh_calls += 1
        # Ledger orders only (known ones are always followed): no scope to apply.
        result = self.ingestor.ingest(raws, now=self.clock.now(), allow_events=True)
        report.refresh.add(result)
        missing = [oid for _, oid in chunk if oid not in result.seen_ids]
        if missing:
            told = set(self.inbox.deleted_orders(self.store, missing)) if self.inbox else set()
            self._handle_missing(missing, report, told_deleted=told)
        self.dispatcher.dispatch(self.store, result.to_push)

    def _account_other_calls(self, fallback: int) -> None:
        """Account the source calls made outside the re-reads since the last look (scan
        pages, webhook refreshes, the status list, audits, their retries; ``fallback`` when
        the source does not count its calls): remembered for :meth:`_reserved_rate`, and
        they use up the pacer's saved burst credit (no re-read burst right after them)."""
        counted = self._count_other_calls()
        calls = fallback if counted is None else counted
        if not calls:
            return
        mono = self.clock.monotonic()
        self._other_calls.append((mono, calls))
        while self._other_calls and self._other_calls[0][0] < mono - RESERVED_WINDOW:
            self._other_calls.popleft()
        self._pacer.absorb(calls, mono)

    def _reserved_rate(self) -> float:
        """Calls per second the new-order scan and webhook refreshes took lately."""
        return sum(n for _, n in self._other_calls) / RESERVED_WINDOW

    def _plan_refresh(self, report: PassReport, rate: float, share_rate: float) -> RefreshPlan:
        """The plan for the open orders the ledger holds now; kept in the ledger (cursor
        ``refresh_plan``) with the staleness percentiles, for ``status`` and the metrics.
        Warns (at most hourly) when the bound is longer than the staleness alert."""
        now, mono = self.clock.now(), self.clock.monotonic()
        horizon = now - self.policy.refresh_horizon
        plan = plan_refresh(
            self.ledger.open_orders_by_status(self.store, created_after=horizon),
            calls_per_second=rate,
            targets=self.policy.freshness_targets,
            floor=self.policy.refresh_min_interval,
        )
        report.refresh_plan = plan
        ages = self.ledger.staleness(self.store, created_after=horizon, now=now)
        bound_s = plan.bound.total_seconds() if plan.bound is not None else None
        # With healthy webhooks polling is only the safety net: its bound is no alarm.
        alert = (plan.exceeds(self.policy.staleness_alert) and plan.open_orders > 0
                 and not report.webhooks_healthy)
        summary = {
            "at": now.isoformat(),
            "open_orders": ages.open_orders,
            "staleness_p50_s": round(ages.p50_s, 1),
            "staleness_p95_s": round(ages.p95_s, 1),
            "staleness_max_s": round(ages.max_s, 1),
            "bound_s": round(bound_s, 1) if bound_s is not None else None,
            "refresh_calls_per_s": round(plan.calls_per_second, 4),
            "refresh_calls_per_hour": round(plan.calls_per_hour, 1),
            "share": share_rate / self.policy.source_rate if self.policy.source_rate else 0.0,
            "webhooks_healthy": report.webhooks_healthy,
            "alert_s": self.policy.staleness_alert.total_seconds(),
            "exceeds_alert": alert,
        }
        with self.ledger.session() as s:
            self.ledger.set_cursor(s, self.store, REFRESH_PLAN, json.dumps(summary), now)
        if alert and (self._alerted_at is None
                      or mono - self._alerted_at >= STATUS_TTL.total_seconds()):
            self._alerted_at = mono
            self.log.warning(
                "refresh.bound_exceeds_alert", store=self.store, open_orders=plan.open_orders,
                bound_s=summary["bound_s"], alert_s=summary["alert_s"],
                hint="the shop has outgrown polling: set up webhooks "
                     "(SHOPWIRED_WEBHOOK_SECRET) or raise ORDERSYNC_REFRESH_SHARE",
            )
        return plan

    def _mark_checked(self, refs: Sequence[str]) -> None:
        now = self.clock.now()
        self.ledger.mark_checked(self.store, refs, now)
        self.log.info("orders.missing", store=self.store, count=len(refs), refs=list(refs)[:20])

    def dispatch_due(self) -> int:
        """Between passes: dispatch what has come due (a retry, a deferral after a throttle
        or an open circuit) now, not at the next pass; how many were due. Cheap when nothing
        is: one indexed query. While the dispatcher itself holds a backlog of the store (its
        share of the queue is full), that backlog is moved on instead and the ledger is swept
        at most every ``BACKLOG_SWEEP_S``: the due orders are then mostly the backlog, and
        reading thousands of them every second for every store would cost more than the
        pushes."""
        mono = self.clock.monotonic()
        if self.dispatcher.backlogged(self.store) and mono < self._backlog_sweep_at:
            self.dispatcher.dispatch(self.store, [])
            return 0
        due_at = self.ledger.next_due_at(self.store)
        if due_at is None or due_at > self.clock.now():
            return 0
        self._backlog_sweep_at = mono + BACKLOG_SWEEP_S
        report = PassReport(started_at=self.clock.now())
        self._dispatch_due(report)
        return report.dispatched

    def _dispatch_due(self, report: PassReport) -> None:
        work = self.ledger.due_work(self.store, self.clock.now())
        report.dispatched = len(work)
        if work:
            self.dispatcher.sweep(self.store, work)

    # -- backfill -----------------------------------------------------------------------
    def backfill(
        self,
        since: datetime,
        until: datetime,
        *,
        chunk: timedelta = timedelta(days=31),
        progress: Callable[[Window, IngestResult], None] | None = None,
    ) -> IngestResult:
        """Import history in ``[since, until]`` without emitting any event; the scope start
        moves back to ``since`` so later passes follow these orders too."""
        self._lower_scope_start(since)
        total = IngestResult()
        for window in split_range(since, until, chunk):
            part = IngestResult()
            for page in self.source.new_order_pages(window):
                result = self.ingestor.ingest(page, now=self.clock.now(), allow_events=False)
                part.add(result)
                self._note_growth(result.new)
                self.dispatcher.dispatch(self.store, result.to_push)
            total.add(part)
            if progress:
                progress(window, part)
        self._dispatch_due(PassReport(started_at=self.clock.now()))
        return total
