"""The ShopWired webhook receiver: a plain ASGI application (HTTP + lifespan, no framework).

Routes
------
``POST /webhooks/shopwired``  a webhook delivery or the verification handshake
``GET|HEAD /healthz``         200 ``{"status": "ok"}`` when the inbox's database answers,
                              503 ``{"status": "unavailable"}`` otherwise
anything else                 404 (known path, wrong method: 405 with ``Allow``)

Delivery contract (reference ``shopwired-api.md`` §4)
------------------------------------------------------
ShopWired counts **only ``200``** as delivered, wants it within **5 s**, retries hourly for
24 h and disables the webhook after 24 failures. So the handler verifies, parses, does one
small database transaction (in a worker thread, so the event loop never blocks) and answers;
the order itself is re-fetched later by the scheduler. In order:

1. Body larger than ``max_body`` (declared ``Content-Length`` or counted while reading) →
   **413**.
2. ``X-ShopWired-Signature`` missing, or not the lowercase hex HMAC-SHA256 of the **raw**
   body keyed with ``secret`` (constant-time compare; upper-case hex is accepted too) →
   **401**, and one warning line saying which. Neither the body nor the secret is logged.
3. Valid signature but not JSON / not an object → **200** ``ignored`` plus a warning: the
   sender is authentic, so a retry would only deliver the same garbage 24 more times and then
   disable the webhook.
4. ``{"verificationToken": <str>}`` without ``event`` → the verification handshake (see
   below) → **200**.
5. ``{"event": {...}}`` whose ``topic`` is not an order topic
   (:data:`~sync.webhook.inbox.ORDER_TOPICS`) → **200** ``ignored`` (logged at info).
6. ``event.createdAt`` (falling back to the envelope ``timestamp``) older than
   ``now - replay_window`` → **200** ``ignored`` (stale or replayed; logged). An unreadable
   or missing date does not reject the event.
7. Otherwise :meth:`Inbox.record` in a thread, bounded by ``db_timeout``: first delivery →
   **200** ``accepted``; same event id again → **200** ``duplicate`` (no second refresh).
   A database error or timeout → **503** (not stored, so ShopWired should retry).

Assumptions where the reference is silent or unverified (all marked there)
----------------------------------------------------------------------------
* **Handshake**: ShopWired POSTs ``{"timestamp": ..., "verificationToken": "<token>"}``
  signed like any delivery; the tested pattern (LAR, ROSS) answers 200 with
  ``{"verificationToken": hex(HMAC-SHA256(secret, token))}``. ``handshake="echo"`` answers
  ``{"verificationToken": "<token>"}`` instead, the documented fallback if the first fails
  live. An unsigned handshake is rejected (401) like any other request.
* **Event id**: ``event.id`` (any JSON scalar, stored as text). When absent, the delivery is
  identified by ``topic:subjectId:createdAt`` (the reference's fallback key); ids longer than
  128 characters are replaced by their SHA-256.
* **Order id**: ``event.subjectId``, except for ``order.refund.created`` (subject type
  ``order_refund``: the subject is the refund), where it is ``data.orderId``. When no order id
  can be found the delivery is still recorded (200) but no refresh is requested.
* **Dates**: ``createdAt``/``timestamp`` are read as RFC-2822 (the documented envelope format),
  ISO-8601 or UNIX seconds.
* ``order.deleted`` is recorded with its topic (so :meth:`WebhookInbox.deleted_orders` can
  tell the scheduler) **and** requests a refresh, so an ``ids=`` call confirms the deletion.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

from sync.clock import Clock, utc
from sync.webhook.inbox import ORDER_REFUND_CREATED, ORDER_TOPICS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBHOOK_PATH = "/webhooks/shopwired"
HEALTH_PATH = "/healthz"
SIGNATURE_HEADER = b"x-shopwired-signature"


class Inbox(Protocol):
    """What the receiver needs from :class:`~sync.webhook.inbox.WebhookInbox`."""

    def record(
        self,
        store: str,
        delivery_id: str,
        topic: str,
        order_id: str | None,
        event_created_at: datetime | None,
        now: datetime,
    ) -> bool: ...

    def ping(self) -> bool: ...


def sign(secret: str, body: bytes) -> str:
    """ShopWired's signature of ``body``: lowercase hex HMAC-SHA256 keyed with ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def parse_when(value: Any) -> datetime | None:
    """An event date as aware UTC: RFC-2822, ISO-8601 or UNIX seconds; None if unreadable."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), tz=UTC)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            try:
                return utc(parsedate_to_datetime(text))
            except (TypeError, ValueError, IndexError):
                return utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _scalar_text(value: Any, limit: int) -> str | None:
    """A JSON id (int or non-empty string, not bool) as text of at most ``limit`` chars."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
    else:
        return None
    return text if len(text) <= limit else None


