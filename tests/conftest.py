"""Shared fixtures: sample orders, the default status map, database URLs."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from sync.domain.mapping import MappingContext
from sync.domain.status_map import StatusMap

settings.register_profile(
    "ordersync",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("ordersync")

FIXTURES = Path(__file__).parent / "fixtures"
PG_URL = os.environ.get(
    "ORDERSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ORDERSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's own configuration."""
    for name in list(os.environ):
        if name.startswith(("SHOPWIRED_", "WIREDPLUS_", "ORDERSYNC_", "ELASTICPATH_")) or name in (
            "DATABASE_URL",
            "REDIS_URL",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sample_order() -> dict[str, Any]:
    return copy.deepcopy(json.loads((FIXTURES / "shopwired_order.json").read_text()))


@pytest.fixture(scope="session")
def status_map() -> StatusMap:
    from config import default_status_map_text

    return StatusMap.from_toml(default_status_map_text())


@pytest.fixture
def ctx() -> MappingContext:
    return MappingContext(currency="GBP")


def _pg_available() -> bool:
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(PG_URL)
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


@contextmanager
def private_pg_schema() -> Iterator[str]:
    """A DATABASE_URL pointing at a fresh PostgreSQL schema, dropped afterwards."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432")
        pytest.skip("PostgreSQL not reachable")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(PG_URL)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with eng.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger database: SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with private_pg_schema() as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema only (for tests that need PostgreSQL itself)."""
    with private_pg_schema() as url:
        yield url
