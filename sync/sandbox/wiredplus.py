"""A faithful local simulator of the WiredPlus v1 order API.

Contract
--------
``WiredPlusSimulator.handle(request) -> response`` is thread-safe and usable directly as
``httpx.MockTransport(sim.handle)`` or served over HTTP by :mod:`sync.sandbox.server`. Paths are
matched from ``/v1/`` on, whatever the host.

===========================  ===============================================================
``POST /v1/UpdateOrder``     create/update one order (docs 000); upsert by ``id``, else by
                             ``api_reference_id``
``POST /v1/CreateOrderEvent`` create/update one order event (docs 001); upsert by ``id``, else
                             by ``event_reference``
``POST /v1/BulkOrderUpdate`` create/update up to ``max_update_rows`` orders in one request,
                             one result per record (notes A.4; shape **unverified**, below)
``GET /v1/GetAccountInfo``   account and hourly rate-limit figures (notes A.9), incl.
                             ``max_update_rows``
===========================  ===============================================================

Success: HTTP 200 ``{"id": <32-hex id>, "status": 200, "message": "Order created" | "Order
updated" | "Event created" | "Event updated"}``. Failure: HTTP 4xx/5xx and ``{"status": <code>,
"error": "<field>: <why>"}`` (the documented ``error`` output, "only present during failure").
Authentication: HTTP Basic, user = API key *name* (``api_user``), password = the key; else 401.

Validation (HTTP 400 unless stated; the first problem found is reported):

* body: a JSON object.
* UpdateOrder: ``api_reference_id`` required non-empty string; ``order_reference`` required
  (non-empty string or integer); ``customer_email`` required and shaped like an email;
  ``order_lines`` required non-empty array of objects, each with ``order_line_id`` (non-empty
  string or integer, unique within the order), numeric money fields, integer ``quantity``;
  ``order_status`` one of the documented values; ``order_create_date``/``order_update_date``
  exactly ``YYYY-MM-DD HH:MM:SS`` (a real date); money fields JSON numbers (not strings, not
  booleans, not negative); ``iso_currency_code`` three upper-case letters; ``custom_fields`` an
  object whose names are all pre-defined in the account (``custom_fields=`` at construction,
  default :data:`DEFAULT_CUSTOM_FIELDS`; None accepts any), else 400 ``custom_fields: 'x' is
  not a pre-defined custom field``; ``contact_id``/``number_of_products`` integers;
  ``customer_is_guest`` boolean; other documented text fields strings (or null).
* CreateOrderEvent: ``event_reference`` required non-empty string; ``order_id`` required string
  naming an existing WiredPlus order (unknown → **404**); ``event_type`` one of ``cancelled
  completed delivered dispatched disputed fullfilled processing refunded`` (the docs' spelling
  ``fullfilled``; ``fulfilled`` is rejected); ``event_date`` exactly ``YYYY-MM-DDTHH:MM:SSZ``;
  ``message`` string or null; ``order_event_lines`` an **array** (the jQuery example's object
  form is rejected) of objects whose ``order_line_id`` is a line of that order (compared as
  text, so ``20`` and ``"20"`` match) with numeric overrides and integer ``quantity``;
  ``custom_fields`` as for UpdateOrder.
* ``id``, when given, must name an existing order/event (else **404**, ``"id: ... not found"``).

Choices where the documents are silent
--------------------------------------
* Unknown top-level keys are accepted and stored, and counted in ``unknown_keys``. The keys the
  docs' own example sends (``api_integration``, ``api_resource``, ``external_order_id``,
  ``create_date``, ``update_date``; per line ``id``, ``order_id``, ``product_id``,
  ``create_date``, ``update_date``) count as known.
* An update **replaces** the stored order/event with the new body (plus the system fields
  ``id``, ``contact_id``, ``create_date``, ``update_date`` / ``date_created``,
  ``date_updated``), so a field the client stops sending disappears. An update by ``id`` may
  change ``api_reference_id`` unless another order already uses it (400).
* ``event_reference`` is unique account-wide (not per order).
* Contacts are matched by lower-cased ``customer_email`` unless ``contact_id`` is given; new
  emails create contacts (``number_of_contacts``).
* Null is accepted for any optional field and means "not given".
* Rate limit: every authenticated request counts against the current clock hour (UTC);
  ``ratelimit_reset`` is the UNIX time the hour ends. With ``enforce_rate_limit`` a request
  beyond ``hourly_limit`` gets 429 with ``Retry-After`` (seconds to the reset) and is not
  counted. 401s are not counted. Injected faults (see :mod:`sync.sandbox.faults`) come first.
* Latency: every request first waits ``latency`` ± ``jitter`` seconds (attribute ``latency``,
  a :class:`~sync.sandbox._common.Latency`), outside the lock, so concurrent requests overlap.
* Switches, changeable while serving: ``revoked = True`` answers every request 401 as if
  the API key had been revoked; ``outage = True`` answers every request 503 with the load
  balancer's HTML page, before anything else. Neither uses the hourly budget.
* Unknown methods → 404 ``{"status": 404, "error": "method: unknown API method"}``; wrong
  HTTP verb → 405.

BulkOrderUpdate
---------------
The research notes say only: same fields as UpdateOrder, at most 50 orders per request,
``max_update_rows`` in GetAccountInfo, one result per record. Everything else is this
simulator's **assumption** (listed in docs/assumptions.md):

* request: ``POST /v1/BulkOrderUpdate`` with ``{"orders": [<UpdateOrder body>, ...]}``, 1 to
  ``max_update_rows`` (default 50) records; otherwise the whole request is answered 400
  (``"orders: is required ..."``, ``"orders: at most 50 orders per request ..."``) and nothing
  is stored.
* each record follows UpdateOrder's validation and upsert rules exactly (upsert by ``id``,
  else ``api_reference_id``; same stored shape, same ids), except that ``order_reference``
  is optional (notes A.4). Records are processed in request order, so a reference repeated
  within one request is created by the first and updated by the second. A rejected record
  does not stop the others.
* response: HTTP 200 ``{"status": 200, "message": "N orders processed: S stored, F failed",
  "results": [...]}`` with exactly one result per record, **in request order** (no record
  key is echoed: match by position): ``{"id": <32-hex>, "status": 200, "message": "Order
  created" | "Order updated"}`` or ``{"status": 400 | 404, "error": "<field>: <why>"}``.
* budget: ``bulk_cost="request"`` (default) charges one unit of the hourly limit per request,
  ``"record"`` one per record; with ``enforce_rate_limit`` a request that does not fit
  whole is answered 429 (``Retry-After``) and nothing is stored or charged.
* ``bulk_enabled=False``: every BulkOrderUpdate is refused with ``bulk_refusal_status``
  (403 default, or 404) and ``{"status": ..., "error": "BulkOrderUpdate: this feature is not
  enabled for your account"}``; nothing is stored; the request is charged like any other
  and is not a rejection. ``GetAccountInfo`` reports ``max_update_rows`` either way.
* faults apply as to any request (latency, timeout, 429 storm, 5xx before processing; drop
  after write when at least one record was stored).
* records: accepted records appear in ``write_log`` as ``("UpdateOrder", ref, action)`` and
  in ``order_creations`` exactly as single calls do; ``bulk_requests`` lists ``(records,
  failed)`` per processed request; each rejected record is in ``rejections`` as
  ``("BulkOrderUpdate", "orders[i]: <error>")``.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from sync import jsoncodec
from sync.clock import Clock
from sync.sandbox._common import (
    FaultPlan,
    Latency,
    apply_latency_and_timeout,
    basic_credentials,
    fault_response,
    html_response,
    json_response,
    plan_faults,
    whole_seconds,
)
from sync.sandbox.faults import Faults

ORDER_STATUSES = frozenset(
    {
        "unknown", "pending", "processing", "under-review", "awaiting-payment",
        "awaiting-fulfillment", "awaiting-pickup", "partially-shipped", "completed", "shipped",
        "fraud", "closed", "cancelled", "declined", "refunded", "disputed", "partially-refunded",
    }
)
EVENT_TYPES = frozenset(
    {
        "cancelled", "completed", "delivered", "dispatched", "disputed", "fullfilled",
        "processing", "refunded",
    }
)
ORDER_MONEY = (
    "invoice_tax_total", "invoice_total", "invoice_total_inc_tax", "invoice_discount_total",
    "shipping_tax_total", "shipping_total", "shipping_total_inc_tax", "shipping_discount_total",
    "grand_total", "grand_total_inc_tax",
)
LINE_MONEY = (
    "tax_percent", "product_price", "product_price_tax", "product_price_inc_tax",
    "product_original_price", "row_total", "row_total_inc_tax", "row_total_discount",
)
EVENT_LINE_MONEY = tuple(f for f in LINE_MONEY if f != "tax_percent")
ORDER_TEXT = (
    "api_integration", "api_resource", "external_order_id", "create_date", "update_date",
    "payment_type", "payment_type_name", "customer_firstname", "customer_lastname",
    "customer_gender", "customer_telephone", "customer_mobile", "customer_dob",
    "customer_notes", "billing_first_name", "billing_last_name", "billing_address1",
    "billing_address2", "billing_city", "billing_county", "billing_post_code",
    "billing_country", "shipping_first_name", "shipping_last_name", "shipping_address1",
    "shipping_address2", "shipping_city", "shipping_county", "shipping_post_code",
    "shipping_country",
)
ORDER_KEYS = frozenset(
    (
        "id", "api_reference_id", "contact_id", "order_reference", "order_create_date",
        "order_update_date", "order_status", "iso_currency_code", "number_of_products",
        "customer_email", "customer_is_guest", "order_lines", "custom_fields",
        *ORDER_MONEY, *ORDER_TEXT,
    )
)
LINE_KEYS = frozenset(
    ("order_line_id", "product_sku", "product_name", "product_description", "quantity", "id",
     "order_id", "product_id", "create_date", "update_date", *LINE_MONEY)
)
EVENT_KEYS = frozenset(
    ("id", "event_reference", "order_id", "event_type", "event_date", "message",
     "order_event_lines", "custom_fields")
)
EVENT_LINE_KEYS = frozenset(("order_line_id", "quantity", *EVENT_LINE_MONEY))

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_ORDER_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_EVENT_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
SYSTEM_DATE = "%Y-%m-%d %H:%M:%S"
#: Custom fields the sandbox account has pre-defined: the names the docs' examples use.
DEFAULT_CUSTOM_FIELDS: tuple[str, ...] = ("tracking_reference", "tracking_url", "Favorite Colour")


DEFAULT_MAX_UPDATE_ROWS = 50
#: How a BulkOrderUpdate request is charged to the hourly budget: one unit per request, or
#: one per record (unverified: see the module docstring).
BULK_COSTS = ("request", "record")


class _Invalid(Exception):
    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


def _error(status: int, error: str) -> httpx.Response:
    return json_response(status, {"status": status, "error": error})


def _is_number(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and math.isfinite(v)
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_money(obj: Mapping[str, Any], fields: tuple[str, ...], where: str) -> None:
    for f in fields:
        v = obj.get(f)
        if v is None:
            continue
        if not _is_number(v):
            raise _Invalid(f"{where}{f}: must be a number, not {type(v).__name__}")
        if v < 0:
            raise _Invalid(f"{where}{f}: must not be negative")
    rate = obj.get("tax_percent")
    if rate is not None and rate > 100:
        raise _Invalid(f"{where}tax_percent: must be a percentage (0-100)")


def _check_ref(obj: Mapping[str, Any], field: str, *, allow_int: bool = False) -> None:
    v = obj.get(field)
    if v is None or v == "":
        raise _Invalid(f"{field}: is required")
    if allow_int and _is_int(v):
        return
    if not isinstance(v, str) or not v.strip():
        kind = "a string or integer" if allow_int else "a string"
        raise _Invalid(f"{field}: must be {kind}")


def _check_date(v: Any, field: str, pattern: re.Pattern[str], fmt: str, shown: str) -> None:
    if v is None:
        return
    if not isinstance(v, str) or not pattern.match(v):
        raise _Invalid(f"{field}: must be formatted {shown}")
    try:
        datetime.strptime(v, fmt)
    except ValueError:
        raise _Invalid(f"{field}: {v!r} is not a valid date") from None


def _check_lines(
    lines: Any, field: str, money: tuple[str, ...], *, required: bool
) -> list[Mapping[str, Any]]:
    if lines is None:
        if required:
            raise _Invalid(f"{field}: is required")
        return []
    if not isinstance(lines, list):
        raise _Invalid(f"{field}: must be an array")
    if required and not lines:
        raise _Invalid(f"{field}: must contain at least one line")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        where = f"{field}[{i}]."
        if not isinstance(line, dict):
            raise _Invalid(f"{field}[{i}]: must be an object")
        lid = line.get("order_line_id")
        if lid is None or lid == "":
            raise _Invalid(f"{where}order_line_id: is required")
        if not (_is_int(lid) or (isinstance(lid, str) and lid.strip())):
            raise _Invalid(f"{where}order_line_id: must be a string or integer")
        if str(lid) in seen:
            raise _Invalid(f"{where}order_line_id: duplicate line id {lid!r}")
        seen.add(str(lid))
        q = line.get("quantity")
        if q is not None and not _is_int(q):
            raise _Invalid(f"{where}quantity: must be an integer")
        if q is not None and q < 0:
            raise _Invalid(f"{where}quantity: must not be negative")
        _check_money(line, money, where)
        for k in ("product_sku", "product_name", "product_description"):
            v = line.get(k)
            if v is not None and not isinstance(v, str):
                raise _Invalid(f"{where}{k}: must be a string")
    return lines


class WiredPlusSimulator:
    """In-memory WiredPlus account with UpdateOrder, CreateOrderEvent and GetAccountInfo.

    Records for assertions (read freely):

    * ``orders`` (id → stored dict), ``orders_by_ref`` (api_reference_id → id);
    * ``events`` (id → stored dict), ``events_by_ref`` (event_reference → id);
    * ``event_creations``: Counter event_reference → times it was *created* (≤ 1 when the
      client is correct); ``order_creations`` likewise per api_reference_id;
    * ``write_log``: ``(endpoint, api_reference_id | event_reference, "created"|"updated")``
      for every stored write, in order (including writes whose response was dropped);
    * ``calls`` (Counter by ``"POST /v1/UpdateOrder"`` etc.), ``responses`` (Counter by
      status), ``rejections`` ``[(endpoint, error)]`` for every 400/404 answer to a write,
      ``unknown_keys`` (Counter),
      ``dropped_responses`` (writes stored whose answer was lost by the fault);
    * ``contacts``: lower-cased email → contact id.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        api_user: str = "sandbox",
        api_key: str = "sandbox-key",
        hourly_limit: int = 10000,
        enforce_rate_limit: bool = False,
        seed: int = 0,
        account_name: str = "Sandbox Shop Ltd",
        custom_fields: Iterable[str] | None = DEFAULT_CUSTOM_FIELDS,
        latency: float = 0.0,
        jitter: float = 0.0,
        max_update_rows: int = DEFAULT_MAX_UPDATE_ROWS,
        bulk_enabled: bool = True,
        bulk_refusal_status: int = 403,
        bulk_cost: str = "request",
    ) -> None:
        if max_update_rows < 1:
            raise ValueError("max_update_rows must be >= 1")
        if bulk_cost not in BULK_COSTS:
            raise ValueError(f"bulk_cost must be one of {', '.join(BULK_COSTS)}")
        if bulk_refusal_status not in (403, 404):
            raise ValueError("bulk_refusal_status must be 403 or 404")
        self.clock = clock
        self.custom_fields = None if custom_fields is None else frozenset(custom_fields)
        self.api_user = api_user
        self.api_key = api_key
        self.hourly_limit = hourly_limit
        self.enforce_rate_limit = enforce_rate_limit
        self.account_name = account_name
        self.faults = Faults(seed=seed + 1)
        self.latency = Latency(latency, jitter, seed=seed + 1)
        self.max_update_rows = max_update_rows
        self.bulk_enabled = bulk_enabled
        self.bulk_refusal_status = bulk_refusal_status
        self.bulk_cost = bulk_cost
        self.bulk_requests: list[tuple[int, int]] = []
        self._ids = random.Random(f"wiredplus-{seed}")
        self._lock = threading.RLock()
        self.orders: dict[str, dict[str, Any]] = {}
        self.orders_by_ref: dict[str, str] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.events_by_ref: dict[str, str] = {}
        self.event_creations: Counter[str] = Counter()
        self.order_creations: Counter[str] = Counter()
        self.write_log: list[tuple[str, str, str]] = []
        self.calls: Counter[str] = Counter()
        self.responses: Counter[int] = Counter()
        self.rejections: list[tuple[str, str]] = []
        self.unknown_keys: Counter[str] = Counter()
        self.dropped_responses = 0
        self.contacts: dict[str, int] = {}
        self._next_contact = 5001
        self._hour = -1
        self._used = 0
        self.revoked = False
        self.outage = False

    # ------------------------------------------------------------------ helpers for tests

    def order_by_ref(self, api_reference_id: str) -> dict[str, Any] | None:
        """The stored order with this ``api_reference_id`` (the live dict), or None."""
        with self._lock:
            oid = self.orders_by_ref.get(api_reference_id)
            return self.orders.get(oid) if oid is not None else None

    def events_for_order(self, order_id: str) -> list[dict[str, Any]]:
        """Stored events of one WiredPlus order, oldest first."""
        with self._lock:
            return [e for e in self.events.values() if e.get("order_id") == order_id]

    def reset_counters(self) -> None:
        """Zero ``calls``, ``responses``, ``rejections``, ``unknown_keys``, drops."""
        with self._lock:
            self.calls.clear()
            self.responses.clear()
            self.rejections.clear()
            self.unknown_keys.clear()
            self.dropped_responses = 0

    def _new_id(self) -> str:
        while True:
            new = f"{self._ids.getrandbits(128):032x}"
            if new not in self.orders and new not in self.events:
                return new

    def _now_text(self) -> str:
        return self.clock.now().strftime(SYSTEM_DATE)

    # ------------------------------------------------------------------ rate limit

    def _roll_hour(self) -> tuple[int, int]:
        """(hour number, UNIX reset time) for the clock's current hour; resets the count."""
        ts = int(self.clock.now().timestamp())
        hour = ts // 3600
        if hour != self._hour:
            self._hour, self._used = hour, 0
        return hour, (hour + 1) * 3600

    @property
    def ratelimit_remaining(self) -> int:
        """Requests left in the current clock hour."""
        with self._lock:
            self._roll_hour()
            return max(0, self.hourly_limit - self._used)

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one API request (thread-safe).

        May raise ``httpx.ReadTimeout`` (timeout fault) or ``httpx.RemoteProtocolError``
        (drop-after-write fault: the write *is* stored).
        """
        method = request.method.upper()
        path = request.url.path
        i = path.find("/v1/")
        name = path[i + 4 :].strip("/") if i >= 0 else ""
        label = f"{method} /v1/{name}" if i >= 0 else f"{method} {path}"
        with self._lock:
            self.calls[label] += 1
            plan = plan_faults(self.faults, self.clock)
        apply_latency_and_timeout(plan, self.clock, request, self.latency.draw())
        with self._lock:
            response, wrote = self._handle_locked(request, method, name, plan)
            if wrote and self.faults.roll(self.faults.drop_after_write_rate):
                self.dropped_responses += 1
                raise httpx.RemoteProtocolError(
                    "sandbox: server disconnected without sending a response", request=request
                )
            self.responses[response.status_code] += 1
            refused_feature = name == "BulkOrderUpdate" and not self.bulk_enabled
            if response.status_code in (400, 404) and not refused_feature and name in (
                "UpdateOrder",
                "CreateOrderEvent",
                "BulkOrderUpdate",
            ):
                try:
                    err = json.loads(response.content).get("error", "")
                except (ValueError, AttributeError):
                    err = response.reason_phrase
                self.rejections.append((name, str(err)))
            return response

    def _handle_locked(
        self, request: httpx.Request, method: str, name: str, plan: FaultPlan | None
    ) -> tuple[httpx.Response, bool]:
        if self.outage:
            return html_response(503), False
        faulted = fault_response(plan, _error)
        if faulted is not None:
            return faulted, False
        if self.revoked or basic_credentials(request) != (self.api_user, self.api_key):
            return _error(401, "Unauthorized: invalid API user or key"), False
        _, reset = self._roll_hour()
        if self.enforce_rate_limit and self._used >= self.hourly_limit:
            wait = whole_seconds(reset - self.clock.now().timestamp())
            resp = _error(429, f"ratelimit: hourly limit of {self.hourly_limit} requests reached")
            resp.headers["Retry-After"] = str(wait)
            return resp, False
        self._used += 1
        routes = {"UpdateOrder": "POST", "CreateOrderEvent": "POST", "GetAccountInfo": "GET",
                  "BulkOrderUpdate": "POST"}
        verb = routes.get(name)
        if verb is None:
            return _error(404, "method: unknown API method"), False
        if method != verb:
            return _error(405, f"method: {name} needs HTTP {verb}"), False
        if name == "GetAccountInfo":
            return json_response(200, self._account_info(reset)), False
        try:
            raw = request.read()
            try:
                body = json.loads(raw) if raw else None
            except (ValueError, UnicodeDecodeError):
                raise _Invalid("body: not valid JSON") from None
            if not isinstance(body, dict):
                raise _Invalid("body: must be a JSON object")
            if name == "BulkOrderUpdate":
                return self._bulk_order_update(body, reset)
            if name == "UpdateOrder":
                return self._update_order(body), True
            return self._create_event(body), True
        except _Invalid as exc:
            return _error(exc.status, exc.error), False

    def _account_info(self, reset: int) -> dict[str, Any]:
        return {
            "account_name": self.account_name,
            "api_user": self.api_user,
            "ratelimit_limit": self.hourly_limit,
            "ratelimit_remaining": max(0, self.hourly_limit - self._used),
            "ratelimit_reset": reset,
            "max_return_rows": 500,
            "max_update_rows": self.max_update_rows,
            "number_of_contacts": len(self.contacts),
            "send_balance": 25000,
        }

    def _check_custom_fields(self, custom: Any) -> None:
        if custom is not None and not isinstance(custom, dict):
            raise _Invalid("custom_fields: must be an object of field name to value")
        if custom and self.custom_fields is not None:
            for name in custom:
                if name not in self.custom_fields:
                    raise _Invalid(f"custom_fields: {name!r} is not a pre-defined custom field")

    # ------------------------------------------------------------------ UpdateOrder

    def _validate_order(self, body: Mapping[str, Any]) -> None:
        _check_ref(body, "api_reference_id")
        _check_ref(body, "order_reference", allow_int=True)
        email = body.get("customer_email")
        if email is None or email == "":
            raise _Invalid("customer_email: is required")
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            raise _Invalid("customer_email: must be a valid email address")
        if "id" in body and body["id"] is not None and not isinstance(body["id"], str):
            raise _Invalid("id: must be a string")
        _check_lines(body.get("order_lines"), "order_lines", LINE_MONEY, required=True)
        status = body.get("order_status")
        if status is not None and status not in ORDER_STATUSES:
            raise _Invalid(
                f"order_status: {status!r} is not one of " + " | ".join(sorted(ORDER_STATUSES))
            )
        for f in ("order_create_date", "order_update_date"):
            _check_date(body.get(f), f, _ORDER_DATE, SYSTEM_DATE, "YYYY-MM-DD HH:MM:SS")
        _check_money(body, ORDER_MONEY, "")
        cur = body.get("iso_currency_code")
        if cur is not None and (not isinstance(cur, str) or not _CURRENCY.match(cur)):
            raise _Invalid("iso_currency_code: must be an ISO 4217 alpha-3 code such as GBP")
        self._check_custom_fields(body.get("custom_fields"))
        for f in ("contact_id", "number_of_products"):
            v = body.get(f)
            if v is not None and (not _is_int(v) or v < 0):
                raise _Invalid(f"{f}: must be a non-negative integer")
        guest = body.get("customer_is_guest")
        if guest is not None and not isinstance(guest, bool):
            raise _Invalid("customer_is_guest: must be true or false")
        for f in ORDER_TEXT:
            v = body.get(f)
            if v is not None and not isinstance(v, str):
                raise _Invalid(f"{f}: must be a string")

    def _note_unknown(self, endpoint: str, body: Mapping[str, Any], known: frozenset[str],
                      line_field: str, line_known: frozenset[str]) -> None:
        for k in body:
            if k not in known:
                self.unknown_keys[f"{endpoint}.{k}"] += 1
        lines = body.get(line_field)
        if isinstance(lines, list):
            for line in lines:
                if isinstance(line, dict):
                    for k in line:
                        if k not in line_known:
                            self.unknown_keys[f"{endpoint}.{line_field}[].{k}"] += 1

    def _update_order(self, body: dict[str, Any]) -> httpx.Response:
        self._validate_order(body)
        ref = str(body["api_reference_id"])
        given_id = body.get("id")
        if given_id is not None:
            if given_id not in self.orders:
                raise _Invalid(f"id: order {given_id!r} not found", 404)
            oid: str | None = given_id
            other = self.orders_by_ref.get(ref)
            if other is not None and other != oid:
                raise _Invalid(f"api_reference_id: already used by order {other}")
        else:
            oid = self.orders_by_ref.get(ref)
        self._note_unknown("UpdateOrder", body, ORDER_KEYS, "order_lines", LINE_KEYS)
        now = self._now_text()
        contact_id = body.get("contact_id")
        if contact_id is None:
            email = str(body["customer_email"]).strip().lower()
            contact_id = self.contacts.get(email)
            if contact_id is None:
                contact_id = self.contacts[email] = self._next_contact
                self._next_contact += 1
        stored = jsoncodec.loads(jsoncodec.dumps_compact(body))  # a deep, JSON-clean copy
        if oid is None:
            oid = self._new_id()
            created, message, action = now, "Order created", "created"
            self.order_creations[ref] += 1
        else:
            previous = self.orders[oid]
            created, message, action = previous["create_date"], "Order updated", "updated"
            old_ref = previous.get("api_reference_id")
            if old_ref != ref:
                self.orders_by_ref.pop(str(old_ref), None)
        stored.update(id=oid, contact_id=contact_id, create_date=created, update_date=now)
        self.orders[oid] = stored
        self.orders_by_ref[ref] = oid
        self.write_log.append(("UpdateOrder", ref, action))
        return json_response(200, {"id": oid, "status": 200, "message": message})

    # ------------------------------------------------------------------ CreateOrderEvent

    def _create_event(self, body: dict[str, Any]) -> httpx.Response:
        _check_ref(body, "event_reference")
        order_id = body.get("order_id")
        if order_id is None or order_id == "":
            raise _Invalid("order_id: is required")
        if not isinstance(order_id, str):
            raise _Invalid("order_id: must be the WiredPlus order id (a string)")
        etype = body.get("event_type")
        if etype is None or etype == "":
            raise _Invalid("event_type: is required")
        if etype not in EVENT_TYPES:
            raise _Invalid(
                f"event_type: {etype!r} is not one of " + " | ".join(sorted(EVENT_TYPES))
            )
        if body.get("event_date") in (None, ""):
            raise _Invalid("event_date: is required")
        _check_date(body.get("event_date"), "event_date", _EVENT_DATE, "%Y-%m-%dT%H:%M:%SZ",
                    "YYYY-MM-DDTHH:MM:SSZ")
        msg = body.get("message")
        if msg is not None and not isinstance(msg, str):
            raise _Invalid("message: must be a string")
        self._check_custom_fields(body.get("custom_fields"))
        given_id = body.get("id")
        if given_id is not None and not isinstance(given_id, str):
            raise _Invalid("id: must be a string")
        lines = _check_lines(
            body.get("order_event_lines"), "order_event_lines", EVENT_LINE_MONEY, required=False
        )
        order = self.orders.get(order_id)
        if order is None:
            raise _Invalid(f"order_id: order {order_id!r} not found", 404)
        if lines:
            known = {str(ln.get("order_line_id")) for ln in order.get("order_lines", [])}
            for i, line in enumerate(lines):
                if str(line["order_line_id"]) not in known:
                    raise _Invalid(
                        f"order_event_lines[{i}].order_line_id: {line['order_line_id']!r} is "
                        f"not a line of order {order_id}"
                    )
        ref = str(body["event_reference"])
        if given_id is not None:
            if given_id not in self.events:
                raise _Invalid(f"id: event {given_id!r} not found", 404)
            eid: str | None = given_id
            other = self.events_by_ref.get(ref)
            if other is not None and other != eid:
                raise _Invalid(f"event_reference: already used by event {other}")
        else:
            eid = self.events_by_ref.get(ref)
        self._note_unknown("CreateOrderEvent", body, EVENT_KEYS, "order_event_lines",
                           EVENT_LINE_KEYS)
        now = self._now_text()
        stored = jsoncodec.loads(jsoncodec.dumps_compact(body))
        if eid is None:
            eid = self._new_id()
            created, message, action = now, "Event created", "created"
            self.event_creations[ref] += 1
        else:
            previous = self.events[eid]
            created, message, action = previous["date_created"], "Event updated", "updated"
            old_ref = previous.get("event_reference")
            if old_ref != ref:
                self.events_by_ref.pop(str(old_ref), None)
        stored.update(id=eid, date_created=created, date_updated=now)
        self.events[eid] = stored
        self.events_by_ref[ref] = eid
        self.write_log.append(("CreateOrderEvent", ref, action))
        return json_response(200, {"id": eid, "status": 200, "message": message})

    # ------------------------------------------------------------------ BulkOrderUpdate

    def _bulk_order_update(self, body: dict[str, Any], reset: int) -> tuple[httpx.Response, bool]:
        """``POST BulkOrderUpdate``: ``{"orders": [UpdateOrder body, ...]}`` (module docstring).

        Called with the lock held, after the request was charged one unit of the hourly budget.
        Returns (response, whether any record was stored).
        """
        if not self.bulk_enabled:
            status = self.bulk_refusal_status
            return _error(status, "BulkOrderUpdate: this feature is not enabled for your "
                                  "account"), False
        records = body.get("orders")
        if records is None:
            raise _Invalid("orders: is required (an array of orders)")
        if not isinstance(records, list):
            raise _Invalid("orders: must be an array of orders")
        if not records:
            raise _Invalid("orders: must contain at least one order")
        if len(records) > self.max_update_rows:
            raise _Invalid(
                f"orders: at most {self.max_update_rows} orders per request (max_update_rows), "
                f"got {len(records)}"
            )
        if self.bulk_cost == "record" and len(records) > 1:
            extra = len(records) - 1
            if self.enforce_rate_limit and self._used + extra > self.hourly_limit:
                self._used -= 1  # refused whole: nothing is charged
                wait = whole_seconds(reset - self.clock.now().timestamp())
                resp = _error(
                    429,
                    f"ratelimit: {len(records)} records need {len(records)} of the hourly "
                    f"limit of {self.hourly_limit} requests; "
                    f"{max(0, self.hourly_limit - self._used)} left",
                )
                resp.headers["Retry-After"] = str(wait)
                return resp, False
            self._used += extra
        results: list[dict[str, Any]] = []
        failed = 0
        for i, record in enumerate(records):
            result = self._bulk_record(record, i)
            if result["status"] != 200:
                failed += 1
                self.rejections.append(("BulkOrderUpdate", f"orders[{i}]: {result['error']}"))
            results.append(result)
        stored = len(records) - failed
        self.bulk_requests.append((len(records), failed))
        message = f"{len(records)} orders processed: {stored} stored, {failed} failed"
        return json_response(200, {"status": 200, "message": message, "results": results}), \
            stored > 0

    def _bulk_record(self, record: Any, index: int) -> dict[str, Any]:
        """One record of a bulk request: UpdateOrder's rules, its answer as a result entry."""
        if not isinstance(record, dict):
            return {"status": 400, "error": f"orders[{index}]: must be an object"}
        # order_reference is optional on BulkOrderUpdate (notes A.4): validate as UpdateOrder
        # with a stand-in, store without it.
        missing_reference = record.get("order_reference") in (None, "")
        body = dict(record, order_reference="-") if missing_reference else record
        try:
            response = self._update_order(body)
        except _Invalid as exc:
            return {"status": exc.status, "error": exc.error}
        answer: dict[str, Any] = json.loads(response.content)
        if missing_reference:
            stored = self.orders[str(answer["id"])]
            if "order_reference" in record:
                stored["order_reference"] = record["order_reference"]
            else:
                stored.pop("order_reference", None)
        return answer
