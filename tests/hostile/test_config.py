"""Rows 7, 8 and 11 of issue #12: every configuration mistake is one line naming the variable
and exit 2; nonsense values are rejected with their allowed range; blank values mean unset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from config.settings import load_settings
from sync.cli import app
from sync.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _logging_as_a_fresh_process() -> Any:
    """Each command runs as in a fresh process: no logging configured by an earlier test
    (whose stream the exit line would otherwise go to)."""
    import structlog

    from sync import logs

    config, state = structlog.get_config(), dict(logs._state)
    logs._state["json"] = None
    yield
    structlog.configure(**config)
    logs._state.update(state)


def _one_line_exit_2(result: Any, name: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    if lines[0].startswith("{"):  # JSON logs and no terminal: the line is a log record
        record = json.loads(lines[0])
        assert record["event"] == "ordersync.exit" and record["exit_code"] == 2, lines[0]
        assert name in record["error"], lines[0]
    else:
        assert lines[0].startswith("ordersync:") and name in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "latin1.toml").write_bytes(b"[statuses]\n\xff\xfe = 'x'\n")
    (tmp_path / "broken.toml").write_text("[statuses\n", encoding="utf-8")
    (tmp_path / "dir").mkdir()
    return {"latin1": str(tmp_path / "latin1.toml"), "broken": str(tmp_path / "broken.toml"),
            "dir": str(tmp_path / "dir"), "missing": str(tmp_path / "nope")}


ROW7 = [
    ("SHOPWIRED_API_SECRET_FILE", "{missing}", "SHOPWIRED_API_SECRET_FILE"),
    ("SHOPWIRED_API_SECRET_FILE", "{dir}", "SHOPWIRED_API_SECRET_FILE"),
    ("WIREDPLUS_API_KEY_FILE", "{latin1}", "WIREDPLUS_API_KEY_FILE"),
    ("DATABASE_URL", "garbage", "DATABASE_URL"),
    ("DATABASE_URL", "mysql://u@h/db", "DATABASE_URL"),
    ("REDIS_URL", "notaurl", "REDIS_URL"),
    ("REDIS_URL", "redis://host:port/0", "REDIS_URL"),
    ("ORDERSYNC_STATUS_MAP", "{latin1}", "ORDERSYNC_STATUS_MAP"),
    ("ORDERSYNC_STATUS_MAP", "{broken}", "ORDERSYNC_STATUS_MAP"),
    ("ORDERSYNC_STATUS_MAP", "{dir}", "ORDERSYNC_STATUS_MAP"),
    ("ORDERSYNC_STATUS_MAP", "{missing}", "ORDERSYNC_STATUS_MAP"),
    ("ORDERSYNC_WINDOW_OVERLAP", "99999999999d", "ORDERSYNC_WINDOW_OVERLAP"),
    ("ORDERSYNC_FIRST_SIGHT_EVENT_WINDOW", "1e400", "ORDERSYNC_FIRST_SIGHT_EVENT_WINDOW"),
]


@pytest.mark.parametrize("command", [["status"], ["dlq", "list"], ["check"], ["poll", "--once"],
                                     ["run"], ["webhook"], ["health"]])
@pytest.mark.parametrize("name, value, named", ROW7)
def test_row7_each_mistake_is_one_line_and_exit_2(
    files: dict[str, str], name: str, value: str, named: str, command: list[str]
) -> None:
    result = CliRunner().invoke(app, command, env={name: value.format(**files)})
    line = _one_line_exit_2(result, named)
    assert "garbage" not in line and "notaurl" not in line  # the value is never echoed


def test_row7_an_unmigrated_database_is_one_line_for_dlq_list(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
           "REDIS_URL": "redis://127.0.0.1:6379/0"}
    for command in (["dlq", "list"], ["dlq", "list", "--json"], ["status"], ["show", "1"]):
        line = _one_line_exit_2(CliRunner().invoke(app, command, env=env), "migrate")
        assert "no schema" in line


def test_row7_in_a_real_process_no_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "garbage", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "sync", "dlq", "list"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "DATABASE_URL" in r.stderr and "Traceback" not in r.stderr


ROW8 = [
    ("ORDERSYNC_START_DATE", "2999-01-01", "between 2000-01-01 and today"),
    ("ORDERSYNC_START_DATE", "1970-01-01", "between 2000-01-01 and today"),
    ("ORDERSYNC_POLL_INTERVAL", "inf", "allowed: 1 to 86400"),
    ("ORDERSYNC_POLL_INTERVAL", "nan", "allowed: 1 to 86400"),
    ("ORDERSYNC_POLL_INTERVAL", "1e-9", "allowed: 1 to 86400"),
    ("ORDERSYNC_POLL_INTERVAL", "-5", "allowed: 1 to 86400"),
    ("ORDERSYNC_RETRY_BASE", "0", "between 1s and 1h"),
    ("ORDERSYNC_RETRY_BASE", "-5", "between 1s and 1h"),
    ("ORDERSYNC_SETTLE_DELAY", "400d", "between 0s and 1d"),
    ("ORDERSYNC_LEASE", "30d", "between 90s and 1d"),
    ("ORDERSYNC_SHOPWIRED_RATE", "inf", "allowed: more than 0 to 10000"),
    ("ELASTICPATH_RATE", "0", "allowed: more than 0 to 10000"),
    ("ORDERSYNC_MAX_ATTEMPTS", "0", "allowed: 1 to 1000"),
    ("ORDERSYNC_WEBHOOK_PORT", "99999", "allowed: 1 to 65535"),
]


@pytest.mark.parametrize("name, value, allowed", ROW8)
def test_row8_nonsense_values_are_rejected_with_their_range(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value) and allowed in str(info.value), str(info.value)


def test_row8_health_is_never_reached_with_a_future_start(tmp_path: Path) -> None:
    env = {"ORDERSYNC_START_DATE": "2999-01-01",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"}
    _one_line_exit_2(CliRunner().invoke(app, ["health"], env=env), "ORDERSYNC_START_DATE")


def test_row11_env_example_copied_as_is_is_valid(tmp_path: Path) -> None:
    """`.env` copied from `.env.example` (with its blank values) loads, and the blank
    ``ORDERSYNC_STATUS_MAP=`` is not a path."""
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    settings = load_settings()
    assert settings.status_map is None and settings.redis_url is None
    assert settings.start_date is None and settings.reference_prefix == ""
    from sync.service.runtime import load_status_map

    load_status_map(settings)  # was: "cannot read . (Is a directory)"
    # As copied (no credentials yet): `check` does not call it valid.
    result = CliRunner().invoke(app, ["check"])
    line = _one_line_exit_2(result, "SHOPWIRED_API_KEY")
    assert "configuration is valid" not in result.output and "missing" in line
    # Credentials filled in, everything else as in the example: valid, and no blank value
    # is read as a path.
    text = (tmp_path / ".env").read_text()
    for name in ("SHOPWIRED_API_KEY", "SHOPWIRED_API_SECRET", "WIREDPLUS_API_USER",
                 "WIREDPLUS_API_KEY"):
        text = text.replace(f"\n{name}=\n", f"\n{name}=x\n")
    text = text.replace("https://api.ecommerceapi.uk/v1", "http://127.0.0.1:9/v1")
    text = text.replace("https://api.wiredplus.com/v1", "http://127.0.0.1:9/v1")
    (tmp_path / ".env").write_text(text)
    result = CliRunner().invoke(app, ["check"])
    assert "configuration is valid" in result.output, result.output
    assert "cannot read" not in result.output and "Traceback" not in result.output
    assert "ORDERSYNC_STATUS_MAP" not in result.output


@pytest.mark.parametrize("blank", ["", "   "])
def test_row11_blank_environment_values_mean_unset(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    for name in ("ORDERSYNC_STATUS_MAP", "ORDERSYNC_START_DATE", "REDIS_URL",
                 "ORDERSYNC_POLL_INTERVAL", "ORDERSYNC_STATUS_MAP_FILE", "DATABASE_URL"):
        monkeypatch.setenv(name, blank)
    settings = load_settings()
    assert settings.status_map is None and settings.poll_interval == 60
    assert settings.database_url.startswith("sqlite")
