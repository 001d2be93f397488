"""Client-side rate limiters, driven by an injected :class:`~sync.clock.Clock`.

* :class:`LeakyBucket` — ShopWired's documented algorithm (bucket 40, drains 2 calls/s). We
  run it slightly under the server's size (:data:`SHOPWIRED_BUCKET`: 36) because other apps
  may share the store's bucket.
* :class:`HourlyBudget` — WiredPlus counts calls per hour. Never more than ``limit`` calls in
  any rolling hour (hence in any clock hour), paced so the budget is spread over the hour,
  corrected by ``GetAccountInfo`` and stopped outright by a 429.
* :class:`Unlimited` — admits everything (tests, tools).

The seam is the :class:`Limiter` protocol. The HTTP clients only ever call ``acquire()``
before a request and ``penalize(seconds)`` after the server throttled them. ``try_acquire()``
is the atomic "take one if it fits, else tell me how long to wait" primitive; a
Redis-backed limiter shared by N workers implements it as one Lua script over the same state
these classes keep in memory (bucket level + timestamp, or the admission log + penalty
deadline, keyed per store and API), and a Celery task can use it to re-queue itself with a
countdown instead of blocking a worker. Time for such an implementation must come from one
place (Redis ``TIME``), not each worker's clock.

All limiters here are thread-safe: state changes happen under a lock, waiting happens outside
it (via ``clock.sleep``), and ``acquire`` re-checks after every wait.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import datetime
from typing import Final, NamedTuple, Protocol, runtime_checkable

from sync.clock import Clock

#: Float slack so that waiting exactly the advertised time always admits.
EPSILON: Final = 1e-9
HOUR: Final = 3600.0


@runtime_checkable
class Limiter(Protocol):
    """Something that decides when the next request may be sent."""

    def acquire(self) -> None:
        """Block (via the clock) until one request may be sent, and count it as sent."""
        ...

    def try_acquire(self) -> float:
        """Take one request slot if available now and return 0; else return seconds to wait.

        Never blocks. A positive result takes nothing.
        """
        ...

    def penalize(self, seconds: float) -> None:
        """The server throttled us: admit nothing for ``seconds`` from now."""
        ...


@runtime_checkable
class AccountAwareLimiter(Protocol):
    """A limiter that can adopt the budget WiredPlus reports in ``GetAccountInfo``."""

    def update_from_account_info(
        self, limit: int | None, remaining: int | None, reset_ts: datetime | float | None
    ) -> None:
        """See :meth:`HourlyBudget.update_from_account_info`."""
        ...


def _acquire_loop(limiter: Limiter, clock: Clock) -> None:
    while True:
        wait = limiter.try_acquire()
        if wait <= 0:
            return
        clock.sleep(wait)


class BucketSpec(NamedTuple):
    """Size and drain rate of a leaky bucket."""

    capacity: float
    leak_per_second: float


#: ShopWired allows a bucket of 40 draining 2 calls/s; we keep a margin of 4.
SHOPWIRED_BUCKET: Final = BucketSpec(capacity=36.0, leak_per_second=2.0)


class _Leak:
    """Leaky-bucket arithmetic without locking (callers hold the lock)."""

    __slots__ = ("capacity", "last", "level", "rate")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.level = 0.0
        self.last = now

    def drain(self, now: float) -> None:
        if now > self.last:
            self.level = max(0.0, self.level - (now - self.last) * self.rate)
            self.last = now

    def wait(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` more fits (after :meth:`drain`)."""
        over = self.level + cost - self.capacity
        return 0.0 if over <= EPSILON else over / self.rate

    def fill(self) -> None:
        self.level = max(self.level, self.capacity)


class LeakyBucket:
    """A leaky bucket: each call adds 1, the bucket drains ``leak_per_second``.

    A call is admitted only if it fits (level + 1 ≤ capacity), so over any interval of length
    ``t`` at most ``capacity + leak_per_second * t`` calls are admitted, and a saturated caller
    gets ``leak_per_second`` calls/s in the long run. The bucket starts empty.
    """

    def __init__(self, capacity: float, leak_per_second: float, clock: Clock) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not leak_per_second > 0 or not math.isfinite(leak_per_second):
            raise ValueError("leak_per_second must be a positive number")
        self._clock = clock
        self._lock = threading.Lock()
        self._leak = _Leak(float(capacity), float(leak_per_second), clock.monotonic())
        self._blocked_until = -math.inf

    @classmethod
    def from_spec(cls, spec: BucketSpec, clock: Clock) -> LeakyBucket:
        """A bucket with ``spec``'s size and rate (e.g. :data:`SHOPWIRED_BUCKET`)."""
        return cls(spec.capacity, spec.leak_per_second, clock)

    @property
    def capacity(self) -> float:
        return self._leak.capacity

    @property
    def leak_per_second(self) -> float:
        return self._leak.rate

    def level(self) -> float:
        """Current fill level (for metrics and tests)."""
        with self._lock:
            self._leak.drain(self._clock.monotonic())
            return self._leak.level

    def try_acquire(self) -> float:
        """0 and one call counted if it fits now, else the seconds until it would."""
        with self._lock:
            now = self._clock.monotonic()
            if self._blocked_until - now > EPSILON:
                return self._blocked_until - now
            self._leak.drain(now)
            wait = self._leak.wait()
            if wait > 0:
                return wait
            self._leak.level += 1.0
            return 0.0

    def acquire(self) -> None:
        """Block (``clock.sleep``) until one call fits, then count it."""
        _acquire_loop(self, self._clock)

    def penalize(self, seconds: float) -> None:
        """The server said its bucket is full: nothing for ``seconds``, and count ours as full.

        Treating our model as full means calls resume at the drain rate rather than in a
        burst once the penalty is over.
        """
        with self._lock:
            now = self._clock.monotonic()
            self._blocked_until = max(self._blocked_until, now + max(seconds, 0.0))
            self._leak.drain(now)
            self._leak.fill()


