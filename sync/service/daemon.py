"""The daemon loop: a full pass every poll interval, and in between a quick look at the
webhook inbox every ``tick`` seconds, so a webhook-announced change is synced within about a
second instead of waiting for the next pass; otherwise the re-reads of open orders, paced at
the polling share of the ShopWired rate.

Contract: returns when ``stop`` is set (after the current step; a pass interrupted by the stop
keeps everything it committed). A ``FatalError`` propagates (bad credentials must stop the
daemon loudly); any other failure is logged and retried at the next interval.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sync.errors import FatalError
from sync.service.poller import PassInterrupted


@dataclass
class Schedule:
    """When the next full pass is due (monotonic seconds), and the interval between two."""

    interval: float
    next_full: float


def run_forever(rt: Any, interval: float, stop: threading.Event, *, tick: float = 0.25) -> None:
    clock = rt.clock
    schedule = Schedule(interval, clock.monotonic())
    while not stop.is_set():
        try:
            step(rt.poller, clock.monotonic(), schedule)
        except PassInterrupted:
            return
        except FatalError:
            raise
        except Exception as exc:
            rt.log.error("pass.failed", error=f"{type(exc).__name__}: {exc}"[:500])
        stop.wait(max(0.0, min(tick, schedule.next_full - clock.monotonic())))


def step(poller: Any, now: float, schedule: Schedule) -> None:
    """One turn of the loop at monotonic time ``now``: the full pass when it is due (the next
    one is scheduled first, so a failing pass is not retried at once), else the orders
    webhooks announced, else a paced re-read of open orders when the polling share has a call
    to spare (``Poller.refresh_tick``)."""
    if now >= schedule.next_full:
        schedule.next_full = now + schedule.interval
        poller.run_pass()
    elif poller.inbox is not None and poller.inbox.pending_refreshes(poller.store, 1):
        poller.run_webhook_pass()
    else:
        poller.refresh_tick()
