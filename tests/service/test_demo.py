"""`make demo` must keep working: the demo's own checks pass on a small shop."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from sync.service.demo import demo


def test_demo_syncs_the_sandbox_shop_and_all_its_checks_pass(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=120)
    figures = demo(orders=200, passes=1, seed=3, console=console, data_dir=tmp_path / "d")
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert figures.ok, text
    assert figures.wiredplus_orders >= 80
    assert figures.events_sent > 0 and figures.events_for_preexisting == 0
    assert figures.unchanged_pass_wiredplus_calls == 0
    assert figures.throttled == 0
    assert "all checks passed" in text
    assert (tmp_path / "d" / "demo.db").exists()
    log = (tmp_path / "d" / "ordersync.log").read_text()
    assert '"event": "order.push"' in log and "sandbox-secret" not in log


def test_the_elasticpath_demo_passes_its_checks(tmp_path: Path) -> None:
    from sync.service.demo import demo_elasticpath

    console = Console(file=io.StringIO(), width=120)
    figures = demo_elasticpath(orders=120, passes=1, seed=4, console=console,
                               data_dir=tmp_path / "ep")
    assert figures.ok, console.file.getvalue()  # type: ignore[attr-defined]
    assert figures.wiredplus_orders > 40 and figures.events_for_preexisting == 0
