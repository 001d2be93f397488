"""``python -m bench.run [--quick] [--json out.json]``: run the benchmark, print PASS/MISS per
target, replace the "Throughput (issue 5): latest run" section of ``BENCHMARKS.md`` (latest run
plus a history table of earlier runs' headline figures).

Full mode keeps within 10 minutes on a 2-core machine by planning as it goes: the fixed-cost
scenarios run first, then the main broker backfill (4 workers, 10,000 orders); the 2- and
1-worker backfills and the 100,000-order backfill get sizes that fit the time left, computed
from the throughput just *measured*. Whatever was scaled down is said so in the output, with
the measured rate that forced it. The staleness scenario (``bench/staleness.py``, simulated
time) runs last, outside that budget; ``--only staleness`` runs it alone.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench import report, scenarios, staleness
from bench.harness import (
    DEFAULT_REDIS_DB,
    PG_URL,
    ROOT,
    PrivateRedis,
    services_available,
    set_redis_base,
)


@dataclass(frozen=True)
class Plan:
    budget_s: float
    capacity_s: float
    naive_orders: int
    embedded_orders: int
    rate_limited_s: float
    steady_s: float
    steady_orders: int
    main_workers: int
    main_orders: int
    incremental_changes: int
    other_workers: tuple[int, ...]
    other_orders: int
    large_orders: int


QUICK = Plan(budget_s=100, capacity_s=2, naive_orders=500, embedded_orders=200,
             rate_limited_s=10, steady_s=12, steady_orders=200, main_workers=2,
             main_orders=1200, incremental_changes=30, other_workers=(), other_orders=0,
             large_orders=0)
FULL = Plan(budget_s=560, capacity_s=5, naive_orders=2000, embedded_orders=600,
            rate_limited_s=40, steady_s=45, steady_orders=600, main_workers=4,
            main_orders=10_000, incremental_changes=100, other_workers=(2, 1),
            other_orders=5_000, large_orders=100_000)
SETUP_S = 15.0  # per backfill run: sandbox, migrate, workers ready, teardown
GEN_S_PER_ORDER = 0.0002  # sandbox order generation
LARGE_RATE_MARGIN = 0.7  # the large backfill is planned at this fraction of the measured rate


def _meta(mode: str) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dirty = "+dirty" if git("status", "--porcelain") else ""
    pg = "?"
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(PG_URL)
        with eng.connect() as c:
            pg = str(c.execute(sa.text("SHOW server_version")).scalar())
        eng.dispose()
    except Exception:
        pass
    return {
        "mode": mode,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": psutil.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gb": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(),
        "postgres": pg,
        "commit": git("rev-parse", "--short", "HEAD") + dirty,
    }


def _step(ctx: scenarios.Context, results: dict[str, Any], name: str,
          fn: Callable[[], Any]) -> Any:
    """Run one scenario; a PostgreSQL/Redis restart by someone else voids it: run it again
    once (the restart is noted); any other failure is noted and the run goes on."""
    results.setdefault("code", []).append({"scenario": name, **_code_version()})
    for attempt in (1, 2):
        ctx.log(f"[{time.monotonic() - results['_t0']:5.0f}s] {name}…")
        try:
            return fn()
        except scenarios.InfraRestarted as exc:
            ctx.notes.append(f"{name}: {exc}" + ("; run again." if attempt == 1 else "."))
            ctx.log(f"  {exc}")
            if attempt == 2:
                return None
            time.sleep(3.0)
        except Exception as exc:
            ctx.notes.append(f"{name} FAILED: {type(exc).__name__}: {exc}"[:800])
            ctx.log(traceback.format_exc())
            return None
    return None


def run(plan: Plan, *, quick: bool, redis_db: int, work: Path,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    t0 = time.monotonic()
    ctx = scenarios.Context(quick=quick, work=work, redis_db=redis_db,
                            deadline=t0 + plan.budget_s, log=log)
    results: dict[str, Any] = {"_t0": t0, "meta": _meta("quick" if quick else "full")}
    pg_ok, redis_ok = services_available()
    if not (pg_ok and redis_ok):
        raise SystemExit(f"bench needs PostgreSQL ({'ok' if pg_ok else 'unreachable'}) and "
                         f"Redis ({'ok' if redis_ok else 'unreachable'})")
    results["capacity"] = _step(ctx, results, "sandbox capacity",
                                lambda: scenarios.sandbox_capacity(ctx, plan.capacity_s))
    results["naive"] = _step(ctx, results, "naive baseline",
                             lambda: scenarios.naive_baseline(ctx, plan.naive_orders))
    throughput: list[dict[str, Any]] = []
    results["throughput"] = throughput
    for db in ("sqlite", "postgres"):
        r = _step(ctx, results, f"embedded backfill on {db}", functools.partial(
            scenarios.backfill, ctx, orders=plan.embedded_orders, workers=0, db=db,
            label=f"embedded-{db}"))
        if r:
            throughput.append(r)
    results["rate_limited"] = _step(ctx, results, "rate-limited backfill",
                                    lambda: scenarios.rate_limited(ctx, plan.rate_limited_s))
    results["steady"] = _step(ctx, results, "steady state", lambda: scenarios.steady_state(
        ctx, plan.steady_s, plan.steady_orders))
    main = _step(ctx, results, f"broker backfill, {plan.main_workers} workers",
                 lambda: scenarios.backfill(
                     ctx, orders=plan.main_orders, workers=plan.main_workers, db="postgres",
                     label=f"broker-{plan.main_workers}w-{plan.main_orders // 1000}k",
                     then=scenarios.incremental_pass(plan.incremental_changes, ctx)))
    if main:
        throughput.append(main)
        _scaled_runs(ctx, results, plan, main)
    _staleness_step(ctx, results, quick)
    results.pop("_t0")
    _foreign_load_notes(ctx, results)
    _code_change_notes(ctx, results)
    results["notes"] = ctx.notes
    results["meta"]["duration_s"] = time.monotonic() - t0
    return results


def _staleness_step(ctx: scenarios.Context, results: dict[str, Any], quick: bool) -> None:
    """Staleness of open orders under polling (simulated time, in-process; outside the
    throughput budget above: it takes about 1–5 minutes of CPU, whatever the clock says)."""
    sizes = staleness.SIZES_QUICK if quick else staleness.SIZES_FULL
    results["staleness"] = _step(ctx, results, "staleness of open orders",
                                 lambda: staleness.staleness(ctx, sizes))


def run_staleness_only(*, quick: bool, work: Path,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """``--only staleness``: just that scenario (no PostgreSQL or Redis needed)."""
    t0 = time.monotonic()
    ctx = scenarios.Context(quick=quick, work=work, redis_db=0, deadline=t0 + 3600, log=log)
    results: dict[str, Any] = {"_t0": t0, "meta": _meta("staleness-only")}
    _staleness_step(ctx, results, quick)
    results.pop("_t0")
    results["notes"] = ctx.notes
    results["meta"]["duration_s"] = time.monotonic() - t0
    return results


def _code_version() -> dict[str, str]:
    """The commit and a fingerprint of the daemon's code (committed trees of sync/, workers/,
    config/ plus uncommitted changes to them): each ``ordersync`` process imports the code as
    it is when it starts."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=20,
                                  ).stdout.decode(errors="replace")
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip()
    trees = git("rev-parse", "HEAD:sync", "HEAD:workers", "HEAD:config")
    diff = git("diff", "HEAD", "--", "sync", "workers", "config")
    return {"commit": commit,
            "fingerprint": hashlib.sha1((trees + diff).encode()).hexdigest()[:8]}


