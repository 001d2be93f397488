"""Shared pieces of the hostile-input suite: the production wiring against the sandbox, with
transports that tamper with what the APIs answer, and a captured JSON log."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import structlog

from config.settings import Settings
from sync import logs
from sync.clock import FakeClock
from sync.ledger.store import Ledger
from sync.sandbox import Sandbox
from sync.service.runtime import Runtime, build_runtime

Handler = Callable[[httpx.Request], httpx.Response]

#: What a customer's data looks like in the sandbox-independent echo tests.
CUSTOMER = {
    "email": "jane.doe@example.com",
    "phone": "07700 900123",
    "name": "Jane Doe",
    "street": "10 Acacia Avenue",
}


def settings_for(db_url: str, **extra: Any) -> Settings:
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


def order_list_mutator(
    inner: Handler, mutate: Callable[[list[Any]], list[Any]]
) -> httpx.MockTransport:
    """A transport that passes every request to ``inner`` and rewrites each ``/orders`` list
    answer through ``mutate`` (re-encoded with ``ensure_ascii``, so lone surrogates and NULs
    travel as JSON escapes, exactly as a hostile API would send them)."""

    def handle(request: httpx.Request) -> httpx.Response:
        response = inner(request)
        if request.url.path.endswith("/orders") and response.status_code == 200:
            data = json.loads(response.content)
            if isinstance(data, list):
                body = json.dumps(mutate(data)).encode("ascii")
                return httpx.Response(200, content=body,
                                      headers={"content-type": "application/json"})
        return response

    return httpx.MockTransport(handle)


@dataclass
class Rig:
    sb: Sandbox
    rt: Runtime
    clock: FakeClock
    log: io.StringIO

    @property
    def store(self) -> str:
        return self.rt.settings.store

    @property
    def ledger(self) -> Ledger:
        return self.rt.ledger

    def orders(self) -> dict[str, Any]:
        return {r.source_order_id: r for r in self.ledger.all_orders(self.store)}

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """Every structlog line of the test, as JSON, in a buffer."""
    before = structlog.get_config()
    buf = io.StringIO()
    logs.configure("json", "debug", stream=buf)
    yield buf
    structlog.configure(**before)


@pytest.fixture
def make_rig(
    db_url: str, captured_log: io.StringIO
) -> Iterator[Callable[..., Rig]]:
    """``make_rig(orders=10, shopwired=wrap, wiredplus=wrap, **settings)``: a runtime over a
    fresh sandbox whose transports are optionally wrapped (each wrapper takes the
    simulator's handler and returns a transport)."""
    made: list[Runtime] = []

    def make(
        orders: int = 10,
        shopwired: Callable[[Handler], httpx.BaseTransport] | None = None,
        wiredplus: Callable[[Handler], httpx.BaseTransport] | None = None,
        **extra: Any,
    ) -> Rig:
        clock = FakeClock()
        sb = Sandbox(seed=5, clock=clock)
        now = clock.now()
        sb.shopwired.generate_orders(
            orders, created_between=(now - timedelta(days=3), now - timedelta(hours=1))
        )
        rt = build_runtime(
            settings_for(db_url, **extra),
            clock=clock,
            shopwired_transport=(shopwired(sb.shopwired.handle) if shopwired
                                 else sb.shopwired_transport()),
            wiredplus_transport=(wiredplus(sb.wiredplus.handle) if wiredplus
                                 else sb.wiredplus_transport()),
        )
        made.append(rt)
        return Rig(sb, rt, clock, captured_log)

    yield make
    for rt in made:
        rt.close()
