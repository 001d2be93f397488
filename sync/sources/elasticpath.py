"""HTTP client for the Elastic Path Commerce Cloud orders API, and EP as a ``Source``.

:class:`ElasticPathClient` returns raw JSON; :mod:`sync.domain.parse_elasticpath` turns order
*bundles* (``{"data": order, "included": {"items": [...]}}``) into domain objects.
:class:`ElasticPathSource` is the :class:`~sync.sources.base.Source` the engine uses.

Contract of every public client method:

* **auth** — a client-credentials token from ``POST /oauth/access_token`` (form-encoded
  ``grant_type=client_credentials&client_id=…&client_secret=…``); both documented response
  shapes are read (fields at the top level, or wrapped in ``data``). Every other call sends
  ``Authorization: Bearer <token>``. The token is renewed ``token_margin`` seconds (default
  300; at most half the token's life) before it expires (the earlier of ``expires_in`` and
  the epoch ``expires``, else one hour), and again when a call answers 401 (at most
  :data:`MAX_TOKEN_RENEWALS` times in a row); the next 401 is a FatalError naming
  ``ELASTICPATH_CLIENT_ID/ELASTICPATH_CLIENT_SECRET``.
  A rejected token request (400, 401, 403, 422) is fatal too.
* **rate** — every request runs through the one request pipeline (:mod:`sync.apiclient`) and
  first waits on the limiter (:data:`ELASTICPATH_BUCKET` by default: never more than 25
  requests in any second, EP's development-store limit). Every transient outcome (5xx,
  timeouts, resets, truncated bodies, 429) is retried in place — ``Retry-After`` when sent
  (EP documents no such header), else full-jitter backoff from 1 s capped at 30 s — at most
  ``max_retries`` times; then :class:`~sync.errors.RetryableError`
  (:class:`~sync.errors.Throttled` for a 429) carrying ``retry_after``.
* **outcomes** — every response goes through :func:`sync.outcomes.classify_elasticpath`:
  the one table in :mod:`sync.outcomes`, its *read* column for GETs and the token, its
  *write* column for the PUT. Reads: 400/403/405/415/422/other 4xx and 3xx fatal, 404 not found,
  408/409/425/429/5xx retry. Writes (PUT): 400/404/422/other 4xx skip. JSON:API error
  bodies (``{"errors": [{status, title, detail, …}]}``, also a single object, ``status``
  as int or string) become the message.
* a 2xx body that is not the JSON object expected (e.g. a truncated page) raises
  RetryableError. Messages never contain the client secret, the client id or a token.

One debug log line per HTTP call (``endpoint``, ``status``, ``duration_ms``, ``outcome``).

Paging (:meth:`ElasticPathClient.iter_orders_updated`) is a moving filter window, not a
growing offset: each page asks ``filter=ge(updated_at,"<T>")[:le(updated_at,"<end>")]``,
``sort=updated_at``, ``page[limit]=100``, ``include=items``; after a full page ``T`` moves to
the page's newest ``updated_at`` (floored to the millisecond) and the offset goes back to 0.
Rows at exactly ``T`` are read again and dropped when their ``(id, updated_at)`` was already
yielded. The offset only grows while a whole page shares one millisecond, and never past EP's
10,000 cap (a FatalError then: more than 10,000 orders share one ``updated_at``). Unlike
offset paging this cannot skip an order when another one is updated mid-scan (it only moves
later, and is read again with its new state).
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import structlog

from sync.apiclient import ApiProfile, PooledApiClient
from sync.clock import Clock, utc
from sync.domain.models import SourceOrder, SourceStatus
from sync.domain.parse_elasticpath import (
    SOURCE,
    all_statuses,
    bundle_order_id,
    format_timestamp,
    parse_elasticpath_order,
    parse_timestamp,
)
from sync.domain.retry import RequestRetry
from sync.domain.windows import Window
from sync.errors import FatalError, RetryableError, SkippableError
from sync.httpclient import DEFAULT_TIMEOUT, USER_AGENT, Exchange, Redactor
from sync.logs import Log
from sync.outcomes import (
    EP_BASE_URL_VAR,
    EP_CREDENTIALS_VARS,
    EP_NAME,
    Outcome,
    classify_elasticpath,
    int_or_digits,
)
from sync.ratelimit import BucketSpec, LeakyBucket, Limiter
from sync.sources.base import WindowField

#: At most 5 + 20·t requests in any t seconds: ≤ 25 in any second (EP development store).
ELASTICPATH_BUCKET: Final = BucketSpec(capacity=5.0, leak_per_second=20.0)
MAX_PAGE_LIMIT: Final = 100
OFFSET_CAP: Final = 10_000
EXTERNAL_REF_MAX: Final = 64
DEFAULT_TOKEN_LIFETIME: Final = 3600.0
#: A 401 gets a new token and the request again, this many times in a row; the next 401 is
#: fatal. More than one: a token can be revoked or expire while its replacement is being
#: fetched (seen in the chaos run), which must not stop the poller.
MAX_TOKEN_RENEWALS: Final = 2
DEFAULT_TOKEN_MARGIN: Final = 300.0
#: In-place retries of one request (5xx, timeouts, resets, truncated bodies, 429).
MAX_RETRIES: Final = 6
RETRY_BUDGET_S: Final = 300.0

CREDENTIALS_VARS: Final = EP_CREDENTIALS_VARS
BASE_URL_VAR: Final = EP_BASE_URL_VAR
NAME: Final = EP_NAME

# Endpoint labels (keys of ``ElasticPathClient.calls``).
EP_TOKEN: Final = "oauth/access_token"
EP_ORDERS: Final = "orders"
EP_ORDER: Final = "orders/{id}"
EP_ORDER_ITEMS: Final = "orders/{id}/items"

_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TS_FIELDS: Final = frozenset({"created_at", "updated_at"})
_TS_OPS: Final = frozenset({"eq", "gt", "ge", "lt", "le"})


# ====================================================================== helpers


def ts_filter(op: str, field: str, when: datetime) -> str:
    """``ge(updated_at,"2026-01-15T12:00:00.000Z")``: one EP filter on a timestamp.

    Lower bounds (``ge``, ``gt``, ``eq``) are floored to the millisecond, upper bounds
    (``le``, ``lt``) rounded up, so the filter never excludes the instant asked for.
    """
    if op not in _TS_OPS or field not in _TS_FIELDS:
        raise ValueError(f"unsupported timestamp filter {op}({field}, …)")
    when = utc(when)
    if op in ("le", "lt") and when.microsecond % 1000:
        when += timedelta(microseconds=1000 - when.microsecond % 1000)
    return f'{op}({field},"{format_timestamp(when)}")'


def _order_id(value: object) -> str:
    if not isinstance(value, str) or not _ORDER_ID.match(value):
        raise ValueError(f"not an Elastic Path order id: {str(value)[:70]!r}")
    return value


def _rel_item_ids(order: Mapping[str, Any]) -> list[str]:
    rel = order.get("relationships")
    items = rel.get("items") if isinstance(rel, Mapping) else None
    data = items.get("data") if isinstance(items, Mapping) else None
    if not isinstance(data, list):
        return []
    return [
        ref["id"] for ref in data if isinstance(ref, Mapping) and isinstance(ref.get("id"), str)
    ]


def _included_by_id(body: Mapping[str, Any]) -> dict[str, Any]:
    included = body.get("included")
    items = included.get("items") if isinstance(included, Mapping) else included
    out: dict[str, Any] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                out.setdefault(item["id"], item)
    return out


def split_page(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A list response → one bundle per order, each with only its own included items.

    Items an order lists but the page did not include are left out (the parser then
    refuses the order); non-object rows become ``{"data": row}`` so the parser reports them.
    """
    data = body.get("data")
    rows = data if isinstance(data, list) else []
    by_id = _included_by_id(body)
    out: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, Mapping):
            out.append({"data": row})
            continue
        items = [by_id[i] for i in dict.fromkeys(_rel_item_ids(row)) if i in by_id]
        out.append({"data": row, "included": {"items": items}})
    return out


