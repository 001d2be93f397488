"""Shared harness for the service tests: the production wiring against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from config.settings import Settings
from sync.clock import FakeClock
from sync.sandbox import Sandbox
from sync.service.runtime import Runtime, build_runtime


@dataclass
class Harness:
    sb: Sandbox
    rt: Runtime
    clock: FakeClock

    def run(self, passes: int = 1, gap: float = 60.0) -> None:
        for _ in range(passes):
            self.rt.poller.run_pass()
            self.clock.advance(gap)

    @property
    def store(self) -> str:
        return self.rt.settings.store

    def orders(self) -> dict[str, Any]:
        return {r.source_order_id: r for r in self.rt.ledger.all_orders(self.store)}

    def wp_events_for(self, source_order_id: str) -> list[dict[str, Any]]:
        wp = self.sb.wiredplus.order_by_ref(source_order_id)
        return self.sb.wiredplus.events_for_order(wp["id"]) if wp else []


def make_settings(db_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "SHOPWIRED_BASE_URL": "http://shopwired.sandbox/v1",
        "SHOPWIRED_API_KEY": "sandbox-key",
        "SHOPWIRED_API_SECRET": "sandbox-secret",
        "WIREDPLUS_BASE_URL": "http://wiredplus.sandbox/v1",
        "WIREDPLUS_API_USER": "sandbox",
        "WIREDPLUS_API_KEY": "sandbox-key",
        "DATABASE_URL": db_url,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture
def harness(db_url: str) -> Iterator[Harness]:
    clock = FakeClock()
    sb = Sandbox(seed=3, clock=clock)
    now = clock.now()
    # A year of history, a month of recent orders, and a few from the last day.
    sb.shopwired.generate_orders(60, created_between=(now - timedelta(days=365),
                                                      now - timedelta(days=31)))
    sb.shopwired.generate_orders(80, created_between=(now - timedelta(days=29),
                                                      now - timedelta(days=2)))
    sb.shopwired.generate_orders(10, created_between=(now - timedelta(hours=20),
                                                      now - timedelta(minutes=10)))
    rt = build_runtime(
        make_settings(db_url),
        clock=clock,
        shopwired_transport=sb.shopwired_transport(),
        wiredplus_transport=sb.wiredplus_transport(),
    )
    yield Harness(sb, rt, clock)
    rt.close()


def _in_scope(h: Harness) -> set[str]:
    start = h.rt.settings.effective_start(h.clock.now())
    return {str(i) for i in h.sb.shopwired.created_ids(int(start.timestamp()))}
