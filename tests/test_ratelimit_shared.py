"""Rate budgets shared through Redis: N processes together never exceed one API's limit."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

pytestmark = pytest.mark.redis

_BASE = os.environ.get("ORDERSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
URL = _BASE.rsplit("/", 1)[0] + "/8"


@pytest.fixture(autouse=True)
def _flush() -> None:
    import redis

    try:
        redis.Redis.from_url(URL).flushdb()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis not reachable")


def _worker(n: int, rate: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    from sync.clock import SystemClock
    from sync.ratelimit_shared import shopwired_limiter

    lim = shopwired_limiter(URL, "http://shop.example/v1", "key", rate, SystemClock())
    for _ in range(n):
        lim.acquire()
        out.put(time.time())


def _max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if s <= t < s + width) for s in times)


def test_three_processes_share_one_shopwired_budget() -> None:
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_worker, args=(6, 4, q)) for _ in range(3)]
    for p in procs:
        p.start()
    times = [q.get(timeout=60) for _ in range(18)]
    for p in procs:
        p.join(timeout=30)
    # any 1 s window holds ≤ 4 admissions (0.95 s: the timestamps are taken just after the
    # admission, so they carry a few ms of jitter)
    assert _max_in_window(times, 0.95) <= 4
    assert max(times) - min(times) >= 3.0  # 18 calls at 4/s cannot take less


def test_a_429_pauses_every_process_sharing_the_key() -> None:
    from sync.clock import SystemClock
    from sync.ratelimit_shared import shopwired_limiter

    a = shopwired_limiter(URL, "http://shop.example/v1", "key", 2, SystemClock())
    b = shopwired_limiter(URL, "http://shop.example/v1", "key", 2, SystemClock())
    other = shopwired_limiter(URL, "http://shop.example/v1", "other-key", 2, SystemClock())
    a.penalize(1.5)
    assert b.try_acquire() == pytest.approx(1.5, abs=0.2)
    assert other.try_acquire() == 0.0  # another credential has its own budget


def test_the_wiredplus_limit_learned_by_one_process_reaches_the_others() -> None:
    from sync.clock import SystemClock
    from sync.ratelimit_shared import LIMIT_REFRESH_SECONDS, wiredplus_limiter

    poller = wiredplus_limiter(URL, "http://wp.example/v1", "user", 5000, SystemClock())
    worker = wiredplus_limiter(URL, "http://wp.example/v1", "user", 5000, SystemClock())
    poller.update_from_account_info(20, 20, None)
    worker._checked -= LIMIT_REFRESH_SECONDS + 1
    admitted = sum(1 for _ in range(10) if worker.try_acquire() == 0.0)
    assert worker.limit == 20
    assert admitted == 2  # a tenth of 20 per 6 minutes: the backlog is spread out


def test_keys_never_contain_credentials() -> None:
    from sync.ratelimit_shared import limiter_key

    key = limiter_key("wiredplus", "https://api.wiredplus.com/v1", "my-key-name")
    assert "my-key-name" not in key and key.startswith("ordersync:rl:wiredplus:")
