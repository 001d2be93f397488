"""``BENCHMARKS.md`` keeps one throughput section (latest run + history), not a section per run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import realistic, report  # noqa: E402
from bench.mdsection import update_section  # noqa: E402


def _results(started: str, commit: str, rate: float) -> dict[str, Any]:
    run = {
        "label": "broker-4w-10k", "mode": "broker", "db": "postgres", "workers": 4,
        "orders": 10_000, "orders_per_s": rate, "cpu_ms_per_order": 2.5,
        "cpu_ms_per_order_poller": 0.8, "cpu_ms_per_order_worker_main": 0.1,
        "cpu_ms_per_order_worker_children": 1.6, "shopwired_calls": 103,
        "shopwired_calls_per_1000": 10.30, "shopwired_design_calls": 103,
        "wiredplus_update_calls": 10_000, "wiredplus_event_calls": 0,
        "orders_sent_once": 10_000, "orders_sent_twice_or_more": 0,
        "peak_rss_mb": {"poller": 118.0, "worker": 107.0, "worker/child": 107.0},
        "rss_mb_per_1000_orders": {"poller": 0.29, "worker": 0.0, "worker/child": 0.06},
        "sandbox_cpu_share": 0.28, "machine": {"busy_cores": 1.9, "foreign_cores": 0.07},
    }
    return {
        "meta": {"mode": "full", "started": started, "cpus": 2, "cpu_model": "AMD EPYC",
                 "ram_gb": 24.0, "python": "3.11.7", "postgres": "15", "commit": commit,
                 "duration_s": 407.0},
        "throughput": [run], "notes": [f"note of {commit}"],
    }


def _write(path: Path, results: dict[str, Any]) -> None:
    report.update_markdown(path, results, report.evaluate(results))


OTHER = ("# ordersync benchmarks\n\nIntro.\n\n## Realistic scenario (issue 17)\n\nrealistic\n\n"
         "## Change latency (issue 4)\n\nlatency\n")


def test_a_second_run_replaces_the_section_and_adds_one_history_row(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(OTHER, encoding="utf-8")
    _write(path, _results("2026-12-01 10:00 UTC", "aaa1111", 480.0))
    first = path.read_text(encoding="utf-8")
    assert first.startswith(OTHER)  # the other sections stay where they are
    _write(path, _results("2026-12-02 11:00 UTC", "bbb2222", 590.0))
    text = path.read_text(encoding="utf-8")
    assert text.startswith(OTHER)
    assert text.count(report.SECTION) == 1 and text.count("### History") == 1
    assert text.count("### Targets") == 1 and text.count("Latest run:") == 1
    latest, history = text.split("### History")
    assert "**2026-12-02 11:00 UTC**" in latest and "note of bbb2222" in latest
    assert "aaa1111" not in latest  # the first run survives only as a history row
    rows = [ln for ln in history.splitlines() if ln.startswith("| 2")]
    assert len(rows) == 2  # grew by one row
    assert rows[0] == ("| 2026-12-02 11:00 UTC | `bbb2222` | full | 407 s "
                       "| 590.0 (broker-4w-10k) | 10.30 | +0.29 (poller) | 1 PASS · 2 MISS |")
    assert "aaa1111" in rows[1] and "480.0 (broker-4w-10k)" in rows[1]
    assert "0 PASS · 3 MISS" in rows[1]  # 480 orders/s: throughput MISS


def test_the_history_keeps_at_most_ten_rows_and_a_later_section_stays(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(OTHER, encoding="utf-8")
    _write(path, _results("2026-12-01 00:00 UTC", "c000", 500.0))
    path.write_text(path.read_text(encoding="utf-8") + "## Staleness (issue 14)\n\nkept\n",
                    encoding="utf-8")
    for i in range(1, 13):
        _write(path, _results(f"2026-12-01 {i:02d}:00 UTC", f"c{i:03d}", 500.0 + i))
    text = path.read_text(encoding="utf-8")
    rows = [ln for ln in text.split("### History")[1].splitlines() if ln.startswith("| 2")]
    assert len(rows) == report.HISTORY_ROWS
    assert "c012" in rows[0] and "c003" in rows[-1]
    assert text.rstrip().endswith("## Staleness (issue 14)\n\nkept")
    assert text.count(report.SECTION) == 1


def test_both_writers_share_the_replace_section_helper(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    update_section(path, "## A", lambda rows: f"## A\n\n### History\n\n| 2 | x | y | z | w |"
                   f"\n{chr(10).join(rows)}\n", at_top=False)
    update_section(path, "## A", lambda rows: f"## A\n\n### History\n\n| 2 | n | e | w | !! |"
                   f"\n{chr(10).join(rows)}\n", at_top=False)
    text = path.read_text(encoding="utf-8")
    assert text.count("## A") == 1 and text.count("| 2 |") == 2
    assert realistic.update_section is report.update_section is update_section
