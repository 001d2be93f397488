"""The daemon loop: a full pass every poll interval, and in between a quick look at the
webhook inbox every ``tick`` seconds, so a webhook-announced change is synced within about a
second instead of waiting for the next pass; every second the orders whose retry came due
are dispatched (after a 429 or a WiredPlus outage they go within seconds, not at the next
pass); otherwise the re-reads of open orders, paced at the polling share of the ShopWired rate.

Contract: returns when ``stop`` is set (after the current step; a pass interrupted by the stop
keeps everything it committed). A ``FatalError`` propagates (bad credentials must stop the
daemon loudly); any other failure is logged and retried at the next interval.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from sync.clock import Clock
from sync.errors import FatalError
from sync.logs import Log
from sync.service.poller import PassInterrupted, Poller

DUE_CHECK_S = 1.0
"""Between passes, look this often for retries that came due (a deferral after a throttle or
an outage is seconds, not a poll interval)."""


@dataclass
class Schedule:
    """When the next full pass and the next look for due retries are (monotonic seconds),
    the interval between two passes, and whether the last step ran a full pass."""

    interval: float
    next_full: float
    next_due_check: float = 0.0
    full: bool = False


class Loop(Protocol):
    """What the loop needs of a :class:`~sync.service.runtime.Runtime`."""

    @property
    def clock(self) -> Clock: ...

    @property
    def poller(self) -> Poller: ...

    @property
    def log(self) -> Log: ...


def run_forever(rt: Loop, interval: float, stop: threading.Event, *, tick: float = 0.25) -> None:
    clock = rt.clock
    schedule = Schedule(interval, clock.monotonic())
    schedule.next_due_check = schedule.next_full
    while not stop.is_set():
        try:
            step(rt.poller, clock.monotonic(), schedule)
        except PassInterrupted:
            return
        except FatalError:
            raise
        except Exception as exc:
            # A failed full pass is "pass.failed"; the quick work between passes (webhook
            # refreshes, due dispatch, paced re-reads) retries within a second and says so apart.
            rt.log.error("pass.failed" if schedule.full else "between_passes.failed",
                         error=f"{type(exc).__name__}: {exc}"[:500])
        stop.wait(max(0.0, min(tick, schedule.next_full - clock.monotonic())))


def step(poller: Poller, now: float, schedule: Schedule) -> None:
    """One turn of the loop at monotonic time ``now``: the full pass when it is due (the next
    one is scheduled first, so a failing pass is not retried at once); else the orders
    webhooks announced, the retries that came due (once a second), and a paced re-read of
    open orders when the polling share has a call to spare (``Poller.refresh_tick``)."""
    schedule.full = now >= schedule.next_full
    if schedule.full:
        schedule.next_full = now + schedule.interval
        poller.run_pass()
        return
    if poller.inbox is not None and poller.inbox.has_requests(poller.store):
        poller.run_webhook_pass()
    if now >= schedule.next_due_check:
        schedule.next_due_check = now + DUE_CHECK_S
        poller.dispatch_due()
    poller.refresh_tick()
