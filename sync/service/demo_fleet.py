"""``ordersync demo --stores N`` and ``ordersync sandbox --stores N``: many stores, one
deployment, against the multi-shop sandbox (:class:`~sync.sandbox.fleet.FleetSandbox`).

The demo writes the registry file and the secrets' environment the sandbox describes, runs
the real fleet (:func:`~sync.service.runtime.build_fleet`, embedded mode, SQLite in
``demo-data/``) on the product's default settings until every store's orders are in its own
WiredPlus account, adds one more store with ``stores add``'s code path while it runs, and
prints one line per store. It exits 0 when every order is in the right account exactly once
and no account holds another store's order.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from config.settings import load_settings
from sync.registry import parse_spec
from sync.sandbox.fleet import (
    FleetSandbox,
    describe_fleet,
    secret_env_name,
    secrets_env,
    stores_toml,
)


def store_names(count: int) -> list[str]:
    return [f"shop{i:02d}" for i in range(1, count + 1)]


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def added_store_table(fb: FleetSandbox, name: str) -> dict[str, str]:
    """The registry entry ``ordersync stores add`` would record for a sandbox store."""
    key, _ = fb.shopwired_credentials(name)
    user, _ = fb.wiredplus_credentials(name)
    return {
        "source": "shopwired",
        "shopwired_base_url": fb.shopwired_url(name), "shopwired_api_key": key,
        "shopwired_api_secret_env": secret_env_name(name, "shopwired_api_secret"),
        "wiredplus_base_url": fb.wiredplus_url(name), "wiredplus_api_user": user,
        "wiredplus_api_key_env": secret_env_name(name, "wiredplus_api_key"),
    }


def run_fleet_demo(*, stores: int = 3, orders: int = 200, seed: int = 7,
                   console: Console | None = None, data_dir: Path = Path("demo-data"),
                   timeout: float = 300.0) -> int:
    """See the module docstring. 0 when every check passes, 1 otherwise."""
    from sync.logs import configure
    from sync.service.demo import _fresh_run_dir

    console = console or Console()
    names = store_names(stores)
    log_path, log_file = _fresh_run_dir(data_dir)  # JSON logs to demo-data/ordersync.log
    db = data_dir / "fleet.db"
    try:
        return _run(names, orders, seed, console, data_dir, db, timeout, log_path)
    finally:
        configure("auto", "warning")
        log_file.close()


def _run(names: list[str], orders: int, seed: int, console: Console, data_dir: Path,
         db: Path, timeout: float, log_path: Path) -> int:
    from sync.ledger.fleet import FleetLedger
    from sync.service.runtime import build_fleet

    stores = len(names)
    started = time.monotonic()
    with FleetSandbox(names, orders=orders, seed=seed) as fb:
        registry = data_dir / "stores.toml"
        registry.write_text(stores_toml(fb), encoding="utf-8")
        console.print(f"[bold]ordersync demo — {stores} stores, one deployment[/]")
        console.print(describe_fleet(fb))
        console.print(f"registry: {registry} (secrets by reference only)")
        extra = f"shop{stores + 1:02d}"
        with _environment(secrets_env(fb)):
            base = load_settings(database_url=f"sqlite:///{db}", stores_file=registry)
            fleet = build_fleet(base)
            stop = threading.Event()
            runner = threading.Thread(target=fleet.run, args=(stop,), daemon=True)
            runner.start()
            try:
                fb.add_store(extra, orders=max(orders // 4, 10))
                os.environ.update(secrets_env(fb))
                added_at = time.monotonic()
                FleetLedger(fleet.ledger.ledger).add_store(
                    parse_spec(extra, added_store_table(fb, extra), "ledger"),
                    datetime.now(UTC))
                console.print(f"added store {extra} while running (`ordersync stores add`)")
                deadline = time.monotonic() + timeout
                added_s = float("nan")
                while time.monotonic() < deadline:
                    counts = fb.counts()
                    if added_s != added_s and counts[extra].orders == counts[extra].shop_orders:
                        added_s = time.monotonic() - added_at
                    if all(c.orders == c.shop_orders for c in counts.values()):
                        break
                    time.sleep(0.2)
            finally:
                stop.set()
                runner.join(timeout=60)
                fleet.ledger.ledger.dispose()
        counts = fb.counts()
        foreign = fb.foreign_records()
    table = Table(title="stores")
    for col in ("store", "orders in shop", "orders in its WiredPlus account", "events",
                "sent twice", "other stores' orders"):
        table.add_column(col, justify="left" if col == "store" else "right")
    ok = not foreign
    for name, c in sorted(counts.items()):
        dup = c.duplicate_orders + c.duplicate_events
        mine = sum(1 for f in foreign if f.account == name)
        ok = ok and c.orders == c.shop_orders and dup == 0
        table.add_row(name, str(c.shop_orders), str(c.orders), str(c.events), str(dup),
                      str(mine))
    console.print(table)
    console.print(f"all stores synced in {time.monotonic() - started:.1f} s; store {extra} "
                  f"added while running was synced {added_s:.1f} s after it was added")
    console.print("[green]every order in its own account, exactly once[/]" if ok else
                  "[red]a check failed (see the table)[/]")
    console.print(f"JSON logs of the run (every line carries its store): {log_path}",
                  highlight=False)
    return 0 if ok else 1


def serve_fleet(*, stores: int, orders: int, seed: int, limits: bool, registry: Path,
                env_file: Path, big_store_orders: int, console: Console) -> None:
    """Serve a multi-shop sandbox until SIGINT/SIGTERM; write the registry file and an env
    file (``export NAME=value`` lines: the secrets it names) for ``ordersync run``."""
    from sync.sandbox.fleet import StoreSpec

    specs: list[str | StoreSpec] = list(store_names(stores))
    if big_store_orders:
        specs.append(StoreSpec("big", orders=big_store_orders))
    with FleetSandbox(specs, orders=orders, seed=seed, limits=limits) as fb:
        registry.write_text(stores_toml(fb), encoding="utf-8")
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in secrets_env(fb).items()),
                            encoding="utf-8")
        console.print(describe_fleet(fb))
        console.print(f"registry written to {registry}, secrets to {env_file}; serving "
                      f"(limits {'on' if limits else 'off'}) until Ctrl-C", highlight=False)
        from sync.service.demo import wait_for_stop_signal

        wait_for_stop_signal()
