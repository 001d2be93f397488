"""The store registry: which stores one deployment serves, and each store's settings.

Contract
--------
A deployment serves the stores declared in three places, merged by name:

* **the environment store**: the single-store configuration (``SHOPWIRED_API_KEY`` …,
  ``ORDERSYNC_STORE``) keeps working unchanged. It is served when its source's credentials
  are set, under its ledger name (``ORDERSYNC_STORE``, default the source name, so an existing
  ledger keeps its rows); ``default`` is accepted as another name for it on the command line;
* **the registry file** named by ``ORDERSYNC_STORES`` (TOML, one ``[stores.NAME]`` table each);
* **stores added with** ``ordersync stores add`` (the ledger table ``fleet_stores``).

A name declared twice is a :class:`~sync.errors.ConfigError` naming both places.

A store's table holds :class:`~config.settings.Settings` field names (lowercase, e.g.
``shopwired_api_key``, ``start_date``, ``status_map``, ``shopwired_rate``). Secrets (the
fields typed ``SecretStr``: API secrets and keys, webhook secrets) are never written in the
table or the ledger: a store names where to read them, ``<field>_env = "VAR"`` or
``<field>_file = "/path"``; a plain value for a secret field is refused. References are
resolved each time the store's settings are built (a rotated ``_file`` secret is read again
when the poller retries the store).

How a store's settings are composed (:func:`store_settings`):

* :data:`DEPLOYMENT_FIELDS` (database, broker, metrics, logs, webhook listener) belong to
  the deployment: a store may not set them;
* :data:`STORE_FIELDS` (identity, credentials, mapping: status map, start date, first-sight
  window, currency, reference prefix, …) come from the store's table or the built-in default —
  **never** from the environment, so one store can never borrow another's credentials or
  start date;
* every other field (rates and limits, intervals, retry policy, refresh shares) is the
  deployment's value (environment) unless the store's table overrides it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from config.settings import Settings, load_settings
from sync.errors import ConfigError

Origin = Literal["environment", "file", "ledger"]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DEFAULT_ALIAS = "default"
"""``--store default`` names the environment store, whatever its ledger name."""

DEPLOYMENT_FIELDS = frozenset({
    "database_url", "redis_url", "metrics_port", "log_format", "log_level", "webhook_host",
    "webhook_port", "store", "stores_file", "poller_lease",
})
STORE_FIELDS = frozenset({
    "source", "shopwired_api_key", "shopwired_api_secret", "wiredplus_api_user",
    "wiredplus_api_key", "elasticpath_client_id", "elasticpath_client_secret",
    "shopwired_webhook_secret", "elasticpath_webhook_secret", "status_map", "start_date",
    "first_sight_event_window", "currency", "reference_prefix", "wiredplus_custom_fields",
    "payment_types", "elasticpath_write_back_external_ref",
})
SECRET_FIELDS = frozenset(
    name for name, f in Settings.model_fields.items()
    if f.annotation is not None and SecretStr in getattr(f.annotation, "__args__", (f.annotation,))
)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret is read from: an environment variable or a file (never its value)."""

    kind: Literal["env", "file"]
    where: str

    def resolve(self, store: str, field_name: str) -> str | None:
        """The secret's value, or None when the variable is unset (blank counts as unset).
        An unreadable file is a ConfigError naming the store and field, never the value."""
        if self.kind == "env":
            value = os.environ.get(self.where)
            return value.strip() or None if value is not None else None
        try:
            return Path(self.where).read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not readable UTF-8 text"
            raise ConfigError(
                f"store {store}: {field_name}_file {self.where} cannot be read ({reason})"
            ) from None

    def describe(self) -> str:
        return f"${self.where}" if self.kind == "env" else f"file {self.where}"


@dataclass(frozen=True)
class StoreSpec:
    """One store as declared: its name, where it was declared, the settings it overrides
    (plain values, as written) and references to its secrets."""

    name: str
    origin: Origin
    overrides: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.overrides.get("source", "shopwired"))

    def to_json(self) -> str:
        """The spec as stored in ``fleet_stores`` (references, never values)."""
        body: dict[str, Any] = {k: _jsonable(v) for k, v in self.overrides.items()}
        for name, ref in self.secrets.items():
            body[f"{name}_{ref.kind}"] = ref.where
        return json.dumps(body, sort_keys=True)

    def describe(self) -> dict[str, str]:
        """Every declared setting, secrets shown as their references — safe to print."""
        shown = {k: str(_jsonable(v)) for k, v in self.overrides.items()}
        shown.update({k: ref.describe() for k, ref in self.secrets.items()})
        return dict(sorted(shown.items()))


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def parse_spec(name: str, table: Mapping[str, Any], origin: Origin) -> StoreSpec:
    """A store's table (from the registry file, the ledger or ``stores add``) as a spec.
    Raises ConfigError naming the store and the key for an unknown or forbidden key, a secret
    given as a plain value, or a bad name; values are checked by :func:`store_settings`."""
    if not NAME_PATTERN.match(name) or name == DEFAULT_ALIAS:
        raise ConfigError(
            f"store name {name!r}: use 1-63 of a-z 0-9 . _ - (starting with a letter or digit)"
            + ("; 'default' names the environment store" if name == DEFAULT_ALIAS else "")
        )
    overrides: dict[str, Any] = {}
    secrets: dict[str, SecretRef] = {}
    fields = Settings.model_fields
    for key, value in table.items():
        key = str(key).lower()
        base, _, kind = key.rpartition("_")
        if kind in ("env", "file") and base in SECRET_FIELDS:
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"store {name}: {key} must name a variable or a file")
            secrets[base] = SecretRef(kind, value.strip())  # type: ignore[arg-type]
            continue
        if key in SECRET_FIELDS:
            raise ConfigError(
                f"store {name}: {key} is a secret; name where to read it with {key}_env "
                f"(an environment variable) or {key}_file (a file), never its value"
            )
        if key in DEPLOYMENT_FIELDS:
            raise ConfigError(
                f"store {name}: {key} belongs to the deployment (set "
                f"{fields[key].alias} once for all stores)"
            )
        if key not in fields:
            raise ConfigError(f"store {name}: unknown setting {key!r}")
        overrides[key] = value
    return StoreSpec(name=name, origin=origin, overrides=overrides, secrets=secrets)