def _delivery_id(event: dict[str, Any], topic: str) -> str:
    raw = event.get("id")
    if isinstance(raw, int | str) and not isinstance(raw, bool) and str(raw).strip():
        text = str(raw).strip()
    else:
        text = f"{topic}:{event.get('subjectId')}:{event.get('createdAt')}"
    if len(text) > 128:
        text = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text


def _order_id(event: dict[str, Any], topic: str) -> str | None:
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    if topic == ORDER_REFUND_CREATED or event.get("subjectType") == "order_refund":
        oid = _scalar_text(data.get("orderId"), 64)
        if oid is None and isinstance(data.get("object"), dict):
            oid = _scalar_text(data["object"].get("orderId"), 64)
        return oid
    oid = _scalar_text(event.get("subjectId"), 64)
    if oid is None and isinstance(data.get("object"), dict):
        oid = _scalar_text(data["object"].get("id"), 64)
    return oid


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class WebhookApp:
    """The ASGI receiver built by :func:`make_app` (see the module docstring for the contract).

    ``outcomes`` counts answers by outcome name (``accepted``, ``duplicate``, ``bad_signature``
    ...) for this process; the ledger holds the durable record.
    """

    def __init__(
        self,
        *,
        inbox: Inbox,
        secret: str,
        store: str,
        clock: Clock,
        log: Any,
        max_body: int,
        replay_window: timedelta,
        db_timeout: float,
        handshake: Literal["hmac", "echo"],
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret must not be empty")
        if max_body <= 0:
            raise ValueError("max_body must be positive")
        self.inbox = inbox
        self._key = secret.encode("utf-8")
        self.store = store
        self.clock = clock
        self.log = log
        self.max_body = max_body
        self.replay_window = replay_window
        self.db_timeout = db_timeout
        self.handshake = handshake
        self.outcomes: Counter[str] = Counter()

    # -- ASGI entry ---------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        method = str(scope.get("method", "GET")).upper()
        path = str(scope.get("path", "/")).rstrip("/") or "/"
        try:
            if path == WEBHOOK_PATH:
                if method != "POST":
                    await _respond(send, 405, {"error": "method not allowed"}, allow="POST")
                    return
                await self._webhook(scope, receive, send)
            elif path == HEALTH_PATH:
                if method not in ("GET", "HEAD"):
                    await _respond(send, 405, {"error": "method not allowed"}, allow="GET, HEAD")
                    return
                await self._health(send, head=method == "HEAD")
            else:
                await _respond(send, 404, {"error": "not found"})
        except _Disconnected:
            self.outcomes["disconnected"] += 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.log.info("webhook.receiver.start", store=self.store, path=WEBHOOK_PATH)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.log.info("webhook.receiver.stop", store=self.store)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- health -------------------------------------------------------------------------
    async def _health(self, send: Send, *, head: bool) -> None:
        try:
            ok = await asyncio.wait_for(asyncio.to_thread(self.inbox.ping), self.db_timeout)
        except Exception:  # timeout or a misbehaving inbox: not healthy
            ok = False
        if ok:
            await _respond(send, 200, {"status": "ok"}, head=head)
        else:
            self.log.warning("webhook.health.failed", store=self.store)
            await _respond(send, 503, {"status": "unavailable"}, head=head)

    # -- deliveries ---------------------------------------------------------------------
    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers") or ():
            headers[bytes(name).lower()] = bytes(value)
        client = scope.get("client")
        peer = str(client[0]) if client else None

        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body:
            await self._too_large(send, peer, int(declared))
            return
        try:
            body = await self._read_body(receive)
        except _TooLarge:
            await self._too_large(send, peer, None)
            return

        provided = headers.get(SIGNATURE_HEADER)
        if provided is None or not provided.strip():
            self._count("missing_signature")
            self.log.warning(
                "webhook.rejected", reason="missing X-ShopWired-Signature header",
                store=self.store, peer=peer, size=len(body),
            )
            await _respond(send, 401, {"error": "missing signature"})
            return
        expected = hmac.new(self._key, body, hashlib.sha256).hexdigest().encode("ascii")
        if not hmac.compare_digest(expected, provided.strip().lower()):
            self._count("bad_signature")
            self.log.warning(
                "webhook.rejected", reason="X-ShopWired-Signature does not match the body",
                store=self.store, peer=peer, size=len(body),
            )
            await _respond(send, 401, {"error": "bad signature"})
            return

        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            self._count("malformed")
            self.log.warning(
                "webhook.ignored", reason="signed body is not a JSON object",
                store=self.store, size=len(body),
            )
            await _respond(send, 200, {"result": "ignored"})
            return

        event = payload.get("event")
        if not isinstance(event, dict):
            token = payload.get("verificationToken")
            if isinstance(token, str) and token:
                await self._handshake(send, token)
                return
            self._count("unrecognised")
            self.log.warning(
                "webhook.ignored", reason="neither an event nor a verification request",
                store=self.store, keys=sorted(str(k) for k in payload)[:10],
            )
            await _respond(send, 200, {"result": "ignored"})
            return
        await self._event(send, payload, event)

    async def _too_large(self, send: Send, peer: str | None, size: int | None) -> None:
        self._count("too_large")
        self.log.warning(
            "webhook.rejected", reason="body larger than the limit", store=self.store,
            peer=peer, declared_size=size, max_body=self.max_body,
        )
        await _respond(send, 413, {"error": "payload too large"}, close=True)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            if message["type"] != "http.request":
                continue
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _handshake(self, send: Send, token: str) -> None:
        if self.handshake == "echo":
            reply = token
        else:
            reply = hmac.new(self._key, token.encode("utf-8"), hashlib.sha256).hexdigest()
        self._count("handshake")
        self.log.info("webhook.handshake", store=self.store, mode=self.handshake)
        await _respond(send, 200, {"verificationToken": reply})

    async def _event(self, send: Send, payload: dict[str, Any], event: dict[str, Any]) -> None:
        raw_topic = event.get("topic")
        topic = raw_topic.strip() if isinstance(raw_topic, str) else ""
        if topic not in ORDER_TOPICS:
            self._count("unknown_topic")
            self.log.info(
                "webhook.ignored", reason="topic not handled", store=self.store,
                topic=topic[:64] or None,
            )
            await _respond(send, 200, {"result": "ignored"})
            return
        delivery_id = _delivery_id(event, topic)
        created = parse_when(event.get("createdAt")) or parse_when(payload.get("timestamp"))
        now = self.clock.now()
        if created is not None and created < now - self.replay_window:
            self._count("stale")
            self.log.warning(
                "webhook.ignored", reason="event older than the replay window",
                store=self.store, topic=topic, delivery_id=delivery_id,
                created_at=created.isoformat(), window_seconds=self.replay_window.total_seconds(),
            )
            await _respond(send, 200, {"result": "ignored"})
            return
        order_id = _order_id(event, topic)
        try:
            fresh = await asyncio.wait_for(
                asyncio.to_thread(
                    self.inbox.record, self.store, delivery_id, topic, order_id, created, now
                ),
                self.db_timeout,
            )
        except TimeoutError:
            self._count("db_timeout")
            self.log.error(
                "webhook.failed", reason="database did not answer in time", store=self.store,
                topic=topic, delivery_id=delivery_id, timeout=self.db_timeout,
            )
            await _respond(send, 503, {"error": "try again later"})
            return
        except Exception as exc:
            self._count("db_error")
            self.log.error(
                "webhook.failed", reason="could not record the delivery", store=self.store,
                topic=topic, delivery_id=delivery_id, error=type(exc).__name__,
            )
            await _respond(send, 503, {"error": "try again later"})
            return
        outcome = "accepted" if fresh else "duplicate"
        self._count(outcome)
        if order_id is None:
            self.log.warning(
                "webhook.no_order_id", store=self.store, topic=topic, delivery_id=delivery_id
            )
        self.log.info(
            f"webhook.{outcome}", store=self.store, topic=topic, delivery_id=delivery_id,
            order_id=order_id,
        )
        await _respond(send, 200, {"result": outcome})

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1


async def _respond(
    send: Send,
    status: int,
    obj: Any,
    *,
    head: bool = False,
    allow: str | None = None,
    close: bool = False,
) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]
    if allow:
        headers.append((b"allow", allow.encode("ascii")))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def make_app(
    *,
    inbox: Inbox,
    secret: str,
    store: str,
    clock: Clock,
    log: Any,
    max_body: int = 256 * 1024,
    replay_window: timedelta = timedelta(hours=24),
    db_timeout: float = 4.0,
    handshake: Literal["hmac", "echo"] = "hmac",
) -> WebhookApp:
    """Build the receiver for one store (an ASGI callable; serve it with uvicorn).

    ``inbox`` stores deliveries (:class:`~sync.webhook.inbox.WebhookInbox`); ``secret`` is the
    webhook signing secret (never logged); ``store`` is the ledger store name; ``clock``
    supplies "now" for the replay check and ``received_at``; ``log`` is a structlog logger.
    ``db_timeout`` bounds each database call (seconds, keep it under ShopWired's 5 s);
    ``handshake`` picks the verification reply (see the module docstring).
    """
    return WebhookApp(
        inbox=inbox,
        secret=secret,
        store=store,
        clock=clock,
        log=log,
        max_body=max_body,
        replay_window=replay_window,
        db_timeout=db_timeout,
        handshake=handshake,
    )
