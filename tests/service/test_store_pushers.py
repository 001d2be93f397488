"""A worker pushes each store's orders with that store's WiredPlus account, follows a changed
registry entry, and refuses a store it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import load_settings
from sync.clock import FakeClock
from sync.errors import ConfigError
from sync.ledger.store import Ledger
from sync.sandbox.fleet import FleetSandbox, secrets_env, stores_toml
from sync.service.runtime import StorePushers


def test_each_store_is_pushed_with_its_own_account_and_a_changed_entry_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FleetSandbox(["acme", "bravo"], orders=5, seed=3) as fb:
        registry = tmp_path / "stores.toml"
        registry.write_text(stores_toml(fb), encoding="utf-8")
        for k, v in secrets_env(fb).items():
            monkeypatch.setenv(k, v)
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        Ledger(url).create_schema()
        clock = FakeClock()
        pushers = StorePushers(load_settings(database_url=url, stores_file=registry),
                               clock=clock)
        try:
            acme, bravo = pushers.for_store("acme"), pushers.for_store("bravo")
            acme.sink.account_info()  # type: ignore[attr-defined]
            assert sum(fb.account("acme").calls.values()) == 1
            assert sum(fb.account("bravo").calls.values()) == 0
            bravo.sink.account_info()  # type: ignore[attr-defined]
            assert sum(fb.account("bravo").calls.values()) == 1
            assert pushers.for_store("acme") is acme
            with pytest.raises(ConfigError, match="no store named 'nope'"):
                pushers.for_store("nope")
            # acme moves to bravo's WiredPlus URL by mistake, then back: followed both ways
            text = registry.read_text(encoding="utf-8")
            registry.write_text(text.replace(fb.wiredplus_url("acme"),
                                             fb.wiredplus_url("acme") + "/"), encoding="utf-8")
            assert pushers.for_store("acme") is acme  # not re-read before the recheck
            clock.advance(31)
            assert pushers.for_store("acme") is not acme
        finally:
            pushers.close()
