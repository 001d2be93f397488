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
