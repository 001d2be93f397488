"""The ``Source`` seam: what the sync engine needs from a shop platform.

ShopWired (:mod:`sync.sources.shopwired_source`) and Elastic Path
(:class:`sync.sources.elasticpath.ElasticPathSource`) implement it, producing the same
:class:`~sync.domain.models.SourceOrder`. Every member the engine uses is declared here; a
platform that does not offer something implements it explicitly (documented there: a scan
that cannot resume, a deletion it cannot confirm, no re-listing by created date), so the
engine never asks an object what it happens to have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from sync.domain.models import SourceOrder, SourceStatus
from sync.domain.windows import Window

WindowField = Literal["created", "updated"]
"""The order date a source's scan windows (and so the poller's watermark) are on."""


class Source(Protocol):
    """A shop platform the daemon reads orders from."""

    name: str

    @property
    def window_field(self) -> WindowField:
        """``created`` when :meth:`new_order_pages` lists orders *created* in the window
        (ShopWired), ``updated`` when it lists every order *changed* in it (Elastic Path):
        the watermark follows that date."""
        ...

    def statuses(self) -> list[SourceStatus]:
        """Every order status the shop defines."""
        ...

    def new_order_pages(self, window: Window) -> Iterator[list[Any]]:
        """Raw orders within ``window`` (see :attr:`window_field`), page by page, oldest
        first."""
        ...

    def resumable_pages(
        self, window: Window, position: str | None = None
    ) -> Iterator[tuple[list[Any], str | None]]:
        """:meth:`new_order_pages`, each page with the position after it (an opaque string
        the poller keeps with the committed page, or None when the source cannot resume
        there); ``position`` resumes a scan that stopped there."""
        ...

    def fetch_by_ids(self, order_ids: Sequence[str]) -> list[Any]:
        """Current raw state of the given orders; missing (deleted) ones are absent."""
        ...

    def exists(self, order_id: str) -> bool:
        """False only when the shop confirms the order is gone (deleted); True otherwise,
        also when the source has no way to confirm it."""
        ...

    @property
    def can_relist(self) -> bool:
        """Whether :meth:`list_created` is offered: one call re-reads up to ``count`` orders
        created in a range, cheaper than ``ids=`` where most of them are open."""
        ...

    def list_created(self, start: datetime, end: datetime, count: int) -> list[Any]:
        """One page: the first ``count`` (regular) orders created in ``[start, end]``. Only
        called when :attr:`can_relist` is true."""
        ...

    def call_count(self) -> int | None:
        """Every API call the source has made so far (retries included), or None when it
        does not count them."""
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

    def check_credentials(self) -> bool:
        """Prove the credentials work with the platform's own check (one call) and return
        True; False when the platform has none (reading :meth:`statuses` proves them)."""
        ...

    def close(self) -> None: ...
