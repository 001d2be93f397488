"""Initial ledger schema: orders, events, log, cursors, webhooks, refresh requests.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 13:41:29

Identical to what ``Base.metadata.create_all`` produced before migrations existed, which is
why :func:`sync.ledger.schema.upgrade` may *adopt* such a database by stamping it at this
revision. Timestamps are plain ``DateTime`` (naive UTC; the app's ``UTCDateTime`` adds the
zone on read). Booleans carry no CHECK constraint, as in the models. Python-side defaults
(``attempts=0`` ...) are not server defaults, so none appear here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=False),
        sa.Column("source_order_id", sa.String(length=64), nullable=False),
        sa.Column("order_reference", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=True),
        sa.Column("status_id", sa.String(length=64), nullable=True),
        sa.Column("status_name", sa.String(length=100), nullable=True),
        sa.Column("order_status", sa.String(length=32), nullable=True),
        sa.Column("terminal", sa.Boolean(), nullable=False),
        sa.Column("refund_keys", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("pushed_hash", sa.String(length=64), nullable=True),
        sa.Column("wiredplus_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store", "ref", name="uq_ledger_orders_store_ref"),
    )
    op.create_index(
        "ix_ledger_orders_due", "ledger_orders", ["store", "state", "next_attempt_at"]
    )
    op.create_index(
        "ix_ledger_orders_refresh", "ledger_orders", ["store", "terminal", "last_checked_at"]
    )

    op.create_table(
        "ledger_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("order_ref", sa.String(length=128), nullable=False),
        sa.Column("event_reference", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("wiredplus_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store", "event_reference", name="uq_ledger_events_store_ref"),
    )
    op.create_index("ix_ledger_events_order", "ledger_events", ["store", "order_ref", "state"])

    op.create_table(
        "ledger_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_log_order", "ledger_log", ["store", "ref", "id"])

    op.create_table(
        "ledger_cursors",
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("store", "name"),
    )

    op.create_table(
        "ledger_webhooks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("source_order_id", sa.String(length=64), nullable=True),
        sa.Column("event_created_at", sa.DateTime(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store", "delivery_id", name="uq_ledger_webhooks_store_delivery"),
    )
    op.create_index("ix_ledger_webhooks_received", "ledger_webhooks", ["store", "received_at"])

    op.create_table(
        "ledger_refresh_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("source_order_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store", "source_order_id", name="uq_ledger_refresh_store_order"),
    )
    op.create_index(
        "ix_ledger_refresh_due", "ledger_refresh_requests", ["store", "priority", "requested_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_refresh_due", table_name="ledger_refresh_requests")
    op.drop_table("ledger_refresh_requests")
    op.drop_index("ix_ledger_webhooks_received", table_name="ledger_webhooks")
    op.drop_table("ledger_webhooks")
    op.drop_table("ledger_cursors")
    op.drop_index("ix_ledger_log_order", table_name="ledger_log")
    op.drop_table("ledger_log")
    op.drop_index("ix_ledger_events_order", table_name="ledger_events")
    op.drop_table("ledger_events")
    op.drop_index("ix_ledger_orders_refresh", table_name="ledger_orders")
    op.drop_index("ix_ledger_orders_due", table_name="ledger_orders")
    op.drop_table("ledger_orders")
