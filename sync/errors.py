"""Errors by what the caller must do.

* :class:`FatalError` — stop the daemon loudly (bad credentials, bad configuration). Retrying
  would only burn the rate budget.
* :class:`RetryableError` — try again later (timeouts, connection errors, 5xx, 429). Carries the
  server's ``Retry-After`` when it sent one.
  :class:`Throttled` and :class:`Unavailable` are retryable errors that say nothing about the
  item (rate limit, circuit open): they never spend one of its attempts.
* :class:`SkippableError` — this one order cannot be synced (unmappable, rejected by the
  destination with 400/422). It is recorded with the reason and the line moves on.

Each HTTP client turns every outcome into one of these through a single table
(:mod:`sync.outcomes`).
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class of every error ordersync raises on purpose."""

    def __init__(self, message: str, *, endpoint: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        code = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{where}{code}{self.message}"


class FatalError(SyncError):
    """The daemon cannot go on until a human fixes something (credentials, config)."""


class RetryableError(SyncError):
    """Transient: the same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, endpoint=endpoint, status=status)
        self.retry_after = retry_after


class Throttled(RetryableError):
    """The API asked us to slow down (429, 503 with ``Retry-After``) or our own rate budget is
    spent. It says nothing about the item: wait ``retry_after`` without spending an attempt."""


class Unavailable(RetryableError):
    """The API account's circuit is open (it failed for everybody): nothing was sent. Try
    again after ``retry_after`` (the next probe) without spending an attempt."""


class SkippableError(SyncError):
    """This item cannot be synced as it is; dead-letter it with the reason."""


class ConfigError(FatalError):
    """Configuration is missing or invalid; the message names the setting."""
