"""How ``ordersync webhook`` runs the receiver under uvicorn: limits that survive abuse.

The receiver faces the internet (behind a TLS proxy at best), so an idle or trickling client
must not hold a connection, and a flood must not exhaust file descriptors:

* **Request head timeout** (:data:`HEADER_TIMEOUT`): a connection that has not sent a
  complete request line and headers this long after it opened (or after its previous
  response) is closed. Uvicorn has no such timeout of its own, so
  :class:`GuardedH11Protocol` adds it to the h11 protocol.
* **Body timeout**: enforced by the app (:class:`~sync.webhook.app.WebhookApp`,
  ``body_timeout``): a body not complete in time gets 408 and the connection is closed.
* **Keep-alive** (:data:`KEEP_ALIVE`): an idle kept-alive connection is closed after 5 s.
* **Concurrency** (:data:`MAX_CONCURRENCY`): beyond that many open connections and tasks,
  uvicorn answers 503 at once (ShopWired retries), instead of queueing without limit.
* **Header size** (:data:`MAX_HEADER_BYTES`): a larger request head is a 400.
* Asyncio's "accept failed" tracebacks (e.g. out of file descriptors) are logged at most once
  per :data:`LOG_EVERY` seconds per message, not thousands of times a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT: Final = 10.0
KEEP_ALIVE: Final = 5
MAX_CONCURRENCY: Final = 100
MAX_HEADER_BYTES: Final = 16 * 1024
BACKLOG: Final = 128
BODY_TIMEOUT: Final = 10.0
LOG_EVERY: Final = 10.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a timeout on receiving each request's head."""

    header_timeout: float = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        old = getattr(self, "_header_timer", None)
        if old is not None:
            old.cancel()
        waiting_after = self.cycle  # None, or the cycle whose response just completed
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout, self._header_timed_out, waiting_after
        )

    def _header_timed_out(self, waiting_after: Any) -> None:
        self._header_timer = None
        if self.cycle is waiting_after and not self.transport.is_closing():
            # No new request head arrived in time: drop the connection.
            self.transport.close()


class _OncePerInterval(logging.Filter):
    """Let a given message through at most once per ``interval`` seconds."""

    def __init__(self, interval: float = LOG_EVERY) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:200]
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        if len(self._last) > 1000:
            self._last.clear()
        return True


def quiet_asyncio_floods() -> None:
    """Rate-limit asyncio's own error lines (idempotent)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _OncePerInterval) for f in logger.filters):
        logger.addFilter(_OncePerInterval())


def server_options() -> dict[str, Any]:
    """The keyword arguments ``uvicorn.run`` gets besides the app, host and port."""
    return {
        "http": GuardedH11Protocol,
        "timeout_keep_alive": KEEP_ALIVE,
        "limit_concurrency": MAX_CONCURRENCY,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "backlog": BACKLOG,
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "server_header": False,
        "timeout_graceful_shutdown": 5,
    }
