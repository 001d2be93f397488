"""The benchmark scenarios. Each returns a JSON-able dict of what it measured.

Every scenario gets a fresh sandbox process, and — when it needs them — a private PostgreSQL
schema (dropped afterwards) and an emptied Redis database (flushed before and after).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psutil  # type: ignore[import-untyped]

from bench.harness import (
    ROOT,
    Daemon,
    InfraRestarted,
    MachineLoad,
    Sampler,
    SandboxProcess,
    check_infra,
    flush_redis,
    infra_ids,
    ordersync_env,
    pg_counters,
    pg_schema,
    pg_table_writes,
    queue_length,
    redis_commands,
    redis_url,
    start_ordersync,
    wait_for_text,
)

__all__ = ["InfraRestarted", "backfill", "incremental_pass", "naive_baseline", "rate_limited",
           "sandbox_capacity", "steady_state"]

STORE = "bench"
UPDATE_OK = "POST /v1/UpdateOrder 200"
EVENT_OK = "POST /v1/CreateOrderEvent 200"
PAGE = 100  # ShopWired page size ordersync asks for
BACKFILL_CHUNK = timedelta(days=31)  # Poller.backfill's default chunk
SW_SERVER_BUCKET = 40
SW_RATE = 2.0

#: These scenarios measure the single-call design (calls per order, CPU per order): the
#: BulkOrderUpdate path (issue 17) is measured by bench.realistic.
SINGLE_CALLS: Final = {"ORDERSYNC_WIREDPLUS_BULK": "false"}


@dataclass
class Context:
    quick: bool
    work: Path
    redis_db: int
    deadline: float  # time.monotonic() by which the run should be done
    notes: list[str] = field(default_factory=list)
    log: Callable[[str], None] = print

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def scratch(self, name: str) -> Path:
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        return d


# ---------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def database(kind: str, scratch: Path) -> Iterator[str]:
    if kind == "sqlite":
        path = scratch / "ledger.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        return
    with pg_schema() as url:
        yield url


def since_date(days: int = 30) -> tuple[str, datetime]:
    """``--since`` for a backfill that covers the sandbox's orders, and that instant."""
    day = (datetime.now(UTC) - timedelta(days=days)).date()
    return day.isoformat(), datetime(day.year, day.month, day.day, tzinfo=UTC)


def list_calls(rows: list[tuple[int, int]], page: int = PAGE) -> int:
    """List calls the client's paging costs for a window holding ``rows`` — ``(created
    second, id)`` in list order — replaying ``ShopWiredClient.iter_orders_in_window``:

    keyset paging on ``created`` — each request starts (inclusive) at the created second of
    the last row received, offset 0; only a page-full second makes the offset grow; a short
    (possibly empty) page ends the window. The rows of the boundary second are read twice, so
    a window costs about one call per 99 orders, plus the closing short page."""
    if not rows:
        return 1
    calls = 0
    cursor = rows[0][0] - 1  # the window's start: before every row
    skip = 0
    while True:
        calls += 1
        lo = bisect.bisect_left(rows, (cursor, -1))
        got = rows[lo + skip: lo + skip + page]
        if len(got) < page:
            return calls
        last = got[-1][0]
        if last <= cursor:
            skip += len(got)
        else:
            cursor, skip = last, 0


def design_backfill_calls(sb: SandboxProcess, since: datetime, until: datetime) -> int:
    """What the design costs in ShopWired calls for ``backfill --since``: for each 31-day
    window, the paging of its regular orders and then of its archived ones."""
    from sync.domain.windows import split_range

    calls = 0
    for w in split_range(since, until, BACKFILL_CHUNK):
        start, end = int(w.start.timestamp()), int(w.end.timestamp())
        for archived in (False, True):
            calls += list_calls(sb.created(start, end, archived))
    return calls


def design_pass_calls(sb: SandboxProcess, start: datetime, end: datetime) -> int:
    """ShopWired calls of a first ``poll --once`` over [start, end]: the status list, then the
    regular and archived pages of the window (the refresh step finds nothing left to read)."""
    s, e = int(start.timestamp()), int(end.timestamp())
    return 1 + sum(list_calls(sb.created(s, e, a)) for a in (False, True))


