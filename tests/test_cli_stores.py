"""`ordersync stores …` and the fleet view of `status`, `health`, `show`, `dlq`: what an
agency running many merchants types, run as the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.sandbox.fleet import FleetSandbox, secret_env_name, secrets_env, stores_toml
from sync.service.demo_fleet import added_store_table

BIN = Path(sys.executable).with_name("ordersync")


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetSandbox]:
    with FleetSandbox(["acme", "bravo"], orders=30, seed=5) as fb:
        fb.add_store("delta", orders=20)
        yield fb


def _env(fb: FleetSandbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    registry = tmp_path / "stores.toml"
    if not registry.exists():
        text = stores_toml(fb)
        # delta is added with `stores add`, not declared in the file
        registry.write_text(text.split("[stores.delta]")[0], encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPWIRED_", "WIREDPLUS_", "ORDERSYNC_", "ELASTICPATH_"))
           and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(secrets_env(fb))
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}", ORDERSYNC_STORES=str(registry),
               ORDERSYNC_LOG_FORMAT="json", ORDERSYNC_METRICS_PORT="0", **extra)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def test_stores_can_be_added_listed_shown_paused_resumed_and_removed(fleet, tmp_path) -> None:
    env = _env(fleet, tmp_path)
    table = added_store_table(fleet, "delta")
    args = ["stores", "add", "delta"]
    for key, value in table.items():
        if key.endswith("_env"):
            args += ["--secret-env", f"{key.removesuffix('_env')}={value}"]
        elif key != "source":
            args += ["--set", f"{key}={value}"]
    added = _cli(env, *args)
    assert added.returncode == 0, added.stderr
    assert "added" in added.stdout
    again = _cli(env, *args)
    assert again.returncode == 2 and "exists already" in (again.stdout + again.stderr)

    listed = json.loads(_cli(env, "stores", "list", "--json").stdout)["stores"]
    assert [(r["store"], r["declared_in"]) for r in listed] == [
        ("acme", "file"), ("bravo", "file"), ("delta", "ledger")]

    shown = _cli(env, "stores", "show", "delta")
    assert shown.returncode == 0
    secret = secrets_env(fleet)[secret_env_name("delta", "wiredplus_api_key")]
    assert secret not in shown.stdout  # a reference, never the value
    assert f"${secret_env_name('delta', 'wiredplus_api_key')}" in shown.stdout

    assert _cli(env, "stores", "pause", "bravo", "--reason", "merchant on holiday"
                ).returncode == 0
    rows = {r["store"]: r for r in json.loads(_cli(env, "status", "--json").stdout)["stores"]}
    assert rows["bravo"]["paused"] and rows["bravo"]["paused_reason"] == "merchant on holiday"
    assert "merchant on holiday" in _cli(env, "status").stdout
    assert _cli(env, "stores", "resume", "bravo").returncode == 0
    assert not json.loads(_cli(env, "stores", "list", "--json").stdout)["stores"][1]["paused"]

    refused = _cli(env, "stores", "remove", "acme")
    assert refused.returncode == 1 and "stores.toml" in refused.stdout + refused.stderr
    assert _cli(env, "stores", "remove", "delta").returncode == 0
    assert [r["store"] for r in json.loads(_cli(env, "stores", "list", "--json").stdout)[
        "stores"]] == ["acme", "bravo"]


def test_a_secret_written_in_plain_text_is_refused(fleet, tmp_path) -> None:
    env = _env(fleet, tmp_path)
    result = _cli(env, "stores", "add", "echo", "--set", "shopwired_api_secret=hunter2")
    assert result.returncode == 2
    text = result.stdout + result.stderr
    assert "is a secret" in text and "hunter2" not in text


def test_poll_status_show_and_dlq_work_per_store(fleet, tmp_path) -> None:
    env = _env(fleet, tmp_path)
    for store in ("acme", "bravo"):
        polled = _cli(env, "poll", "--once", "--store", store)
        assert polled.returncode == 0, polled.stderr
    assert fleet.counts()["acme"].orders == fleet.counts()["acme"].shop_orders
    rows = {r["store"]: r for r in json.loads(_cli(env, "status", "--json").stdout)["stores"]}
    assert rows["acme"]["orders"]["synced"] == fleet.counts()["acme"].shop_orders
    detail = json.loads(_cli(env, "status", "--json", "--store", "bravo").stdout)
    assert detail["store"] == "bravo" and detail["orders"]["synced"] == 30
    order_id = str(next(iter(fleet.shop("acme").orders)))
    assert _cli(env, "show", order_id, "--store", "acme").returncode == 0
    assert _cli(env, "show", order_id, "--store", "bravo").returncode == 1  # not that store's
    assert _cli(env, "dlq", "list", "--store", "acme").returncode == 0
    unknown = _cli(env, "status", "--store", "nope")
    assert unknown.returncode == 2 and "acme, bravo" in unknown.stdout + unknown.stderr
    assert _cli(env, "health").returncode == 0
