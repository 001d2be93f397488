"""``ordersync sandbox`` flags for realistic APIs: latency with jitter, BulkOrderUpdate switches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "ordersync"


def test_sandbox_serves_slow_apis_and_an_account_without_bulk() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPWIRED_", "WIREDPLUS_"))}
    proc = subprocess.Popen(
        [str(BIN), "sandbox", "--orders", "5", "--activity", "0", "--port-shopwired", "0",
         "--port-wiredplus", "0", "--wiredplus-latency", "0.3", "--latency-jitter", "0.05",
         "--no-bulk", "--max-update-rows", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        with httpx.Client(base_url=info["wiredplus_url"],
                          auth=tuple(info["wiredplus_credentials"])) as c:
            started = time.monotonic()
            account = c.get("/GetAccountInfo")
            assert time.monotonic() - started >= 0.25
            assert account.json()["max_update_rows"] == 20
            refused = c.post("/BulkOrderUpdate", json={"orders": []})
            assert refused.status_code == 403
            assert "not enabled" in refused.json()["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            # Ctrl-C stops it; 60 s because CI runs the Docker deployment test beside this
            # one on 2 cores (once, 15 s were not enough to get scheduled).
            assert proc.wait(timeout=60) is not None
        finally:
            if proc.poll() is None:
                proc.kill()


def test_sandbox_refuses_a_negative_latency() -> None:
    res = subprocess.run([str(BIN), "sandbox", "--wiredplus-latency", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "must be >= 0" in res.stderr
