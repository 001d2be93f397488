"""Metrics a Prometheus operator would scrape, and logs free of secrets and raw PII."""

from __future__ import annotations

import io
import json
import re
import urllib.request
from datetime import timedelta
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry

from sync import metrics
from sync.clock import FakeClock
from sync.logs import configure
from sync.sandbox import Sandbox
from sync.service.runtime import build_runtime

from .service.conftest import make_settings  # type: ignore[import-not-found]

EMAIL = re.compile(r"[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_metric_has_a_unique_documented_name() -> None:
    names = [m.name for m in (*metrics.METRICS, *metrics.LEDGER_GAUGES)]
    assert len(names) == len(set(names))
    assert all(n.startswith("ordersync_") and m.help for n, m in
               zip(names, (*metrics.METRICS, *metrics.LEDGER_GAUGES), strict=True))


def test_a_pass_counts_calls_pushes_and_events_and_logs_no_secret_or_pii(
    tmp_path: Path,
) -> None:
    stream = io.StringIO()
    configure("json", "debug", stream=stream)
    clock = FakeClock()
    sb = Sandbox(seed=12, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(30, created_between=(now - timedelta(hours=20), now))
    before_wp = _value("ordersync_api_calls_total", api="wiredplus",
                       endpoint="BulkOrderUpdate", status="200")
    before_sync = _value("ordersync_orders_pushed_total", store="shopwired", outcome="synced")
    rt = build_runtime(make_settings(f"sqlite:///{tmp_path / 'l.db'}"), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    try:
        rt.poller.run_pass()
    finally:
        rt.close()
        configure("auto", "warning")
    # issue 17: the 30 new orders go out as one BulkOrderUpdate request
    assert _value("ordersync_api_calls_total", api="wiredplus", endpoint="BulkOrderUpdate",
                  status="200") - before_wp == 1
    assert _value("ordersync_orders_pushed_total", store="shopwired",
                  outcome="synced") - before_sync == 30
    assert _value("ordersync_passes_total", store="shopwired", result="ok") >= 1
    text = stream.getvalue()
    lines = [json.loads(x) for x in text.splitlines()]
    assert any(x["event"] == "heartbeat" and x["pending"] == 0 for x in lines)
    pushes = [x for x in lines if x["event"] == "order.push"]
    assert len(pushes) == 30 and all({"ref", "order_id", "outcome", "duration_ms", "attempt"}
                                     <= set(p) for p in pushes)
    assert "sandbox-secret" not in text and "sandbox-key" not in text
    emails = [e for e in EMAIL.findall(text) if "***@" not in e]
    assert emails == []
    for order in sb.shopwired.orders.values():
        postcode = order["billingAddress"].get("postcode")
        if postcode and len(postcode) > 4:
            assert postcode not in text


def test_the_ledger_collector_exports_exact_gauges(tmp_path: Path) -> None:
    clock = FakeClock()
    sb = Sandbox(seed=13, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(7, created_between=(now - timedelta(days=2), now))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    rt = build_runtime(make_settings(url), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    rt.poller.run_pass()
    rt.close()
    registry = CollectorRegistry()
    registry.register(metrics.LedgerCollector(url, ["shopwired"]))
    assert registry.get_sample_value(
        "ordersync_ledger_orders", {"store": "shopwired", "state": "synced"}) == 7
    assert registry.get_sample_value(
        "ordersync_last_successful_pass_timestamp_seconds", {"store": "shopwired"})


def test_the_metrics_endpoint_serves_prometheus_text(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'm.db'}"
    from sync.ledger.store import Ledger

    Ledger(url).create_schema()
    registry = CollectorRegistry()
    registry.register(metrics.LedgerCollector(url, ["shopwired"]))
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        server.shutdown()
    assert b'ordersync_ledger_orders{state="pending",store="shopwired"} 0.0' in body
