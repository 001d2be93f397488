"""``python -m bench.fleet [--scenario throughput|acceptance|all]``: many stores, one deployment
(issue 16), measured with the real processes.

The deployment: ``ordersync migrate``, then ``ordersync worker --concurrency 4`` (four Celery
worker processes) and two ``ordersync run`` pollers sharing the stores through leases, on a
private PostgreSQL schema (:func:`bench.harness.pg_schema`) and a private ``redis-server``
(:class:`bench.harness.PrivateRedis`; ``--shared-redis`` uses database 13 of the shared one).
Their environment holds only ``DATABASE_URL``, ``REDIS_URL``, ``ORDERSYNC_STORES`` (the registry
file :func:`~sync.sandbox.fleet.stores_toml` writes) and the secrets it names
(:func:`~sync.sandbox.fleet.secrets_env`); everything else is the **product default** (poll
interval 60 s, settle delay 30 s, lease 30 s, back-off 30 s doubling to 10 min, rates and
budgets) — but for ``ORDERSYNC_LOG_FORMAT=json`` (logs the benchmark reads) and
``ORDERSYNC_METRICS_PORT=0`` (two pollers and a worker on one machine shared with other
sessions must not fight over port 9108; the endpoint plays no part in the sync).

The APIs: a :class:`~sync.sandbox.fleet.FleetSandbox` served from *this* process (one shop
and one WiredPlus account per store, on two loopback ports), so the benchmark switches
credentials and outages and reads every simulator's counters (429s, duplicate creations,
foreign records) directly. Every store's orders were created over the last 29 days, the
newest 10 minutes before the run: the default start date (30 days back) covers them all and
none is inside the settle delay. The sandbox's CPU is the orchestrator's (reported apart).

Scenarios
---------
**throughput** (limits off): ``--stores`` stores × ``--orders`` orders plus one store ``big``
with ``--big`` orders. *Limits off* is on both sides: the shops and accounts enforce no limit,
and the daemons know it as an operator would tell them — each store's registry entry sets
``shopwired_rate`` to what the shop allows and each account's ``GetAccountInfo`` advertises
its (unbinding) budget (:data:`~sync.sandbox.fleet.NO_LIMIT_RATE`); every other setting is
the default (re-reads keep their 30 % share and the 60 s floor between two reads of an
order). Paced at the documented 2 calls/s the store ``big`` alone would need 1,000 pages ÷
2/s ≈ 8 minutes. From the pollers' launch, ``counts()`` is sampled every second: a
store's *first-sync completion* is the first sample at which its WiredPlus account holds all
its shop's orders. Figures: aggregate orders/s (every order / the last completion), the
median and the maximum completion over the small stores and their ratio (target ≤ 2: one big
store must not hold the others back), the big store's completion, duplicates and foreign
records (0).

**acceptance** (limits on: each shop's leaky bucket, each account's hourly budget):
``--stores`` × ``--orders``; from the start one store's credentials are revoked and one
store's API is down. While it runs: one poller is SIGKILLed while it holds leases on stores
whose first sync is running, and the time until all of them are held by the other poller is
measured (target ≤ one lease period + one registry tick); then a store is added with the
real ``ordersync stores add`` CLI (its secrets are already in the daemons' environment, as
an operator would deploy them) and the time from the command to its account being complete
is measured (target ≤ one poll interval). Once the other stores are synced,
``ordersync status --json`` must show the two stores ``credentials`` / ``unreachable`` with a
reason; then both are restored and the time until each is complete is measured (they recover
by themselves, on the product's back-off). At the end: every store complete, no duplicate,
no foreign record, no 429 anywhere, nothing pending or dead in the ledger.

Results are printed, written as JSON (``--json``) and kept in the "Many stores, one
deployment" section of ``BENCHMARKS.md`` (latest run + history), unless ``--no-markdown``.
The exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    BIN,
    PG_URL,
    ROOT,
    Daemon,
    MachineLoad,
    PrivateRedis,
    Sampler,
    flush_redis,
    pg_schema,
    redis_url,
    services_available,
    set_redis_base,
    start_ordersync,
    wait_for_text,
)
from bench.mdsection import HISTORY, update_section
from config.settings import Settings
from sync.sandbox.fleet import FleetSandbox, StoreCounts, StoreSpec, secrets_env, stores_toml
from sync.service.fleet import FleetPolicy

SECTION = "## Many stores, one deployment"
HISTORY_ROWS = 12
SHARED_REDIS_DB = 13  # bench.run/realistic use 12, the bench tests 11

# The product's defaults the targets are made of (never changed by this benchmark).
_POLICY = FleetPolicy()
LEASE_S = float(Settings.model_fields["poller_lease"].default.total_seconds())
POLL_INTERVAL_S = float(Settings.model_fields["poll_interval"].default)
REGISTRY_TICK_S = _POLICY.registry_every
RETRY_FIRST_S, RETRY_MAX_S = _POLICY.retry_first, _POLICY.retry_max
RATIO_TARGET = 2.0
RATE_TARGET = 500.0
"""Issue 16: aggregate orders/s at full size with limits off (a small run misses it by
construction: its fixed start-up costs weigh more)."""
BIG = "big"
ADDED = "added"


@dataclass(frozen=True)
class Plan:
    stores: int = 50
    orders: int = 2_000
    big: int = 100_000
    seed: int = 16
    pollers: int = 2
    concurrency: int = 4
    cap_s: float = 3600.0
    """Wall seconds a scenario may wait for every first sync before giving up."""
    restore_early: bool = False
    """Acceptance: restore the two broken stores as soon as ``status`` shows them broken
    (not after the other stores are synced) — a short run's recovery then waits less on the
    back-off."""


def store_names(n: int) -> list[str]:
    width = max(2, len(str(n)))
    return [f"shop{i:0{width}d}" for i in range(1, n + 1)]


def created_between() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=29), now - timedelta(minutes=10)


def registry_without(fb: FleetSandbox, *left_out: str) -> str:
    """:func:`stores_toml` minus the tables of ``left_out`` (stores added later by CLI)."""
    blocks = stores_toml(fb).split("\n\n")
    heads = tuple(f"[stores.{name}]\n" for name in left_out)
    return "\n\n".join(b for b in blocks if not b.startswith(heads)).rstrip("\n") + "\n"


def fleet_env(database_url: str, broker: str, registry: Path,
              secrets: Mapping[str, str]) -> dict[str, str]:
    """The daemons' environment: where things are, the registry and its secrets; nothing of
    the caller's own ordersync configuration."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPWIRED_", "WIREDPLUS_", "ELASTICPATH_", "ORDERSYNC_"))
           and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, REDIS_URL=broker, ORDERSYNC_STORES=str(registry),
               ORDERSYNC_LOG_FORMAT="json", ORDERSYNC_METRICS_PORT="0")
    env.update(secrets)
    return env


