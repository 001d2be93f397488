"""Every process of a deployment writes JSON lines only (checked here without Docker; the real
containers are checked by ``test_compose_deployment.py``)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from sync.logs import configure

BIN = Path(sys.executable).parent / "ordersync"


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.strip():
            parsed = json.loads(line)  # raises on a line that is not JSON
            assert isinstance(parsed, dict), line
            out.append(parsed)
    return out


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPWIRED_", "WIREDPLUS_", "ORDERSYNC_", "ELASTICPATH_"))
           and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(ORDERSYNC_LOG_FORMAT="json", ORDERSYNC_METRICS_PORT="0", **extra)
    return env


@pytest.fixture
def restore_logging() -> Any:
    """Leave the process's logging as the test found it."""
    import structlog

    from sync import logs

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config, state = structlog.get_config(), dict(logs._state)
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    structlog.configure(**config)
    logs._state.update(state)


def test_library_logging_and_warnings_become_json_lines(restore_logging: None) -> None:
    buf = io.StringIO()
    configure("json", "info", stream=buf)
    logging.getLogger("celery.worker.consumer").info("Connected to %s", "redis://redis:6379/0")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    logging.getLogger("httpx").info("HTTP Request: POST https://api.example/v1 200 OK")
    logging.getLogger("kombu").warning("mail me at someone@example.com")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library warning", UserWarning, stacklevel=1)
    lines = _lines(buf.getvalue())
    by_logger = {ln.get("logger"): ln for ln in lines}
    assert by_logger["celery.worker.consumer"]["event"] == "Connected to redis://redis:6379/0"
    assert by_logger["celery.worker.consumer"]["level"] == "info"
    assert by_logger["uvicorn.error"]["event"] == "Started server process [1]"
    assert "httpx" not in by_logger  # one line per request is the order.push line's job
    assert "someone" not in by_logger["kombu"]["event"]  # the same redaction as our lines
    assert "a library warning" in by_logger["py.warnings"]["event"]
    assert all("timestamp" in ln for ln in lines)


def test_reconfiguring_never_duplicates_lines(restore_logging: None) -> None:
    buf = io.StringIO()
    configure("json", stream=io.StringIO())
    configure("json", stream=buf)
    logging.getLogger("celery").warning("once")
    assert len(_lines(buf.getvalue())) == 1


def test_migrate_and_a_fatal_error_are_json_lines(tmp_path: Path) -> None:
    env = _env(DATABASE_URL=f"sqlite:///{tmp_path / 'l.db'}")
    res = subprocess.run([str(BIN), "migrate"], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = _lines(res.stdout + res.stderr)
    events = [ln["event"] for ln in lines]
    assert events.count("ledger.migration") >= 2 and events[-1] == "ledger.migrated"

    env["ORDERSYNC_POLL_INTERVAL"] = "soon-ish"
    res = subprocess.run([str(BIN), "run"], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 2
    (line,) = _lines(res.stdout + res.stderr)
    assert line["event"] == "ordersync.exit" and "ORDERSYNC_POLL_INTERVAL" in line["error"]


@pytest.mark.redis
def test_celery_worker_and_its_pool_write_json_lines_only(tmp_path: Path) -> None:
    """No banner, no `[… WARNING/ForkPoolWorker-1]` wrapping, no DuplicateTaskNameWarning, and
    the warm-shutdown notice is a JSON line too."""
    import redis

    url = "redis://127.0.0.1:6379/13"  # not the suites' database: this worker consumes
    broker = redis.Redis.from_url(url, socket_timeout=3)
    try:
        kombu_keys_before = set(broker.keys("_kombu*"))
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    env = _env(DATABASE_URL=f"sqlite:///{tmp_path / 'l.db'}", REDIS_URL=url,
               WIREDPLUS_API_USER="u", WIREDPLUS_API_KEY="k")
    subprocess.run([str(BIN), "migrate"], env=env, capture_output=True, timeout=120,
                   cwd=tmp_path, check=True)
    proc = subprocess.Popen([str(BIN), "worker", "--concurrency", "2"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and "ready." not in seen:
            seen += proc.stdout.readline()
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = set(broker.keys("_kombu*")) - kombu_keys_before  # only what this worker made
        if left:
            broker.delete(*left)
    lines = _lines(seen + rest)
    text = seen + rest
    assert proc.returncode == 0, text[-2000:]
    assert "DuplicateTaskNameWarning" not in text
    assert any(ln["event"].endswith("ready.") for ln in lines)
    assert any(ln.get("message", "").startswith("worker: Warm shutdown") for ln in lines)


def test_sandbox_prints_its_settings_for_a_dotenv_file() -> None:
    from typer.testing import CliRunner

    from sync.cli import app

    res = CliRunner().invoke(app, ["sandbox", "--print-dotenv", "--port-shopwired", "9001"])
    assert res.exit_code == 0, res.output
    values = dict(line.split("=", 1) for line in res.output.splitlines())
    assert values["SHOPWIRED_BASE_URL"] == "http://host.docker.internal:9001/v1"
    assert values["WIREDPLUS_BASE_URL"] == "http://host.docker.internal:8082/v1"
    assert values["SHOPWIRED_API_KEY"] and values["WIREDPLUS_API_KEY"]
    res = CliRunner().invoke(app, ["sandbox", "--print-env", "--host", "0.0.0.0"])
    assert "SHOPWIRED_BASE_URL=http://127.0.0.1:8081/v1" in res.output
