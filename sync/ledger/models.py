"""Ledger tables (SQLAlchemy 2). The ledger is the only truth about what is pending.

Keys carry ``store`` so several stores (and sources) can share one database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC — identical on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class OrderState:
    PENDING = "pending"
    SYNCED = "synced"
    SKIPPED = "skipped"  # could not be mapped; waits for the order to change
    DEAD = "dead"  # rejected by WiredPlus or retries exhausted; `dlq replay` revives it
    ALL = (PENDING, SYNCED, SKIPPED, DEAD)


class EventState:
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    ALL = (PENDING, SENT, DEAD)


class OrderRow(Base):
    __tablename__ = "ledger_orders"
    __table_args__ = (
        UniqueConstraint("store", "ref", name="uq_ledger_orders_store_ref"),
        Index("ix_ledger_orders_due", "store", "state", "next_attempt_at"),
        Index("ix_ledger_orders_refresh", "store", "terminal", "last_checked_at"),
        # re-reads: least recently read open orders per status; the created-date window
        Index("ix_ledger_orders_open_status", "store", "terminal", "order_status",
              "last_checked_at"),
        Index("ix_ledger_orders_created", "store", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(128))  # WiredPlus api_reference_id
    source_order_id: Mapped[str] = mapped_column(String(64))
    order_reference: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_checked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status_id: Mapped[str | None] = mapped_column(String(64))
    status_name: Mapped[str | None] = mapped_column(String(100))
    order_status: Mapped[str | None] = mapped_column(String(32))
    terminal: Mapped[bool] = mapped_column(Boolean, default=False)
    refund_keys: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    payload: Mapped[str | None] = mapped_column(Text)  # UpdateOrder body, JSON
    content_hash: Mapped[str | None] = mapped_column(String(64))
    pushed_hash: Mapped[str | None] = mapped_column(String(64))
    wiredplus_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class EventRow(Base):
    __tablename__ = "ledger_events"
    __table_args__ = (
        UniqueConstraint("store", "event_reference", name="uq_ledger_events_store_ref"),
        Index("ix_ledger_events_order", "store", "order_ref", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store: Mapped[str] = mapped_column(String(64))
    order_ref: Mapped[str] = mapped_column(String(128))
    event_reference: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    wiredplus_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LogRow(Base):
    """Per-order history for ``ordersync show``: what happened, when, and why."""

    __tablename__ = "ledger_log"
    __table_args__ = (Index("ix_ledger_log_order", "store", "ref", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class CursorRow(Base):
    """Named cursors per store: the new-order watermark, last pass times."""

    __tablename__ = "ledger_cursors"

    store: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookRow(Base):
    """One accepted webhook delivery, deduplicated on the platform's event id.

    The receiver only writes this row and a refresh request; the order itself is re-fetched
    by id. ``processed_at`` is set once the refresh it asked for has been done.
    """

    __tablename__ = "ledger_webhooks"
    __table_args__ = (
        UniqueConstraint("store", "delivery_id", name="uq_ledger_webhooks_store_delivery"),
        Index("ix_ledger_webhooks_received", "store", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(64))
    source_order_id: Mapped[str | None] = mapped_column(String(64))
    event_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RefreshRequestRow(Base):
    """An order the scheduler must re-read soon (webhook, audit repair, operator request).

    At most one row per order: a second request only keeps the earliest ``requested_at`` and
    the highest priority. Deleted when the order has been re-read.
    """

    __tablename__ = "ledger_refresh_requests"
    __table_args__ = (
        UniqueConstraint("store", "source_order_id", name="uq_ledger_refresh_store_order"),
        Index("ix_ledger_refresh_due", "store", "priority", "requested_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store: Mapped[str] = mapped_column(String(64))
    source_order_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)  # lower = sooner
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StoreRow(Base):
    """A store added with ``ordersync stores add`` (stores declared in ``ORDERSYNC_STORES``
    live in that file instead). ``spec`` is JSON: setting overrides and *references* to
    secrets (``{"env": NAME}`` / ``{"file": PATH}``) — never a secret's value."""

    __tablename__ = "fleet_stores"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StoreStateRow(Base):
    """What an operator or the poller decided about a store: paused by an operator (with a
    reason), and its health as the poller last saw it — ``ok``, ``credentials`` (the API
    refused them: retried with back-off, never given up) or ``unreachable`` (the API is down
    or failing) — with the reason, since when, and when it is tried again."""

    __tablename__ = "fleet_store_states"

    store: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    health: Mapped[str] = mapped_column(String(16), default="ok")
    health_reason: Mapped[str | None] = mapped_column(Text)
    health_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PollerLeaseRow(Base):
    """Which poller process polls a store, until when. A poller renews its leases well within
    the period; one that dies stops renewing and another takes the store once it expired."""

    __tablename__ = "fleet_poller_leases"

    store: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PollerRow(Base):
    """A live poller process (heartbeat): pollers share the stores evenly between those seen
    within one lease period."""

    __tablename__ = "fleet_pollers"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
