"""Many shops and many WiredPlus accounts in one sandbox: :class:`FleetSandbox`.

Contract
--------
A :class:`FleetSandbox` (a context manager, like :class:`~sync.sandbox.server.Sandbox`) holds
one store per name. Every store has its **own** shop simulator (a
:class:`~sync.sandbox.shopwired.ShopWiredSimulator` -- or, for ``source="elasticpath"``, an
:class:`~sync.sandbox.elasticpath.ElasticPathSimulator`) with its own credentials, rate
limiter and orders, and its **own** :class:`~sync.sandbox.wiredplus.WiredPlusSimulator`
account with its own API user/key and hourly budget. All stores share one clock and one seed.

All shops are served on **one** loopback port and all WiredPlus accounts on another, routed by
the first path segment, which is the store name::

    http://127.0.0.1:P/{store}/v1/orders            -> that store's ShopWired API (/v1/orders)
    http://127.0.0.1:P/{store}/oauth/access_token   -> that store's Elastic Path API
    http://127.0.0.1:P/{store}/v2/orders            (Elastic Path stores)
    http://127.0.0.1:Q/{store}/v1/UpdateOrder       -> that store's WiredPlus account

The prefix is removed before the simulator sees the request (so its ``calls`` counters read
``GET /v1/orders`` as usual). An unknown store name answers 404 (in the API's error shape).
Nothing is shared between stores, so a request carrying another store's credentials gets
401 from the simulator: a misconfigured daemon can never read or write another store's data.

Deterministic data: a store's simulators are seeded from ``(seed, store name)`` only, so a
store gets the same orders and credentials whatever other stores exist. ShopWired order ids
of the *i*-th store added (0-based) start at ``100_001 + i * 10_000_000``, so no two stores
share an order id (references start at 1001 in every shop, as in real shops); this is what
:meth:`FleetSandbox.foreign_records` relies on.

Controls (thread-safe, usable while serving): :meth:`~FleetSandbox.revoke` /
:meth:`~FleetSandbox.restore` (every call to that shop answers 401, as with revoked
credentials), :meth:`~FleetSandbox.outage` (503 with a load balancer's HTML page),
:meth:`~FleetSandbox.add_store` (reachable from the moment it returns),
:meth:`~FleetSandbox.start_activity` / :meth:`~FleetSandbox.stop_activity` (one background
thread stepping every ShopWired shop's :class:`~sync.sandbox.generator.Activity`).

``limits=True`` (default) enforces the documented limits per store: the ShopWired leaky bucket
(40 deep, 2/s), the WiredPlus hourly budget (``hourly_limit``), Elastic Path's 25 requests/s.
``limits=False`` switches all of them off (throughput runs), and says so to the daemon: each
account's ``GetAccountInfo`` advertises a budget that never binds (:data:`NO_LIMIT_HOURLY`)
and :func:`stores_toml` gives each store the rate of a shop without limits
(:data:`NO_LIMIT_RATE` calls/s, ``shopwired_rate`` or ``elasticpath_rate``) unless its spec
sets one. Otherwise ordersync would still pace itself at the documented 2 calls/s and a
tenth of 10,000 calls an hour per 6 minutes — limits the APIs no longer have.

The daemon's view of the fleet: :func:`stores_toml` (the store registry file) and
:func:`secrets_env` (the environment holding the secrets that file names only by
``*_env`` reference); :func:`describe_fleet` is a one-line-per-store summary.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

import httpx

from sync.clock import Clock, SystemClock
from sync.sandbox._common import json_response
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.generator import Activity
from sync.sandbox.server import Handler, RunningServer, ServedSimulators
from sync.sandbox.shopwired import ShopWiredSimulator
from sync.sandbox.wiredplus import WiredPlusSimulator

Source = Literal["shopwired", "elasticpath"]
SOURCES: tuple[Source, ...] = ("shopwired", "elasticpath")
Side = Literal["shop", "wiredplus"]
SettingValue = str | int | float | bool
Switchable = ShopWiredSimulator | ElasticPathSimulator | WiredPlusSimulator

STORE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
"""What a store name may look like (it is a URL path segment and part of env var names)."""

FIRST_ORDER_ID = 100_001
ID_BLOCK = 10_000_000
"""ShopWired order ids of the i-th store start at ``FIRST_ORDER_ID + i * ID_BLOCK``."""

_SETTING_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_HOP = frozenset({"content-length", "transfer-encoding", "host"})


def env_prefix(store: str) -> str:
    """``ORDERSYNC_STORE_<NAME>``: the store name upper-cased, ``.`` and ``-`` → ``_``."""
    return "ORDERSYNC_STORE_" + store.upper().replace(".", "_").replace("-", "_")


def secret_env_name(store: str, setting: str) -> str:
    """The variable holding ``setting`` (e.g. ``shopwired_api_secret``) of ``store``."""
    return f"{env_prefix(store)}_{setting.upper()}"


def check_store_name(name: str) -> str:
    """``name`` if it is a valid store name, else ValueError."""
    if not isinstance(name, str) or not STORE_NAME.match(name):
        raise ValueError(
            f"invalid store name {name!r}: use 1-63 characters a-z 0-9 _ . - starting with a "
            "letter or digit"
        )
    return name


LIMITED_HOURLY = 10_000
"""Each WiredPlus account's advertised hourly budget with limits on."""
NO_LIMIT_HOURLY = 1_000_000_000
"""With limits off: the budget ``GetAccountInfo`` advertises (never binds)."""
NO_LIMIT_RATE = 1000.0
"""With limits off: the source rate (calls/s) :func:`stores_toml` gives each store."""


