"""How fresh the ledger's copy of an open order must be, by its status (pure).

ShopWired has no updated-since filter, so open orders are re-read by id (50 per call). The
budget goes first to orders whose next change matters soonest: an unpaid or just-paid order
changes within hours (and its dispatch email is the one customers wait for); a shipped order
may still be delivered, refunded or returned over days; a completed one only rarely. Webhooks,
when configured, make all of this a safety net.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FRESHNESS: dict[str, timedelta] = {
    "awaiting-payment": timedelta(minutes=10),
    "pending": timedelta(minutes=10),
    "processing": timedelta(minutes=10),
    "awaiting-fulfillment": timedelta(minutes=10),
    "under-review": timedelta(minutes=30),
    "unknown": timedelta(minutes=30),
    "awaiting-pickup": timedelta(hours=1),
    "partially-shipped": timedelta(hours=1),
    "shipped": timedelta(hours=2),
    "disputed": timedelta(hours=2),
    "partially-refunded": timedelta(hours=6),
    "completed": timedelta(hours=12),
}
DEFAULT = timedelta(minutes=30)


def refresh_due(order_status: str | None, checked_at: datetime) -> datetime:
    """When an order last read at ``checked_at`` should be read again."""
    return checked_at + FRESHNESS.get(order_status or "unknown", DEFAULT)
