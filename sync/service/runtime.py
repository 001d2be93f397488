"""Wiring: build every component of one store's sync from :class:`Settings`.

The only place that knows how the rooms fit together. Transports, clock and dispatcher can be
injected so tests and the demo run the real wiring against the sandbox.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from config import default_status_map_text
from config.settings import Settings
from sync.clock import Clock, SystemClock
from sync.domain.freshness import parse_targets
from sync.domain.mapping import MappingContext, parse_custom_fields, parse_payment_types
from sync.domain.status_map import StatusMap, StatusMapError
from sync.errors import ConfigError
from sync.ledger.fleet import FleetLedger
from sync.ledger.store import Ledger
from sync.logs import Log, get_logger
from sync.ratelimit import HourlyBudget, LeakyBucket, Limiter
from sync.registry import (
    StoreSpec,
    environment_store,
    merge,
    parse_registry_file,
    resolve_name,
    store_settings,
)
from sync.service.audit import Auditor
from sync.service.dispatch import Dispatcher, InlineDispatcher, QueueDispatcher
from sync.service.ingest import Ingestor
from sync.service.poller import Poller, PollPolicy
from sync.service.push import Pusher, PushPolicy
from sync.sinks.wiredplus import WiredPlusClient
from sync.sources.base import Source
from sync.sources.shopwired import ShopWiredClient
from sync.sources.shopwired_source import ShopWiredSource
from sync.webhook.inbox import RequestBoard, WebhookInbox

if TYPE_CHECKING:
    from sync.service.fleet import Fleet, FleetPolicy
    from sync.sources.elasticpath import ElasticPathClient


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
    log: Log
    owns_ledger: bool = True  # False when the ledger is shared by several stores' runtimes

    def close(self) -> None:
        self.source.close()
        self.wiredplus.close()
        if self.owns_ledger:
            self.ledger.dispose()


def push_batch_size(settings: Settings) -> int:
    """Orders per push batch: 50 (BulkOrderUpdate's ``max_update_rows``) with bulk on, else
    20 (one claim statement and one closing transaction either way)."""
    return 50 if settings.wiredplus_bulk else 20


def _open_ledger(settings: Settings, create_schema: bool, *, threads: int = 5) -> Ledger:
    ledger = Ledger(settings.database_url, threads=threads)
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
            log: Log, after_create: Callable[[str, str, str], None] | None = None) -> Pusher:
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
) -> tuple[Source, ElasticPathClient | None]:
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


def _write_back(settings: Settings, client: ElasticPathClient | None, log: Log
                ) -> Callable[[str, str, str], None] | None:
    """Elastic Path ``external_ref`` write-back after an order's first UpdateOrder (optional;
    a failure is logged and never fails the push)."""
    if (client is None or settings.source != "elasticpath"
            or not settings.elasticpath_write_back_external_ref):
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


def queue_dispatcher(settings: Settings, clock: Clock, ledger: Ledger,
                     celery: Any = None) -> QueueDispatcher:
    """Broker mode: each batch of due orders becomes one Celery task for the workers, at
    most ``ORDERSYNC_QUEUE_PER_STORE`` of a store's orders queued at a time (its share of the
    workers). ``celery`` (a :class:`celery.Celery`) may be shared by several stores'
    dispatchers."""
    if celery is None:
        from workers.app import make_app

        celery = make_app(settings.redis_url)

    def send(store: str, ref: str) -> None:
        celery.send_task("ordersync.push_order", args=[store, ref])

    def send_many(store: str, refs: list[str], priority: int) -> None:
        celery.send_task("ordersync.push_orders", args=[store, refs], priority=priority)

    def still_queued(store: str, refs: Sequence[str]) -> set[str]:
        return ledger.still_waiting(store, refs, clock.now())

    return QueueDispatcher(send=send, send_many=send_many, clock=clock,
                           batch=push_batch_size(settings),
                           max_queued=settings.queue_per_store, still_queued=still_queued)


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    shopwired_transport: httpx.BaseTransport | None = None,
    wiredplus_transport: httpx.BaseTransport | None = None,
    elasticpath_transport: httpx.BaseTransport | None = None,
    dispatcher: Dispatcher | None = None,
    create_schema: bool = True,
    ledger: Ledger | None = None,
    should_stop: Callable[[], bool] | None = None,
    celery: Any = None,
    requests: RequestBoard | None = None,
) -> Runtime:
    """Assemble one store's sync for ``settings``. Raises ConfigError for missing
    credentials (named) or a database schema this version cannot use.

    The dispatcher is the one given, else in-process pushes in embedded mode and Celery
    tasks (on ``celery``, or an app of its own) when a broker is configured. ``ledger`` is
    shared with other stores' runtimes when given (then :meth:`Runtime.close` leaves it open;
    ``create_schema`` is ignored). ``should_stop`` (e.g. SIGTERM received) makes the pass and
    the in-process pushes stop after the current step, leaving the rest pending. ``requests``
    is the board of webhook refresh requests shared by the stores of one process (else the
    store's loop reads its own)."""
    settings.require_credentials()
    clock = clock or SystemClock()
    log = get_logger("ordersync").bind(store=settings.store)
    status_map = load_status_map(settings)
    owns_ledger = ledger is None
    ledger = ledger or _open_ledger(settings, create_schema)
    try:
        src_limiter, wp_limiter = _limiters(settings, clock)
        source, ep_client = _source(settings, clock, src_limiter, shopwired_transport,
                                    elasticpath_transport)
    except Exception:
        if owns_ledger:
            ledger.dispose()
        raise
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
    if dispatcher is None and settings.embedded:
        dispatcher = InlineDispatcher(pusher, batch=push_batch_size(settings),
                                      concurrency=settings.push_concurrency)
        if should_stop is not None:
            dispatcher.should_stop = should_stop
    elif dispatcher is None:
        dispatcher = queue_dispatcher(settings, clock, ledger, celery)
    inbox = WebhookInbox(ledger, clock, board=requests)
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
        stop_requested=should_stop,
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
        owns_ledger=owns_ledger,
    )