def _ok(stats: dict[str, Any], key: str) -> int:
    return int(stats["wiredplus"]["by_status"].get(key, 0))


def _sw_total(stats: dict[str, Any]) -> int:
    return int(stats["shopwired"]["total"])


def _ours(sampler: Sampler, *extra: int) -> set[int]:
    """Every process the benchmark started (alive now or sampled earlier)."""
    pids = set(sampler.stats) | set(extra)
    with contextlib.suppress(psutil.Error):
        pids |= {c.pid for c in psutil.Process().children(recursive=True)}
    return pids


def _writes_per_order(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]],
                      orders: int) -> dict[str, float]:
    """Rows written per order, by ledger table (``orders.updated`` etc.)."""
    out: dict[str, float] = {}
    for table, now in after.items():
        was = before.get(table, {"inserted": 0, "updated": 0})
        short = table.removeprefix("ledger_")
        for kind in ("inserted", "updated"):
            n = now[kind] - was[kind]
            if n:
                out[f"{short}.{kind}"] = n / orders
    return out


def _proc_cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


def start_workers(n: int, env: dict[str, str], scratch: Path, sampler: Sampler) -> list[Daemon]:
    workers = [
        start_ordersync(f"worker{i}", ["worker", "--concurrency", "1"], env, scratch)
        for i in range(n)
    ]
    for w in workers:
        w.role = "worker"
        wait_for_text(w.log, "ready.", 90, w)
        sampler.watch(w)
    return workers


def stop_all(daemons: list[Daemon]) -> list[int]:
    """Stop every daemon, in parallel (all signalled first, then awaited)."""
    for d in daemons:
        d.terminate()
    return [d.stop() for d in daemons]


def ledger_snapshot(url: str) -> tuple[dict[str, str | None], set[str], dict[str, int]]:
    """(ref → content_hash, every event_reference, order counts by state) of the bench store."""
    from sqlalchemy import select

    from sync.ledger.models import EventRow, OrderRow
    from sync.ledger.store import Ledger

    led = Ledger(url)
    try:
        with led.session() as s:
            hashes = {
                r: h for r, h in s.execute(
                    select(OrderRow.ref, OrderRow.content_hash).where(OrderRow.store == STORE)
                )
            }
            events = set(s.scalars(
                select(EventRow.event_reference).where(EventRow.store == STORE)
            ))
        counts = led.counts(STORE).orders
    finally:
        led.dispose()
    return hashes, events, counts


def open_orders(url: str) -> int:
    from sqlalchemy import func, select

    from sync.ledger.models import OrderRow
    from sync.ledger.store import Ledger

    led = Ledger(url)
    try:
        with led.session() as s:
            return int(s.scalar(
                select(func.count()).select_from(OrderRow).where(
                    OrderRow.store == STORE, OrderRow.terminal.is_(False)
                )
            ) or 0)
    finally:
        led.dispose()


# ---------------------------------------------------------------------------- capacity


def sandbox_capacity(ctx: Context, seconds: float, clients: int = 2) -> dict[str, Any]:
    """The sandbox alone: requests/s it serves for list pages and for UpdateOrder, with
    ``clients`` load processes (one keep-alive connection each) on the same machine."""
    scratch = ctx.scratch("capacity")
    out: dict[str, Any] = {"clients": clients, "seconds": seconds}
    with SandboxProcess(orders=5000, log_dir=scratch) as sb:
        assert sb.info is not None
        env = ordersync_env(sb.info, "sqlite://", extra=SINGLE_CALLS)
        for kind in ("list", "update"):
            cpu0 = _proc_cpu(sb.info.pid)
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "bench.load", "--kind", kind, "--seconds",
                     str(seconds), "--shop-orders", "5000"],
                    env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                )
                for _ in range(clients)
            ]
            results = [json.loads(p.communicate(timeout=seconds + 60)[0]) for p in procs]
            cpu = _proc_cpu(sb.info.pid) - cpu0
            requests = sum(r["requests"] for r in results)
            errors = sum(r["errors"] for r in results)
            wall = max(r["seconds"] for r in results)
            out[kind] = {
                "requests": requests,
                "errors": errors,
                "per_second": requests / wall,
                "sandbox_cpu_ms_per_request": 1000 * cpu / max(requests, 1),
                "sandbox_cpu_share": cpu / wall,
            }
            ctx.log(f"  sandbox {kind}: {requests / wall:,.0f} req/s ({errors} errors)")
    return out


