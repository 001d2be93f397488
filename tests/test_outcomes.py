"""The outcome table: every status / exception / body maps to what the caller must do."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from sync import jsoncodec, outcomes
from sync.errors import FatalError, RetryableError, SkippableError
from sync.outcomes import (
    MAX_REASON_TEXT,
    Api,
    Outcome,
    classify,
    parse_retry_after,
    raise_for_outcome,
    truncate,
)

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
REQ = httpx.Request("GET", "https://api.ecommerceapi.uk/v1/orders")


def sw(status: int, body: str = "", retry_after: str | None = None, **kw: object) -> Outcome:
    return classify("shopwired", status, None, body, retry_after, now=NOW, **kw)  # type: ignore[arg-type]


def wp(status: int, body: str = "", retry_after: str | None = None, **kw: object) -> Outcome:
    return classify("wiredplus", status, None, body, retry_after, now=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "shopwired", "wiredplus"),
    [
        (200, "ok", "ok"),
        (201, "ok", "ok"),
        (204, "ok", "ok"),
        (301, "fatal", "fatal"),
        (400, "fatal", "skip"),
        (401, "fatal", "fatal"),
        (403, "fatal", "fatal"),
        (404, "not_found", "skip"),
        (405, "fatal", "fatal"),
        (408, "retry", "retry"),
        (409, "retry", "retry"),
        (410, "fatal", "skip"),
        (413, "fatal", "skip"),
        (415, "fatal", "fatal"),
        (422, "fatal", "skip"),
        (425, "retry", "retry"),
        (429, "retry", "retry"),
        (500, "retry", "retry"),
        (502, "retry", "retry"),
        (503, "retry", "retry"),
        (504, "retry", "retry"),
        (599, "retry", "retry"),
        (600, "retry", "retry"),
    ],
)
def test_status_table(status: int, shopwired: str, wiredplus: str) -> None:
    body = "{}" if 200 <= status < 300 else "nope"
    assert sw(status, body).kind == shopwired
    assert wp(status, body).kind == wiredplus
    assert sw(status, body).status == status


@pytest.mark.parametrize(
    ("api", "names"),
    [
        ("shopwired", "SHOPWIRED_API_KEY/SHOPWIRED_API_SECRET"),
        ("wiredplus", "WIREDPLUS_API_USER/WIREDPLUS_API_KEY"),
    ],
)
@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_name_the_credentials_and_drop_the_body(
    api: Api, names: str, status: int
) -> None:
    out = classify(api, status, None, "Authorization: Basic c2VjcmV0", None, now=NOW)
    assert out.kind == "fatal"
    assert names in out.reason
    assert "c2VjcmV0" not in out.reason


def test_wiredplus_400_keeps_the_text_truncated() -> None:
    body = json.dumps({"status": 400, "error": "customer_email is invalid " + "x" * 2000})
    out = wp(400, body)
    assert out.kind == "skip"
    assert "customer_email is invalid" in out.reason
    assert len(out.reason) < MAX_REASON_TEXT + 60


def test_shopwired_400_is_fatal_because_our_query_is_wrong() -> None:
    out = sw(400, '{"code": 2, "message": "Invalid protocol"}')
    assert out.kind == "fatal"
    assert "Invalid protocol" in out.reason


def test_redirect_points_at_the_base_url_setting() -> None:
    assert "SHOPWIRED_BASE_URL" in sw(302).reason
    assert "WIREDPLUS_BASE_URL" in wp(301).reason


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds(status: int) -> None:
    out = sw(status, "", "7")
    assert out.kind == "retry"
    assert out.retry_after == 7.0


def test_retry_after_http_date() -> None:
    out = wp(429, "", "Thu, 15 Jan 2026 12:01:30 GMT")
    assert out.retry_after == 90.0


def test_retry_after_absent_or_garbage_is_none() -> None:
    assert sw(429).retry_after is None
    assert sw(429, "", "soon").retry_after is None
    assert sw(400, "", "5").retry_after is None  # not a retry outcome


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("Thu, 15 Jan 2026 11:00:00 GMT", 0.0),
        ("Thu, 15 Jan 2026 12:00:10 +0000", 10.0),
        ("", None),
        (None, None),
        ("inf", None),
        ("nan", None),
        ("tomorrow", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read timed out", request=REQ),
        httpx.ConnectTimeout("connect timed out", request=REQ),
        httpx.ConnectError("connection refused", request=REQ),
        httpx.RemoteProtocolError("peer closed connection", request=REQ),
        httpx.ReadError("reset by peer", request=REQ),
        httpx.WriteError("broken pipe", request=REQ),
        httpx.ProxyError("proxy said no", request=REQ),
        httpx.DecodingError("bad gzip", request=REQ),
    ],
)
@pytest.mark.parametrize("api", ["shopwired", "wiredplus"])
def test_transport_trouble_is_retryable(exc: Exception, api: Api) -> None:
    out = classify(api, None, exc, "", None)
    assert out.kind == "retry"
    assert out.status is None


@pytest.mark.parametrize(
    "exc",
    [
        httpx.UnsupportedProtocol("ftp is not http", request=REQ),
        httpx.LocalProtocolError("Illegal header value"),
        httpx.TooManyRedirects("loop", request=REQ),
        httpx.InvalidURL("bad url"),
        RuntimeError("a bug"),
    ],
)
def test_configuration_and_bugs_are_fatal(exc: Exception) -> None:
    out = classify("shopwired", None, exc, "", None)
    assert out.kind == "fatal"


def test_timeout_reason_says_timed_out() -> None:
    out = classify("wiredplus", None, httpx.ReadTimeout("x", request=REQ), "", None)
    assert "timed out" in out.reason


def test_neither_status_nor_exception_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        classify("shopwired", None, None, "", None)


# -- 2xx bodies ---------------------------------------------------------------------------


def test_shopwired_truncated_page_is_retry() -> None:
    out = sw(200, '[{"id": 1}, {"id": 2', expect="list")
    assert out.kind == "retry"
    assert "truncated" in out.reason


@pytest.mark.parametrize("body", ['{"id": 1}', '"hello"', "", "null", "<html>oops</html>"])
def test_shopwired_list_endpoint_needs_an_array(body: str) -> None:
    assert sw(200, body, expect="list").kind == "retry"


def test_shopwired_list_of_anything_is_ok() -> None:
    assert sw(200, '[1, "x", {"id": 2}]', expect="list").kind == "ok"
    assert sw(200, "[]", expect="list").kind == "ok"


def test_object_expected() -> None:
    assert sw(200, '{"count": 3}', expect="object").kind == "ok"
    assert sw(200, "[]", expect="object").kind == "retry"


def test_expect_any_does_not_parse_shopwired() -> None:
    assert sw(204, "").kind == "ok"


def test_wiredplus_error_key_in_2xx_is_skip_with_text() -> None:
    out = wp(200, json.dumps({"status": 200, "error": "Order lines missing"}))
    assert out.kind == "skip"
    assert "Order lines missing" in out.reason
    assert out.status == 200


@pytest.mark.parametrize(
    ("inner", "kind"),
    [(429, "retry"), ("503", "retry"), (401, "fatal"), (422, "skip"), (404, "skip")],
)
def test_wiredplus_error_body_status_is_classified(inner: object, kind: str) -> None:
    out = wp(200, json.dumps({"status": inner, "error": "something"}))
    assert out.kind == kind


@pytest.mark.parametrize("error", [None, "", False])
def test_wiredplus_empty_error_is_not_a_failure(error: object) -> None:
    assert wp(200, json.dumps({"id": 5, "error": error}), expect="object").kind == "ok"


def test_wiredplus_non_json_2xx_is_retry() -> None:
    assert wp(200, "<html>maintenance</html>", expect="object").kind == "retry"


def test_wiredplus_error_object_text_is_serialised() -> None:
    out = wp(200, json.dumps({"error": {"field": "customer_email"}}))
    assert out.kind == "skip"
    assert "customer_email" in out.reason


# -- raise_for_outcome --------------------------------------------------------------------


def test_raise_for_outcome_maps_kinds() -> None:
    raise_for_outcome(Outcome("ok", None, "ok", 200), "orders")
    raise_for_outcome(Outcome("not_found", None, "gone", 404), "orders/{id}")
    with pytest.raises(RetryableError) as r:
        raise_for_outcome(Outcome("retry", 12.0, "busy", 429), "orders")
    assert r.value.retry_after == 12.0
    assert r.value.endpoint == "orders"
    assert r.value.status == 429
    with pytest.raises(FatalError) as f:
        raise_for_outcome(Outcome("fatal", None, "check creds", 401), "orders")
    assert "check creds" in str(f.value)
    with pytest.raises(SkippableError) as s:
        raise_for_outcome(Outcome("skip", None, "rejected", 400), "UpdateOrder")
    assert s.value.status == 400


def test_truncate() -> None:
    assert truncate("a\n\n  b") == "a b"
    cut = truncate("x" * 1000, 10)
    assert len(cut) == 10
    assert cut.endswith("…")


def test_elastic_path_follows_the_same_table_reads_and_writes() -> None:
    """One table: an Elastic Path GET means what a ShopWired read means, its PUT what a
    WiredPlus write means, for every status code (its token endpoint aside)."""
    from sync.outcomes import classify, classify_elasticpath

    for status in range(100, 700):
        body = "{}" if 200 <= status < 300 else ""
        sw = classify("shopwired", status, None, body, None, expect="object").kind
        wp = classify("wiredplus", status, None, body, None, expect="object").kind
        assert classify_elasticpath(status, None, body, None).kind == sw, status
        assert classify_elasticpath(status, None, body, None, write=True).kind == wp, status


def test_a_response_is_decoded_once_for_the_classifier_and_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = jsoncodec.loads

    def counting(text: str | bytes) -> object:
        calls.append(str(text))
        return real(text)

    monkeypatch.setattr(jsoncodec, "loads", counting)
    body = '[{"id": 1}]' + " " * (len(calls) + 1)  # a fresh str object
    first = outcomes.decode_json(body)  # the classifier
    second = outcomes.decode_json(body)  # the client, same response
    assert first == second == [{"id": 1}] and len(calls) == 1
    assert outcomes.decode_json(body) == [{"id": 1}] and len(calls) == 2  # not kept longer
