"""Configuration: public names, defaults, *_FILE secrets, and one clear message on errors."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from config.settings import Settings, env_names, load_settings
from sync.errors import ConfigError

PUBLIC = {
    "SHOPWIRED_BASE_URL", "SHOPWIRED_API_KEY", "SHOPWIRED_API_SECRET", "WIREDPLUS_BASE_URL",
    "WIREDPLUS_API_USER", "WIREDPLUS_API_KEY", "DATABASE_URL", "REDIS_URL",
    "ORDERSYNC_POLL_INTERVAL", "ORDERSYNC_CURRENCY", "ORDERSYNC_START_DATE",
    "ORDERSYNC_STATUS_MAP", "ORDERSYNC_FIRST_SIGHT_EVENT_WINDOW",
}


def test_public_names_exist():
    assert set(env_names()) >= PUBLIC


def test_defaults():
    s = load_settings()
    assert s.shopwired_base_url == "https://api.ecommerceapi.uk/v1"
    assert s.wiredplus_base_url == "https://api.wiredplus.com/v1"
    assert s.database_url == "sqlite:///./ordersync.db"
    assert s.redis_url is None and s.embedded
    assert s.poll_interval == 60
    assert s.currency == "GBP"
    assert s.first_sight_event_window == timedelta(hours=24)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert s.effective_start(now) == now - timedelta(days=30)


def test_durations_and_dates(monkeypatch):
    monkeypatch.setenv("ORDERSYNC_FIRST_SIGHT_EVENT_WINDOW", "90m")
    monkeypatch.setenv("ORDERSYNC_START_DATE", "2026-02-01")
    monkeypatch.setenv("ORDERSYNC_CURRENCY", "eur")
    s = load_settings()
    assert s.first_sight_event_window == timedelta(minutes=90)
    assert s.start_date == datetime(2026, 2, 1, tzinfo=UTC)
    assert s.currency == "EUR"


def test_secret_from_file(monkeypatch, tmp_path):
    (tmp_path / "key").write_text("s3cret-value\n")
    monkeypatch.setenv("WIREDPLUS_API_KEY_FILE", str(tmp_path / "key"))
    s = load_settings()
    assert s.wiredplus_api_key is not None
    assert s.wiredplus_api_key.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(s)


def test_dotenv_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("ORDERSYNC_POLL_INTERVAL=15\n")
    assert load_settings().poll_interval == 15


@pytest.mark.parametrize(
    "name, value",
    [
        ("ORDERSYNC_POLL_INTERVAL", "soon"),
        ("ORDERSYNC_CURRENCY", "pounds"),
        ("WIREDPLUS_BASE_URL", "not a url"),
        ("ORDERSYNC_START_DATE", "last tuesday"),
    ],
)
def test_bad_value_names_the_variable_and_hides_the_value(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)
    assert value not in str(info.value)


def test_missing_credentials_are_named():
    with pytest.raises(ConfigError, match=r"SHOPWIRED_API_KEY.*WIREDPLUS_API_KEY"):
        Settings().require_credentials()


def test_cli_reports_config_errors_in_one_line_without_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ORDERSYNC_POLL_INTERVAL": "soon",
           "WIREDPLUS_API_KEY": "topsecret"}
    r = subprocess.run([sys.executable, "-m", "sync", "poll", "--once"], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert "ORDERSYNC_POLL_INTERVAL" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "topsecret" not in r.stderr + r.stdout


def test_cli_names_missing_credentials(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sync", "poll", "--once"], env={"PATH": "/usr/bin"},
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert "SHOPWIRED_API_KEY" in r.stderr and "Traceback" not in r.stderr


def test_a_lease_shorter_than_one_wiredplus_call_is_refused(monkeypatch):
    """A lease that can expire while an UpdateOrder is on its way would let that older payload
    land after a newer push taken over from it."""
    import inspect

    from config.settings import MIN_LEASE
    from sync.httpclient import DEFAULT_TIMEOUT
    from sync.sinks.wiredplus import WiredPlusClient

    limiter_wait = inspect.signature(WiredPlusClient).parameters["max_limiter_wait"].default
    worst = limiter_wait + (DEFAULT_TIMEOUT.connect or 0) + (DEFAULT_TIMEOUT.read or 0)
    assert MIN_LEASE.total_seconds() >= worst
    monkeypatch.setenv("ORDERSYNC_LEASE", "30s")
    with pytest.raises(ConfigError, match="ORDERSYNC_LEASE"):
        load_settings()
    monkeypatch.setenv("ORDERSYNC_LEASE", "5m")
    assert load_settings().lease == timedelta(minutes=5)
