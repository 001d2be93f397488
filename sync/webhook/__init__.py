"""The webhook receiver (ShopWired, or Elastic Path integrations).

* :mod:`sync.webhook.app` -- :func:`make_app`, a plain ASGI application for one store
  (``POST /webhooks/shopwired`` or ``POST /webhooks/elasticpath``, ``GET /healthz``) that
  verifies, deduplicates and records deliveries, and :func:`make_multi_app`, the same for
  many stores (``POST /webhooks/{shopwired|elasticpath}/{store}``, each store's
  :class:`WebhookTarget` looked up per request);
* :mod:`sync.webhook.inbox` -- :class:`WebhookInbox`, the ledger side: delivery rows and the
  refresh requests the scheduler works through.

The receiver never fetches or pushes orders itself: it only asks for a refresh, so a webhook
is a latency hint on top of polling, never the only way a change arrives.
"""

from sync.webhook.app import (
    ELASTICPATH_WEBHOOK_PATH,
    WEBHOOK_PATH,
    WEBHOOK_PATHS,
    WebhookApp,
    WebhookDirectory,
    WebhookSource,
    WebhookTarget,
    make_app,
    make_multi_app,
    sign,
)
from sync.webhook.inbox import (
    ELASTICPATH_ORDER_TOPICS,
    ORDER_TOPICS,
    PRIORITY_WEBHOOK,
    PendingRefresh,
    WebhookInbox,
    WebhookStats,
)

__all__ = [
    "ELASTICPATH_ORDER_TOPICS",
    "ELASTICPATH_WEBHOOK_PATH",
    "ORDER_TOPICS",
    "PRIORITY_WEBHOOK",
    "WEBHOOK_PATH",
    "WEBHOOK_PATHS",
    "PendingRefresh",
    "WebhookApp",
    "WebhookDirectory",
    "WebhookInbox",
    "WebhookSource",
    "WebhookStats",
    "WebhookTarget",
    "make_app",
    "make_multi_app",
    "sign",
]
