"""Which WiredPlus status and event a ShopWired status turns into."""

from __future__ import annotations

import pytest

from config import default_status_map_text
from sync.domain.models import SourceStatus
from sync.domain.status_map import StatusMap, StatusMapError


@pytest.mark.parametrize(
    "status, order_status, event",
    [
        (SourceStatus("1", "Awaiting Payment", "unpaid"), "awaiting-payment", None),
        (SourceStatus("2", "Paid", "paid"), "processing", "processing"),
        (SourceStatus("3", "Shipped", "shipped"), "shipped", "dispatched"),
        (SourceStatus("4", "Cancelled", "cancelled"), "cancelled", "cancelled"),
        (SourceStatus("5", "Processing", "custom"), "processing", None),
        (SourceStatus("6", "DELIVERED", "custom"), "completed", "delivered"),
        (SourceStatus("7", "completed", "custom"), "completed", "completed"),
        (SourceStatus("8", "Refunded", "custom"), "refunded", "refunded"),
        (SourceStatus("9", "Partially Refunded", "custom"), "partially-refunded", None),
        (SourceStatus("10", "On Hold", "custom"), "under-review", None),
        (SourceStatus("11", "Awaiting Collection", "custom"), "awaiting-pickup", None),
    ],
)
def test_default_map(status_map, status, order_status, event):
    r = status_map.resolve(status)
    assert (r.order_status, r.event, r.matched) == (order_status, event, True)


def test_unknown_custom_status_is_unknown_without_event(status_map):
    r = status_map.resolve(SourceStatus("99", "Gift wrapping", "custom"))
    assert (r.order_status, r.event, r.matched) == ("unknown", None, False)


def test_override_by_id_and_name_wins():
    m = StatusMap.from_toml(
        default_status_map_text(),
        '[ids."1381"]\norder_status = "awaiting-fulfillment"\n'
        '[names."gift wrapping"]\norder_status = "processing"\nevent = "fullfilled"\n',
    )
    assert m.resolve(SourceStatus("1381", "Paid", "paid")).order_status == "awaiting-fulfillment"
    r = m.resolve(SourceStatus("99", "Gift Wrapping", "custom"))
    assert (r.order_status, r.event) == ("processing", "fullfilled")
    assert m.resolve(SourceStatus("2", "Paid", "paid")).order_status == "processing"


@pytest.mark.parametrize(
    "text, message",
    [
        ('[types.paid]\norder_status = "paid"\n', "not a WiredPlus order status"),
        ('[types.paid]\norder_status = "processing"\nevent = "fulfilled"\n', "fullfilled"),
        ("[types.paid\n", "not valid TOML"),
        ('[colours.red]\norder_status = "processing"\n', "unknown sections"),
    ],
)
def test_bad_override_files_say_what_is_wrong(text, message):
    with pytest.raises(StatusMapError, match=message):
        StatusMap.from_toml(text)
