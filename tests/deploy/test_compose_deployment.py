"""The docker-compose deployment on a real Docker engine, deployed the way the README says.

``make deploy-test`` (after ``bash ../shared/tools/docker-engine.sh up`` on a machine without
Docker Hub). Skips, saying why, when no engine (or no ``docker-compose``) is available.

What it does, with the product's default settings throughout (60 s polls, 30 s settle delay,
2 min leases); the only thing it injects is latency in the simulated APIs, so that a kill lands
while work is in flight:

1. builds the image (``docker build --network host``) and reports its size over the base;
2. serves the sandbox shop (ShopWired + WiredPlus simulators) on the docker0 address, writes a
   project directory exactly as a user would (``cp .env.example .env`` plus the lines
   ``ordersync sandbox --print-dotenv`` prints), ``docker-compose --profile webhook up -d``,
   and waits until migrate exited 0 and poller, worker and webhook are healthy;
3. waits until every in-scope order is in WiredPlus and the ledger has nothing pending;
4. ships orders and adds new ones, then ``kill -9`` the worker's main process mid-push, then
   the poller's mid-pass, then ``docker-compose down && up -d``; after each, waits until
   everything is delivered (the recovery time);
5. asserts: every in-scope order in WiredPlus, none out of scope, none created twice; every
   shipped order has exactly one ``dispatched`` event; no event sent twice; no event for
   history; the ledger's sent events are exactly WiredPlus's events; operator commands run
   inside the deployment; every log line of every ordersync container is a JSON object;
6. tears down only what it started (its compose project with its volumes, its image tag, its
   sandbox) and writes the figures to ``tests/deploy/last_run.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.sandbox import Sandbox
from sync.sandbox.server import DOCKER_HOST_NAME, connection_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
LAST_RUN = Path(__file__).with_name("last_run.json")
IMAGE = os.environ.get("ORDERSYNC_DEPLOY_IMAGE", "ordersync:deploy-test")
BASE_IMAGE = "python:3.11-slim"
THIRD_PARTY_IMAGES = ("postgres:16-alpine", "redis:7-alpine")
ORDERSYNC_SERVICES = ("migrate", "poller", "worker", "webhook")
WEBHOOK_SECRET = "deploy-test-webhook-secret"
SHOP_ORDERS = 1000  # ~45 % in the last 30 days: ~450 in scope, inside WiredPlus pacing
SEED = 15


# ----------------------------------------------------------------------------- the engine


def _run(cmd: list[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and _run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    return None


def engine_problem() -> str | None:
    """Why the deployment cannot be tested here, or None."""
    if not shutil.which("docker"):
        return "no `docker` command"
    if _compose_command() is None:
        return "no `docker-compose` (or `docker compose`)"
    try:
        info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer"
    if info.returncode != 0:
        return "no Docker engine running (`docker info` failed)"
    missing = [img for img in (BASE_IMAGE, *THIRD_PARTY_IMAGES)
               if _run(["docker", "image", "inspect", img]).returncode != 0]
    if missing and not os.environ.get("ORDERSYNC_DEPLOY_PULL"):
        return f"base images not present locally: {', '.join(missing)}"
    return None


def docker0_address() -> str | None:
    """The host's address on Docker's default bridge: the one a container reaches it on when
    the engine runs without NAT (Linux). None on Docker Desktop (macOS, Windows)."""
    try:
        out = _run(["ip", "-4", "-o", "addr", "show", "docker0"]).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    return m.group(1) if m else None


# --------------------------------------------------------------------------- a deployment


@dataclass
class Deployment:
    """One compose project in its own directory; every call names it explicitly."""

    directory: Path
    project: str
    compose: list[str]
    env: dict[str, str]
    profiles: tuple[str, ...] = ("webhook",)
    logs: dict[str, list[str]] = field(default_factory=dict)  # service -> lines, all runs

    def run(self, *args: str, timeout: float = 300, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        cmd = [*self.compose, "-p", self.project]
        for p in self.profiles:
            cmd += ["--profile", p]
        res = _run([*cmd, *args], timeout=timeout, cwd=self.directory, env=self.env)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n"
                                 f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def containers(self, service: str) -> list[str]:
        out = _run(["docker", "ps", "-a", "-q", "--no-trunc",
                    "--filter", f"label=com.docker.compose.project={self.project}",
                    "--filter", f"label=com.docker.compose.service={service}"]).stdout
        return out.split()

    def container(self, service: str) -> str:
        ids = self.containers(service)
        assert len(ids) == 1, f"{service}: {len(ids)} containers"
        return ids[0]

    def inspect(self, service: str, fmt: str) -> str:
        return _run(["docker", "inspect", "-f", fmt, self.container(service)]).stdout.strip()

    def health(self, service: str) -> str:
        return self.inspect(service, "{{if .State.Health}}{{.State.Health.Status}}"
                                     "{{else}}{{.State.Status}}{{end}}")

    def exec(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-T", "poller", "ordersync", *args, timeout=timeout,
                        check=False)

    def status(self) -> dict[str, Any]:
        res = self.exec("status", "--json")
        assert res.returncode == 0, res.stderr[-2000:]
        return dict(json.loads(res.stdout))

    def collect_logs(self) -> None:
        """Add every line the project's ordersync containers wrote (all their runs) to
        :attr:`logs`; call before the containers are removed."""
        for service in (*ORDERSYNC_SERVICES, *("postgres", "redis")):
            for cid in self.containers(service):
                res = _run(["docker", "logs", cid], timeout=120)
                lines = (res.stdout + res.stderr).splitlines()
                self.logs.setdefault(service, []).extend(ln for ln in lines if ln.strip())

    def kill_main_process(self, service: str) -> None:
        """``kill -9`` of the container's main process from the host, as the kernel's OOM
        killer would: not `docker kill` (which also counts as stopped by hand)."""
        pid = int(self.inspect(service, "{{.State.Pid}}"))
        assert pid > 0, f"{service} is not running"
        os.kill(pid, signal.SIGKILL)


def wait_until(what: str, predicate: Callable[[], bool], timeout: float,
               interval: float = 3.0) -> float:
    """Seconds until ``predicate()`` held; AssertionError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- the oracle