def parse_registry_file(path: Path) -> list[StoreSpec]:
    """The stores of an ``ORDERSYNC_STORES`` file (``[stores.NAME]`` tables). The file is
    read on every call (an edit is seen at the next look); its text is parsed again only
    when it changed: the fleet looks every registry tick, and parsing a 50-store file in
    pure-Python TOML took a tenth of a busy poller's CPU."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"ORDERSYNC_STORES: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"ORDERSYNC_STORES: {path} is not valid TOML ({exc})") from None
    return list(_parse_registry_text(str(path), text))


@functools.lru_cache(maxsize=8)
def _parse_registry_text(path: str, text: str) -> tuple[StoreSpec, ...]:
    """The stores declared by ``text`` (the file ``path``'s content); errors are raised,
    never cached. Specs are immutable, so one parse serves every caller."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"ORDERSYNC_STORES: {path} is not valid TOML ({exc})") from None
    stores = data.get("stores", {})
    unknown = sorted(set(data) - {"stores"})
    if unknown or not isinstance(stores, dict):
        raise ConfigError(f"ORDERSYNC_STORES: {path}: only [stores.NAME] tables are allowed"
                          + (f" (found {', '.join(unknown)})" if unknown else ""))
    specs = []
    for name, table in stores.items():
        if not isinstance(table, dict):
            raise ConfigError(f"ORDERSYNC_STORES: stores.{name} must be a table")
        specs.append(parse_spec(name, table, "file"))
    return tuple(specs)


def environment_store(base: Settings) -> StoreSpec | None:
    """The single-store configuration as a store, when its source's credentials are set."""
    if base.source == "shopwired":
        present = base.shopwired_api_key is not None or base.shopwired_api_secret is not None
    else:
        present = (base.elasticpath_client_id is not None
                   or base.elasticpath_client_secret is not None)
    return StoreSpec(name=base.store, origin="environment") if present else None


def merge(*groups: Iterable[StoreSpec]) -> list[StoreSpec]:
    """All stores by name; a name declared twice is a ConfigError naming both places."""
    seen: dict[str, StoreSpec] = {}
    for group in groups:
        for spec in group:
            if spec.name in seen:
                raise ConfigError(
                    f"store {spec.name} is declared twice ({seen[spec.name].origin} and "
                    f"{spec.origin}); remove one"
                )
            seen[spec.name] = spec
    return sorted(seen.values(), key=lambda s: s.name)


def store_settings(base: Settings, spec: StoreSpec) -> Settings:
    """The complete settings of one store (see the module docstring for what comes from
    where). The environment store's settings are ``base`` itself. Raises ConfigError naming
    the store for a value its settings reject."""
    if spec.origin == "environment":
        return base
    values: dict[str, Any] = {}
    for name, f in Settings.model_fields.items():
        if name in STORE_FIELDS:
            values[name] = f.get_default(call_default_factory=True)
        else:
            values[name] = getattr(base, name)
    values["store"] = spec.name
    values.update(spec.overrides)
    for name, ref in spec.secrets.items():
        values[name] = ref.resolve(spec.name, name)
    try:
        return load_settings(**values)
    except ConfigError as exc:
        message = exc.message.replace("invalid configuration: ", "")
        for name, f in sorted(Settings.model_fields.items(),
                              key=lambda item: -len(item[1].alias or "")):
            if f.alias:  # name the key as the store's entry spells it
                message = message.replace(f"{f.alias}:", f"{name}:")
        raise ConfigError(f"store {spec.name}: {message}") from None


def resolve_name(name: str, specs: Iterable[StoreSpec]) -> str:
    """A store name as typed on the command line: ``default`` is the environment store."""
    if name == DEFAULT_ALIAS:
        for spec in specs:
            if spec.origin == "environment":
                return spec.name
    return name
