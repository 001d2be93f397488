"""What ordersync would send for one raw order, without any I/O (``ordersync map``).

:func:`preview_order` parses a raw order of either source, maps it to the UpdateOrder body
(with ``order_update_date`` as a first sight sets it) and, on request, lists the
CreateOrderEvent bodies a *first sight of a recent order* would send (``order_id`` is left
out: WiredPlus assigns it). Events are dated at the order's own update (else creation) time, so
a preview is deterministic — the golden files in ``tests/golden`` rely on that.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sync.domain.events import decide_events
from sync.domain.mapping import MappingContext, map_order, order_update_date
from sync.domain.parse_elasticpath import bundle_order_id, parse_elasticpath_order
from sync.domain.parse_shopwired import parse_shopwired_order
from sync.domain.status_map import StatusMap
from sync.errors import SkippableError

#: The first-sight window a preview assumes: wide enough that the order counts as recent.
PREVIEW_WINDOW = timedelta(days=36500)


def preview_order(
    raw: Any,
    source: str,
    status_map: StatusMap,
    ctx: MappingContext,
    *,
    events: bool = False,
) -> dict[str, Any]:
    """The UpdateOrder body (or, with ``events``, ``{"update_order", "events"}``), or
    ``{"skipped": true, "id", "reason"}`` for an order that would be skipped."""
    try:
        if source == "elasticpath":
            order = parse_elasticpath_order(raw)
        else:
            order = parse_shopwired_order(raw)
        resolution = status_map.resolve(order.status)
        body = map_order(order, resolution, ctx)
    except SkippableError as exc:
        rid: Any
        if source == "elasticpath":
            rid = bundle_order_id(raw)
        else:
            rid = raw.get("id") if isinstance(raw, Mapping) else None
        return {"skipped": True, "id": rid, "reason": exc.message}
    body["order_update_date"] = order_update_date(order, None)
    if not events:
        return body
    when = order.updated_at or order.created_at
    decided = decide_events(
        None, order, resolution, ctx, now=when, first_sight_window=PREVIEW_WINDOW
    )
    return {"update_order": body, "events": [d.payload for d in decided]}
