"""Issue 11: a 100,000-order backfill with 1 % 5xx on ShopWired reads completes, and costs at
most 1.05× the ShopWired calls of a fault-free run (in-place retries, not re-read windows).

Deterministic and in-process: the ShopWired sandbox on a FakeClock, the production client and
its default limiter and retry policy, the production pager. Figures go to
``tests/perf/last_backfill_faults.json`` (RELIABILITY.md quotes them).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from sync.clock import FakeClock
from sync.sandbox import Sandbox
from sync.sources.shopwired import ShopWiredClient

pytestmark = [pytest.mark.slow]

ORDERS = 100_000
RESULTS = Path(__file__).parent / "last_backfill_faults.json"


def _backfill(error_rate: float) -> tuple[int, int, float]:
    """(orders read, ShopWired calls, simulated seconds) of one backfill of the 30 days."""
    clock = FakeClock()
    sb = Sandbox(seed=17, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(ORDERS, created_between=(now - timedelta(days=30), now))
    sb.shopwired.faults.error_rate = error_rate
    client = ShopWiredClient("http://shopwired.sandbox/v1", "sandbox-key", "sandbox-secret",
                             clock=clock, transport=sb.shopwired_transport())
    start = clock.monotonic()
    seen: set[int] = set()
    for archived in (False, True):
        for page in client.iter_orders_in_window(now - timedelta(days=30), now,
                                                 archived=archived, fields=("id", "created")):
            seen.update(int(o["id"]) for o in page)
    return len(seen), sum(client.calls.values()), clock.monotonic() - start


def test_a_100k_backfill_with_1_percent_5xx_costs_at_most_5_percent_more_calls() -> None:
    clean_orders, clean_calls, clean_s = _backfill(0.0)
    orders, calls, seconds = _backfill(0.01)
    assert clean_orders == orders == ORDERS
    ratio = calls / clean_calls
    RESULTS.write_text(json.dumps({
        "orders": orders, "calls_fault_free": clean_calls, "calls_1pct_5xx": calls,
        "ratio": round(ratio, 4), "simulated_s_fault_free": round(clean_s, 1),
        "simulated_s_1pct_5xx": round(seconds, 1),
    }, indent=2) + "\n")
    assert ratio <= 1.05
