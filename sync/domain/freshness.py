"""How fresh the ledger's copy of an open order should be, by its status (pure).

ShopWired has no updated-since filter, so open orders are re-read by id (50 per call). The
budget goes first to orders whose next change matters soonest: an unpaid or just-paid order
changes within hours (and its dispatch email is the one customers wait for); a shipped order
may still be delivered, refunded or returned over days; a completed one only rarely. These are
*targets*: :mod:`sync.domain.refresh_plan` turns them, the ShopWired budget share and the number
of open orders into the interval each status is actually re-read at (never longer than the
staleness bound). Merchants override them with ``ORDERSYNC_FRESHNESS_TARGETS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

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
"""Target of a status the table does not name (and of an order without a status)."""

_ITEM = re.compile(r"^\s*([a-z][a-z0-9_-]*)\s*=\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$",
                   re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def target_for(order_status: str | None, targets: Mapping[str, timedelta]) -> timedelta:
    """The target of ``order_status`` in ``targets`` (``"default"`` for the others)."""
    return targets.get(order_status or "unknown", targets.get("default", DEFAULT))


def parse_targets(text: str | None) -> dict[str, timedelta]:
    """The built-in targets with the overrides of ``text`` applied.

    ``text`` is ``status=duration`` items separated by commas, e.g.
    ``"shipped=1h, completed=6h, default=20m"`` (units s, m, h, d; bare numbers are seconds;
    ``default`` is the target of statuses not listed). Raises ValueError naming the bad item.
    """
    targets = dict(FRESHNESS)
    targets["default"] = DEFAULT
    for item in (text or "").split(","):
        if not item.strip():
            continue
        m = _ITEM.match(item)
        if m is None:
            raise ValueError(f"{item.strip()!r} is not status=duration (e.g. shipped=2h)")
        seconds = float(m.group(2)) * _UNIT[(m.group(3) or "s").lower()]
        if seconds <= 0:
            raise ValueError(f"{item.strip()!r}: the target must be longer than 0")
        targets[m.group(1).lower()] = timedelta(seconds=seconds)
    return targets
