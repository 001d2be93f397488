"""Rate budgets shared by every process using the same API credential (Redis-backed).

With several Celery workers each process would otherwise keep its own bucket and together
exceed the API's limit. :class:`SharedLimiter` implements the same :class:`~sync.ratelimit.Limiter`
protocol as the in-process limiters, on the `limits` library's Redis moving windows:

* **ShopWired** (:func:`shopwired_limiter`): at most ``rate`` calls in any 1-second window.
  Over any interval of T seconds that is ≤ rate·(T+1) calls, which for rate 2 never overflows
  ShopWired's 40-deep bucket draining 2/s — while still using the whole sustained budget.
* **WiredPlus** (:func:`wiredplus_limiter`): at most ``limit`` calls in any rolling hour, and
  at most a tenth of it in any 6 minutes (a backlog is spread over the hour instead of starving
  the merchant's other integrations). The limit learned from ``GetAccountInfo`` is written to
  Redis, so every worker follows the budget the poller learned.
* A 429 anywhere (:meth:`SharedLimiter.penalize`) pauses every process sharing the key until
  the ``Retry-After`` has passed.

Keys are ``ordersync:rl:<api>:<sha256(base_url + user)[:16]>`` — never a secret. Time is Redis's
and the local wall clock (the library's), so these limiters are tested against a real Redis,
not a fake clock. If Redis is unreachable a call raises ``RetryableError`` (the push is retried
from the ledger; nothing is sent unmetered).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis
from limits import (
    RateLimitItem,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from sync.clock import Clock
from sync.errors import RetryableError

MOVING_WINDOW_MAX = 100_000  # above this, a moving window's Redis list gets too long
LIMIT_REFRESH_SECONDS = 30.0


def limiter_key(api: str, base_url: str, user: str) -> str:
    """Redis key prefix for one API credential; contains no secret."""
    digest = hashlib.sha256(f"{base_url}\0{user}".encode()).hexdigest()[:16]
    return f"ordersync:rl:{api}:{digest}"


class SharedLimiter:
    """A :class:`~sync.ratelimit.Limiter` whose budget lives in Redis.

    ``items`` are all enforced: a call is admitted only when every window has room; a wait is
    the longest time until the fullest window frees a slot.
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        items: Sequence[RateLimitItem],
        clock: Clock,
        *,
        client: redis.Redis | None = None,
    ) -> None:
        self.key = key
        self._clock = clock
        self._items = list(items)
        self._redis = client or redis.Redis.from_url(redis_url, socket_timeout=5)
        storage = RedisStorage(_storage_uri(redis_url))
        self._moving = MovingWindowRateLimiter(storage)
        self._sliding = SlidingWindowCounterRateLimiter(storage)
        self._lock = threading.Lock()

    # -- Limiter protocol ------------------------------------------------------------------
    def try_acquire(self) -> float:
        """0 and one call counted when every window has room, else seconds to wait."""
        try:
            with self._lock:
                penalty_ms = _int(self._redis.pttl(self._penalty_key()))
                if penalty_ms > 0:
                    return penalty_ms / 1000.0
                wait = 0.0
                for item in self._items:
                    strategy = self._strategy(item)
                    if not strategy.test(item, self.key):
                        stats = strategy.get_window_stats(item, self.key)
                        wait = max(wait, stats.reset_time - time.time(), 0.01)
                if wait > 0:
                    return wait
                for item in self._items:
                    if not self._strategy(item).hit(item, self.key):
                        return 0.05  # another process took the slot between test and hit
                return 0.0
        except redis.RedisError as exc:
            raise RetryableError(f"rate-limit store unreachable: {type(exc).__name__}") from exc

    def acquire(self) -> None:
        """Block (``clock.sleep``) until a call is admitted."""
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return
            self._clock.sleep(min(wait, 5.0))

    def penalize(self, seconds: float) -> None:
        """Pause every process sharing this key for ``seconds`` (keeps the longer pause)."""
        ms = math.ceil(max(seconds, 0.0) * 1000)
        if ms <= 0:
            return
        try:
            key = self._penalty_key()
            current = _int(self._redis.pttl(key))
            if current < ms:
                self._redis.set(key, "1", px=ms)
        except redis.RedisError:
            pass  # the next call's own 429 will penalize again

    # -- helpers ---------------------------------------------------------------------------
    def _penalty_key(self) -> str:
        return f"{self.key}:penalty"

    def _strategy(
        self, item: RateLimitItem
    ) -> MovingWindowRateLimiter | SlidingWindowCounterRateLimiter:
        return self._moving if item.amount <= MOVING_WINDOW_MAX else self._sliding

    def replace_items(self, items: Sequence[RateLimitItem]) -> None:
        with self._lock:
            self._items = list(items)