@dataclass(frozen=True)
class _Options:
    limits: bool
    bucket_size: int
    leak_per_second: float
    hourly_limit: int
    shop_latency: float
    wiredplus_latency: float
    latency_jitter: float


@dataclass(frozen=True)
class StoreSpec:
    """One store to create: ``orders`` generated orders (None: the fleet's default), the shop
    platform, and extra per-store settings written into :func:`stores_toml` as they are
    (lower-case ``Settings`` field names, e.g. ``{"reference_prefix": "eu-"}``)."""

    name: str
    orders: int | None = None
    source: Source = "shopwired"
    settings: Mapping[str, SettingValue] = field(default_factory=dict)


class StoreCounts(NamedTuple):
    """What one store holds: orders in its shop, orders/events in its WiredPlus account, and
    how many orders/events were *created* more than once in the account (duplicates)."""

    shop_orders: int
    orders: int
    events: int
    duplicate_orders: int
    duplicate_events: int


class ForeignRecord(NamedTuple):
    """A WiredPlus record in ``account`` that does not belong to that store's shop.

    ``kind`` is ``"order"`` or ``"event"``; ``reference`` its ``api_reference_id`` /
    ``event_reference``; ``owner`` the store whose shop it does belong to, if any."""

    account: str
    kind: str
    reference: str
    owner: str | None


def _derived_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"ordersync-fleet:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


