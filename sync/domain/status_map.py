"""Status map: a shop status → WiredPlus ``order_status`` and the event its arrival triggers.

Pure: loading reads TOML *text*; file access is the caller's business. The default map ships
as ``config/status_map.toml``; an override file replaces entries key by key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync.domain.models import SourceStatus

ORDER_STATUSES = frozenset(
    [
        "unknown", "pending", "processing", "under-review", "awaiting-payment",
        "awaiting-fulfillment", "awaiting-pickup", "partially-shipped", "completed",
        "shipped", "fraud", "closed", "cancelled", "declined", "refunded", "disputed",
        "partially-refunded",
    ]
)
EVENT_TYPES = frozenset(
    [
        "cancelled", "completed", "delivered", "dispatched", "disputed", "fullfilled",
        "processing", "refunded",
    ]
)


class StatusMapError(ValueError):
    """The status map file is invalid; the message says where."""


@dataclass(frozen=True, slots=True)
class StatusRule:
    order_status: str
    event: str | None = None
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a shop status means in WiredPlus. ``matched`` is False for the unknown fallback."""

    order_status: str
    event: str | None
    terminal: bool
    matched: bool
    rule: str


UNKNOWN = StatusRule(order_status="unknown")


def _rule(where: str, raw: Any) -> StatusRule:
    if not isinstance(raw, Mapping):
        raise StatusMapError(f"{where}: expected a table with order_status")
    status = raw.get("order_status")
    if status not in ORDER_STATUSES:
        raise StatusMapError(
            f"{where}.order_status: {status!r} is not a WiredPlus order status "
            f"({', '.join(sorted(ORDER_STATUSES))})"
        )
    event = raw.get("event")
    if event is not None and event not in EVENT_TYPES:
        hint = " (WiredPlus spells it 'fullfilled')" if event == "fulfilled" else ""
        raise StatusMapError(f"{where}.event: {event!r} is not a WiredPlus event type{hint}")
    terminal = raw.get("terminal", False)
    if not isinstance(terminal, bool):
        raise StatusMapError(f"{where}.terminal: expected true or false")
    unknown = set(raw) - {"order_status", "event", "terminal"}
    if unknown:
        raise StatusMapError(f"{where}: unknown keys {sorted(unknown)}")
    return StatusRule(order_status=str(status), event=event, terminal=terminal)


@dataclass(frozen=True)
class StatusMap:
    by_id: Mapping[str, StatusRule]
    by_name: Mapping[str, StatusRule]
    by_type: Mapping[str, StatusRule]

    @classmethod
    def from_toml(cls, *texts: str) -> StatusMap:
        """Build a map from one or more TOML documents; later ones override earlier ones."""
        by_id: dict[str, StatusRule] = {}
        by_name: dict[str, StatusRule] = {}
        by_type: dict[str, StatusRule] = {}
        for text in texts:
            try:
                doc = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise StatusMapError(f"status map is not valid TOML: {exc}") from None
            extra = set(doc) - {"ids", "names", "types"}
            if extra:
                raise StatusMapError(f"status map: unknown sections {sorted(extra)}")
            for section, target, norm in (
                ("ids", by_id, str),
                ("names", by_name, lambda s: str(s).strip().lower()),
                ("types", by_type, lambda s: str(s).strip().lower()),
            ):
                table = doc.get(section, {})
                if not isinstance(table, Mapping):
                    raise StatusMapError(f"{section}: expected a table")
                for key, raw in table.items():
                    target[norm(key)] = _rule(f"{section}.{key}", raw)
        return cls(by_id=by_id, by_name=by_name, by_type=by_type)

    def resolve(self, status: SourceStatus) -> Resolution:
        """Resolve by id, then name (case-insensitive), then type; else ``unknown``."""
        for rule, how in (
            (self.by_id.get(status.id), f"id {status.id}"),
            (self.by_name.get(status.name.strip().lower()), f"name {status.name!r}"),
            (self.by_type.get(status.type), f"type {status.type}"),
        ):
            if rule is not None:
                return Resolution(rule.order_status, rule.event, rule.terminal, True, how)
        return Resolution(UNKNOWN.order_status, None, False, False, "unmatched")
