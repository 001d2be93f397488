"""How the long-running processes (``ordersync run``, ``ordersync worker``) use CPython's
cyclic garbage collector.

Contract: :func:`tune_for_daemon` is called once, after a process has built its wiring and
before it starts its loop. It moves everything built so far (modules, settings, engines,
mappers, the Celery app) out of the collector's reach (:func:`gc.freeze`) and raises the
collection thresholds to :data:`DAEMON_THRESHOLDS`. Nothing else changes: reference counting
still frees almost every object at once; only *cycles* wait longer to be found.

Why: the collector runs a young collection every 700 net allocations of container objects.
A poller decodes pages of 100 orders (about 10,000 dicts and lists each) and builds ledger
rows for them, so at the default thresholds the collector ran about 1,200 times per 3,000
first-sight orders, scanning the page being processed again and again, and took about a
quarter of the ingest's CPU (``perf`` on a fleet poller: ~20 % of its CPU in
``gc_collect_main`` and its visitors). With :data:`DAEMON_THRESHOLDS` a young collection runs
every 50,000 allocations, when the pages it would have scanned are mostly freed already.

What it costs: cyclic garbage (rare here: SQLAlchemy sessions, tracebacks) lives until the
next collection, at most 50,000 container objects later — a few MB at worst.
"""

from __future__ import annotations

import gc

DAEMON_THRESHOLDS = (50_000, 20, 10)
"""Young-generation allocations between collections; young collections between middle
ones; middle collections between full ones (CPython's defaults: 700, 10, 10)."""


def tune_for_daemon() -> None:
    """Freeze what start-up built and raise the thresholds (see the module docstring)."""
    gc.collect()  # what start-up left as garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(*DAEMON_THRESHOLDS)
