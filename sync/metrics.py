"""Prometheus metrics: every name in one typed list, served on ``ORDERSYNC_METRICS_PORT``.

Counters are counted where things happen (clients, pusher, poller); ledger-derived gauges
(pending, dead letters, watermark lag, last successful pass) are read from the database at
scrape time by :class:`LedgerCollector`, so they are exact across any number of workers.

Celery's prefork children each count in their own process: ``ordersync worker`` sets up
``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) before anything is
imported, and its parent process serves the sum.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

Kind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("ordersync_orders_pushed_total", "counter",
               "Order pushes by outcome (synced, retry, dead, requeued, busy, fatal).",
               ("store", "outcome")),
    MetricSpec("ordersync_order_calls_total", "counter",
               "UpdateOrder calls by kind (created, updated).", ("store", "kind")),
    MetricSpec("ordersync_events_sent_total", "counter", "CreateOrderEvent calls accepted.",
               ("store",)),
    MetricSpec("ordersync_orders_skipped_total", "counter",
               "Orders that could not be mapped (recorded with the reason).", ("store",)),
    MetricSpec("ordersync_api_calls_total", "counter",
               "HTTP calls to the APIs by endpoint and status (0 = no response).",
               ("api", "endpoint", "status")),
    MetricSpec("ordersync_api_errors_total", "counter",
               "HTTP calls whose outcome was not ok, by outcome (retry, fatal, skip).",
               ("api", "endpoint", "outcome")),
    MetricSpec("ordersync_rate_limit_wait_seconds_total", "counter",
               "Seconds spent waiting for a rate budget.", ("api",)),
    MetricSpec("ordersync_push_duration_seconds", "histogram",
               "Time to push one order and its events.", ("store",)),
    MetricSpec("ordersync_pass_duration_seconds", "histogram", "Time of one poll pass.",
               ("store",)),
    MetricSpec("ordersync_passes_total", "counter", "Poll passes by result (ok, failed).",
               ("store", "result")),
)
"""Every metric the process exports (the ledger gauges are listed in LEDGER_GAUGES)."""

LEDGER_GAUGES: tuple[MetricSpec, ...] = (
    MetricSpec("ordersync_ledger_orders", "gauge", "Orders in the ledger by state.",
               ("store", "state")),
    MetricSpec("ordersync_ledger_events", "gauge", "Events in the ledger by state.",
               ("store", "state")),
    MetricSpec("ordersync_watermark_lag_seconds", "gauge",
               "Seconds between now and the new-order watermark.", ("store",)),
    MetricSpec("ordersync_last_successful_pass_timestamp_seconds", "gauge",
               "UNIX time of the last successful pass.", ("store",)),
    MetricSpec("ordersync_open_orders", "gauge",
               "Open orders polling re-reads (as of the last pass).", ("store",)),
    MetricSpec("ordersync_staleness_seconds", "gauge",
               "Age of the last read of open orders at the last pass, by quantile "
               "(0.5, 0.95, 1 = max).", ("store", "quantile")),
    MetricSpec("ordersync_staleness_bound_seconds", "gauge",
               "Every open order is re-read at least this often (computed from the polling "
               "share and the open orders; absent when polling has no calls for re-reads).",
               ("store",)),
)

_registry_metrics: dict[str, Any] = {}


def _make(spec: MetricSpec) -> Any:
    short = spec.name.removesuffix("_total")
    if spec.kind == "counter":
        return Counter(short, spec.help, spec.labels)
    if spec.kind == "histogram":
        return Histogram(spec.name, spec.help, spec.labels)
    return Gauge(spec.name, spec.help, spec.labels)


def metric(name: str) -> Any:
    """The live metric object for ``name`` (created on first use, in the default registry)."""
    m = _registry_metrics.get(name)
    if m is None:
        spec = next(s for s in METRICS if s.name == name)
        m = _registry_metrics[name] = _make(spec)
    return m


def inc(name: str, amount: float = 1.0, **labels: str) -> None:
    """Count; never raises (metrics must not break a sync)."""
    with contextlib.suppress(Exception):
        metric(name).labels(**labels).inc(amount)


def observe(name: str, value: float, **labels: str) -> None:
    with contextlib.suppress(Exception):
        metric(name).labels(**labels).observe(value)


class LedgerCollector(Collector):
    """Gauges read from the ledger at scrape time (exact whatever the number of workers)."""

    def __init__(self, database_url: str, stores: list[str]) -> None:
        self.database_url = database_url
        self.stores = stores
        self._ledger: Any = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sync.ledger.store import LAST_PASS_OK, WATERMARK, Ledger

        if self._ledger is None:
            self._ledger = Ledger(self.database_url)
        orders = GaugeMetricFamily(LEDGER_GAUGES[0].name, LEDGER_GAUGES[0].help,
                                   labels=["store", "state"])
        events = GaugeMetricFamily(LEDGER_GAUGES[1].name, LEDGER_GAUGES[1].help,
                                   labels=["store", "state"])
        lag = GaugeMetricFamily(LEDGER_GAUGES[2].name, LEDGER_GAUGES[2].help, labels=["store"])
        last = GaugeMetricFamily(LEDGER_GAUGES[3].name, LEDGER_GAUGES[3].help, labels=["store"])
        try:
            now = datetime.now(UTC)
            for store in self.stores:
                counts = self._ledger.counts(store)
                for state, n in counts.orders.items():
                    orders.add_metric([store, state], n)
                for state, n in counts.events.items():
                    events.add_metric([store, state], n)
                wm = self._ledger.get_cursor(store, WATERMARK)
                if wm:
                    lag.add_metric([store], (now - datetime.fromisoformat(wm)).total_seconds())
                ok = self._ledger.get_cursor(store, LAST_PASS_OK)
                if ok:
                    last.add_metric([store], datetime.fromisoformat(ok).timestamp())
            refresh = self._refresh_gauges()
        except Exception:
            pass  # a scrape during a database outage shows the gauges missing, not an error
            refresh = ()
        yield from (orders, events, lag, last, *refresh)

    def _refresh_gauges(self) -> tuple[GaugeMetricFamily, ...]:
        """Open orders, staleness quantiles and the bound, from each store's last pass."""
        from sync.ledger.store import REFRESH_PLAN

        specs = LEDGER_GAUGES[4:7]
        open_, ages, bound = (
            GaugeMetricFamily(sp.name, sp.help, labels=list(sp.labels)) for sp in specs
        )
        for store in self.stores:
            raw = self._ledger.get_cursor(store, REFRESH_PLAN)
            if not raw:
                continue
            plan = json.loads(raw)
            open_.add_metric([store], plan["open_orders"])
            for q, key in (("0.5", "staleness_p50_s"), ("0.95", "staleness_p95_s"),
                           ("1", "staleness_max_s")):
                ages.add_metric([store, q], plan[key])
            if plan.get("bound_s") is not None:
                bound.add_metric([store], plan["bound_s"])
        return open_, ages, bound


def serve(port: int, *, database_url: str | None = None, stores: list[str] | None = None,
          multiprocess: bool = False) -> CollectorRegistry | None:
    """Start the ``/metrics`` HTTP endpoint on ``port`` (0 = disabled)."""
    if port <= 0:
        return None
    if multiprocess:
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    if database_url and stores is not None:  # the list may grow later (a poller's stores)
        registry.register(LedgerCollector(database_url, stores))
    start_http_server(port, registry=registry)
    return registry


def timer() -> float:
    return time.perf_counter()
