"""The store registry: what a store may declare, where its settings come from, and that a
secret is only ever a reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import load_settings
from sync.errors import ConfigError
from sync.registry import (
    environment_store,
    merge,
    parse_registry_file,
    parse_spec,
    resolve_name,
    store_settings,
)


def test_a_store_never_borrows_the_environment_stores_credentials_or_start_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPWIRED_API_KEY", "env-key")
    monkeypatch.setenv("SHOPWIRED_API_SECRET", "env-secret")
    monkeypatch.setenv("WIREDPLUS_API_USER", "env-user")
    monkeypatch.setenv("WIREDPLUS_API_KEY", "env-wp")
    monkeypatch.setenv("ORDERSYNC_START_DATE", "2020-01-01")
    monkeypatch.setenv("ORDERSYNC_SHOPWIRED_RATE", "1.5")  # a tunable: inherited
    monkeypatch.setenv("ACME_SECRET", "acme-secret")
    base = load_settings()
    spec = parse_spec("acme", {"shopwired_api_key": "acme-key",
                               "shopwired_api_secret_env": "ACME_SECRET"}, "file")
    acme = store_settings(base, spec)
    assert acme.store == "acme"
    assert acme.shopwired_api_key == "acme-key"
    assert acme.shopwired_api_secret is not None
    assert acme.shopwired_api_secret.get_secret_value() == "acme-secret"
    assert acme.wiredplus_api_user is None and acme.wiredplus_api_key is None
    assert acme.start_date is None
    assert acme.shopwired_rate == 1.5
    with pytest.raises(ConfigError, match="WIREDPLUS_API_USER"):
        acme.require_credentials()
    env = environment_store(base)
    assert env is not None and env.name == "shopwired"
    assert store_settings(base, env) is base
    assert resolve_name("default", [env, spec]) == "shopwired"


@pytest.mark.parametrize(("table", "message"), [
    ({"shopwired_api_secret": "hunter2"}, "is a secret"),
    ({"database_url": "sqlite://"}, "belongs to the deployment"),
    ({"no_such_setting": 1}, "unknown setting"),
    ({"wiredplus_api_key_env": ""}, "must name a variable"),
])
def test_a_bad_entry_is_refused_naming_the_store_and_never_echoing_a_secret(
    table: dict[str, object], message: str,
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_spec("acme", table, "file")
    assert "acme" in str(err.value) and "hunter2" not in str(err.value)


def test_a_bad_value_or_name_is_named() -> None:
    base = load_settings()
    with pytest.raises(ConfigError, match="store acme: shopwired_rate: "):
        store_settings(base, parse_spec("acme", {"shopwired_rate": -1}, "file"))
    for name in ("Acme", "default", "", "a" * 64):
        with pytest.raises(ConfigError, match="store name"):
            parse_spec(name, {}, "ledger")


def test_a_secret_file_is_read_each_time_the_store_is_built(tmp_path: Path) -> None:
    secret = tmp_path / "wp.key"
    secret.write_text("first\n", encoding="utf-8")
    spec = parse_spec("acme", {"wiredplus_api_key_file": str(secret)}, "ledger")
    base = load_settings()
    first = store_settings(base, spec).wiredplus_api_key
    assert first is not None and first.get_secret_value() == "first"
    secret.write_text("rotated", encoding="utf-8")
    second = store_settings(base, spec).wiredplus_api_key
    assert second is not None and second.get_secret_value() == "rotated"
    assert "rotated" not in spec.to_json() and str(secret) in spec.to_json()
    secret.unlink()
    with pytest.raises(ConfigError, match="wiredplus_api_key_file"):
        store_settings(base, spec)


def test_the_registry_file_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "stores.toml"
    path.write_text('[stores.acme]\nsource = "shopwired"\n\n[stores."b.eu"]\n'
                    'source = "elasticpath"\n', encoding="utf-8")
    specs = parse_registry_file(path)
    assert [(s.name, s.source) for s in specs] == [("acme", "shopwired"),
                                                   ("b.eu", "elasticpath")]
    with pytest.raises(ConfigError, match="declared twice"):
        merge(specs, [parse_spec("acme", {}, "ledger")])
    path.write_text("[other]\nx = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"only \[stores.NAME\]"):
        parse_registry_file(path)
    path.write_text("[stores.acme\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_registry_file(path)
    path.write_text('[stores.acme]\nsource = "shopwired"\n', encoding="utf-8")
    assert [s.name for s in parse_registry_file(path)] == ["acme"]  # fixed: seen again


def test_an_edit_of_the_registry_file_is_seen_at_the_next_read(tmp_path: Path) -> None:
    """The fleet reads the file every tick and parses it only when its text changed: an
    edit must still be seen at once, and a caller changing the list it got changes nothing."""
    path = tmp_path / "stores.toml"
    path.write_text('[stores.acme]\nsource = "shopwired"\n', encoding="utf-8")
    first = parse_registry_file(path)
    first.clear()
    assert [s.name for s in parse_registry_file(path)] == ["acme"]
    path.write_text('[stores.acme]\nsource = "shopwired"\n[stores.beta]\n'
                    'source = "elasticpath"\n', encoding="utf-8")
    assert [(s.name, s.source) for s in parse_registry_file(path)] == [
        ("acme", "shopwired"), ("beta", "elasticpath")]