@dataclass
class Shop:
    """The sandbox and what the test did to it."""

    sb: Sandbox
    installed_at: datetime
    invalid: set[int] = field(default_factory=set)
    shipped: set[int] = field(default_factory=set)
    added: set[int] = field(default_factory=set)

    def in_scope(self) -> set[str]:
        start = int((self.installed_at - timedelta(days=30)).timestamp())
        return {str(i) for i in self.sb.shopwired.created_ids(start)} - {
            str(i) for i in self.invalid}

    def ship(self, n: int) -> list[int]:
        """Move ``n`` paid, in-scope orders to Shipped (with a tracking URL): each must get
        exactly one ``dispatched`` event."""
        sim = self.sb.shopwired
        shipped = sim.status_by_name("Shipped")
        assert shipped is not None
        scope = self.in_scope()
        picked = []
        for oid in sorted(sim.order_ids(), reverse=True):
            order = sim.get_order(oid)
            if (order is None or str(oid) not in scope or oid in self.shipped
                    or order.get("archived")
                    or str(order["status"].get("name", "")).lower() != "paid"):
                continue
            sim.set_status(oid, shipped["id"], tracking_url=f"https://track.example/{oid}")
            picked.append(oid)
            if len(picked) == n:
                break
        assert len(picked) == n, f"only {len(picked)} paid orders left to ship"
        self.shipped.update(picked)
        return picked

    def add(self, n: int) -> list[int]:
        now = self.sb.clock.now()
        ids = self.sb.shopwired.generate_orders(n, created_between=(now, now))
        self.added.update(ids)
        return ids

    def dispatched_events(self, oid: int) -> int:
        wp = self.sb.wiredplus
        order = wp.order_by_ref(str(oid))
        if order is None:
            return 0
        return sum(1 for e in wp.events_for_order(order["id"])
                   if e.get("event_type") == "dispatched")

    def delivered(self) -> bool:
        """Every in-scope order in WiredPlus, every shipped order with its event."""
        wp_refs = set(self.sb.wiredplus.orders_by_ref)
        return self.in_scope() <= wp_refs and all(
            self.dispatched_events(oid) >= 1 for oid in self.shipped)

    def duplicates(self) -> dict[str, list[str]]:
        """What a customer would notice twice. (An event whose write landed just before its
        worker was killed is sent again after the lease expires: WiredPlus upserts it by
        ``event_reference`` — "Event updated", no second email. Counted apart.)"""
        wp = self.sb.wiredplus
        return {
            "orders_created_twice": sorted(r for r, n in wp.order_creations.items() if n > 1),
            "events_created_twice": sorted(r for r, n in wp.event_creations.items() if n > 1),
            "orders_with_two_dispatched": sorted(
                str(o) for o in self.shipped if self.dispatched_events(o) > 1),
        }

    def event_rewrites(self) -> int:
        """CreateOrderEvent calls that updated an event already there (absorbed resends)."""
        return sum(1 for endpoint, _, action in list(self.sb.wiredplus.write_log)
                   if endpoint == "CreateOrderEvent" and action == "updated")


