"""ordersync configuration: one ``Settings`` model, read from the environment and ``.env``.

Every secret may instead be given as ``NAME_FILE`` (a path whose content is the value), the
Docker-secrets convention. Bad or missing configuration becomes one :class:`ConfigError` whose
message names the variable — never a traceback, never the offending value (it may be a secret).

A blank value (``NAME=`` or only spaces, as in ``.env.example``) means *unset*: the default
applies. Numbers and durations have an allowed range, named in the error when a value is
outside it; ``DATABASE_URL``, ``REDIS_URL`` and ``ORDERSYNC_STATUS_MAP`` are checked when the
settings are loaded (URL shape; the status map file readable, UTF-8, TOML), so ``ordersync
check`` never calls a configuration valid that the daemon then refuses.

The environment variable names are part of the public interface; ``docs/configuration.md`` is
generated from this model (``ordersync config-docs``) and a test keeps the two in step.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync.errors import ConfigError

_DURATION = re.compile(
    r"^\s*([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE
)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
MIN_LEASE = timedelta(seconds=90)
"""The WiredPlus client waits at most 30 s for its rate budget, then 10 s to connect and 30 s to
read (``sync.httpclient.DEFAULT_TIMEOUT``): a lease shorter than that could expire mid-call."""


_DAY = 86400
#: Allowed range of each duration setting, in seconds (inclusive).
DURATION_RANGES: dict[str, tuple[float, float]] = {
    "first_sight_event_window": (0, 365 * _DAY),
    "window_overlap": (0, 7 * _DAY),
    "settle_delay": (0, _DAY),
    "refresh_horizon": (3600, 3650 * _DAY),
    "retry_base": (1, 3600),
    "lease": (MIN_LEASE.total_seconds(), _DAY),
    "webhook_replay_window": (60, 30 * _DAY),
    "audit_interval": (0, 30 * _DAY),
    "poller_lease": (10, 3600),
}


def _seconds_text(seconds: float) -> str:
    for unit, size in (("d", _DAY), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_duration(value: Any) -> Any:
    """Accept ``3600``, ``"90s"``, ``"15m"``, ``"24h"``, ``"7d"`` or ISO-8601 (``PT24H``).

    A number too large for any duration (``99999999999d``) is a ``ValueError``."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            unit = (m.group(2) or "s").lower()
            seconds = float(m.group(1)) * _UNIT_SECONDS[unit]
            if not math.isfinite(seconds) or abs(seconds) > 1000 * 365 * _DAY:
                raise ValueError("is far too large for a duration")
            return timedelta(seconds=seconds)
    return value


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _read_setting_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{name}_FILE points to a file that cannot be read ({exc.strerror or 'unreadable'})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}_FILE points to a file that is not UTF-8 text") from None


class _FileAwareEnvSource(EnvSettingsSource):
    """Environment source that also honours ``NAME_FILE`` for every setting; a blank value
    (of ``NAME`` or ``NAME_FILE``) counts as unset."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value, key, is_complex = super().get_field_value(field, field_name)
        if _blank(value):
            value = None
        if value is None and field.alias:
            path = os.environ.get(f"{field.alias}_FILE")
            if path is not None and path.strip():
                value = _read_setting_file(field.alias, path.strip()) or None
        return value, key, is_complex


class _BlankIsUnsetDotEnvSource(DotEnvSettingsSource):
    """``.env`` source where ``NAME=`` (blank) counts as unset, as in ``.env.example``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        value, key, is_complex = super().get_field_value(field, field_name)
        return (None if _blank(value) else value), key, is_complex


def _env(name: str, default: Any = ..., description: str = "", **kw: Any) -> Any:
    return Field(default, alias=name, description=description, **kw)


