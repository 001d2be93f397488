"""Ledger migrations on SQLite and PostgreSQL (private schema, see ``db_url`` in conftest).

The guard that matters most: after ``upgrade`` to head, Alembic's autogenerate comparison
against the models finds nothing. A model change without a matching revision fails here.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sync.errors import ConfigError
from sync.ledger import schema
from sync.ledger.models import Base, CursorRow
from sync.ledger.store import Ledger, make_engine

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LEDGER_TABLES = set(Base.metadata.tables)


def model_diff(url: str) -> list[Any]:
    """What autogenerate would put in a new revision (same options as env.py)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def execute(url: str, sql: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def revisions_oldest_first() -> list[str]:
    script = ScriptDirectory.from_config(schema.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_head_is_computed_from_the_versions_directory() -> None:
    revisions = revisions_oldest_first()
    assert revisions[0] == schema.BASE_REVISION == "0001"
    assert revisions[-1] == schema.HEAD
    assert set(revisions) == schema.KNOWN_REVISIONS


def test_upgrade_from_empty_matches_the_models(db_url: str) -> None:
    assert schema.current_revision(db_url) is None
    schema.upgrade(db_url)
    assert schema.current_revision(db_url) == schema.HEAD
    assert tables(db_url) >= LEDGER_TABLES
    assert model_diff(db_url) == []
    schema.check_schema(db_url)


def test_upgrade_one_revision_at_a_time_from_the_first(db_url: str) -> None:
    for revision in revisions_oldest_first():
        schema.upgrade(db_url, revision)
        assert schema.current_revision(db_url) == revision
    assert model_diff(db_url) == []


def test_upgrade_is_idempotent_and_keeps_data(db_url: str) -> None:
    schema.create_or_upgrade(db_url)
    ledger = Ledger(db_url)
    try:
        with ledger.session() as s:
            s.add(CursorRow(store="s1", name="wm", value="42", updated_at=NOW))
        schema.upgrade(db_url)
        assert ledger.get_cursor("s1", "wm") == "42"
    finally:
        ledger.dispose()
    assert schema.current_revision(db_url) == schema.HEAD


def test_downgrade_to_base_then_upgrade_again(db_url: str) -> None:
    schema.upgrade(db_url)
    schema.downgrade(db_url, "base")
    assert schema.current_revision(db_url) is None
    assert not (LEDGER_TABLES & tables(db_url))
    schema.upgrade(db_url)
    assert schema.current_revision(db_url) == schema.HEAD
    assert model_diff(db_url) == []


def test_downgrade_one_revision_at_a_time(db_url: str) -> None:
    schema.upgrade(db_url)
    for _ in revisions_oldest_first():
        schema.downgrade(db_url, "-1")
    assert schema.current_revision(db_url) is None
    assert not (LEDGER_TABLES & tables(db_url))


MIGRATOR = """
import sys, time
from pathlib import Path
from sync.ledger.schema import upgrade
url, rendezvous, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
(rendezvous / sys.argv[4]).touch()
while len(list(rendezvous.iterdir())) < n:  # everyone imported: go at once
    time.sleep(0.005)
upgrade(url)
"""


def test_concurrent_migrators_do_not_race(db_url: str, tmp_path: Path) -> None:
    """Four `ordersync migrate` containers starting at once: one migrates, three wait."""
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, db_url, str(rendezvous), "4", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert schema.current_revision(db_url) == schema.HEAD
    assert model_diff(db_url) == []


def test_threads_migrating_different_databases(tmp_path: Path) -> None:
    """Alembic's proxies are process-global; the in-process lock keeps threads apart."""
    urls = [f"sqlite:///{tmp_path / f'ledger{i}.db'}" for i in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(urls))

    def migrate(url: str) -> None:
        barrier.wait()
        try:
            schema.upgrade(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert [schema.current_revision(u) for u in urls] == [schema.HEAD] * len(urls)


# -- check_schema --------------------------------------------------------------------------


def test_check_schema_refuses_an_unmigrated_database(db_url: str) -> None:
    with pytest.raises(ConfigError, match="has no schema yet: run `ordersync migrate`"):
        schema.check_schema(db_url)


def test_check_schema_refuses_a_database_from_a_newer_ordersync(db_url: str) -> None:
    schema.upgrade(db_url)
    execute(db_url, "UPDATE alembic_version SET version_num = 'f00dfeed9999'")
    expected = r"migrated by a newer ordersync \(revision f00dfeed9999\); upgrade ordersync"
    with pytest.raises(ConfigError, match=expected):
        schema.check_schema(db_url)
    # and `ordersync migrate` from the older build must not touch it either
    with pytest.raises(ConfigError, match=expected):
        schema.upgrade(db_url)
    assert schema.current_revision(db_url) == "f00dfeed9999"


def test_check_schema_refuses_a_database_behind_head(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema.upgrade(db_url)
    # Pretend this build has one more revision than the database.
    monkeypatch.setattr(schema, "HEAD", "9999")
    monkeypatch.setattr(schema, "KNOWN_REVISIONS", schema.KNOWN_REVISIONS | {"9999"})
    current = revisions_oldest_first()[-1]
    with pytest.raises(
        ConfigError,
        match=rf"is at revision {current}, this version needs 9999: run `ordersync migrate`",
    ):
        schema.check_schema(db_url)


def test_check_schema_passes_at_head(db_url: str) -> None:
    schema.upgrade(db_url)
    schema.check_schema(db_url)


# -- adopting a create_all database ---------------------------------------------------------


def test_create_all_database_is_adopted_by_upgrade(db_url: str) -> None:
    ledger = Ledger(db_url)
    try:
        _pre_migration_database(db_url)
        execute(db_url, "INSERT INTO ledger_orders (store, ref, source_order_id, first_seen_at,"
                " last_checked_at, changed_at, state, terminal, refund_keys, version, attempts,"
                " deleted) VALUES ('s1', 'r1', '1', '2026-01-15 12:00:00', '2026-01-15 12:00:00',"
                " '2026-01-15 12:00:00', 'pending', false, '[]', 1, 0, false)")
        with pytest.raises(ConfigError, match="created without migrations: run `ordersync"):
            schema.check_schema(db_url)

        schema.upgrade(db_url)

        assert schema.current_revision(db_url) == schema.HEAD
        schema.check_schema(db_url)
        assert model_diff(db_url) == []
        order = ledger.get_order("s1", "r1")
        assert order is not None and order.first_seen_at == NOW
    finally:
        ledger.dispose()


def test_partial_create_all_database_is_not_adopted(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        Base.metadata.create_all(
            engine, tables=[Base.metadata.tables["ledger_orders"], CursorRow.__table__]
        )
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match="table ledger_events is missing") as caught:
        schema.upgrade(db_url)
    assert "cannot be adopted" in str(caught.value)
    assert schema.current_revision(db_url) is None


def _pre_migration_database(db_url: str) -> None:
    """What versions before migrations made with ``create_all``: the 0001 schema, no
    version table."""
    schema.upgrade(db_url, "0001")
    execute(db_url, "DROP TABLE alembic_version")


def test_mismatched_columns_are_not_adopted(db_url: str) -> None:
    _pre_migration_database(db_url)
    execute(db_url, "ALTER TABLE ledger_log ADD COLUMN extra INTEGER")
    with pytest.raises(ConfigError, match="ledger_log has unexpected extra"):
        schema.upgrade(db_url)
    assert schema.current_revision(db_url) is None


def test_other_applications_tables_are_left_alone(db_url: str) -> None:
    execute(db_url, "CREATE TABLE someone_else (id INTEGER PRIMARY KEY)")
    schema.upgrade(db_url)
    assert "someone_else" in tables(db_url)
    schema.downgrade(db_url, "base")
    assert tables(db_url) & (LEDGER_TABLES | {"someone_else"}) == {"someone_else"}


# -- messages never show a password ---------------------------------------------------------


def test_redact_url_hides_passwords() -> None:
    url = "postgresql+psycopg://ordersync:secret@db:5432/ordersync?sslpassword=hush&sslmode=require"
    shown = schema.redact_url(url)
    assert "secret" not in shown and "hush" not in shown
    assert shown.startswith("postgresql+psycopg://ordersync:***@db:5432/ordersync?")
    assert "sslmode=require" in shown
    assert schema.redact_url("not a url :secret@") == "<unparseable database URL>"


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_check_schema_message_has_no_password(db_url: str) -> None:
    # Trust auth ignores the password, so the real server answers and the message is real.
    url = db_url.replace("://postgres@", "://postgres:secret@", 1)
    assert ":secret@" in url
    with pytest.raises(ConfigError) as caught:
        schema.check_schema(url)
    message = str(caught.value)
    assert "no schema yet" in message
    assert "secret" not in message and "postgres:***@" in message


def test_alembic_config_survives_percent_signs_in_the_url() -> None:
    cfg = schema.alembic_config("postgresql+psycopg://u:p%40ss@h/db?options=-csearch_path%3Dx")
    assert cfg.get_main_option("sqlalchemy.url") == (
        "postgresql+psycopg://u:p%40ss@h/db?options=-csearch_path%3Dx"
    )


def test_0003_reopens_cancelled_orders_the_old_status_map_closed(db_url: str) -> None:
    """A refund after a cancellation must still mail: rows the old map made terminal because
    they were cancelled are re-read again; other terminal rows and deleted ones stay closed."""
    schema.upgrade(db_url, "0002")
    rows = {"c": ("cancelled", "false"), "r": ("refunded", "false"), "d": ("cancelled", "true")}
    for ref, (status, deleted) in rows.items():
        execute(db_url, "INSERT INTO ledger_orders (store, ref, source_order_id, first_seen_at,"
                " last_checked_at, changed_at, state, terminal, order_status, refund_keys,"
                " version, attempts, deleted) VALUES ('s1', "
                f"'{ref}', '1', '2026-01-15 12:00:00', '2026-01-15 12:00:00',"
                f" '2026-01-15 12:00:00', 'synced', true, '{status}', '[]', 1, 0, {deleted})")
    schema.upgrade(db_url)
    ledger = Ledger(db_url)
    try:
        reopened = ledger.get_order("s1", "c")
        assert reopened is not None and not reopened.terminal
        for ref in ("r", "d"):
            row = ledger.get_order("s1", ref)
            assert row is not None and row.terminal
    finally:
        ledger.dispose()


def test_0006_drops_the_unused_re_read_due_time_and_keeps_every_order(db_url: str) -> None:
    """Re-reads are planned from status and last read; the per-order due time (written on
    every read, read by nothing) goes, the orders stay, and a downgrade brings it back."""
    schema.upgrade(db_url, "0005")
    execute(db_url, "INSERT INTO ledger_orders (store, ref, source_order_id, first_seen_at,"
            " last_checked_at, changed_at, state, terminal, refund_keys, version, attempts,"
            " deleted, refresh_due_at) VALUES ('s1', 'r1', '1', '2026-01-15 12:00:00',"
            " '2026-01-15 12:00:00', '2026-01-15 12:00:00', 'synced', false, '[]', 1, 0,"
            " false, '2026-01-15 13:00:00')")
    schema.upgrade(db_url)
    assert model_diff(db_url) == []
    engine = sa.create_engine(db_url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("ledger_orders")}
        assert "refresh_due_at" not in columns
    finally:
        engine.dispose()
    ledger = Ledger(db_url)
    try:
        order = ledger.get_order("s1", "r1")
        assert order is not None and order.last_checked_at == NOW
    finally:
        ledger.dispose()
    schema.downgrade(db_url, "0005")
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            due = conn.execute(sa.text("SELECT refresh_due_at FROM ledger_orders")).scalar()
        assert due is not None
    finally:
        engine.dispose()
