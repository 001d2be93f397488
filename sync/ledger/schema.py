"""Ledger schema versions: Alembic migrations, applied by ``ordersync migrate``.

The schema is owned by the revisions in ``sync/ledger/migrations/versions`` (never by
``create_all``). The contract with the rest of the app:

* :func:`upgrade` (what ``ordersync migrate`` runs) brings a database to :data:`HEAD`. It is
  safe to run from several containers at once: on PostgreSQL it holds a session-level
  ``pg_advisory_lock`` (key :data:`PG_LOCK_KEY`) for the whole run, so the second migrator
  waits and then finds nothing to do. SQLite takes no lock of its own: the whole run is one
  ``BEGIN IMMEDIATE`` transaction, so concurrent migrators queue on SQLite's write lock, and a
  failed run rolls back completely (SQLite DDL is transactional).
* :func:`check_schema` is what long-running roles call at start-up: it raises
  :class:`~sync.errors.ConfigError` with one actionable sentence when the database is
  unmigrated, behind :data:`HEAD`, or at a revision this build does not know (migrated by a
  newer ordersync). It never changes the database.
* Messages name the database by :func:`redact_url`, so a password in the URL never leaks.

**Adoption.** Databases created before migrations existed (by ``Ledger.create_schema``, i.e.
``create_all``) have the ledger tables but no ``alembic_version`` row. :func:`upgrade` adopts
them: if every table of revision ``0001`` is present with exactly its columns, it stamps the
database at ``0001`` and upgrades from there; if only some ledger tables are present, or their
columns differ, it refuses with a :class:`~sync.errors.ConfigError` naming the mismatch rather
than guess. Other tables in the same database are ignored.

Writing a new revision (developers; no ``alembic.ini`` needed)::

    from alembic import command
    from sync.ledger.schema import alembic_config
    command.revision(alembic_config("sqlite:///scratch.db"), "add foo column",
                     autogenerate=True, rev_id="0002")

Run it against a database already upgraded to :data:`HEAD`, then review the generated
``versions/0002_add_foo_column.py`` by hand. ``tests/ledger/test_migrations.py`` fails until
the models and the migrations agree.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool, StaticPool

from sync.errors import ConfigError
from sync.ledger.models import Base

__all__ = [
    "BASE_REVISION",
    "HEAD",
    "KNOWN_REVISIONS",
    "MIGRATIONS_DIR",
    "PG_LOCK_KEY",
    "alembic_config",
    "check_schema",
    "create_or_upgrade",
    "current_revision",
    "downgrade",
    "redact_url",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""The Alembic script directory (``env.py``, ``script.py.mako``, ``versions/``)."""

BASE_REVISION = "0001"
"""The first revision: the schema ``create_all`` used to make, and the one adoption stamps."""

PG_LOCK_KEY = 0x6F7264_6D6967  # "ord" "mig": any fixed bigint, shared by every ordersync
"""``pg_advisory_lock`` key held while migrating PostgreSQL (database-wide, like all advisory
locks: two deployments sharing one database simply take turns)."""

VERSION_TABLE = "alembic_version"

# Alembic's ``context``/``op`` are process-global proxies: two commands running at once in one
# process (threads, even on different databases) would execute on each other's connections.
_IN_PROCESS = threading.RLock()
_MIGRATE = "run `ordersync migrate`"