def _code_change_notes(ctx: scenarios.Context, results: dict[str, Any]) -> None:
    code = results.get("code", [])
    if len({c["fingerprint"] for c in code}) <= 1:
        return  # commits that did not touch the daemon's code do not matter
    versions = list(dict.fromkeys((c["commit"], c["fingerprint"]) for c in code))
    if len(versions) > 1:
        parts = "; ".join(
            f"{commit}/{fp}: " + ", ".join(c["scenario"] for c in code
                                          if (c["commit"], c["fingerprint"]) == (commit, fp))
            for commit, fp in versions
        )
        ctx.notes.append(
            "The code under test changed during the run (other sessions commit to this "
            f"working tree); scenarios by version (commit/working-tree fingerprint): {parts}.")


def _foreign_load_notes(ctx: scenarios.Context, results: dict[str, Any]) -> None:
    measured: list[tuple[str, dict[str, Any]]] = [
        (r["label"], r["machine"]) for r in results.get("throughput", []) if "machine" in r
    ]
    for key in ("rate_limited", "steady"):
        if results.get(key) and "machine" in results[key]:
            measured.append((key.replace("_", "-"), results[key]["machine"]))
    for label, m in measured:
        if m["foreign_cores"] >= 0.15:
            top = ", ".join(f"`{name}` {cores:.2f}" for name, cores in m["foreign_top"])
            ctx.notes.append(
                f"Shared machine: during {label} processes outside the benchmark used "
                f"{m['foreign_cores']:.2f} of {psutil.cpu_count()} cores"
                + (f" (largest: {top})" if top else "")
                + "; that row's throughput and CPU figures are pessimistic.")


