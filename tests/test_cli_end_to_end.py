"""The `ordersync` command as a user runs it: real processes, real HTTP to a served sandbox,
real Redis and real Celery workers. Marked slow; they still run in CI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sync.ledger.models import OrderState
from sync.ledger.store import Ledger
from sync.sandbox import Sandbox

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "ordersync"


def _base_env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("SHOPWIRED_", "WIREDPLUS_", "ORDERSYNC_"))
            and k not in ("DATABASE_URL", "REDIS_URL")}
    keep["ORDERSYNC_LOG_FORMAT"] = "json"
    return keep


@pytest.fixture
def served() -> Iterator[Sandbox]:
    sb = Sandbox(seed=11)
    now = sb.clock.now()
    sb.shopwired.generate_orders(40, created_between=(now - timedelta(days=20),
                                                      now - timedelta(minutes=5)))
    with sb:
        yield sb


def _env_for(sb: Sandbox, db_url: str, **extra: str) -> dict[str, str]:
    env = _base_env()
    key, secret = sb.shopwired_credentials
    user, wkey = sb.wiredplus_credentials
    env.update(
        SHOPWIRED_BASE_URL=sb.shopwired_url, SHOPWIRED_API_KEY=key, SHOPWIRED_API_SECRET=secret,
        WIREDPLUS_BASE_URL=sb.wiredplus_url, WIREDPLUS_API_USER=user, WIREDPLUS_API_KEY=wkey,
        DATABASE_URL=db_url, ORDERSYNC_SETTLE_DELAY="1s",
    )
    env.update(extra)
    return env


def _run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_missing_configuration_is_one_clear_line_naming_the_variables(tmp_path: Path) -> None:
    env = _base_env()
    env["WIREDPLUS_API_KEY"] = "super-secret-value"
    res = _run(["poll", "--once"], env)
    assert res.returncode == 2
    assert "SHOPWIRED_API_KEY" in res.stderr and "WIREDPLUS_API_USER" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "super-secret-value" not in res.stderr + res.stdout


def test_invalid_setting_is_named_without_echoing_its_value() -> None:
    env = _base_env()
    env["ORDERSYNC_POLL_INTERVAL"] = "soon-ish"
    res = _run(["status"], env)
    assert res.returncode == 2
    assert "ORDERSYNC_POLL_INTERVAL" in res.stderr
    assert "soon-ish" not in res.stderr and "Traceback" not in res.stderr


def test_poll_once_in_embedded_mode_syncs_everything_and_status_reports_it(
    served: Sandbox, tmp_path: Path
) -> None:
    env = _env_for(served, f"sqlite:///{tmp_path / 'ledger.db'}")
    res = _run(["poll", "--once"], env)
    assert res.returncode == 0, res.stderr
    assert len(served.wiredplus.orders) == 40
    lines = [json.loads(x) for x in res.stderr.splitlines() + res.stdout.splitlines()
             if x.startswith("{")]
    pushes = [x for x in lines if x.get("event") == "order.push"]
    assert len(pushes) == 40 and all("duration_ms" in p and p["outcome"] == "synced"
                                     for p in pushes)
    blob = res.stderr + res.stdout
    assert served.shopwired_credentials[1] not in blob
    assert served.wiredplus_credentials[1] not in blob
    assert "@" not in "".join(json.dumps(p) for p in pushes).replace("***@", "")
    health = _run(["health"], env)
    assert health.returncode == 0, health.stderr
    status = _run(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["orders"]["synced"] == 40 and data["last_successful_pass"]


def test_check_reports_both_apis_reachable(served: Sandbox, tmp_path: Path) -> None:
    res = _run(["check"], _env_for(served, f"sqlite:///{tmp_path / 'l.db'}"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ShopWired reachable" in res.stdout and "WiredPlus reachable" in res.stdout


def test_check_fails_clearly_on_wrong_credentials(served: Sandbox, tmp_path: Path) -> None:
    env = _env_for(served, f"sqlite:///{tmp_path / 'l.db'}", WIREDPLUS_API_KEY="nope")
    res = _run(["check"], env)
    assert res.returncode == 1
    assert "WiredPlus" in res.stdout and "nope" not in res.stdout


@pytest.mark.redis
@pytest.mark.postgres
def test_poller_and_real_celery_workers_on_redis_deliver_every_order_once(
    served: Sandbox, tmp_path: Path, pg_url: str
) -> None:
    import redis

    broker = "redis://127.0.0.1:6379/7"
    try:
        redis.Redis.from_url(broker).flushdb()
    except Exception:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis not reachable")
    db_url = pg_url
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    env = _env_for(served, db_url, REDIS_URL=broker, ORDERSYNC_METRICS_PORT=str(metrics_port))
    migrate = _run(["migrate"], env)
    assert migrate.returncode == 0, migrate.stderr
    worker = subprocess.Popen(
        [str(BIN), "worker", "--concurrency", "2"], env=env,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "worker.log").open("w"),
    )
    try:
        res = _run(["poll", "--once"], env)
        assert res.returncode in (0, 1), res.stderr
        ledger = Ledger(db_url)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if ledger.counts().orders[OrderState.SYNCED] == 40:
                break
            time.sleep(0.5)
        counts = ledger.counts()
        ledger.dispose()
        assert counts.orders[OrderState.SYNCED] == 40, (
            counts, (tmp_path / "worker.log").read_text()[-3000:])
        assert len(served.wiredplus.orders) == 40
        assert all(n == 1 for n in served.wiredplus.order_creations.values())
        import urllib.request

        text = urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        # Every order counted once, summed over the prefork children (whether the pushes went
        # out one UpdateOrder each or as BulkOrderUpdate batches, the product default).
        pushed = [ln for ln in text.splitlines()
                  if ln.startswith("ordersync_orders_pushed_total{")
                  and 'outcome="synced"' in ln and 'store="shopwired"' in ln]
        assert pushed, text[-3000:]
        assert sum(float(ln.split()[-1]) for ln in pushed) == 40
        assert "ordersync_api_calls_total{api=\"wiredplus\"" in text
        assert 'ordersync_ledger_orders{state="synced",store="shopwired"} 40.0' in text
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]


def test_sigterm_stops_the_daemon_mid_pass_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    sb = Sandbox(seed=21, shopwired_rate_limit=False, hourly_limit=1_000_000)
    now = sb.clock.now()
    sb.shopwired.generate_orders(1500, created_between=(now - timedelta(days=20),
                                                        now - timedelta(minutes=5)))
    with sb:
        env = _env_for(sb, f"sqlite:///{tmp_path / 'l.db'}", ORDERSYNC_SHOPWIRED_RATE="50",
                       ORDERSYNC_WIREDPLUS_HOURLY_LIMIT="1000000")
        proc = subprocess.Popen([str(BIN), "run"], env=env, stdout=subprocess.DEVNULL,
                                stderr=(tmp_path / "run.log").open("w"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(sb.wiredplus.orders) < 50:
            time.sleep(0.05)
        assert 0 < len(sb.wiredplus.orders) < 1500, "the pass should be under way"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        took = time.monotonic() - sent
        log = (tmp_path / "run.log").read_text()
        assert code == 0, log[-2000:]
        assert took < 10
        assert "daemon.stop" in log and "Traceback" not in log
        # The next run finishes the job: every order once, none lost.
        res = _run(["poll", "--once"], env)
        assert res.returncode == 0, res.stderr[-2000:]
        assert len(sb.wiredplus.orders) == 1500
        assert all(n == 1 for n in sb.wiredplus.order_creations.values())


def test_roles_refuse_an_unmigrated_database_with_one_clear_line(
    served: Sandbox, tmp_path: Path
) -> None:
    env = _env_for(served, f"sqlite:///{tmp_path / 'fresh.db'}",
                   REDIS_URL="redis://127.0.0.1:6379/7")
    for args in (["worker"], ["poll", "--once"], ["status"]):
        res = _run(args, env, timeout=60)
        assert res.returncode == 2, (args, res.stderr)
        assert "ordersync migrate" in res.stderr and "Traceback" not in res.stderr
    assert _run(["migrate"], env).returncode == 0
    health = _run(["health", "--no-pass-check"], env)
    assert health.returncode == 0, health.stderr


def test_health_fails_when_no_pass_ever_succeeded(served: Sandbox, tmp_path: Path) -> None:
    env = _env_for(served, f"sqlite:///{tmp_path / 'h.db'}")
    assert _run(["migrate"], env).returncode == 0
    res = _run(["health"], env)
    assert res.returncode == 1 and "no successful pass yet" in res.stderr


def test_sandbox_print_env_matches_the_served_credentials() -> None:
    res = _run(["sandbox", "--print-env", "--port-shopwired", "1", "--port-wiredplus", "2"],
               _base_env())
    assert res.returncode == 0
    sb = Sandbox()
    assert f"SHOPWIRED_API_SECRET={sb.shopwired_credentials[1]}" in res.stdout
    assert f"WIREDPLUS_API_USER={sb.wiredplus_credentials[0]}" in res.stdout
    assert "http://127.0.0.1:1/v1" in res.stdout
