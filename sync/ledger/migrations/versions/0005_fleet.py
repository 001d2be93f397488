"""Many stores, one deployment: the store registry, store states and poller leases.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:30:00

``fleet_stores`` holds the stores added with ``ordersync stores add`` (setting overrides and
secret *references*, never secret values); ``fleet_store_states`` an operator's pause and the
poller's view of each store's health; ``fleet_poller_leases`` which poller process polls
which store until when; ``fleet_pollers`` the live poller processes. New tables only: the
existing ledger is untouched (a single-store deployment keeps its store name and rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fleet_stores",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "fleet_store_states",
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("health_reason", sa.Text(), nullable=True),
        sa.Column("health_since", sa.DateTime(), nullable=True),
        sa.Column("retry_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("store"),
    )
    op.create_table(
        "fleet_poller_leases",
        sa.Column("store", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("store"),
    )
    op.create_table(
        "fleet_pollers",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )


def downgrade() -> None:
    op.drop_table("fleet_pollers")
    op.drop_table("fleet_poller_leases")
    op.drop_table("fleet_store_states")
    op.drop_table("fleet_stores")