def settled(dep: Deployment, shop: Shop) -> Callable[[], bool]:
    """Delivered as WiredPlus sees it, and nothing pending in the ledger."""
    def check() -> bool:
        if not shop.delivered():
            return False
        status = dep.status()
        return status["orders"]["pending"] == 0 and status["events"]["pending"] == 0
    return check


# ------------------------------------------------------------------------------ fixtures


def _build_shop(sb: Sandbox) -> set[int]:
    """A year of history, a busy last month, some orders from today, two unmappable ones;
    nothing created near the 30-day scope boundary."""
    now = sb.clock.now()
    sim = sb.shopwired
    sim.generate_orders(int(SHOP_ORDERS * 0.55),
                        created_between=(now - timedelta(days=365), now - timedelta(days=32)))
    sim.generate_orders(int(SHOP_ORDERS * 0.40),
                        created_between=(now - timedelta(days=28), now - timedelta(days=2)))
    sim.generate_orders(SHOP_ORDERS - int(SHOP_ORDERS * 0.55) - int(SHOP_ORDERS * 0.40),
                        created_between=(now - timedelta(hours=20), now - timedelta(minutes=5)))
    return {sim.add_invalid_order("no_email", created=now - timedelta(days=3)),
            sim.add_invalid_order("negative_total", created=now - timedelta(days=2))}


@pytest.fixture(scope="module")
def engine() -> list[str]:
    problem = engine_problem()
    if problem:
        pytest.skip(f"deployment test skipped: {problem}. Start an engine first "
                    "(on these machines: `bash ../shared/tools/docker-engine.sh up`).")
    compose = _compose_command()
    assert compose is not None
    return compose


def _build_stage_images() -> set[str]:
    return set(_run(["docker", "images", "-q", "--no-trunc", "--filter",
                     "label=org.ordersync.stage=build"]).stdout.split())


@pytest.fixture(scope="module")
def image(engine: list[str]) -> Iterator[dict[str, float]]:
    before = _build_stage_images()
    started = time.monotonic()
    res = _run(["docker", "build", "--network", "host", "-t", IMAGE, str(ROOT)], timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    built = time.monotonic() - started

    def size(img: str) -> int:
        return int(_run(["docker", "image", "inspect", "-f", "{{.Size}}", img]).stdout.strip())

    yield {"build_seconds": round(built, 1), "image_mb": round(size(IMAGE) / 1e6, 1),
           "base_mb": round(size(BASE_IMAGE) / 1e6, 1),
           "over_base_mb": round((size(IMAGE) - size(BASE_IMAGE)) / 1e6, 1)}
    if not os.environ.get("ORDERSYNC_DEPLOY_KEEP_IMAGE"):
        _run(["docker", "rmi", IMAGE], timeout=300)
        left = sorted(_build_stage_images() - before)  # this build's own first stage
        if left:
            _run(["docker", "rmi", *left], timeout=300)


# --------------------------------------------------------------------------------- test


def test_compose_deployment_delivers_everything_once_and_logs_json(
    engine: list[str], image: dict[str, float], tmp_path: Path
) -> None:
    figures: dict[str, Any] = {"image": image, "started": datetime.now(UTC).isoformat()}
    host = docker0_address() or "127.0.0.1"
    sb = Sandbox(seed=SEED, host=host)
    invalid = _build_shop(sb)
    sb.start()
    shop = Shop(sb=sb, installed_at=sb.clock.now(), invalid=invalid)

    # The project directory, as the README has a user make it.
    project = tmp_path / "ordersync"
    project.mkdir()
    for name in ("docker-compose.yml", "docker-compose.env", ".env.example"):
        shutil.copy(ROOT / name, project / name)
    shutil.copy(project / ".env.example", project / ".env")
    port = {name: sb._server(name).port for name in ("shopwired", "wiredplus")}
    with (project / ".env").open("a", encoding="utf-8") as env_file:
        env_file.write(connection_env(
            (DOCKER_HOST_NAME, port["shopwired"]), (DOCKER_HOST_NAME, port["wiredplus"]),
            shopwired_credentials=sb.shopwired_credentials,
            wiredplus_credentials=sb.wiredplus_credentials, dotenv=True,
        ) + f"\nSHOPWIRED_WEBHOOK_SECRET={WEBHOOK_SECRET}\n")
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "LANG")}
    env["ORDERSYNC_IMAGE"] = IMAGE
    dep = Deployment(directory=project, project=f"ordersync-deploytest-{os.getpid()}",
                     compose=engine, env=env)
    try:
        _exercise(dep, shop, figures)
    finally:
        if not dep.logs:
            dep.collect_logs()
        failed_logs = {s: lines[-40:] for s, lines in dep.logs.items()}
        dep.run("down", "-v", "--remove-orphans", "-t", "20", check=False)
        sb.stop()
        (tmp_path / "logs.json").write_text(json.dumps(failed_logs, indent=1))
    LAST_RUN.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print("\n" + json.dumps(figures, indent=2))