# ---------------------------------------------------------------------------- naive


def naive_baseline(ctx: Context, orders: int) -> dict[str, Any]:
    """The hand-written loop (:mod:`bench.naive`), run twice: a first import, then a re-run
    over the unchanged shop (it has no memory, so it sends everything again)."""
    scratch = ctx.scratch("naive")
    with SandboxProcess(orders=orders, log_dir=scratch) as sb:
        assert sb.info is not None
        env = ordersync_env(sb.info, "sqlite://", extra=SINGLE_CALLS)
        _, since = since_date()
        runs = []
        for _ in range(2):
            sb.reset()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.naive", "--since", str(int(since.timestamp())),
                 "--until", str(int(time.time()))],
                env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True,
            )
            ps = psutil.Process(proc.pid)
            cpu = 0.0
            while proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    t = ps.cpu_times()
                    cpu = float(t.user + t.system)
                time.sleep(0.1)
            res = json.loads(proc.communicate()[0])
            stats = sb.stats()
            res["cpu_ms_per_order"] = 1000 * cpu / max(res["orders"], 1)
            res["sandbox_shopwired_calls"] = _sw_total(stats)
            res["sandbox_wiredplus_accepted"] = _ok(stats, UPDATE_OK)
            runs.append(res)
    first, again = runs
    n = max(first["orders"], 1)
    result = {
        "orders": first["orders"],
        "orders_per_s": first["orders"] / first["seconds"],
        "seconds": first["seconds"],
        "shopwired_calls_per_order": first["shopwired_calls"] / n,
        "shopwired_calls_per_1000": 1000 * first["shopwired_calls"] / n,
        "wiredplus_calls_per_order": first["wiredplus_calls"] / n,
        "calls_per_unchanged_order": (again["shopwired_calls"] + again["wiredplus_calls"])
        / max(again["orders"], 1),
        "cpu_ms_per_order": first["cpu_ms_per_order"],
        "errors": first["errors"] + again["errors"],
        "runs": runs,
    }
    ctx.log(f"  naive: {result['orders_per_s']:,.0f} orders/s, "
            f"{result['shopwired_calls_per_order']:.2f} ShopWired calls/order")
    return result


# ---------------------------------------------------------------------------- backfill


