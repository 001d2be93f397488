"""Rate budgets shared by every process using the same API credential (Redis-backed).

With several Celery workers each process would otherwise keep its own bucket and together
exceed the API's limit. :class:`SharedLimiter` implements the same :class:`~sync.ratelimit.Limiter`
protocol as the in-process limiters, with moving windows kept in Redis and checked and taken by
one Lua script per call (one round trip, atomic across processes; ``limits`` only supplies the
window specifications):

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

from sync.clock import Clock
from sync.errors import RetryableError

MOVING_WINDOW_MAX = 100_000  # above this, a moving window's Redis list gets too long
LIMIT_REFRESH_SECONDS = 30.0


def limiter_key(api: str, base_url: str, user: str) -> str:
    """Redis key prefix for one API credential; contains no secret."""
    digest = hashlib.sha256(f"{base_url}\0{user}".encode()).hexdigest()[:16]
    return f"ordersync:rl:{api}:{digest}"


# One round trip per call: the penalty, then every window; a slot is taken in all windows or
# in none. Time is Redis's (``TIME``), the same for every process. Windows of at most
# MOVING_WINDOW_MAX calls are exact moving windows (a list of admission times, newest first:
# full when the ``amount``-th newest is younger than the window); larger ones are sliding
# window counters (the previous fixed window weighted by the part still inside the moving one).
# KEYS[1] = penalty key, KEYS[1+i] = window i; ARGV = cost, max_moving, then amount, seconds
# per window. Returns 0 (admitted) or the wait in milliseconds (nothing taken).
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then return pttl end
local cost = tonumber(ARGV[1])
local max_moving = tonumber(ARGV[2])
local wait = 0
local n = #KEYS - 1
for i = 1, n do
  local amount = tonumber(ARGV[1 + 2 * i])
  local seconds = tonumber(ARGV[2 + 2 * i])
  local key = KEYS[1 + i]
  if cost > amount then
    wait = math.max(wait, seconds)
  elseif amount <= max_moving then
    local oldest = redis.call('LINDEX', key, amount - cost)
    if oldest and tonumber(oldest) > now - seconds then
      wait = math.max(wait, tonumber(oldest) + seconds - now)
    end
  else
    local bucket = math.floor(now / seconds)
    local cur = tonumber(redis.call('GET', key .. ':' .. bucket) or '0')
    local prev = tonumber(redis.call('GET', key .. ':' .. (bucket - 1)) or '0')
    local into = now / seconds - bucket
    if prev * (1 - into) + cur + cost > amount then
      local need = prev * (1 - into) + cur + cost - amount
      local w = (1 - into) * seconds
      if prev > 0 and need <= prev * (1 - into) then w = need / prev * seconds end
      wait = math.max(wait, w, 0.01)
    end
  end
end
if wait > 0 then return math.max(math.ceil(wait * 1000), 1) end
for i = 1, n do
  local amount = tonumber(ARGV[1 + 2 * i])
  local seconds = tonumber(ARGV[2 + 2 * i])
  local key = KEYS[1 + i]
  if amount <= max_moving then
    for _ = 1, cost do redis.call('LPUSH', key, string.format('%.6f', now)) end
    redis.call('LTRIM', key, 0, amount - 1)
    redis.call('EXPIRE', key, math.ceil(seconds) + 1)
  else
    local bkey = key .. ':' .. math.floor(now / seconds)
    redis.call('INCRBY', bkey, cost)
    redis.call('EXPIRE', bkey, math.ceil(2 * seconds) + 1)
  end
end
return 0
"""


class SharedLimiter:
    """A :class:`~sync.ratelimit.Limiter` whose budget lives in Redis.

    ``items`` are all enforced: a call is admitted only when every window has room; a wait is
    the longest time until the fullest window frees a slot. Each ``try_acquire`` is one
    Redis command (a Lua script, atomic across processes).
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
        self._redis = client or redis.Redis.from_url(redis_url, socket_timeout=5)
        self._script = self._redis.register_script(_ACQUIRE_LUA)
        self._lock = threading.Lock()
        self.replace_items(items)

    # -- Limiter protocol ------------------------------------------------------------------
    def try_acquire(self) -> float:
        """0 and one call counted when every window has room, else seconds to wait (nothing
        taken). One Redis command."""
        try:
            with self._lock:
                wait_ms = _int(self._script(keys=self._keys, args=[1, *self._args]))
        except redis.RedisError as exc:
            raise RetryableError(f"rate-limit store unreachable: {type(exc).__name__}") from exc
        return wait_ms / 1000.0

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

    def replace_items(self, items: Sequence[RateLimitItem]) -> None:
        """Enforce ``items`` from now on (each window keyed by its amount and length, so a
        changed limit starts a fresh window)."""
        keys = [self._penalty_key()]
        args: list[int | float] = [MOVING_WINDOW_MAX]
        for item in items:
            seconds = int(item.get_expiry())
            keys.append(f"{self.key}:w:{item.amount}/{seconds}")
            args += [int(item.amount), seconds]
        with self._lock:
            self._keys, self._args = keys, args


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