def _bundle_updated(bundle: Mapping[str, Any]) -> datetime | None:
    data = bundle.get("data")
    meta = data.get("meta") if isinstance(data, Mapping) else None
    stamps = meta.get("timestamps") if isinstance(meta, Mapping) else None
    if not isinstance(stamps, Mapping):
        return None
    try:
        return parse_timestamp(stamps.get("updated_at"))
    except SkippableError:
        return None


def _floor_ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token, the moment it stops working and the moment to renew it (aware UTC)."""

    value: str
    expires_at: datetime
    renew_at: datetime


def parse_token_response(
    body: Any, now: datetime, margin: timedelta = timedelta(seconds=DEFAULT_TOKEN_MARGIN)
) -> Token:
    """Read both documented shapes: ``{access_token, expires_in, expires, …}`` at the top
    level or inside ``data``. Expiry: the earlier of ``now + expires_in`` and ``expires``
    (epoch seconds, milliseconds tolerated; ignored when not in the future, i.e. clock skew),
    one hour when neither is usable. ``renew_at`` is ``margin`` before expiry, but never
    earlier than halfway through the token's life (a short-lived token is still used).

    Raises RetryableError when there is no usable ``access_token``.
    """
    doc = body.get("data") if isinstance(body, Mapping) and "access_token" not in body else body
    if not isinstance(doc, Mapping):
        raise RetryableError("Elastic Path token response is not an object", endpoint=EP_TOKEN)
    value = doc.get("access_token")
    if not isinstance(value, str) or not value.strip() or len(value) > 4096:
        raise RetryableError("Elastic Path token response has no access_token", endpoint=EP_TOKEN)
    candidates: list[datetime] = []
    expires_in = doc.get("expires_in")
    if (
        isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and 0 < expires_in < 10**7
    ):
        candidates.append(now + timedelta(seconds=float(expires_in)))
    expires = doc.get("expires")
    if isinstance(expires, int | float) and not isinstance(expires, bool) and expires > 0:
        seconds = expires / 1000 if expires > 10**11 else expires
        with contextlib.suppress(OverflowError, OSError, ValueError):
            at = datetime.fromtimestamp(seconds, tz=UTC)
            if at > now:
                candidates.append(at)
    if not candidates:
        candidates.append(now + timedelta(seconds=DEFAULT_TOKEN_LIFETIME))
    expires_at = min(candidates)
    renew_at = expires_at - min(margin, (expires_at - now) / 2)
    return Token(value.strip(), expires_at, renew_at)


# ====================================================================== client


class ElasticPathClient(PooledApiClient):
    """Reads (and tags) orders of one EP store; see the module docstring for the contract.

    ``base_url`` is the API host, e.g. ``https://useast.api.elasticpath.com`` (a trailing
    ``/v2`` is tolerated and dropped); paths are ``oauth/access_token`` and ``v2/…``.
    ``limiter`` defaults to a fresh :class:`~sync.ratelimit.LeakyBucket` with
    :data:`ELASTICPATH_BUCKET`; pass a shared one when several clients use the same store.
    ``rng`` drives the backoff jitter. A ``Retry-After`` longer than ``max_retry_after``
    seconds is not waited out in-process. ``offset_cap`` is the largest ``page[offset]`` ever
    sent (EP: 10,000).

    Attributes: ``calls`` counts HTTP requests by endpoint label; ``throttled`` counts 429
    (and 503 + Retry-After) answers; ``token_requests`` counts token requests.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Clock,
        transport: httpx.BaseTransport | None = None,
        limiter: Limiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = MAX_RETRIES,
        token_margin: float = DEFAULT_TOKEN_MARGIN,
        logger: Log | None = None,
        rng: random.Random | None = None,
        max_retry_after: float = 300.0,
        offset_cap: int = OFFSET_CAP,
    ) -> None:
        if token_margin < 0:
            raise ValueError("token_margin must be >= 0")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        base = base_url.strip().rstrip("/")
        if base.endswith("/v2"):
            base = base[:-3]
        if not base:
            raise ValueError("base_url is empty")
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_margin = timedelta(seconds=token_margin)
        self._offset_cap = offset_cap
        self._init_pipeline(
            ApiProfile(
                "elasticpath", NAME,
                RequestRetry(max_retries=max_retries, budget=RETRY_BUDGET_S),
                max_retry_after=max_retry_after,
            ),
            clock=clock,
            limiter=(
                limiter if limiter is not None
                else LeakyBucket.from_spec(ELASTICPATH_BUCKET, clock)
            ),
            http=httpx.Client(
                base_url=base + "/",
                transport=transport,
                timeout=timeout,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                follow_redirects=False,
            ),
            log=(
                logger if logger is not None
                else structlog.get_logger("ordersync.elasticpath")
            ),
            rng=rng,
            redactor=Redactor(client_id, client_secret, mask_user=True),
        )
        self._token: Token | None = None
        self._token_lock = threading.Lock()
        self.token_requests = 0

    # -- core --------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        text = self._redactor(text)
        token = self._token
        if token is not None and len(token.value) >= 4:
            text = text.replace(token.value, "***")
        return text

    def _exchange(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        bearer: bool,
        write: bool = False,
        allow_not_found: bool = False,
        base_url_hint: str = BASE_URL_VAR,
        **kwargs: Any,
    ) -> Any:
        """One logical request through the pipeline, with the bearer token and its renewals
        on a 401 (at most :data:`MAX_TOKEN_RENEWALS` in a row); the decoded JSON."""
        renewals = 0
        sent: list[Token] = []

        def auth_headers() -> dict[str, str]:
            if not bearer:
                return {}
            token = self._ensure_token()
            sent.append(token)
            return {"Authorization": f"Bearer {token.value}"}

        def renew_on_401(ex: Exchange) -> bool:
            nonlocal renewals
            if not (bearer and ex.status == 401 and renewals < MAX_TOKEN_RENEWALS):
                return False
            self._log.debug("elasticpath_call", endpoint=endpoint, status=401,
                            duration_ms=round(ex.duration_ms, 1), outcome="renew_token",
                            attempt=renewals)
            self._invalidate(sent[-1])
            renewals += 1
            return True

        def classify_ep(ex: Exchange) -> Outcome:
            return classify_elasticpath(ex.status, ex.exc, ex.text, ex.retry_after,
                                        write=write, token=not bearer, now=self._clock.now())

        return self._request_json(
            endpoint, method, path, classify=classify_ep, base_url_hint=base_url_hint,
            allow_not_found=allow_not_found, fresh_headers=auth_headers, resend=renew_on_401,
            **kwargs,
        )

    def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        write: bool = False,
        allow_not_found: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """An authenticated call; the decoded JSON object, or None for an allowed 404."""
        body: dict[str, Any] | None = self._exchange(
            endpoint, method, path, bearer=True, write=write, allow_not_found=allow_not_found,
            base_url_hint=f"{BASE_URL_VAR} (the API host, e.g. "
            "https://useast.api.elasticpath.com)",
            **kwargs,
        )
        return body

    # -- token -------------------------------------------------------------------------------
    def _ensure_token(self) -> Token:
        with self._token_lock:
            token = self._token
            if token is None or self._clock.now() >= token.renew_at:
                token = self._token = self._fetch_token()
            return token

    def _invalidate(self, token: Token) -> None:
        with self._token_lock:
            if self._token is token:
                self._token = None

    def _fetch_token(self) -> Token:
        self.token_requests += 1
        body = self._exchange(
            EP_TOKEN,
            "POST",
            "oauth/access_token",
            bearer=False,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        return parse_token_response(body, self._clock.now(), self._token_margin)

    def access_token(self) -> str:
        """The current bearer token, fetching or renewing it when needed."""
        return self._ensure_token().value

    # -- orders ------------------------------------------------------------------------------
    def list_orders(
        self,
        *,
        filters: Sequence[str] = (),
        sort: str | None = "updated_at",
        limit: int = MAX_PAGE_LIMIT,
        offset: int = 0,
        include_items: bool = True,
    ) -> dict[str, Any]:
        """One page of ``GET /v2/orders``: the whole document (``data``, ``included``,
        ``meta``, ``links``). ``filters`` are joined with ``:`` (AND). ``limit`` is 1–100 and
        ``offset`` 0–``offset_cap`` (ValueError otherwise). A body without a ``data`` list
        raises RetryableError.
        """
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_LIMIT}, got {limit}")
        if not 0 <= offset <= self._offset_cap:
            raise ValueError(f"offset must be between 0 and {self._offset_cap}, got {offset}")
        params: dict[str, str | int] = {"page[limit]": limit, "page[offset]": offset}
        if filters:
            params["filter"] = ":".join(filters)
        if sort:
            params["sort"] = sort
        if include_items:
            params["include"] = "items"
        body = self._call(EP_ORDERS, "GET", "v2/orders", params=params)
        assert body is not None
        if not isinstance(body.get("data"), list):
            raise RetryableError(
                f"{NAME} sent an order list without a data array", endpoint=EP_ORDERS
            )
        return body

    def iter_orders_updated(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        page_limit: int = MAX_PAGE_LIMIT,
    ) -> Iterator[list[dict[str, Any]]]:
        """Bundles of orders with ``since ≤ updated_at ≤ until``, oldest update first.

        Moving filter window (module docstring). Each yielded list is one page's orders not
        yielded before in the same state (never empty). An order updated during the scan can
        come again with its new state; the caller de-duplicates by id. Orders whose listed
        items the page did not include get them from ``GET /v2/orders/:id/items``.
        """
        lower = _floor_ms(utc(since))
        upper = utc(until) if until is not None else None
        offset = 0
        seen: dict[str, datetime] = {}
        while True:
            if offset > self._offset_cap:
                raise FatalError(
                    f"more than {self._offset_cap} {NAME} orders share updated_at "
                    f"{format_timestamp(lower)}; cannot page past the offset cap",
                    endpoint=EP_ORDERS,
                )
            filters = [ts_filter("ge", "updated_at", lower)]
            if upper is not None:
                filters.append(ts_filter("le", "updated_at", upper))
            body = self.list_orders(filters=filters, limit=page_limit, offset=offset)
            rows = body["data"]
            if not rows:
                return
            fresh: list[dict[str, Any]] = []
            newest: datetime | None = None
            for bundle in split_page(body):
                oid = bundle_order_id(bundle)
                ts = _bundle_updated(bundle)
                if ts is not None and (newest is None or ts > newest):
                    newest = ts
                if oid is not None and ts is not None:
                    if seen.get(oid) == ts:
                        continue
                    seen[oid] = ts
                fresh.append(bundle)
            if fresh:
                yield self._complete_items(fresh)
            if len(rows) < page_limit:
                return
            moved = _floor_ms(newest) if newest is not None else lower
            if moved > lower:
                lower, offset = moved, 0
                seen = {k: v for k, v in seen.items() if v >= lower}
            else:
                offset += len(rows)

    def _complete_items(self, bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fetch the items of any order whose listed items the page did not include."""
        out = []
        for bundle in bundles:
            data = bundle.get("data")
            if isinstance(data, Mapping):
                wanted = _rel_item_ids(data)
                included = bundle.get("included")
                items = included.get("items", []) if isinstance(included, Mapping) else []
                have = {i.get("id") for i in items if isinstance(i, Mapping)}
                oid = bundle_order_id(bundle)
                if oid and _ORDER_ID.match(oid) and any(w not in have for w in wanted):
                    fetched = self.get_order_items(oid)
                    if fetched is not None:
                        bundle = {"data": data, "included": {"items": fetched}}
            out.append(bundle)
        return out

    def get_order(self, order_id: str, *, include_items: bool = True) -> dict[str, Any] | None:
        """``GET /v2/orders/:id`` as a bundle (``data`` + ``included``), None on 404.

        ValueError for an id that is not 1–64 of ``[A-Za-z0-9_-]``.
        """
        oid = _order_id(order_id)
        params = {"include": "items"} if include_items else {}
        body = self._call(
            EP_ORDER, "GET", f"v2/orders/{oid}", params=params, allow_not_found=True
        )
        if body is None:
            return None
        if not isinstance(body.get("data"), Mapping):
            raise RetryableError(f"{NAME} sent an order without data", endpoint=EP_ORDER)
        return body

    def get_order_items(self, order_id: str) -> list[Any] | None:
        """``GET /v2/orders/:id/items`` → the ``data`` array; None on 404."""
        oid = _order_id(order_id)
        body = self._call(
            EP_ORDER_ITEMS, "GET", f"v2/orders/{oid}/items", allow_not_found=True
        )
        if body is None:
            return None
        data = body.get("data")
        if not isinstance(data, list):
            raise RetryableError(f"{NAME} sent order items without data", endpoint=EP_ORDER_ITEMS)
        return data

    def get_orders(self, order_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Bundles of the given orders, one call each (EP has no id-list filter); missing
        (404) orders are absent; duplicates are asked for once. ValueError on a bad id."""
        out: list[dict[str, Any]] = []
        for oid in dict.fromkeys(_order_id(i) for i in order_ids):
            bundle = self.get_order(oid)
            if bundle is not None:
                out.append(bundle)
        return out

    def count_orders(
        self, *, created_from: datetime | None = None, created_to: datetime | None = None
    ) -> int:
        """Orders created in ``[created_from, created_to]``: ``meta.results.total`` of a
        one-row page. RetryableError when the total is missing or not a whole number."""
        filters = []
        if created_from is not None:
            filters.append(ts_filter("ge", "created_at", created_from))
        if created_to is not None:
            filters.append(ts_filter("le", "created_at", created_to))
        body = self.list_orders(filters=filters, sort=None, limit=1, include_items=False)
        meta = body.get("meta")
        results = meta.get("results") if isinstance(meta, Mapping) else None
        total = results.get("total") if isinstance(results, Mapping) else None
        value = int_or_digits(total)
        if value is None and isinstance(total, float) and total.is_integer():
            value = int(total)
        if value is None or value < 0:
            raise RetryableError(f"{NAME} sent no usable meta.results.total", endpoint=EP_ORDERS)
        return value

    def update_external_ref(self, order_id: str, value: str) -> dict[str, Any]:
        """``PUT /v2/orders/:id`` with ``{"data": {"type": "order", "external_ref": value}}``.

        ``""`` clears it. ValueError when ``value`` is not a string or longer than 64
        characters (checked before any call). Returns the updated order (``data``). A 400,
        404 or 422 raises SkippableError; 401/403 FatalError; 429/5xx RetryableError.
        """
        oid = _order_id(order_id)
        if not isinstance(value, str):
            raise ValueError("external_ref must be a string")
        if len(value) > EXTERNAL_REF_MAX:
            raise ValueError(
                f"external_ref is {len(value)} characters; Elastic Path allows "
                f"{EXTERNAL_REF_MAX}"
            )
        body = self._call(
            EP_ORDER,
            "PUT",
            f"v2/orders/{oid}",
            write=True,
            json={"data": {"type": "order", "external_ref": value}},
        )
        assert body is not None
        data = body.get("data")
        if not isinstance(data, dict):
            raise RetryableError(f"{NAME} sent an update answer without data", endpoint=EP_ORDER)
        return data


# ====================================================================== source


class ElasticPathSource:
    """Elastic Path as a :class:`~sync.sources.base.Source`.

    **The window is an updated_at window.** EP can filter on ``updated_at``, so
    :meth:`new_order_pages` returns every order *changed* (created, paid, fulfilled,
    cancelled, refunded, re-addressed…) in ``[window.start, window.end]``, oldest change
    first — not only orders *created* then. A status change is therefore seen by the normal
    scan and the per-id refresh is only a safety net. Raw records are bundles
    (``{"data": order, "included": {"items": [...]}}``).
    """

    name = SOURCE

    window_field: WindowField = "updated"  # the poller's watermark follows updated_at
    can_relist = False  # re-reads are the updated_at scan's job (see the class docstring)

    def __init__(self, client: ElasticPathClient, *, page_limit: int = MAX_PAGE_LIMIT) -> None:
        self.client = client
        self.page_limit = page_limit

    def statuses(self) -> list[SourceStatus]:
        """The fixed synthetic set (every documented status × payment × shipping); no call."""
        return all_statuses()

    def new_order_pages(self, window: Window) -> Iterator[list[Any]]:
        """Pages of orders *updated* within ``window`` (see the class docstring)."""
        yield from self.client.iter_orders_updated(
            window.start, window.end, page_limit=self.page_limit
        )

    def resumable_pages(
        self, window: Window, position: str | None = None
    ) -> Iterator[tuple[list[Any], None]]:
        """:meth:`new_order_pages`, each page with no position: an Elastic Path scan cannot
        resume part-way (``position`` is ignored); a scan that stopped reads its window
        again, which only re-records what did not change."""
        for page in self.new_order_pages(window):
            yield page, None

    def fetch_by_ids(self, order_ids: Sequence[str]) -> list[Any]:
        """Current bundles of the given orders (one call each); ids that cannot be EP ids
        and deleted orders are absent."""
        ids = [i for i in order_ids if isinstance(i, str) and _ORDER_ID.match(i)]
        return list(self.client.get_orders(ids)) if ids else []

    def exists(self, order_id: str) -> bool:
        """Always True, without a call: nothing here confirms a deletion, so an order a
        by-id read left out is only noted missing (a deletion comes from the scan or the
        ``order.deleted`` webhook)."""
        return True

    def list_created(self, start: datetime, end: datetime, count: int) -> list[Any]:
        """Not offered (:attr:`can_relist` is False): raises NotImplementedError."""
        raise NotImplementedError("Elastic Path does not re-list orders by created date")

    def call_count(self) -> int:
        """Every HTTP request the client has made (``ElasticPathClient.calls``)."""
        return sum(self.client.calls.values())

    def check_credentials(self) -> bool:
        """Fetch an access token (client credentials accepted, or FatalError): True."""
        self.client.access_token()
        return True

    def count_created(self, window: Window) -> int:
        """Orders *created* in the window (``meta.results.total`` of a created_at filter)."""
        return self.client.count_orders(created_from=window.start, created_to=window.end)

    def raw_id(self, raw: Any) -> str | None:
        return bundle_order_id(raw)

    def parse(self, raw: Any) -> SourceOrder:
        return parse_elasticpath_order(raw)

    def close(self) -> None:
        self.client.close()

