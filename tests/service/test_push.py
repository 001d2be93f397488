"""A write whose outcome is unknown is never trusted as "not sent".

Found by the chaos suite: an UpdateOrder that WiredPlus stored but whose response was lost (or
whose worker was killed mid-call) left the ledger believing the *previous* payload was what
WiredPlus held. When the shop then changed the order back to that previous state, the push was
judged unnecessary and WiredPlus kept the in-between status for good.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from sync.ledger.models import OrderRow, OrderState

from .conftest import Harness, _in_scope  # type: ignore[import-not-found]


def _flip(harness: Harness, oid: str, name: str) -> None:
    status = harness.sb.shopwired.status_by_name(name)
    assert status is not None
    harness.sb.shopwired.set_status(int(oid), status["id"])
    harness.clock.advance(13 * 3600)  # past every freshness target


def test_a_change_back_after_a_lost_response_still_reaches_wiredplus(harness: Harness) -> None:
    harness.run()
    oid = sorted(_in_scope(harness))[0]
    before = harness.sb.wiredplus.order_by_ref(oid)["order_status"]
    original = harness.sb.shopwired.get_order(int(oid))
    assert original is not None
    original_status = original["status"]["name"]
    # Custom statuses both ways: no event is involved, only the order's own status.
    other = next(n for n in ("Processing", "On Hold") if n != original_status)

    # The change is written by WiredPlus, but every response is lost on the way back.
    harness.sb.wiredplus.faults.drop_after_write_rate = 1.0
    _flip(harness, oid, other)
    harness.rt.poller.run_pass()
    assert harness.sb.wiredplus.order_by_ref(oid)["order_status"] != before
    assert harness.orders()[oid].state == OrderState.PENDING

    # The shop goes back to the original state before the retry: WiredPlus must follow.
    harness.sb.wiredplus.faults.clear()
    _flip(harness, oid, original_status)
    harness.run(passes=3, gap=3600)
    row = harness.orders()[oid]
    assert row.state == OrderState.SYNCED
    assert harness.sb.wiredplus.order_by_ref(oid)["order_status"] == row.order_status == before


def test_a_worker_killed_mid_call_leaves_the_order_in_doubt(harness: Harness) -> None:
    """The claim itself marks the pushed payload unknown, so a crash needs no cleanup: when the
    shop changes back, the order is pushed again instead of being judged unchanged."""
    harness.run()
    oid = sorted(_in_scope(harness))[1]
    ledger, store = harness.rt.ledger, harness.store
    row = harness.orders()[oid]
    synced_hash = row.content_hash
    assert row.pushed_hash == synced_hash
    with ledger.session() as s:
        s.execute(update(OrderRow).where(OrderRow.store == store, OrderRow.ref == row.ref)
                  .values(state=OrderState.PENDING, content_hash="a-newer-payload",
                          next_attempt_at=None))
    assert ledger.claim(store, row.ref, "doomed", harness.clock.now(), timedelta(minutes=2))
    # ... the worker dies here, after its UpdateOrder may or may not have landed.
    assert harness.orders()[oid].pushed_hash is None

    # An order whose payload is already known to be in WiredPlus keeps its hash on claim.
    other = harness.orders()[sorted(_in_scope(harness))[2]]
    with ledger.session() as s:
        s.execute(update(OrderRow).where(OrderRow.store == store, OrderRow.ref == other.ref)
                  .values(state=OrderState.PENDING, next_attempt_at=None))
    assert ledger.claim(store, other.ref, "w", harness.clock.now(), timedelta(minutes=2))
    assert harness.orders()[other.source_order_id].pushed_hash == other.content_hash