class FleetStore:
    """One store of a fleet: its simulators, credentials and settings (read-only use)."""

    def __init__(
        self,
        name: str,
        *,
        index: int,
        source: Source,
        seed: int,
        clock: Clock,
        options: _Options,
        settings: Mapping[str, SettingValue],
    ) -> None:
        o = options
        self.name = name
        self.index = index
        self.source: Source = source
        self.seed = _derived_seed(seed, name)
        self.settings: dict[str, SettingValue] = dict(settings)
        creds = random.Random(f"fleet-credentials-{seed}-{name}")
        self.webhook_secret = f"{creds.getrandbits(128):032x}"
        self.shopwired: ShopWiredSimulator | None = None
        self.elasticpath: ElasticPathSimulator | None = None
        self.activity: Activity | None = None
        if source == "shopwired":
            self.shopwired = ShopWiredSimulator(
                clock=clock,
                seed=self.seed,
                api_key=f"{name}-key-{creds.getrandbits(32):08x}",
                api_secret=f"{creds.getrandbits(128):032x}",
                bucket_size=o.bucket_size,
                leak_per_second=o.leak_per_second,
                enforce_rate_limit=o.limits,
                latency=o.shop_latency,
                jitter=o.latency_jitter,
            )
            first = FIRST_ORDER_ID + index * ID_BLOCK
            self.shopwired.generator.next_id = max(self.shopwired.generator.next_id, first)
            self.activity = Activity(self.shopwired, random.Random(f"activity-{seed}-{name}"))
        elif source == "elasticpath":
            self.elasticpath = ElasticPathSimulator(
                clock=clock,
                seed=self.seed,
                client_id=f"{name}-client-{creds.getrandbits(64):016x}",
                client_secret=f"{creds.getrandbits(128):032x}",
                enforce_rate_limit=o.limits,
                latency=o.shop_latency,
                jitter=o.latency_jitter,
            )
        else:
            raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
        self.account = WiredPlusSimulator(
            clock=clock,
            seed=self.seed,
            api_user=f"{name}-api",
            api_key=f"{creds.getrandbits(128):032x}",
            hourly_limit=o.hourly_limit,
            enforce_rate_limit=o.limits,
            account_name=f"{name} (sandbox)",
            latency=o.wiredplus_latency,
            jitter=o.latency_jitter,
        )

    @property
    def shop(self) -> ShopWiredSimulator | ElasticPathSimulator:
        """The store's shop simulator, whichever the platform."""
        shop = self.shopwired if self.shopwired is not None else self.elasticpath
        assert shop is not None
        return shop

    def generate(self, n: int, created_between: tuple[datetime, datetime] | None) -> None:
        if n > 0:
            self.shop.generate_orders(n, created_between=created_between)

    def handle_shop(self, request: httpx.Request) -> httpx.Response:
        return self.shop.handle(request)

    def shop_order_count(self) -> int:
        return len(self.shop.orders)  # no snapshot: benchmarks ask every second

    def owns(self, reference: str) -> bool:
        """Whether ``reference`` (an api_reference_id) names an order of this store's shop."""
        prefix = str(self.settings.get("reference_prefix", ""))
        if not reference.startswith(prefix):
            return False
        key = reference[len(prefix):]
        if self.shopwired is not None:
            if not key.isdecimal():
                return False
            oid = int(key)
            first = FIRST_ORDER_ID + self.index * ID_BLOCK
            # deleted orders keep their owner: ids are allotted in blocks per store
            return oid in self.shopwired.orders or first <= oid < first + ID_BLOCK
        assert self.elasticpath is not None
        return key in self.elasticpath.orders