def registry_loader(base: Settings, fleet: FleetLedger) -> Callable[[], list[StoreSpec]]:
    """Reads every store the deployment serves (:mod:`sync.registry`): the environment
    store, the ``ORDERSYNC_STORES`` file and the stores added with ``stores add``. Each call
    reads them again (a store added, edited or removed is seen without a restart)."""

    def load() -> list[StoreSpec]:
        env = environment_store(base)
        return merge([env] if env else [],
                     parse_registry_file(base.stores_file) if base.stores_file else [],
                     fleet.managed_stores())

    return load


def find_store(base: Settings, fleet: FleetLedger, name: str) -> Settings:
    """The settings of store ``name`` (``default`` = the environment store); ConfigError
    naming the known stores when there is none by that name."""
    specs = registry_loader(base, fleet)()
    name = resolve_name(name, specs)
    for spec in specs:
        if spec.name == name:
            return store_settings(base, spec)
    if name == base.store:  # the environment store without source credentials (a worker)
        return base
    known = ", ".join(s.name for s in specs) or "none"
    raise ConfigError(f"no store named {name!r} (stores: {known})")


def build_fleet(
    base: Settings,
    *,
    clock: Clock | None = None,
    shopwired_transport: httpx.BaseTransport | None = None,
    wiredplus_transport: httpx.BaseTransport | None = None,
    elasticpath_transport: httpx.BaseTransport | None = None,
    owner: str | None = None,
    policy: FleetPolicy | None = None,
) -> Fleet:
    """``ordersync run``: every store of the registry this poller holds a lease on, each
    built by :func:`build_runtime` over one shared ledger (and, with a broker, one Celery
    app). The caller disposes ``fleet.ledger.ledger`` after :meth:`Fleet.run` returned."""
    from sync.service.fleet import Fleet, FleetPolicy, poller_id

    clock = clock or SystemClock()
    policy = policy or FleetPolicy(lease=base.poller_lease)
    ledger = _open_ledger(base, create_schema=base.embedded, threads=50)  # a thread per store
    fleet_ledger = FleetLedger(ledger)
    requests = RequestBoard(ledger, clock, every=policy.tick)
    celery = None
    if not base.embedded:
        from workers.app import make_app

        celery = make_app(base.redis_url)

    def build(settings: Settings, should_stop: Callable[[], bool]) -> Runtime:
        return build_runtime(
            settings, clock=clock, shopwired_transport=shopwired_transport,
            wiredplus_transport=wiredplus_transport, elasticpath_transport=elasticpath_transport,
            ledger=ledger, should_stop=should_stop, celery=celery, requests=requests,
        )

    return Fleet(
        base=base, ledger=fleet_ledger, clock=clock, log=get_logger("ordersync"), build=build,
        load_specs=registry_loader(base, fleet_ledger),
        policy=policy,
        owner=owner or poller_id(),
    )


