"""Serve the sandbox (ShopWired + WiredPlus simulators) in a process of its own.

``python -m bench.sandbox_proc --orders N [--rate-limit] ...`` builds a
:class:`~sync.sandbox.server.Sandbox` holding ``N`` generated orders, serves both simulators on
free loopback ports, prints **one JSON line** on stdout (the fields of
:func:`sync.sandbox.server.describe` plus ``control_url``, ``pid`` and ``orders``) and stays up
until SIGTERM/SIGINT (or until its parent process dies).

The simulators are not modified: each one's ``handle`` is wrapped by a :class:`Recorder` that
counts answers by route and HTTP status and keeps their wall-clock times, and a third small HTTP
server (``control_url``) answers:

* ``GET  /stats[?times=1][&refs=1]`` — counters of both APIs (``times=1`` adds the time, route
  and status of every call; ``refs=1`` how often each ``api_reference_id`` / ``event_reference``
  was accepted by WiredPlus, a ``BulkOrderUpdate`` counting each record its result accepted;
  ``wiredplus.last_write`` is the wall time of the last accepted write);
* ``POST /reset`` — zero every counter;
* ``POST /activity?changes=K&new=M`` — one :meth:`~sync.sandbox.generator.Activity.step`
  (status changes, refunds, archiving, new orders); answers what happened;
* ``GET  /created?from=S&to=E&archived=0|1`` — ``[created UNIX second, id]`` of every order
  created in [S, E] (inclusive), sorted as the list endpoint sorts them: the oracle for "how
  many list calls should this window cost".

Realistic APIs: ``--shopwired-latency`` / ``--wiredplus-latency`` seconds per request (±
``--jitter``), ``--wiredplus-enforce`` (429 beyond ``--wiredplus-hourly-limit``),
``--max-update-rows``, ``--no-bulk`` (BulkOrderUpdate refused with 403), ``--bulk-cost``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from sync.sandbox.server import RunningServer, Sandbox, serve

Handler = Callable[[httpx.Request], httpx.Response]
_ID = re.compile(r"/\d+")


class Recorder:
    """Wraps a simulator's handler: counts answers by ``"METHOD /path status"`` with times."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self.by_status: Counter[str] = Counter()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.times: list[tuple[float, str, int]] = []
        self.refs: Counter[str] = Counter()
        self.last_write = 0.0  # wall time of the last accepted order/event write

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = self._handler(request)
        now = time.time()
        path = request.url.path
        i = path.find("/v1/")
        route = f"{request.method} {_ID.sub('/{id}', path[i:] if i >= 0 else path)}"
        key = f"{route} {response.status_code}"
        ok = response.status_code == 200
        ref = _reference(route, request) if ok else None
        bulk = _bulk_references(request, response) if ok and route.endswith(
            "/BulkOrderUpdate") else []
        with self._lock:
            self.by_status[key] += 1
            self.first.setdefault(key, now)
            self.last[key] = now
            self.times.append((now, route, response.status_code))
            if ref is not None:
                self.refs[ref] += 1
            for r in bulk:
                self.refs[r] += 1
            if ref is not None or bulk:
                self.last_write = now
        return response

    def reset(self) -> None:
        with self._lock:
            self.by_status.clear()
            self.first.clear()
            self.last.clear()
            self.times.clear()
            self.refs.clear()
            self.last_write = 0.0

    def snapshot(self, times: bool, refs: bool = False) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "by_status": dict(self.by_status),
                "first": dict(self.first),
                "last": dict(self.last),
                "total": sum(self.by_status.values()),
                "last_write": self.last_write,
            }
            if times:
                out["times"] = list(self.times)
            if refs:
                out["refs"] = dict(self.refs)
        return out


def _bulk_references(request: httpx.Request, response: httpx.Response) -> list[str]:
    """``UpdateOrder:<api_reference_id>`` of every record a BulkOrderUpdate stored (its
    result in the same position says status 200): a bulk write counts per order, as single
    calls do."""
    try:
        records = json.loads(request.content).get("orders")
        results = json.loads(response.content).get("results")
    except (ValueError, AttributeError):
        return []
    if not isinstance(records, list) or not isinstance(results, list):
        return []
    return [
        f"UpdateOrder:{rec.get('api_reference_id')}"
        for rec, res in zip(records, results, strict=False)
        if isinstance(rec, dict) and isinstance(res, dict) and res.get("status") == 200
    ]


def _reference(route: str, request: httpx.Request) -> str | None:
    """``UpdateOrder:<api_reference_id>`` / ``CreateOrderEvent:<event_reference>`` of an
    accepted write, to check exactly which orders and events were sent."""
    for name, field in (("UpdateOrder", "api_reference_id"),
                        ("CreateOrderEvent", "event_reference")):
        if route.endswith(f"/{name}"):
            try:
                body = json.loads(request.content)
            except ValueError:
                return None
            return f"{name}:{body.get(field)}" if isinstance(body, dict) else None
    return None


