"""A faithful local simulator of the ShopWired Orders API (``/v1``).

Contract
--------
``ShopWiredSimulator.handle(request) -> response`` is thread-safe and usable directly as
``httpx.MockTransport(sim.handle)`` or served over HTTP by :mod:`sync.sandbox.server`. Paths
are matched from ``/v1/`` on, whatever the host or any prefix before it.

Endpoints (docs: ShopWired "Orders" page; notes: ``shopwired-api.md`` sections 1-5)

===============================  ============================================================
``GET /v1/orders``               bare JSON array; ``fields sort archived status from to count
                                 offset ids`` (``embed`` accepted and ignored)
``GET /v1/orders/count``         ``{"count": n}``; same filters as the list
``GET /v1/orders/{id}``          one order; ``fields``; 404 when missing
``GET /v1/order-statuses``       bare array of ``{id, name, type, sortOrder}``, not paginated
``POST /v1/orders/{id}/status``  JSON ``{"status": <id>, "trackingUrl"?, "sendEmail"?}``
                                 → 200 with the updated order
``DELETE /v1/orders/{id}``       204 No Content
===============================  ============================================================

Errors are ``{"code": <int>, "message": <text>}`` (docs "API errors": ``{"code": 2,
"message": "Invalid protocol"}``) with the documented HTTP statuses: 400 incorrect usage,
401 bad/missing credentials, 404 not found, 405 method not allowed, 415 wrong Content-Type,
422 validation, 429 too many requests, 500 server error.

Authentication is HTTP Basic ``api_key:api_secret``. Rate limiting is the documented leaky
bucket (``bucket_size`` deep, draining ``leak_per_second``, on ``clock.monotonic()``); a
request that would overflow it gets 429 and is not counted as accepted.

Choices where the documents are silent or ambiguous
---------------------------------------------------
* "By default the first 50 *regular* orders are returned": regular = **not archived**. Without
  ``archived`` only non-archived orders are listed/counted; ``archived=1`` lists only archived
  ones. With ``ids=`` the default does not apply (the listed orders come back whether archived
  or not), but an explicit ``archived``/``status``/``from``/``to`` still filters them.
* ``from``/``to`` are UNIX seconds compared with ``created`` and are **inclusive at both
  ends**. ``sort=date`` orders by ``created`` ascending, ties by ``id`` ascending;
  ``date_desc`` is the exact reverse.
* Validation (400): ``count`` outside 1..100, negative ``offset``, non-integer numbers,
  ``sort`` other than ``date``/``date_desc``, ``archived`` other than ``0``/``1``, more than
  50 ``ids``. Unknown ``status`` ids simply match nothing. Unknown ``ids`` are absent.
  ``count``/``offset`` also apply to an ``ids=`` list. Unknown query parameters are ignored.
* ``fields``: only the listed top-level properties (unknown names are ignored); ``id`` is
  always included.
* A 429 carries ``Retry-After`` (whole seconds until one request fits) only when
  ``retry_after_on_429`` is true: the real API does not document the header.
* Authentication is checked before the rate limit, so 401s do not use the bucket. Injected
  faults (see :mod:`sync.sandbox.faults`) come before both.
* Two switches, changeable while serving: ``revoked = True`` answers every request 401 as
  if the API key had been revoked (after the faults, like any authentication failure);
  ``outage = True`` answers every request 503 with the load balancer's HTML page, before
  anything else (the API is down). Both are off by default.
* ``POST /v1/orders`` (creating orders over the API) is not simulated (405); tests add orders
  with :meth:`ShopWiredSimulator.add_order` / :meth:`~ShopWiredSimulator.generate_orders`.
  ``POST .../status`` needs ``Content-Type: application/json`` (else 415) and an existing
  status id (else 422).
* Error ``code`` numbers are invented (the docs list only one example): 1 unauthorised,
  3 bad parameter, 4 not found, 5 method not allowed, 6 unsupported media type,
  7 validation, 8 rate limited, 9 server error.

Performance: per request the work is O(log n + page size): orders are indexed by
``(created, id)`` in sorted lists per ``archived`` flag and per ``(archived, status)``; each
order's full JSON is cached until it changes.
"""

from __future__ import annotations

