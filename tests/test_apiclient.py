"""The one request pipeline (sync.apiclient) on a FakeClock: in-place retries, the typed
Throttled outcome, and the per-account circuit (open, no sends while open, probe ≤ 30 s,
close on success)."""

from __future__ import annotations

import random

import httpx
import pytest

from sync.apiclient import Circuit, CircuitPolicy
from sync.clock import FakeClock
from sync.domain.retry import RequestRetry, probe_delay
from sync.errors import RetryableError, Throttled, Unavailable
from sync.ratelimit import Unlimited
from sync.sinks.wiredplus import WiredPlusClient
from sync.sources.shopwired import ShopWiredClient

ORDER = {"api_reference_id": "s-1"}


class Script:
    """Answers from a list (the last one repeats); counts requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        item = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(item, Exception):
            raise item
        return item


def wiredplus(script: Script, clock: FakeClock) -> WiredPlusClient:
    return WiredPlusClient("https://wp.test/v1", "user", "key-0123456789", clock=clock,
                           transport=httpx.MockTransport(script), limiter=Unlimited(),
                           rng=random.Random(1))


def shopwired(script: Script, clock: FakeClock) -> ShopWiredClient:
    return ShopWiredClient("https://sw.test/v1", "swkey-0123", "swsecret-0123", clock=clock,
                           transport=httpx.MockTransport(script), limiter=Unlimited(),
                           rng=random.Random(1))


def test_backoff_is_full_jitter_capped() -> None:
    policy = RequestRetry(max_retries=20, base=1.0, cap=30.0)
    rng = random.Random(3)
    waits = [policy.backoff(n, rng) for n in range(20)]
    assert all(0 <= w <= min(30.0, 2.0**n) for n, w in enumerate(waits))
    assert not policy.may_retry(20, 0, 0)
    assert not RequestRetry(budget=10).may_retry(0, 8.0, 3.0)


def test_probe_delay_doubles_to_30_seconds() -> None:
    assert [probe_delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_circuit_opens_after_consecutive_failures_and_closes_on_a_probe() -> None:
    clock = FakeClock()
    circuit = Circuit(clock, CircuitPolicy(threshold=3), "WiredPlus")
    for _ in range(2):
        assert circuit.before_request() is False
        circuit.failure(probe=False)
    circuit.success()  # a success in between resets the count
    for _ in range(3):
        circuit.before_request()
        circuit.failure(probe=False)
    assert circuit.state == "open"
    with pytest.raises(Unavailable) as err:
        circuit.before_request()
    assert err.value.retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert circuit.before_request() is True  # the probe
    with pytest.raises(Unavailable):
        circuit.before_request()  # only one probe at a time
    circuit.failure(probe=True)
    clock.advance(1.9)
    with pytest.raises(Unavailable):
        circuit.before_request()  # next probe after 2 s
    clock.advance(0.1)
    assert circuit.before_request() is True
    circuit.success()
    assert circuit.state == "closed" and circuit.before_request() is False


def test_an_outage_opens_the_circuit_and_no_request_is_sent_while_open() -> None:
    clock = FakeClock()
    down = Script(httpx.Response(503, text="<html>down</html>"))
    client = wiredplus(down, clock)
    for _ in range(5):
        with pytest.raises(RetryableError):
            client.update_order(ORDER)
    assert client.circuit.state == "open"
    sent = down.requests
    for _ in range(50):
        with pytest.raises(Unavailable) as err:
            client.update_order(ORDER)
        assert 0 < (err.value.retry_after or 0) <= 30
    assert down.requests == sent  # nothing sent while open
    # Ten minutes of outage: probes back off to 30 s, one request each.
    probes = 0
    for _ in range(20 * 60):
        clock.advance(0.5)
        try:
            client.update_order(ORDER)
        except Unavailable:
            continue
        except RetryableError:
            probes += 1
    assert probes <= 10 * 2 + 6  # ≤ one per 30 s once backed off
    down.answers = [httpx.Response(200, json={"id": 5})]
    clock.advance(30.0)
    assert client.update_order(ORDER) == "5"
    assert client.circuit.state == "closed"


def test_a_throttle_raises_the_typed_outcome_and_does_not_open_the_circuit() -> None:
    clock = FakeClock()
    script = Script(httpx.Response(429, headers={"Retry-After": "60"}))
    client = wiredplus(script, clock)
    for _ in range(10):
        with pytest.raises(Throttled) as err:
            client.update_order(ORDER)
        assert err.value.retry_after == 60.0
    assert client.circuit.state == "closed"


@pytest.mark.parametrize(
    "fault",
    [httpx.Response(500), httpx.Response(502, text="<html>"), httpx.ReadTimeout("t"),
     httpx.ConnectError("reset"), httpx.Response(200, text="[{")],
)
def test_shopwired_reads_survive_transient_faults(fault: httpx.Response | Exception) -> None:
    clock = FakeClock()
    script = Script(fault, fault, fault, httpx.Response(200, json=[]))
    client = shopwired(script, clock)
    assert client.order_statuses() == []
    assert script.requests == 4
    assert client.circuit.state == "closed"


def test_ten_percent_read_faults_almost_never_fail_a_request() -> None:
    clock = FakeClock()
    rng = random.Random(11)

    def flaky(request: httpx.Request) -> httpx.Response:
        roll = rng.random()
        if roll < 0.05:
            return httpx.Response(500)
        if roll < 0.1:
            raise httpx.ReadTimeout("timed out")
        return httpx.Response(200, json=[])

    client = ShopWiredClient("https://sw.test/v1", "swkey-0123", "swsecret-0123", clock=clock,
                             transport=httpx.MockTransport(flaky), limiter=Unlimited())
    for _ in range(2000):
        client.order_statuses()
    assert client.calls["order-statuses"] < 2000 * 1.15
