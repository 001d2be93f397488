"""Re-reads no longer keep a due time per order: ``ledger_orders.refresh_due_at`` is dropped.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 16:10:00

Since re-reads are planned from the budget (:mod:`sync.domain.refresh_plan`, revision 0004's
indexes), an order's next read follows from its status and ``last_checked_at``; the column
and its index ``ix_ledger_orders_refresh_due`` were still written on every read and read by
nothing. Keeping them cost every unchanged re-read one ``UPDATE`` per status (the due time
depended on it) and an index entry per order read — at 50 stores that was most of the
ledger's share of a re-read. The downgrade restores the column (as ``last_checked_at``, what
0002 started it at) and its index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_orders") as batch:
        batch.drop_index("ix_ledger_orders_refresh_due")
        batch.drop_column("refresh_due_at")


def downgrade() -> None:
    with op.batch_alter_table("ledger_orders") as batch:
        batch.add_column(sa.Column("refresh_due_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_ledger_orders_refresh_due",
                           ["store", "terminal", "refresh_due_at"])
    op.execute("UPDATE ledger_orders SET refresh_due_at = last_checked_at")
