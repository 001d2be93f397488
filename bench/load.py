"""Load generator for measuring the sandbox's own capacity (no ordersync involved).

``python -m bench.load --kind list|update --seconds S [--threads T]`` sends requests to the
sandbox named by the usual ``SHOPWIRED_*``/``WIREDPLUS_*`` environment variables, each thread on
its own keep-alive connection, back to back for ``S`` seconds; prints one JSON line
``{"requests", "errors", "seconds"}``.

* ``list``: ``GET /orders`` pages of 100 with the ``fields=`` ordersync asks for, walking the
  whole shop by offset;
* ``update``: ``POST /UpdateOrder`` with a realistic body (upserting 500 distinct references).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.naive import minimal_mapping
from sync.sources.shopwired import ORDER_FIELDS


def _list_worker(stop: float, shop_orders: int, counts: list[int], slot: int) -> None:
    url = os.environ["SHOPWIRED_BASE_URL"].rstrip("/") + "/orders"
    auth = (os.environ["SHOPWIRED_API_KEY"], os.environ["SHOPWIRED_API_SECRET"])
    pages = max(1, shop_orders // 100)
    i = slot * 7
    with httpx.Client(auth=auth, timeout=30) as c:
        while time.perf_counter() < stop:
            r = c.get(url, params={
                "from": 0, "to": 4_000_000_000, "count": 100, "offset": (i % pages) * 100,
                "sort": "date", "fields": ",".join(ORDER_FIELDS),
            })
            counts[2 * slot + (r.status_code != 200)] += 1
            i += 1


def _update_worker(stop: float, body: dict[str, Any], counts: list[int], slot: int) -> None:
    url = os.environ["WIREDPLUS_BASE_URL"].rstrip("/") + "/UpdateOrder"
    auth = (os.environ["WIREDPLUS_API_USER"], os.environ["WIREDPLUS_API_KEY"])
    i = 0
    with httpx.Client(auth=auth, timeout=30) as c:
        while time.perf_counter() < stop:
            body["api_reference_id"] = f"load-{slot}-{i % 500}"
            r = c.post(url, json=body)
            counts[2 * slot + (r.status_code != 200)] += 1
            i += 1


def sample_body() -> dict[str, Any]:
    """A realistic UpdateOrder body: the minimal mapping of the shop's first order."""
    url = os.environ["SHOPWIRED_BASE_URL"].rstrip("/") + "/orders"
    auth = (os.environ["SHOPWIRED_API_KEY"], os.environ["SHOPWIRED_API_SECRET"])
    r = httpx.get(url, params={"count": 1, "from": 0, "to": 4_000_000_000}, auth=auth)
    r.raise_for_status()
    return minimal_mapping(r.json()[0])


def run(kind: str, seconds: float, threads: int, shop_orders: int) -> dict[str, Any]:
    counts = [0] * (2 * threads)
    body = sample_body() if kind == "update" else {}
    start = time.perf_counter()
    stop = start + seconds
    workers = [
        threading.Thread(
            target=_list_worker if kind == "list" else _update_worker,
            args=(stop, shop_orders, counts, slot) if kind == "list"
            else (stop, dict(body), counts, slot),
            daemon=True,
        )
        for slot in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return {
        "requests": sum(counts[0::2]),
        "errors": sum(counts[1::2]),
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    p.add_argument("--kind", choices=("list", "update"), required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shop-orders", type=int, default=1000)
    args = p.parse_args(argv)
    print(json.dumps(run(args.kind, args.seconds, args.threads, args.shop_orders)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
