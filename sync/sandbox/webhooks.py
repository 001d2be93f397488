"""The platforms' side of webhooks for the sandbox: POSTs for changes made to a simulator.

Two emitters share one delivery machinery (queue, sender thread, faults, ``sent`` log):

* :class:`WebhookEmitter` -- ShopWired, signed (below);
* :class:`ElasticPathWebhookEmitter` -- Elastic Path integrations, with the shared secret
  header (see its docstring).

ShopWired contract
------------------
:class:`WebhookEmitter` observes a :class:`~sync.sandbox.shopwired.ShopWiredSimulator`
without editing or subclassing it: :meth:`~WebhookEmitter.attach` shadows the simulator's
mutators with instance attributes that call the original and then queue an event;
:meth:`~WebhookEmitter.detach` removes them again. Every change made through the mutators --
directly, through ``generate_orders``/``add_invalid_order`` (which call ``add_order``), or over
HTTP (``POST /v1/orders/{id}/status``, ``DELETE /v1/orders/{id}``) -- becomes one event:

* ``add_order`` of a new id → ``order.finalized`` with ``data = {"object": <order>}``;
  of an existing id, and ``archive`` → ``order.updated`` with ``{"object": <order>}``;
* ``set_status`` → ``order.status_changed`` with ``{"newStatus": {id, name, type,
  sortOrder}}``;
* ``add_refund`` → ``order.refund.created`` with ``{id, orderId, createdAt, amount,
  description}``, ``subjectType`` ``order_refund`` and ``subjectId`` = the **refund** id;
* ``delete_order`` (only when something was deleted) → ``order.deleted`` with
  ``{"object": <the order as it was>}``.

Shapes follow reference ``shopwired-api.md`` §4. Each POST carries the documented envelope
``{"timestamp": <send time>, "event": {"id", "businessId", "createdAt", "topic", "subjectId",
"subjectType", "data"}}`` as compact JSON, with dates in RFC-2822 (``Tue, 23 Oct 2018
12:08:23 +0000``) from the injected clock, and the header ``X-ShopWired-Signature`` =
lowercase hex HMAC-SHA256 of the exact body bytes keyed with ``secret``. Event ids are
integers, increasing per emitter, starting at ``first_event_id`` (default: the clock's UNIX
milliseconds, so two emitters on one database rarely collide).

Delivery (both emitters)
------------------------
With ``auto=True`` a background thread posts events in the order they were made;
with ``auto=False`` they wait in ``pending`` until :meth:`~WebhookEmitter.flush` posts them from
the calling thread. :class:`DeliveryFaults` (changeable at any time) duplicates, reorders
(each batch taken from the queue is shuffled -- use ``auto=False`` to control batches), delays
(real seconds before each POST), backdates ``createdAt`` (ShopWired only), or authenticates
with a wrong key. Nothing is retried: a non-200 answer is only recorded. ``sent`` lists every
POST with its outcome.

:func:`serve_asgi` runs an ASGI application (the receiver) under uvicorn on a free loopback
port in a background thread, for tests and demos.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from sync.clock import Clock
from sync.sandbox._common import dumps
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.generator import rfc2822
from sync.sandbox.shopwired import ShopWiredSimulator

ORDER_FINALIZED = "order.finalized"
ORDER_UPDATED = "order.updated"
ORDER_STATUS_CHANGED = "order.status_changed"
ORDER_REFUND_CREATED = "order.refund.created"
ORDER_DELETED = "order.deleted"

MUTATORS = ("add_order", "archive", "set_status", "add_refund", "delete_order")
"""The simulator methods :meth:`WebhookEmitter.attach` observes."""

EP_ORDER_CREATED = "order.created"
EP_ORDER_UPDATED = "order.updated"
EP_ORDER_PAID = "order.paid"
EP_ORDER_AUTHORIZED = "order.authorized"
EP_ORDER_FULFILLED = "order.fulfilled"
EP_ORDER_CANCELLED = "order.cancelled"
EP_ORDER_REFUNDED = "order.refunded"

EP_MUTATORS = ("add_order", "generate_orders", "set_status", "set_payment", "set_shipping")
"""The simulator methods :meth:`ElasticPathWebhookEmitter.attach` observes."""

_EP_FIELD_TOPICS: dict[str, dict[str, str]] = {
    "set_status": {"cancelled": EP_ORDER_CANCELLED},
    "set_payment": {
        "paid": EP_ORDER_PAID,
        "authorized": EP_ORDER_AUTHORIZED,
        "refunded": EP_ORDER_REFUNDED,
    },
    "set_shipping": {"fulfilled": EP_ORDER_FULFILLED},
}
"""Per field mutator: the value that has its own trigger; any other value → order.updated."""

Signature = Literal["good", "bad"] | str | None


def shopwired_signature(secret: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``body`` keyed with ``secret`` (ShopWired's header)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class DeliveryFaults:
    """How the emitter misbehaves. Probabilities are 0..1, drawn from a ``seed``-ed RNG."""

    duplicate: float = 0.0
    """Chance an event is POSTed twice in a row (ShopWired: same body, same signature;
    Elastic Path: a retry, same ``id`` with ``attempt`` 2)."""
    reorder: bool = False
    """Shuffle each batch of queued events before sending it."""
    delay: float = 0.0
    """Real seconds to wait before each POST (cut short by ``detach``)."""
    bad_signature: float = 0.0
    """Chance an event is signed (ShopWired) or sent with a secret header (Elastic Path) made
    with a wrong key."""
    backdate: timedelta = timedelta(0)
    """Subtracted from ``createdAt`` of new events (replay-window tests; ShopWired only)."""
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def roll(self, probability: float) -> bool:
        """True with ``probability`` (0 never draws, so it does not shift the sequence)."""
        return probability > 0 and self.rng.random() < probability


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One queued event: the platform's event object, plus handy copies of its keys.

    ShopWired: ``event`` is the envelope's ``event`` object, ids are ints. Elastic Path:
    ``event`` is the whole envelope as first sent (``attempt`` 1), ids are UUID strings.
    """

    event_id: int | str
    topic: str
    order_id: int | str | None
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SentDelivery:
    """One POST the emitter made and what came back.

    ``status`` is ``None`` when no HTTP answer arrived (``error`` says why); ``elapsed`` is
    wall-clock seconds for the POST; ``event`` is ``None`` for ``send_raw``.
    ``signature_ok`` says whether the POST was authenticated with the right key.
    """

    event: WebhookEvent | None
    body: bytes
    signature_ok: bool
    duplicate: bool
    status: int | None
    elapsed: float
    response: bytes = b""
    error: str | None = None

    @property
    def topic(self) -> str | None:
        return self.event.topic if self.event else None

    @property
    def order_id(self) -> int | str | None:
        return self.event.order_id if self.event else None


Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