class Control:
    """The ``control_url`` handler: stats, reset, activity."""

    def __init__(self, sb: Sandbox, shopwired: Recorder, wiredplus: Recorder) -> None:
        self.sb = sb
        self.shopwired = shopwired
        self.wiredplus = wiredplus

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        params = request.url.params
        if request.method == "GET" and path == "/stats":
            return httpx.Response(
                200, json=self.stats(params.get("times") == "1", params.get("refs") == "1")
            )
        if request.method == "POST" and path == "/reset":
            self.shopwired.reset()
            self.wiredplus.reset()
            self.sb.shopwired.reset_counters()
            self.sb.wiredplus.reset_counters()
            return httpx.Response(200, json={"ok": True})
        if request.method == "POST" and path == "/activity":
            changes = int(params.get("changes") or 0)
            new = int(params.get("new") or 0)
            done = self.sb.activity.step(changes, new)
            return httpx.Response(200, json={"changes": [[oid, kind] for oid, kind in done]})
        if request.method == "GET" and path == "/created":
            start, end = params.get("from"), params.get("to")
            archived = params.get("archived")
            ids = self.sb.shopwired.created_ids(
                int(start) if start else None,
                int(end) if end else None,
                archived=None if archived in (None, "") else archived == "1",
            )
            orders = self.sb.shopwired.orders
            rows = sorted(
                (int(parsedate_to_datetime(orders[i]["created"]).timestamp()), i)
                for i in ids if i in orders
            )
            return httpx.Response(200, json={"rows": rows})
        return httpx.Response(404, json={"error": "unknown control endpoint"})

    def stats(self, times: bool, refs: bool = False) -> dict[str, Any]:
        sw, wp = self.sb.shopwired, self.sb.wiredplus
        # dict(...) copies of C-level dicts are atomic under the GIL: safe while serving.
        order_creations = dict(wp.order_creations)
        event_creations = dict(wp.event_creations)
        return {
            "time": time.time(),
            "shop_orders": len(sw.orders),
            "shopwired": {
                **self.shopwired.snapshot(times),
                "calls": dict(sw.calls),
                "throttled": sw.throttled,
                "latency": [sw.latency.seconds, sw.latency.jitter],
            },
            "wiredplus": {
                **self.wiredplus.snapshot(times, refs),
                "calls": dict(wp.calls),
                "orders": len(wp.orders),
                "events": len(wp.events),
                "duplicate_orders": sum(1 for v in order_creations.values() if v > 1),
                "duplicate_events": sum(1 for v in event_creations.values() if v > 1),
                "rejections": len(wp.rejections),
                "bulk_requests": len(wp.bulk_requests),
                "bulk_records": sum(n for n, _ in wp.bulk_requests),
                "ratelimit_remaining": wp.ratelimit_remaining,
                "latency": [wp.latency.seconds, wp.latency.jitter],
            },
        }


def build(args: argparse.Namespace) -> Sandbox:
    sb = Sandbox(
        seed=args.seed,
        shopwired_rate_limit=args.rate_limit,
        bucket_size=args.bucket,
        leak_per_second=args.leak,
        wiredplus_rate_limit=args.wiredplus_enforce,
        hourly_limit=args.wiredplus_hourly_limit,
        shopwired_latency=args.shopwired_latency,
        wiredplus_latency=args.wiredplus_latency,
        latency_jitter=args.jitter,
        max_update_rows=args.max_update_rows,
        bulk_enabled=not args.no_bulk,
        bulk_cost=args.bulk_cost,
    )
    now = sb.clock.now()
    if args.orders:
        sb.shopwired.generate_orders(
            args.orders,
            created_between=(
                now - timedelta(days=args.days),
                now - timedelta(minutes=args.gap_minutes),
            ),
        )
    return sb


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sandbox_proc", description=__doc__)
    p.add_argument("--orders", type=int, default=0, help="orders the shop holds")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--days", type=float, default=29.0, help="created over the last DAYS days")
    p.add_argument("--gap-minutes", type=float, default=60.0,
                   help="the newest order is this many minutes old")
    p.add_argument("--rate-limit", action="store_true", help="enforce the ShopWired bucket")
    p.add_argument("--bucket", type=int, default=40)
    p.add_argument("--leak", type=float, default=2.0)
    p.add_argument("--wiredplus-hourly-limit", type=int, default=10_000_000,
                   help="the hourly limit GetAccountInfo reports")
    p.add_argument("--wiredplus-enforce", action="store_true",
                   help="answer 429 beyond the WiredPlus hourly limit")
    p.add_argument("--shopwired-latency", type=float, default=0.0,
                   help="seconds each ShopWired request takes (± --jitter)")
    p.add_argument("--wiredplus-latency", type=float, default=0.0,
                   help="seconds each WiredPlus request takes (± --jitter)")
    p.add_argument("--jitter", type=float, default=0.0, help="latency jitter, seconds")
    p.add_argument("--max-update-rows", type=int, default=50,
                   help="WiredPlus BulkOrderUpdate records per request (GetAccountInfo)")
    p.add_argument("--no-bulk", action="store_true",
                   help="the WiredPlus account refuses BulkOrderUpdate (403)")
    p.add_argument("--bulk-cost", choices=("request", "record"), default="request",
                   help="BulkOrderUpdate costs one budget unit per request or per record")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, _: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sb = build(args)
    sw = Recorder(sb.shopwired.handle)
    wp = Recorder(sb.wiredplus.handle)
    servers: list[RunningServer] = [
        serve(sw, "127.0.0.1"),
        serve(wp, "127.0.0.1"),
        serve(Control(sb, sw, wp), "127.0.0.1"),
    ]
    parent = os.getppid()
    print(
        json.dumps(
            {
                "shopwired_url": servers[0].url + "/v1",
                "shopwired_credentials": list(sb.shopwired_credentials),
                "wiredplus_url": servers[1].url + "/v1",
                "wiredplus_credentials": list(sb.wiredplus_credentials),
                "control_url": servers[2].url,
                "pid": os.getpid(),
                "orders": len(sb.shopwired.orders),
            }
        ),
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            if os.getppid() != parent:  # orphaned: the orchestrator is gone
                break
    finally:
        for srv in servers:
            srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