class Settings(BaseSettings):
    """Every knob of ordersync. The alias of each field is its environment variable."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,
    )

    source: Literal["shopwired", "elasticpath"] = _env(
        "ORDERSYNC_SOURCE",
        "shopwired",
        "Which shop platform this poller reads: `shopwired` or `elasticpath`. Run one poller "
        "per source; workers serve all of them.",
    )
    shopwired_base_url: str = _env(
        "SHOPWIRED_BASE_URL", "https://api.ecommerceapi.uk/v1", "ShopWired API base URL."
    )
    shopwired_api_key: str | None = _env(
        "SHOPWIRED_API_KEY", None, "ShopWired API key (Basic-auth user)."
    )
    shopwired_api_secret: SecretStr | None = _env(
        "SHOPWIRED_API_SECRET", None, "ShopWired API secret (Basic-auth password). Secret."
    )
    wiredplus_base_url: str = _env(
        "WIREDPLUS_BASE_URL", "https://api.wiredplus.com/v1", "WiredPlus API base URL."
    )
    wiredplus_api_user: str | None = _env(
        "WIREDPLUS_API_USER", None, "The WiredPlus API key's *name* (Basic-auth user)."
    )
    wiredplus_api_key: SecretStr | None = _env(
        "WIREDPLUS_API_KEY", None, "The WiredPlus API key (Basic-auth password). Secret."
    )
    elasticpath_base_url: str = _env(
        "ELASTICPATH_BASE_URL",
        "https://useast.api.elasticpath.com",
        "Elastic Path Commerce Cloud API host (a trailing /v2 is tolerated).",
    )
    elasticpath_client_id: str | None = _env(
        "ELASTICPATH_CLIENT_ID", None, "Elastic Path client-credentials client id."
    )
    elasticpath_client_secret: SecretStr | None = _env(
        "ELASTICPATH_CLIENT_SECRET", None, "Elastic Path client secret. Secret."
    )
    elasticpath_rate: float = _env(
        "ELASTICPATH_RATE",
        20.0,
        "Elastic Path calls per second (stores allow 25–100).",
        gt=0,
        le=10000,
        allow_inf_nan=False,
    )
    elasticpath_write_back_external_ref: bool = _env(
        "ELASTICPATH_WRITE_BACK_EXTERNAL_REF",
        False,
        "Store the WiredPlus order id in the Elastic Path order's `external_ref` "
        "(PUT /v2/orders/:id) after the first push.",
    )
    database_url: str = _env(
        "DATABASE_URL",
        "sqlite:///./ordersync.db",
        "SQLAlchemy URL of the ledger (SQLite or postgresql+psycopg://…).",
    )
    redis_url: str | None = _env(
        "REDIS_URL",
        None,
        "Celery broker. Unset = embedded mode: pushes run in-process, no broker needed.",
    )
    poll_interval: float = _env(
        "ORDERSYNC_POLL_INTERVAL",
        60.0,
        "Seconds between two passes of `ordersync run`.",
        ge=1,
        le=86400,
        allow_inf_nan=False,
    )
    currency: str = _env(
        "ORDERSYNC_CURRENCY", "GBP", "ISO-4217 currency of the shop (ShopWired has no field)."
    )
    start_date: datetime | None = _env(
        "ORDERSYNC_START_DATE",
        None,
        "Where the very first run starts reading (ISO date/time, UTC). Default: 30 days before "
        "the first pass, fixed then. Orders created earlier are never imported, whichever way "
        "they are found (`ordersync backfill --since` imports history on purpose).",
    )
    status_map: Path | None = _env(
        "ORDERSYNC_STATUS_MAP", None, "TOML file overriding the default status map."
    )
    first_sight_event_window: timedelta = _env(
        "ORDERSYNC_FIRST_SIGHT_EVENT_WINDOW",
        timedelta(hours=24),
        "An order seen for the first time gets events only if created within this window "
        "(e.g. `24h`, `90m`, seconds).",
    )
    store: str = _env(
        "ORDERSYNC_STORE",
        "shopwired",
        "Name of this store in the ledger; keys carry it so stores can share one database. "
        "Defaults to the source name (`shopwired` or `elasticpath`).",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$",
    )
    reference_prefix: str = _env(
        "ORDERSYNC_REFERENCE_PREFIX",
        "",
        "Prefix for `api_reference_id` / `event_reference` in WiredPlus (e.g. `shop1-`).",
        max_length=32,
    )
    window_overlap: timedelta = _env(
        "ORDERSYNC_WINDOW_OVERLAP",
        timedelta(minutes=10),
        "How far behind the watermark each pass re-reads (late-arriving orders).",
    )
    settle_delay: timedelta = _env(
        "ORDERSYNC_SETTLE_DELAY",
        timedelta(seconds=30),
        "New-order windows end this long before the pass started.",
    )
    # -- re-reading open orders (sync.domain.refresh_plan) ------------------------------
    refresh_share: float = _env(
        "ORDERSYNC_REFRESH_SHARE",
        0.30,
        "Share of the ShopWired rate polling may use (0–1), spread evenly: new-order scans and "
        "webhook refreshes first, re-reads of open orders get the rest. It sets the staleness "
        "bound: with 2 calls/s and 30 %, 2,000 open orders are all re-read within about 71 s. "
        "0 = never re-read open orders by polling.",
        ge=0,
        le=1,
    )
    refresh_share_with_webhooks: float = _env(
        "ORDERSYNC_REFRESH_SHARE_WITH_WEBHOOKS",
        0.05,
        "The share while webhooks are healthy (one received within the last hour): polling "
        "is then only the safety net.",
        ge=0,
        le=1,
    )
    freshness_targets: str = _env(
        "ORDERSYNC_FRESHNESS_TARGETS",
        "",
        "Overrides of how soon an open order should be re-read, by WiredPlus status: "
        "`status=duration` items, e.g. `shipped=1h,completed=6h,default=20m` (defaults: "
        "10m awaiting-payment/pending/processing/awaiting-fulfillment, 30m under-review and "
        "unknown, 1h awaiting-pickup/partially-shipped, 2h shipped/disputed, 6h "
        "partially-refunded, 12h completed). Statuses whose target is shorter than the "
        "staleness bound get the extra reads; no order waits longer than the bound.",
    )
    refresh_min_interval: timedelta = _env(
        "ORDERSYNC_REFRESH_MIN_INTERVAL",
        timedelta(seconds=60),
        "No open order is re-read more often than this (one poll interval by default): a "
        "small shop, or a store whose `shopwired_rate` is raised, then spends less than its "
        "share instead of re-reading the same orders over and over (0 = the share alone "
        "decides). With 2 calls/s and 30 %, it only binds below about 1,700 open orders.",
    )
    staleness_alert: timedelta = _env(
        "ORDERSYNC_STALENESS_ALERT",
        timedelta(hours=1),
        "Warn (log `refresh.bound_exceeds_alert`, `ordersync status`) when the staleness bound "
        "is longer than this: the shop has outgrown polling; set up webhooks.",
    )

    @field_validator("freshness_targets")
    @classmethod
    def _freshness_targets(cls, v: str) -> str:
        from sync.domain.freshness import parse_targets

        parse_targets(v)  # ValueError names the bad item
        return v

    # -- end of re-reading open orders ---------------------------------------------------
    refresh_horizon: timedelta = _env(
        "ORDERSYNC_REFRESH_HORIZON",
        timedelta(days=90),
        "Open orders older than this are no longer refreshed by polling.",
    )
    shopwired_bucket_size: int = _env(
        "ORDERSYNC_SHOPWIRED_BUCKET",
        36,
        "Client-side leaky bucket depth for ShopWired (server allows 40).",
        ge=1,
        le=40,
    )
    shopwired_rate: float = _env(
        "ORDERSYNC_SHOPWIRED_RATE",
        2.0,
        "ShopWired calls per second (server drains 2/s).",
        gt=0,
        le=10000,
        allow_inf_nan=False,
    )
    wiredplus_hourly_limit: int = _env(
        "ORDERSYNC_WIREDPLUS_HOURLY_LIMIT",
        5000,
        "WiredPlus calls per hour until GetAccountInfo tells the real budget.",
        ge=1,
        le=1_000_000_000,
    )
    # -- issue #17: WiredPlus BulkOrderUpdate -----------------------------------------------
    wiredplus_bulk: bool = _env(
        "ORDERSYNC_WIREDPLUS_BULK",
        True,
        "Send orders needing UpdateOrder in one WiredPlus BulkOrderUpdate (up to "
        "max_update_rows, 50, per request and per budget unit); falls back to UpdateOrder "
        "by itself when the account refuses it. false = UpdateOrder only.",
    )
    push_concurrency: int = _env(
        "ORDERSYNC_PUSH_CONCURRENCY",
        12,
        "Embedded mode: batches of orders pushed to WiredPlus at once, so its latency overlaps "
        "(each order is still pushed by one at a time, its events after it).",
        ge=1,
        le=32,
    )
    queue_per_store: int = _env(
        "ORDERSYNC_QUEUE_PER_STORE",
        1000,
        "Broker mode: at most this many of one store's orders wait in the queue for a worker; "
        "the rest wait in the ledger and follow as the workers take the store's earlier ones. "
        "A store backfilling 100,000 orders then holds at most this many in the queue, and "
        "its later batches go after those of stores with nothing queued (broker priority by "
        "the store's own queue: a new store's first orders and single changes go first).",
        ge=50,
        le=1_000_000,
    )
    max_attempts: int = _env(
        "ORDERSYNC_MAX_ATTEMPTS",
        8,
        "Delivery attempts before an order/event is dead-lettered (~27 h with the default "
        "schedule).",
        ge=1,
        le=1000,
    )
    retry_base: timedelta = _env(
        "ORDERSYNC_RETRY_BASE",
        timedelta(seconds=5),
        "First retry delay; later ones follow the Svix-like schedule scaled from it.",
    )
    lease: timedelta = _env(
        "ORDERSYNC_LEASE",
        timedelta(minutes=2),
        "How long a worker holds an order while pushing it; expired leases are taken over. "
        "At least 90s: longer than the worst wait before a worker's UpdateOrder reaches "
        "WiredPlus (30s client-side rate wait + 10s connect + 30s read), so a slow push "
        "never lands after a newer one taken over from it.",
    )
    stores_file: Path | None = _env(
        "ORDERSYNC_STORES",
        None,
        "TOML registry of the stores this deployment serves (`[stores.NAME]` tables; see "
        "docs/STORES.md). Stores may also be added with `ordersync stores add`; the store "
        "configured by the variables above is served too, when its credentials are set.",
    )
    poller_lease: timedelta = _env(
        "ORDERSYNC_POLLER_LEASE",
        timedelta(seconds=30),
        "How long a poller process holds a store without renewing; when a poller dies, "
        "another takes its stores within this period. Renewed every third of it.",
    )
    shopwired_webhook_secret: SecretStr | None = _env(
        "SHOPWIRED_WEBHOOK_SECRET",
        None,
        "Secret ShopWired signs webhooks with (Your account > API & webhooks). Unset = no "
        "webhook receiver; polling alone notices changes. Secret.",
    )
    elasticpath_webhook_secret: SecretStr | None = _env(
        "ELASTICPATH_WEBHOOK_SECRET",
        None,
        "The `secret_key` configured on the Elastic Path webhook integration; Elastic Path "
        "sends it as the `X-MOLTIN-SECRET-KEY` header to `POST /webhooks/elasticpath`. Unset = "
        "no receiver for Elastic Path; the `updated_at` poll alone notices changes. Secret.",
    )
    webhook_host: str = _env(
        "ORDERSYNC_WEBHOOK_HOST", "0.0.0.0", "Address `ordersync webhook` listens on."
    )
    webhook_port: int = _env(
        "ORDERSYNC_WEBHOOK_PORT", 8080, "Port `ordersync webhook` listens on.", ge=1, le=65535
    )
    webhook_replay_window: timedelta = _env(
        "ORDERSYNC_WEBHOOK_REPLAY_WINDOW",
        timedelta(hours=26),
        "Webhook events older than this are acknowledged and ignored (ShopWired retries for "
        "24 h).",
    )
    webhook_max_body: int = _env(
        "ORDERSYNC_WEBHOOK_MAX_BODY",
        262144,
        "Largest webhook body accepted (bytes).",
        ge=1024,
        le=64 * 1024 * 1024,
    )
    audit_interval: timedelta = _env(
        "ORDERSYNC_AUDIT_INTERVAL",
        timedelta(hours=6),
        "How often the daemon compares the shop's order counts with the ledger (0 = never); "
        "missing orders are queued for the next pass.",
    )
    deleted_policy: Literal["close", "ignore"] = _env(
        "ORDERSYNC_DELETED_POLICY",
        "close",
        "An order deleted in the shop: `close` keeps it in WiredPlus with status `closed` "
        "(no event); `ignore` leaves WiredPlus untouched. Either way the ledger marks it.",
    )
    metrics_port: int = _env(
        "ORDERSYNC_METRICS_PORT",
        9108,
        "Port of the Prometheus `/metrics` endpoint of `run` and `worker` (0 = off).",
        ge=0,
        le=65535,
    )
    log_format: Literal["auto", "json", "console"] = _env(
        "ORDERSYNC_LOG_FORMAT", "auto", "`json`, `console`, or `auto` (console on a TTY)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = _env(
        "ORDERSYNC_LOG_LEVEL", "info", "Minimum log level."
    )

    # -- data fidelity (issue #13): what the WiredPlus fields carry --------------------------
    wiredplus_custom_fields: str = _env(
        "ORDERSYNC_WIREDPLUS_CUSTOM_FIELDS",
        "",
        "Custom fields to send, as `name` or `name=WiredPlus field`, comma-separated; names: "
        "tracking_url delivery_date transaction_id variations line_comments company "
        "refund_amount refund_reason. WiredPlus accepts only fields pre-defined in the account "
        "(Settings > Custom fields), so none are sent by default; an event WiredPlus rejects "
        "for its custom fields is sent again without them.",
    )
    payment_types: str = _env(
        "ORDERSYNC_PAYMENT_TYPES",
        "",
        "Extra payment method → WiredPlus `payment_type` entries, `Method=type` "
        "comma-separated (e.g. `Klarna=finance`); they override the built-in table "
        "(Bank Transfer=bank-transfer, Admin Order=manual, …; anything else `online`).",
    )

    @field_validator("wiredplus_custom_fields", "payment_types")
    @classmethod
    def _name_map(cls, v: str, info: Any) -> str:
        from sync.domain.mapping import parse_custom_fields, parse_payment_types

        parse = parse_custom_fields if info.field_name == "wiredplus_custom_fields" else (
            parse_payment_types
        )
        parse(v)  # ValueError says what is wrong
        return v

    @field_validator(
        "first_sight_event_window",
        "window_overlap",
        "settle_delay",
        "refresh_horizon",
        "retry_base",
        "lease",
        "webhook_replay_window",
        "audit_interval",
        "refresh_min_interval",
        "staleness_alert",
        mode="before",
    )
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v)

    @field_validator("lease")
    @classmethod
    def _lease_outlives_a_call(cls, v: timedelta) -> timedelta:
        if v < MIN_LEASE:
            raise ValueError(
                f"must be at least {int(MIN_LEASE.total_seconds())}s: a shorter lease can expire "
                "while a worker's UpdateOrder is still on its way, and that older payload could "
                "then overwrite a newer one in WiredPlus"
            )
        return v

    @field_validator(*DURATION_RANGES)
    @classmethod
    def _duration_in_range(cls, v: timedelta, info: ValidationInfo) -> timedelta:
        low, high = DURATION_RANGES[str(info.field_name)]
        if not low <= v.total_seconds() <= high:
            raise ValueError(
                f"must be between {_seconds_text(low)} and {_seconds_text(high)}"
            )
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        try:
            url = make_url(v.strip())
        except (ArgumentError, ValueError):
            url = None
        if url is None or url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                "must be a SQLAlchemy URL such as sqlite:///./ordersync.db or "
                "postgresql+psycopg://user:password@host:5432/ordersync"
            )
        return v.strip()

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        try:
            parts = urlsplit(v)
            ok = (parts.scheme in ("redis", "rediss") and bool(parts.hostname)
                  and (parts.port is None or parts.port > 0)) or (
                parts.scheme == "unix" and bool(parts.path)
            )
        except ValueError:  # e.g. a port that is not a number
            ok = False
        if not ok:
            raise ValueError(
                "must be a Redis URL such as redis://localhost:6379/0 (or unset for embedded "
                "mode)"
            )
        return v

    @field_validator("status_map", mode="before")
    @classmethod
    def _status_map_blank(cls, v: Any) -> Any:
        return None if _blank(v) else v

    @field_validator("status_map")
    @classmethod
    def _status_map_readable(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        try:
            text = v.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read that file ({exc.strerror or 'unreadable'})") from None
        except UnicodeDecodeError:
            raise ValueError("that file is not UTF-8 text") from None
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"that file is not valid TOML ({exc})") from None
        return v

    @field_validator("start_date", mode="before")
    @classmethod
    def _start_date(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip() == "":
            return None
        if isinstance(v, date) and not isinstance(v, datetime):
            return datetime(v.year, v.month, v.day, tzinfo=UTC)
        if isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v.strip()):
            return datetime.fromisoformat(v.strip()).replace(tzinfo=UTC)
        return v

    @field_validator("start_date")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        latest = datetime.now(UTC) + timedelta(days=1)
        if not datetime(2000, 1, 1, tzinfo=UTC) <= v <= latest:
            raise ValueError(
                "must be between 2000-01-01 and today: no order is created in the future, so "
                "a later start would never import anything"
            )
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        v = v.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", v):
            raise ValueError("must be a 3-letter ISO-4217 code such as GBP")
        return v

    @model_validator(mode="after")
    def _store_follows_source(self) -> Settings:
        if "store" not in self.model_fields_set and self.source != "shopwired":
            object.__setattr__(self, "store", self.source)
        return self

    @field_validator("shopwired_base_url", "wiredplus_base_url", "elasticpath_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _FileAwareEnvSource(settings_cls),
            _BlankIsUnsetDotEnvSource(settings_cls),
        )

    # -- derived -------------------------------------------------------------------------
    def effective_start(self, now: datetime) -> datetime:
        """Where the first pass starts when the ledger has no watermark yet."""
        return self.start_date or (now - timedelta(days=30))

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: pushes run in the calling process."""
        return self.redis_url is None

    def webhook_secret(self) -> tuple[str, SecretStr | None]:
        """``(variable name, value)`` of the webhook secret for the configured source:
        ``SHOPWIRED_WEBHOOK_SECRET`` or ``ELASTICPATH_WEBHOOK_SECRET``. The value is ``None``
        when unset or blank (then that source has no webhook receiver)."""
        if self.source == "elasticpath":
            name, value = "ELASTICPATH_WEBHOOK_SECRET", self.elasticpath_webhook_secret
        else:
            name, value = "SHOPWIRED_WEBHOOK_SECRET", self.shopwired_webhook_secret
        if value is not None and not value.get_secret_value().strip():
            value = None
        return name, value

    def require_credentials(self, *, source: bool = True) -> None:
        """Raise :class:`ConfigError` naming every missing credential: WiredPlus always, and
        the configured source's unless ``source`` is False (workers only push)."""
        needed: list[tuple[str, Any]] = [
            ("WIREDPLUS_API_USER", self.wiredplus_api_user),
            ("WIREDPLUS_API_KEY", self.wiredplus_api_key),
        ]
        if source and self.source == "shopwired":
            needed = [
                ("SHOPWIRED_API_KEY", self.shopwired_api_key),
                ("SHOPWIRED_API_SECRET", self.shopwired_api_secret),
                *needed,
            ]
        elif source:
            needed = [
                ("ELASTICPATH_CLIENT_ID", self.elasticpath_client_id),
                ("ELASTICPATH_CLIENT_SECRET", self.elasticpath_client_secret),
                *needed,
            ]
        missing = [
            name
            for name, value in needed
            if value is None or (isinstance(value, str) and not value.strip())
            or (isinstance(value, SecretStr) and not value.get_secret_value().strip())
        ]
        if missing:
            raise ConfigError(
                "missing configuration: "
                + ", ".join(missing)
                + " (set them in the environment, a .env file, or NAME_FILE)"
            )


