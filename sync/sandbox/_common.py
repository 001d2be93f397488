"""Small pieces shared by the simulators: responses, Basic auth, the leaky bucket, faults.

Nothing here is API-specific; the error *body* shapes live in each simulator.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from sync import jsoncodec
from sync.clock import Clock
from sync.sandbox.faults import Faults

JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}

_HTML_PAGES = {
    502: b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center></body></html>\n",
    503: b"<html><head><title>503 Service Temporarily Unavailable</title></head><body><center>"
    b"<h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body>"
    b"</html>\n",
}


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII characters kept as they are, like most PHP APIs)."""
    return jsoncodec.dumps_compact(obj)


def json_response(
    status: int, obj: Any, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """An ``httpx.Response`` with a JSON body (Content-Length is set by httpx)."""
    return raw_json_response(status, dumps(obj), headers)


def raw_json_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """An ``httpx.Response`` whose body is already-encoded JSON."""
    h = dict(JSON_HEADERS)
    if headers:
        h.update(headers)
    return httpx.Response(status, content=body, headers=h)


def empty_response(status: int) -> httpx.Response:
    """A response without a body (204 No Content)."""
    return httpx.Response(status)


def html_response(status: int) -> httpx.Response:
    """The HTML page a reverse proxy serves for 502/503 (and a plain one for anything else)."""
    body = _HTML_PAGES.get(status, f"<html><body><h1>{status}</h1></body></html>\n".encode())
    return httpx.Response(status, content=body, headers={"content-type": "text/html"})


def basic_credentials(request: httpx.Request) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None if absent/garbled."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def whole_seconds(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


class LeakyBucket:
    """The documented ShopWired limiter: ``size`` deep, draining ``leak_per_second``.

    Every accepted request adds one unit; a request that would take the level above ``size``
    is refused and adds nothing. Not thread-safe on its own: callers hold their lock.
    """

    def __init__(self, size: int, leak_per_second: float, clock: Clock) -> None:
        if size < 1 or leak_per_second <= 0:
            raise ValueError("bucket size must be >= 1 and the leak rate > 0")
        self.size = size
        self.leak_per_second = leak_per_second
        self._clock = clock
        self.level = 0.0
        self._last = clock.monotonic()

    def _drain(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._last
        if elapsed > 0:
            self.level = max(0.0, self.level - elapsed * self.leak_per_second)
        self._last = now

    def take(self) -> float | None:
        """Admit one request (None) or refuse it, returning seconds until one unit fits."""
        self._drain()
        if self.level + 1 > self.size + 1e-9:
            return (self.level + 1 - self.size) / self.leak_per_second
        self.level += 1
        return None

    def reset(self) -> None:
        """Empty the bucket."""
        self.level = 0.0
        self._last = self._clock.monotonic()


class FaultPlan:
    """The pre-processing fault decision for one request (see :mod:`sync.sandbox.faults`)."""

    __slots__ = ("error_status", "latency", "reset", "storm_retry_after", "timeout")

    def __init__(self) -> None:
        self.latency = 0.0
        self.timeout = False
        self.reset = False
        self.storm_retry_after: int | None = None
        self.error_status: int | None = None


def plan_faults(faults: Faults, clock: Clock) -> FaultPlan | None:
    """Decide which pre-processing faults hit this request; None when all are off.

    Call with the simulator's lock held (the rng is shared).
    """
    if not faults.any_active:
        return None
    plan = FaultPlan()
    plan.latency = max(0.0, faults.latency_seconds)
    if faults.roll(faults.timeout_rate):
        plan.timeout = True
        return plan
    if faults.roll(faults.reset_rate):
        plan.reset = True
        return plan
    if faults.throttle_storm_until > 0:
        left = faults.throttle_storm_until - clock.monotonic()
        if left > 0:
            plan.storm_retry_after = whole_seconds(left)
            return plan
    if faults.error_statuses and faults.roll(faults.error_rate):
        plan.error_status = faults.rng.choice(faults.error_statuses)
    return plan


class Latency:
    """A simulated API's own response time: ``seconds`` ± up to ``jitter`` per request.

    Every request waits ``max(0, seconds + uniform(-jitter, +jitter))`` on the simulator's
    clock before it is processed (so the mean is ``seconds``), outside any lock: requests
    served concurrently (one thread per connection in :mod:`sync.sandbox.server`) wait at the
    same time, as they would on a real API. Both fields may be changed while traffic flows.
    Unlike :attr:`Faults.latency_seconds <sync.sandbox.faults.Faults.latency_seconds>` (a
    fault, added on top, cleared by ``faults.clear()``), this is a property of the API. The
    jitter comes from its own seeded rng, so it never shifts the fault decisions. Under a
    ``FakeClock`` the wait just advances the fake time, once per request.
    """

    def __init__(self, seconds: float = 0.0, jitter: float = 0.0, *, seed: int = 0) -> None:
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0 seconds")
        self.seconds = seconds
        self.jitter = jitter
        self._rng = random.Random(f"latency-{seed}")
        self._lock = threading.Lock()

    def draw(self) -> float:
        """This request's wait, in seconds (0 when the latency is off)."""
        if self.jitter <= 0:
            return max(0.0, self.seconds)
        with self._lock:
            offset = self._rng.uniform(-self.jitter, self.jitter)
        return max(0.0, self.seconds + offset)


def apply_latency_and_timeout(
    plan: FaultPlan | None, clock: Clock, request: httpx.Request, base_latency: float = 0.0
) -> None:
    """Sleep the API's own latency plus the injected one (outside any lock) and raise the
    injected timeout."""
    wait = base_latency + (plan.latency if plan is not None else 0.0)
    if wait > 0:
        clock.sleep(wait)
    if plan is None:
        return
    if plan.timeout:
        raise httpx.ReadTimeout("sandbox: injected read timeout", request=request)
    if plan.reset:
        raise httpx.RemoteProtocolError("sandbox: injected connection reset", request=request)


ErrorBody = Callable[[int, str], httpx.Response]


def fault_response(plan: FaultPlan | None, error_body: ErrorBody) -> httpx.Response | None:
    """The 429/5xx answer the plan calls for, or None to carry on normally."""
    if plan is None:
        return None
    if plan.storm_retry_after is not None:
        resp = error_body(429, "Too Many Requests")
        resp.headers["Retry-After"] = str(plan.storm_retry_after)
        return resp
    if plan.error_status is not None:
        if plan.error_status != 500:
            return html_response(plan.error_status)
        return error_body(plan.error_status, "Internal Server Error")
    return None
