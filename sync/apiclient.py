"""What every API client shares: one pooled ``httpx.Client``, its limiter, and its lifecycle.

Contract: a client owns its connection pool and closes it exactly through :meth:`close`
(idempotent), also when used as a context manager; ``limiter`` is the client-side rate limiter
every request waits on first (shared across processes when it is Redis-backed).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

from sync.ratelimit import Limiter


class PooledApiClient:
    """Base of the ShopWired, Elastic Path and WiredPlus clients (see the module docstring)."""

    _http: httpx.Client
    _limiter: Limiter

    @property
    def limiter(self) -> Limiter:
        return self._limiter

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
