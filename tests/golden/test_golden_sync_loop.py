"""The golden ShopWired orders replayed through the sync loop: what the WiredPlus sandbox
stores is exactly the reviewed UpdateOrder body ``ordersync map`` prints (issue #13, "Done
when": every row, replayed through ``ordersync map`` *and the sync loop*, sends the expected
value)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from config.settings import Settings
from sync.clock import FakeClock
from sync.ledger.models import OrderState
from sync.sandbox import Sandbox
from sync.service.runtime import build_runtime

HERE = Path(__file__).resolve().parent
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # the golden orders' reference time
SYSTEM = {"id", "contact_id", "create_date", "update_date", "order_update_date"}


def test_sync_loop_sends_the_golden_update_order_bodies(tmp_path: Path) -> None:
    clock = FakeClock(T0 + timedelta(hours=2))
    sb = Sandbox(seed=1, clock=clock)
    expected: dict[str, dict[str, object]] = {}
    for path in sorted((HERE / "shopwired").glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        raw = json.loads(path.read_text("utf-8"))
        if raw["id"] == 255:
            continue  # the docs' 2015 example: before any start date, never sent
        sb.shopwired.add_order(raw)
        want = json.loads(path.with_suffix(".expected.json").read_text("utf-8"))
        expected[str(raw["id"])] = want["update_order"]
    settings = Settings(**{  # type: ignore[arg-type]
        "SHOPWIRED_BASE_URL": "http://shopwired.sandbox/v1",
        "SHOPWIRED_API_KEY": "sandbox-key",
        "SHOPWIRED_API_SECRET": "sandbox-secret",
        "WIREDPLUS_BASE_URL": "http://wiredplus.sandbox/v1",
        "WIREDPLUS_API_USER": "sandbox",
        "WIREDPLUS_API_KEY": "sandbox-key",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    })
    rt = build_runtime(settings, clock=clock, shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    try:
        for _ in range(2):
            rt.poller.run_pass()
            clock.advance(60)
        rows = {r.source_order_id: r for r in rt.ledger.all_orders(rt.settings.store)}
        differences = []
        for oid, want in expected.items():
            assert rows[oid].state == OrderState.SYNCED, (oid, rows[oid].last_error)
            stored = sb.wiredplus.order_by_ref(oid)
            assert stored is not None, oid
            got = {k: v for k, v in stored.items() if k not in SYSTEM}
            wanted = {k: v for k, v in want.items() if k not in SYSTEM}
            if got != wanted:
                keys = sorted(k for k in set(got) | set(wanted) if got.get(k) != wanted.get(k))
                differences.append(f"{oid}: {keys}")
        assert not differences, differences
        assert len(expected) == 29
    finally:
        rt.close()