class FleetSandbox(ServedSimulators):
    """Many stores, each with its own shop and WiredPlus account, on two loopback ports.

    ``stores``: names or :class:`StoreSpec`; ``orders``: generated orders per store unless
    its spec says otherwise (``created`` spread over ``created_between``, default the 30 days
    before ``clock.now()``). See the module docstring for routing, ids and limits.
    """

    def __init__(
        self,
        stores: Iterable[str | StoreSpec] = (),
        *,
        orders: int = 0,
        seed: int = 0,
        clock: Clock | None = None,
        limits: bool = True,
        host: str = "127.0.0.1",
        created_between: tuple[datetime, datetime] | None = None,
        bucket_size: int = 40,
        leak_per_second: float = 2.0,
        hourly_limit: int | None = None,
        shop_latency: float = 0.0,
        wiredplus_latency: float = 0.0,
        latency_jitter: float = 0.0,
        stall_seconds: float = 30.0,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.seed = seed
        self.limits = limits
        self.host = host
        self.default_orders = orders
        self.created_between = created_between
        self.stall_seconds = stall_seconds
        self._options = _Options(
            limits, bucket_size, leak_per_second,
            hourly_limit if hourly_limit is not None
            else (LIMITED_HOURLY if limits else NO_LIMIT_HOURLY),
            shop_latency,
            wiredplus_latency, latency_jitter,
        )
        self._stores: dict[str, FleetStore] = {}  # replaced whole (copy on write) on add
        self._add_lock = threading.Lock()
        self._servers: dict[str, RunningServer] = {}
        self._activity_thread: threading.Thread | None = None
        self._activity_stop = threading.Event()
        self.activity_log: list[tuple[str, int, str]] = []
        self.activity_errors: list[str] = []
        for spec in stores:
            if isinstance(spec, str):
                self.add_store(spec)
            else:
                self.add_store(spec.name, spec.orders, source=spec.source, settings=spec.settings)

    # ------------------------------------------------------------------ stores

    def add_store(
        self,
        name: str,
        orders: int | None = None,
        *,
        source: Source = "shopwired",
        settings: Mapping[str, SettingValue] | None = None,
    ) -> FleetStore:
        """Add a store (also while serving: it answers at its URLs once this returns).

        ``orders`` generated orders (None: the fleet's default). ValueError for an invalid or
        taken name, or one whose environment variable names clash with an existing store's
        (``a-b`` and ``a_b`` both give ``ORDERSYNC_STORE_A_B_…``).
        """
        check_store_name(name)
        extra = dict(settings or {})
        for key, value in extra.items():
            if not _SETTING_KEY.match(key) or key in _GENERATED_KEYS:
                raise ValueError(f"store {name}: setting {key!r} cannot be set per store here")
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"store {name}: setting {key!r} must be a string or number")
        with self._add_lock:
            current = self._stores
            if name in current:
                raise ValueError(f"store {name!r} already exists")
            clash = [s for s in current if env_prefix(s) == env_prefix(name)]
            if clash:
                raise ValueError(
                    f"store {name!r} would share environment variable names "
                    f"({env_prefix(name)}_…) with store {clash[0]!r}"
                )
            store = FleetStore(
                name,
                index=len(current),
                source=source,
                seed=self.seed,
                clock=self.clock,
                options=self._options,
                settings=extra,
            )
            store.generate(self.default_orders if orders is None else orders,
                           self.created_between)
            self._stores = {**current, name: store}
        return store

    @property
    def stores(self) -> list[str]:
        """Store names, in the order they were added."""
        return list(self._stores)

    def store(self, name: str) -> FleetStore:
        """One store's record; KeyError when there is none."""
        try:
            return self._stores[name]
        except KeyError:
            raise KeyError(f"no store {name!r} in this sandbox") from None

    def shop(self, store: str) -> ShopWiredSimulator:
        """The store's ShopWired simulator (TypeError for an Elastic Path store)."""
        sim = self.store(store).shopwired
        if sim is None:
            raise TypeError(f"store {store!r} is an Elastic Path store: use elasticpath()")
        return sim

    def elasticpath(self, store: str) -> ElasticPathSimulator:
        """The store's Elastic Path simulator (TypeError for a ShopWired store)."""
        sim = self.store(store).elasticpath
        if sim is None:
            raise TypeError(f"store {store!r} is a ShopWired store: use shop()")
        return sim

    def account(self, store: str) -> WiredPlusSimulator:
        """The store's WiredPlus account simulator."""
        return self.store(store).account

    # ------------------------------------------------------------------ lifecycle

    def _handlers(self) -> dict[str, Handler]:
        return {"shops": self.handle_shop, "wiredplus": self.handle_wiredplus}

    # ------------------------------------------------------------------ routing

    def _split(self, request: httpx.Request) -> tuple[FleetStore | None, httpx.Request]:
        path = request.url.path
        name, sep, rest = path[1:].partition("/")
        store = self._stores.get(name)
        if store is None or not sep:
            return None, request
        body = request.read()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _HOP]
        url = request.url.copy_with(path="/" + rest)
        return store, httpx.Request(request.method, url, headers=headers, content=body)

    def handle_shop(self, request: httpx.Request) -> httpx.Response:
        """The shops' port: ``/{store}/...`` to that store's shop simulator (thread-safe)."""
        store, inner = self._split(request)
        if store is None:
            return json_response(404, {"code": 4, "message": "Not Found: no such store"})
        return store.handle_shop(inner)

    def handle_wiredplus(self, request: httpx.Request) -> httpx.Response:
        """The WiredPlus port: ``/{store}/v1/...`` to that store's account (thread-safe)."""
        store, inner = self._split(request)
        if store is None:
            return json_response(404, {"status": 404, "error": "account: no such account"})
        return store.account.handle(inner)

    def shop_transport(self) -> httpx.MockTransport:
        """In-process transport to every shop (no sockets); base URL ``http://x/{store}/v1``."""
        return httpx.MockTransport(self.handle_shop)

    def wiredplus_transport(self) -> httpx.MockTransport:
        """In-process transport to every WiredPlus account (no sockets)."""
        return httpx.MockTransport(self.handle_wiredplus)

    # ------------------------------------------------------------------ addresses

    def _server(self, name: str) -> RunningServer:
        srv = self._servers.get(name)
        if srv is None:
            raise RuntimeError("the sandbox is not running; call start() or use it in `with`")
        return srv

    def base_url(self, server: Literal["shops", "wiredplus"], host: str | None = None) -> str:
        """``http://HOST:PORT`` of one of the two servers; ``host`` replaces the listening
        address (e.g. ``host.docker.internal`` for a client in a container)."""
        srv = self._server(server)
        return f"http://{host}:{srv.port}" if host is not None else srv.url

    @property
    def shops_url(self) -> str:
        """``http://127.0.0.1:P``: the port serving every shop."""
        return self._server("shops").url

    @property
    def accounts_url(self) -> str:
        """``http://127.0.0.1:Q``: the port serving every WiredPlus account."""
        return self._server("wiredplus").url

    @property
    def server_errors(self) -> list[str]:
        """Handler crash tracebacks from both servers (should stay empty)."""
        return [e for srv in self._servers.values() for e in srv.errors]

    def shopwired_url(self, store: str) -> str:
        """``http://127.0.0.1:P/{store}/v1`` (TypeError for an Elastic Path store)."""
        self.shop(store)
        return f"{self.shops_url}/{store}/v1"

    def elasticpath_url(self, store: str) -> str:
        """``http://127.0.0.1:P/{store}``: the Elastic Path base URL (``/oauth``, ``/v2``
        follow)."""
        self.elasticpath(store)
        return f"{self.shops_url}/{store}"

    def wiredplus_url(self, store: str) -> str:
        """``http://127.0.0.1:Q/{store}/v1``."""
        self.store(store)
        return f"{self.accounts_url}/{store}/v1"

    def shopwired_credentials(self, store: str) -> tuple[str, str]:
        """(API key, API secret) of the store's ShopWired shop."""
        sim = self.shop(store)
        return sim.api_key, sim.api_secret

    def elasticpath_credentials(self, store: str) -> tuple[str, str]:
        """(client id, client secret) of the store's Elastic Path shop."""
        sim = self.elasticpath(store)
        return sim.client_id, sim.client_secret

    def wiredplus_credentials(self, store: str) -> tuple[str, str]:
        """(API key name, API key) of the store's WiredPlus account."""
        sim = self.account(store)
        return sim.api_user, sim.api_key

    def webhook_secret(self, store: str) -> str:
        """The store's webhook secret (ShopWired signing key / Elastic Path shared secret)."""
        return self.store(store).webhook_secret

    # ------------------------------------------------------------------ controls

    def _side(self, store: str, side: Side) -> Switchable:
        if side == "shop":
            return self.store(store).shop
        if side == "wiredplus":
            return self.store(store).account
        raise ValueError(f"side must be 'shop' or 'wiredplus', not {side!r}")

    def revoke(self, store: str, *, side: Side = "shop") -> None:
        """From the next request on, that shop (or account) answers 401 to every call."""
        self._side(store, side).revoked = True

    def restore(self, store: str, *, side: Side = "shop") -> None:
        """Undo :meth:`revoke`: the credentials work again."""
        self._side(store, side).revoked = False

    def outage(self, store: str, down: bool = True, *, side: Side = "shop") -> None:
        """``down=True``: that shop (or account) answers 503 to every call; False: back up."""
        self._side(store, side).outage = down

    # ------------------------------------------------------------------ activity

    def activity_step(self, changes_per_tick: int = 5, new_per_tick: int = 1) -> int:
        """One :meth:`Activity.step` in every ShopWired shop; returns the number of changes
        (also appended to ``activity_log`` as ``(store, order_id, kind)``)."""
        done = 0
        for name, store in list(self._stores.items()):
            if store.activity is None:
                continue
            steps = store.activity.step(changes_per_tick, new_per_tick)
            self.activity_log.extend((name, oid, kind) for oid, kind in steps)
            done += len(steps)
        return done

    def start_activity(
        self, interval_seconds: float = 1.0, changes_per_tick: int = 5, new_per_tick: int = 1
    ) -> None:
        """Every ``interval_seconds`` (real time) apply :meth:`activity_step` on a
        background thread (stores added later join in), until :meth:`stop_activity`."""
        self.stop_activity()
        self._activity_stop = threading.Event()
        stop = self._activity_stop

        def run() -> None:
            while not stop.wait(interval_seconds):
                try:
                    self.activity_step(changes_per_tick, new_per_tick)
                except Exception:
                    self.activity_errors.append(traceback.format_exc())

        self._activity_thread = threading.Thread(target=run, name="fleet-activity", daemon=True)
        self._activity_thread.start()

    # ------------------------------------------------------------------ oracles

    def counts(self) -> dict[str, StoreCounts]:
        """Per store: shop orders, account orders/events, duplicate creations."""
        out: dict[str, StoreCounts] = {}
        for name, store in list(self._stores.items()):
            acc = store.account
            with acc._lock:
                orders, events = len(acc.orders), len(acc.events)
                dup_o = sum(c - 1 for c in acc.order_creations.values() if c > 1)
                dup_e = sum(c - 1 for c in acc.event_creations.values() if c > 1)
            out[name] = StoreCounts(store.shop_order_count(), orders, events, dup_o, dup_e)
        return out

    def foreign_records(self) -> list[ForeignRecord]:
        """Every WiredPlus order whose ``api_reference_id`` is not an order of that account's
        own shop (and every event whose ``event_reference`` does not start with such an
        order's reference). Empty when no store ever wrote into another's account."""
        stores = list(self._stores.values())
        out: list[ForeignRecord] = []

        def owner(reference: str) -> str | None:
            return next((s.name for s in stores if s.owns(reference)), None)

        for store in stores:
            acc = store.account
            with acc._lock:
                refs = [str(o.get("api_reference_id", "")) for o in acc.orders.values()]
                events = [str(e.get("event_reference", "")) for e in acc.events.values()]
            for ref in refs:
                if not store.owns(ref):
                    out.append(ForeignRecord(store.name, "order", ref, owner(ref)))
            for ref in events:
                order_ref = ref.split(":", 1)[0]
                if not store.owns(order_ref):
                    out.append(ForeignRecord(store.name, "event", ref, owner(order_ref)))
        return out

    def foreign_orders(self) -> list[tuple[str, str]]:
        """``(account, api_reference_id)`` of every order in the wrong account (see
        :meth:`foreign_records`); should always be empty."""
        return [(r.account, r.reference) for r in self.foreign_records() if r.kind == "order"]


