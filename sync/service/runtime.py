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
from sync.domain.freshness import parse_targets
from sync.domain.mapping import MappingContext, parse_custom_fields, parse_payment_types
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
from sync.sources.base import Source
from sync.sources.shopwired import ShopWiredClient
from sync.sources.shopwired_source import ShopWiredSource
from sync.webhook.inbox import WebhookInbox


def load_status_map(settings: Settings) -> StatusMap:
    """The default map, overridden key by key by ``ORDERSYNC_STATUS_MAP`` if set."""
    texts = [default_status_map_text(settings.source)]
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
    """(source, WiredPlus) budgets: in-process in embedded mode; Redis-shared when workers run
    (one budget per API and credential, whatever the number of processes)."""
    ep = settings.source == "elasticpath"
    if settings.redis_url is None:
        return (
            LeakyBucket(5, settings.elasticpath_rate, clock) if ep
            else LeakyBucket(settings.shopwired_bucket_size, settings.shopwired_rate, clock),
            HourlyBudget(settings.wiredplus_hourly_limit, clock),
        )
    from sync.ratelimit_shared import (
        elasticpath_limiter,
        shopwired_limiter,
        wiredplus_limiter,
    )

    return (
        elasticpath_limiter(settings.redis_url, settings.elasticpath_base_url,
                            settings.elasticpath_client_id or "", settings.elasticpath_rate,
                            clock) if ep else
        shopwired_limiter(settings.redis_url, settings.shopwired_base_url,
                          settings.shopwired_api_key or "", settings.shopwired_rate, clock),
        wiredplus_limiter(settings.redis_url, settings.wiredplus_base_url,
                          settings.wiredplus_api_user or "", settings.wiredplus_hourly_limit,
                          clock),
    )


def mapping_context(settings: Settings) -> MappingContext:
    return MappingContext(
        currency=settings.currency,
        reference_prefix=settings.reference_prefix,
        payment_types=parse_payment_types(settings.payment_types),
        custom_fields=parse_custom_fields(settings.wiredplus_custom_fields),
    )


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    ledger: Ledger
    source: Source
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


def push_batch_size(settings: Settings) -> int:
    """Orders per push batch: 50 (BulkOrderUpdate's ``max_update_rows``) with bulk on, else
    20 (one claim statement and one closing transaction either way)."""
    return 50 if settings.wiredplus_bulk else 20


def _open_ledger(settings: Settings, create_schema: bool) -> Ledger:
    ledger = Ledger(settings.database_url)
    with_schema = ledger.create_schema if create_schema else ledger.check_schema
    try:
        with_schema()
    except Exception:
        ledger.dispose()
        raise
    return ledger


def _wiredplus(
    settings: Settings, clock: Clock, limiter: Limiter, transport: httpx.BaseTransport | None
) -> WiredPlusClient:
    assert settings.wiredplus_api_user and settings.wiredplus_api_key
    return WiredPlusClient(
        settings.wiredplus_base_url,
        settings.wiredplus_api_user,
        settings.wiredplus_api_key.get_secret_value(),
        clock=clock,
        transport=transport,
        limiter=limiter,
        bulk=settings.wiredplus_bulk,
    )


def _pusher(settings: Settings, ledger: Ledger, wiredplus: WiredPlusClient, clock: Clock,
            log: Any, after_create: Any = None) -> Pusher:
    return Pusher(
        ledger,
        wiredplus,
        clock,
        PushPolicy(
            max_attempts=settings.max_attempts,
            retry_base=settings.retry_base,
            lease=settings.lease,
        ),
        log,
        after_create=after_create,
    )


def _source(
    settings: Settings,
    clock: Clock,
    limiter: Limiter,
    shopwired_transport: httpx.BaseTransport | None,
    elasticpath_transport: httpx.BaseTransport | None,
) -> tuple[Source, Any]:
    """The configured source and, for Elastic Path write-back, its client."""
    if settings.source == "elasticpath":
        from sync.sources.elasticpath import ElasticPathClient, ElasticPathSource

        assert settings.elasticpath_client_id and settings.elasticpath_client_secret
        client = ElasticPathClient(
            settings.elasticpath_base_url,
            settings.elasticpath_client_id,
            settings.elasticpath_client_secret.get_secret_value(),
            clock=clock,
            transport=elasticpath_transport,
            limiter=limiter,
        )
        return ElasticPathSource(client), client
    assert settings.shopwired_api_key and settings.shopwired_api_secret
    shopwired = ShopWiredClient(
        settings.shopwired_base_url,
        settings.shopwired_api_key,
        settings.shopwired_api_secret.get_secret_value(),
        clock=clock,
        transport=shopwired_transport,
        limiter=limiter,
    )
    return ShopWiredSource(shopwired), None


