"""Rows 2, 3 and 9 of issue #12: data is never markup, customer data never leaks from API
bodies, and log redaction keeps what operators need.

* Row 3: WiredPlus and ShopWired answer errors that echo the whole order (name, street,
  e-mail, phone). None of it may appear in any log line, the ledger's ``last_error``, the
  pass error, ``dlq list --json`` or ``status``.
* Row 2: ``[/]`` and ANSI escapes in order data, API text and arguments are printed as text
  by every command, never as rich markup or terminal control.
* Row 9: IPs, durations, timestamps and ids survive the phone-number mask.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sync.cli import app
from sync.ledger.models import OrderRow, OrderState
from sync.ledger.store import LAST_PASS_ERROR
from sync.logs import mask_text
from sync.redact import api_error_excerpt
from tests.hostile.conftest import Rig


def _customer_values(rig: Rig) -> set[str]:
    """Every piece of customer data in the sandbox shop (what must never leak)."""
    values: set[str] = set()
    for oid in rig.sb.shopwired.order_ids():
        order = rig.sb.shopwired.get_order(oid) or {}
        for key in ("billingAddress", "shippingAddress"):
            addr = order.get(key) or {}
            for field in ("name", "emailAddress", "telephone", "addressLine1", "postcode"):
                value = addr.get(field)
                if isinstance(value, str) and len(value) >= 5:
                    values.add(value)
                    if field == "name":
                        values.update(p for p in value.split() if len(p) >= 5)
    return values


def _leaks(text: str, values: set[str]) -> list[str]:
    low = text.lower()
    return sorted(v for v in values if v.lower() in low)


def _echo_wiredplus(inner: Any) -> httpx.MockTransport:
    """WiredPlus rejecting every order with a body that echoes what it was sent."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/BulkOrderUpdate"):  # no bulk: every order single
            return httpx.Response(404, json={"status": 404, "error": "method: unknown"})
        if request.url.path.endswith("/UpdateOrder"):
            sent = json.loads(request.content)
            if sent.get("customer_email", "").startswith(("a", "b", "c", "d", "e", "f")):
                return httpx.Response(422, json={
                    "status": 422, "error": f"invalid order for {sent.get('customer_email')}",
                    "order": sent})
            text = f"Bad order: {json.dumps(sent)}"
            return httpx.Response(400, text=text)
        return inner(request)

    return httpx.MockTransport(handle)