def backfill(
    ctx: Context,
    *,
    orders: int,
    workers: int,
    db: str,
    label: str,
    then: Callable[[SandboxProcess, dict[str, str], str, Sampler], dict[str, Any]] | None = None,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """``ordersync backfill`` of ``orders`` new orders, end to end.

    ``workers == 0`` is embedded mode (pushes in the poller process, no broker); otherwise
    ``workers`` × ``ordersync worker --concurrency 1`` on Redis. The clock runs from the first
    ShopWired call to the last UpdateOrder WiredPlus accepted (both stamped by the sandbox).
    ``then`` runs afterwards with the workers still up (the incremental-pass scenario).
    """
    scratch = ctx.scratch(label)
    broker = redis_url(ctx.redis_db) if workers else None
    since_arg, since = since_date()
    result: dict[str, Any] = {"label": label, "orders": orders, "workers": workers, "db": db,
                              "mode": "broker" if workers else "embedded"}
    with SandboxProcess(orders=orders, log_dir=scratch) as sb, database(db, scratch) as url:
        assert sb.info is not None
        env = ordersync_env(sb.info, url, redis_url=broker, extra=SINGLE_CALLS)
        if broker:
            flush_redis(broker)
        start_ordersync("migrate", ["migrate"], env, scratch).wait(120)
        sampler = Sampler().start()
        pool: list[Daemon] = []
        try:
            pool = start_workers(workers, env, scratch, sampler)
            sampler.mark()
            sb.reset()
            sandbox_cpu0 = _proc_cpu(sb.info.pid)
            machine = MachineLoad()
            pg0 = pg_counters() if db == "postgres" else None
            tables0 = pg_table_writes(url) if db == "postgres" else {}
            redis0 = redis_commands(broker) if broker else 0
            t_launch = time.time()
            poller = start_ordersync("poller", ["backfill", "--since", since_arg], env, scratch)
            sampler.watch(poller)
            until = datetime.now(UTC)
            progress: list[tuple[float, float]] = []
            read: list[tuple[float, float]] = []
            deadline = time.monotonic() + timeout
            infra = infra_ids()
            checked = moved = time.monotonic()
            while True:
                if time.monotonic() - checked > 2.0:
                    check_infra(infra, label)
                    checked = time.monotonic()
                stats = sb.stats()
                done = _ok(stats, UPDATE_OK)
                now = time.time()
                progress.append((now, done))
                read.append((now, min(PAGE * _sw_total(stats), orders)))
                code = poller.poll()
                if code not in (None, 0):
                    raise RuntimeError(f"backfill exited {code}: {poller.tail()}")
                if done >= orders and code == 0:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{label}: {done}/{orders} pushed after {timeout}s")
                if len(progress) > 1 and progress[-1][1] != progress[-2][1]:
                    moved = time.monotonic()
                elif time.monotonic() - moved > 120:
                    raise TimeoutError(f"{label}: no order pushed for 120 s ({done}/{orders}; "
                                       f"queue {queue_length(broker) if broker else '-'})")
                time.sleep(0.2)
            t_done = time.time()
            check_infra(infra, label)
            sandbox_cpu = _proc_cpu(sb.info.pid) - sandbox_cpu0
            worker_cpu = sampler.cpu_since_mark("worker")
            child_cpu = sampler.cpu_since_mark("worker/child")
            load = machine.stop((poller.rusage_cpu or 0.0) + worker_cpu + sandbox_cpu,
                                _ours(sampler, sb.info.pid))
            redis1 = redis_commands(broker) if broker else 0
            time.sleep(1.2)  # PostgreSQL publishes backend statistics about once a second
            pg1 = pg_counters() if db == "postgres" else None
            tables1 = pg_table_writes(url) if db == "postgres" else {}
            stats = sb.stats(refs=True)
            hashes, events, counts = ledger_snapshot(url)
            peaks = sampler.peak_rss_mb()
            growth = sampler.rss_growth_mb(t_launch, t_done)
            slopes = sampler.rss_slope(t_launch, t_done, progress, {"poller": read})
            if poller.rusage_maxrss_mb is not None:
                peaks["poller"] = max(peaks.get("poller", 0.0), poller.rusage_maxrss_mb)
            first_sw = min(stats["shopwired"]["first"].values())
            last_wp = stats["wiredplus"]["last"][UPDATE_OK]
            active = last_wp - first_sw
            # The poller's process start-up (imports, settings, schema check) is not per order.
            startup_cpu = sampler.cpu_at(poller.pid, first_sw)
            poller_cpu = max((poller.rusage_cpu or 0.0) - startup_cpu, 0.0)
            sw_calls = _sw_total(stats)
            design = design_backfill_calls(sb, since, until)
            refs = stats["wiredplus"].get("refs", {})
            updates = {k: v for k, v in refs.items() if k.startswith("UpdateOrder:")}
            result.update(
                orders_per_s=orders / active,
                active_s=active,
                wall_s=t_done - t_launch,
                startup_s=first_sw - t_launch,
                shopwired_calls=sw_calls,
                shopwired_design_calls=design,
                shopwired_calls_per_1000=1000 * sw_calls / orders,
                shopwired_429=stats["shopwired"]["throttled"],
                wiredplus_update_calls=_ok(stats, UPDATE_OK),
                wiredplus_event_calls=_ok(stats, EVENT_OK),
                wiredplus_calls_total=stats["wiredplus"]["total"],
                orders_sent_once=sum(1 for v in updates.values() if v == 1),
                orders_sent_twice_or_more=sum(1 for v in updates.values() if v > 1),
                duplicate_orders=stats["wiredplus"]["duplicate_orders"],
                rejections=stats["wiredplus"]["rejections"],
                ledger_synced=counts.get("synced", 0),
                ledger_orders=len(hashes),
                ledger_events=len(events),
                cpu_s_poller=poller_cpu,
                cpu_s_poller_startup=startup_cpu,
                cpu_s_workers=worker_cpu,
                cpu_ms_per_order=1000 * (poller_cpu + worker_cpu) / orders,
                cpu_ms_per_order_poller=1000 * poller_cpu / orders,
                cpu_ms_per_order_workers=1000 * worker_cpu / orders,
                cpu_ms_per_order_worker_main=1000 * (worker_cpu - child_cpu) / orders,
                cpu_ms_per_order_worker_children=1000 * child_cpu / orders,
                sandbox_cpu_share=sandbox_cpu / max(t_done - t_launch, 1e-9),
                machine=load,
                peak_rss_mb=peaks,
                rss_growth_mb=growth,
                rss_mb_per_1000_orders=slopes,
                queue_left=queue_length(broker) if broker else 0,
                pg_commits_per_order=(
                    (pg1["commits"] - pg0["commits"]) / orders if pg0 and pg1 else None
                ),
                pg_rows_written_per_order=(
                    (pg1["inserted"] + pg1["updated"] - pg0["inserted"] - pg0["updated"])
                    / orders if pg0 and pg1 else None
                ),
                ledger_writes_per_order=_writes_per_order(tables0, tables1, orders),
                redis_commands_per_order=(redis1 - redis0) / orders if broker else None,
            )
            ctx.log(
                f"  {label}: {result['orders_per_s']:,.1f} orders/s "
                f"({orders} orders in {active:.1f}s), "
                f"{result['cpu_ms_per_order']:.1f} ms CPU/order, "
                f"ShopWired {sw_calls} calls (design {design})"
            )
            if then is not None:
                result["then"] = then(sb, env, url, sampler)
        finally:
            stop_all(pool)
            sampler.stop()
            if broker:
                with contextlib.suppress(Exception):
                    flush_redis(broker)
    return result


def incremental_pass(changes: int, ctx: Context) -> Callable[
    [SandboxProcess, dict[str, str], str, Sampler], dict[str, Any]
]:
    """After a backfill: ``changes`` shop changes (status moves, refunds, archiving), then one
    ``ordersync poll --once`` over the whole shop. Checks exactly which orders and events
    reached WiredPlus against what the ledger recorded as changed."""

    def run(sb: SandboxProcess, env: dict[str, str], url: str, sampler: Sampler) -> dict[str, Any]:
        scratch = ctx.scratch("incremental")
        infra = infra_ids()
        before, events_before, _ = ledger_snapshot(url)
        done = sb.activity(changes)
        time.sleep(1.1)  # past the settle delay
        sb.reset()
        start = datetime.now(UTC) - timedelta(days=30)
        poll = start_ordersync("poll", ["poll", "--once"], env, scratch)
        code = poll.wait(600)
        end = datetime.now(UTC)
        after, events_after, _ = ledger_snapshot(url)
        changed = {r for r, h in after.items() if before.get(r) != h}
        new_events = events_after - events_before
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stats = sb.stats()
            if _ok(stats, UPDATE_OK) >= len(changed) and _ok(stats, EVENT_OK) >= len(new_events):
                break
            time.sleep(0.25)
        time.sleep(1.0)  # anything extra would arrive now
        check_infra(infra, "the incremental pass")
        stats = sb.stats(refs=True)
        refs: dict[str, int] = stats["wiredplus"].get("refs", {})
        updated = Counter({k.split(":", 1)[1]: v for k, v in refs.items()
                           if k.startswith("UpdateOrder:")})
        sent_events = Counter({k.split(":", 1)[1]: v for k, v in refs.items()
                               if k.startswith("CreateOrderEvent:")})
        seen = len(after)
        unchanged = seen - len(changed)
        calls_unchanged = sum(v for r, v in updated.items() if r not in changed)
        result = {
            "exit_code": code,
            "shop_changes": len(done),
            "change_kinds": dict(Counter(k.split(":")[0] for _, k in done)),
            "orders_in_window": seen,
            "changed_orders": len(changed),
            "unchanged_orders": unchanged,
            "events_decided": len(new_events),
            "updateorder_calls": _ok(stats, UPDATE_OK),
            "event_calls": _ok(stats, EVENT_OK),
            "updateorder_per_changed_order": (
                sum(updated[r] for r in changed) / len(changed) if changed else 0.0
            ),
            "changed_orders_sent_exactly_once": sum(1 for r in changed if updated[r] == 1),
            "event_calls_per_event": (
                sum(sent_events[e] for e in new_events) / len(new_events) if new_events else 0.0
            ),
            "events_sent_exactly_once": sum(1 for e in new_events if sent_events[e] == 1),
            "calls_for_unchanged_orders": calls_unchanged,
            "calls_per_unchanged_order": calls_unchanged / unchanged if unchanged else 0.0,
            "unexpected_event_calls": sum(v for e, v in sent_events.items()
                                          if e not in new_events),
            "other_wiredplus_calls": {k: v for k, v in stats["wiredplus"]["by_status"].items()
                                      if k not in (UPDATE_OK, EVENT_OK)},
            "shopwired_calls": _sw_total(stats),
            "shopwired_design_calls": design_pass_calls(sb, start, end),
        }
        ctx.log(
            f"  incremental pass: {len(changed)} changed orders → {result['updateorder_calls']} "
            f"UpdateOrder, {len(new_events)} events → {result['event_calls']} CreateOrderEvent, "
            f"{unchanged} unchanged → {calls_unchanged} calls"
        )
        return result

    return run


# ---------------------------------------------------------------------------- rate limit


def rate_limited(ctx: Context, seconds: float) -> dict[str, Any]:
    """A backfill against a sandbox that enforces ShopWired's bucket (40 deep, 2/s), with the
    product's default client limits, PostgreSQL, Redis and one worker: how much of the 2/s
    budget the poller uses, and how many 429s it causes."""
    scratch = ctx.scratch("rate-limited")
    # ≈ 1 list call per 100 orders at 2 calls/s, whatever the number of backfill windows.
    orders = int(PAGE * max(SW_RATE * seconds - 2, 5))
    broker = redis_url(ctx.redis_db)
    since_arg, _ = since_date()
    with SandboxProcess(orders=orders, rate_limit=True, log_dir=scratch) as sb, \
            pg_schema() as url:
        assert sb.info is not None
        env = ordersync_env(sb.info, url, redis_url=broker, rate_limited=True,
                            extra=SINGLE_CALLS)
        flush_redis(broker)
        start_ordersync("migrate", ["migrate"], env, scratch).wait(120)
        sampler = Sampler().start()
        pool: list[Daemon] = []
        try:
            pool = start_workers(1, env, scratch, sampler)
            sb.reset()
            sampler.mark()
            sandbox_cpu0 = _proc_cpu(sb.info.pid)
            machine = MachineLoad()
            infra = infra_ids()
            poller = start_ordersync("poller", ["backfill", "--since", since_arg], env, scratch)
            sampler.watch(poller)
            code = poller.wait(seconds * 4 + 120)
            load = machine.stop(
                (poller.rusage_cpu or 0.0) + sampler.cpu_since_mark("worker")
                + _proc_cpu(sb.info.pid) - sandbox_cpu0,
                _ours(sampler, sb.info.pid),
            )
            check_infra(infra, "the rate-limited backfill")
            if code != 0:
                raise RuntimeError(f"rate-limited backfill exited {code}: {poller.tail()}")
            stats = sb.stats(times=True)
        finally:
            stop_all(pool)
            sampler.stop()
            with contextlib.suppress(Exception):
                flush_redis(broker)
    times = sorted(t for t, route, _ in stats["shopwired"]["times"])
    calls = len(times)
    span = times[-1] - times[0] if calls > 1 else 0.0
    rate = (calls - 1) / span if span > 0 else 0.0
    half = times[0] + span / 2
    second_half = [t for t in times if t >= half]
    rate_2nd = (len(second_half) - 1) / (times[-1] - second_half[0]) if len(second_half) > 2 \
        else rate
    result = {
        "orders": orders,
        "shopwired_calls": calls,
        "seconds": span,
        "calls_per_s": rate,
        "budget_fraction": rate / SW_RATE,
        "budget_fraction_second_half": rate_2nd / SW_RATE,
        "fraction_of_server_admissions": calls / (SW_SERVER_BUCKET + SW_RATE * span),
        "shopwired_429": stats["shopwired"]["throttled"],
        "responses": stats["shopwired"]["by_status"],
        "poller_cpu_share": (poller.rusage_cpu or 0.0) / max(span, 1e-9),
        "machine": load,
    }
    ctx.log(f"  rate-limited backfill: {rate:.2f} ShopWired calls/s over {span:.0f}s "
            f"({100 * rate / SW_RATE:.0f}% of 2/s), {result['shopwired_429']} × 429")
    return result


# ---------------------------------------------------------------------------- steady


def steady_state(
    ctx: Context, seconds: float, orders: int, interval: float = 5.0
) -> dict[str, Any]:
    """``ordersync run`` (broker mode, one worker) polling an idle, already synced shop every
    ``interval`` seconds for ``seconds``; CPU and calls extrapolated to an hour."""
    scratch = ctx.scratch("steady")
    broker = redis_url(ctx.redis_db)
    with SandboxProcess(orders=orders, rate_limit=True, log_dir=scratch) as sb, \
            pg_schema() as url:
        assert sb.info is not None
        embedded = ordersync_env(sb.info, url, rate_limited=True, extra=SINGLE_CALLS)
        first = start_ordersync("presync", ["poll", "--once"], embedded, scratch)
        if first.wait(600) != 0:
            raise RuntimeError(f"pre-sync failed: {first.tail()}")
        env = ordersync_env(sb.info, url, redis_url=broker, rate_limited=True,
                            extra={"ORDERSYNC_POLL_INTERVAL": str(interval)})
        flush_redis(broker)
        sampler = Sampler().start()
        pool: list[Daemon] = []
        try:
            pool = start_workers(1, env, scratch, sampler)
            daemon = start_ordersync("run", ["run"], env, scratch)
            daemon.role = "poller"
            sampler.watch(daemon)
            pool.append(daemon)
            wait_for_text(daemon.log, "pass.done", 120, daemon)
            time.sleep(0.5)
            sampler.mark()
            passes0 = daemon.log.read_text(errors="replace").count('"pass.done"')
            sb.reset()
            sandbox_cpu0 = _proc_cpu(sb.info.pid)
            machine = MachineLoad()
            infra = infra_ids()
            t0 = time.monotonic()
            time.sleep(seconds)
            check_infra(infra, "the steady-state run")
            elapsed = time.monotonic() - t0
            stats = sb.stats()
            cpu_poller = sampler.cpu_since_mark("poller")
            cpu_workers = sampler.cpu_since_mark("worker")
            load = machine.stop(cpu_poller + cpu_workers + _proc_cpu(sb.info.pid) - sandbox_cpu0,
                                _ours(sampler, sb.info.pid))
            passes = daemon.log.read_text(errors="replace").count('"pass.done"') - passes0
            rss = sampler.peak_rss_mb()
            n_open = open_orders(url)
        finally:
            stop_all(pool)
            sampler.stop()
            with contextlib.suppress(Exception):
                flush_redis(broker)
    per_hour = 3600.0 / elapsed
    sw = _sw_total(stats)
    wp = int(stats["wiredplus"]["total"])
    result = {
        "seconds": elapsed,
        "interval_s": interval,
        "shop_orders": orders,
        "open_orders": n_open,
        "passes": passes,
        "shopwired_calls": sw,
        "shopwired_by_route": stats["shopwired"]["by_status"],
        "wiredplus_calls": wp,
        "shopwired_429": stats["shopwired"]["throttled"],
        # + the hourly status-list refresh and the hourly GetAccountInfo a short window misses
        "shopwired_calls_per_hour": sw * per_hour + 1,
        "wiredplus_calls_per_hour": wp * per_hour + 1,
        "cpu_s_per_hour_poller": cpu_poller * per_hour,
        "cpu_s_per_hour_workers": cpu_workers * per_hour,
        "cpu_ms_per_pass": 1000 * cpu_poller / max(passes, 1),
        "shopwired_calls_per_pass": sw / max(passes, 1),
        "peak_rss_mb": rss,
        # 30 % of 2 calls/s per pass (scans and re-reads alike), while open orders are due
        "polling_calls_per_pass_design": min(0.3 * SW_RATE * interval,
                                             2 + math.ceil(n_open / 50)),
        "machine": load,
    }
    ctx.log(f"  steady state: {passes} passes in {elapsed:.0f}s, {sw} ShopWired calls, "
            f"{wp} WiredPlus calls, poller CPU {cpu_poller:.2f}s")
    return result
