"""ShopWired as a :class:`~sync.sources.base.Source`: the client plus the pure parser."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sync.domain.models import SourceOrder, SourceStatus
from sync.domain.parse_shopwired import SOURCE, parse_shopwired_order
from sync.domain.windows import Window
from sync.sources.shopwired import ScanPosition, ShopWiredClient


def _parse_position(position: str | None) -> tuple[int, ScanPosition | None]:
    """(phase: 0 regular / 1 archived, where in it) of a :meth:`ShopWiredSource.
    resumable_pages` position; (0, None) = from the start, also for anything unreadable."""
    if not position:
        return 0, None
    try:
        raw = json.loads(position)
        phase = 1 if raw["archived"] else 0
        return phase, ScanPosition(int(raw["second"]), max(int(raw["read"]), 0))
    except (ValueError, TypeError, KeyError):
        return 0, None


class ShopWiredSource:
    """Reads orders from one ShopWired store."""

    name = SOURCE

    def __init__(self, client: ShopWiredClient) -> None:
        self.client = client

    def statuses(self) -> list[SourceStatus]:
        out = []
        for raw in self.client.order_statuses():
            if isinstance(raw, Mapping) and raw.get("id") is not None:
                out.append(
                    SourceStatus(
                        id=str(raw["id"]),
                        name=str(raw.get("name") or ""),
                        type=str(raw.get("type") or "custom").lower(),
                    )
                )
        return out

    def new_order_pages(self, window: Window) -> Iterator[list[Any]]:
        """Regular orders first, then archived ones: ShopWired lists only regular orders
        unless ``archived=1`` is asked, and an order archived before we first saw it must
        not be lost. Costs one extra (usually empty) call per window."""
        yield from self.client.iter_orders_in_window(window.start, window.end, archived=False)
        yield from self.client.iter_orders_in_window(window.start, window.end, archived=True)

    def resumable_pages(
        self, window: Window, position: str | None = None
    ) -> Iterator[tuple[list[Any], str]]:
        """:meth:`new_order_pages`, each page with the position after it (an opaque string
        to keep with the committed page); ``position`` resumes a scan that stopped there
        instead of reading the window from its start again."""
        phase, resume = _parse_position(position)
        for archived in (False, True)[phase:]:
            pages = self.client.iter_order_pages(
                window.start, window.end, archived=archived,
                resume=resume if archived == bool(phase) else None,
            )
            for page, at in pages:
                yield page, json.dumps({"archived": int(archived), "second": at.second,
                                        "read": at.read_in_second})

    def fetch_by_ids(self, order_ids: Sequence[str]) -> list[Any]:
        ids = [int(i) for i in order_ids if str(i).isdecimal()]
        return self.client.get_orders_by_ids(ids) if ids else []

    def exists(self, order_id: str) -> bool:
        """False only when ShopWired answers 404 for this order (a confirmed deletion)."""
        if not str(order_id).isdecimal():
            return False
        return self.client.get_order(int(order_id), fields=("id",)) is not None

    def count_created(self, window: Window) -> int:
        return sum(
            self.client.count_orders(
                created_from=window.start, created_to=window.end, archived=flag
            )
            for flag in (False, True)
        )

    def raw_id(self, raw: Any) -> str | None:
        if isinstance(raw, Mapping):
            v = raw.get("id")
            if isinstance(v, int | str) and not isinstance(v, bool) and str(v).strip():
                return str(v).strip()[:64]
        return None

    def parse(self, raw: Any) -> SourceOrder:
        return parse_shopwired_order(raw)

    def close(self) -> None:
        self.client.close()
