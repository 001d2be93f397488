"""Freshness targets: ``ledger_orders.refresh_due_at`` and its index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:45:00

Open orders are re-read when ``refresh_due_at`` has passed (see
:mod:`sync.domain.freshness`). Existing rows start due at their ``last_checked_at``, i.e. in
the order the previous version would have refreshed them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_orders") as batch:
        batch.add_column(sa.Column("refresh_due_at", sa.DateTime(), nullable=True))
        batch.create_index(
            "ix_ledger_orders_refresh_due", ["store", "terminal", "refresh_due_at"]
        )
    op.execute("UPDATE ledger_orders SET refresh_due_at = last_checked_at")


def downgrade() -> None:
    with op.batch_alter_table("ledger_orders") as batch:
        batch.drop_index("ix_ledger_orders_refresh_due")
        batch.drop_column("refresh_due_at")