class _Emitter:
    """The delivery machinery both emitters share: mutator shadowing, the queue, the sender
    thread, :meth:`flush` and the ``sent`` log. Subclasses provide :meth:`_wrappers` (which
    simulator methods to observe) and :meth:`_send` (body and headers of one event)."""

    user_agent = "Webhooks (sandbox)"
    thread_name = "webhook-emitter"

    def __init__(
        self,
        sim: Any,
        url: str,
        secret: str,
        clock: Clock,
        *,
        faults: DeliveryFaults | None,
        auto: bool,
        timeout: float,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self.sim = sim
        self.url = url
        self.secret = secret
        self.clock = clock
        self.faults = faults or DeliveryFaults()
        self.auto = auto
        self.timeout = timeout
        self._transport = transport
        self.emitted: list[WebhookEvent] = []
        """Every event made, in mutation order (whether sent yet or not)."""
        self.sent: list[SentDelivery] = []
        """Every POST made, in the order they finished."""
        self._queue: deque[WebhookEvent] = deque()
        self._inflight = 0
        self._cond = threading.Condition()  # an RLock underneath: emit may nest it
        self._stop = threading.Event()
        self._client: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._installed: dict[str, tuple[Callable[..., Any], Any]] = {}

    def _wrappers(self) -> dict[str, Wrapper]:
        raise NotImplementedError

    def _send(self, ev: WebhookEvent) -> None:
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------
    def attach(self) -> Self:
        """Start observing the simulator (and, with ``auto``, the sender thread). Idempotent."""
        if self._installed:
            return self
        self._stop.clear()
        self._client = httpx.Client(timeout=self.timeout, transport=self._transport)
        for name, make in self._wrappers().items():
            previous = self.sim.__dict__.get(name, _MISSING)
            original = getattr(self.sim, name)
            wrapper = make(original)
            setattr(self.sim, name, wrapper)
            self._installed[name] = (wrapper, previous)
        if self.auto:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def detach(self, *, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop observing; with ``drain`` first deliver what is queued (auto mode waits up to
        ``timeout`` s; manual mode leaves ``pending`` for a later :meth:`flush`). Idempotent.

        Raises ``RuntimeError`` if something else re-wrapped a mutator after us (restoring
        would silently drop that wrapper).
        """
        for name, (wrapper, _) in self._installed.items():
            if self.sim.__dict__.get(name) is not wrapper:
                raise RuntimeError(f"{name} was re-wrapped after attach(); detach that first")
        for name, (_, previous) in self._installed.items():
            if previous is _MISSING:
                delattr(self.sim, name)
            else:
                setattr(self.sim, name, previous)
        self._installed.clear()
        if self._thread is not None:
            if drain:
                with contextlib.suppress(TimeoutError):
                    self.flush(timeout=timeout)
            with self._cond:
                self._stop.set()
                self._cond.notify_all()
            self._thread.join(timeout)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def attached(self) -> bool:
        return bool(self._installed)

    def __enter__(self) -> Self:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach(drain=exc is None)

    # -- queries --------------------------------------------------------------------------
    @property
    def pending(self) -> list[WebhookEvent]:
        """Events queued and not yet taken by a sender."""
        with self._cond:
            return list(self._queue)

    def statuses(self) -> list[int | None]:
        """The HTTP status of every POST so far, in order."""
        with self._cond:
            return [d.status for d in self.sent]

    # -- sending --------------------------------------------------------------------------
    def _enqueue(self, ev: WebhookEvent) -> None:
        with self._cond:
            self.emitted.append(ev)
            self._queue.append(ev)
            self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Deliver everything queued so far.

        Manual mode: post the pending events now, from this thread (shuffled if
        ``faults.reorder``). Auto mode: wait until the sender thread has posted everything
        queued and nothing is in flight; ``TimeoutError`` after ``timeout`` seconds.
        """
        if self._thread is None:
            batch = self._take_batch()
            for ev in batch:
                self._deliver(ev)
            self._settle(len(batch))
            return
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("webhook emitter did not drain in time")
                self._cond.wait(left)

    def _take_batch(self) -> list[WebhookEvent]:
        with self._cond:
            batch = list(self._queue)
            self._queue.clear()
            self._inflight += len(batch)
            if self.faults.reorder:
                self.faults.rng.shuffle(batch)
            return batch

    def _settle(self, n: int) -> None:
        with self._cond:
            self._inflight -= n
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
            batch = self._take_batch()
            for ev in batch:
                try:
                    self._deliver(ev)
                finally:
                    self._settle(1)

    def _deliver(self, ev: WebhookEvent) -> None:
        if self.faults.delay > 0:
            self._stop.wait(self.faults.delay)
        self._send(ev)

    def _post(
        self,
        ev: WebhookEvent | None,
        body: bytes,
        auth: Mapping[str, str],
        *,
        signature_ok: bool,
        duplicate: bool,
        headers: Mapping[str, str] | None = None,
    ) -> SentDelivery:
        client = self._client
        own = client is None
        if client is None:
            client = httpx.Client(timeout=self.timeout, transport=self._transport)
        h = {"Content-Type": "application/json", "User-Agent": self.user_agent, **auth}
        if headers:
            h.update(headers)
        started = time.perf_counter()
        try:
            resp = client.post(self.url, content=body, headers=h)
            record = SentDelivery(
                event=ev, body=body, signature_ok=signature_ok, duplicate=duplicate,
                status=resp.status_code, elapsed=time.perf_counter() - started,
                response=resp.content,
            )
        except httpx.HTTPError as exc:
            record = SentDelivery(
                event=ev, body=body, signature_ok=signature_ok, duplicate=duplicate,
                status=None, elapsed=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
        finally:
            if own:
                client.close()
        with self._cond:
            self.sent.append(record)
        return record


class WebhookEmitter(_Emitter):
    """Turn ShopWired simulator changes into signed webhook POSTs to ``url`` (see the module
    docstring).

    Use as a context manager (``with WebhookEmitter(...) as em:``) or call :meth:`attach` /
    :meth:`detach`. Thread-safe: mutators may be called from any thread.
    """

    user_agent = "ShopWired-Webhooks (sandbox)"
    sim: ShopWiredSimulator

    def __init__(
        self,
        sim: ShopWiredSimulator,
        url: str,
        secret: str,
        clock: Clock,
        *,
        faults: DeliveryFaults | None = None,
        auto: bool = True,
        timeout: float = 10.0,
        business_id: int = 1,
        first_event_id: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(sim, url, secret, clock, faults=faults, auto=auto, timeout=timeout,
                         transport=transport)
        self.business_id = business_id
        start = first_event_id if first_event_id is not None else _millis(clock)
        self._ids = itertools.count(start)

    def _wrappers(self) -> dict[str, Wrapper]:
        return {
            "add_order": self._wrap_add_order,
            "archive": self._wrap_archive,
            "set_status": self._wrap_set_status,
            "add_refund": self._wrap_add_refund,
            "delete_order": self._wrap_delete_order,
        }

    # -- making events --------------------------------------------------------------------
    def emit(
        self,
        topic: str,
        subject_id: int | None,
        data: Mapping[str, Any],
        *,
        order_id: int | None = None,
        subject_type: str = "order",
    ) -> WebhookEvent:
        """Queue one event (the mutator wrappers use this; tests may call it for any topic).

        ``order_id`` defaults to ``subject_id`` (for ``order_refund`` subjects pass it).
        """
        created = self.clock.now() - self.faults.backdate
        with self._cond:
            eid = next(self._ids)
            ev = WebhookEvent(
                event_id=eid,
                topic=topic,
                order_id=order_id if order_id is not None else subject_id,
                event={
                    "id": eid,
                    "businessId": self.business_id,
                    "createdAt": rfc2822(created),
                    "topic": topic,
                    "subjectId": subject_id,
                    "subjectType": subject_type,
                    "data": dict(data),
                },
            )
            self._enqueue(ev)
        return ev

    def _emit_order(self, topic: str, order_id: int, order: Mapping[str, Any] | None) -> None:
        self.emit(topic, order_id, {"object": dict(order) if order is not None else None})

    def _wrap_add_order(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def add_order(order: Mapping[str, Any]) -> int:
            with self.sim._lock:
                raw = order.get("id") if isinstance(order, Mapping) else None
                existed = isinstance(raw, int) and raw in self.sim.orders
                oid = int(original(order))
                snapshot = self.sim.get_order(oid)
            self._emit_order(ORDER_UPDATED if existed else ORDER_FINALIZED, oid, snapshot)
            return oid

        return add_order

    def _wrap_archive(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def archive(order_id: int, archived: bool = True) -> None:
            with self.sim._lock:
                original(order_id, archived)
                snapshot = self.sim.get_order(order_id)
            self._emit_order(ORDER_UPDATED, order_id, snapshot)

        return archive

    def _wrap_set_status(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def set_status(
            order_id: int, status_id: int, tracking_url: str | None = None
        ) -> dict[str, Any]:
            result: dict[str, Any] = original(order_id, status_id, tracking_url=tracking_url)
            status = next(
                (dict(s) for s in self.sim.statuses if s.get("id") == status_id),
                dict(result.get("status") or {}),
            )
            self.emit(ORDER_STATUS_CHANGED, order_id, {"newStatus": status})
            return result

        return set_status

    def _wrap_add_refund(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def add_refund(order_id: int, value: Any, name: str) -> dict[str, Any]:
            refund: dict[str, Any] = original(order_id, value, name)
            data = {
                "id": refund["id"],
                "orderId": order_id,
                "createdAt": refund["createdAt"],
                "amount": refund["value"],
                "description": refund["name"],
            }
            self.emit(
                ORDER_REFUND_CREATED, refund["id"], data,
                order_id=order_id, subject_type="order_refund",
            )
            return refund

        return add_refund

    def _wrap_delete_order(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_order(order_id: int) -> bool:
            with self.sim._lock:
                snapshot = self.sim.get_order(order_id)
                deleted = bool(original(order_id))
            if deleted:
                self._emit_order(ORDER_DELETED, order_id, snapshot)
            return deleted

        return delete_order

    # -- sending --------------------------------------------------------------------------
    def send_raw(
        self,
        body: bytes,
        *,
        signature: Signature = "good",
        headers: Mapping[str, str] | None = None,
    ) -> SentDelivery:
        """POST ``body`` as is, now, from this thread. ``signature``: ``"good"`` (correct),
        ``"bad"`` (wrong key), ``None`` (no header) or a literal header value."""
        if signature == "good":
            sig: str | None = shopwired_signature(self.secret, body)
        elif signature == "bad":
            sig = shopwired_signature("not-" + self.secret, body)
        else:
            sig = signature
        ok = sig is not None and hmac.compare_digest(sig, shopwired_signature(self.secret, body))
        return self._post(None, body, _signed(sig), signature_ok=ok, duplicate=False,
                          headers=headers)

    def verify(self, token: str) -> SentDelivery:
        """Send the verification handshake ``{"timestamp", "verificationToken"}``, signed."""
        body = dumps({"timestamp": rfc2822(self.clock.now()), "verificationToken": token})
        return self.send_raw(body)

    def _send(self, ev: WebhookEvent) -> None:
        body = dumps({"timestamp": rfc2822(self.clock.now()), "event": ev.event})
        with self._cond:
            bad = self.faults.roll(self.faults.bad_signature)
            twice = self.faults.roll(self.faults.duplicate)
        key = ("not-" + self.secret) if bad else self.secret
        sig = shopwired_signature(key, body)
        self._post(ev, body, _signed(sig), signature_ok=not bad, duplicate=False)
        if twice:
            self._post(ev, body, _signed(sig), signature_ok=not bad, duplicate=True)


def _signed(signature: str | None) -> dict[str, str]:
    return {} if signature is None else {"X-ShopWired-Signature": signature}


class ElasticPathWebhookEmitter(_Emitter):
    """Elastic Path's webhook integration for an
    :class:`~sync.sandbox.elasticpath.ElasticPathSimulator` (reference
    ``wiredplus-elasticpath.md`` B.6), on the shared delivery machinery.

    :meth:`attach` shadows :data:`EP_MUTATORS` (instance attributes; the simulator is not
    edited); each change becomes one delivery:

    * ``add_order`` of a new id, and every order ``generate_orders`` makes → ``order.created``;
      ``add_order`` of an existing id → ``order.updated``;
    * ``set_status("cancelled")`` → ``order.cancelled``; ``set_payment`` ``paid`` /
      ``authorized`` / ``refunded`` → ``order.paid`` / ``order.authorized`` /
      ``order.refunded``; ``set_shipping("fulfilled")`` → ``order.fulfilled``; any other value
      of these three → ``order.updated``.

    Not observed (kept small): ``touch``, ``delete_order`` (EP documents no order deletion
    trigger) and ``PUT /v2/orders/{id}`` over HTTP (the sync's own write-back).

    Each POST body is the documented envelope as compact JSON: ``{"id": <uuid>,
    "triggered_by": <topic>, "attempt": 1, "integration": {id, integration_type: "webhook",
    name, description}, "resources": <JSON string of {data, included}>, "payload": {"data":
    <the order as stored, snapshotted when the change was made>, "included": {"items": [...]}},
    "configuration": {"secret_key", "url"}}``; an order gone by then is ``{"type": "order",
    "id"}`` only. Headers: ``X-MOLTIN-SECRET-KEY`` = ``secret`` (a wrong one with
    ``faults.bad_signature``) and ``X-MOLTIN-INTEGRATION-TRIGGER`` = the topic. A
    ``faults.duplicate`` resend is an EP retry: same ``id``, ``attempt`` 2. Ids come from a
    ``seed``-ed RNG (same seed, same calls → same ids). ``faults.backdate`` does not apply.
    """

    user_agent = "ElasticPath-Integrations (sandbox)"
    thread_name = "ep-webhook-emitter"
    sim: ElasticPathSimulator

    def __init__(
        self,
        sim: ElasticPathSimulator,
        url: str,
        secret: str,
        clock: Clock,
        *,
        faults: DeliveryFaults | None = None,
        auto: bool = True,
        timeout: float = 10.0,
        seed: int = 0,
        name: str = "ordersync",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(sim, url, secret, clock, faults=faults, auto=auto, timeout=timeout,
                         transport=transport)
        self._rng = random.Random(seed)
        self.integration: dict[str, Any] = {
            "id": self._uuid(),
            "integration_type": "webhook",
            "name": name,
            "description": "Order changes for ordersync (sandbox)",
        }

    def _uuid(self) -> str:
        with self._cond:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _wrappers(self) -> dict[str, Wrapper]:
        return {
            "add_order": self._wrap_add_order,
            "generate_orders": self._wrap_generate_orders,
            **{name: self._field_wrapper(topics) for name, topics in _EP_FIELD_TOPICS.items()},
        }

    # -- making events --------------------------------------------------------------------
    def emit(self, topic: str, order_id: str) -> WebhookEvent:
        """Queue one delivery for ``order_id`` as the simulator holds it now (the wrappers use
        this; tests may call it for any topic, or for an order that does not exist)."""
        with self.sim._lock:
            order = self.sim.get_order(order_id)
            items = copy.deepcopy(self.sim.items.get(order_id, []))
        if order is None:
            data: dict[str, Any] = {"type": "order", "id": order_id}
            included: dict[str, Any] = {}
        else:
            data, included = order, {"items": items}
        with self._cond:
            eid = self._uuid()
            ev = WebhookEvent(
                event_id=eid,
                topic=topic,
                order_id=order_id,
                event={
                    "id": eid,
                    "triggered_by": topic,
                    "attempt": 1,
                    "integration": dict(self.integration),
                    "resources": json.dumps(
                        {"data": data, "included": included},
                        separators=(",", ":"), ensure_ascii=False,
                    ),
                    "payload": {"data": data, "included": included},
                    "configuration": {"secret_key": self.secret, "url": self.url},
                },
            )
            self._enqueue(ev)
        return ev

    def _wrap_add_order(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def add_order(order: Mapping[str, Any], items: Any = None) -> str:
            with self.sim._lock:
                raw = order.get("id") if isinstance(order, Mapping) else None
                existed = isinstance(raw, str) and raw in self.sim.orders
                oid = str(original(order, items))
                self.emit(EP_ORDER_UPDATED if existed else EP_ORDER_CREATED, oid)
            return oid

        return add_order

    def _wrap_generate_orders(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def generate_orders(n: int, *, created_between: Any = None) -> list[str]:
            with self.sim._lock:
                ids: list[str] = original(n, created_between=created_between)
                for oid in ids:
                    self.emit(EP_ORDER_CREATED, oid)
            return ids

        return generate_orders

    def _field_wrapper(self, topics: Mapping[str, str]) -> Wrapper:
        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def set_field(order_id: str, value: str) -> dict[str, Any]:
                with self.sim._lock:
                    result: dict[str, Any] = original(order_id, value)
                    self.emit(topics.get(value, EP_ORDER_UPDATED), order_id)
                return result

            set_field.__name__ = getattr(original, "__name__", "set_field")
            return set_field

        return wrap

    # -- sending --------------------------------------------------------------------------
    def send_raw(
        self,
        body: bytes,
        *,
        secret: Signature = "good",
        topic: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> SentDelivery:
        """POST ``body`` as is, now, from this thread. ``secret``: ``"good"`` (the right
        one), ``"bad"`` (a wrong one), ``None`` (no header) or a literal header value;
        ``topic`` becomes ``X-MOLTIN-INTEGRATION-TRIGGER`` when given."""
        if secret == "good":
            value: str | None = self.secret
        elif secret == "bad":
            value = "not-" + self.secret
        else:
            value = secret
        ok = value is not None and hmac.compare_digest(value.encode(), self.secret.encode())
        return self._post(None, body, self._auth(value, topic), signature_ok=ok,
                          duplicate=False, headers=headers)

    @staticmethod
    def _auth(secret: str | None, topic: str | None) -> dict[str, str]:
        h: dict[str, str] = {}
        if secret is not None:
            h["X-MOLTIN-SECRET-KEY"] = secret
        if topic is not None:
            h["X-MOLTIN-INTEGRATION-TRIGGER"] = topic
        return h

    def _send(self, ev: WebhookEvent) -> None:
        with self._cond:
            bad = self.faults.roll(self.faults.bad_signature)
            twice = self.faults.roll(self.faults.duplicate)
        auth = self._auth(("not-" + self.secret) if bad else self.secret, ev.topic)
        self._post(ev, dumps(ev.event), auth, signature_ok=not bad, duplicate=False)
        if twice:
            retry = dumps({**ev.event, "attempt": 2})
            self._post(ev, retry, auth, signature_ok=not bad, duplicate=True)


_MISSING = object()


def _millis(clock: Clock) -> int:
    return int(clock.now().timestamp() * 1000)


# ====================================================================== serving an ASGI app


class RunningASGI:
    """An ASGI app served by uvicorn on loopback; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, server: Any, thread: threading.Thread, sock: socket.socket) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit (runs lifespan shutdown), wait for its thread. Idempotent."""
        self._server.should_exit = True
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> RunningASGI:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_asgi(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
) -> RunningASGI:
    """Serve ``app`` with uvicorn (lifespan on, no access log, no global logging setup) on a
    background thread; returns once it accepts connections. ``port=0`` picks a free port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        app, lifespan="on", access_log=False, log_config=None, log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    failure: list[str] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits (code 3) when lifespan startup fails
            failure.append(f"uvicorn exited with code {exc.code}")

    thread = threading.Thread(target=run, name="asgi-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            why = failure[0] if failure else "timed out"
            raise RuntimeError(f"the ASGI server did not start ({why})")
        time.sleep(0.01)
    return RunningASGI(server, thread, sock)
