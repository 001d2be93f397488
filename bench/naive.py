"""The naive baseline: what a typical hand-written ShopWired → WiredPlus integration does.

A plain sequential loop with no ledger, no change detection and no rate limiting:

1. list the order ids created in a date range (``GET /orders?fields=id``, 100 per page);
2. for each id, ``GET /orders/{id}``;
3. ``POST /UpdateOrder`` with a minimal mapping.

Run as ``python -m bench.naive`` with the sandbox described in the environment variables
``SHOPWIRED_BASE_URL SHOPWIRED_API_KEY SHOPWIRED_API_SECRET WIREDPLUS_BASE_URL
WIREDPLUS_API_USER WIREDPLUS_API_KEY`` and ``--since``/``--until`` UNIX seconds; prints one JSON
line ``{"orders", "seconds", "shopwired_calls", "wiredplus_calls", "errors"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any


def minimal_mapping(order: dict[str, Any]) -> dict[str, Any]:
    """The few fields a hand-written integration typically sends."""
    billing = order.get("billingAddress") or {}
    created = parsedate_to_datetime(order["created"]).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "api_reference_id": f"naive-{order['id']}",
        "order_reference": str(order.get("reference")),
        "customer_email": billing.get("emailAddress"),
        "customer_firstname": billing.get("firstName"),
        "customer_lastname": billing.get("lastName"),
        "order_create_date": created,
        "order_status": "processing",
        "iso_currency_code": "GBP",
        "grand_total_inc_tax": order.get("total"),
        "order_lines": [
            {
                "order_line_id": str(p.get("id")),
                "product_name": p.get("title"),
                "product_sku": p.get("sku"),
                "quantity": p.get("quantity"),
                "product_price": p.get("price"),
            }
            for p in order.get("products") or []
        ],
    }


def run(since: int, until: int) -> dict[str, Any]:
    import httpx

    sw_url = os.environ["SHOPWIRED_BASE_URL"].rstrip("/")
    wp_url = os.environ["WIREDPLUS_BASE_URL"].rstrip("/")
    sw_auth = (os.environ["SHOPWIRED_API_KEY"], os.environ["SHOPWIRED_API_SECRET"])
    wp_auth = (os.environ["WIREDPLUS_API_USER"], os.environ["WIREDPLUS_API_KEY"])
    sw_calls = wp_calls = errors = 0
    started = time.perf_counter()
    with httpx.Client(auth=sw_auth, timeout=30) as sw, httpx.Client(auth=wp_auth, timeout=30) as wp:
        ids: list[int] = []
        offset = 0
        while True:
            r = sw.get(
                f"{sw_url}/orders",
                params={"from": since, "to": until, "count": 100, "offset": offset,
                        "sort": "date", "fields": "id"},
            )
            sw_calls += 1
            r.raise_for_status()
            page = r.json()
            ids.extend(int(o["id"]) for o in page)
            if len(page) < 100:
                break
            offset += 100
        for oid in ids:
            r = sw.get(f"{sw_url}/orders/{oid}")
            sw_calls += 1
            if r.status_code != 200:
                errors += 1
                continue
            r = wp.post(f"{wp_url}/UpdateOrder", json=minimal_mapping(r.json()))
            wp_calls += 1
            if r.status_code != 200:
                errors += 1
    return {
        "orders": len(ids),
        "seconds": time.perf_counter() - started,
        "shopwired_calls": sw_calls,
        "wiredplus_calls": wp_calls,
        "errors": errors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    p.add_argument("--since", type=int, required=True)
    p.add_argument("--until", type=int, required=True)
    args = p.parse_args(argv)
    print(json.dumps(run(args.since, args.until)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