def _now(t0: float) -> float:
    return time.monotonic() - t0


# ---------------------------------------------------------------------------- watching


class Tracker:
    """Samples the sandbox's counts (every second) and the ledger's leases (every half
    second) on a thread; times are seconds since ``t0`` (monotonic)."""

    def __init__(self, fb: FleetSandbox, database_url: str, t0: float) -> None:
        from sync.ledger.fleet import FleetLedger
        from sync.ledger.store import Ledger

        self.fb = fb
        self.t0 = t0
        self._ledger = Ledger(database_url)
        self._fleet = FleetLedger(self._ledger)
        self.complete_at: dict[str, float] = {}
        self.first_at: dict[str, float] = {}
        """When each store's account first held one of its orders (its sync is running)."""
        self.counts: dict[str, StoreCounts] = {}
        self.progress: list[tuple[float, int]] = []
        self.leases: dict[str, str] = {}
        self.lease_log: list[tuple[float, dict[str, str]]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-tracker", daemon=True)

    def start(self) -> Tracker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._ledger.dispose()

    def _run(self) -> None:
        next_counts = 0.0
        while not self._stop.is_set():
            now = _now(self.t0)
            if now >= next_counts:
                next_counts = now + 1.0
                self.sample_counts()
            try:
                self.sample_leases()
            except Exception as exc:  # the schema may not exist yet, PG may hiccup
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            self._stop.wait(0.5)

    def sample_counts(self) -> dict[str, StoreCounts]:
        counts = self.fb.counts()
        t = _now(self.t0)
        with self._lock:
            self.counts = counts
            self.progress.append((t, sum(c.orders for c in counts.values())))
            for name, c in counts.items():
                if name not in self.first_at and c.orders > 0:
                    self.first_at[name] = t
                if name not in self.complete_at and c.shop_orders and c.orders >= c.shop_orders:
                    self.complete_at[name] = t
        return counts

    def sample_leases(self) -> dict[str, str]:
        now = datetime.now(UTC)
        live = {s: lease.owner for s, lease in self._fleet.leases().items()
                if lease.expires_at > now}
        with self._lock:
            self.leases = live
            self.lease_log.append((_now(self.t0), live))
        return live

    def done(self, name: str) -> float | None:
        with self._lock:
            return self.complete_at.get(name)

    def first(self, name: str) -> float | None:
        with self._lock:
            return self.first_at.get(name)

    def held_by(self) -> dict[str, set[str]]:
        """Owner → the stores it holds a live lease on (latest sample)."""
        out: dict[str, set[str]] = {}
        with self._lock:
            for store, owner in self.leases.items():
                out.setdefault(owner, set()).add(store)
        return out


def owner_pid(owner: str) -> int | None:
    """The pid in a poller id ``host:pid:random``."""
    parts = owner.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def log_problems(daemons: Sequence[Daemon]) -> dict[str, dict[str, Any]]:
    """Warnings and errors in the daemons' JSON logs: ``role level event`` → count and the
    first line (Celery's own non-JSON tracebacks are counted as ``Traceback``)."""
    found: dict[str, dict[str, Any]] = {}
    for d in daemons:
        try:
            text = d.log.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key = None
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                level = str(rec.get("level", ""))
                if level in ("warning", "error", "critical"):
                    key = f"{d.role} {level} {str(rec.get('event'))[:80]}"
            elif line.startswith("Traceback"):
                key = f"{d.role} Traceback"
            if key is None:
                continue
            entry = found.setdefault(key, {"count": 0, "first": line[:400]})
            entry["count"] += 1
    return found


# ---------------------------------------------------------------------------- deployment


class Deployment:
    """The ordersync processes of one scenario (migrate, worker, pollers) and CLI calls."""

    def __init__(self, work: Path, env: dict[str, str], plan: Plan,
                 log: Callable[[str], None]) -> None:
        self.work = work
        self.env = env
        self.plan = plan
        self.log = log
        self.daemons: list[Daemon] = []
        self.pollers: list[Daemon] = []
        self.sampler = Sampler(interval=1.0)

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env=self.env, cwd=self.work,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def migrate(self) -> None:
        code = start_ordersync("migrate", ["migrate"], self.env, self.work).wait(180)
        if code != 0:
            raise RuntimeError(f"ordersync migrate exited {code}: "
                               f"{(self.work / 'migrate.log').read_text()[-2000:]}")

    def start_worker(self) -> Daemon:
        w = start_ordersync("worker", ["worker", "--concurrency", str(self.plan.concurrency)],
                            self.env, self.work)
        self.daemons.append(w)
        wait_for_text(w.log, "ready.", 180, w)
        self.sampler.start()
        self.sampler.watch(w)
        return w

    def start_pollers(self) -> list[Daemon]:
        for i in range(self.plan.pollers):
            p = start_ordersync(f"poller-{'abcdefgh'[i]}", ["run"], self.env, self.work)
            self.daemons.append(p)
            self.pollers.append(p)
            self.sampler.watch(p)
        return self.pollers

    def status(self) -> list[dict[str, Any]]:
        r = self.cli("status", "--json")
        if r.returncode != 0:
            raise RuntimeError(f"ordersync status --json exited {r.returncode}: "
                               f"{(r.stderr or r.stdout)[-1000:]}")
        rows: list[dict[str, Any]] = json.loads(r.stdout)["stores"]
        return rows

    def crashed(self) -> list[str]:
        return [f"{d.role} exited {d.returncode}: {d.tail(600)}" for d in self.daemons
                if not d.signalled and d.poll() is not None]

    def stop(self) -> None:
        for d in self.daemons:
            if d.poll() is None:
                d.terminate()
        for d in self.daemons:
            with contextlib.suppress(Exception):
                d.stop(60)
        self.sampler.stop()

    def cpu_by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for st in self.sampler.stats.values():
            role = st.role.split("/")[0]
            out[role] = out.get(role, 0.0) + st.cpu
        return out


@contextlib.contextmanager
def deployment(fb: FleetSandbox, plan: Plan, work: Path, broker: str, registry_text: str,
               log: Callable[[str], None]) -> Iterator[tuple[Deployment, str]]:
    """A migrated schema, an empty broker and a ready worker; the pollers are not started."""
    registry = work / "stores.toml"
    registry.write_text(registry_text, encoding="utf-8")
    flush_redis(broker)
    with pg_schema() as url:
        dep = Deployment(work, fleet_env(url, broker, registry, secrets_env(fb)), plan, log)
        try:
            dep.migrate()
            dep.start_worker()
            yield dep, url
        finally:
            dep.stop()
            with contextlib.suppress(Exception):
                flush_redis(broker)


def _wait(until: Callable[[], bool], timeout: float, dep: Deployment, every: float = 0.5
          ) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return True
        crashed = dep.crashed()
        if crashed:
            raise RuntimeError("; ".join(crashed))
        time.sleep(every)
    return until()


def api_figures(fb: FleetSandbox) -> dict[str, Any]:
    """Per store: 429s its shop and its account answered, calls each received."""
    per: dict[str, dict[str, int]] = {}
    for name in fb.stores:
        st = fb.store(name)
        shop, acc = st.shop, st.account
        per[name] = {
            "shop_429": int(getattr(shop, "throttled", shop.responses.get(429, 0))),
            "account_429": int(acc.responses.get(429, 0)),
            "shop_calls": int(sum(shop.calls.values())),
            "account_calls": int(sum(acc.calls.values())),
        }
    return {
        "per_store": per,
        "shop_429": sum(p["shop_429"] for p in per.values()),
        "account_429": sum(p["account_429"] for p in per.values()),
        "shop_calls": sum(p["shop_calls"] for p in per.values()),
        "account_calls": sum(p["account_calls"] for p in per.values()),
    }


def exactly_once(fb: FleetSandbox, counts: Mapping[str, StoreCounts]) -> dict[str, Any]:
    foreign = fb.foreign_records()
    missing = {n: c.shop_orders - c.orders for n, c in counts.items() if c.orders != c.shop_orders}
    return {
        "orders_in_shops": sum(c.shop_orders for c in counts.values()),
        "orders_in_accounts": sum(c.orders for c in counts.values()),
        "events_in_accounts": sum(c.events for c in counts.values()),
        "duplicate_orders": sum(c.duplicate_orders for c in counts.values()),
        "duplicate_events": sum(c.duplicate_events for c in counts.values()),
        "stores_incomplete": missing,
        "foreign_records": len(foreign),
        "foreign_examples": [r._asdict() for r in foreign[:5]],
    }


def ledger_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``status --json`` says the ledger holds: orders and events by state, summed."""
    orders: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for r in rows:
        orders.update(r["orders"])
        events.update(r["events"])
    return {"orders": dict(orders), "events": dict(events),
            "dead_letters": sum(int(r["dead_letters"]) for r in rows),
            "not_ok": {r["store"]: r["health"] for r in rows
                       if r["health"] not in ("ok", "unknown") or r["paused"]}}


def settle_ledger(dep: Deployment, fb: FleetSandbox, timeout: float = 60.0
                  ) -> list[dict[str, Any]]:
    """``status --json`` once nothing is pending (events trail their orders by a moment)."""
    rows = dep.status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        led = ledger_figures(rows)
        if not led["orders"].get("pending") and not led["events"].get("pending"):
            break
        time.sleep(2.0)
        rows = dep.status()
    return rows


def check(name: str, value: Any, target: str, ok: bool) -> dict[str, Any]:
    return {"check": name, "value": value, "target": target, "ok": bool(ok)}


# ---------------------------------------------------------------------------- throughput


def throughput(plan: Plan, work: Path, broker: str, log: Callable[[str], None]
               ) -> dict[str, Any]:
    names = store_names(plan.stores)
    t_gen = time.monotonic()
    specs: list[str | StoreSpec] = [*names, StoreSpec(BIG, orders=plan.big)]
    fb = FleetSandbox(specs, orders=plan.orders, seed=plan.seed, limits=False,
                      created_between=created_between())
    log(f"  sandbox: {len(names)} × {plan.orders:,} + {BIG} {plan.big:,} orders generated in "
        f"{time.monotonic() - t_gen:.0f} s")
    result: dict[str, Any] = {"scenario": "throughput", "stores": plan.stores,
                              "orders_per_store": plan.orders, "big_orders": plan.big}
    fb.start()
    with fb, deployment(fb, plan, work / "throughput", broker, stores_toml(fb),
                        log) as (dep, url):
        machine = MachineLoad()
        dep.sampler.mark()
        t0 = time.monotonic()
        result["pollers_started_utc"] = datetime.now(UTC).isoformat()
        dep.start_pollers()
        tracker = Tracker(fb, url, t0).start()
        try:
            every = [*names, BIG]
            complete = _wait(lambda: all(tracker.done(n) is not None for n in every),
                             plan.cap_s, dep, every=1.0)
            wall = _now(t0)
            counts = tracker.sample_counts()
            rows = settle_ledger(dep, fb)
            load = machine.stop(dep.sampler.cpu_since_mark(), set(dep.sampler.stats))
        finally:
            tracker.stop()
        result["problems_in_logs"] = log_problems(dep.daemons)
        result["cpu_s_by_role"] = dep.cpu_by_role()
    small = {n: tracker.complete_at[n] for n in names if n in tracker.complete_at}
    last = max(tracker.complete_at.values(), default=None)
    total = sum(c.orders for c in counts.values())
    median = statistics.median(small.values()) if small else None
    worst = max(small.values()) if small else None
    ratio = worst / median if worst is not None and median else None
    once = exactly_once(fb, counts)
    apis = api_figures(fb)
    result.update(
        complete=complete,
        wall_s=wall,
        last_order_s=last if complete else None,
        orders=total,
        orders_per_s=(total / last) if complete and last else None,
        small_median_s=median,
        small_max_s=worst,
        small_max_store=max(small, key=lambda n: small[n]) if small else None,
        small_ratio=ratio,
        big_s=tracker.complete_at.get(BIG),
        completion_s=dict(sorted(tracker.complete_at.items())),
        exactly_once=once,
        apis={k: v for k, v in apis.items() if k != "per_store"},
        ledger=ledger_figures(rows),
        progress=tracker.progress[:: max(1, len(tracker.progress) // 300)],
        machine=load,
    )
    result["checks"] = [
        check("every store complete", f"{len(tracker.complete_at)}/{len(names) + 1}",
              "all", complete),
        check("small stores: max / median first sync", _ratio(ratio), f"≤ {RATIO_TARGET:g}",
              ratio is not None and ratio <= RATIO_TARGET),
        check("aggregate orders/s (every order / the last completion)",
              _num(result["orders_per_s"]), f"≥ {RATE_TARGET:g}",
              result["orders_per_s"] is not None and result["orders_per_s"] >= RATE_TARGET),
        check("duplicate orders / events", f"{once['duplicate_orders']} / "
              f"{once['duplicate_events']}", "0 / 0",
              once["duplicate_orders"] == 0 and once["duplicate_events"] == 0),
        check("orders in the wrong account", once["foreign_records"], "0",
              once["foreign_records"] == 0),
    ]
    log(f"  throughput: {total:,} orders, last at {_s(last)}, "
        f"{_num(result['orders_per_s'])} orders/s; small stores median {_s(median)}, "
        f"max {_s(worst)} (×{_ratio(ratio)}); {BIG} {_s(result['big_s'])}")
    return result


# ---------------------------------------------------------------------------- acceptance


def acceptance(plan: Plan, work: Path, broker: str, log: Callable[[str], None]
               ) -> dict[str, Any]:
    names = store_names(plan.stores)
    if len(names) < 3:
        raise ValueError("the acceptance scenario needs at least 3 stores")
    revoked, down = names[0], names[1]
    good = [n for n in names if n not in (revoked, down)]
    # The added store's shop exists from the start (its secrets are deployed with the
    # daemons, as an operator would); the registry file leaves it out: `stores add` adds it.
    fb = FleetSandbox([*names, StoreSpec(ADDED)], orders=plan.orders, seed=plan.seed,
                      limits=True, created_between=created_between())
    fb.revoke(revoked)
    fb.outage(down)
    notes: list[str] = []
    result: dict[str, Any] = {"scenario": "acceptance", "stores": plan.stores,
                              "orders_per_store": plan.orders, "revoked": revoked,
                              "down": down, "added": ADDED, "notes": notes}
    fb.start()
    with fb, deployment(fb, plan, work / "acceptance", broker,
                        registry_without(fb, ADDED), log) as (dep, url):
        machine = MachineLoad()
        dep.sampler.mark()
        t0 = time.monotonic()
        started = datetime.now(UTC)
        result["pollers_started_utc"] = started.isoformat()
        dep.start_pollers()
        tracker = Tracker(fb, url, t0).start()
        try:
            if plan.restore_early:
                result["health"] = _health_check(dep, revoked, down, good, tracker, t0,
                                                 started, log)
                result["restore"] = _restore(fb, revoked, down, t0, log)
            result["handover"] = _kill_one_poller(dep, tracker, good, t0, log)
            result["add"] = _add_store(dep, fb, tracker, t0, plan, log)
            every = [*good, ADDED]
            if not _wait(lambda: all(tracker.done(n) is not None for n in every),
                         plan.cap_s, dep, every=1.0):
                notes.append("not every healthy store was complete within the cap")
            done_at = [tracker.done(n) for n in every]
            result["healthy_complete_s"] = (
                None if any(t is None for t in done_at) else max(t or 0.0 for t in done_at))
            if not plan.restore_early:
                result["health"] = _health_check(dep, revoked, down, good, tracker, t0,
                                                 started, log)
                result["restore"] = _restore(fb, revoked, down, t0, log)
            recovery_cap = RETRY_MAX_S + POLL_INTERVAL_S + 300.0
            t_restore = result["restore"]["at_s"]
            _wait(lambda: tracker.done(revoked) is not None and tracker.done(down) is not None,
                  max(0.0, t_restore + recovery_cap - _now(t0)), dep, every=1.0)
            for name, key in ((revoked, "credentials"), (down, "api_down")):
                at = tracker.done(name)
                result["restore"][f"{key}_recovered_s"] = (
                    at - t_restore if at is not None else None)
            log(f"  [{_now(t0):5.0f}s] recovered after the restore: credentials "
                f"{_s(result['restore']['credentials_recovered_s'])}, API "
                f"{_s(result['restore']['api_down_recovered_s'])}")
            counts = tracker.sample_counts()
            rows = settle_ledger(dep, fb)
            counts = tracker.sample_counts()
            add = result.get("add")
            if add is not None and add["synced_s"] is None and tracker.done(ADDED) is not None:
                add["synced_s"] = (tracker.done(ADDED) or 0.0) - add["at_s"]  # after the wait
            load = machine.stop(dep.sampler.cpu_since_mark(), set(dep.sampler.stats))
            result["wall_s"] = _now(t0)
        finally:
            tracker.stop()
        result["problems_in_logs"] = log_problems(dep.daemons)
        result["cpu_s_by_role"] = dep.cpu_by_role()
    once = exactly_once(fb, counts)
    apis = api_figures(fb)
    ledger = ledger_figures(rows)
    result.update(exactly_once=once, apis=apis, ledger=ledger, machine=load,
                  completion_s=dict(sorted(tracker.complete_at.items())))
    result["checks"] = _acceptance_checks(result, good)
    return result


def _health_check(dep: Deployment, revoked: str, down: str, good: Sequence[str],
                  tracker: Tracker, t0: float, started: datetime,
                  log: Callable[[str], None]) -> dict[str, Any]:
    """``status --json`` until the two broken stores show their health with a reason."""
    rows: dict[str, dict[str, Any]] = {}

    def shown() -> bool:
        nonlocal rows
        rows = {r["store"]: r for r in dep.status()}
        r1, r2 = rows.get(revoked, {}), rows.get(down, {})
        return (r1.get("health") == "credentials" and bool(r1.get("health_reason"))
                and r2.get("health") == "unreachable" and bool(r2.get("health_reason")))

    ok = _wait(shown, 300.0, dep, every=3.0)
    counts = tracker.sample_counts()
    keep = ("health", "health_reason", "health_since", "retry_at", "polled_by")
    out: dict[str, Any] = {
        "at_s": _now(t0),
        "shown": ok,
        revoked: {k: rows.get(revoked, {}).get(k) for k in keep},
        down: {k: rows.get(down, {}).get(k) for k in keep},
        "marked_after_s": {n: _since(rows.get(n, {}).get("health_since"), started)
                           for n in (revoked, down)},
        "healthy_complete": sum(1 for n in good if tracker.done(n) is not None),
        "healthy": len(good),
        "broken_stores_orders_in_accounts": counts[revoked].orders + counts[down].orders,
        "others_not_ok": {n: r["health"] for n, r in rows.items()
                          if n not in (revoked, down) and r["health"] not in ("ok", "unknown")},
    }
    log(f"  [{out['at_s']:5.0f}s] status --json: {revoked} "
        f"{out[revoked]['health']} ({str(out[revoked]['health_reason'])[:60]}…), {down} "
        f"{out[down]['health']} ({str(out[down]['health_reason'])[:60]}…); healthy stores "
        f"complete {out['healthy_complete']}/{out['healthy']}")
    return out


def _since(iso: str | None, started: datetime) -> float | None:
    """Seconds from ``started`` to the ISO time ``iso`` (None without one)."""
    if not iso:
        return None
    return (datetime.fromisoformat(iso) - started).total_seconds()


def _restore(fb: FleetSandbox, revoked: str, down: str, t0: float,
             log: Callable[[str], None]) -> dict[str, Any]:
    fb.restore(revoked)
    fb.outage(down, False)
    at = _now(t0)
    log(f"  [{at:5.0f}s] restored {revoked}'s credentials and {down}'s API")
    return {"at_s": at}


def _kill_one_poller(dep: Deployment, tracker: Tracker, good: Sequence[str], t0: float,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """SIGKILL a poller that holds leases on stores whose first sync runs (both pollers
    holding leases); the time until another poller holds every one of its stores."""
    by_pid = {p.pid: p for p in dep.pollers}
    good_set = set(good)
    chosen: tuple[Daemon, str, set[str], bool] | None = None
    late_at = time.monotonic() + 60.0
    while chosen is None:
        held = {o: s for o, s in tracker.held_by().items() if owner_pid(o) in by_pid}
        running = {o: {n for n in s & good_set if tracker.done(n) is None}
                   for o, s in held.items()}
        all_done = all(tracker.done(n) is not None for n in good_set)
        late = time.monotonic() > late_at
        counts = tracker.counts
        if held:
            owner = max(held, key=lambda o: (len(running[o]), len(held[o])))
            # Best: both pollers hold stores and one of the victim's first syncs is under
            # way (orders already in its account, not all); a short run may be past its
            # first syncs before that is seen.
            under_way = any(n in counts and counts[n].orders > 0 for n in running[owner])
            if (len(held) >= 2 and under_way) or all_done or late:
                pid = owner_pid(owner)
                assert pid is not None
                chosen = (by_pid[pid], owner, set(held[owner]), bool(running[owner]))
                break
        elif time.monotonic() > late_at + 60.0:
            raise RuntimeError("no poller took a lease within 120 s")
        crashed = dep.crashed()
        if crashed:
            raise RuntimeError("; ".join(crashed))
        time.sleep(0.25)
    victim, owner, stores, mid_pass = chosen
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim.pid, signal.SIGKILL)
    victim.signalled = True
    killed_at = _now(t0)
    log(f"  [{killed_at:5.0f}s] SIGKILL {victim.role} (pid {victim.pid}) holding "
        f"{len(stores)} stores" + (", first syncs running" if mid_pass else ""))
    taken: dict[str, float] = {}

    def handed_over() -> bool:
        live = tracker.sample_leases()
        t = _now(t0)
        for s in stores:
            if s not in taken and live.get(s) not in (None, owner):
                taken[s] = t - killed_at
        return len(taken) == len(stores)

    target = LEASE_S + REGISTRY_TICK_S
    _wait(handed_over, 4 * LEASE_S + 60.0, dep, every=0.25)
    handover = max(taken.values()) if len(taken) == len(stores) else None
    log(f"  [{_now(t0):5.0f}s] its {len(stores)} stores held by the other poller after "
        f"{_s(handover)} (target ≤ {target:.0f} s)")
    return {"killed_at_s": killed_at, "victim": victim.role, "stores": sorted(stores),
            "first_syncs_running": sorted(stores & {n for n in good_set
                                                    if tracker.done(n) is None}),
            "mid_pass": mid_pass, "handover_s": handover, "per_store_s": taken,
            "target_s": target}


def _add_store(dep: Deployment, fb: FleetSandbox, tracker: Tracker, t0: float, plan: Plan,
               log: Callable[[str], None]) -> dict[str, Any]:
    """``ordersync stores add`` the sandbox's extra store; the time until it is syncing (its
    first orders in its account: the issue's "syncing within one poll interval") and until
    it is complete (every order; with 48 other stores' first syncs queued ahead of its pushes
    on the shared workers, this takes longer)."""
    from sync.sandbox.fleet import secret_env_name

    key, _ = fb.shopwired_credentials(ADDED)
    user, _ = fb.wiredplus_credentials(ADDED)
    sw_secret = secret_env_name(ADDED, "shopwired_api_secret")
    wp_secret = secret_env_name(ADDED, "wiredplus_api_key")
    args = ["stores", "add", ADDED,
            "--set", f"shopwired_base_url={fb.shopwired_url(ADDED)}",
            "--set", f"shopwired_api_key={key}",
            "--secret-env", f"shopwired_api_secret={sw_secret}",
            "--set", f"wiredplus_base_url={fb.wiredplus_url(ADDED)}",
            "--set", f"wiredplus_api_user={user}",
            "--secret-env", f"wiredplus_api_key={wp_secret}"]
    started = _now(t0)
    r = dep.cli(*args)
    returned = _now(t0)
    if r.returncode != 0:
        raise RuntimeError(f"ordersync stores add exited {r.returncode}: "
                           f"{(r.stderr or r.stdout)[-1000:]}")
    log(f"  [{started:5.0f}s] ordersync stores add {ADDED} ({returned - started:.1f} s)")
    _wait(lambda: tracker.done(ADDED) is not None, POLL_INTERVAL_S * 5, dep, every=0.5)
    done, first = tracker.done(ADDED), tracker.first(ADDED)
    synced = done - started if done is not None else None
    syncing = first - started if first is not None else None
    log(f"  [{_now(t0):5.0f}s] {ADDED} syncing {_s(syncing)} after the command (target ≤ "
        f"{POLL_INTERVAL_S:.0f} s), complete {_s(synced)}")
    return {"at_s": started, "cli_s": returned - started, "synced_s": synced,
            "syncing_s": syncing,
            "orders": fb.counts()[ADDED].shop_orders, "target_s": POLL_INTERVAL_S}


def _acceptance_checks(r: Mapping[str, Any], good: Sequence[str]) -> list[dict[str, Any]]:
    once, apis, ledger = r["exactly_once"], r["apis"], r["ledger"]
    hv, add, health, rest = r["handover"], r["add"], r["health"], r["restore"]
    complete = r["completion_s"]
    healthy_done = sum(1 for n in good if n in complete)
    revoked, down = r["revoked"], r["down"]
    cred_ok = (health[revoked]["health"] == "credentials"
               and bool(health[revoked]["health_reason"]))
    down_ok = health[down]["health"] == "unreachable" and bool(health[down]["health_reason"])
    checks = [
        check("healthy stores complete (exactly once, own account)",
              f"{healthy_done}/{len(good)}", "all", healthy_done == len(good)),
        check("429 answers: shops / accounts", f"{apis['shop_429']} / {apis['account_429']}",
              "0 / 0", apis["shop_429"] == 0 and apis["account_429"] == 0),
        check(f"status: {revoked} credentials refused, with a reason",
              f"{health[revoked]['health']} (marked "
              f"{_s(health['marked_after_s'][revoked])} after the start)", "credentials",
              cred_ok),
        check(f"status: {down} unreachable, with a reason",
              f"{health[down]['health']} (marked "
              f"{_s(health['marked_after_s'][down])} after the start)", "unreachable",
              down_ok),
        check("other stores healthy in status", len(health["others_not_ok"]), "0",
              not health["others_not_ok"]),
        check("recovered after restore: revoked credentials",
              _s(rest.get("credentials_recovered_s")),
              f"by itself (back-off {RETRY_FIRST_S:.0f} s doubling, cap {RETRY_MAX_S:.0f} s)",
              rest.get("credentials_recovered_s") is not None),
        check("recovered after restore: API back up", _s(rest.get("api_down_recovered_s")),
              f"by itself (retried every {POLL_INTERVAL_S:.0f} s poll)",
              rest.get("api_down_recovered_s") is not None),
        check("poller SIGKILLed: its stores held by the other", _s(hv["handover_s"]),
              f"≤ {hv['target_s']:.0f} s (lease {LEASE_S:.0f} s + registry tick "
              f"{REGISTRY_TICK_S:.0f} s)",
              hv["handover_s"] is not None and hv["handover_s"] <= hv["target_s"]),
        check("store added while running: syncing (its first orders in its account)",
              f"{_s(add.get('syncing_s'))} (complete: {_s(add['synced_s'])})",
              f"≤ {add['target_s']:.0f} s (one poll interval)",
              add.get("syncing_s") is not None and add["syncing_s"] <= add["target_s"]),
        check("every store complete at the end",
              len(once["stores_incomplete"]), "0", not once["stores_incomplete"]),
        check("duplicate orders / events", f"{once['duplicate_orders']} / "
              f"{once['duplicate_events']}", "0 / 0",
              once["duplicate_orders"] == 0 and once["duplicate_events"] == 0),
        check("orders in the wrong account", once["foreign_records"], "0",
              once["foreign_records"] == 0),
        check("ledger: pending / dead at the end",
              f"{ledger['orders'].get('pending', 0) + ledger['events'].get('pending', 0)} / "
              f"{ledger['dead_letters']}", "0 / 0",
              not ledger["orders"].get("pending") and not ledger["events"].get("pending")
              and ledger["dead_letters"] == 0),
    ]
    return checks


# ---------------------------------------------------------------------------- the run


def run(plan: Plan, scenarios: Sequence[str], broker: str,
        log: Callable[[str], None] = print, keep: Path | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    results: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "plan": asdict(plan),
        "defaults": {"lease_s": LEASE_S, "poll_interval_s": POLL_INTERVAL_S,
                     "registry_tick_s": REGISTRY_TICK_S, "retry_first_s": RETRY_FIRST_S,
                     "retry_max_s": RETRY_MAX_S},
        "notes": [],
    }
    work = Path(tempfile.mkdtemp(prefix="ordersync-fleet-"))
    try:
        for name in scenarios:
            log(f"[{time.monotonic() - t0:5.0f}s] {name}…")
            (work / name).mkdir(parents=True, exist_ok=True)
            try:
                fn = throughput if name == "throughput" else acceptance
                results[name] = fn(plan, work, broker, log)
            except Exception as exc:
                results["notes"].append(f"{name} FAILED: {type(exc).__name__}: {exc}"[:1500])
                log(f"  {name} FAILED: {type(exc).__name__}: {exc}"[:1500])
                logs = sorted((work / name).glob("*.log"))
                for p in logs:
                    log(f"  --- {p.name} (tail) ---\n{p.read_text(errors='replace')[-1500:]}")
    finally:
        if keep is not None:
            shutil.copytree(work, keep, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.db*"))
            log(f"daemon logs kept in {keep}")
        shutil.rmtree(work, ignore_errors=True)
    results["duration_s"] = time.monotonic() - t0
    return results


def all_ok(results: Mapping[str, Any]) -> bool:
    if any("FAILED" in n for n in results.get("notes", [])):
        return False
    return all(c["ok"] for sc in ("throughput", "acceptance") if sc in results
               for c in results[sc]["checks"])


def _commit() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain")
                                                   else "")


# ---------------------------------------------------------------------------- report


def _s(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _checks_table(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["| check | measured | target | |", "|---|---|---|---|"]
    out += [f"| {c['check']} | {c['value']} | {c['target']} | {'ok' if c['ok'] else '**FAILED**'} |"
            for c in checks]
    return out


def markdown_latest(results: Mapping[str, Any]) -> str:
    plan = results["plan"]
    out = [f"### Latest run: {results['started']} (commit `{results['commit']}`, "
           f"{results['duration_s']:.0f} s)", ""]
    tp = results.get("throughput")
    if tp:
        once = tp["exactly_once"]
        m = tp["machine"]
        out += [
            f"**Throughput** (limits off): {tp['stores']} stores × {tp['orders_per_store']:,} "
            f"orders + `{BIG}` with {tp['big_orders']:,}; 2 pollers, 1 worker × "
            f"{plan['concurrency']} processes, PostgreSQL + Redis, product defaults but each "
            f"store's `shopwired_rate` (the shops' own: no limit).",
            "",
            "| orders | orders/s (all accounts) | last order | small stores: median · max "
            "first sync | max / median | big store | duplicates | foreign | machine: busy · "
            "foreign (cores) |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {tp['orders']:,} | **{_num(tp['orders_per_s'])}** | {_s(tp['last_order_s'])} | "
            f"{_s(tp['small_median_s'])} · {_s(tp['small_max_s'])} | "
            f"**{_ratio(tp['small_ratio'])}** (≤ {RATIO_TARGET:g}) | {_s(tp['big_s'])} | "
            f"{once['duplicate_orders']} + {once['duplicate_events']} | "
            f"{once['foreign_records']} | {m['busy_cores']:.2f} · {m['foreign_cores']:.2f} |",
            "",
            *_checks_table(tp["checks"]),
            "",
        ]
    ac = results.get("acceptance")
    if ac:
        hv, add, rest = ac["handover"], ac["add"], ac["restore"]
        out += [
            f"**Acceptance** (limits on: each shop's bucket 40/2 per s, each account's hourly "
            f"budget): {ac['stores']} stores × {ac['orders_per_store']:,} orders; `{ac['revoked']}`"
            f"'s credentials revoked and `{ac['down']}`'s API down from the start, restored at "
            f"{_s(rest['at_s'])}; {hv['victim']} SIGKILLed at {_s(hv['killed_at_s'])} holding "
            f"{len(hv['stores'])} stores ({len(hv['first_syncs_running'])} mid first sync); "
            f"`{ac['added']}` ({add['orders']:,} orders) added with `ordersync stores add` at "
            f"{_s(add['at_s'])}.",
            "",
            *_checks_table(ac["checks"]),
            "",
        ]
    notes = list(results.get("notes", []))
    for name in ("throughput", "acceptance"):
        sc = results.get(name)
        if sc and sc["machine"]["foreign_cores"] >= 0.15:
            notes.append(f"Shared machine: during {name} processes outside the benchmark used "
                         f"{sc['machine']['foreign_cores']:.2f} cores; its timings are "
                         "pessimistic.")
    out += ["First sync of a store: from the pollers' launch until its WiredPlus account holds "
            "every order of its shop (sampled each second). The sandbox (every shop and "
            "account) runs inside the benchmark process. Method: `bench/fleet.py`."]
    if notes:
        out += ["", *[f"- {n}" for n in notes]]
    return "\n".join(out)


def history_row(results: Mapping[str, Any]) -> str:
    tp, ac = results.get("throughput"), results.get("acceptance")
    plan = results["plan"]
    size = f"{plan['stores']}×{plan['orders']:,} + {plan['big']:,}"
    cells = [results["started"], f"`{results['commit']}`", size]
    if tp:
        cells += [_num(tp["orders_per_s"]), f"{_s(tp['small_median_s'])} · "
                  f"{_s(tp['small_max_s'])}", _ratio(tp["small_ratio"]), _s(tp["big_s"])]
    else:
        cells += ["—"] * 4
    if ac:
        rest = ac["restore"]
        add = ac["add"]
        cells += [_s(ac["handover"]["handover_s"]),
                  f"{_s(add.get('syncing_s'))} · {_s(add['synced_s'])}",
                  f"{_s(rest.get('credentials_recovered_s'))} · "
                  f"{_s(rest.get('api_down_recovered_s'))}",
                  f"{ac['apis']['shop_429']} · {ac['apis']['account_429']}"]
    else:
        cells += ["—"] * 4
    dup = sum(sc["exactly_once"]["duplicate_orders"] + sc["exactly_once"]["duplicate_events"]
              + sc["exactly_once"]["foreign_records"] for sc in (tp, ac) if sc)
    cells += [str(dup), "all met" if all_ok(results) else "**not met**"]
    return "| " + " | ".join(cells) + " |"


HISTORY_HEAD = (
    "| run | commit | stores × orders + big | orders/s | small: median · max | max/median | "
    "big store | handover after kill -9 | added store: syncing · complete "
    "| recovery: credentials · API "
    "| 429 shops · accounts | duplicates + foreign | checks |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)

INTRO = """One deployment serving many stores with the real processes (`ordersync run` ×2,
`ordersync worker --concurrency 4`, PostgreSQL, Redis) on the product's defaults, against one
shop and one WiredPlus account per store. Measured by `python -m bench.fleet --scenario all`
(`make bench-fleet`); method, scenarios and targets: `bench/fleet.py`."""


def update_markdown(path: Path, results: Mapping[str, Any]) -> None:
    """Replace the "Many stores, one deployment" section of ``path`` with this run, keeping
    the history rows of earlier runs (newest first)."""
    def build(old_rows: list[str]) -> str:
        rows = [history_row(results), *old_rows][:HISTORY_ROWS]
        return "\n".join([
            f"{SECTION} (issue 16)", "", INTRO, "", markdown_latest(results), "",
            HISTORY, "", HISTORY_HEAD, *rows, "", "",
        ])

    update_section(path, SECTION, build)


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=("throughput", "acceptance", "all"), default="all")
    p.add_argument("--stores", type=int, default=Plan.stores)
    p.add_argument("--orders", type=int, default=Plan.orders, help="orders per store")
    p.add_argument("--big", type=int, default=Plan.big,
                   help=f"orders of the store '{BIG}' (throughput)")
    p.add_argument("--seed", type=int, default=Plan.seed)
    p.add_argument("--cap", type=float, default=Plan.cap_s,
                   help="wall seconds a scenario waits for every first sync")
    p.add_argument("--restore-early", action="store_true",
                   help="acceptance: restore the broken stores as soon as status shows them "
                        "(short runs: less waiting on the back-off)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-markdown", action="store_true")
    p.add_argument("--shared-redis", action="store_true",
                   help=f"use database {SHARED_REDIS_DB} of the shared Redis instead of a "
                        "redis-server of the benchmark's own")
    p.add_argument("--keep-logs", type=Path, metavar="DIR",
                   help="copy every daemon's log (and the registry file) here")
    p.add_argument("--report-only", type=Path, metavar="JSON",
                   help="run nothing: print and keep the report of a previous --json")
    args = p.parse_args(argv)
    if args.report_only:
        results = json.loads(args.report_only.read_text(encoding="utf-8"))
        print(markdown_latest(results))
        if not args.no_markdown:
            update_markdown(args.markdown, results)
        return 0 if all_ok(results) else 1
    plan = Plan(stores=args.stores, orders=args.orders, big=args.big, seed=args.seed,
                cap_s=args.cap, restore_early=args.restore_early)
    scenarios = ["throughput", "acceptance"] if args.scenario == "all" else [args.scenario]
    private = None if args.shared_redis else PrivateRedis()
    broker = redis_url(SHARED_REDIS_DB)
    try:
        if private is not None:
            set_redis_base(private.start())
            broker = redis_url(0)
        pg_ok, redis_ok = services_available(PG_URL, redis=broker)
        if not (pg_ok and redis_ok):
            raise SystemExit("bench.fleet needs PostgreSQL and Redis")
        results = run(plan, scenarios, broker, keep=args.keep_logs)
    finally:
        if private is not None:
            private.stop()
    print()
    print(markdown_latest(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    if not args.no_markdown:
        update_markdown(args.markdown, results)
        print(f"\nupdated the fleet section in {args.markdown}")
    return 0 if all_ok(results) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