import bisect
import copy
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from sync.clock import Clock, utc
from sync.sandbox._common import (
    FaultPlan,
    Latency,
    LeakyBucket,
    apply_latency_and_timeout,
    basic_credentials,
    dumps,
    empty_response,
    fault_response,
    html_response,
    json_response,
    plan_faults,
    raw_json_response,
    whole_seconds,
)
from sync.sandbox.faults import Faults
from sync.sandbox.generator import DEFAULT_STATUSES, OrderGenerator, money, rfc2822

MAX_COUNT = 100
DEFAULT_COUNT = 50
MAX_IDS = 50

_CODES = {400: 3, 401: 1, 404: 4, 405: 5, 415: 6, 422: 7, 429: 8, 500: 9}
_MAXINT = sys.maxsize

Key = tuple[int, int]  # (created UNIX seconds, order id)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> httpx.Response:
    return json_response(status, {"code": _CODES.get(status, status), "message": message})


def _created_ts(order: Mapping[str, Any]) -> int:
    created = order.get("created")
    if not isinstance(created, str):
        raise ValueError("order needs a 'created' RFC-2822 string")
    try:
        dt = parsedate_to_datetime(created)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unreadable created date {created!r}") from exc
    return int(utc(dt).timestamp())


def _status_id(order: Mapping[str, Any]) -> int | None:
    st = order.get("status")
    if isinstance(st, Mapping):
        sid = st.get("id")
        if isinstance(sid, int) and not isinstance(sid, bool):
            return sid
    return None


