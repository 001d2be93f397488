"""Wiring: build every component of one store's sync from :class:`Settings`.

The only place that knows how the rooms fit together. Transports, clock and dispatcher can be
injected so tests and the demo run the real wiring against the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from config import default_status_map_text
from config.settings import Settings
from sync.clock import Clock, SystemClock
from sync.domain.mapping import MappingContext
from sync.domain.status_map import StatusMap, StatusMapError
from sync.errors import ConfigError
from sync.ledger.store import Ledger
from sync.logs import get_logger
from sync.ratelimit import HourlyBudget, LeakyBucket, Limiter
from sync.service.audit import Auditor
from sync.service.dispatch import Dispatcher, InlineDispatcher
from sync.service.ingest import Ingestor
from sync.service.poller import Poller, PollPolicy
from sync.service.push import Pusher, PushPolicy
from sync.sinks.wiredplus import WiredPlusClient
from sync.sources.shopwired import ShopWiredClient
from sync.sources.shopwired_source import ShopWiredSource
from sync.webhook.inbox import WebhookInbox


def load_status_map(settings: Settings) -> StatusMap:
    """The default map, overridden key by key by ``ORDERSYNC_STATUS_MAP`` if set."""
    texts = [default_status_map_text()]
    if settings.status_map is not None:
        try:
            texts.append(settings.status_map.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"ORDERSYNC_STATUS_MAP: cannot read {settings.status_map} ({exc.strerror})"
            ) from None
    try:
        return StatusMap.from_toml(*texts)
    except StatusMapError as exc:
        raise ConfigError(f"ORDERSYNC_STATUS_MAP: {exc}") from None


def _limiters(settings: Settings, clock: Clock) -> tuple[Limiter, Limiter]:
    """In-process budgets in embedded mode; Redis-shared ones when workers run (one budget
    per API and credential, whatever the number of processes)."""
    if settings.redis_url is None:
        return (
            LeakyBucket(settings.shopwired_bucket_size, settings.shopwired_rate, clock),
            HourlyBudget(settings.wiredplus_hourly_limit, clock),
        )
    from sync.ratelimit_shared import shopwired_limiter, wiredplus_limiter

    return (
        shopwired_limiter(settings.redis_url, settings.shopwired_base_url,
                          settings.shopwired_api_key or "", settings.shopwired_rate, clock),
        wiredplus_limiter(settings.redis_url, settings.wiredplus_base_url,
                          settings.wiredplus_api_user or "", settings.wiredplus_hourly_limit,
                          clock),
    )


def mapping_context(settings: Settings) -> MappingContext:
    return MappingContext(currency=settings.currency, reference_prefix=settings.reference_prefix)


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    ledger: Ledger
    source: ShopWiredSource
    shopwired: ShopWiredClient
    wiredplus: WiredPlusClient
    pusher: Pusher
    ingestor: Ingestor
    poller: Poller
    dispatcher: Dispatcher
    log: Any

    def close(self) -> None:
        self.source.close()
        self.wiredplus.close()
        self.ledger.dispose()


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    shopwired_transport: httpx.BaseTransport | None = None,
    wiredplus_transport: httpx.BaseTransport | None = None,
    dispatcher: Dispatcher | None = None,
    create_schema: bool = True,
) -> Runtime:
    """Assemble the sync for ``settings``. Raises ConfigError for missing credentials."""
    settings.require_credentials()
    assert settings.shopwired_api_key and settings.shopwired_api_secret
    assert settings.wiredplus_api_user and settings.wiredplus_api_key
    clock = clock or SystemClock()
    log = get_logger("ordersync")
    status_map = load_status_map(settings)
    ledger = Ledger(settings.database_url)
    with_schema = ledger.create_schema if create_schema else ledger.check_schema
    try:
        with_schema()
    except Exception:
        ledger.dispose()
        raise
    sw_limiter, wp_limiter = _limiters(settings, clock)
    shopwired = ShopWiredClient(
        settings.shopwired_base_url,
        settings.shopwired_api_key,
        settings.shopwired_api_secret.get_secret_value(),
        clock=clock,
        transport=shopwired_transport,
        limiter=sw_limiter,
    )
    wiredplus = WiredPlusClient(
        settings.wiredplus_base_url,
        settings.wiredplus_api_user,
        settings.wiredplus_api_key.get_secret_value(),
        clock=clock,
        transport=wiredplus_transport,
        limiter=wp_limiter,
    )
    source = ShopWiredSource(shopwired)
    pusher = Pusher(
        ledger,
        wiredplus,
        clock,
        PushPolicy(
            max_attempts=settings.max_attempts,
            retry_base=settings.retry_base,
            lease=settings.lease,
        ),
        log,
    )
    ingestor = Ingestor(
        ledger=ledger,
        source=source,
        store=settings.store,
        status_map=status_map,
        mapping=mapping_context(settings),
        first_sight_window=settings.first_sight_event_window,
        log=log,
    )
    dispatcher = dispatcher or InlineDispatcher(pusher)
    inbox = WebhookInbox(ledger, clock)
    poller = Poller(
        ledger=ledger,
        source=source,
        ingestor=ingestor,
        dispatcher=dispatcher,
        clock=clock,
        policy=PollPolicy(
            overlap=settings.window_overlap,
            settle=settings.settle_delay,
            refresh_calls_per_pass=settings.refresh_calls_per_pass,
            refresh_horizon=settings.refresh_horizon,
            close_deleted=settings.deleted_policy == "close",
        ),
        start_at=settings.effective_start,
        log=log,
        budget_probe=wiredplus.account_info,
        inbox=inbox,
        auditor=Auditor(ledger=ledger, source=source, inbox=inbox, store=settings.store,
                        clock=clock, log=log),
        audit_every=settings.audit_interval if settings.audit_interval.total_seconds() else None,
    )
    return Runtime(
        settings=settings,
        clock=clock,
        ledger=ledger,
        source=source,
        shopwired=shopwired,
        wiredplus=wiredplus,
        pusher=pusher,
        ingestor=ingestor,
        poller=poller,
        dispatcher=dispatcher,
        log=log,
    )
