"""Where the per-order floor is: CPU of the parts every pushed order cannot avoid.

``python -m bench.floor [--n 2000] [--redis-url URL]`` measures, in this process (CPU =
``time.process_time``, user + system) and in the sandbox process (its ``/proc`` CPU times):

* ``sandbox UpdateOrder``: the simulator's own CPU per request (server side);
* ``httpx POST``: a bare ``httpx.Client.post`` of a realistic UpdateOrder body, keep-alive;
* ``WiredPlusClient.update_order``: the same through ordersync's client (limiter excluded:
  :class:`~sync.ratelimit.Unlimited`), i.e. + outcome classification, JSON, metrics;
* ``Redis limiter call``: one :class:`~sync.ratelimit_shared.SharedHourlyBudget` admission;
* ``PostgreSQL commit``: one single-row ``UPDATE`` + ``COMMIT`` through SQLAlchemy Core
  (client side only; the server's CPU is not in it);
* ``order.push log line``: one JSON log line through structlog with redaction.

Run it under the exclusive services lock, like ``bench.run``: it uses PostgreSQL and Redis.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]

from bench.harness import PG_URL, SandboxProcess, pg_schema


def _cpu_ms(fn: Callable[[int], None], n: int, server_pid: int | None = None
            ) -> tuple[float, float]:
    """(client CPU ms per call, server CPU ms per call) for ``n`` calls of ``fn(i)``."""
    server = psutil.Process(server_pid) if server_pid else None

    def server_cpu() -> float:
        if server is None:
            return 0.0
        t = server.cpu_times()
        return float(t.user + t.system)

    fn(-1)  # warm-up
    s0, c0 = server_cpu(), time.process_time()
    for i in range(n):
        fn(i)
    c1, s1 = time.process_time(), server_cpu()
    return (c1 - c0) * 1000 / n, (s1 - s0) * 1000 / n


def measure(n: int, redis_url: str) -> list[tuple[str, float, float]]:
    from sqlalchemy import create_engine, text

    from bench.load import sample_body
    from sync.clock import SystemClock
    from sync.logs import configure, get_logger
    from sync.ratelimit import Unlimited
    from sync.ratelimit_shared import wiredplus_limiter
    from sync.sinks.wiredplus import WiredPlusClient

    rows: list[tuple[str, float, float]] = []
    sb = SandboxProcess(orders=50)
    info = sb.start()
    try:
        os.environ.update(SHOPWIRED_BASE_URL=info.shopwired_url,
                          SHOPWIRED_API_KEY=info.shopwired_key,
                          SHOPWIRED_API_SECRET=info.shopwired_secret)
        body = sample_body()
        url = info.wiredplus_url.rstrip("/") + "/UpdateOrder"
        with httpx.Client(auth=(info.wiredplus_user, info.wiredplus_key), timeout=30) as c:
            def raw(i: int) -> None:
                body["api_reference_id"] = f"floor-raw-{i % 500}"
                c.post(url, json=body).raise_for_status()

            client_ms, server_ms = _cpu_ms(raw, n, info.pid)
            rows.append(("sandbox UpdateOrder (server side)", server_ms, 0.0))
            rows.append(("httpx POST UpdateOrder (client side)", client_ms, 0.0))
        configure("json", "info", stream=io.StringIO())
        wp = WiredPlusClient(info.wiredplus_url, info.wiredplus_user, info.wiredplus_key,
                             clock=SystemClock(), limiter=Unlimited())

        def ours(i: int) -> None:
            body["api_reference_id"] = f"floor-wp-{i % 500}"
            wp.update_order(body)

        rows.append(("WiredPlusClient.update_order (client side)", _cpu_ms(ours, n)[0], 0.0))
        wp.close()
    finally:
        sb.stop()

    lim = wiredplus_limiter(redis_url, "http://floor.example/v1", "floor", 10_000_000,
                            SystemClock())

    def admit(i: int) -> None:
        lim.try_acquire()

    rows.append(("Redis limiter admission (1 EVALSHA)", _cpu_ms(admit, n)[0], 0.0))

    with pg_schema(PG_URL) as url:
        engine = create_engine(url, pool_pre_ping=True)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE floor (id int primary key, v int)"))
            conn.execute(text("INSERT INTO floor VALUES (1, 0)"))
        stmt = text("UPDATE floor SET v = v + 1 WHERE id = 1")

        def commit(i: int) -> None:
            with engine.begin() as conn:
                conn.execute(stmt)

        rows.append(("PostgreSQL UPDATE + COMMIT (client side)", _cpu_ms(commit, n)[0], 0.0))
        engine.dispose()

    log = get_logger("ordersync")

    def line(i: int) -> None:
        log.info("order.push", store="bench", ref=str(i), order_id=str(i), order_reference=str(i),
                 wiredplus_id="123", order_call="created", events_sent=0, outcome="synced",
                 attempt=1, duration_ms=1.2)

    rows.append(("order.push JSON log line", _cpu_ms(line, n)[0], 0.0))
    return rows


def markdown(rows: Sequence[tuple[str, float, float]]) -> str:
    out = ["| part (per call) | CPU ms |", "|---|---|"]
    out += [f"| {name} | {ms:.3f} |" for name, ms, _ in rows]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                         "redis://127.0.0.1:6379/12"))
    args = p.parse_args(argv)
    result: Any = measure(args.n, args.redis_url)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
