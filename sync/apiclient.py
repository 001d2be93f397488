"""The one request pipeline every API client runs on (ShopWired, Elastic Path, WiredPlus).

One request, in this order::

    circuit → limiter → send → classify (sync.outcomes) → metrics + one log line
            → retry transient outcomes in place → raise what remains

Contract of :meth:`PooledApiClient._request`:

* **circuit** — :class:`Circuit`, one per client (= per API account): after
  :attr:`CircuitPolicy.threshold` requests in a row failed for good (transient outcomes
  left after the in-place retries; throttling does not count), it opens: requests raise
  :class:`~sync.errors.Unavailable` at once, **without sending**, carrying the seconds until
  the next probe. Then one request at a time is let through as a probe after 1 s, 2 s, 4 s …
  at most 30 s (:func:`sync.domain.retry.probe_delay`); a probe that gets an answer closes
  the circuit, a failed one reopens it with the next delay.
* **limiter** — every try first takes a slot of the client's rate limiter (the rate budget:
  retries spend it too). A wait longer than the profile's ``max_limiter_wait`` is not slept
  in-process: :class:`~sync.errors.Throttled` with ``retry_after``.
* **classify** — the caller's classifier (a call into :mod:`sync.outcomes`, the one table).
* **observe** — ``ordersync_api_calls_total`` / ``ordersync_api_errors_total`` /
  ``ordersync_rate_limit_wait_seconds_total`` with the profile's ``api`` label, and one
  debug line ``<api>_call`` (endpoint, status, duration_ms, outcome, attempt) per try.
* **retry in place** — a ``retry`` outcome (5xx, timeout, connection reset, truncated body,
  429) is sent again after ``Retry-After`` when the server sent one (a throttle also
  penalises the limiter), else capped full-jitter backoff
  (:class:`sync.domain.retry.RequestRetry`), on the injected clock, within the profile's
  retry count and time budget. A ``Retry-After`` above ``max_retry_after`` is not waited out.
* **raise** — what remains: :class:`~sync.errors.Throttled` for a throttle, else
  :class:`~sync.errors.RetryableError`; ``fatal`` and ``skip`` are returned to the caller,
  which raises them with :meth:`PooledApiClient._raise` (after its own not-found rule).
  Messages are redacted (no credential ever appears).

Each API is a small :class:`ApiProfile` (name, retry policy, limiter-wait ceiling), not a
copy of this loop.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from sync import metrics
from sync.clock import Clock
from sync.domain.retry import RequestRetry, probe_delay
from sync.errors import RetryableError, SyncError, Throttled, Unavailable
from sync.httpclient import Exchange, send
from sync.logs import Log
from sync.outcomes import Outcome, decode_json, raise_for_outcome
from sync.ratelimit import Limiter


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """``threshold`` requests failed in a row open the circuit (contract: module docstring)."""

    threshold: int = 5


@dataclass(frozen=True, slots=True)
class ApiProfile:
    """What differs between APIs; everything else is the pipeline.

    ``api`` is the metric label and log prefix (``shopwired``), ``name`` the human name.
    ``max_limiter_wait`` None = wait on the limiter as long as it says.
    """

    api: str
    name: str
    retry: RequestRetry = field(default_factory=RequestRetry)
    max_limiter_wait: float | None = None
    max_retry_after: float = 300.0
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)


class Circuit:
    """Closed → open → (probe) → closed, per API account, on the injected clock.

    Thread-safe. ``state`` is ``closed``, ``open`` or ``probing``; ``opened`` counts how often
    it opened. See the module docstring for the contract.
    """

    def __init__(self, clock: Clock, policy: CircuitPolicy, name: str) -> None:
        self._clock = clock
        self._policy = policy
        self._name = name
        self._lock = threading.Lock()
        self._failures = 0
        self._failed_probes = 0
        self._open = False
        self._probe_at = 0.0
        self._probing = False
        self.opened = 0

    @property
    def state(self) -> str:
        with self._lock:
            if not self._open:
                return "closed"
            return "probing" if self._probing else "open"

    def before_request(self) -> bool:
        """Raise :class:`~sync.errors.Unavailable` while open; True when this request is the
        probe (it must be sent once, without in-place retries)."""
        with self._lock:
            if not self._open:
                return False
            now = self._clock.monotonic()
            if self._probing or now < self._probe_at:
                wait = max(self._probe_at - now, 0.0) if not self._probing else 1.0
                raise Unavailable(
                    f"{self._name} failed {self._policy.threshold} requests in a row: nothing "
                    f"is sent until a probe succeeds (next in {wait:.0f} s)",
                    retry_after=max(wait, 0.5),
                )
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._failed_probes = 0
            self._open = False
            self._probing = False

    def failure(self, probe: bool) -> None:
        with self._lock:
            now = self._clock.monotonic()
            if probe or self._open:
                self._probing = False
                self._failed_probes += 1
                self._probe_at = now + probe_delay(self._failed_probes)
                return
            self._failures += 1
            if self._failures >= self._policy.threshold:
                self._open = True
                self._failed_probes = 0
                self._probe_at = now + probe_delay(0)
                self.opened += 1
                metrics.inc("ordersync_circuit_opened_total", api=self._name)

    def abandon_probe(self) -> None:
        """A probe ended without an answer about the API's health (e.g. a rate-limit wait)."""
        with self._lock:
            self._probing = False


