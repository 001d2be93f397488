"""ShopWired as a :class:`~sync.sources.base.Source`: the client plus the pure parser."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sync.domain.models import SourceOrder, SourceStatus
from sync.domain.parse_shopwired import SOURCE, order_id_of, parse_shopwired_order
from sync.domain.text import clean_text
from sync.domain.windows import Window
from sync.errors import FatalError
from sync.logs import get_logger
from sync.sources.base import WindowField
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

log = get_logger("ordersync.shopwired")


class ShopWiredSource:
    """Reads orders from one ShopWired store."""

    name = SOURCE

    window_field: WindowField = "created"  # ShopWired lists (and counts) by created date
    can_relist = True  # :meth:`list_created`: up to 100 orders per call, ``ids=`` only 50

    def __init__(self, client: ShopWiredClient) -> None:
        self.client = client

    def statuses(self) -> list[SourceStatus]:
        out = []
        for raw in self.client.order_statuses():
            if isinstance(raw, Mapping) and raw.get("id") is not None:
                out.append(
                    SourceStatus(  # made safe like order text (no NUL, escapes, surrogates)
                        id=clean_text(str(raw["id"]))[:64],
                        name=clean_text(str(raw.get("name") or ""))[:100],
                        type=clean_text(str(raw.get("type") or "custom")).lower()[:32],
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
        # Only valid ids reach ShopWired: a malformed one (e.g. from a webhook) would make it
        # answer 400 for the whole batch.
        ids = [int(v) for v in (order_id_of(i) for i in order_ids) if v is not None]
        return self._by_ids(ids) if ids else []

    def _by_ids(self, ids: list[int]) -> list[Any]:
        """``ids=`` read; if ShopWired rejects the batch as invalid (400), the halves are read
        apart, so one id it refuses costs only itself (dropped, with a warning), never the
        other orders of the batch or the pass."""
        try:
            return self.client.get_orders_by_ids(ids)
        except FatalError as exc:
            if exc.status != 400:
                raise
            if len(ids) == 1:
                log.warning("order.id_rejected", source=SOURCE, order_id=str(ids[0]),
                            status=400)
                return []
        half = len(ids) // 2
        return self._by_ids(ids[:half]) + self._by_ids(ids[half:])

    def list_created(self, start: datetime, end: datetime, count: int) -> list[Any]:
        """One listing call: the first ``count`` regular orders created in ``[start, end]``."""
        return self.client.list_orders(created_from=start, created_to=end, offset=0,
                                       count=count)

    def call_count(self) -> int:
        """Every HTTP request the client has made (``ShopWiredClient.calls``)."""
        return sum(self.client.calls.values())

    def check_credentials(self) -> bool:
        """ShopWired has no call of its own for that: False (reading the statuses proves
        the credentials)."""
        return False

    def exists(self, order_id: str) -> bool:
        """False only when ShopWired answers 404 for this order (a confirmed deletion)."""
        valid = order_id_of(order_id)
        if valid is None:
            return False
        try:
            return self.client.get_order(int(valid), fields=("id",)) is not None
        except FatalError as exc:
            if exc.status != 400:
                raise
            return True  # refused, not confirmed deleted

    def count_created(self, window: Window) -> int:
        return sum(
            self.client.count_orders(
                created_from=window.start, created_to=window.end, archived=flag
            )
            for flag in (False, True)
        )

    def raw_id(self, raw: Any) -> str | None:
        """The record's order id when it is a valid ShopWired id (a positive integer), else
        None (the ingest dead-letters such a record; nothing is truncated)."""
        return order_id_of(raw.get("id")) if isinstance(raw, Mapping) else None

    def parse(self, raw: Any) -> SourceOrder:
        return parse_shopwired_order(raw)

    def close(self) -> None:
        self.client.close()
