"""Retry arithmetic (pure): the in-place backoff of one request, the circuit's probe
backoff, and the per-order delivery schedule.

Three clocks of patience, from short to long:

* **in place** (:class:`RequestRetry`, used by the request pipeline in :mod:`sync.apiclient`):
  a transient outcome (5xx, timeout, reset, truncated body, 429) is retried right away with
  capped full-jitter backoff (``uniform(0, min(cap, base·2^n))``), a server ``Retry-After``
  taking the place of the backoff, within ``max_retries`` and a time ``budget``;
* **per API account** (:func:`probe_delay`, used by :class:`sync.apiclient.Circuit`): when
  requests keep failing for everybody, the circuit opens and probes after 1 s, 2 s, 4 s …
  capped at 30 s;
* **per order** (:func:`retry_delay`): only failures specific to one order use the ledger's
  schedule — 5 s, 1 min, 10 min, 1 h, 3 h, 8 h, 12 h: eight attempts (the default
  ``ORDERSYNC_MAX_ATTEMPTS``) end in the dead letters about a day after the first. ``base``
  scales the whole schedule. ±20 % jitter spreads retries from many orders; a server
  ``Retry-After`` is a floor, never shortened.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

SCHEDULE = (5, 60, 600, 3600, 10800, 28800, 43200)  # seconds, for base = 5 s
JITTER = 0.2

PROBE_FIRST_S = 1.0
PROBE_CAP_S = 30.0


@dataclass(frozen=True, slots=True)
class RequestRetry:
    """How one request is retried in place (contract: module docstring).

    ``max_retries`` extra tries at most; no retry is started once ``budget`` seconds have
    passed since the first try or when the wait would end past it (the caller raises instead
    and the ledger or the next pass takes over). ``retry_timeouts=False`` raises a timeout at
    once (a write whose 30 s read timeout passed should not hold a lease for another).
    """

    max_retries: int = 8
    base: float = 1.0
    cap: float = 30.0
    budget: float = 300.0
    retry_timeouts: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.base <= 0 or self.cap <= 0 or self.budget < 0:
            raise ValueError("base and cap must be > 0, budget >= 0")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter before retry number ``retry`` (0-based): uniform in [0, min(cap,
        base·2^retry)]."""
        return rng.uniform(0.0, min(self.cap, self.base * (2.0 ** min(retry, 30))))

    def may_retry(self, retry: int, elapsed: float, wait: float) -> bool:
        """Whether retry number ``retry`` (0-based) may start after waiting ``wait`` seconds,
        ``elapsed`` seconds after the first try started."""
        return retry < self.max_retries and elapsed + wait <= self.budget


def probe_delay(failed_probes: int) -> float:
    """Seconds an open circuit waits before its next probe, after ``failed_probes`` failed
    probes (0 when it has just opened): 1, 2, 4, 8, 16, 30, 30 … seconds."""
    return min(PROBE_CAP_S, PROBE_FIRST_S * (2.0 ** min(max(failed_probes, 0), 30)))


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