# ---------------------------------------------------------------------- what the daemon reads

_GENERATED_KEYS = frozenset(
    {
        "source",
        "shopwired_base_url", "shopwired_api_key", "shopwired_api_secret",
        "shopwired_api_secret_env", "shopwired_webhook_secret", "shopwired_webhook_secret_env",
        "elasticpath_base_url", "elasticpath_client_id", "elasticpath_client_secret",
        "elasticpath_client_secret_env", "elasticpath_webhook_secret",
        "elasticpath_webhook_secret_env",
        "wiredplus_base_url", "wiredplus_api_user", "wiredplus_api_key", "wiredplus_api_key_env",
    }
)


def _toml_value(value: SettingValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_value(name)


def _store_entries(fb: FleetSandbox, name: str, host: str | None) -> list[tuple[str, str]]:
    """``(key, value)`` of one store's registry entry, and nothing secret."""
    shops, accounts = fb.base_url("shops", host), fb.base_url("wiredplus", host)
    store = fb.store(name)
    entries: list[tuple[str, SettingValue]] = [("source", store.source)]
    if store.source == "shopwired":
        key, _ = fb.shopwired_credentials(name)
        entries += [
            ("shopwired_base_url", f"{shops}/{name}/v1"),
            ("shopwired_api_key", key),
            ("shopwired_api_secret_env", secret_env_name(name, "shopwired_api_secret")),
        ]
    else:
        client_id, _ = fb.elasticpath_credentials(name)
        entries += [
            ("elasticpath_base_url", f"{shops}/{name}"),
            ("elasticpath_client_id", client_id),
            ("elasticpath_client_secret_env",
             secret_env_name(name, "elasticpath_client_secret")),
        ]
    user, _ = fb.wiredplus_credentials(name)
    webhook = f"{store.source}_webhook_secret"
    entries += [
        ("wiredplus_base_url", f"{accounts}/{name}/v1"),
        ("wiredplus_api_user", user),
        ("wiredplus_api_key_env", secret_env_name(name, "wiredplus_api_key")),
        (f"{webhook}_env", secret_env_name(name, webhook)),
    ]
    rate_key = f"{store.source}_rate"
    if not fb.limits and rate_key not in store.settings:
        entries.append((rate_key, NO_LIMIT_RATE))
    entries += list(store.settings.items())
    return [(k, _toml_value(v)) for k, v in entries]


def stores_toml(fb: FleetSandbox, *, host: str | None = None) -> str:
    """The store registry file for ``fb``: one ``[stores.<name>]`` table per store, secrets
    only as ``*_env`` references to :func:`secrets_env`'s variables. ``host`` replaces the
    URLs' host (e.g. ``host.docker.internal`` for a daemon in a container)."""
    blocks = []
    for name in fb.stores:
        lines = [f"[stores.{_toml_key(name)}]"]
        lines += [f"{k} = {v}" for k, v in _store_entries(fb, name, host)]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def secrets_env(fb: FleetSandbox) -> dict[str, str]:
    """The environment variables :func:`stores_toml` refers to, with their values."""
    env: dict[str, str] = {}
    for name in fb.stores:
        store = fb.store(name)
        if store.source == "shopwired":
            env[secret_env_name(name, "shopwired_api_secret")] = fb.shopwired_credentials(name)[1]
        else:
            env[secret_env_name(name, "elasticpath_client_secret")] = (
                fb.elasticpath_credentials(name)[1]
            )
        env[secret_env_name(name, "wiredplus_api_key")] = fb.wiredplus_credentials(name)[1]
        env[secret_env_name(name, f"{store.source}_webhook_secret")] = store.webhook_secret
    return env


def describe_fleet(fb: FleetSandbox) -> str:
    """One line per store: name, platform, orders in the shop, the two URLs, state."""
    names = fb.stores
    width = max((len(n) for n in names), default=0)
    lines = []
    for name in names:
        store = fb.store(name)
        shop_url = (
            fb.shopwired_url(name) if store.source == "shopwired" else fb.elasticpath_url(name)
        )
        flags = []
        if store.shop.revoked:
            flags.append("shop credentials revoked")
        if store.shop.outage:
            flags.append("shop down")
        if store.account.revoked:
            flags.append("wiredplus credentials revoked")
        if store.account.outage:
            flags.append("wiredplus down")
        state = f"  [{', '.join(flags)}]" if flags else ""
        lines.append(
            f"{name:<{width}}  {store.source:<11} {store.shop_order_count():>7} orders  "
            f"shop {shop_url}  wiredplus {fb.wiredplus_url(name)}{state}"
        )
    return "\n".join(lines)


__all__ = [
    "ID_BLOCK",
    "SOURCES",
    "STORE_NAME",
    "FleetSandbox",
    "FleetStore",
    "ForeignRecord",
    "StoreCounts",
    "StoreSpec",
    "check_store_name",
    "describe_fleet",
    "env_prefix",
    "secret_env_name",
    "secrets_env",
    "stores_toml",
]
