"""The daemons' garbage-collector settings (sync.gcpolicy)."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import pytest

from sync.gcpolicy import DAEMON_THRESHOLDS, tune_for_daemon


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _decode_pages(pages: int) -> int:
    """What a poller does most: decode pages of 100 orders (about 10,000 containers each)
    and keep one page alive while it is processed; the young collections it caused."""
    order = {"id": 1, "products": [{"sku": f"S{i}", "options": [{"v": i}]} for i in range(20)],
             "billing_address": {"name": "x", "lines": ["a", "b"]}, "status": {"id": 3}}
    page = json.dumps([order] * 100)
    before = gc.get_stats()[0]["collections"]
    for _ in range(pages):
        decoded = json.loads(page)
        assert len(decoded) == 100
    return int(gc.get_stats()[0]["collections"] - before)


def test_a_daemon_collects_far_less_often_while_decoding_pages(restored_gc: None) -> None:
    at_default = _decode_pages(20)
    tune_for_daemon()
    tuned = _decode_pages(20)
    assert gc.get_threshold() == DAEMON_THRESHOLDS
    assert at_default >= 100  # one young collection per 700 allocations
    assert tuned * 20 <= at_default


def test_what_start_up_built_is_out_of_the_collectors_reach(restored_gc: None) -> None:
    tune_for_daemon()
    assert gc.get_freeze_count() > 10_000  # modules, classes, the wiring