def env_names() -> list[str]:
    """Every environment variable name ``Settings`` reads (without ``_FILE`` variants)."""
    return [f.alias for f in Settings.model_fields.values() if f.alias]


def load_settings(**overrides: Any) -> Settings:
    """Build settings or raise one :class:`ConfigError` naming the bad variables.

    The message never includes the rejected value: it may be a secret.
    """
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        # A source failed (e.g. an unreadable NAME_FILE): its ConfigError is the cause.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):
            raise ConfigError(cause.message) from None
        raise ConfigError("invalid configuration: the environment could not be read") from None
    except ConfigError as exc:
        raise ConfigError(exc.message) from None
    except ValidationError as exc:
        fields = Settings.model_fields
        aliases = {name: f.alias or name for name, f in fields.items()}
        by_alias = {alias: name for name, alias in aliases.items()}
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = err.get("loc") or ("?",)
            field = by_alias.get(str(loc[0]), str(loc[0]))
            name = aliases.get(field, field)
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            allowed = _allowed_range(fields[field]) if field in fields else None
            if allowed and err.get("type") in _RANGE_ERRORS:
                msg = f"{msg} (allowed: {allowed})"
            if field in DURATION_RANGES and str(err.get("type", "")).startswith("time_delta"):
                low, high = DURATION_RANGES[field]
                msg = (f"is not a duration such as 90s, 15m, 24h or 7d (allowed: "
                       f"{_seconds_text(low)} to {_seconds_text(high)})")
            problems.append(f"{name}: {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


_RANGE_ERRORS = frozenset({
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
    "float_parsing", "int_parsing", "int_from_float",
})


def _allowed_range(field: FieldInfo) -> str | None:
    """``"1 to 86400"`` from a field's ``ge``/``gt``/``le``/``lt`` constraints, or None."""
    low = high = None
    for meta in field.metadata:
        for attr, op in (("ge", ""), ("gt", "more than "), ("le", ""), ("lt", "less than ")):
            bound = getattr(meta, attr, None)
            if bound is None:
                continue
            if attr in ("ge", "gt"):
                low = f"{op}{bound:g}" if isinstance(bound, float) else f"{op}{bound}"
            else:
                high = f"{op}{bound:g}" if isinstance(bound, float) else f"{op}{bound}"
    if low and high:
        return f"{low} to {high}"
    if low:
        return f"at least {low}"
    return f"at most {high}" if high else None
