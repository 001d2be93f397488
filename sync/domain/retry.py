"""Retry schedule for deliveries to WiredPlus (pure).

Modelled on Svix: after the n-th failed attempt wait 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h —
eight attempts spread over about 27.5 hours — then the item is dead-lettered with its last
error. ``base`` scales the whole schedule (tests and the demo use a tiny base). ±20 % jitter
spreads retries from many orders; a server ``Retry-After`` is a floor, never shortened.
"""

from __future__ import annotations

import random
from datetime import timedelta

SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)  # seconds, for base = 5 s
JITTER = 0.2


def retry_delay(
    attempts: int,
    *,
    base: timedelta = timedelta(seconds=5),
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> timedelta:
    """Delay before the next try after ``attempts`` failed attempts (``attempts`` ≥ 1)."""
    if attempts < 1:
        raise ValueError("attempts counts failures and starts at 1")
    scale = base.total_seconds() / SCHEDULE[0]
    nominal = SCHEDULE[min(attempts, len(SCHEDULE)) - 1] * scale
    r = rng or random
    jittered = nominal * (1 + r.uniform(-JITTER, JITTER))
    if retry_after is not None and retry_after > jittered:
        jittered = retry_after
    return timedelta(seconds=max(jittered, 0.0))


def is_exhausted(attempts: int, max_attempts: int) -> bool:
    """True when ``attempts`` failures have used up the budget: dead-letter the item."""
    return attempts >= max_attempts


def horizon(max_attempts: int, base: timedelta = timedelta(seconds=5)) -> timedelta:
    """Nominal time from the first attempt to the dead letter (no jitter)."""
    scale = base.total_seconds() / SCHEDULE[0]
    total = sum(SCHEDULE[min(i, len(SCHEDULE)) - 1] for i in range(1, max_attempts))
    return timedelta(seconds=total * scale)
