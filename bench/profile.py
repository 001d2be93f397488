"""Where one order's time goes: an embedded backfill under cProfile, with SQL counted.

``python -m bench.profile [--orders 500] [--db postgres|sqlite] [--top 30] [--cpu]`` runs
the real wiring (``build_runtime``) in embedded mode against an in-process sandbox
(``MockTransport``: no sockets, so the profile is the daemon's code, not the simulator's HTTP
server), counts every SQL statement the ledger engine executes and every transaction, and
prints them per order, own time by package, then the cProfile top functions by cumulative
time (``--cpu``: CPU time rather than wall time; cProfile's per-call overhead inflates
call-heavy libraries such as SQLAlchemy, so read the shares as a ranking). Use it to check
an optimisation of the push/ingest paths before running the full ``python -m bench.run``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import event

from bench.harness import pg_schema


@contextmanager
def _database(kind: str) -> Iterator[str]:
    if kind == "postgres":
        with pg_schema() as url:
            yield url
        return
    with TemporaryDirectory() as d:
        yield f"sqlite:///{Path(d) / 'ledger.db'}"


def _kind(statement: str) -> str:
    words = statement.split()
    verb = words[0].upper() if words else "?"
    m = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", statement, re.IGNORECASE)
    return f"{verb} {m.group(1) if m else ''}".strip()


def profile(orders: int, db: str, top: int, cpu: bool = False) -> str:
    from config.settings import Settings
    from sync.logs import configure
    from sync.sandbox import Sandbox
    from sync.service.runtime import build_runtime

    configure("json", "warning", stream=io.StringIO())
    sb = Sandbox(seed=3, shopwired_rate_limit=False, hourly_limit=10_000_000)
    now = sb.clock.now()
    sb.shopwired.generate_orders(orders, created_between=(now - timedelta(days=6),
                                                          now - timedelta(hours=1)))
    out = io.StringIO()
    sw_key, sw_secret = sb.shopwired_credentials
    wp_user, wp_key = sb.wiredplus_credentials
    with _database(db) as url:
        settings = Settings(
            SHOPWIRED_BASE_URL="http://shopwired.sandbox/v1", SHOPWIRED_API_KEY=sw_key,
            SHOPWIRED_API_SECRET=sw_secret, WIREDPLUS_BASE_URL="http://wiredplus.sandbox/v1",
            WIREDPLUS_API_USER=wp_user, WIREDPLUS_API_KEY=wp_key, DATABASE_URL=url,
            REDIS_URL=None, ORDERSYNC_STORE="bench", ORDERSYNC_WIREDPLUS_HOURLY_LIMIT=10_000_000,
            ORDERSYNC_SHOPWIRED_RATE=1000, ORDERSYNC_SHOPWIRED_BUCKET=40,
        )
        rt = build_runtime(settings, clock=sb.clock,
                           shopwired_transport=sb.shopwired_transport(),
                           wiredplus_transport=sb.wiredplus_transport())
        statements: Counter[str] = Counter()
        tx: Counter[str] = Counter()
        checkouts = 0

        def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements[_kind(statement)] += 1

        def on_commit(conn: Any) -> None:
            tx["commit"] += 1

        def on_rollback(conn: Any) -> None:
            tx["rollback"] += 1

        def on_checkout(*args: Any) -> None:
            nonlocal checkouts
            checkouts += 1

        event.listen(rt.ledger.engine, "before_cursor_execute", on_execute)
        event.listen(rt.ledger.engine, "commit", on_commit)
        event.listen(rt.ledger.engine, "rollback", on_rollback)
        event.listen(rt.ledger.engine.pool, "checkout", on_checkout)
        prof = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
        started = time.perf_counter()
        prof.enable()
        try:
            rt.poller.backfill(now - timedelta(days=6, hours=1), now)
        finally:
            prof.disable()
            rt.close()
        took = time.perf_counter() - started
    n = max(orders, 1)
    out.write(f"[{'CPU time' if cpu else 'wall time'}] "
              f"{orders} orders, ledger {db}, {took:.2f} s under cProfile "
              f"({orders / took:.0f} orders/s, in-process sandbox)\n\n")
    out.write("per order: " + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(tx.items()))
              + f", pool checkouts {checkouts / n:.2f}, SQL statements "
              f"{sum(statements.values()) / n:.2f}\n")
    for kind, count in statements.most_common():
        out.write(f"  {count / n:6.2f}  {kind}\n")
    out.write("\n")
    stats = pstats.Stats(prof, stream=out)
    out.write("own time by package (the in-process sandbox is listed apart: not the daemon):\n")
    by_pkg: Counter[str] = Counter()
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_pkg[_package(filename)] += tottime
    total = sum(by_pkg.values()) or 1.0
    for pkg, t in by_pkg.most_common(14):
        out.write(f"  {100 * t / total:5.1f} %  {pkg}\n")
    out.write("\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def _package(filename: str) -> str:
    if "/sync/sandbox/" in filename:
        return "sandbox (simulators, in-process)"
    m = re.search(r"site-packages/([A-Za-z0-9_]+)", filename)
    if m:
        return m.group(1)
    m = re.search(r"/(sync|workers|config)/(\w+)", filename)
    if m:
        return f"ordersync {m.group(1)}/{m.group(2)}"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C calls: socket, json, hashing, ...)"
    return "stdlib"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--orders", type=int, default=500)
    p.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--cpu", action="store_true",
                   help="profile CPU time (time.process_time) instead of wall time")
    args = p.parse_args(argv)
    print(profile(args.orders, args.db, args.top, args.cpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
