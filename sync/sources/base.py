"""The ``Source`` seam: what the sync engine needs from a shop platform.

ShopWired implements it today (:mod:`sync.sources.shopwired_source`); Elastic Path will be
another implementation producing the same :class:`~sync.domain.models.SourceOrder`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from sync.domain.models import SourceOrder, SourceStatus
from sync.domain.windows import Window


class Source(Protocol):
    """A shop platform the daemon reads orders from."""

    name: str

    def statuses(self) -> list[SourceStatus]:
        """Every order status the shop defines."""
        ...

    def new_order_pages(self, window: Window) -> Iterator[list[Any]]:
        """Raw orders created within ``window``, page by page, oldest first."""
        ...

    def fetch_by_ids(self, order_ids: Sequence[str]) -> list[Any]:
        """Current raw state of the given orders; missing (deleted) ones are absent."""
        ...

    def count_created(self, window: Window) -> int:
        """How many orders the shop holds created within ``window`` (for audits)."""
        ...

    def raw_id(self, raw: Any) -> str | None:
        """The order id of a raw record, if it has one."""
        ...

    def parse(self, raw: Any) -> SourceOrder:
        """Normalise a raw order; raises SkippableError when it cannot be understood."""
        ...

    def close(self) -> None: ...
