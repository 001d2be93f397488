"""The webhook receiver: a plain ASGI application (HTTP + lifespan, no framework).

:func:`make_app` serves one store of one source (``make_app(source=...)``), on the legacy
routes below. :func:`make_multi_app` serves many stores from one deployment (issue 16):

``POST /webhooks/shopwired/{store}``    that store's ShopWired deliveries
``POST /webhooks/elasticpath/{store}``  that store's Elastic Path deliveries

``{store}`` is looked up on every request through the caller's ``directory`` (a
:class:`WebhookTarget`: ledger store, source, secret; or ``None``), so a rotated secret or a
new store takes effect without a restart. An unknown store, or a store of the other source,
is **404 before the body is read**: no database call, no inbox write, at most one warning per
10 s (``outcomes["unknown_store"]`` counts them). A known store's delivery then goes through
the very same pipeline as the legacy route, verified with that store's secret and recorded
under its store; every log line of a delivery carries ``store=``, and ``store_outcomes``
counts outcomes by ``(store, outcome)``. ``make_multi_app(default=...)`` also serves the
legacy route for one target.

Routes (legacy: one app, one store)
-----------------------------------
``POST /webhooks/shopwired``    ShopWired: a webhook delivery or the verification handshake
                                (``source="shopwired"``, the default)
``POST /webhooks/elasticpath``  Elastic Path: an integration (webhook) delivery
                                (``source="elasticpath"``)
``GET|HEAD /healthz``           200 ``{"status": "ok"}`` when the inbox's database answers,
                                503 ``{"status": "unavailable"}`` otherwise
anything else                   404 (known path, wrong method: 405 with ``Allow``), including
                                the other source's route

Either way a delivery is only a hint: the receiver records it and asks for a refresh of the
order; the poller re-reads the order by id from the source API. Nothing from the body is
pushed, and the poll stays the source of truth.

ShopWired delivery contract (reference ``shopwired-api.md`` §4)
----------------------------------------------------------------
ShopWired counts **only ``200``** as delivered, wants it within **5 s**, retries hourly for
24 h and disables the webhook after 24 failures. So the handler verifies, parses, does one
small database transaction (in a worker thread, so the event loop never blocks) and answers;
the order itself is re-fetched later by the scheduler. In order:

1. Body larger than ``max_body`` (declared ``Content-Length`` or counted while reading) →
   **413**; body not complete within ``body_timeout`` → **408** (connection closed).
2. ``X-ShopWired-Signature`` missing, or not the lowercase hex HMAC-SHA256 of the **raw**
   body keyed with ``secret`` (constant-time compare; upper-case hex is accepted too) →
   **401**, and one warning line saying which. Neither the body nor the secret is logged.
3. Valid signature but not JSON / not an object / nested deeper than
   :data:`MAX_JSON_DEPTH` → **200** ``ignored`` plus a warning: the sender is authentic, so a
   retry would only deliver the same garbage 24 more times and then disable the webhook.
   Every string of an accepted body is made safe first (:func:`sync.domain.text.clean_json`:
   no lone surrogates, NUL or control characters reach the database or a log line).
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

ShopWired assumptions where the reference is silent or unverified (all marked there)
----------------------------------------------------------------------------------
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
  can be found, or it is not a valid ShopWired id (a positive integer of at most 18 digits),
  the delivery is still recorded (200) but no refresh is requested (a warning names the
  problem): a malformed id never reaches ShopWired, so it can never fail a pass.
* **Dates**: ``createdAt``/``timestamp`` are read as RFC-2822 (the documented envelope format),
  ISO-8601 or UNIX seconds.
* ``order.deleted`` is recorded with its topic (so :meth:`WebhookInbox.deleted_orders` can
  tell the scheduler) **and** requests a refresh, so an ``ids=`` call confirms the deletion.

Elastic Path contract (reference ``wiredplus-elasticpath.md`` B.6)
-------------------------------------------------------------------
EP POSTs ``{id, triggered_by, attempt, integration, resources, payload: {data: <order>,
included}, configuration: {secret_key, url}}`` **at least once**, concurrently (so in any
order); a reply other than 2xx, or slower than **10 s**, is a failure and may lose the event
(no retry schedule is documented). Losing one costs only latency: the ``updated_at`` poll
still finds the change. In order:

1. Body larger than ``max_body`` → **413** (as for ShopWired, same code path).
2. ``X-MOLTIN-SECRET-KEY`` missing/blank → **401** ``missing secret key``; not equal to
   ``secret`` (``hmac.compare_digest`` on the bytes, surrounding whitespace ignored on both
   sides) → **401** ``bad secret key``. One warning line saying which; neither the body, the
   configured secret nor the header value is logged.
3. Authentic but not a JSON object → **200** ``ignored`` plus a warning.
4. Topic = ``triggered_by`` (falling back to the ``X-MOLTIN-INTEGRATION-TRIGGER`` header)
   not in :data:`~sync.webhook.inbox.ELASTICPATH_ORDER_TOPICS` (``order.created``,
   ``order.updated``, ``order.paid``, ``order.authorized``, ``order.fulfilled``,
   ``order.cancelled``, ``order.refunded``) → **200** ``ignored`` (logged at info).
5. ``payload.data.meta.timestamps.updated_at``, only when present and readable, older than
   ``now - replay_window`` → **200** ``ignored`` (stale).
6. Otherwise recorded exactly like a ShopWired event (step 7 above): **200** ``accepted`` /
   **200** ``duplicate`` / **503** on a database error or timeout.

Elastic Path assumptions
------------------------
* **Authenticity** is the plain shared secret in ``X-MOLTIN-SECRET-KEY`` (not an HMAC of the
  body); ``configuration.secret_key`` in the body is not trusted or read (the reference ties
  the body field to Composer connectors, where it holds a hash of the client secret).
* **Delivery id**: the envelope ``id``, assumed to stay the same across EP's retry attempts
  (only ``attempt`` changes), so a retry is a ``duplicate``. Without an ``id``: ``sha256:`` +
  SHA-256 of the canonical JSON of the envelope minus ``attempt`` and ``configuration`` (so a
  retry still matches, and the secret is never part of a stored value).
* **Order id**: ``payload.data.id``; when missing, the ``data.id`` of the deprecated
  ``resources`` JSON string. None found, or not 1-64 letters, digits, ``-`` or ``_`` →
  recorded without a refresh (as for ShopWired).
  Deleted resources carry only ``{type, id}``: the id still asks for a refresh, and the
  re-read by id settles what happened. No EP order topic is treated as a deletion.
* **Dates**: only the order's ``updated_at`` dates an EP event (there is no event time);
  an order payload without it is never rejected as stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol, TypeAlias

from sync.clock import Clock, utc
from sync.domain.parse_elasticpath import bundle_order_id
from sync.domain.parse_shopwired import order_id_of
from sync.domain.text import clean_json, clean_text, json_depth
from sync.webhook.inbox import ELASTICPATH_ORDER_TOPICS, ORDER_REFUND_CREATED, ORDER_TOPICS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBHOOK_PATH = "/webhooks/shopwired"
ELASTICPATH_WEBHOOK_PATH = "/webhooks/elasticpath"
HEALTH_PATH = "/healthz"
SIGNATURE_HEADER = b"x-shopwired-signature"
SECRET_KEY_HEADER = b"x-moltin-secret-key"
TRIGGER_HEADER = b"x-moltin-integration-trigger"

MAX_JSON_DEPTH = 32
"""Deepest JSON nesting a delivery may have (a real one is under 10 levels)."""

WebhookSource = Literal["shopwired", "elasticpath"]
WEBHOOK_PATHS: dict[str, str] = {
    "shopwired": WEBHOOK_PATH,
    "elasticpath": ELASTICPATH_WEBHOOK_PATH,
}
"""The one delivery route an app built for each source serves."""


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
    return _bounded_id(text)


def _bounded_id(text: str) -> str:
    """``text`` as a delivery id: itself up to 128 characters, else ``sha256:<hex>`` of it."""
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


def _ep_delivery_id(envelope: dict[str, Any]) -> str:
    """An Elastic Path delivery's id: the envelope ``id``; without one, the SHA-256 of the
    envelope minus ``attempt`` and ``configuration`` (canonical JSON), so a retry -- which
    differs only in ``attempt`` -- still has the same id and the secret is never hashed."""
    raw = envelope.get("id")
    if isinstance(raw, int | str) and not isinstance(raw, bool) and str(raw).strip():
        return _bounded_id(str(raw).strip())
    rest = {k: v for k, v in envelope.items() if k not in ("attempt", "configuration")}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _ep_order(envelope: dict[str, Any]) -> tuple[str | None, datetime | None]:
    """``(order id, updated_at)`` of an Elastic Path delivery.

    Candidates in order: ``payload.data``, then the ``data`` of the deprecated ``resources``
    JSON string (an already-decoded object is accepted too). The first candidate with a usable
    ``id`` (non-empty string or int, at most 64 characters) gives both values; ``updated_at``
    is its ``meta.timestamps.updated_at`` (``None`` when absent or unreadable).
    """
    candidates: list[Any] = []
    payload = envelope.get("payload")
    if isinstance(payload, dict):
        candidates.append(payload.get("data"))
    resources = envelope.get("resources")
    if isinstance(resources, str):
        try:
            resources = json.loads(resources)
        except (ValueError, RecursionError):
            resources = None
    if isinstance(resources, dict):
        candidates.append(resources.get("data"))
    for data in candidates:
        if not isinstance(data, dict):
            continue
        oid = _scalar_text(data.get("id"), 64)
        if oid is None:
            continue
        meta = data.get("meta")
        stamps = meta.get("timestamps") if isinstance(meta, dict) else None
        updated = stamps.get("updated_at") if isinstance(stamps, dict) else None
        return oid, parse_when(updated)
    return None, None


def valid_order_id(source: WebhookSource, order_id: str | None) -> str | None:
    """``order_id`` in its canonical form if it is valid for ``source`` (ShopWired: a
    positive integer of at most 18 digits; Elastic Path: 1-64 letters, digits, ``-``, ``_``),
    else None."""
    if order_id is None:
        return None
    if source == "shopwired":
        return order_id_of(order_id)
    return bundle_order_id({"id": order_id})


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


class _Disconnected(Exception):
    pass


@dataclass(frozen=True)
class WebhookTarget:
    """Where a delivery for one store goes and how it is verified.

    ``store`` is the ledger store name the delivery is recorded under; ``source`` the platform
    (and so the route and the verification rule); ``secret`` the ShopWired signing secret or
    the Elastic Path integration's ``secret_key`` (never in the repr, never logged; must not
    be empty).
    """

    store: str
    source: WebhookSource
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.source not in WEBHOOK_PATHS:
            raise ValueError(f"unknown webhook source {self.source!r}")
        if not self.store:
            raise ValueError("the webhook store must not be empty")
        if not (self.secret.strip() if self.source == "elasticpath" else self.secret):
            raise ValueError("the webhook secret must not be empty")

    @property
    def key(self) -> bytes:
        """The secret as compared: Elastic Path sends the secret itself as a header value,
        and HTTP strips a header value's surrounding whitespace, so compare without it on
        both sides; a ShopWired HMAC key is used as it is."""
        secret = self.secret.strip() if self.source == "elasticpath" else self.secret
        return secret.encode("utf-8")


WebhookDirectory: TypeAlias = Callable[[str], WebhookTarget | None]
"""Maps a store name from a per-store route to its :class:`WebhookTarget`, or ``None`` when
the store is unknown, has no webhook secret or was removed. Called on every request to a
per-store route (so a rotated secret or a new store takes effect at once): the caller caches,
and it must not block on the network for long."""

MAX_STORE_NAME = 64
"""The longest store name a per-store route looks up (the ledger's ``store`` column)."""


class _Sampler:
    """Lets one event through per ``interval`` seconds and counts the ones it held back."""

    def __init__(self, interval: float = 10.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._now = now
        self._last: float | None = None
        self._held = 0

    def take(self) -> int | None:
        """``None`` to stay quiet; else how many were held back since the last one let
        through (then log once)."""
        now = self._now()
        if self._last is not None and now - self._last < self.interval:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held


class WebhookApp:
    """The ASGI receiver built by :func:`make_app` (one store, the legacy route) or
    :func:`make_multi_app` (per-store routes, optionally the legacy route too). See the module
    docstring for the contract; every delivery goes through the same pipeline, only the
    :class:`WebhookTarget` (store, source, secret) differs.

    ``outcomes`` counts answers by outcome name (``accepted``, ``duplicate``, ``bad_signature``
    ..., ``unknown_store``) for this process, all stores together; ``store_outcomes`` counts
    the same by ``(store, outcome)`` for deliveries to a known store (an unknown store name is
    never a key: it comes from the sender). The ledger holds the durable record.
    ``store``, ``source`` and ``path`` describe the legacy route (``None`` without one).
    """

    def __init__(
        self,
        *,
        inbox: Inbox,
        clock: Clock,
        log: Any,
        max_body: int,
        replay_window: timedelta,
        db_timeout: float,
        handshake: Literal["hmac", "echo"],
        body_timeout: float = 10.0,
        default: WebhookTarget | None = None,
        directory: WebhookDirectory | None = None,
    ) -> None:
        if default is None and directory is None:
            raise ValueError("a webhook receiver needs a store (default) or a directory")
        if max_body <= 0:
            raise ValueError("max_body must be positive")
        self.inbox = inbox
        self.default = default
        self.directory = directory
        self.store: str | None = default.store if default else None
        self.source: WebhookSource | None = default.source if default else None
        self.path: str | None = WEBHOOK_PATHS[default.source] if default else None
        self.clock = clock
        self.log = log
        self.max_body = max_body
        self.replay_window = replay_window
        self.db_timeout = db_timeout
        self.handshake = handshake
        self.body_timeout = body_timeout
        self.outcomes: Counter[str] = Counter()
        self.store_outcomes: Counter[tuple[str, str]] = Counter()
        self._unknown_sampler = _Sampler()
        self._directory_sampler = _Sampler()

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
            if self.default is not None and path == self.path:
                if method != "POST":
                    await _respond(send, 405, {"error": "method not allowed"}, allow="POST")
                    return
                await self._webhook(self.default, scope, receive, send)
            elif path == HEALTH_PATH:
                if method not in ("GET", "HEAD"):
                    await _respond(send, 405, {"error": "method not allowed"}, allow="GET, HEAD")
                    return
                await self._health(send, head=method == "HEAD")
            elif self.directory is not None and (route := _store_route(path)) is not None:
                target = await self._lookup(send, self.directory, *route)
                if target is None:
                    return
                if method != "POST":
                    await _respond(send, 405, {"error": "method not allowed"}, allow="POST")
                    return
                await self._webhook(target, scope, receive, send)
            else:
                await _respond(send, 404, {"error": "not found"})
        except _Disconnected:
            self.outcomes["disconnected"] += 1

    async def _lookup(
        self, send: Send, directory: WebhookDirectory, source: WebhookSource, name: str
    ) -> WebhookTarget | None:
        """The target of ``POST /webhooks/{source}/{name}``, or ``None`` after answering: 404
        (unknown store, or one on the other platform: nothing read, stored or logged per
        request -- one sampled warning at most; the connection is closed, so an unread body
        costs nothing either) or 503 (the directory failed)."""
        target: WebhookTarget | None = None
        if 0 < len(name) <= MAX_STORE_NAME:
            try:
                target = directory(name)
            except Exception as exc:
                self.outcomes["directory_error"] += 1
                held = self._directory_sampler.take()
                if held is not None:
                    self.log.error(
                        "webhook.failed", reason="store directory failed",
                        store=clean_text(name), error=type(exc).__name__, suppressed=held,
                    )
                await _respond(send, 503, {"error": "try again later"}, close=True)
                return None
        if isinstance(target, WebhookTarget) and target.source == source:
            return target
        self.outcomes["unknown_store"] += 1
        held = self._unknown_sampler.take()
        if held is not None:
            self.log.warning(
                "webhook.rejected", reason="unknown store", source=source,
                store=clean_text(name[:MAX_STORE_NAME]), suppressed=held,
            )
        await _respond(send, 404, {"error": "not found"}, close=True)
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                extra: dict[str, Any] = {}
                if self.directory is not None:
                    extra["per_store"] = [p + "/{store}" for p in WEBHOOK_PATHS.values()]
                self.log.info("webhook.receiver.start", store=self.store, path=self.path,
                              **extra)
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

    # -- deliveries: shared -------------------------------------------------------------
    async def _webhook(
        self, t: WebhookTarget, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers") or ():
            headers[bytes(name).lower()] = bytes(value)
        client = scope.get("client")
        peer = str(client[0]) if client else None
        body = await self._bounded_body(t, headers, receive, send, peer)
        if body is None:
            return
        if t.source == "elasticpath":
            await self._elasticpath(t, send, headers, body, peer)
        else:
            await self._shopwired(t, send, headers, body, peer)

    async def _bounded_body(
        self, t: WebhookTarget, headers: dict[bytes, bytes], receive: Receive, send: Send,
        peer: str | None,
    ) -> bytes | None:
        """The whole body, or ``None`` after answering 413 (declared or counted too large)."""
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body:
            await self._too_large(t, send, peer, int(declared))
            return None
        try:
            return await asyncio.wait_for(self._read_body(receive), self.body_timeout)
        except _TooLarge:
            await self._too_large(t, send, peer, None)
            return None
        except TimeoutError:
            self._count(t, "too_slow")
            self.log.warning(
                "webhook.rejected", reason="body not received in time", store=t.store,
                peer=peer, timeout=self.body_timeout,
            )
            await _respond(send, 408, {"error": "request timeout"}, close=True)
            return None

    async def _too_large(
        self, t: WebhookTarget, send: Send, peer: str | None, size: int | None
    ) -> None:
        self._count(t, "too_large")
        self.log.warning(
            "webhook.rejected", reason="body larger than the limit", store=t.store,
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

    async def _reject(self, t: WebhookTarget, send: Send, outcome: str, reason: str,
                      error: str, *, peer: str | None, size: int) -> None:
        """401 with one warning line naming ``reason`` (never the body or any secret)."""
        self._count(t, outcome)
        self.log.warning("webhook.rejected", reason=reason, store=t.store, peer=peer,
                         size=size)
        await _respond(send, 401, {"error": error})

    async def _json_object(
        self, t: WebhookTarget, send: Send, body: bytes, reason: str
    ) -> dict[str, Any] | None:
        """The authenticated body as a JSON object with every string made safe, or ``None``
        after answering 200 ignored (not JSON, not an object, or nested too deep)."""
        payload: Any = None
        if json_depth(body, stop_at=MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH:
            reason = f"signed body nests deeper than {MAX_JSON_DEPTH} levels"
        else:
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                payload = None
        if not isinstance(payload, dict):
            self._count(t, "malformed")
            self.log.warning("webhook.ignored", reason=reason, store=t.store, size=len(body))
            await _respond(send, 200, {"result": "ignored"})
            return None
        cleaned: dict[str, Any] = clean_json(payload, MAX_JSON_DEPTH)
        return cleaned

    async def _ignore_topic(self, t: WebhookTarget, send: Send, topic: str) -> None:
        self._count(t, "unknown_topic")
        self.log.info(
            "webhook.ignored", reason="topic not handled", store=t.store,
            topic=topic[:64] or None,
        )
        await _respond(send, 200, {"result": "ignored"})

    async def _accept(
        self,
        t: WebhookTarget,
        send: Send,
        *,
        topic: str,
        delivery_id: str,
        order_id: str | None,
        created: datetime | None,
    ) -> None:
        """Replay window, then :meth:`Inbox.record` in a thread bounded by ``db_timeout``:
        200 ``ignored`` (stale) / ``accepted`` / ``duplicate``, or 503 (not stored). An order
        id not valid for the source is dropped (recorded without a refresh, one warning)."""
        now = self.clock.now()
        valid = valid_order_id(t.source, order_id)
        if order_id is not None and valid is None:
            self._count(t, "invalid_order_id")
            self.log.warning(
                "webhook.invalid_order_id", store=t.store, topic=topic,
                delivery_id=delivery_id, length=len(order_id),
            )
        order_id = valid
        if created is not None and created < now - self.replay_window:
            self._count(t, "stale")
            self.log.warning(
                "webhook.ignored", reason="event older than the replay window",
                store=t.store, topic=topic, delivery_id=delivery_id,
                created_at=created.isoformat(), window_seconds=self.replay_window.total_seconds(),
            )
            await _respond(send, 200, {"result": "ignored"})
            return
        try:
            fresh = await asyncio.wait_for(
                asyncio.to_thread(
                    self.inbox.record, t.store, delivery_id, topic, order_id, created, now
                ),
                self.db_timeout,
            )
        except TimeoutError:
            self._count(t, "db_timeout")
            self.log.error(
                "webhook.failed", reason="database did not answer in time", store=t.store,
                topic=topic, delivery_id=delivery_id, timeout=self.db_timeout,
            )
            await _respond(send, 503, {"error": "try again later"})
            return
        except Exception as exc:
            self._count(t, "db_error")
            self.log.error(
                "webhook.failed", reason="could not record the delivery", store=t.store,
                topic=topic, delivery_id=delivery_id, error=type(exc).__name__,
            )
            await _respond(send, 503, {"error": "try again later"})
            return
        outcome = "accepted" if fresh else "duplicate"
        self._count(t, outcome)
        if order_id is None:
            self.log.warning(
                "webhook.no_order_id", store=t.store, topic=topic, delivery_id=delivery_id
            )
        self.log.info(
            f"webhook.{outcome}", store=t.store, topic=topic, delivery_id=delivery_id,
            order_id=order_id,
        )
        await _respond(send, 200, {"result": outcome})

    # -- deliveries: ShopWired ----------------------------------------------------------
    async def _shopwired(
        self, t: WebhookTarget, send: Send, headers: dict[bytes, bytes], body: bytes,
        peer: str | None,
    ) -> None:
        provided = headers.get(SIGNATURE_HEADER)
        if provided is None or not provided.strip():
            await self._reject(t, send, "missing_signature",
                               "missing X-ShopWired-Signature header", "missing signature",
                               peer=peer, size=len(body))
            return
        expected = hmac.new(t.key, body, hashlib.sha256).hexdigest().encode("ascii")
        if not hmac.compare_digest(expected, provided.strip().lower()):
            await self._reject(t, send, "bad_signature",
                               "X-ShopWired-Signature does not match the body", "bad signature",
                               peer=peer, size=len(body))
            return

        payload = await self._json_object(t, send, body, "signed body is not a JSON object")
        if payload is None:
            return
        event = payload.get("event")
        if not isinstance(event, dict):
            token = payload.get("verificationToken")
            if isinstance(token, str) and token:
                await self._handshake(t, send, token)
                return
            self._count(t, "unrecognised")
            self.log.warning(
                "webhook.ignored", reason="neither an event nor a verification request",
                store=t.store, keys=sorted(str(k) for k in payload)[:10],
            )
            await _respond(send, 200, {"result": "ignored"})
            return
        await self._event(t, send, payload, event)

    async def _handshake(self, t: WebhookTarget, send: Send, token: str) -> None:
        if self.handshake == "echo":
            reply = token
        else:
            reply = hmac.new(t.key, token.encode("utf-8"), hashlib.sha256).hexdigest()
        self._count(t, "handshake")
        self.log.info("webhook.handshake", store=t.store, mode=self.handshake)
        await _respond(send, 200, {"verificationToken": reply})

    async def _event(
        self, t: WebhookTarget, send: Send, payload: dict[str, Any], event: dict[str, Any]
    ) -> None:
        raw_topic = event.get("topic")
        topic = raw_topic.strip() if isinstance(raw_topic, str) else ""
        if topic not in ORDER_TOPICS:
            await self._ignore_topic(t, send, topic)
            return
        created = parse_when(event.get("createdAt")) or parse_when(payload.get("timestamp"))
        await self._accept(
            t, send, topic=topic, delivery_id=_delivery_id(event, topic),
            order_id=_order_id(event, topic), created=created,
        )

    # -- deliveries: Elastic Path -------------------------------------------------------
    async def _elasticpath(
        self, t: WebhookTarget, send: Send, headers: dict[bytes, bytes], body: bytes,
        peer: str | None,
    ) -> None:
        provided = headers.get(SECRET_KEY_HEADER)
        if provided is None or not provided.strip():
            await self._reject(t, send, "missing_secret", "missing X-MOLTIN-SECRET-KEY header",
                               "missing secret key", peer=peer, size=len(body))
            return
        if not hmac.compare_digest(t.key, provided.strip()):
            await self._reject(t, send, "bad_secret",
                               "X-MOLTIN-SECRET-KEY does not match the configured secret",
                               "bad secret key", peer=peer, size=len(body))
            return

        envelope = await self._json_object(t, send, body,
                                           "authenticated body is not a JSON object")
        if envelope is None:
            return
        raw_topic = envelope.get("triggered_by")
        if not isinstance(raw_topic, str) or not raw_topic.strip():
            raw_topic = headers.get(TRIGGER_HEADER, b"").decode("latin-1")
        topic = raw_topic.strip()
        if topic not in ELASTICPATH_ORDER_TOPICS:
            await self._ignore_topic(t, send, topic)
            return
        order_id, updated_at = _ep_order(envelope)
        await self._accept(
            t, send, topic=topic, delivery_id=_ep_delivery_id(envelope), order_id=order_id,
            created=updated_at,
        )

    def _count(self, t: WebhookTarget, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.store_outcomes[t.store, outcome] += 1


def _store_route(path: str) -> tuple[WebhookSource, str] | None:
    """``(source, store name)`` of a per-store route ``/webhooks/{source}/{store}`` (one
    path segment, as the server decoded it), else ``None``."""
    sources: tuple[WebhookSource, ...] = ("shopwired", "elasticpath")
    for source in sources:
        prefix = WEBHOOK_PATHS[source] + "/"
        if path.startswith(prefix):
            name = path[len(prefix):]
            return (source, name) if "/" not in name else None
    return None


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
    source: WebhookSource = "shopwired",
    body_timeout: float = 10.0,
) -> WebhookApp:
    """Build the receiver for one store (an ASGI callable; serve it with uvicorn).

    ``source`` picks the platform and so the one delivery route: ``"shopwired"`` serves
    ``POST /webhooks/shopwired`` (HMAC signature), ``"elasticpath"`` serves ``POST
    /webhooks/elasticpath`` (``X-MOLTIN-SECRET-KEY``); the other route is 404.
    ``inbox`` stores deliveries (:class:`~sync.webhook.inbox.WebhookInbox`); ``secret`` is the
    ShopWired signing secret or the Elastic Path integration's ``secret_key`` (never logged;
    must not be empty); ``store`` is the ledger store name; ``clock`` supplies "now" for the
    replay check and ``received_at``; ``log`` is a structlog logger. ``db_timeout`` bounds
    each database call (seconds; keep it under ShopWired's 5 s and Elastic Path's 10 s);
    ``handshake`` picks the ShopWired verification reply (see the module docstring);
    ``body_timeout`` bounds how long a body may take to arrive (seconds; then 408).
    """
    return WebhookApp(
        inbox=inbox,
        clock=clock,
        log=log,
        max_body=max_body,
        replay_window=replay_window,
        db_timeout=db_timeout,
        handshake=handshake,
        body_timeout=body_timeout,
        default=WebhookTarget(store=store, source=source, secret=secret),
    )


def make_multi_app(
    *,
    inbox: Inbox,
    directory: WebhookDirectory,
    clock: Clock,
    log: Any,
    max_body: int = 256 * 1024,
    replay_window: timedelta = timedelta(hours=24),
    db_timeout: float = 4.0,
    handshake: Literal["hmac", "echo"] = "hmac",
    body_timeout: float = 10.0,
    default: WebhookTarget | None = None,
) -> WebhookApp:
    """Build the receiver for many stores: ``POST /webhooks/shopwired/{store}`` and ``POST
    /webhooks/elasticpath/{store}``, plus ``GET /healthz``.

    ``directory(store)`` is asked on every such request (so a rotated secret or an added or
    removed store takes effect without a restart; the caller caches) and gives the store's
    :class:`WebhookTarget`, or ``None``. ``None``, a name longer than
    :data:`MAX_STORE_NAME`, or a target on the other platform is **404 before the body is
    read**: no database call, no inbox write, no log line per request (one warning per 10 s
    at most, with how many were held back; ``outcomes["unknown_store"]`` counts them all).
    A directory that raises is 503 (the platform retries). A known store's delivery is then
    verified with its secret and recorded under ``target.store`` exactly as :func:`make_app`
    does for its one store (same limits, checks and status codes).

    ``default``, when given, also serves the legacy single-store route
    (``/webhooks/shopwired`` or ``/webhooks/elasticpath``, after its source) for that
    target. The other arguments are as for :func:`make_app`.
    """
    return WebhookApp(
        inbox=inbox,
        clock=clock,
        log=log,
        max_body=max_body,
        replay_window=replay_window,
        db_timeout=db_timeout,
        handshake=handshake,
        body_timeout=body_timeout,
        default=default,
        directory=directory,
    )
