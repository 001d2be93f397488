"""Simulated API latency: each request waits latency ± jitter, and concurrent requests wait
at the same time (as on a real API), so a client keeping N requests in flight is not
measured as N × latency."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from sync.clock import FakeClock, SystemClock
from sync.sandbox import Sandbox
from sync.sandbox._common import Latency
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.shopwired import ShopWiredSimulator
from sync.sandbox.wiredplus import WiredPlusSimulator


def test_latency_draws_stay_within_the_jitter_around_the_mean() -> None:
    lat = Latency(0.150, 0.05, seed=1)
    draws = [lat.draw() for _ in range(2000)]
    assert min(draws) >= 0.100 - 1e-9 and max(draws) <= 0.200 + 1e-9
    assert statistics.mean(draws) == pytest.approx(0.150, abs=0.005)
    assert max(draws) - min(draws) > 0.09  # really jittered
    assert Latency(0.2).draw() == 0.2 and Latency().draw() == 0.0
    assert Latency(0.01, 0.05).draw() >= 0.0  # never negative
    with pytest.raises(ValueError):
        Latency(-1.0)


def test_latency_uses_the_injected_clock() -> None:
    clock = FakeClock()
    sim = WiredPlusSimulator(clock=clock, latency=0.2)
    started = time.monotonic()
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="http://x/v1",
                      auth=("sandbox", "sandbox-key")) as c:
        assert c.get("/GetAccountInfo").status_code == 200
    assert clock.slept == [0.2]
    assert time.monotonic() - started < 0.15  # no real sleep


def _concurrently(n: int, call: Callable[[int], int]) -> tuple[float, list[int]]:
    """Run ``call(i)`` for i in range(n) on n threads started together; (wall s, results)."""
    results = [0] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started, results


def test_concurrent_requests_over_http_overlap() -> None:
    latency, n = 0.3, 8
    with Sandbox(seed=2, orders=20, shopwired_latency=latency, wiredplus_latency=latency,
                 latency_jitter=0.02) as sb:
        clients = [httpx.Client(auth=sb.wiredplus_credentials) for _ in range(n)]
        sw_clients = [httpx.Client(auth=sb.shopwired_credentials) for _ in range(n)]
        try:
            one = time.monotonic()
            assert clients[0].get(f"{sb.wiredplus_url}/GetAccountInfo").status_code == 200
            single = time.monotonic() - one
            assert single >= latency - 0.02
            wall, codes = _concurrently(
                n, lambda i: clients[i].get(f"{sb.wiredplus_url}/GetAccountInfo").status_code)
            assert codes == [200] * n
            assert wall < 2 * latency, f"{n} concurrent requests took {wall:.2f}s"
            wall, codes = _concurrently(
                n, lambda i: sw_clients[i].get(f"{sb.shopwired_url}/orders",
                                               params={"count": 5}).status_code)
            assert codes == [200] * n
            assert wall < 2 * latency, f"{n} concurrent ShopWired requests took {wall:.2f}s"
        finally:
            for c in clients + sw_clients:
                c.close()
        assert not sb.server_errors


@pytest.mark.parametrize("make", [
    lambda: ShopWiredSimulator(clock=SystemClock(), latency=0.25, enforce_rate_limit=False),
    lambda: WiredPlusSimulator(clock=SystemClock(), latency=0.25),
    lambda: ElasticPathSimulator(clock=SystemClock(), latency=0.25, enforce_rate_limit=False),
], ids=["shopwired", "wiredplus", "elasticpath"])
def test_each_simulator_waits_outside_its_lock(
    make: Callable[[], ShopWiredSimulator | WiredPlusSimulator | ElasticPathSimulator],
) -> None:
    sim = make()
    n = 6
    request = httpx.Request("GET", "http://x/v1/nothing-here")
    wall, _ = _concurrently(n, lambda i: sim.handle(request).status_code)
    assert 0.25 - 0.02 <= wall < 2 * 0.25, f"{n} concurrent requests took {wall:.2f}s"
    assert sim.latency.seconds == 0.25