def _write_back(settings: Settings, client: Any, log: Any) -> Any:
    """Elastic Path ``external_ref`` write-back after an order's first UpdateOrder (optional;
    a failure is logged and never fails the push)."""
    if settings.source != "elasticpath" or not settings.elasticpath_write_back_external_ref:
        return None

    def after_create(store: str, source_order_id: str, wiredplus_id: str) -> None:
        try:
            client.update_external_ref(source_order_id, f"wiredplus:{wiredplus_id}"[:64])
        except Exception as exc:
            log.warning("write_back.failed", store=store, order_id=source_order_id,
                        error=str(exc)[:300])

    return after_create


def build_pusher(
    settings: Settings,
    *,
    clock: Clock | None = None,
    wiredplus_transport: httpx.BaseTransport | None = None,
    create_schema: bool = False,
) -> tuple[Pusher, Ledger, WiredPlusClient]:
    """What a worker needs: ledger + WiredPlus. Serves every store and source in the ledger;
    needs only the WiredPlus credentials."""
    settings.require_credentials(source=False)
    clock = clock or SystemClock()
    log = get_logger("ordersync")
    ledger = _open_ledger(settings, create_schema)
    _, wp_limiter = _limiters(settings, clock)
    wiredplus = _wiredplus(settings, clock, wp_limiter, wiredplus_transport)
    return _pusher(settings, ledger, wiredplus, clock, log), ledger, wiredplus


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    shopwired_transport: httpx.BaseTransport | None = None,
    wiredplus_transport: httpx.BaseTransport | None = None,
    elasticpath_transport: httpx.BaseTransport | None = None,
    dispatcher: Dispatcher | None = None,
    create_schema: bool = True,
) -> Runtime:
    """Assemble one store's sync for ``settings``. Raises ConfigError for missing
    credentials (named) or a database schema this version cannot use."""
    settings.require_credentials()
    clock = clock or SystemClock()
    log = get_logger("ordersync")
    status_map = load_status_map(settings)
    ledger = _open_ledger(settings, create_schema)
    src_limiter, wp_limiter = _limiters(settings, clock)
    source, ep_client = _source(settings, clock, src_limiter, shopwired_transport,
                                elasticpath_transport)
    wiredplus = _wiredplus(settings, clock, wp_limiter, wiredplus_transport)
    pusher = _pusher(settings, ledger, wiredplus, clock, log,
                     after_create=_write_back(settings, ep_client, log))
    ingestor = Ingestor(
        ledger=ledger,
        source=source,
        store=settings.store,
        status_map=status_map,
        mapping=mapping_context(settings),
        first_sight_window=settings.first_sight_event_window,
        log=log,
    )
    dispatcher = dispatcher or InlineDispatcher(
        pusher, batch=push_batch_size(settings), concurrency=settings.push_concurrency
    )
    inbox = WebhookInbox(ledger, clock)
    # Elastic Path's scan is on updated_at, so it sees every change; refreshing by id would
    # cost one call per order there.
    polls_by_id = settings.source == "shopwired"
    poller = Poller(
        ledger=ledger,
        source=source,
        ingestor=ingestor,
        dispatcher=dispatcher,
        clock=clock,
        policy=PollPolicy(
            overlap=settings.window_overlap,
            settle=settings.settle_delay,
            source_rate=settings.shopwired_rate,
            refresh_share=settings.refresh_share if polls_by_id else 0.0,
            refresh_share_with_webhooks=(
                settings.refresh_share_with_webhooks if polls_by_id else 0.0),
            freshness_targets=parse_targets(settings.freshness_targets),
            refresh_min_interval=settings.refresh_min_interval,
            staleness_alert=settings.staleness_alert,
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
        wiredplus=wiredplus,
        pusher=pusher,
        ingestor=ingestor,
        poller=poller,
        dispatcher=dispatcher,
        log=log,
    )
