"""Client-side limiters: hard guarantees, checked with hypothesis and a fake clock."""

from __future__ import annotations

import threading
from bisect import bisect_right
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.clock import FakeClock
from sync.ratelimit import (
    HOUR,
    SHOPWIRED_BUCKET,
    HourlyBudget,
    LeakyBucket,
    Limiter,
    Unlimited,
)

TOL = 1e-6


def _max_in_window(times: list[float], window: float) -> int:
    """Largest number of admissions within any closed interval of length ``window``."""
    best = 0
    for i, t in enumerate(times):
        j = bisect_right(times, t + window)
        best = max(best, j - i)
    return best


# -- LeakyBucket ------------------------------------------------------------------------------


def test_shopwired_defaults() -> None:
    assert SHOPWIRED_BUCKET.capacity == 36
    assert SHOPWIRED_BUCKET.leak_per_second == 2.0
    bucket = LeakyBucket.from_spec(SHOPWIRED_BUCKET, FakeClock())
    assert bucket.capacity == 36


def test_burst_then_drain_rate() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(3, 2.0, clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.5)
    bucket.acquire()
    assert clock.slept == [pytest.approx(0.5)]
    clock.advance(10)
    assert bucket.level() == 0.0


def test_penalize_blocks_then_resumes_at_drain_rate() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(10, 2.0, clock)
    bucket.penalize(4.0)
    assert bucket.try_acquire() == pytest.approx(4.0)
    clock.advance(4.0)
    # full at penalty time, drained 8 during the 4 s: 8 calls fit, then pacing
    admitted = sum(1 for _ in range(10) if bucket.try_acquire() == 0)
    assert admitted == 8


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        LeakyBucket(0, 1.0, FakeClock())
    with pytest.raises(ValueError):
        LeakyBucket(5, 0.0, FakeClock())


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=40),
    leak=st.floats(min_value=0.1, max_value=10.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=150),
)
def test_bucket_never_exceeds_capacity_plus_drain(
    capacity: int, leak: float, gaps: list[float]
) -> None:
    clock = FakeClock()
    bucket = LeakyBucket(capacity, leak, clock)
    times: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        bucket.acquire()
        times.append(clock.monotonic())
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= capacity + leak * (times[j] - times[i]) + TOL


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=40),
    leak=st.floats(min_value=0.1, max_value=10.0),
    n=st.integers(min_value=50, max_value=400),
)
def test_saturated_long_run_rate_is_the_drain_rate(capacity: int, leak: float, n: int) -> None:
    clock = FakeClock()
    bucket = LeakyBucket(capacity, leak, clock)
    times = []
    for _ in range(capacity + n):
        bucket.acquire()
        times.append(clock.monotonic())
    # after the initial burst, calls come at the drain rate
    elapsed = times[-1] - times[capacity - 1]
    rate = n / elapsed
    assert rate >= 0.95 * leak
    assert rate <= leak * 1.0001


def test_bucket_is_thread_safe() -> None:
    clock = FakeClock()  # time never moves: exactly `capacity` admissions in total
    bucket = LeakyBucket(25, 1.0, clock)
    admitted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = sum(1 for _ in range(200) if bucket.try_acquire() == 0)
        with lock:
            admitted.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 25


def test_limiters_satisfy_the_protocol() -> None:
    clock = FakeClock()
    for limiter in (LeakyBucket(1, 1, clock), HourlyBudget(10, clock), Unlimited()):
        assert isinstance(limiter, Limiter)
    Unlimited().acquire()
    assert Unlimited().try_acquire() == 0.0


# -- HourlyBudget -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=30),
    burst=st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
    gaps=st.lists(st.floats(min_value=0.0, max_value=900.0), min_size=1, max_size=120),
)
def test_budget_never_exceeds_limit_in_any_rolling_hour(
    limit: int, burst: int | None, gaps: list[float]
) -> None:
    clock = FakeClock()
    budget = HourlyBudget(limit, clock, burst=burst)
    times: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        budget.acquire()
        times.append(clock.monotonic())
    assert _max_in_window(times, HOUR - TOL) <= limit


def test_budget_spreads_a_backlog_over_the_hour() -> None:
    clock = FakeClock()
    budget = HourlyBudget(3600, clock)  # 1 call/s, burst of 360
    for _ in range(900):
        budget.acquire()
    elapsed = clock.monotonic() - 1000.0
    assert elapsed == pytest.approx(540.0, rel=0.01)  # 360 at once, 540 at 1/s


def test_budget_saturated_rate_uses_the_hour() -> None:
    clock = FakeClock()
    budget = HourlyBudget(120, clock)
    times = []
    for _ in range(240):
        budget.acquire()
        times.append(clock.monotonic())
    assert _max_in_window(times, HOUR - TOL) <= 120
    assert times[-1] - times[0] < 2 * HOUR + 1  # long-run rate is the limit


def test_budget_penalty_blocks_everything() -> None:
    clock = FakeClock()
    budget = HourlyBudget(1000, clock)
    budget.penalize(120.0)
    assert budget.try_acquire() == pytest.approx(120.0)
    budget.acquire()
    assert clock.monotonic() == pytest.approx(1120.0)


def test_budget_follows_account_info_remaining_until_reset() -> None:
    clock = FakeClock()
    budget = HourlyBudget(5000, clock, burst=100)
    reset = clock.now() + timedelta(seconds=600)
    budget.update_from_account_info(5000, 2, reset)
    assert budget.try_acquire() == 0
    assert budget.try_acquire() == 0
    assert budget.try_acquire() == pytest.approx(600.0)
    clock.advance(600)
    assert budget.try_acquire() == 0  # a new server hour


def test_budget_account_info_accepts_unix_seconds_and_new_limit() -> None:
    clock = FakeClock()
    budget = HourlyBudget(5000, clock)
    budget.update_from_account_info(10, 0, clock.now().timestamp() + 30)
    assert budget.limit == 10
    assert budget.try_acquire() == pytest.approx(30.0)


def test_budget_ignores_stale_or_partial_account_info() -> None:
    clock = FakeClock()
    budget = HourlyBudget(100, clock)
    budget.update_from_account_info(None, 0, clock.now() - timedelta(seconds=5))
    budget.update_from_account_info(None, 0, None)
    assert budget.limit == 100
    assert budget.try_acquire() == 0


def test_budget_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        HourlyBudget(0, FakeClock())
    with pytest.raises(ValueError):
        HourlyBudget(10, FakeClock(), burst=0)