class StorePushers:
    """What a worker process needs: one pusher per store — the store's own WiredPlus account
    and limiter — over one shared ledger. A store is looked up in the registry when its first
    task arrives and again every ``recheck`` seconds: when its entry changed (another
    WiredPlus account, a rotated key reference) its pusher is rebuilt before the next push.
    After a ``FatalError`` (credentials refused) :meth:`forget` drops it, so a fixed secret
    is picked up on the next task without a restart."""

    def __init__(self, base: Settings, *, clock: Clock | None = None,
                 wiredplus_transport: httpx.BaseTransport | None = None,
                 recheck: float = 30.0) -> None:
        self.base = base
        self.clock = clock or SystemClock()
        self.log = get_logger("ordersync")
        self.ledger = _open_ledger(base, create_schema=False)
        self._fleet = FleetLedger(self.ledger)
        self._transport = wiredplus_transport
        self._recheck = recheck
        self._lock = threading.Lock()
        self._pushers: dict[str, tuple[Pusher, WiredPlusClient, str]] = {}
        self._checked: dict[str, float] = {}

    def _entry(self, store: str) -> tuple[Settings, str]:
        """The store's settings and a fingerprint of its registry entry."""
        specs = registry_loader(self.base, self._fleet)()
        for spec in specs:
            if spec.name == store:
                return store_settings(self.base, spec), f"{spec.origin}:{spec.to_json()}"
        return find_store(self.base, self._fleet, store), "environment"

    def for_store(self, store: str) -> Pusher:
        """The store's pusher; ConfigError when the store is unknown or misconfigured."""
        with self._lock:
            held = self._pushers.get(store)
            mono = self.clock.monotonic()
            if held is not None and mono - self._checked.get(store, mono) < self._recheck:
                return held[0]
            settings, fingerprint = self._entry(store)
            self._checked[store] = mono
            if held is not None and held[2] == fingerprint:
                return held[0]
            if held is not None:
                self.log.info("worker.store_changed", store=store)
                held[1].close()
            settings.require_credentials(source=False)
            _, wp_limiter = _limiters(settings, self.clock)
            wiredplus = _wiredplus(settings, self.clock, wp_limiter, self._transport)
            pusher = _pusher(settings, self.ledger, wiredplus, self.clock,
                             self.log.bind(store=store))
            self._pushers[store] = (pusher, wiredplus, fingerprint)
            return pusher

    def forget(self, store: str) -> None:
        """Drop a store's pusher (after its credentials were refused)."""
        with self._lock:
            held = self._pushers.pop(store, None)
        if held is not None:
            held[1].close()

    def close(self) -> None:
        with self._lock:
            for _, wiredplus, _ in self._pushers.values():
                wiredplus.close()
            self._pushers.clear()
        self.ledger.dispose()


class WebhookDirectory:
    """Store name → its webhook target (source and secret), for the per-store routes of the
    receiver (:func:`sync.webhook.make_multi_app`). Read from the registry at start and then
    every ``every`` seconds on a background thread, so a request never waits on the database
    and an unknown store costs a dictionary lookup; a store added, removed or with a rotated
    secret is served within ``every`` seconds. A store whose settings are invalid or that has
    no webhook secret has no route (404)."""

    def __init__(self, base: Settings, fleet: FleetLedger, *, every: float = 5.0) -> None:
        from sync.webhook import WebhookTarget

        self._target = WebhookTarget
        self._load = registry_loader(base, fleet)
        self._base = base
        self._every = every
        self._targets: dict[str, Any] = {}
        self._stop = threading.Event()
        self._log = get_logger("ordersync.webhook")
        self._warned: set[str] = set()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="webhook-directory",
                                        daemon=True)
        self._thread.start()

    def __call__(self, store: str) -> Any:
        return self._targets.get(store)

    def __len__(self) -> int:
        return len(self._targets)

    def refresh(self) -> None:
        targets: dict[str, Any] = {}
        for spec in self._load():
            try:
                settings = store_settings(self._base, spec)
            except ConfigError as exc:
                if spec.name not in self._warned:
                    self._warned.add(spec.name)
                    self._log.warning("webhook.store_invalid", store=spec.name,
                                      error=exc.message)
                continue
            _, secret = settings.webhook_secret()
            if secret is not None:
                targets[spec.name] = self._target(spec.name, settings.source,
                                                  secret.get_secret_value())
        self._targets = targets

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.refresh()
            except Exception as exc:  # the database may be down: keep the last targets
                self._log.warning("webhook.directory_stale",
                                  error=f"{type(exc).__name__}: {exc}"[:300])

    def close(self) -> None:
        self._stop.set()