def _escape(value: str) -> str:
    # Config options go through ConfigParser interpolation: a literal "%" must be doubled
    # (URL-encoded passwords and the test fixtures' "options=-csearch_path%3D..." have them).
    return value.replace("%", "%%")


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` for the ledger migrations, built without ``alembic.ini``.

    Pass ``connection`` to run commands on that open connection (what this module does), or
    ``url`` for Alembic to make its own engine (handy for ``command.revision`` and offline
    ``--sql`` output). The returned object is new on each call and may be modified.
    """
    cfg = Config()
    cfg.set_main_option("script_location", _escape(str(MIGRATIONS_DIR)))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", _escape(url))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _compute_head(script: ScriptDirectory) -> str:
    head = script.get_current_head()  # raises CommandError if the history has two heads
    if head is None:
        raise RuntimeError(f"no ledger migrations found in {MIGRATIONS_DIR / 'versions'}")
    return head


_SCRIPT = ScriptDirectory.from_config(alembic_config())

HEAD: str = _compute_head(_SCRIPT)
"""The revision this build of ordersync needs (the single head of ``versions/``)."""

KNOWN_REVISIONS: frozenset[str] = frozenset(r.revision for r in _SCRIPT.walk_revisions())
"""Every revision this build knows; anything else in a database came from a newer build."""


def redact_url(url: str) -> str:
    """``url`` fit for messages and logs: the password (and any password-like query
    parameter) is replaced by ``***``. An unparseable URL is not echoed at all."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"
    secret = [k for k in parsed.query if "password" in k.lower() or "secret" in k.lower()]
    if secret:
        parsed = parsed.update_query_dict(dict.fromkeys(secret, "***"))
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _engine(url: str) -> Engine:
    """A short-lived engine whose connections really close when released (releasing any
    advisory lock with them).

    SQLite connections wait up to 30 s for a lock, like the app's, but do not switch the
    journal mode on connect as ``store.make_engine`` does: that switch needs the database to
    itself and fails at once ("database is locked") while a migrator holds the write lock.
    """
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, poolclass=NullPool
        )
    return create_engine(url, poolclass=NullPool)


def _sqlite_wal(conn: Connection) -> None:
    """Best effort, outside any transaction: leave the file in the WAL mode the app uses, so
    the app's processes find it already switched. Skipped if another connection is busy."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    with suppress(sqlite3.OperationalError):  # store.make_engine switches it on connect anyway
        driver.execute("PRAGMA journal_mode=WAL")


@contextmanager
def _connect(url: str) -> Iterator[Connection]:
    """A read-only look at the database (nothing here takes a lock)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _sqlite_begin_immediate(engine: Engine) -> None:
    """Make every transaction on ``engine`` a real ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite
    recipe): DDL becomes transactional and the database write lock is taken up front."""

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite must not BEGIN/COMMIT behind our back

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def _migrating(url: str) -> Iterator[Connection]:
    """A connection on which one whole migration run is exclusive against other migrators.

    * PostgreSQL: a session-level ``pg_advisory_lock`` (:data:`PG_LOCK_KEY`) is held for the
      run; transactions are left to Alembic (so a future revision may use
      ``autocommit_block``). If unlocking fails the connection is invalidated: closing the
      session is what releases the lock then.
    * SQLite: no lock of our own. The run is a single ``BEGIN IMMEDIATE`` transaction,
      committed on success and rolled back on any error (SQLite DDL is transactional); a second
      migrator waits on SQLite's write lock (``busy_timeout``), then finds nothing to do.
    * Anything else: no locking.
    """
    engine = _engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        _sqlite_begin_immediate(engine)
    try:
        with engine.connect() as conn:
            if sqlite:
                with conn.begin():
                    yield conn
                _sqlite_wal(conn)
            elif conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()
                try:
                    yield conn
                finally:
                    try:
                        conn.rollback()
                        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                        conn.commit()
                    except Exception:
                        conn.invalidate()
            else:
                yield conn
                conn.commit()
    finally:
        engine.dispose()


def _hand_over(conn: Connection) -> None:
    """Before an Alembic command: end our own read transaction so Alembic runs its own,
    except on SQLite where the whole run is the one transaction :func:`_migrating` opened."""
    if conn.dialect.name != "sqlite" and conn.in_transaction():
        conn.commit()


def _heads(conn: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(conn).get_current_heads()


@cache
def _base_revision_tables() -> dict[str, frozenset[str]]:
    """Table -> column names exactly as revision ``0001`` creates them.

    Derived by running ``0001`` on a scratch in-memory SQLite database, so the adoption check
    can never drift from the migration itself.
    """
    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        with _IN_PROCESS, engine.connect() as conn:
            command.upgrade(alembic_config(connection=conn), BASE_REVISION)
            conn.commit()
            insp = inspect(conn)
            return {
                t: frozenset(c["name"] for c in insp.get_columns(t))
                for t in insp.get_table_names()
                if t != VERSION_TABLE
            }
    finally:
        engine.dispose()


def _ledger_tables(conn: Connection) -> dict[str, frozenset[str]]:
    """The ledger tables present in ``conn``'s default schema, with their column names."""
    insp = inspect(conn)
    wanted = _base_revision_tables().keys() | Base.metadata.tables.keys()
    return {
        t: frozenset(c["name"] for c in insp.get_columns(t))
        for t in insp.get_table_names()
        if t in wanted
    }


def _adopt(conn: Connection, url: str) -> None:
    """Stamp a ``create_all``-made ledger at :data:`BASE_REVISION` (see the module doc)."""
    present = _ledger_tables(conn)
    if not present:
        return  # empty (or someone else's) database: a normal upgrade from scratch
    expected = _base_revision_tables()
    problems: list[str] = []
    for table, columns in sorted(expected.items()):
        if table not in present:
            problems.append(f"table {table} is missing")
            continue
        if missing := sorted(columns - present[table]):
            problems.append(f"{table} lacks {', '.join(missing)}")
        if extra := sorted(present[table] - columns):
            problems.append(f"{table} has unexpected {', '.join(extra)}")
    if extra_tables := sorted(present.keys() - expected.keys()):
        problems.append(f"unexpected tables {', '.join(extra_tables)}")
    if problems:
        raise ConfigError(
            f"the ledger database {redact_url(url)} has ledger tables but no migration history, "
            f"and they do not match revision {BASE_REVISION} ({'; '.join(problems)}): "
            "it cannot be adopted automatically; fix or recreate it, then run `ordersync migrate`"
        )
    _hand_over(conn)
    command.stamp(alembic_config(connection=conn), BASE_REVISION)


def _newer_error(url: str, revision: str) -> ConfigError:
    return ConfigError(
        f"the ledger database {redact_url(url)} was migrated by a newer ordersync "
        f"(revision {revision}); upgrade ordersync or restore a backup"
    )


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations to the ledger at ``url`` up to ``revision`` (default: :data:`HEAD`).

    Idempotent and safe to run concurrently: other processes wait on the database lock
    (module doc), other threads of this process on an in-process lock. A
    ``create_all``-made database is adopted first (module doc). Raises ConfigError if the
    database is at a revision this build does not know, cannot be adopted, or Alembic
    rejects ``revision``. A failing run leaves the database as it was (one transaction on
    SQLite and, Alembic's default, one transaction for all pending revisions on PostgreSQL).
    """
    with _IN_PROCESS, _migrating(url) as conn:
        heads = _heads(conn)
        if unknown := sorted(set(heads) - KNOWN_REVISIONS):
            raise _newer_error(url, ", ".join(unknown))
        if not heads:
            _adopt(conn, url)
        _hand_over(conn)
        try:
            command.upgrade(alembic_config(connection=conn), revision)
        except CommandError as exc:
            raise ConfigError(f"cannot upgrade the ledger to {revision!r}: {exc}") from exc


def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to ``revision`` (``"base"`` drops every ledger table).

    An operator/test tool, never run automatically: data in dropped tables or columns is lost.
    Same locking as :func:`upgrade`; ConfigError if Alembic rejects ``revision``.
    """
    with _IN_PROCESS, _migrating(url) as conn:
        if unknown := sorted(set(_heads(conn)) - KNOWN_REVISIONS):
            raise _newer_error(url, ", ".join(unknown))
        _hand_over(conn)
        try:
            command.downgrade(alembic_config(connection=conn), revision)
        except CommandError as exc:
            raise ConfigError(f"cannot downgrade the ledger to {revision!r}: {exc}") from exc


def create_or_upgrade(url: str) -> None:
    """Make the ledger at ``url`` ready to use: :func:`upgrade` to :data:`HEAD`.

    For embedded mode, the demo and tests, which own their database; deployed roles should
    call :func:`check_schema` and leave migrating to ``ordersync migrate``.
    """
    upgrade(url, "head")


def current_revision(url: str) -> str | None:
    """The revision the ledger at ``url`` is stamped with; None if it was never migrated.

    Read-only. Raises Alembic's CommandError if the database has several heads (our history
    is linear, so that means someone else wrote the version table).
    """
    with _connect(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(url: str) -> None:
    """Return if the ledger at ``url`` is exactly at :data:`HEAD`, else raise ConfigError.

    The message says which of the three cases applies and what to do: no schema (or a
    pre-migrations ``create_all`` schema) or an older revision -> ``ordersync migrate``;
    an unknown revision -> the database is newer than this build. Read-only; connection
    errors propagate as SQLAlchemy errors.
    """
    with _connect(url) as conn:
        heads = set(_heads(conn))
        legacy = not heads and bool(_ledger_tables(conn))
    where = f"the ledger database {redact_url(url)}"
    if heads == {HEAD}:
        return
    if unknown := sorted(heads - KNOWN_REVISIONS):
        raise _newer_error(url, ", ".join(unknown))
    if legacy:
        raise ConfigError(f"{where} was created without migrations: {_MIGRATE} to adopt it")
    if not heads:
        raise ConfigError(f"{where} has no schema yet: {_MIGRATE}")
    raise ConfigError(
        f"{where} is at revision {', '.join(sorted(heads))}, this version needs {HEAD}: "
        f"{_MIGRATE}"
    )
