"""The daemon loop: a full pass every poll interval, and in between a quick look at the
webhook inbox every ``tick`` seconds, so a webhook-announced change is synced within about a
second instead of waiting for the next pass; and every second the orders whose retry came due
are dispatched (after a 429 or a WiredPlus outage they go within seconds, not at the next pass).

Contract: returns when ``stop`` is set (after the current step; a pass interrupted by the stop
keeps everything it committed). A ``FatalError`` propagates (bad credentials must stop the
daemon loudly); any other failure is logged and retried at the next interval.
"""

from __future__ import annotations

import threading
from typing import Any

from sync.errors import FatalError
from sync.service.poller import PassInterrupted

DUE_CHECK_S = 1.0
"""Between passes, look this often for retries that came due (a deferral after a throttle or
an outage is seconds, not a poll interval)."""


def run_forever(rt: Any, interval: float, stop: threading.Event, *, tick: float = 0.25) -> None:
    poller = rt.poller
    clock = rt.clock
    next_full = clock.monotonic()
    next_due_check = next_full
    full = False
    while not stop.is_set():
        now = clock.monotonic()
        try:
            if now >= next_full:
                next_full = now + interval
                full = True
                poller.run_pass()
            else:
                full = False
                if poller.inbox is not None and poller.inbox.pending_refreshes(poller.store, 1):
                    poller.run_webhook_pass()
                if now >= next_due_check:
                    next_due_check = now + DUE_CHECK_S
                    poller.dispatch_due()
        except PassInterrupted:
            return
        except FatalError:
            raise
        except Exception as exc:
            # A failed full pass is "pass.failed"; the quick work between passes (webhook
            # refreshes, due dispatch) retries within a second and says so apart.
            rt.log.error("pass.failed" if full else "between_passes.failed",
                         error=f"{type(exc).__name__}: {exc}"[:500])
        stop.wait(max(0.0, min(tick, next_full - clock.monotonic())))
