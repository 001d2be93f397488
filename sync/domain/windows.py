"""Created-date window arithmetic for the new-order scan (pure).

ShopWired can only filter on the *created* date (``from``/``to``, UNIX seconds, inclusive).
Each pass reads ``[watermark − overlap, pass_start − settle]``; the end is fixed for the whole
pass so paging is stable. The watermark moves only forward, only to dates of orders that were
committed, and never past the window end — so an order that was not committed is always read
again by a later pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    @property
    def start_unix(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_unix(self) -> int:
        return int(self.end.timestamp())


def plan_window(
    watermark: datetime, pass_start: datetime, *, overlap: timedelta, settle: timedelta
) -> Window | None:
    """The window one pass scans, or None when there is nothing to scan yet."""
    start = watermark - overlap
    end = pass_start - settle
    if end < start:
        return None
    return Window(start=start, end=end)


def advance_watermark(
    current: datetime, committed_created: Iterable[datetime], window: Window
) -> datetime:
    """New watermark after a pass: the newest committed created date, capped at the window end.

    Never moves backwards. When nothing was committed it stays where it is.
    """
    newest = max(committed_created, default=None)
    if newest is None:
        return current
    return max(current, min(newest, window.end))


def split_range(start: datetime, end: datetime, chunk: timedelta) -> Iterator[Window]:
    """Split ``[start, end]`` into consecutive windows of at most ``chunk`` (for backfill)."""
    if chunk <= timedelta(0):
        raise ValueError("chunk must be positive")
    cur = start
    while cur <= end:
        nxt = min(cur + chunk, end)
        yield Window(cur, nxt)
        if nxt >= end:
            break
        cur = nxt + timedelta(seconds=1)