def _int_param(params: httpx.QueryParams, name: str, *, minimum: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not (text.isdecimal() or (text.startswith("-") and text[1:].isdecimal())):
        raise _BadRequest(400, f"Invalid value for parameter '{name}': must be an integer")
    value = int(text)
    if minimum is not None and value < minimum:
        raise _BadRequest(400, f"Invalid value for parameter '{name}': must be >= {minimum}")
    return value


class ShopWiredSimulator:
    """In-memory ShopWired store with the Orders API in front of it.

    Public state (read freely; change it only through the mutators so indexes stay right):

    * ``orders``: order id → the stored order dict (the exact API JSON shape);
    * ``statuses``: the store's statuses ``{id, name, type, sortOrder}``;
    * ``calls``: Counter of every request received, keyed ``"GET /v1/orders"``,
      ``"GET /v1/orders/{id}"`` and so on; ``responses``: Counter by HTTP status;
      ``throttled``: number of 429 answers; ``reset_counters()`` zeroes all three;
    * ``latency``: the API's own response time (``latency`` ± ``jitter`` seconds per
      request, before processing, outside the lock; :class:`~sync.sandbox._common.Latency`);
    * ``faults``: the :class:`~sync.sandbox.faults.Faults` switches; ``shuffle_log`` lists
      what the ``shuffle_between_pages`` fault did, as ``("inserted"|"deleted", order_id)``;
    * ``generator``: the seeded :class:`~sync.sandbox.generator.OrderGenerator`;
    * ``revoked`` / ``outage``: switches for "credentials revoked" (401) and "API down" (503),
      see the module docstring.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        api_key: str = "sandbox-key",
        api_secret: str = "sandbox-secret",
        bucket_size: int = 40,
        leak_per_second: float = 2.0,
        enforce_rate_limit: bool = True,
        retry_after_on_429: bool = True,
        seed: int = 0,
        statuses: Sequence[Mapping[str, Any]] | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
    ) -> None:
        self.clock = clock
        self.api_key = api_key
        self.api_secret = api_secret
        self.enforce_rate_limit = enforce_rate_limit
        self.retry_after_on_429 = retry_after_on_429
        self.bucket = LeakyBucket(bucket_size, leak_per_second, clock)
        self.faults = Faults(seed=seed)
        self.latency = Latency(latency, jitter, seed=seed)
        self.statuses: list[dict[str, Any]] = [
            dict(s) for s in (statuses if statuses is not None else DEFAULT_STATUSES)
        ]
        self._status_by_id = {int(s["id"]): s for s in self.statuses}
        self.generator = OrderGenerator(seed, self.statuses)
        self.orders: dict[int, dict[str, Any]] = {}
        self._key: dict[int, Key] = {}
        self._by_archived: dict[bool, list[Key]] = {False: [], True: []}
        self._by_status: dict[tuple[bool, int | None], list[Key]] = {}
        self._json: dict[int, bytes] = {}
        self._next_refund_id = 1
        self._lock = threading.RLock()
        self.calls: Counter[str] = Counter()
        self.responses: Counter[int] = Counter()
        self.throttled = 0
        self.shuffle_log: list[tuple[str, int]] = []
        self.revoked = False
        self.outage = False

    # ================================================================== mutators

    def add_order(self, order: Mapping[str, Any]) -> int:
        """Store a copy of ``order`` (replacing one with the same id); returns its id.

        Needs an integer ``id`` and a readable RFC-2822 ``created``; everything else is taken
        as given, so deliberately broken orders can be served.
        """
        oid = order.get("id")
        if not isinstance(oid, int) or isinstance(oid, bool):
            raise ValueError("order needs an integer 'id'")
        ts = _created_ts(order)
        stored = copy.deepcopy(dict(order))
        ref = stored.get("reference")
        with self._lock:
            if oid in self.orders:
                self._unindex(oid)
            self.orders[oid] = stored
            self._index(oid, ts)
            self.generator.reserve(oid, ref if isinstance(ref, int) else None)
            for refund in stored.get("refunds") or []:
                if isinstance(refund, Mapping) and isinstance(refund.get("id"), int):
                    self._next_refund_id = max(self._next_refund_id, refund["id"] + 1)
        return oid

    def generate_orders(
        self, n: int, *, created_between: tuple[datetime, datetime] | None = None
    ) -> list[int]:
        """Add ``n`` generated orders, ``created`` spread over ``created_between``.

        Default window: the 30 days before ``clock.now()``. Ids increase with ``created``.
        """
        now = self.clock.now()
        start, end = created_between or (now - timedelta(days=30), now)
        start, end = utc(start), utc(end)
        if end < start:
            raise ValueError("created_between must be (start, end) with start <= end")
        span = int((end - start).total_seconds())
        with self._lock:
            rng = self.generator.rng
            offsets = sorted(rng.randint(0, span) for _ in range(n))
            ids = []
            for off in offsets:
                order = self.generator.order(start + timedelta(seconds=off), now=max(now, end))
                self._renumber_refunds(order)
                ids.append(self.add_order(order))
            return ids

    def add_invalid_order(self, kind: str, created: datetime | None = None) -> int:
        """Add one of :meth:`OrderGenerator.make_invalid_order`'s broken orders."""
        with self._lock:
            order = self.generator.make_invalid_order(
                kind, created or self.clock.now(), now=self.clock.now()
            )
            return self.add_order(order)

    def set_status(
        self, order_id: int, status_id: int, tracking_url: str | None = None
    ) -> dict[str, Any]:
        """Change an order's status (and ``trackingUrl`` when given); returns a copy."""
        with self._lock:
            order = self._require(order_id)
            st = self._status_by_id.get(status_id)
            if st is None:
                raise ValueError(f"unknown status id {status_id}")
            ts = self._key_ts(order_id)
            self._unindex(order_id)
            order["status"] = {"id": st["id"], "name": st["name"], "type": st["type"]}
            if tracking_url is not None:
                order["trackingUrl"] = tracking_url
            self._index(order_id, ts)
            return copy.deepcopy(order)

    def add_refund(self, order_id: int, value: Any, name: str) -> dict[str, Any]:
        """Append ``{"id", "name", "value", "createdAt"}`` to ``refunds[]``; returns it.

        ``value`` may be a Decimal/float/int/str; it is stored rounded to pennies. The
        status is not changed (use :meth:`set_status`).
        """
        from decimal import Decimal

        with self._lock:
            order = self._require(order_id)
            refund = {
                "id": self._next_refund_id,
                "name": name,
                "value": money(Decimal(str(value))),
                "createdAt": rfc2822(self.clock.now()),
            }
            self._next_refund_id += 1
            refunds = order.get("refunds")
            if not isinstance(refunds, list):
                refunds = order["refunds"] = []
            refunds.append(refund)
            self._json.pop(order_id, None)
            return dict(refund)

    def archive(self, order_id: int, archived: bool = True) -> None:
        """Set the order's ``archived`` flag."""
        with self._lock:
            order = self._require(order_id)
            ts = self._key_ts(order_id)
            self._unindex(order_id)
            order["archived"] = archived
            self._index(order_id, ts)

    def delete_order(self, order_id: int) -> bool:
        """Remove an order; False if there was none."""
        with self._lock:
            if order_id not in self.orders:
                return False
            self._unindex(order_id)
            del self.orders[order_id]
            return True

    # ================================================================== queries

    def get_order(self, order_id: int) -> dict[str, Any] | None:
        """A deep copy of one stored order, or None."""
        with self._lock:
            order = self.orders.get(order_id)
            return copy.deepcopy(order) if order is not None else None

    def order_ids(self) -> list[int]:
        """All stored order ids (a snapshot)."""
        with self._lock:
            return list(self.orders)

    def status_by_name(self, name: str) -> dict[str, Any] | None:
        """The store status called ``name`` (case-insensitive), as a copy."""
        low = name.lower()
        for s in self.statuses:
            if str(s["name"]).lower() == low:
                return dict(s)
        return None

    def created_ids(
        self, start: int | None = None, end: int | None = None, *, archived: bool | None = None
    ) -> list[int]:
        """Ids created within [start, end] UNIX seconds (inclusive), oldest first.

        ``archived=None`` means both. A test oracle: what a complete sync must have seen.
        """
        with self._lock:
            flags = (False, True) if archived is None else (archived,)
            keys: list[Key] = []
            for flag in flags:
                idx = self._by_archived[flag]
                lo, hi = self._bounds(idx, start, end)
                keys.extend(idx[lo:hi])
            return [oid for _, oid in sorted(keys)]

    def reset_counters(self) -> None:
        """Zero ``calls``, ``responses`` and ``throttled``."""
        with self._lock:
            self.calls.clear()
            self.responses.clear()
            self.throttled = 0

    # ================================================================== indexes

    def _require(self, order_id: int) -> dict[str, Any]:
        order = self.orders.get(order_id)
        if order is None:
            raise KeyError(f"no order {order_id}")
        return order

    def _key_ts(self, oid: int) -> int:
        return self._key[oid][0]

    def _index(self, oid: int, ts: int) -> None:
        order = self.orders[oid]
        key = (ts, oid)
        archived = bool(order.get("archived"))
        self._key[oid] = key
        bisect.insort(self._by_archived[archived], key)
        bisect.insort(self._by_status.setdefault((archived, _status_id(order)), []), key)
        self._json.pop(oid, None)

    def _unindex(self, oid: int) -> None:
        key = self._key.pop(oid)
        order = self.orders[oid]
        archived = bool(order.get("archived"))
        by_status = self._by_status.get((archived, _status_id(order)))
        for lst in (self._by_archived[archived], by_status):
            if lst is None:
                continue
            i = bisect.bisect_left(lst, key)
            if i < len(lst) and lst[i] == key:
                del lst[i]
        self._json.pop(oid, None)

    @staticmethod
    def _bounds(idx: list[Key], start: int | None, end: int | None) -> tuple[int, int]:
        lo = 0 if start is None else bisect.bisect_left(idx, (start, -_MAXINT))
        hi = len(idx) if end is None else bisect.bisect_right(idx, (end, _MAXINT))
        return lo, max(lo, hi)

    def _order_json(self, oid: int) -> bytes:
        cached = self._json.get(oid)
        if cached is None:
            cached = self._json[oid] = dumps(self.orders[oid])
        return cached

    def _renumber_refunds(self, order: dict[str, Any]) -> None:
        for refund in order.get("refunds") or []:
            refund["id"] = self._next_refund_id
            self._next_refund_id += 1

    # ================================================================== HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one API request (thread-safe). May raise ``httpx.ReadTimeout`` (fault)."""
        method = request.method.upper()
        route, arg = self._route(method, request.url.path)
        with self._lock:
            self.calls[route] += 1
            plan = plan_faults(self.faults, self.clock)
        apply_latency_and_timeout(plan, self.clock, request, self.latency.draw())
        with self._lock:
            response = self._handle_locked(request, method, route, arg, plan)
            self.responses[response.status_code] += 1
            if response.status_code == 429:
                self.throttled += 1
            return response

    def _route(self, method: str, path: str) -> tuple[str, int | None]:
        i = path.find("/v1/")
        parts = path[i + 4 :].strip("/").split("/") if i >= 0 else []
        if parts == ["orders"]:
            return f"{method} /v1/orders", None
        if parts == ["orders", "count"]:
            return f"{method} /v1/orders/count", None
        if parts == ["order-statuses"]:
            return f"{method} /v1/order-statuses", None
        if len(parts) in (2, 3) and parts[0] == "orders" and parts[1].isdecimal():
            if len(parts) == 2:
                return f"{method} /v1/orders/{{id}}", int(parts[1])
            if parts[2] == "status":
                return f"{method} /v1/orders/{{id}}/status", int(parts[1])
        return f"{method} {path}", None

    def _handle_locked(
        self,
        request: httpx.Request,
        method: str,
        route: str,
        arg: int | None,
        plan: FaultPlan | None,
    ) -> httpx.Response:
        if self.outage:
            return html_response(503)
        faulted = fault_response(plan, _error)
        if faulted is not None:
            return faulted
        if self.revoked or basic_credentials(request) != (self.api_key, self.api_secret):
            return _error(401, "Unauthorized")
        if self.enforce_rate_limit:
            wait = self.bucket.take()
            if wait is not None:
                resp = _error(429, "Too Many Requests")
                if self.retry_after_on_429:
                    resp.headers["Retry-After"] = str(whole_seconds(wait))
                return resp
        try:
            return self._dispatch(request, method, route, arg)
        except _BadRequest as exc:
            return _error(exc.status, exc.message)

    def _dispatch(
        self, request: httpx.Request, method: str, route: str, arg: int | None
    ) -> httpx.Response:
        _, _, resource = route.partition(" ")
        allowed: dict[str, tuple[str, ...]] = {
            "/v1/orders": ("GET",),
            "/v1/orders/count": ("GET",),
            "/v1/order-statuses": ("GET",),
            "/v1/orders/{id}": ("GET", "DELETE"),
            "/v1/orders/{id}/status": ("POST",),
        }
        methods = allowed.get(resource)
        if methods is None:
            return _error(404, "Not Found")
        if method not in methods:
            return _error(405, "Method Not Allowed")
        params = request.url.params
        if resource == "/v1/orders":
            return self._list(params)
        if resource == "/v1/orders/count":
            return json_response(200, {"count": len(self._select(params, counting=True))})
        if resource == "/v1/order-statuses":
            return json_response(200, self.statuses)
        assert arg is not None
        if resource == "/v1/orders/{id}/status":
            return self._post_status(request, arg)
        if arg not in self.orders:
            return _error(404, f"Order {arg} not found")
        if method == "DELETE":
            self.delete_order(arg)
            return empty_response(204)
        fields = self._fields(params)
        if fields is None:
            return raw_json_response(200, self._order_json(arg))
        return json_response(200, self._project(self.orders[arg], fields))

    # ------------------------------------------------------------------ list & count

    @staticmethod
    def _fields(params: httpx.QueryParams) -> list[str] | None:
        raw = params.get("fields")
        if raw is None or not raw.strip():
            return None
        return [f.strip() for f in raw.split(",") if f.strip()]

    @staticmethod
    def _project(order: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": order.get("id")}
        for f in fields:
            if f in order and f != "id":
                out[f] = order[f]
        return out

    def _list(self, params: httpx.QueryParams) -> httpx.Response:
        fields = self._fields(params)
        count = _int_param(params, "count")
        if count is None:
            count = DEFAULT_COUNT
        if not 1 <= count <= MAX_COUNT:
            raise _BadRequest(400, f"Invalid value for parameter 'count': must be 1-{MAX_COUNT}")
        offset = _int_param(params, "offset", minimum=0) or 0
        if self.faults.shuffle_between_pages and offset > 0 and not params.get("ids"):
            self._shuffle(params, offset)
        keys = self._select(params, counting=False)
        page = keys[offset : offset + count]
        if fields is None:
            body = b"[" + b",".join(self._order_json(oid) for _, oid in page) + b"]"
            return raw_json_response(200, body)
        return json_response(200, [self._project(self.orders[oid], fields) for _, oid in page])

    def _select(self, params: httpx.QueryParams, *, counting: bool) -> Sequence[Key]:
        """Keys matching the filters, in the requested order (a list or a lazy slice view)."""
        sort = params.get("sort") or "date"
        if sort not in ("date", "date_desc"):
            raise _BadRequest(400, "Invalid value for parameter 'sort': use date or date_desc")
        archived_raw = params.get("archived")
        if archived_raw not in (None, "", "0", "1"):
            raise _BadRequest(400, "Invalid value for parameter 'archived': use 0 or 1")
        archived = None if archived_raw in (None, "") else archived_raw == "1"
        status = _int_param(params, "status")
        start = _int_param(params, "from")
        end = _int_param(params, "to")
        ids_raw = params.get("ids")
        if ids_raw is not None and ids_raw.strip():
            ids: list[int] = []
            for part in ids_raw.split(","):
                part = part.strip()
                if not part:
                    continue
                if not part.isdecimal():
                    raise _BadRequest(400, "Invalid value for parameter 'ids': integers only")
                ids.append(int(part))
            if len(ids) > MAX_IDS:
                raise _BadRequest(400, f"Too many ids: at most {MAX_IDS} per request")
            keys = []
            for oid in dict.fromkeys(ids):
                key = self._key.get(oid)
                if key is None:
                    continue
                order = self.orders[oid]
                if archived is not None and bool(order.get("archived")) != archived:
                    continue
                if status is not None and _status_id(order) != status:
                    continue
                if (start is not None and key[0] < start) or (end is not None and key[0] > end):
                    continue
                keys.append(key)
            keys.sort(reverse=sort == "date_desc")
            return keys
        flag = bool(archived)
        idx = self._by_archived[flag] if status is None else self._by_status.get((flag, status), [])
        lo, hi = self._bounds(idx, start, end)
        if counting:
            return _SliceView(idx, lo, hi, reverse=False)
        return _SliceView(idx, lo, hi, reverse=sort == "date_desc")

    def _shuffle(self, params: httpx.QueryParams, offset: int) -> None:
        """The ``shuffle_between_pages`` fault: the shop changes between two pages."""
        rng = self.faults.rng
        start = _int_param(params, "from")
        end = _int_param(params, "to")
        archived = params.get("archived") == "1"
        idx = self._by_archived[archived]
        now_ts = int(self.clock.now().timestamp())
        lo_ts = start if start is not None else (idx[0][0] if idx else now_ts - 86400)
        hi_ts = end if end is not None else max(now_ts, idx[-1][0] if idx else now_ts)
        lo_ts, hi_ts = min(lo_ts, hi_ts), max(lo_ts, hi_ts)
        for _ in range(max(0, self.faults.shuffle_inserts)):
            created = datetime.fromtimestamp(rng.randint(lo_ts, hi_ts), tz=UTC)
            order = self.generator.order(created, now=self.clock.now())
            order["archived"] = archived
            self._renumber_refunds(order)
            self.shuffle_log.append(("inserted", self.add_order(order)))
        if self.faults.roll(self.faults.shuffle_delete_probability):
            lo, hi = self._bounds(idx, lo_ts, hi_ts)
            window = idx[lo:hi]
            seen = window[:offset] if params.get("sort") != "date_desc" else window[-offset:]
            if seen:
                _, victim = rng.choice(seen)
                self.delete_order(victim)
                self.shuffle_log.append(("deleted", victim))

    # ------------------------------------------------------------------ status update

    def _post_status(self, request: httpx.Request, oid: int) -> httpx.Response:
        ctype = request.headers.get("content-type", "")
        if "application/json" not in ctype.lower():
            return _error(415, "Content-Type must be application/json")
        if oid not in self.orders:
            return _error(404, f"Order {oid} not found")
        try:
            body = json.loads(request.read() or b"null")
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object")
        status = body.get("status")
        if isinstance(status, bool) or not isinstance(status, int):
            return _error(422, "status: must be an order status id (integer)")
        if status not in self._status_by_id:
            return _error(422, f"status: unknown order status id {status}")
        tracking = body.get("trackingUrl")
        if tracking is not None and not isinstance(tracking, str):
            return _error(422, "trackingUrl: must be a string")
        send_email = body.get("sendEmail")
        if send_email is not None and not isinstance(send_email, bool):
            return _error(422, "sendEmail: must be true or false")
        self.set_status(oid, status, tracking_url=tracking)
        return raw_json_response(200, self._order_json(oid))


class _SliceView(Sequence[Key]):
    """A read-only window ``idx[lo:hi]`` (optionally reversed) without copying the index."""

    __slots__ = ("_hi", "_idx", "_lo", "_reverse")

    def __init__(self, idx: list[Key], lo: int, hi: int, *, reverse: bool) -> None:
        self._idx, self._lo, self._hi, self._reverse = idx, lo, hi, reverse

    def __len__(self) -> int:
        return self._hi - self._lo

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            if stop <= start:
                return []
            if not self._reverse:
                return self._idx[self._lo + start : self._lo + stop]
            out = self._idx[self._hi - stop : self._hi - start]
            out.reverse()
            return out
        n = len(self)
        if item < 0:
            item += n
        if not 0 <= item < n:
            raise IndexError(item)
        return self._idx[self._hi - 1 - item] if self._reverse else self._idx[self._lo + item]
