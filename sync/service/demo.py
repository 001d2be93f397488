"""``ordersync demo`` and ``ordersync sandbox``: the real sync against the built-in simulators.

The demo is the newcomer's first contact, so it runs the production wiring — settings, HTTP
clients over real loopback sockets, rate limiters, ledger on SQLite, in-process pushes — and
only swaps the two remote APIs for the sandbox. It then *checks* what it claims:

* every order the shop holds since the start date is in WiredPlus, with no duplicate;
* no event was sent for an order that already existed when the sync was installed
  (nobody is mailed about last month's orders);
* every status change and refund made while the demo ran produced exactly one event;
* an order that is unchanged costs no WiredPlus call on the next pass;
* the ShopWired rate limit was never hit (0 answers 429).

Contract: :func:`run_demo` returns 0 when every check passed, 1 otherwise, and leaves the
ledger in ``<data_dir>/demo.db`` for ``ordersync status`` / ``ordersync show``.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from config.settings import Settings
from sync.clock import Clock, SystemClock
from sync.ledger.models import EventState, OrderState
from sync.logs import configure
from sync.sandbox.server import Sandbox, describe
from sync.service.dispatch import InlineDispatcher
from sync.service.poller import PassReport
from sync.service.runtime import Runtime, build_runtime

HISTORY_SHARE = 0.55  # orders created before the start date (a year of history)
RECENT_SHARE = 0.40  # created in the 30 days before install, more than a day ago


@dataclass
class DemoFigures:
    """What the demo measured; printed as the summary and returned for tests."""

    shop_orders: int = 0
    in_scope: int = 0
    passes: list[PassReport] = field(default_factory=list)
    shopwired_calls: int = 0
    wiredplus_calls: int = 0
    wiredplus_orders: int = 0
    events_sent: int = 0
    events_for_preexisting: int = 0
    changes_made: int = 0
    changes_with_event: int = 0
    skipped: int = 0
    throttled: int = 0
    unchanged_pass_wiredplus_calls: int = -1
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(passed for _, passed, _ in self.checks)


def _fresh_run_dir(data_dir: Path) -> tuple[Path, IO[str]]:
    """Empty ``data_dir`` for a new demo run and send the JSON logs to its ``ordersync.log``
    (the caller closes the file and restores logging)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    log_path = data_dir / "ordersync.log"
    log_file = log_path.open("a", encoding="utf-8")
    configure("json", "info", stream=log_file)
    return log_path, log_file


