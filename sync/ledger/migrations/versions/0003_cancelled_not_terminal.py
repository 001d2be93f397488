"""Cancelled orders are open again: ``ledger_orders.terminal`` cleared where it is cancelled.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 18:40:00

Before 0.2 the default status map made ShopWired's ``cancelled`` type terminal, so a
cancelled order was never re-read and a refund made after the cancellation never mailed the
customer (issue 13, row 6). The status map no longer does; this data migration reopens the
rows the old rule closed, due at their ``last_checked_at`` so the budgeted refresh reads the
longest-unchecked first. Only rows whose WiredPlus status is ``cancelled`` change; deleted
orders stay closed. Downgrade closes them again.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE ledger_orders SET terminal = false, refresh_due_at = last_checked_at "
        "WHERE terminal = true AND deleted = false AND order_status = 'cancelled'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE ledger_orders SET terminal = true "
        "WHERE terminal = false AND deleted = false AND order_status = 'cancelled'"
    )
