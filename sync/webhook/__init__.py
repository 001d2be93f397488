"""The ShopWired webhook receiver.

* :mod:`sync.webhook.app` -- :func:`make_app`, a plain ASGI application (``POST
  /webhooks/shopwired``, ``GET /healthz``) that verifies, deduplicates and records deliveries;
* :mod:`sync.webhook.inbox` -- :class:`WebhookInbox`, the ledger side: delivery rows and the
  refresh requests the scheduler works through.

The receiver never fetches or pushes orders itself: it only asks for a refresh, so a webhook
is a latency hint on top of polling, never the only way a change arrives.
"""

from sync.webhook.app import WebhookApp, make_app, sign
from sync.webhook.inbox import (
    ORDER_TOPICS,
    PRIORITY_WEBHOOK,
    PendingRefresh,
    WebhookInbox,
    WebhookStats,
)

__all__ = [
    "ORDER_TOPICS",
    "PRIORITY_WEBHOOK",
    "PendingRefresh",
    "WebhookApp",
    "WebhookInbox",
    "WebhookStats",
    "make_app",
    "sign",
]
