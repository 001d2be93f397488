"""Alembic environment for the ledger, configured programmatically (no ``alembic.ini``).

:mod:`sync.ledger.schema` builds the :class:`alembic.config.Config` and normally hands over an
open connection in ``config.attributes["connection"]``; Alembic then runs the migrations on that
connection (so the caller can hold a PostgreSQL advisory lock on it). Without one, an engine is
built from the ``sqlalchemy.url`` main option. Offline (``--sql``) mode renders the SQL for
that URL's dialect.

Autogenerate compares against :data:`sync.ledger.models.Base.metadata` with ``compare_type``
on, renders :class:`sync.ledger.models.UTCDateTime` as plain ``sa.DateTime()`` (revisions must
not import application code, which keeps changing), and uses batch mode on SQLite.

Each revision applied or reverted is one ``ledger.migration`` log line (JSON in a deployment)
through the application's logger; Alembic's own chatter stays below the configured level.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from sync.ledger.models import Base, UTCDateTime

target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render the app-only ``UTCDateTime`` as the column type it really is in the database."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False  # Alembic's default rendering


def _log_step(*, ctx: Any, step: Any, heads: Any, **_: Any) -> None:
    """Alembic's ``on_version_apply`` hook: one log line per revision applied (not for the
    in-memory scratch database :mod:`sync.ledger.schema` derives revision 0001's tables from)."""
    from sync.logs import get_logger

    connection = ctx.connection
    if connection is not None and not connection.engine.url.database:
        return
    get_logger("ordersync").info(
        "ledger.migration", direction="upgrade" if step.is_upgrade else "downgrade",
        revision=step.up_revision_id if step.is_upgrade else step.down_revision_ids,
        description=step.up_revision.doc if step.up_revision is not None else None,
        heads=sorted(heads),
    )


def _configure_options(dialect_name: str) -> dict[str, Any]:
    return {
        "on_version_apply": _log_step,
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_item": render_item,
        "render_as_batch": dialect_name == "sqlite",
    }


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, **_configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the migration SQL for the configured URL instead of executing it."""
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need the sqlalchemy.url option")
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the caller's connection if given, else on a throwaway engine for the URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("online migrations need a connection or the sqlalchemy.url option")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