def _scaled_runs(ctx: scenarios.Context, results: dict[str, Any], plan: Plan,
                 main: dict[str, Any]) -> None:
    """The other worker counts and the large backfill, sized to the time left.

    The large backfill is decided first, from the throughput just measured with the most
    workers: if it cannot fit in what is left of the budget, no time is reserved for it and
    the note says why (the measured rate and the time it would need)."""
    rate_main = main["orders_per_s"]
    large = 0
    if plan.large_orders:
        # Margin: a long run on a shared 2-core machine has come in at ~0.6x the rate of the
        # 10k run (2026-11-29: 304 vs 540 orders/s), and the budget is a promise.
        need = (plan.large_orders / (rate_main * LARGE_RATE_MARGIN)
                + plan.large_orders * GEN_S_PER_ORDER + SETUP_S)
        if need <= ctx.remaining():  # first claim on the time left: the memory target needs it
            large = plan.large_orders
        else:
            ctx.notes.append(
                f"The {plan.large_orders:,}-order backfill cannot fit in the 10-minute budget: "
                f"at the measured {rate_main:.0f} orders/s ({main['workers']} workers, "
                f"{main['orders']:,} orders — the fastest configuration on this machine) it "
                f"needs ≈{need:.0f} s, and {max(ctx.remaining(), 0):.0f} s were left after the "
                f"fixed scenarios. Not run; the {main['orders']:,}-order run is the largest.")
    others = list(plan.other_workers)
    for i, workers in enumerate(others):
        # Conservative estimate: throughput no better than linear in the worker count.
        est = rate_main * workers / plan.main_workers
        reserve = (plan.large_orders / (rate_main * LARGE_RATE_MARGIN) + SETUP_S) if large else 0.0
        share = (ctx.remaining() - reserve) / (len(others) - i)
        fit = int(max(share - SETUP_S, 0) * est / (1 + est * GEN_S_PER_ORDER))
        orders = min(plan.other_orders, fit // 100 * 100)
        if orders < 200:
            left = (f"{ctx.remaining():.0f} s of the budget left" if ctx.remaining() > 0
                    else "the time budget is used up")
            ctx.notes.append(
                f"{workers}-worker backfill not run: {left}; at an estimated {est:.0f} orders/s "
                f"(measured {rate_main:.0f} with {plan.main_workers} workers) it would not "
                "finish in time.")
            continue
        if orders < plan.other_orders:
            ctx.notes.append(
                f"{workers}-worker backfill scaled down from {plan.other_orders:,} to "
                f"{orders:,} orders: {plan.other_orders:,} orders at an estimated {est:.0f} "
                f"orders/s (measured {rate_main:.0f} with {plan.main_workers} workers, assumed "
                f"linear in workers) need ≈{plan.other_orders / est + SETUP_S:.0f} s; "
                f"≈{share:.0f} s of the budget were available.")
        r = _step(ctx, results, f"broker backfill, {workers} workers, {orders} orders",
                  functools.partial(
                      scenarios.backfill, ctx, orders=orders, workers=workers, db="postgres",
                      label=f"broker-{workers}w-{orders / 1000:g}k"))
        if r:
            results["throughput"].append(r)
    if large:
        r = _step(ctx, results, f"large broker backfill, {main['workers']} workers",
                  functools.partial(
                      scenarios.backfill, ctx, orders=large, workers=main["workers"],
                      db="postgres", label=f"broker-{main['workers']}w-{large // 1000}k"))
        if r:
            results["throughput"].append(r)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="the < 2 minute version")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md",
                   help="update the report's section here (default: BENCHMARKS.md)")
    p.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--redis-db", type=int, default=DEFAULT_REDIS_DB,
                   help=f"Redis database the benchmark may flush (default {DEFAULT_REDIS_DB})")
    p.add_argument("--redis-url", help="Redis server to use, e.g. redis://127.0.0.1:6379 "
                   "(default: that, or $BENCH_REDIS_URL)")
    p.add_argument("--private-redis", action="store_true",
                   help="start a redis-server of the benchmark's own on a free port (for "
                        "shared machines where other sessions restart the shared one)")
    p.add_argument("--keep-logs", action="store_true", help="keep the daemons' logs")
    p.add_argument("--only", choices=["staleness"],
                   help="run only this scenario (printed; BENCHMARKS.md is not updated: its "
                        "staleness section is kept by hand)")
    args = p.parse_args(argv)
    # SIGTERM → SystemExit, so every daemon is stopped and every schema dropped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    private = PrivateRedis() if args.private_redis else None
    if private is not None:
        set_redis_base(private.start())
    elif args.redis_url:
        set_redis_base(args.redis_url)
    plan = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="ordersync-bench-"))
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    try:
        if args.only == "staleness":
            results = run_staleness_only(quick=args.quick, work=work)
        else:
            results = run(plan, quick=args.quick, redis_db=args.redis_db, work=work)
        if private is not None:
            results["notes"].append(
                "Redis: a private redis-server (same binary and settings as the shared one, no "
                "persistence) on a free port (`--private-redis`), because other sessions on "
                "this machine restart and FLUSHALL the shared one.")
    finally:
        if private is not None:
            private.stop()
        if args.keep_logs:
            print(f"logs: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    targets = report.evaluate(results)
    results["targets"] = report.targets_json(targets)
    section = report.markdown(results, targets)
    print()
    print(section)
    for t in targets:
        print(f"{t.status:4}  {t.name}: {t.measured} (goal {t.goal})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        print(f"results: {args.json}")
    if args.only:
        print(f"--only {args.only}: {args.markdown} not updated")
    elif not args.no_markdown:
        report.update_markdown(args.markdown, results, targets)
        print(f"updated the throughput section of {args.markdown}")
    failed = [n for n in results.get("notes", []) if "FAILED" in n]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