class HourlyBudget:
    """WiredPlus pacing: at most ``limit_per_hour`` calls in any rolling hour, spread out.

    Three checks, all must pass for a call to be admitted:

    1. **Hard cap** — a log of admission times; never more than ``limit`` within any 3600 s
       (which also bounds every clock hour, whatever hour WiredPlus counts).
    2. **Pacing** — a leaky bucket of ``burst`` calls draining ``limit / 3600`` per second, so
       a backlog is spread across the hour instead of spending the budget in the first
       minutes. ``burst`` defaults to six minutes' share (a tenth of the hourly budget, at
       least 1): a first import or a busy hour starts at once, a long backlog is spread.
    3. **Server view** — after :meth:`update_from_account_info`, at most ``remaining`` more
       calls until ``reset``; after a 429, :meth:`penalize` admits nothing until it lapses.
    """

    def __init__(self, limit_per_hour: int, clock: Clock, *, burst: int | None = None) -> None:
        if limit_per_hour < 1:
            raise ValueError("limit_per_hour must be at least 1")
        self._clock = clock
        self._lock = threading.Lock()
        self._limit = int(limit_per_hour)
        self._burst_override = burst
        self._log: deque[float] = deque()
        self._blocked_until = -math.inf
        self._server_remaining: int | None = None
        self._server_reset: float | None = None  # monotonic seconds
        self._pace = _Leak(self._burst_for(self._limit), self._limit / HOUR, clock.monotonic())

    def _burst_for(self, limit: int) -> float:
        if self._burst_override is not None:
            if self._burst_override < 1:
                raise ValueError("burst must be at least 1")
            return float(min(self._burst_override, limit))
        return float(max(1, min(limit, math.ceil(limit / 10))))

    @property
    def limit(self) -> int:
        """Calls allowed per hour (as last configured or reported by the server)."""
        return self._limit

    def _expire(self, now: float) -> None:
        cutoff = now - HOUR + EPSILON
        while self._log and self._log[0] <= cutoff:
            self._log.popleft()
        if self._server_reset is not None and now >= self._server_reset - EPSILON:
            self._server_remaining = None
            self._server_reset = None

    def try_acquire(self) -> float:
        """0 and one call counted if allowed now, else seconds until it may be."""
        with self._lock:
            now = self._clock.monotonic()
            if self._blocked_until - now > EPSILON:
                return self._blocked_until - now
            self._expire(now)
            wait = 0.0
            if len(self._log) >= self._limit:
                wait = max(wait, self._log[len(self._log) - self._limit] + HOUR - now)
            if (
                self._server_remaining is not None
                and self._server_remaining <= 0
                and self._server_reset is not None
            ):
                wait = max(wait, self._server_reset - now)
            self._pace.drain(now)
            wait = max(wait, self._pace.wait())
            if wait > EPSILON:
                return wait
            self._log.append(now)
            self._pace.level += 1.0
            if self._server_remaining is not None:
                self._server_remaining -= 1
            return 0.0

    def acquire(self) -> None:
        """Block (``clock.sleep``) until a call is allowed, then count it."""
        _acquire_loop(self, self._clock)

    def penalize(self, seconds: float) -> None:
        """A 429: admit nothing for ``seconds`` from now."""
        with self._lock:
            now = self._clock.monotonic()
            self._blocked_until = max(self._blocked_until, now + max(seconds, 0.0))

    def update_from_account_info(
        self,
        limit: int | None,
        remaining: int | None,
        reset_ts: datetime | float | None,
    ) -> None:
        """Adopt the server's view from ``GetAccountInfo``.

        ``limit`` replaces the hourly limit (pacing follows). ``remaining`` caps the calls
        until ``reset_ts`` (an aware datetime or UNIX seconds); when the reset time has
        passed, or is unknown, ``remaining`` is ignored. ``None`` leaves a value unchanged.
        """
        with self._lock:
            now = self._clock.monotonic()
            self._expire(now)
            if limit is not None and limit >= 1:
                self._limit = int(limit)
                self._pace.drain(now)
                self._pace.capacity = self._burst_for(self._limit)
                self._pace.rate = self._limit / HOUR
            if remaining is None or reset_ts is None:
                return
            reset_unix = reset_ts.timestamp() if isinstance(reset_ts, datetime) else reset_ts
            until = reset_unix - self._clock.now().timestamp()
            if until <= 0 or not math.isfinite(until):
                return
            self._server_remaining = max(int(remaining), 0)
            self._server_reset = now + until


class Unlimited:
    """A limiter that admits everything (penalties included are ignored)."""

    def acquire(self) -> None:
        return None

    def try_acquire(self) -> float:
        return 0.0

    def penalize(self, seconds: float) -> None:
        return None