def test_echoing_apis_never_put_customer_data_in_logs_ledger_or_cli(
    make_rig: Any, db_url: str
) -> None:
    """Row 3, WiredPlus side: every UpdateOrder rejected with the order echoed back."""
    rig: Rig = make_rig(orders=8, wiredplus=_echo_wiredplus)
    rig.rt.poller.run_pass()
    values = _customer_values(rig)
    assert values
    rows = rig.orders()
    assert rows and all(r.state == OrderState.DEAD for r in rows.values()), {
        k: r.state for k, r in rows.items()}
    for row in rows.values():
        assert row.last_error and not _leaks(row.last_error, values), row.last_error
    assert not _leaks(rig.log.getvalue(), values)
    env = {"DATABASE_URL": db_url}
    for args in (["dlq", "list", "--json"], ["dlq", "list"], ["status"], ["status", "--json"],
                 ["show", next(iter(rows))]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code in (0, 1), (args, result.output)
        assert not _leaks(result.output, values), (args, _leaks(result.output, values))
    # the reason still says what WiredPlus said
    reasons = {r.last_error for r in rows.values()}
    assert any("invalid order for ***@***" in (x or "") for x in reasons), reasons
    assert any("(text body" in (x or "") for x in reasons), reasons


def test_an_echoing_shopwired_error_never_reaches_the_pass_error(make_rig: Any) -> None:
    """Row 3, ShopWired side: a 503 whose body is the order page."""

    def wrap(inner: Any) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            response = inner(request)
            if request.url.path.endswith("/orders"):
                return httpx.Response(503, content=response.content)
            return response
        return httpx.MockTransport(handle)

    rig: Rig = make_rig(orders=5, shopwired=wrap)
    values = _customer_values(rig)
    with pytest.raises(Exception) as info:
        rig.rt.poller.run_pass()
    assert not _leaks(str(info.value), values)
    assert not _leaks(rig.log.getvalue(), values)
    assert not _leaks(rig.ledger.get_cursor(rig.store, LAST_PASS_ERROR) or "", values)


@pytest.mark.parametrize("body, kept, dropped", [
    ('{"status":400,"error":"Invalid email jane.doe@example.com","order":'
     '{"billing_first_name":"Jane","billing_address1":"10 Acacia Avenue"}}',
     ["status=400", "error=Invalid email ***@***"], ["Jane", "Acacia", "jane.doe"]),
    ('{"errors":[{"title":"Bad","detail":"phone 07700 900123 rejected for \'Jane Doe\'",'
     '"status":"422","request_id":"req-1"}]}',
     ["title=Bad", "***phone***", "req-1"], ["07700", "Jane Doe"]),
    ("<html><title>502 Bad Gateway</title><body>Jane Doe</body></html>",
     ["502 Bad Gateway"], ["Jane"]),
    ("Jane Doe, 10 Acacia Avenue, London\n" * 3, ["text body"], ["Jane", "Acacia"]),
    ('[{"id":1,"billingAddress":{"name":"Jane Doe"}}]', ["JSON array"], ["Jane"]),
    ('{"error":{"code":"E42","message":"customer {\\"name\\": \\"Jane\\"} invalid"}}',
     ["error.code=E42", "{…}"], ["Jane"]),
])
def test_api_error_excerpt_keeps_the_error_fields_only(
    body: str, kept: list[str], dropped: list[str]
) -> None:
    excerpt = api_error_excerpt(body)
    assert len(excerpt) <= 200 and "\n" not in excerpt
    for k in kept:
        assert k in excerpt, excerpt
    for d in dropped:
        assert d not in excerpt, excerpt


@pytest.mark.parametrize("text", [
    "peer 127.0.0.1", "peer 203.0.113.9:443", "Retry-After 120 s", "waited 2.5s",
    "took 1500ms", "at 2026-12-02T17:17:52.123Z", "on 2026-12-02 17:17:52", "order 123456789",
    "epoch 1764691072", "window 2026-01-01T00:00:00+00:00", "duration_ms 0.25",
])
def test_redaction_keeps_ips_durations_timestamps_and_ids(text: str) -> None:
    """Row 9."""
    assert mask_text(text) == text


@pytest.mark.parametrize("text", [
    "call 07700 900123", "tel +44 20 7946 0958", "07700900123", "(020) 7946-0958",
    "mail jane.doe@example.com",
])
def test_redaction_still_masks_phones_and_emails(text: str) -> None:
    masked = mask_text(text)
    assert masked != text and ("***phone***" in masked or "***@" in masked)


# ------------------------------------------------------------------ row 2: never markup


HOSTILE = "[/] [bold red]boom[/] \x1b[31mred\x1b[0m \x1b]0;title\x07 \x9b2J :smile:"


def test_no_command_interprets_data_as_markup_or_escapes(make_rig: Any, db_url: str) -> None:
    rig: Rig = make_rig(orders=2)
    rig.rt.poller.run_pass()
    now = datetime.now(UTC)
    with rig.ledger.session() as s:  # data as an older version (or a hostile API) left it
        s.add(OrderRow(store=rig.store, ref="[/]", source_order_id="[/]",
                       order_reference=HOSTILE[:60], first_seen_at=now, last_checked_at=now,
                       changed_at=now, version=1, attempts=3, terminal=False, deleted=False,
                       state=OrderState.DEAD, status_name=HOSTILE[:100], last_error=HOSTILE))
        rig.ledger.set_cursor(s, rig.store, LAST_PASS_ERROR, HOSTILE, now)
    env = {"DATABASE_URL": db_url}
    for args in (["status"], ["show", "[/]"], ["dlq", "list"], ["show", HOSTILE],
                 ["dlq", "replay", HOSTILE]):
        result = CliRunner().invoke(app, args, env=env)
        out = result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            args, result.exception)
        assert "Traceback" not in out and "MarkupError" not in out
        assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out, (args, out)
        if args in (["status"], ["show", "[/]"], ["dlq", "list"]):
            assert "boom[/]" in out and ":smile:" in out, out  # shown literally
    missing = CliRunner().invoke(app, ["show", "[/]nope\x1b[2J"], env=env)
    assert missing.exit_code == 1
    assert len(missing.output.strip().splitlines()) == 1


@pytest.mark.parametrize("error", [
    "IntegrityError: dup [SQL: INSERT INTO t VALUES (?)]\n[parameters: ('Jane Doe', "
    "'10 Acacia Avenue')]\n(Background on this error at: https://sqlalche.me/e/21/gkpj)",
    "OperationalError: gone [SQL: SELECT a] [parameters: {'ref': 'Jane Doe', 'b': '10 Aca",
])
def test_sql_parameters_never_reach_a_log_line(error: str) -> None:
    """A database error's text carries the statement's bound values (order data), even when
    the caller cut it short."""
    from sync.logs import redact

    line = redact(None, "error", {"error": error})["error"]
    assert "Jane" not in line and "Acacia" not in line and "[parameters: …]" in line
