"""Indexes for re-reading open orders: by status and last read, and by created date.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:00:00

The refresh plan (:mod:`sync.domain.refresh_plan`) asks the ledger, before every re-read
call, for the least recently read open orders of each status and for the orders created from
the most overdue one on (to decide whether re-listing that created range is cheaper). Without
these indexes both scan every open order: at 50,000 open orders that was most of a re-read's
cost. ``ix_ledger_orders_open_status`` serves the per-status query
(``store, terminal, order_status`` equal, ``last_checked_at`` in order);
``ix_ledger_orders_created`` the created-date window. Indexes only: no data changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_orders") as batch:
        batch.create_index(
            "ix_ledger_orders_open_status",
            ["store", "terminal", "order_status", "last_checked_at"],
        )
        batch.create_index("ix_ledger_orders_created", ["store", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_orders") as batch:
        batch.drop_index("ix_ledger_orders_created")
        batch.drop_index("ix_ledger_orders_open_status")
