"""Plumbing shared by the ShopWired and WiredPlus HTTP clients.

Nothing here decides what an outcome means (that is :mod:`sync.outcomes`); this module builds
the ``httpx.Client``, times one exchange without letting an exception escape, and keeps
credentials out of every message.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from sync.clock import Clock

USER_AGENT: Final = "ordersync/0.1"
DEFAULT_TIMEOUT: Final = httpx.Timeout(30, connect=10)


def normalise_base_url(base_url: str) -> str:
    """``base_url`` with exactly one trailing slash, so relative paths keep its last segment.

    ``https://api.ecommerceapi.uk/v1`` + ``orders`` → ``https://api.ecommerceapi.uk/v1/orders``.
    """
    base = base_url.strip()
    if not base:
        raise ValueError("base_url is empty")
    return base.rstrip("/") + "/"


def build_client(
    base_url: str,
    auth: tuple[str, str],
    *,
    transport: httpx.BaseTransport | None,
    timeout: httpx.Timeout,
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """One long-lived client: Basic auth, JSON ``Accept``, our User-Agent, no redirects.

    The Basic ``Authorization`` header is computed once and sent as a default header (the
    same bytes httpx's ``auth=`` would send, without running its auth flow per request)."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
    all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT,
                   "Authorization": f"Basic {token}"}
    all_headers.update(headers or {})
    return httpx.Client(
        base_url=normalise_base_url(base_url),
        transport=transport,
        timeout=timeout,
        headers=all_headers,
        follow_redirects=False,
    )


class Redactor:
    """Replaces credentials (and their Basic-auth encoding) in text with ``***``.

    ``mask_user`` also masks the Basic-auth user name: right for ShopWired, whose user is an
    API key; WiredPlus's user is only the key's *name*, and masking a short common word would
    mangle messages.
    """

    def __init__(self, user: str, secret: str, *, mask_user: bool) -> None:
        token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        candidates: list[str] = [secret, token]
        if mask_user:
            candidates.append(user)
        # Longest first, so a secret containing the user name is removed whole.
        self._needles = sorted({c for c in candidates if len(c) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, "***")
        return text


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request's result: a response or the exception raised instead, and its duration."""

    response: httpx.Response | None
    exc: Exception | None
    duration_ms: float

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None

    @property
    def text(self) -> str:
        """The response text; empty when there is none or it cannot be decoded."""
        if self.response is None:
            return ""
        try:
            return self.response.text
        except (UnicodeDecodeError, LookupError):
            return ""

    @property
    def retry_after(self) -> str | None:
        return self.response.headers.get("Retry-After") if self.response is not None else None


def send(client: httpx.Client, clock: Clock, method: str, path: str, **kwargs: Any) -> Exchange:
    """Send one request; transport failures are returned, not raised.

    The response body is read fully before returning. ``kwargs`` go to ``client.request``.
    """
    start = clock.monotonic()
    try:
        response = client.request(method, path, **kwargs)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return Exchange(None, exc, (clock.monotonic() - start) * 1000.0)
    return Exchange(response, None, (clock.monotonic() - start) * 1000.0)
