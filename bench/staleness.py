"""Staleness of open orders under polling: how long an open order may go unread, and what
that costs in ShopWired calls an hour, at product defaults (issue 14).

Method: the production wiring (`build_runtime`, every setting at its default) and the real
daemon loop (`sync.service.daemon.step`) against the in-process sandbox, whose ShopWired
enforces the 40-deep, 2 calls/s bucket; every component shares one FakeClock, so an hour of
polling takes seconds to minutes of CPU, not an hour. The shop has exactly N open orders
(statuses spread like the generator's, terminal ones moved to an open status). After the
install pass, the loop runs for 1.5 × the (longest) computed staleness bound plus a minute; every
`pass` samples the ledger's staleness (now − last read, over all open orders), and the
*maximum staleness* is the largest age ever sampled. Before measuring, each variant runs
until every open order has been re-read once under its share (a warm-up round).
*Calls/hour* is every ShopWired call in the measured time (scans, re-reads, webhook
refreshes, the status list) over that simulated time. *With healthy webhooks*: a webhook
delivery for some order every minute (so the poller sees webhooks as healthy and drops to
the small safety-net share).
The ledger is SQLite in a scratch directory: time is simulated, so database speed cannot
change the figures, only how long the scenario takes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

TICK = 1.0
"""Simulated seconds per loop turn (the daemon ticks every 0.25 s; at under one re-read a
second the pacer spends the same calls either way)."""

SIZES_FULL = (1_000, 10_000, 50_000)
SIZES_QUICK = (1_000,)


def _shop(sb: Any, n_open: int, clock: Any) -> None:
    sw = sb.shopwired
    now = clock.now()
    sw.generate_orders(n_open, created_between=(now - timedelta(days=29),
                                                now - timedelta(hours=2)))
    reopen = {"Cancelled": "Completed", "Refunded": "Shipped"}
    for oid, order in list(sw.orders.items()):
        target = reopen.get(order["status"]["name"])
        if target:
            status = sw.status_by_name(target)
            sw.set_status(oid, status["id"])
        if order.get("archived"):
            sw.archive(oid, False)


def measure(n_open: int, scratch: Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Both variants for one shop size: without webhooks, then with healthy webhooks."""
    from config.settings import Settings
    from sync.clock import FakeClock
    from sync.ledger.store import REFRESH_PLAN
    from sync.logs import configure
    from sync.sandbox import Sandbox
    from sync.service.daemon import Schedule, step
    from sync.service.runtime import build_runtime

    configure("json", "error")
    clock = FakeClock()
    sb = Sandbox(seed=14, clock=clock)
    _shop(sb, n_open, clock)
    db = scratch / f"staleness-{n_open}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = Settings(  # product defaults; only the endpoints and credentials are set
        SHOPWIRED_BASE_URL="http://shopwired.sandbox/v1", SHOPWIRED_API_KEY="sandbox-key",
        SHOPWIRED_API_SECRET="sandbox-secret", WIREDPLUS_BASE_URL="http://wiredplus.sandbox/v1",
        WIREDPLUS_API_USER="sandbox", WIREDPLUS_API_KEY="sandbox-key",
        DATABASE_URL=f"sqlite:///{db}",
    )
    rt = build_runtime(settings, clock=clock, shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    out: dict[str, Any] = {"open_orders": n_open}
    try:
        t0 = time.monotonic()
        schedule = Schedule(settings.poll_interval, clock.monotonic())
        step(rt.poller, clock.monotonic(), schedule)  # the install
        log(f"  staleness {n_open:,}: install in {time.monotonic() - t0:.0f} s")
        some = sorted(sb.shopwired.orders)[:50]
        for variant, webhooks in (("no webhooks", False), ("healthy webhooks", True)):
            t1 = time.monotonic()
            out[variant] = _run(rt, sb, clock, schedule, step, REFRESH_PLAN, some,
                                webhooks=webhooks)
            r = out[variant]
            log(f"  staleness {n_open:,}, {variant}: bound {r['bound_s']:.0f} s, max "
                f"{r['max_staleness_s']:.0f} s, {r['calls_per_hour']:.0f} calls/h, "
                f"{r['throttled']} × 429 ({time.monotonic() - t1:.0f} s)")
    finally:
        rt.close()
        configure("auto", "warning")
    return out


def _run(rt: Any, sb: Any, clock: Any, schedule: Any, step: Any, plan_cursor: str,
         some: Sequence[int], *, webhooks: bool) -> dict[str, Any]:
    store = rt.settings.store
    start_mono = clock.monotonic()

    def plan() -> dict[str, Any]:
        return dict(json.loads(rt.ledger.get_cursor(store, plan_cursor) or "{}"))

    delivered = 0

    def deliver() -> None:
        nonlocal delivered
        if webhooks and clock.monotonic() - start_mono >= 60 * delivered:
            rt.poller.inbox.record(store, f"bench-{delivered}", "order.updated",
                                   str(some[delivered % len(some)]), clock.now(), clock.now())
            delivered += 1

    # Settle into the variant: one pass sees the webhooks (or their absence) and plans; then
    # one whole round, so every open order has been read under this variant's share (the
    # install itself is slow to push: WiredPlus's default 5,000 calls/hour paces it).
    deliver()
    schedule.next_full = clock.monotonic()
    step(rt.poller, clock.monotonic(), schedule)
    settle_from = clock.now()
    horizon_dt = rt.clock.now() - rt.settings.refresh_horizon
    while True:
        ages = rt.ledger.staleness(store, created_after=horizon_dt, now=clock.now())
        if ages.max_s <= (clock.now() - settle_from).total_seconds():
            break
        for _ in range(60):
            deliver()
            step(rt.poller, clock.monotonic(), schedule)
            clock.advance(TICK)
    first = plan()
    sb.shopwired.reset_counters()
    measure_from = clock.monotonic()
    bound = first.get("bound_s") or 3600.0
    horizon = 1.5 * bound + 60.0
    max_age, bounds, passes = 0.0, [bound], 0
    last_pass = schedule.next_full
    while clock.monotonic() - measure_from < max(horizon, 1.5 * max(bounds) + 60.0):
        deliver()
        step(rt.poller, clock.monotonic(), schedule)
        if schedule.next_full != last_pass:  # a pass ran: sample what it recorded
            last_pass = schedule.next_full
            passes += 1
            p = plan()
            max_age = max(max_age, p.get("staleness_max_s") or 0.0)
            if p.get("bound_s"):
                bounds.append(p["bound_s"])
        clock.advance(TICK)
    elapsed = clock.monotonic() - measure_from
    calls = sum(sb.shopwired.calls.values())
    last = plan()
    return {
        "webhooks_healthy": bool(last.get("webhooks_healthy")),
        "share": last.get("share"),
        "bound_s": max(bounds),
        "max_staleness_s": max_age,
        "simulated_s": elapsed,
        "passes": passes,
        "shopwired_calls": calls,
        "calls_per_hour": calls * 3600.0 / elapsed,
        "throttled": sb.shopwired.throttled,
        "webhook_deliveries": delivered,
    }


def staleness(ctx: Any, sizes: Sequence[int]) -> dict[str, Any]:
    """The scenario for ``bench.run``: one shop per size, both variants."""
    scratch = ctx.scratch("staleness")
    t0 = time.monotonic()
    rows = [measure(n, scratch, log=ctx.log) for n in sizes]
    return {"sizes": rows, "seconds": time.monotonic() - t0}


def markdown(st: dict[str, Any]) -> list[str]:
    out = ["### Staleness of open orders under polling (issue 14)\n",
           "Product defaults (polling share 30 % of ShopWired's 2 calls/s; 5 % while webhooks "
           "are healthy), the real daemon loop against the sandbox enforcing the 40/2 s "
           "bucket, simulated time (FakeClock; see `bench/staleness.py`). *Max staleness*: the "
           "longest any open order went unread, sampled at every pass over 1.5 × the bound "
           "+ 60 s, after a warm-up round. *Calls/hour*: every ShopWired call in that "
           "time.\n",
           "| open orders | webhooks | share | computed bound | measured max staleness "
           "| ShopWired calls/hour | 429s |",
           "|---|---|---|---|---|---|---|"]
    for row in st["sizes"]:
        for variant in ("no webhooks", "healthy webhooks"):
            r = row.get(variant)
            if not r:
                continue
            out.append(
                f"| {row['open_orders']:,} | {'healthy' if r['webhooks_healthy'] else 'none'} "
                f"| {100 * (r['share'] or 0):.0f} % | {_dur(r['bound_s'])} "
                f"| **{_dur(r['max_staleness_s'])}** | {r['calls_per_hour']:,.0f} "
                f"| {r['throttled']} |")
    out.append("")
    return out


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:  # python -m bench.staleness [N ...]: this scenario alone, printed
    import sys
    import tempfile

    from bench.scenarios import Context

    sizes = tuple(int(a) for a in sys.argv[1:]) or SIZES_FULL
    with tempfile.TemporaryDirectory() as d:
        ctx = Context(quick=False, work=Path(d), redis_db=0, deadline=time.monotonic() + 1e9)
        st = staleness(ctx, sizes)
    print(json.dumps(st, indent=2))
    print("\n".join(markdown(st)))


if __name__ == "__main__":
    main()