def _exercise(dep: Deployment, shop: Shop, figures: dict[str, Any]) -> None:
    sb = shop.sb
    services_up = ("poller", "worker", "webhook")

    def healthy() -> bool:
        return (all(dep.health(s) == "healthy" for s in services_up)
                and dep.inspect("migrate", "{{.State.Status}} {{.State.ExitCode}}")
                == "exited 0")

    # 1. up, healthy, the first sync.
    t0 = time.monotonic()
    dep.run("up", "-d")
    figures["up_to_healthy_s"] = round(wait_until("every service healthy", healthy, 240), 1)
    wait_until("first sync delivered", settled(dep, shop), 420, interval=5)
    figures["first_sync_s"] = round(time.monotonic() - t0, 1)
    assert dep.health("migrate") == "exited", "the finished migrate must not look unhealthy"

    # 2. kill -9 the worker while it pushes (WiredPlus slowed so that work is in flight).
    shop.ship(40)
    shop.add(10)
    writes = len(sb.wiredplus.write_log)
    sb.wiredplus.faults.latency_seconds = 0.3
    wait_until("the worker pushing the changes",
               lambda: len(sb.wiredplus.write_log) >= writes + 3, 240, interval=0.2)
    restarts = int(dep.inspect("worker", "{{.RestartCount}}"))
    killed = time.monotonic()
    dep.kill_main_process("worker")
    sb.wiredplus.faults.latency_seconds = 0.0
    figures["worker_kill"] = {
        "writes_before_kill": len(sb.wiredplus.write_log) - writes,
        "restarted_s": round(wait_until(
            "worker restarted by its restart policy",
            lambda: int(dep.inspect("worker", "{{.RestartCount}}")) > restarts
            and dep.inspect("worker", "{{.State.Status}}") == "running", 120, 0.5), 1),
    }
    wait_until("everything delivered after the worker was killed", settled(dep, shop), 480, 5)
    figures["worker_kill"]["recovered_s"] = round(time.monotonic() - killed, 1)

    # 3. kill -9 the poller in the middle of a pass (ShopWired slowed so that the pass lasts).
    shop.ship(20)
    shop.add(10)
    calls = sum(sb.shopwired.calls.values())
    sb.shopwired.faults.latency_seconds = 0.5
    wait_until("the poller's next pass", lambda: sum(sb.shopwired.calls.values()) >= calls + 3,
               180, interval=0.2)
    restarts = int(dep.inspect("poller", "{{.RestartCount}}"))
    killed = time.monotonic()
    dep.kill_main_process("poller")
    sb.shopwired.faults.latency_seconds = 0.0
    figures["poller_kill"] = {
        "restarted_s": round(wait_until(
            "poller restarted by its restart policy",
            lambda: int(dep.inspect("poller", "{{.RestartCount}}")) > restarts
            and dep.inspect("poller", "{{.State.Status}}") == "running", 120, 0.5), 1),
    }
    wait_until("everything delivered after the poller was killed", settled(dep, shop), 420, 5)
    figures["poller_kill"]["recovered_s"] = round(time.monotonic() - killed, 1)

    # 4. down && up -d with changes waiting: resumes from the ledger, sends nothing twice.
    shop.ship(20)
    shop.add(5)
    stopped = time.monotonic()
    dep.run("stop", "-t", "20")
    dep.collect_logs()  # shutdown lines included, before `down` removes the containers
    dep.run("down")  # the volumes stay: the same ledger comes back
    dep.run("up", "-d")
    wait_until("every service healthy after down/up", healthy, 240)
    wait_until("everything delivered after down/up", settled(dep, shop), 420, 5)
    figures["down_up_recovered_s"] = round(time.monotonic() - stopped, 1)

    # 5. What the operator sees, inside the deployment.
    status = dep.status()
    dlq = dep.exec("dlq", "list")
    check = dep.exec("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert dlq.returncode == 0 and dlq.stdout.count("unmappable") == 2, dlq.stdout
    assert status["dead_letters"] == 2 == status["orders"]["skipped"], status
    dep.collect_logs()

    # 6. Exactly once, nothing lost, nobody mailed about history.
    wp = sb.wiredplus
    in_scope = shop.in_scope()
    wp_refs = set(wp.orders_by_ref)
    dups = shop.duplicates()
    history_with_events = sorted(
        ref for ref in wp_refs
        if int(ref) not in shop.shipped and int(ref) not in shop.added
        and sb.shopwired.get_order(int(ref)) is not None
        and _created(sb.shopwired.get_order(int(ref)) or {}) < shop.installed_at
        - timedelta(hours=24)
        and wp.events_for_order(wp.orders_by_ref[ref]))
    figures.update({
        "orders_in_scope": len(in_scope),
        "orders_in_wiredplus": len(wp_refs),
        "orders_missing": len(in_scope - wp_refs),
        "orders_out_of_scope_sent": len(wp_refs - in_scope),
        "events_in_wiredplus": len(wp.events),
        "events_sent_by_ledger": status["events"]["sent"],
        "shipped_by_test": len(shop.shipped),
        "added_by_test": len(shop.added),
        "duplicates": sum(len(v) for v in dups.values()),
        "event_resends_absorbed_by_upsert": shop.event_rewrites(),
        "history_orders_with_events": len(history_with_events),
        "shopwired_429": sb.shopwired.throttled,
        "wiredplus_rejections": len(wp.rejections),
    })
    figures["logs"] = _log_figures(dep.logs)
    assert not in_scope - wp_refs, f"lost: {sorted(in_scope - wp_refs)[:20]}"
    assert not wp_refs - in_scope, f"out of scope sent: {sorted(wp_refs - in_scope)[:20]}"
    assert not any(dups.values()), dups
    assert all(shop.dispatched_events(o) == 1 for o in shop.shipped)
    assert not history_with_events, history_with_events[:20]
    assert status["events"]["sent"] == len(wp.events), (status["events"], len(wp.events))
    assert status["events"]["dead"] == 0 and status["orders"]["dead"] == 0, status
    assert sb.shopwired.throttled == 0
    assert not wp.rejections, wp.rejections[:5]
    assert not sb.server_errors, sb.server_errors[:2]
    for service in ORDERSYNC_SERVICES:
        bad = figures["logs"][service]["not_json_examples"]
        assert not bad, f"{service} wrote lines that are not JSON objects: {bad}"
    assert any('"order.push"' in ln for ln in dep.logs["worker"])
    assert any('"pass.done"' in ln for ln in dep.logs["poller"])
    assert any('"ledger.migrated"' in ln for ln in dep.logs["migrate"])
    assert any('"daemon.stopping"' in ln for ln in dep.logs["poller"])  # graceful stop
    assert any("Warm shutdown" in ln for ln in dep.logs["worker"])
    assert figures["image"]["over_base_mb"] <= 200, figures["image"]


def _created(order: dict[str, Any]) -> datetime:
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(order["created"]).astimezone(UTC)


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _log_figures(logs: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for service, lines in logs.items():
        bad = [ln for ln in lines if not _is_json_object(ln)]
        out[service] = {
            "lines": len(lines),
            "json_pct": round(100 * (len(lines) - len(bad)) / len(lines), 2) if lines else None,
            "not_json_examples": bad[:5] if service in ORDERSYNC_SERVICES else [],
        }
    return out
