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
from celery.signals import setup_logging, worker_process_shutdown, worker_shutting_down

from config.settings import load_settings
from sync.service.dispatch import PRIORITY_STEPS

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
        # priority_steps: kombu's default, spelled out — QueueDispatcher's batch priorities
        # (sync.service.dispatch.PRIORITY_STEPS) need one Redis list per step.
        broker_transport_options={"visibility_timeout": 3600,
                                  "priority_steps": list(PRIORITY_STEPS)},
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # our lines are JSON already; never wrap them
        worker_log_color=False,
        enable_utc=True,
    )
    return app


app = make_app()


@setup_logging.connect  # type: ignore[untyped-decorator]
def _log_as_ordersync(loglevel: Any = None, **_: Any) -> None:
    """Celery's own logging setup is replaced by ours (a connected receiver stops Celery from
    installing its handlers and wrapping stdout/stderr): every line of the worker and of its
    pool processes is then one JSON line, Celery's and kombu's included. The worker's
    ``--loglevel`` still sets Celery's own loggers."""
    import logging

    from sync.logs import configure

    try:
        settings = load_settings()
        configure(settings.log_format, settings.log_level)
    except Exception:  # the settings were checked before the worker started
        configure(os.environ.get("ORDERSYNC_LOG_FORMAT", "auto"))
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)


def _say_as_log_line(msg: str, f: Any = None) -> None:
    """Stands in for ``celery.apps.worker.safe_say``, which writes plain text ("worker: Warm
    shutdown (MainProcess)") from signal handlers: one JSON line on standard error, like every
    other line. Same constraint as Celery's: one ``os.write``, no lock the interrupted code may
    hold."""
    from sync.logs import json_lines

    if not json_lines():
        _celery_safe_say(msg, *(() if f is None else (f,)))
        return
    import contextlib
    import json
    import sys
    from datetime import UTC, datetime

    line = json.dumps({"event": "celery.say", "message": msg.strip(), "level": "warning",
                       "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
    with contextlib.suppress(OSError, AttributeError, ValueError):  # as Celery: best effort
        os.write(sys.__stderr__.fileno(), (line + "\n").encode())  # type: ignore[union-attr]


_celery_safe_say: Any = None


def start_worker(broker_url: str, *, concurrency: int, loglevel: str) -> bool:
    """Run a Celery worker for the push tasks until it stops; ``True`` when it was asked to
    stop (SIGTERM/SIGINT/SIGQUIT), ``False`` when Celery gave up on its own (e.g. the broker
    vanished while it reconnected: the caller exits non-zero so the supervisor restarts it).

    No banner, no colours, Celery's logging replaced by ours (:func:`_log_as_ordersync`); the
    module's one app and the tasks it defines (no second app, no rebinding)."""
    global _celery_safe_say
    import celery.apps.worker as celery_worker

    if _celery_safe_say is None:
        _celery_safe_say = celery_worker.safe_say
        celery_worker.safe_say = _say_as_log_line
    # The broker may come from a .env file or REDIS_URL_FILE, which the module's app (made
    # at import, from the process environment) did not see: point that same app at it.
    app.conf.broker_url = broker_url
    asked = threading.Event()  # set on SIGTERM/SIGINT/SIGQUIT (warm or cold shutdown)

    def _asked(**_: Any) -> None:
        asked.set()

    worker_shutting_down.connect(_asked, weak=False)
    try:
        app.worker_main(
            ["--quiet", "--no-color", "worker", f"--loglevel={loglevel}",
             f"--concurrency={concurrency}", "--prefetch-multiplier=1", "-Q", "ordersync",
             "--without-gossip", "--without-mingle"]
        )
    finally:
        worker_shutting_down.disconnect(_asked)
    return asked.is_set()


class _WorkerRuntime:
    """What a worker process holds: one pusher per store (its own WiredPlus account and
    limiter) over one ledger, built when the store's first task arrives
    (:class:`sync.service.runtime.StorePushers`)."""

    def __init__(self) -> None:
        from sync.logs import configure, get_logger
        from sync.service.runtime import StorePushers

        settings = load_settings()
        configure(settings.log_format, settings.log_level)
        self.log = get_logger("ordersync")
        self.pushers = StorePushers(settings)

    def close(self) -> None:
        self.pushers.close()


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
        return str(runtime.pushers.for_store(store).push(store, ref).outcome)
    except FatalError as exc:
        _refused(runtime, store, exc)
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
        for result in runtime.pushers.for_store(store).push_many(store, refs):
            outcomes[str(result.outcome)] += 1
    except FatalError as exc:
        _refused(runtime, store, exc)
        raise
    return dict(outcomes)


def _refused(runtime: Any, store: str, exc: Exception) -> None:
    """A store's WiredPlus credentials were refused or it is not configured: say so; the
    next task for it rebuilds its pusher (a fixed secret is picked up without a restart).
    Its orders stay pending in the ledger; the poller's sweep sends them again."""
    runtime.pushers.forget(store)
    runtime.log.critical("worker.fatal", store=store, error=str(exc),
                         hint="fix the store's configuration")


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_runtime(**_: Any) -> None:
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
