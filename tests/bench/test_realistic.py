"""The realistic first-sync benchmark (``bench/realistic.py``): its floor arithmetic, its
extrapolation, the BENCHMARKS.md section it keeps, and a quick run of the real plumbing
(sandbox process with latency and enforced budgets → ``ordersync run`` → figures)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import realistic  # noqa: E402
from bench.realistic import FULL, Scenario  # noqa: E402


def test_the_floor_is_whichever_budget_binds_plus_one_latency_each() -> None:
    # 10,000 orders: 100 list calls at 2/s = 50 s; 200 bulk calls at 5,000/h = 144 s.
    bulk = realistic.floor(10_000, FULL, bulk=True)
    assert bulk["read_calls"] == 100 and bulk["write_calls"] == 200
    assert bulk["read_s"] == pytest.approx(50.0)
    assert bulk["write_s"] == pytest.approx(144.0)
    assert bulk["floor_s"] == pytest.approx(144.0 + 0.35)
    assert bulk["binds"] == "WiredPlus budget"
    # single calls: 10,000 at 5,000/h = 2 hours (the figure)
    single = realistic.floor(10_000, FULL, bulk=False)
    assert single["write_s"] == pytest.approx(7200.0)
    # a generous budget leaves ShopWired's bucket binding
    rich = realistic.floor(10_000, Scenario(hourly_budget=1_000_000), bulk=True)
    assert rich["binds"] == "ShopWired bucket" and rich["floor_s"] == pytest.approx(50.35)
    assert realistic.floor(1, FULL, bulk=True)["write_calls"] == 1


def test_extrapolation_from_the_second_half_never_below_the_floor() -> None:
    progress = [(0.0, 0), (10.0, 500), (20.0, 510), (40.0, 530)]
    # second half: from t=20 (510) to t=40 (530) = 1 order/s
    assert realistic.second_half_rate(progress) == pytest.approx(1.0)
    assert realistic.extrapolate(1000, 40.0, 530, 1.0) == pytest.approx(510.0)
    assert realistic.extrapolate(500, 40.0, 530, 1.0) == 40.0
    assert realistic.extrapolate(1000, 40.0, 530, 0.0) is None
    # a rate measured in the client's start-up burst cannot outlast the budget: the rest goes
    # at 5,000/h = 1.39 orders/s for single calls, 50 times that for bulk calls
    assert realistic.sustained_rate(FULL, bulk=False) == pytest.approx(5000 / 3600)
    assert realistic.sustained_rate(FULL, bulk=True) == pytest.approx(50 * 5000 / 3600)
    capped = {"orders": 1000, "done": 827, "elapsed_s": 241.0, "rate_second_half": 2.33,
              "bulk_requests": 0}
    assert realistic.projected(capped, 1000, FULL) == pytest.approx(241 + 173 * 0.72)
    assert realistic.projected(capped, 10_000, FULL) == pytest.approx(241 + 9173 * 0.72)
    slow = dict(capped, rate_second_half=0.5)
    assert realistic.projected(slow, 1000, FULL) == pytest.approx(241 + 173 / 0.5)
    stuck = dict(capped, done=499, rate_second_half=0.0, complete=False)
    assert realistic.stalled(stuck) and not realistic.stalled(dict(capped, complete=False))
    assert realistic.projected(stuck, 1000, FULL) == pytest.approx(241 + 501 * 0.72)
    done = dict(capped, done=1000, elapsed_s=300.0)
    assert realistic.projected(done, 1000, FULL) == 300.0


def _results(commit: str, minutes: float) -> dict[str, Any]:
    sc = Scenario(sizes=(1_000,), modes=("embedded",))
    run = {"label": "embedded-1000", "mode": "embedded", "orders": 1000, "complete": False,
           "done": 600, "elapsed_s": 240.0, "rate_second_half": 1.39,
           "time_to_sync_s": minutes * 60, "shopwired_calls": 13, "shopwired_429": 0,
           "wiredplus_calls": 601, "wiredplus_429": 0, "bulk_requests": 0,
           "orders_sent_twice_or_more": 0,
           "machine": {"busy_cores": 1.2, "foreign_cores": 0.4}}
    results: dict[str, Any] = {"started": f"2026-12-02 1{minutes:.0f}:00 UTC", "commit": commit,
                               "scenario": realistic.asdict(sc), "runs": [run], "notes": [],
                               "duration_s": 250.0}
    results["table"] = realistic.table(sc, [run])
    assert results["table"][0]["source"] == "capped"
    assert results["table"][1]["source"] == "extrapolated"  # 10k from the 1k run
    results["latency_only"] = dict(run, label="embedded-2000-latency-only", orders=2000,
                                   complete=True, done=2000, time_to_sync_s=430.0)
    return results


def test_the_benchmarks_section_is_replaced_and_keeps_its_history(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# ordersync benchmarks\n\nIntro.\n\n## 2026-11-29 — full run\n\nold\n")
    realistic.update_markdown(path, _results("aaa1111", 8))
    realistic.update_markdown(path, _results("bbb2222", 9))
    text = path.read_text()
    assert text.startswith("# ordersync benchmarks\n\nIntro.\n\n## Realistic scenario")
    assert text.count("## Realistic scenario") == 1 and text.count("### Latest run") == 1
    assert "`bbb2222`" in text.split("### History")[0]  # the latest run is the newest
    history = [ln for ln in text.split("### History")[1].splitlines() if ln.startswith("| 2")]
    assert len(history) == 2 and "bbb2222" in history[0] and "aaa1111" in history[1]
    assert "BulkOrderUpdate" in text
    assert "capped, extrapolated" in text and "extrapolated from embedded-1000" in text
    assert "| embedded-2000-latency-only | **7.2 min** | ≤ 60 s | not met |" in text
    assert text.rstrip().endswith("old")  # the dated sections are untouched


@pytest.mark.slow
def test_quick_realistic_run_syncs_every_order_once_within_the_budgets(
    tmp_path: Path,
) -> None:
    sc = realistic.QUICK
    ctx = realistic.Context(work=tmp_path, redis_db=11, log=lambda _: None)
    r = realistic.first_sync(ctx, sc, orders=sc.sizes[0], mode="embedded")
    assert r["complete"] and r["done"] == sc.sizes[0]
    assert r["orders_sent_twice_or_more"] == 0 and r["duplicate_orders"] == 0
    assert r["shopwired_429"] == 0 and r["wiredplus_429"] == 0 and r["rejections"] == 0
    # issue 17: the orders go out as one BulkOrderUpdate, not one call each
    assert r["bulk_requests"] >= 1
    assert r["time_to_sync_s"] <= sc.cap_s


def test_the_sandbox_process_counts_each_accepted_bulk_record_as_one_order_write() -> None:
    import base64

    import httpx

    from bench.sandbox_proc import Recorder
    from sync.clock import FakeClock
    from sync.sandbox import WiredPlusSimulator

    sim = WiredPlusSimulator(clock=FakeClock())
    rec = Recorder(sim.handle)
    good = {"api_reference_id": "1", "order_reference": "1", "customer_email": "a@b.co",
            "order_lines": [{"order_line_id": "1-1", "quantity": 1}]}
    bad = dict(good, api_reference_id="2", customer_email="nope")
    request = httpx.Request("POST", "http://x/v1/BulkOrderUpdate",
                            json={"orders": [good, bad, dict(good, api_reference_id="3")]},
                            headers={"authorization": "Basic "
                                     + base64.b64encode(b"sandbox:sandbox-key").decode()})
    assert rec(request).status_code == 200
    snap = rec.snapshot(times=False, refs=True)
    assert snap["refs"] == {"UpdateOrder:1": 1, "UpdateOrder:3": 1}
    assert snap["last_write"] > 0