class SharedHourlyBudget(SharedLimiter):
    """WiredPlus: ``limit`` per rolling hour and a tenth of it per 6 minutes, shared.

    :meth:`update_from_account_info` publishes the server's limit in Redis; every process
    re-reads it at most every 30 s, so workers follow what the poller learned.
    """

    def __init__(self, redis_url: str, key: str, limit: int, clock: Clock,
                 *, client: redis.Redis | None = None) -> None:
        self._limit = max(int(limit), 1)
        self._checked = 0.0
        super().__init__(redis_url, key, _hour_items(self._limit), clock, client=client)

    @property
    def limit(self) -> int:
        return self._limit

    def try_acquire(self) -> float:
        now = time.monotonic()
        if now - self._checked > LIMIT_REFRESH_SECONDS:
            self._checked = now
            try:
                raw = self._redis.get(f"{self.key}:limit")
            except redis.RedisError:
                raw = None
            learned = _int(raw) if raw is not None else 0
            if learned >= 1 and learned != self._limit:
                self._limit = learned
                self.replace_items(_hour_items(self._limit))
        return super().try_acquire()

    def update_from_account_info(
        self, limit: int | None, remaining: int | None, reset_ts: datetime | float | None
    ) -> None:
        """Adopt and publish the server's hourly limit; ``remaining``/``reset`` become a
        shared pause when the server says the budget is spent."""
        if limit is not None and limit >= 1:
            self._limit = int(limit)
            self.replace_items(_hour_items(self._limit))
            with contextlib.suppress(redis.RedisError):
                self._redis.set(f"{self.key}:limit", str(self._limit))
        if remaining is not None and remaining <= 0 and reset_ts is not None:
            reset_unix = reset_ts.timestamp() if isinstance(reset_ts, datetime) else reset_ts
            until = reset_unix - self._clock.now().timestamp()
            if 0 < until < 7200:
                self.penalize(until)


def _hour_items(limit: int) -> list[RateLimitItem]:
    pace = max(1, math.ceil(limit / 10))
    return [RateLimitItemPerHour(limit, 1), RateLimitItemPerMinute(pace, 6)]


def shopwired_limiter(redis_url: str, base_url: str, user: str, rate: float,
                      clock: Clock) -> SharedLimiter:
    """At most ``rate`` (rounded down, ≥ 1) ShopWired calls per second across processes."""
    per_second = max(1, int(rate))
    return SharedLimiter(
        redis_url, limiter_key("shopwired", base_url, user),
        [RateLimitItemPerSecond(per_second, 1)], clock,
    )


def elasticpath_limiter(redis_url: str, base_url: str, client_id: str, rate: float,
                        clock: Clock) -> SharedLimiter:
    """At most ``rate`` Elastic Path calls per second across processes."""
    return SharedLimiter(
        redis_url, limiter_key("elasticpath", base_url, client_id),
        [RateLimitItemPerSecond(max(1, int(rate)), 1)], clock,
    )


def wiredplus_limiter(redis_url: str, base_url: str, user: str, limit: int,
                      clock: Clock) -> SharedHourlyBudget:
    return SharedHourlyBudget(redis_url, limiter_key("wiredplus", base_url, user), limit, clock)


def _int(value: Any) -> int:
    """redis-py's sync client returns plain values; its stubs also allow awaitables."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _storage_uri(redis_url: str) -> str:
    """`limits` wants ``redis://`` / ``rediss://`` URIs — the same as Celery's."""
    return redis_url
