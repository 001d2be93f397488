"""The Celery app and its task: push one order (then its events) from the ledger.

Reliability settings (see docs/ARCHITECTURE.md): late acks, requeue when a worker process dies,
prefetch 1, JSON only. Tasks are idempotent — they only say "look at order X": the ledger's
lease and state decide whether anything is sent — so redelivery is harmless.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

from config.settings import load_settings

PUSH_TASK = "ordersync.push_order"
PUSH_MANY_TASK = "ordersync.push_orders"


def make_app(broker_url: str | None = None) -> Celery:
    url = broker_url or os.environ.get("REDIS_URL") or "memory://"
    app = Celery("ordersync", broker=url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue="ordersync",
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


app = make_app()

class _WorkerRuntime:
    """What a worker process holds: the pusher (ledger + WiredPlus), built once per process.
    It serves every store and source in the ledger and needs only WiredPlus credentials."""

    def __init__(self) -> None:
        from sync.logs import configure, get_logger
        from sync.service.runtime import build_pusher

        settings = load_settings()
        configure(settings.log_format, settings.log_level)
        self.log = get_logger("ordersync")
        self.pusher, self._ledger, self._wiredplus = build_pusher(settings, create_schema=False)

    def close(self) -> None:
        self._wiredplus.close()
        self._ledger.dispose()


_runtime: Any = None
_lock = threading.Lock()


def _get_runtime() -> Any:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _WorkerRuntime()
        return _runtime


@app.task(name=PUSH_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
def push_order(store: str, ref: str) -> str:
    """Push order ``ref`` of ``store`` if it is due; returns the outcome."""
    from sync.errors import FatalError

    runtime = _get_runtime()
    try:
        return str(runtime.pusher.push(store, ref).outcome)
    except FatalError as exc:
        runtime.log.critical("worker.fatal", error=str(exc), hint="fix the configuration")
        raise


@app.task(name=PUSH_MANY_TASK, acks_late=True, reject_on_worker_lost=True,  # type: ignore[untyped-decorator]
          ignore_result=True)
def push_orders(store: str, refs: list[str]) -> dict[str, int]:
    """Push several orders of ``store`` as one batch (one broker message, one claim statement,
    one closing transaction: :meth:`sync.service.push.Pusher.push_many`). Redelivered after a
    crash, the ones already synced are simply not due any more."""
    from collections import Counter

    from sync.errors import FatalError

    runtime = _get_runtime()
    outcomes: Counter[str] = Counter()
    try:
        for result in runtime.pusher.push_many(store, refs):
            outcomes[str(result.outcome)] += 1
    except FatalError as exc:
        runtime.log.critical("worker.fatal", error=str(exc), hint="fix the configuration")
        raise
    return dict(outcomes)


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_runtime(**_: Any) -> None:
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