class PooledApiClient:
    """Base of the ShopWired, Elastic Path and WiredPlus clients: one pooled ``httpx.Client``,
    its limiter, its circuit, and the request pipeline (contract: module docstring).

    A client owns its connection pool and closes it exactly through :meth:`close`
    (idempotent), also when used as a context manager.

    Attributes: ``calls`` counts HTTP requests by endpoint label; ``throttled`` counts
    throttle answers (429, 503 + Retry-After).
    """

    _http: httpx.Client
    _limiter: Limiter
    _clock: Clock
    _profile: ApiProfile
    _circuit: Circuit
    _rng: random.Random
    _log: Log
    _redactor: Callable[[str], str]
    calls: Counter[str]
    throttled: int

    def _init_pipeline(
        self,
        profile: ApiProfile,
        *,
        clock: Clock,
        limiter: Limiter,
        http: httpx.Client,
        log: Log,
        rng: random.Random | None,
        redactor: Callable[[str], str],
    ) -> None:
        self._profile = profile
        self._redactor = redactor
        self._clock = clock
        self._limiter = limiter
        self._http = http
        self._log = log
        self._rng = rng if rng is not None else random.Random()
        self._circuit = Circuit(clock, profile.circuit, profile.name)
        self.calls = Counter()
        self.throttled = 0

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    @property
    def circuit(self) -> Circuit:
        return self._circuit

    def _redact(self, text: str) -> str:
        """Credentials out of ``text`` (a client may add more, e.g. its bearer token)."""
        return self._redactor(text)

    # -- the pipeline ------------------------------------------------------------------------
    def _take_slot(self, endpoint: str, ceiling: float | None) -> None:
        api = self._profile.api
        if ceiling is None:
            began = self._clock.monotonic()
            self._limiter.acquire()
            waited = self._clock.monotonic() - began
            if waited > 0:
                metrics.inc("ordersync_rate_limit_wait_seconds_total", waited, api=api)
            return
        while True:
            wait = self._limiter.try_acquire()
            if wait <= 0:
                return
            metrics.inc("ordersync_rate_limit_wait_seconds_total", min(wait, ceiling), api=api)
            if wait > ceiling:
                raise Throttled(
                    f"{self._profile.name} client-side rate budget exhausted for {wait:.0f} s",
                    endpoint=endpoint,
                    retry_after=wait,
                )
            self._clock.sleep(wait)

    def _observe(self, endpoint: str, ex: Exchange, outcome: Outcome, attempt: int) -> None:
        api = self._profile.api
        metrics.inc("ordersync_api_calls_total", api=api, endpoint=endpoint,
                    status=str(ex.status or 0))
        if outcome.kind != "ok":
            metrics.inc("ordersync_api_errors_total", api=api, endpoint=endpoint,
                        outcome="throttled" if outcome.throttled else outcome.kind)
        self._log.debug(
            f"{api}_call",
            endpoint=endpoint,
            status=ex.status,
            duration_ms=round(ex.duration_ms, 1),
            outcome=outcome.kind,
            attempt=attempt,
        )

    def _request(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        classify: Callable[[Exchange], Outcome],
        fresh_headers: Callable[[], Mapping[str, str]] | None = None,
        resend: Callable[[Exchange], bool] | None = None,
        **kwargs: Any,
    ) -> tuple[Exchange, Outcome]:
        """Run one logical request through the pipeline; returns the last exchange and its
        outcome when it is ``ok``, ``not_found``, ``fatal`` or ``skip`` (raise the last two
        with :meth:`_raise`), raises Throttled / RetryableError / Unavailable otherwise.

        ``fresh_headers`` is called before every try (a fresh bearer token); ``resend`` may look at
        an exchange first and return True to send the same request again at once (a token
        renewal; it must bound itself).
        """
        retry = self._profile.retry
        started = self._clock.monotonic()
        attempt = 0
        while True:
            probe = self._circuit.before_request()
            ceiling = self._profile.max_limiter_wait
            if attempt and ceiling is not None:
                # A retry's rate wait counts against the retry budget too.
                spent = self._clock.monotonic() - started
                ceiling = max(0.0, min(ceiling, retry.budget - spent))
            try:
                self._take_slot(endpoint, ceiling)
            except Throttled:
                if probe:
                    self._circuit.abandon_probe()
                raise
            if fresh_headers is not None:
                headers = {**kwargs.get("headers", {}), **fresh_headers()}
                ex = send(self._http, self._clock, method, path,
                          **{**kwargs, "headers": headers})
            else:
                ex = send(self._http, self._clock, method, path, **kwargs)
            self.calls[endpoint] += 1
            if resend is not None and resend(ex):
                if probe:
                    self._circuit.abandon_probe()
                continue
            outcome = classify(ex)
            self._observe(endpoint, ex, outcome, attempt)
            if outcome.kind != "retry":
                self._circuit.success()
                return ex, outcome
            if outcome.throttled:
                self.throttled += 1
                if probe:
                    self._circuit.abandon_probe()
            wait = outcome.retry_after
            if outcome.throttled and wait is not None:
                self._limiter.penalize(wait)
            if wait is not None and wait > self._profile.max_retry_after:
                error = Throttled if outcome.throttled else RetryableError
                raise error(
                    f"{self._profile.name} asked us to wait {wait:.0f} s",
                    endpoint=endpoint, status=outcome.status, retry_after=wait,
                ) from ex.exc
            if wait is None:
                wait = retry.backoff(attempt, self._rng)
            timed_out = isinstance(ex.exc, httpx.TimeoutException)
            elapsed = self._clock.monotonic() - started
            if (
                probe
                or (timed_out and not retry.retry_timeouts)
                or not retry.may_retry(attempt, elapsed, wait)
            ):
                if not outcome.throttled:
                    self._circuit.failure(probe)
                if outcome.throttled and attempt:
                    outcome = Outcome(
                        outcome.kind, outcome.retry_after,
                        f"{self._profile.name} still throttling after {attempt} retries: "
                        f"{outcome.reason}",
                        outcome.status, True,
                    )
                self._raise(outcome, endpoint, ex.exc)
            self._clock.sleep(wait)
            attempt += 1

    def _request_json(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        classify: Callable[[Exchange], Outcome],
        base_url_hint: str,
        allow_not_found: bool = False,
        **kwargs: Any,
    ) -> Any:
        """:meth:`_request`, then the decoded JSON of an ``ok`` answer; None for a 404 when
        ``allow_not_found``, else a 404 is fatal (a collection endpoint cannot be missing: the
        base URL is wrong — ``base_url_hint`` says what to check); fatal/skip raise."""
        ex, outcome = self._request(endpoint, method, path, classify=classify, **kwargs)
        if outcome.kind == "not_found":
            if allow_not_found:
                return None
            outcome = Outcome(
                "fatal", None,
                f"{self._profile.name} has no {path!r} endpoint: check {base_url_hint}",
                outcome.status,
            )
        if outcome.kind != "ok":
            self._raise(outcome, endpoint, ex.exc)
        return decode_json(ex.text)

    def _raise(self, outcome: Outcome, endpoint: str, cause: BaseException | None) -> None:
        """Raise ``outcome`` (retry/fatal/skip) with its reason redacted; return for ok."""
        safe = Outcome(
            outcome.kind, outcome.retry_after, self._redact(outcome.reason), outcome.status,
            outcome.throttled,
        )
        try:
            raise_for_outcome(safe, endpoint)
        except SyncError as err:
            raise err from cause

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["ApiProfile", "Circuit", "CircuitPolicy", "PooledApiClient", "RetryableError"]