def demo_settings(sb: Sandbox, data_dir: Path, **overrides: object) -> Settings:
    """Settings for a sync against ``sb``: everything else is the product default."""
    user, key = sb.wiredplus_credentials
    sw_key, sw_secret = sb.shopwired_credentials
    values: dict[str, object] = {
        "SHOPWIRED_BASE_URL": sb.shopwired_url,
        "SHOPWIRED_API_KEY": sw_key,
        "SHOPWIRED_API_SECRET": sw_secret,
        "WIREDPLUS_BASE_URL": sb.wiredplus_url,
        "WIREDPLUS_API_USER": user,
        "WIREDPLUS_API_KEY": key,
        "DATABASE_URL": f"sqlite:///{data_dir / 'demo.db'}",
        "REDIS_URL": None,
        # The sandbox indexes a new order at once: no need to wait 30 s for it to settle.
        "ORDERSYNC_SETTLE_DELAY": "1s",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _build_shop(sb: Sandbox, orders: int, now_clock: Clock) -> int:
    """A shop with a year of history, a busy last month and a few orders from today."""
    now = now_clock.now()
    history = int(orders * HISTORY_SHARE)
    recent = int(orders * RECENT_SHARE)
    today = max(orders - history - recent, 1)
    sb.shopwired.generate_orders(
        history, created_between=(now - timedelta(days=365), now - timedelta(days=31))
    )
    sb.shopwired.generate_orders(
        recent, created_between=(now - timedelta(days=29), now - timedelta(days=2))
    )
    sb.shopwired.generate_orders(
        today, created_between=(now - timedelta(hours=20), now - timedelta(minutes=5))
    )
    # Two orders a real shop sends now and then that cannot be mapped.
    sb.shopwired.add_invalid_order("no_email", created=now - timedelta(days=3))
    sb.shopwired.add_invalid_order("negative_total", created=now - timedelta(days=2))
    return history + recent + today + 2


def _pass_row(t: Table, label: str, rep: PassReport, sw: int, wp: int, events: int) -> None:
    t.add_row(
        label,
        str(rep.new.seen),
        str(rep.new.new),
        str(rep.new.changed + rep.refresh.changed),
        str(rep.new.skipped + rep.refresh.skipped),
        str(events),
        str(sw),
        str(wp),
        f"{rep.duration_s:.2f}s",
    )


def run_demo(
    *,
    orders: int = 800,
    passes: int = 3,
    seed: int = 7,
    console: Console | None = None,
    data_dir: Path = Path("demo-data"),
    changes_per_pass: int = 12,
    new_per_pass: int = 3,
    source: str = "shopwired",
) -> int:
    """Run the sync end to end against the sandbox; print a summary; 0 when all checks pass."""
    if source == "elasticpath":
        ep = demo_elasticpath(orders=orders, passes=passes, seed=seed,
                              console=console or Console(), data_dir=data_dir)
        return 0 if ep.ok else 1
    figures = demo(
        orders=orders,
        passes=passes,
        seed=seed,
        console=console or Console(),
        data_dir=data_dir,
        changes_per_pass=changes_per_pass,
        new_per_pass=new_per_pass,
    )
    return 0 if figures.ok else 1


def demo(
    *,
    orders: int,
    passes: int,
    seed: int,
    console: Console,
    data_dir: Path,
    changes_per_pass: int = 12,
    new_per_pass: int = 3,
) -> DemoFigures:
    """The demo proper (see module docstring); returns the figures it measured."""
    started = time.monotonic()
    clock = SystemClock()
    figures = DemoFigures()
    log_path, log_file = _fresh_run_dir(data_dir)
    console.rule("[bold]ordersync demo[/] — ShopWired → WiredPlus against the built-in sandbox")
    with Sandbox(seed=seed, clock=clock) as sb:
        figures.shop_orders = _build_shop(sb, orders, clock)
        settings = demo_settings(sb, data_dir)
        start = settings.effective_start(clock.now())
        figures.in_scope = len(sb.shopwired.created_ids(int(start.timestamp()), None))
        console.print(
            f"sandbox shop: {figures.shop_orders} orders over the last year "
            f"({figures.in_scope} since the start date {start:%Y-%m-%d}); "
            f"ledger: {settings.database_url}"
        )
        rt = build_runtime(settings, clock=clock)
        try:
            _run_passes(rt, sb, figures, console, passes, changes_per_pass, new_per_pass)
            _verify(rt, sb, figures, start)
        finally:
            rt.close()
        figures.shopwired_calls = sum(sb.shopwired.calls.values())
        figures.wiredplus_calls = sum(sb.wiredplus.calls.values())
        figures.throttled = sb.shopwired.throttled
        figures.seconds = time.monotonic() - started
        _summary(figures, console, settings, sb)
    console.print(f"JSON logs of the run (one line per order action): {log_path}",
                  highlight=False)
    configure("auto", "warning")
    log_file.close()
    return figures


def _run_passes(
    rt: Runtime,
    sb: Sandbox,
    figures: DemoFigures,
    console: Console,
    passes: int,
    changes_per_pass: int,
    new_per_pass: int,
) -> None:
    table = Table(title="passes")
    for col in ("pass", "in window", "new", "changed", "skipped", "events",
                "SW calls", "WP calls", "took"):
        table.add_column(col, justify="right" if col != "pass" else "left")
    pre_existing = set(sb.shopwired.order_ids())
    rt.ledger.create_schema()
    # The demo runs embedded: build_runtime pushes in-process, and counts the events sent.
    dispatcher = rt.dispatcher
    assert isinstance(dispatcher, InlineDispatcher)
    events_before = dispatcher.events_sent
    # Pass 1: the install. Imports the last 30 days; mails nobody about them.
    sw0, wp0 = sum(sb.shopwired.calls.values()), sum(sb.wiredplus.calls.values())
    with console.status("pass 1: first import…"):
        rep = rt.poller.run_pass()
    events = dispatcher.events_sent - events_before
    figures.passes.append(rep)
    _pass_row(table, "1 (install)", rep, sum(sb.shopwired.calls.values()) - sw0,
              sum(sb.wiredplus.calls.values()) - wp0, events)
    # An idle pass: nothing changed in the shop, so nothing may be sent.
    time.sleep(1.1)
    sw0, wp0 = sum(sb.shopwired.calls.values()), sum(sb.wiredplus.calls.values())
    events_before = dispatcher.events_sent
    rep = rt.poller.run_pass()
    figures.unchanged_pass_wiredplus_calls = sum(sb.wiredplus.calls.values()) - wp0
    figures.passes.append(rep)
    _pass_row(table, "2 (idle shop)", rep, sum(sb.shopwired.calls.values()) - sw0,
              figures.unchanged_pass_wiredplus_calls,
              dispatcher.events_sent - events_before)
    # Busy passes: the shop ships, cancels, refunds and takes new orders between passes.
    changed: Counter[str] = Counter()
    for n in range(passes):
        activity = sb.activity.step(changes_per_pass, new_per_pass)
        for oid, kind in activity:
            if kind.startswith(("status:", "refund:")):
                changed[str(oid)] += 1
        sb.activity_log.extend(activity)
        sw0, wp0 = sum(sb.shopwired.calls.values()), sum(sb.wiredplus.calls.values())
        events_before = dispatcher.events_sent
        with console.status(f"pass {n + 3}: {len(activity)} changes in the shop…"):
            # As `ordersync run` does between passes: paced re-reads of open orders, until
            # the staleness bound (or the settle delay, for the new orders) has passed.
            bound = rep.refresh_plan.bound if rep.refresh_plan else None
            wait = max(1.1, bound.total_seconds() + 0.5 if bound else 0.0)
            until = time.monotonic() + wait
            while time.monotonic() < until:
                rt.poller.refresh_tick()
                time.sleep(0.25)
            rep = rt.poller.run_pass()
        figures.passes.append(rep)
        _pass_row(table, f"{n + 3} (busy)", rep, sum(sb.shopwired.calls.values()) - sw0,
                  sum(sb.wiredplus.calls.values()) - wp0,
                  dispatcher.events_sent - events_before)
    console.print(table)
    figures.changes_made = sum(
        1 for oid, kind in sb.activity_log if kind.startswith(("status:", "refund:"))
    )
    figures.events_sent = len(sb.wiredplus.events)
    # Events for orders that existed at install time but were not touched since.
    touched = {str(oid) for oid, _ in sb.activity_log}
    preexisting_refs = {
        row.ref for row in rt.ledger.all_orders(rt.settings.store)
        if row.source_order_id.isdecimal() and int(row.source_order_id) in pre_existing
        and row.source_order_id not in touched
    }
    figures.events_for_preexisting = sum(
        1 for ev in rt.ledger.all_events(rt.settings.store)
        if ev.order_ref in preexisting_refs and ev.state == EventState.SENT
        and not _first_sight_recent(rt, ev.order_ref)
    )
    changed_refs = {r for r in (rt.ledger.ref_for(rt.settings.store, oid) for oid in changed) if r}
    with_event = {ev.order_ref for ev in rt.ledger.all_events(rt.settings.store)
                  if ev.state == EventState.SENT}
    figures.changes_with_event = len(changed_refs & with_event)


def _first_sight_recent(rt: Runtime, ref: str) -> bool:
    """True when the order was created inside the first-sight event window at install."""
    row = rt.ledger.find_order(rt.settings.store, ref)
    if row is None or row.created_at is None:
        return False
    return row.first_seen_at - row.created_at <= rt.settings.first_sight_event_window


def _verify(rt: Runtime, sb: Sandbox, figures: DemoFigures, start: object) -> None:
    store = rt.settings.store
    rows = rt.ledger.all_orders(store)
    synced = [r for r in rows if r.state == OrderState.SYNCED]
    figures.skipped = sum(1 for r in rows if r.state == OrderState.SKIPPED)
    figures.wiredplus_orders = len(sb.wiredplus.orders)
    in_shop = set(sb.shopwired.created_ids(int(rt.poller.start_at(rt.clock.now()).timestamp())))
    in_ledger = {int(r.source_order_id) for r in rows if r.source_order_id.isdecimal()}
    missing = in_shop - in_ledger
    figures.checks.append((
        "every order since the start date reached the ledger",
        not missing, f"{len(in_shop)} in shop, {len(missing)} missing",
    ))
    not_in_wp = [r.ref for r in synced if sb.wiredplus.order_by_ref(r.ref) is None]
    figures.checks.append((
        "every synced order is in WiredPlus",
        not not_in_wp and len(synced) > 0,
        f"{len(synced)} synced, {len(not_in_wp)} absent",
    ))
    dup_orders = [k for k, v in sb.wiredplus.order_creations.items() if v > 1]
    dup_events = [k for k, v in sb.wiredplus.event_creations.items() if v > 1]
    figures.checks.append((
        "no order or event created twice in WiredPlus",
        not dup_orders and not dup_events,
        f"{len(dup_orders)} duplicate orders, {len(dup_events)} duplicate events",
    ))
    figures.checks.append((
        "no event for orders that existed before install",
        figures.events_for_preexisting == 0,
        f"{figures.events_for_preexisting} such events",
    ))
    figures.checks.append((
        "an idle pass costs 0 WiredPlus calls",
        figures.unchanged_pass_wiredplus_calls == 0,
        f"{figures.unchanged_pass_wiredplus_calls} calls",
    ))
    stale = []
    for r in synced:
        shop = sb.shopwired.get_order(int(r.source_order_id))
        wp = sb.wiredplus.order_by_ref(r.ref)
        shop_status = str((shop or {}).get("status", {}).get("id"))
        if wp is None or shop_status != r.status_id or wp.get("order_status") != r.order_status:
            stale.append(
                f"{r.ref}: shop {shop_status} ledger {r.status_id}/{r.order_status} "
                f"wp {(wp or {}).get('order_status')}"
            )
    figures.checks.append((
        "WiredPlus shows every order's current shop status",
        not stale,
        f"{len(stale)} stale{' ' + str(stale[:3]) if stale else ''}; "
        f"{figures.changes_made} changes made in the shop, "
        f"{figures.changes_with_event} changed orders got events",
    ))
    figures.checks.append((
        "unmappable orders skipped with a reason, the pass went on",
        figures.skipped >= 2 and all(
            r.last_error for r in rows if r.state == OrderState.SKIPPED
        ),
        f"{figures.skipped} skipped",
    ))
    figures.checks.append((
        "ShopWired rate limit respected",
        sb.shopwired.throttled == 0,
        f"{sb.shopwired.throttled} answers 429",
    ))
    figures.checks.append((
        "WiredPlus accepted every request",
        not sb.wiredplus.rejections,
        f"{len(sb.wiredplus.rejections)} rejected",
    ))


def _summary(figures: DemoFigures, console: Console, settings: Settings, sb: Sandbox) -> None:
    synced_orders = max(figures.wiredplus_orders, 1)
    t = Table(title="summary")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("orders in WiredPlus", str(figures.wiredplus_orders))
    t.add_row("events sent", str(figures.events_sent))
    t.add_row("skipped (unmappable)", str(figures.skipped))
    shop = "ShopWired" if settings.source == "shopwired" else "Elastic Path"
    t.add_row(f"{shop} calls", str(figures.shopwired_calls))
    t.add_row("WiredPlus calls", str(figures.wiredplus_calls))
    per_100 = 100 * figures.shopwired_calls / synced_orders
    t.add_row(f"{shop} calls per 100 orders", f"{per_100:.1f}")
    t.add_row(f"{shop} 429s", str(figures.throttled))
    t.add_row("took", f"{figures.seconds:.1f}s")
    console.print(t)
    for name, passed, detail in figures.checks:
        mark = "[green]✓[/]" if passed else "[red]✗[/]"
        console.print(f"{mark} {name} [dim]({detail})[/]", highlight=False)
    console.print(
        f"\nInspect it: [bold]DATABASE_URL={settings.database_url} .venv/bin/ordersync "
        "status[/] (or `dlq list`, `show ORDER_ID`)",
        highlight=False,
    )
    if not figures.ok:
        console.print("[bold red]demo: some checks failed[/]")
    else:
        console.print("[bold green]demo: all checks passed[/]")


def serve_sandbox(
    *,
    orders: int,
    seed: int,
    activity: float,
    ports: tuple[int, int],
    console: Console,
    options: Mapping[str, Any] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Serve both simulators on fixed ports of ``host`` until Ctrl-C, printing how to point
    ordersync at them (for trying the real daemon, webhooks or workers by hand), from this
    machine and from containers. ``options``: more :class:`~sync.sandbox.server.Sandbox`
    keyword arguments (latency, BulkOrderUpdate)."""
    sb = Sandbox(seed=seed, orders=0, **dict(options or {}))
    clock = sb.clock
    _build_shop(sb, orders, clock)
    from sync.sandbox.server import serve

    sb._servers["shopwired"] = serve(sb.shopwired.handle, host, ports[0])
    sb._servers["wiredplus"] = serve(sb.wiredplus.handle, host, ports[1])
    if activity > 0:
        sb.start_activity(interval_seconds=activity)
    sw_key, sw_secret = sb.shopwired_credentials
    user, key = sb.wiredplus_credentials
    console.print(describe(sb), highlight=False, soft_wrap=True)
    from sync.sandbox.server import DOCKER_HOST_NAME, client_host, connection_env

    bound = (sb._servers["shopwired"].port, sb._servers["wiredplus"].port)
    creds = {"shopwired_credentials": (sw_key, sw_secret), "wiredplus_credentials": (user, key)}
    here = client_host(host)
    console.print(
        "\n# point ordersync at it:\n"
        + connection_env((here, bound[0]), (here, bound[1]), dotenv=False, **creds)
        + f"\n\n# or, for docker compose, append to .env (containers reach this machine as "
        f"{DOCKER_HOST_NAME}"
        + ("" if host != "127.0.0.1" else "; on Linux start the sandbox with --host set to "
           "the docker0 address, e.g. --host 172.17.0.1")
        + "):\n"
        + connection_env((DOCKER_HOST_NAME, bound[0]), (DOCKER_HOST_NAME, bound[1]),
                         dotenv=True, **creds) + "\n",
        highlight=False,
        soft_wrap=True,
    )
    try:
        wait_for_stop_signal()
    finally:
        sb.stop()


def wait_for_stop_signal() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM (docker stop). The handlers are installed
    explicitly: a process started in the background by a non-interactive shell inherits
    SIGINT *ignored*, and Python then never raises KeyboardInterrupt."""
    import signal
    import threading

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass


def demo_elasticpath(
    *,
    orders: int,
    passes: int,
    seed: int,
    console: Console,
    data_dir: Path,
    changes_per_pass: int = 10,
) -> DemoFigures:
    """The demo for the second source: an Elastic Path store (simulated, served over HTTP)
    through the same pipeline into the WiredPlus simulator, with the same self-checks."""
    import random

    from sync.sandbox.elasticpath import ElasticPathSimulator
    from sync.sandbox.server import serve

    started = time.monotonic()
    clock = SystemClock()
    figures = DemoFigures()
    _log_path, log_file = _fresh_run_dir(data_dir)
    console.rule("[bold]ordersync demo[/] — Elastic Path → WiredPlus against the sandbox")
    ep = ElasticPathSimulator(clock=clock, seed=seed, enforce_rate_limit=True,
                              rate_limit_per_second=25)
    now = clock.now()
    ep.generate_orders(int(orders * 0.5),
                       created_between=(now - timedelta(days=365), now - timedelta(days=35)))
    ep.generate_orders(int(orders * 0.45),
                       created_between=(now - timedelta(days=28), now - timedelta(days=2)))
    ep.generate_orders(max(orders - int(orders * 0.95), 1),
                       created_between=(now - timedelta(hours=20), now - timedelta(minutes=5)))
    figures.shop_orders = len(ep.orders)
    server = serve(ep.handle)
    try:
        with Sandbox(seed=seed, clock=clock) as sb:
            settings = demo_settings(
                sb, data_dir, ORDERSYNC_SOURCE="elasticpath",
                ELASTICPATH_BASE_URL=server.url, ELASTICPATH_CLIENT_ID=ep.client_id,
                ELASTICPATH_CLIENT_SECRET=ep.client_secret,
            )
            start = settings.effective_start(clock.now())
            rt = build_runtime(settings, clock=clock)
            pre_existing = set(ep.orders)
            rng = random.Random(seed)
            # Old orders touched today: the updated_at scan lists them; they must be ignored.
            old_ids = sorted(set(ep.orders) - set(ep.created_ids(start, clock.now())))
            old_touched = rng.sample(old_ids, min(5, len(old_ids)))
            for oid in old_touched:
                ep.touch(oid)
            table = Table(title="passes")
            for col in ("pass", "read", "new", "changed", "events", "WP calls", "took"):
                table.add_column(col, justify="right" if col != "pass" else "left")
            changed_ids: set[str] = set()
            try:
                for n in range(passes + 2):
                    if n >= 2:
                        scope = list(ep.created_ids(start, clock.now()))
                        for oid in rng.sample(scope, min(changes_per_pass, len(scope))):
                            action = rng.choice(("pay", "ship", "cancel"))
                            if action == "pay":
                                ep.set_payment(oid, "paid")
                            elif action == "ship":
                                ep.set_payment(oid, "paid")
                                ep.set_shipping(oid, "fulfilled")
                            else:
                                ep.set_status(oid, "cancelled")
                            changed_ids.add(oid)
                    time.sleep(1.1)
                    wp0 = sum(sb.wiredplus.calls.values())
                    ev0 = len(sb.wiredplus.events)
                    rep = rt.poller.run_pass()
                    wp_calls = sum(sb.wiredplus.calls.values()) - wp0
                    if n == 1:
                        figures.unchanged_pass_wiredplus_calls = wp_calls - 0
                    figures.passes.append(rep)
                    label = "1 (install)" if n == 0 else "2 (idle)" if n == 1 else f"{n + 1}"
                    table.add_row(label, str(rep.new.seen), str(rep.new.new),
                                  str(rep.new.changed), str(len(sb.wiredplus.events) - ev0),
                                  str(wp_calls), f"{rep.duration_s:.2f}s")
                console.print(table)
                rows = rt.ledger.all_orders(settings.store)
                synced = [r for r in rows if r.state == OrderState.SYNCED]
                figures.skipped = sum(1 for r in rows if r.state == OrderState.SKIPPED)
                figures.wiredplus_orders = len(sb.wiredplus.orders)
                figures.events_sent = len(sb.wiredplus.events)
                figures.changes_made = len(changed_ids)
                in_scope = set(ep.created_ids(start, clock.now() - settings.settle_delay))
                in_ledger = {r.source_order_id for r in rows}
                figures.checks.append(("every order created since the start date reached the "
                                       "ledger", in_scope <= in_ledger,
                                       f"{len(in_scope)} in scope, "
                                       f"{len(in_scope - in_ledger)} missing"))
                older = in_ledger - set(ep.created_ids(start, clock.now()))
                figures.checks.append(("no order created before the start date imported",
                                       not older, f"{len(older)} such orders; "
                                       f"{len(old_touched)} old orders changed today were "
                                       "listed and ignored"))
                figures.checks.append(("every synced order is in WiredPlus",
                                       bool(synced) and all(sb.wiredplus.order_by_ref(r.ref)
                                                            for r in synced),
                                       f"{len(synced)} synced"))
                dups = [k for k, v in (*sb.wiredplus.order_creations.items(),
                                       *sb.wiredplus.event_creations.items()) if v > 1]
                figures.checks.append(("no order or event created twice", not dups,
                                       f"{len(dups)} duplicates"))
                old_events = 0
                for ev in rt.ledger.all_events(settings.store):
                    row = rt.ledger.get_order(settings.store, ev.order_ref)
                    if (row is not None and row.source_order_id in pre_existing
                            and row.source_order_id not in changed_ids
                            and not _first_sight_recent(rt, ev.order_ref)):
                        old_events += 1
                figures.events_for_preexisting = old_events
                figures.checks.append(("no event for orders that existed before install",
                                       old_events == 0, f"{old_events} such events"))
                figures.checks.append(("an idle pass costs 0 WiredPlus calls",
                                       figures.unchanged_pass_wiredplus_calls == 0,
                                       f"{figures.unchanged_pass_wiredplus_calls} calls"))
                figures.checks.append(("WiredPlus accepted every request",
                                       not sb.wiredplus.rejections,
                                       f"{len(sb.wiredplus.rejections)} rejected"))
            finally:
                rt.close()
            figures.wiredplus_calls = sum(sb.wiredplus.calls.values())
            figures.shopwired_calls = sum(ep.calls.values())
            figures.seconds = time.monotonic() - started
            _summary(figures, console, settings, sb)
    finally:
        server.stop()
        configure("auto", "warning")
        log_file.close()
    return figures
