"""`ordersync webhook` serves the route of the configured source and refuses to start without
that source's secret (uvicorn is replaced: nothing listens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sync.cli import app
from sync.webhook import WebhookApp


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    import uvicorn

    calls: list[dict[str, Any]] = []

    def fake_run(receiver: Any, **kw: Any) -> None:
        calls.append({"app": receiver, **kw})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    for name in ("ELASTICPATH_WEBHOOK_SECRET", "ELASTICPATH_WEBHOOK_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return calls


def _invoke(env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, ["webhook", "--port", "18099"], env=env)


@pytest.mark.parametrize("source, needed", [("shopwired", "SHOPWIRED_WEBHOOK_SECRET"),
                                            ("elasticpath", "ELASTICPATH_WEBHOOK_SECRET")])
def test_each_source_needs_its_own_secret(served: list[dict[str, Any]], source: str,
                                          needed: str) -> None:
    other = ("ELASTICPATH_WEBHOOK_SECRET" if needed == "SHOPWIRED_WEBHOOK_SECRET"
             else "SHOPWIRED_WEBHOOK_SECRET")
    result = _invoke({"ORDERSYNC_SOURCE": source, other: "set-but-not-for-this-source",
                      needed: "  "})
    assert result.exit_code == 2
    assert f"{needed} is not set" in result.output
    assert served == []


@pytest.mark.parametrize("source, path, secret_var", [
    ("shopwired", "/webhooks/shopwired", "SHOPWIRED_WEBHOOK_SECRET"),
    ("elasticpath", "/webhooks/elasticpath", "ELASTICPATH_WEBHOOK_SECRET"),
])
def test_the_configured_source_is_served(served: list[dict[str, Any]], source: str, path: str,
                                         secret_var: str) -> None:
    result = _invoke({"ORDERSYNC_SOURCE": source, secret_var: "s3cret"})
    assert result.exit_code == 0, result.output
    (call,) = served
    receiver = call["app"]
    assert isinstance(receiver, WebhookApp)
    assert (receiver.source, receiver.path, receiver.store) == (source, path, source)
    assert call["port"] == 18099
    assert "s3cret" not in result.output


def test_every_store_of_the_registry_is_served_on_its_own_route_with_its_own_secret(
    served: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib
    import hmac
    from datetime import UTC, datetime

    from tests.webhook.test_webhook_app import call, envelope, raw

    registry = tmp_path / "stores.toml"
    registry.write_text(
        '[stores.acme]\nshopwired_webhook_secret_env = "ACME_HOOK"\n\n'
        '[stores.bravo]\nshopwired_api_key = "bravo-key"\n', encoding="utf-8")
    result = _invoke({"ORDERSYNC_STORES": str(registry), "ACME_HOOK": "acme-s3cret"})
    assert result.exit_code == 0, result.output
    receiver = served[0]["app"]
    body = raw(envelope(created=datetime.now(UTC)))
    signed = {"content-type": "application/json", "content-length": str(len(body)),
              "x-shopwired-signature": hmac.new(b"acme-s3cret", body,
                                                hashlib.sha256).hexdigest()}
    assert call(receiver, "POST", "/webhooks/shopwired/acme", body, signed).status == 200
    # bravo has no webhook secret, nobody is called "nope": 404, nothing recorded
    assert call(receiver, "POST", "/webhooks/shopwired/bravo", body, signed).status == 404
    assert call(receiver, "POST", "/webhooks/shopwired/nope", body, signed).status == 404
    assert call(receiver, "POST", "/webhooks/shopwired", body, signed).status == 404
    from sync.ledger.store import Ledger
    from sync.webhook.inbox import WebhookInbox

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        inbox = WebhookInbox(ledger)
        assert inbox.pending_refreshes("acme", 10)
        assert not inbox.pending_refreshes("bravo", 10)
    finally:
        ledger.dispose()
    assert "acme-s3cret" not in result.output
