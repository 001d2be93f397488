"""Issue 11: the new-order scan keeps its progress when a step fails, and reads any number of
orders sharing one ``created`` second — product defaults, FakeClock, the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from sync.clock import FakeClock
from sync.errors import RetryableError
from sync.ledger.store import SCAN_RESUME, WATERMARK
from sync.sandbox import Sandbox
from sync.service.runtime import Runtime, build_runtime

from .conftest import make_settings  # type: ignore[import-not-found]


@pytest.fixture
def shop(db_url: str) -> Iterator[tuple[Sandbox, Runtime, FakeClock]]:
    clock = FakeClock()
    sb = Sandbox(seed=5, clock=clock)
    rt = build_runtime(
        make_settings(db_url), clock=clock,
        shopwired_transport=sb.shopwired_transport(),
        wiredplus_transport=sb.wiredplus_transport(),
    )
    yield sb, rt, clock
    rt.close()


def _ledger_ids(rt: Runtime) -> set[str]:
    return {r.source_order_id for r in rt.ledger.all_orders(rt.settings.store)}


def test_500_orders_in_one_created_second_are_all_imported_in_one_pass(
    shop: tuple[Sandbox, Runtime, FakeClock],
) -> None:
    sb, rt, clock = shop
    second = clock.now() - timedelta(hours=2)
    ids = sb.shopwired.generate_orders(500, created_between=(second, second))
    report = rt.poller.run_pass()
    assert {str(i) for i in ids} <= _ledger_ids(rt)
    assert report.new_pages <= 7  # 90 new rows a page, plus the (empty) archived list


def test_600_orders_within_five_seconds_never_fail_a_pass(
    shop: tuple[Sandbox, Runtime, FakeClock],
) -> None:
    sb, rt, clock = shop
    rt.poller.run_pass()
    clock.advance(60)
    t = clock.now() - timedelta(seconds=40)
    ids = sb.shopwired.generate_orders(600, created_between=(t, t + timedelta(seconds=4)))
    for _ in range(3):
        rt.poller.run_pass()  # raises on a failed pass
        clock.advance(60)
    assert {str(i) for i in ids} <= _ledger_ids(rt)


def test_a_scan_that_fails_on_page_k_resumes_there(
    shop: tuple[Sandbox, Runtime, FakeClock],
) -> None:
    sb, rt, clock = shop
    now = clock.now()
    ids = sb.shopwired.generate_orders(
        1000, created_between=(now - timedelta(days=20), now - timedelta(days=1)))
    client = rt.poller.source.client  # type: ignore[attr-defined]
    real = client.list_orders
    served = 0

    def failing_after_five(**kw: object) -> list[object]:
        nonlocal served
        served += 1
        if served > 5:
            raise RetryableError("ShopWired is down", endpoint="orders")
        return real(**kw)  # type: ignore[arg-type]

    client.list_orders = failing_after_five
    with pytest.raises(RetryableError):
        rt.poller.run_pass()
    store = rt.settings.store
    assert rt.ledger.get_cursor(store, WATERMARK) is None
    assert rt.ledger.get_cursor(store, SCAN_RESUME)
    kept = _ledger_ids(rt)
    assert 480 <= len(kept) <= 500  # pages 1-5 committed (a row a page is read twice)
    client.list_orders = real
    clock.advance(60)
    report = rt.poller.run_pass()
    # The next pass reads the rest of the window, not the 500 already committed.
    assert report.new_pages <= 7
    assert {str(i) for i in ids} <= _ledger_ids(rt)
    assert rt.ledger.get_cursor(store, WATERMARK) is not None
    assert rt.ledger.get_cursor(store, SCAN_RESUME) == ""


def test_shopwired_read_faults_at_ten_percent_fail_no_pass(
    shop: tuple[Sandbox, Runtime, FakeClock],
) -> None:
    sb, rt, clock = shop
    now = clock.now()
    ids = sb.shopwired.generate_orders(
        300, created_between=(now - timedelta(days=3), now - timedelta(minutes=5)))
    sb.shopwired.faults.error_rate = 0.05
    sb.shopwired.faults.timeout_rate = 0.05
    for _ in range(20):
        rt.poller.run_pass()
        clock.advance(60)
    assert {str(i) for i in ids} <= _ledger_ids(rt)
