"""Dead letters are visible and actionable: `dlq list` says what and why, `dlq replay` sends
them through the normal path again."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sync.cli import app
from sync.clock import FakeClock
from sync.ledger.models import OrderState
from sync.sandbox import Sandbox
from sync.service.runtime import build_runtime

from .conftest import make_settings  # type: ignore[import-not-found]


@pytest.fixture
def rejected(db_url: str):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    sb = Sandbox(seed=5, clock=clock)
    now = clock.now()
    sb.shopwired.generate_orders(6, created_between=(now - timedelta(days=3), now))
    rt = build_runtime(make_settings(db_url), clock=clock,
                       shopwired_transport=sb.shopwired_transport(),
                       wiredplus_transport=sb.wiredplus_transport())
    sb.wiredplus.faults.error_statuses = (400,)
    sb.wiredplus.faults.error_rate = 1.0
    rt.poller.run_pass()
    yield sb, rt, clock
    rt.close()


def test_rejected_orders_are_dead_lettered_with_the_response_text(rejected) -> None:  # type: ignore[no-untyped-def]
    _sb, rt, _ = rejected
    letters = rt.ledger.dead_letters(rt.settings.store)
    assert len(letters) == 6
    assert all(d.kind == "order" and d.reason and d.attempts == 1 for d in letters)


def test_replay_sends_dead_letters_through_the_normal_path(rejected) -> None:  # type: ignore[no-untyped-def]
    sb, rt, clock = rejected
    sb.wiredplus.faults.error_rate = 0.0
    one = rt.ledger.dead_letters(rt.settings.store)[0]
    assert rt.ledger.replay(rt.settings.store, [one.order_id], clock.now()) == [one.ref]
    rt.dispatcher.dispatch(rt.settings.store, [one.ref])
    assert rt.ledger.get_order(rt.settings.store, one.ref).state == OrderState.SYNCED
    revived = rt.ledger.replay(rt.settings.store, None, clock.now())
    assert len(revived) == 5
    clock.advance(60)
    rt.poller.run_pass()  # the sweeper picks them up
    assert rt.ledger.counts(rt.settings.store).orders[OrderState.SYNCED] == 6
    assert rt.ledger.dead_letters(rt.settings.store) == []
    assert all(n == 1 for n in sb.wiredplus.order_creations.values())


def test_dlq_commands(tmp_path: Path) -> None:
    sb = Sandbox(seed=9)
    now = sb.clock.now()
    sb.shopwired.generate_orders(
        3, created_between=(now - timedelta(days=1), now - timedelta(minutes=5))
    )
    db = f"sqlite:///{tmp_path / 'l.db'}"
    with sb:
        settings = make_settings(db, SHOPWIRED_BASE_URL=sb.shopwired_url,
                                 WIREDPLUS_BASE_URL=sb.wiredplus_url)
        sb.wiredplus.faults.error_statuses = (422,)
        sb.wiredplus.faults.error_rate = 1.0
        rt = build_runtime(settings)
        rt.poller.run_pass()
        rt.close()
        env = {a: str(v) for a, v in {
            "SHOPWIRED_BASE_URL": sb.shopwired_url, "SHOPWIRED_API_KEY": "sandbox-key",
            "SHOPWIRED_API_SECRET": "sandbox-secret", "WIREDPLUS_BASE_URL": sb.wiredplus_url,
            "WIREDPLUS_API_USER": "sandbox", "WIREDPLUS_API_KEY": "sandbox-key",
            "DATABASE_URL": db, "ORDERSYNC_LOG_LEVEL": "warning",
        }.items()}
        runner = CliRunner()
        listed = runner.invoke(app, ["dlq", "list", "--json"], env=env)
        assert listed.exit_code == 0, listed.output
        rows = json.loads(listed.output)
        assert len(rows) == 3, listed.output
        assert all("422" in r["reason"] or r["reason"] for r in rows)
        sb.wiredplus.faults.error_rate = 0.0
        replay = runner.invoke(app, ["dlq", "replay", "--all"], env=env)
        assert replay.exit_code == 0, replay.output
        assert "replayed 3" in replay.output
        assert json.loads(runner.invoke(app, ["dlq", "list", "--json"], env=env).output) == []
        assert len(sb.wiredplus.orders) == 3
