"""``ordersync`` command line. Thin: parse arguments, build the runtime, print results.

Every command turns configuration and credential problems into one clear line on stderr and
exit code 2 — never a traceback, never a secret. Any other failure of a command is one line
too (its type and a bounded, masked message; exit 2), never a traceback.

Nothing printed is interpreted: the consoles have rich markup, emoji codes and highlighting
off, and every value that comes from order data, an API or an argument is stripped of
control characters (:func:`sync.domain.text.clean_text`) before it reaches the terminal, so
``[/]`` or an ANSI escape in a status name is shown as text, never obeyed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from config.settings import Settings, load_settings
from sync.domain.text import clean_text
from sync.errors import FatalError, SyncError
from sync.gcpolicy import tune_for_daemon


def _one_line(message: str, limit: int = 1000) -> str:
    """``message`` as safe text on one line (control characters gone, whitespace collapsed)."""
    text = " ".join(clean_text(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unexpected(exc: BaseException) -> str:
    """One line for a failure nobody planned for: its type and a bounded, masked message.
    Database errors show the driver's first line only (never the SQL or its parameters,
    which could carry customer data)."""
    from sqlalchemy.exc import SQLAlchemyError

    from sync.logs import mask_text

    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        first = str(orig if orig is not None else exc).splitlines()[0:1]
        detail = first[0] if first else ""
        hint = (" — is the schema migrated? run `ordersync migrate`"
                if "no such table" in detail or "does not exist" in detail else "")
        return f"database error ({type(exc).__name__}): {mask_text(detail)[:300]}{hint}"
    first = str(exc).splitlines()[0:1]
    detail = mask_text(first[0])[:300] if first else ""
    return f"unexpected error ({type(exc).__name__})" + (f": {detail}" if detail else "")


class _OneLineErrors(TyperGroup):
    """Every command (and sub-command) of ``ordersync``: an exception that escapes it becomes
    one line on stderr and exit 2 (see :func:`_unexpected`), never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except FatalError as exc:
            raise _fail(str(exc)) from None
        except Exception as exc:
            raise _fail(_unexpected(exc)) from None


app = typer.Typer(
    cls=_OneLineErrors,
    name="ordersync",
    help="Keep WiredPlus orders and order events in step with a ShopWired shop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(
    help="Dead letters: orders that could not be delivered.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
stores_app = typer.Typer(
    help="The stores this deployment serves: add, list, show, pause, resume, remove. "
    "Changes reach running pollers within seconds; no restart.",
    no_args_is_help=True,
)
app.add_typer(stores_app, name="stores")
out = Console(markup=False, highlight=False, emoji=False)
err = Console(stderr=True, markup=False, highlight=False, emoji=False, soft_wrap=True)


class SafeTable(Table):
    """A rich table whose titles and string cells are shown as plain, control-free text."""

    def __init__(self, *args: Any, title: str | None = None, **kw: Any) -> None:
        super().__init__(*args, title=Text(clean_text(title)) if title else None, **kw)

    def add_row(self, *renderables: RenderableType | None, **kw: Any) -> None:
        super().add_row(
            *(Text(clean_text(r)) if isinstance(r, str) else r for r in renderables), **kw
        )


def _mark(ok: bool, message: str) -> Text:
    return Text.assemble(("✓" if ok else "✗", "green" if ok else "red"), " ",
                         _one_line(message))


def _fail(message: str, code: int = 2) -> typer.Exit:
    from sync.logs import log_instead_of_text

    # A container's last words must be a log line like the others.
    if log_instead_of_text("ordersync.exit", error=message, exit_code=code):
        return typer.Exit(code)
    err.print(Text.assemble(("ordersync:", "bold red"), " ", _one_line(message)))
    return typer.Exit(code)


@contextmanager
def _friendly() -> Iterator[None]:
    try:
        yield
    except FatalError as exc:
        raise _fail(str(exc)) from None


def _settings(store: str | None = None) -> Settings:
    """The deployment's settings, or with ``store`` that store's (from the registry:
    ``default`` is the store configured by the environment)."""
    with _friendly():
        settings = load_settings()
    from sync.logs import configure

    configure(settings.log_format, settings.log_level)
    if store is None:
        return settings
    from sync.ledger.fleet import FleetLedger
    from sync.ledger.store import Ledger
    from sync.service.runtime import find_store

    ledger = Ledger(settings.database_url)
    try:
        with _friendly():
            # Embedded mode migrates itself (as `_runtime` does); a deployment is migrated
            # by `ordersync migrate`.
            ledger.create_schema() if settings.embedded else ledger.check_schema()
            return find_store(settings, FleetLedger(ledger), store)
    finally:
        ledger.dispose()


StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Which store (see `ordersync stores list`; `default` is the "
                 "one configured by the environment)."),
]


def _runtime(settings: Settings, **kw: Any) -> Any:
    from sync.service.runtime import build_runtime

    # Embedded mode (one process, usually SQLite) migrates itself; a deployment with workers
    # is migrated by `ordersync migrate` and every role refuses a schema it does not know.
    kw.setdefault("create_schema", settings.embedded)
    with _friendly():
        return build_runtime(settings, **kw)


def _serve_metrics(settings: Settings, log: Any, *, multiprocess: bool = False,
                   stores: list[str] | None = None) -> None:
    """Prometheus endpoint; a port already in use is a warning, never a crash. ``stores``
    (the ledger gauges' stores) may be a list that grows while running."""
    from sync import metrics

    try:
        metrics.serve(settings.metrics_port, database_url=settings.database_url,
                      stores=[settings.store] if stores is None else stores,
                      multiprocess=multiprocess)
    except OSError as exc:
        log.warning("metrics.unavailable", port=settings.metrics_port, error=str(exc))


class _Stopper:
    """SIGTERM/SIGINT ask the loop to stop after the current step; a second signal exits."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        def handler(signum: int, _: Any) -> None:
            if self.event.is_set():
                raise SystemExit(130)
            from sync.logs import get_logger

            get_logger("ordersync").info("daemon.stopping", signal=signum,
                                         hint="finishing the current pass")
            self.event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


@app.command()
def run() -> None:
    """Poll every store this deployment serves, forever (see `ordersync stores`). With
    REDIS_URL set it enqueues pushes for workers, else pushes in-process. Several `run`
    processes share the stores through leases in the ledger."""
    settings = _settings()
    from sync.service.runtime import build_fleet

    with _friendly():
        fleet = build_fleet(settings)
        specs = fleet.load_specs()
        if settings.stores_file is None and all(sp.origin == "environment" for sp in specs):
            # One store, configured by the environment: missing credentials are a start-up
            # error naming them, as ever (with a registry, a store is marked and retried).
            try:
                settings.require_credentials()
            except FatalError:
                fleet.ledger.ledger.dispose()
                raise
    stopper = _Stopper()
    stopper.install()
    _serve_metrics(settings, fleet.log, stores=fleet.held)
    tune_for_daemon()
    fleet.log.info(
        "daemon.start",
        owner=fleet.owner,
        mode="embedded" if settings.embedded else "broker",
        poll_interval=settings.poll_interval,
    )
    try:
        fleet.run(stopper.event)
    except FatalError as exc:
        fleet.log.critical("daemon.fatal", error=str(exc))
        raise _fail(str(exc)) from None
    finally:
        fleet.ledger.ledger.dispose()
    fleet.log.info("daemon.stop", owner=fleet.owner)


@app.command()
def poll(
    once: Annotated[bool, typer.Option("--once", help="Run one complete pass and exit.")] = False,
    store: StoreOption = None,
) -> None:
    """One complete pass (exit 0 when it succeeded). In embedded mode all pushes finish first."""
    if not once:
        raise _fail("use `ordersync poll --once` (or `ordersync run` to poll forever)")
    settings = _settings(store)
    rt = _runtime(settings)
    try:
        with _friendly():
            report = rt.poller.run_pass()
    except typer.Exit:
        raise
    except Exception as exc:
        text = (f"{type(exc).__name__}: {exc}" if isinstance(exc, SyncError)
                else _unexpected(exc))
        rt.log.error("pass.failed", error=text[:500])
        raise _fail(f"pass failed: {text}", code=1) from None
    finally:
        rt.close()
    counts = rt.ledger.counts(settings.store)
    out.print(
        f"pass done: {report.new.seen} orders in window, {report.new.new} new, "
        f"{report.new.changed + report.refresh.changed} changed, "
        f"{report.new.events + report.refresh.events} events decided, "
        f"{report.refresh.seen} refreshed; ledger: "
        + ", ".join(f"{k} {v}" for k, v in counts.orders.items())
    )
    if counts.orders.get("dead"):
        raise typer.Exit(1)


def _parse_when(value: str, name: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"{name}: {value!r} is not a date (use YYYY-MM-DD)") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@app.command()
def backfill(
    since: Annotated[str, typer.Option(help="First created date to import (YYYY-MM-DD).")],
    until: Annotated[
        str | None, typer.Option(help="Last created date (default: now).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Import history into WiredPlus. Never emits events: no customer is mailed about it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    settings = _settings(store)
    rt = _runtime(settings)
    start = _parse_when(since, "--since")
    end = _parse_when(until, "--until") if until else rt.clock.now()
    if end < start:
        raise _fail("--until is before --since")
    total_s = max((end - start).total_seconds(), 1.0)
    try:
        with Progress(
            TextColumn("[bold]backfill"), BarColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), console=err, transient=False,
        ) as progress:
            task = progress.add_task("", total=total_s)
            seen = 0

            def step(window: Any, part: Any) -> None:
                nonlocal seen
                seen += part.seen
                progress.update(
                    task,
                    completed=(window.end - start).total_seconds(),
                    description=f"{seen} orders, up to {window.end:%Y-%m-%d}",
                )

            with _friendly():
                result = rt.poller.backfill(start, end, progress=step)
    finally:
        rt.close()
    out.print(
        f"backfill done: {result.seen} orders read, {result.new} new, {result.changed} changed, "
        f"{result.skipped} skipped, 0 events"
    )


def _refresh_status(settings: Settings, ledger: Any, now: datetime) -> dict[str, Any]:
    """Open orders polling follows, how stale they are now, and the bound the poller last
    computed (cursor ``refresh_plan``)."""
    from sync.ledger.store import REFRESH_PLAN

    ages = ledger.staleness(settings.store, created_after=now - settings.refresh_horizon,
                            now=now)
    plan = json.loads(ledger.get_cursor(settings.store, REFRESH_PLAN) or "null") or {}
    bound = plan.get("bound_s")
    alert = settings.staleness_alert.total_seconds()
    return {
        "open_orders": ages.open_orders,
        "staleness_p50_s": round(ages.p50_s, 1),
        "staleness_p95_s": round(ages.p95_s, 1),
        "staleness_max_s": round(ages.max_s, 1),
        "bound_s": bound,
        "planned_at": plan.get("at"),
        "calls_per_hour": plan.get("refresh_calls_per_hour"),
        "share": plan.get("share"),
        "alert_s": alert,
        "webhooks_healthy": bool(plan.get("webhooks_healthy")),
        "exceeds_alert": bool(plan) and ages.open_orders > 0 and not plan.get("webhooks_healthy")
        and (bound is None or bound > alert),
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else (
        f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h")


def _store_state(settings: Settings) -> dict[str, Any]:
    """Pause and health of one store as ``fleet_store_states`` holds them."""
    from sync.ledger.fleet import FleetLedger
    from sync.ledger.store import Ledger

    ledger = Ledger(settings.database_url)
    try:
        st = FleetLedger(ledger).states().get(settings.store)
        lease = FleetLedger(ledger).leases().get(settings.store)
    finally:
        ledger.dispose()
    return _state_dict(st, lease)


def _state_dict(st: Any, lease: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "paused": bool(st and st.paused),
        "paused_reason": st.paused_reason if st else None,
        "health": st.health if st else "unknown",
        "health_reason": st.health_reason if st else None,
        "health_since": st.health_since.isoformat() if st and st.health_since else None,
        "retry_at": st.retry_at.isoformat() if st and st.retry_at else None,
        "polled_by": lease.owner if lease and lease.expires_at > now else None,
    }


def _state_text(state: dict[str, Any]) -> str:
    """One phrase: what is wrong with the store and why, or that it is fine."""
    if state["paused"]:
        return "paused" + (f": {state['paused_reason']}" if state["paused_reason"] else "")
    health = state["health"]
    if health in ("ok", "unknown"):
        return "ok" if state["polled_by"] or health == "ok" else "waiting for a poller"
    what = {"credentials": "credentials refused", "unreachable": "API failing",
            "config": "configuration invalid"}.get(health, health)
    retry = f" (retried {state['retry_at'][11:19]} UTC)" if state["retry_at"] else ""
    return f"{what} since {str(state['health_since'])[:19]}: {state['health_reason']}{retry}"


def _fleet_status(settings: Settings) -> list[dict[str, Any]] | None:
    """One row per store of the registry, or None when the deployment serves only the store
    configured by the environment (then ``status`` shows that store in detail)."""
    from sync.ledger.fleet import FleetLedger
    from sync.ledger.store import LAST_PASS_OK, WATERMARK, Ledger
    from sync.service.runtime import registry_loader

    ledger = Ledger(settings.database_url)
    try:
        with _friendly():
            ledger.check_schema()
            fleet = FleetLedger(ledger)
            specs = registry_loader(settings, fleet)()
        if all(sp.origin == "environment" for sp in specs):
            return None
        states, leases = fleet.states(), fleet.leases()
        now = datetime.now(UTC)
        rows = []
        for sp in specs:
            counts = ledger.counts(sp.name)
            wm = ledger.get_cursor(sp.name, WATERMARK)
            dead = (counts.orders.get("dead", 0) + counts.orders.get("skipped", 0)
                    + counts.events.get("dead", 0))
            rows.append({
                "store": sp.name, "source": sp.source, "declared_in": sp.origin,
                **_state_dict(states.get(sp.name), leases.get(sp.name)),
                "orders": counts.orders, "events": counts.events, "dead_letters": dead,
                "last_successful_pass": ledger.get_cursor(sp.name, LAST_PASS_OK),
                "watermark_lag_seconds": round((now - datetime.fromisoformat(wm))
                                               .total_seconds(), 1) if wm else None,
            })
    finally:
        ledger.dispose()
    return rows


def _print_fleet_status(rows: list[dict[str, Any]], as_json: bool) -> None:
    """One line per store, whatever the terminal's width: the state (what is wrong and why)
    comes last so that a long reason never folds the line."""
    if as_json:
        typer.echo(json.dumps({"stores": rows}, indent=2))
        return
    head = ("store", "source", "synced", "pending", "dead", "last pass", "lag", "polled by",
            "state")
    lines = [head] + [(
        r["store"], r["source"], str(r["orders"].get("synced", 0)),
        str(r["orders"].get("pending", 0)), str(r["dead_letters"]),
        str(r["last_successful_pass"] or "never")[:19].replace("T", " "),
        _age(r["watermark_lag_seconds"]), r["polled_by"] or "—", _state_text(r),
    ) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    bad = sum(1 for r in rows if r["paused"] or r["health"] not in ("ok", "unknown"))
    typer.echo(f"ordersync — {len(rows)} stores, {bad} need attention "
               "(`ordersync status --store NAME` for one in detail)")
    for line in lines:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False))
                   + "  " + line[-1])


def _status_data(settings: Settings) -> dict[str, Any]:
    from datetime import timedelta

    from sync.ledger.store import (
        LAST_PASS_CALLS,
        LAST_PASS_ERROR,
        LAST_PASS_OK,
        WATERMARK,
        Ledger,
    )
    from sync.webhook.inbox import WebhookInbox

    ledger = Ledger(settings.database_url)
    try:
        with _friendly():
            ledger.check_schema()
        counts = ledger.counts(settings.store)
        now = datetime.now(UTC)
        wh = WebhookInbox(ledger).stats(settings.store, since=now - timedelta(hours=1))
        calls_raw = ledger.get_cursor(settings.store, LAST_PASS_CALLS)
        # What `dlq list` lists, counted from the same states as the rows above.
        dead_by_kind = {"unmappable": counts.orders.get("skipped", 0),
                        "order": counts.orders.get("dead", 0),
                        "event": counts.events.get("dead", 0)}
        dead_letters = sum(dead_by_kind.values())
        wm = ledger.get_cursor(settings.store, WATERMARK)
        last_ok = ledger.get_cursor(settings.store, LAST_PASS_OK)
        last_err = ledger.get_cursor(settings.store, LAST_PASS_ERROR)
        refresh = _refresh_status(settings, ledger, now)
        problems = [
            {
                "order": r.source_order_id,
                "reference": r.order_reference,
                "state": r.state,
                "attempts": r.attempts,
                "error": r.last_error,
                "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
            }
            for r in ledger.problems(settings.store)
        ]
    finally:
        ledger.dispose()
    lag = (now - datetime.fromisoformat(wm)).total_seconds() if wm else None
    return {
        "store": settings.store,
        "mode": "embedded" if settings.embedded else "broker",
        "orders": counts.orders,
        "events": counts.events,
        "watermark": wm,
        "watermark_lag_seconds": round(lag, 1) if lag is not None else None,
        "last_successful_pass": last_ok,
        "last_pass_error": last_err,
        "last_pass_calls": json.loads(calls_raw) if calls_raw else None,
        "dead_letters": dead_letters,
        "dead_letters_by_kind": dead_by_kind,
        "refresh": refresh,
        "webhooks": {
            "configured": settings.webhook_secret()[1] is not None,
            "received_last_hour": wh.received,
            "by_topic": wh.by_topic,
            "last_received_at": wh.last_received_at.isoformat() if wh.last_received_at else None,
            "pending_refreshes": wh.pending_refreshes,
        },
        "recent_problems": problems,
    }


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    store: StoreOption = None,
) -> None:
    """Counts by state, watermark and lag, last errors. With several stores: one line per
    store (pause, health and its reason, who polls it); ``--store NAME`` for one in detail."""
    settings = _settings()
    fleet_rows = None if store else _fleet_status(settings)
    if fleet_rows is not None:
        _print_fleet_status(fleet_rows, as_json)
        return
    if store:
        settings = _settings(store)
    data = _status_data(settings)
    data["state"] = _store_state(settings)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    t = SafeTable(title=f"ordersync — store {data['store']} ({data['mode']} mode)")
    t.add_column("what")
    t.add_column("value", overflow="fold")
    state = data["state"]
    if state["paused"] or state["health"] not in ("ok", "unknown"):
        t.add_row("[bold red]store[/]", _state_text(state))
    t.add_row("orders", ", ".join(f"{k}: {v}" for k, v in data["orders"].items()))
    t.add_row("events", ", ".join(f"{k}: {v}" for k, v in data["events"].items()))
    t.add_row("watermark", str(data["watermark"] or "— (no pass yet)"))
    lag = data["watermark_lag_seconds"]
    t.add_row("watermark lag", f"{lag / 60:.1f} min" if lag is not None else "—")
    t.add_row("last successful pass", str(data["last_successful_pass"] or "never"))
    if data["last_pass_error"]:
        t.add_row("last pass error", data["last_pass_error"])
    calls = data["last_pass_calls"]
    if calls:
        t.add_row("ShopWired calls last pass",
                  f"webhook refreshes {calls['webhook_refresh_calls']}, new-order pages "
                  f"{calls['new_order_pages']}, open-order refreshes {calls['refresh_calls']}"
                  + (" (backed off: webhooks healthy)" if calls["webhooks_healthy"] else ""))
    rf = data["refresh"]
    t.add_row("open orders", f"{rf['open_orders']} re-read by polling")
    t.add_row("staleness", f"p50 {_age(rf['staleness_p50_s'])}, p95 "
                           f"{_age(rf['staleness_p95_s'])}, max {_age(rf['staleness_max_s'])}")
    if rf["planned_at"]:
        t.add_row("staleness bound", (
            f"{_age(rf['bound_s'])}: every open order re-read at least this often "
            f"({(rf['share'] or 0) * 100:.0f} % of the ShopWired rate, "
            f"~{rf['calls_per_hour'] or 0:.0f} calls/h"
            + ("; a safety net: webhooks are healthy" if rf["webhooks_healthy"] else "") + ")"
            if rf["bound_s"] is not None
            else "none: polling has no calls to spare for re-reads"))
    if rf["exceeds_alert"]:
        t.add_row("[bold red]alert[/]",
                  f"the staleness bound exceeds ORDERSYNC_STALENESS_ALERT "
                  f"({_age(rf['alert_s'])}): the shop has outgrown polling — set up webhooks "
                  "(SHOPWIRED_WEBHOOK_SECRET) or raise ORDERSYNC_REFRESH_SHARE")
    wh = data["webhooks"]
    t.add_row("webhooks", (
        f"{wh['received_last_hour']} received in the last hour, last "
        f"{wh['last_received_at'] or 'never'}, {wh['pending_refreshes']} refreshes pending"
    ) if wh["configured"] or wh["received_last_hour"] else "not configured (polling only)")
    # Dead letters are the dead orders and events *and* the unmappable (skipped) orders:
    # say which, so the total agrees with the counts above.
    kinds = data["dead_letters_by_kind"]
    t.add_row("dead letters", f"{data['dead_letters']}: {kinds['unmappable']} unmappable "
              f"(skipped), {kinds['order']} dead orders, {kinds['event']} dead events "
              "(see `ordersync dlq list`)")
    out.print(t)
    if data["recent_problems"]:
        p = SafeTable(title="orders needing attention")
        for col in ("order", "reference", "state", "attempts", "error"):
            p.add_column(col, overflow="fold")
        for row in data["recent_problems"]:
            p.add_row(
                row["order"], str(row["reference"] or ""), row["state"], str(row["attempts"]),
                (row["error"] or "")[:200],
            )
        out.print(p)


@app.command()
def show(
    order_id: Annotated[str, typer.Argument(help="ShopWired order id or reference.")],
    store: StoreOption = None,
) -> None:
    """That order's ledger record, events and history."""
    from sync.ledger.store import Ledger

    settings = _settings(store)
    ledger = Ledger(settings.database_url)
    with _friendly():
        ledger.check_schema()
    try:
        row = ledger.find_order(settings.store, order_id)
        if row is None:
            raise _fail(f"order {order_id} is not in the ledger of store {settings.store}", 1)
        events = ledger.events_for(settings.store, row.ref)
        history = ledger.history(settings.store, row.ref)
    finally:
        ledger.dispose()
    t = SafeTable(title=f"order {row.source_order_id} (reference {row.order_reference})")
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for name in (
        "ref", "state", "status_name", "order_status", "wiredplus_id", "attempts", "last_error",
        "created_at", "first_seen_at", "changed_at", "synced_at", "next_attempt_at",
    ):
        value = getattr(row, name)
        t.add_row(name, "" if value is None else str(value))
    out.print(t)
    e = SafeTable(title="events")
    for col in ("event_reference", "type", "state", "attempts", "wiredplus_id", "error"):
        e.add_column(col, overflow="fold")
    for ev in events:
        e.add_row(ev.event_reference, ev.event_type, ev.state, str(ev.attempts),
                  ev.wiredplus_id or "", ev.last_error or "")
    out.print(e)
    h = SafeTable(title="history")
    for col in ("at", "action", "detail"):
        h.add_column(col, overflow="fold")
    for log in history:
        h.add_row(log.at.isoformat(timespec="seconds"), log.action, log.detail or "")
    out.print(h)


@app.command("map")
def map_cmd(
    file: Annotated[str, typer.Argument(help="Order JSON file, or - for stdin.")] = "-",
    events: Annotated[
        bool,
        typer.Option("--events", help="Also print the events a first sight would send."),
    ] = False,
) -> None:
    """Preview: print the WiredPlus UpdateOrder body for an order of ORDERSYNC_SOURCE (no
    network). With --events: {"update_order": body, "events": [CreateOrderEvent bodies]}."""
    from sync.domain.preview import preview_order
    from sync.service.runtime import load_status_map, mapping_context

    with _friendly():
        settings = load_settings()
        status_map = load_status_map(settings)
    text = sys.stdin.read() if file == "-" else _read(file)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"input is not JSON: {exc}", 1) from None
    items = doc if isinstance(doc, list) else [doc]
    results: list[Any] = []
    failed = 0
    for raw in items:
        result = preview_order(
            raw, settings.source, status_map, mapping_context(settings), events=events
        )
        failed += bool(result.get("skipped"))
        results.append(result)
    typer.echo(json.dumps(results if isinstance(doc, list) else results[0], indent=2,
                          ensure_ascii=False))
    if failed:
        raise typer.Exit(1)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}", 1) from None


@app.command()
def check(store: StoreOption = None) -> None:
    """Check configuration, credentials and reachability of both APIs."""
    settings = _settings(store)
    ok = True
    with _friendly():  # "valid" only when the daemon would start with it
        settings.require_credentials()
    out.print(_mark(True, "configuration is valid"))
    rt = _runtime(settings)
    def probe_database() -> str:
        rt.ledger.counts(settings.store)
        return ""

    source_name = "ShopWired" if settings.source == "shopwired" else "Elastic Path"

    def probe_source() -> str:
        if rt.source.check_credentials():  # Elastic Path: its token endpoint
            return " (client credentials accepted)"
        return f" ({len(rt.source.statuses())} order statuses)"

    def probe_wiredplus() -> str:
        info = rt.wiredplus.account_info()
        return (
            f" (account {info.account_name!r}, {info.ratelimit_remaining}/"
            f"{info.ratelimit_limit} calls left this hour)"
        )

    try:
        for name, probe in (
            ("database", probe_database),
            (source_name, probe_source),
            ("WiredPlus", probe_wiredplus),
        ):
            try:
                detail = probe()
                out.print(_mark(True, f"{name} reachable{detail}"))
            except Exception as exc:
                ok = False
                text = str(exc) if isinstance(exc, FatalError) else _unexpected(exc)
                out.print(_mark(False, f"{name}: {text}"))
    finally:
        rt.close()
    if not ok:
        raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
    store: StoreOption = None,
) -> None:
    """Orders and events that could not be delivered, and orders that cannot be mapped."""
    from sync.ledger.store import Ledger

    settings = _settings(store)
    ledger = Ledger(settings.database_url)
    try:
        with _friendly():
            ledger.check_schema()
        rows = ledger.dead_letters(settings.store, limit)
    finally:
        ledger.dispose()
    if as_json:
        typer.echo(json.dumps([
            {"order": d.order_id, "reference": d.order_reference, "ref": d.ref, "kind": d.kind,
             "reason": d.reason, "attempts": d.attempts, "last_seen": d.last_seen.isoformat()}
            for d in rows
        ], indent=2))
        return
    if not rows:
        out.print("no dead letters")
        return
    t = SafeTable(title=f"dead letters — store {settings.store} ({len(rows)})")
    for col in ("order", "reference", "kind", "reason", "attempts", "last seen"):
        t.add_column(col, overflow="fold")
    for d in rows:
        t.add_row(d.order_id, d.order_reference or "", d.kind, d.reason[:300], str(d.attempts),
                  d.last_seen.isoformat(timespec="seconds"))
    out.print(t)
    out.print("replay with: ordersync dlq replay ORDER_ID… (or --all)")


@dlq_app.command("replay")
def dlq_replay(
    order_ids: Annotated[
        list[str] | None, typer.Argument(help="Order ids, references or api_reference_ids.")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    store: StoreOption = None,
) -> None:
    """Send dead letters through the normal path again (pending, attempts reset)."""
    if not order_ids and not replay_all:
        raise _fail("name the orders to replay, or use --all", 2)
    settings = _settings(store)
    rt = _runtime(settings)
    try:
        refs = rt.ledger.replay(settings.store, None if replay_all else order_ids,
                                rt.clock.now())
        if not refs:
            raise _fail("nothing to replay", 1)
        with _friendly():
            rt.dispatcher.dispatch(settings.store, refs)
        counts = rt.ledger.counts(settings.store)
    finally:
        rt.close()
    mode = "pushed now" if settings.embedded else "queued for the workers"
    out.print(f"replayed {len(refs)} order(s), {mode}; ledger: "
              + ", ".join(f"{k} {v}" for k, v in counts.orders.items()))


@contextmanager
def _fleet_ledger(settings: Settings) -> Iterator[Any]:
    from sync.ledger.fleet import FleetLedger
    from sync.ledger.store import Ledger

    ledger = Ledger(settings.database_url)
    try:
        with _friendly():
            if settings.embedded:
                ledger.create_schema()
            else:
                ledger.check_schema()
        yield FleetLedger(ledger)
    finally:
        ledger.dispose()


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _fail(f"{option} {item!r}: use FIELD=VALUE")
        pairs[key.strip().lower()] = value.strip()
    return pairs


@stores_app.command("add")
def stores_add(
    name: Annotated[str, typer.Argument(help="Store name (a-z 0-9 . _ -).")],
    source: Annotated[str, typer.Option(help="shopwired or elasticpath.")] = "shopwired",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="A setting, FIELD=VALUE (Settings field names, e.g. shopwired_api_key=…, "
        "wiredplus_api_user=…, start_date=2026-11-01, status_map=/etc/ordersync/acme.toml, "
        "shopwired_rate=2). Repeatable.")] = None,
    secret_env: Annotated[list[str] | None, typer.Option(
        "--secret-env", help="A secret read from an environment variable of the pollers and "
        "workers, FIELD=VAR (e.g. shopwired_api_secret=ACME_SW_SECRET). Repeatable.")] = None,
    secret_file: Annotated[list[str] | None, typer.Option(
        "--secret-file", help="A secret read from a file, FIELD=PATH. Repeatable.")] = None,
) -> None:
    """Add a store; running pollers start syncing it within seconds. Secrets are never given
    here: only where the pollers and workers read them (--secret-env / --secret-file)."""
    from sync.registry import parse_spec, store_settings

    settings = _settings()
    table: dict[str, Any] = {"source": source, **_pairs(set_, "--set")}
    table.update({f"{k}_env": v for k, v in _pairs(secret_env, "--secret-env").items()})
    table.update({f"{k}_file": v for k, v in _pairs(secret_file, "--secret-file").items()})
    with _friendly():
        spec = parse_spec(name, table, "ledger")
        store = store_settings(settings, spec)  # values checked now, not by the poller
    missing = ""
    try:
        store.require_credentials()
    except FatalError as exc:
        missing = str(exc)
    from sync.service.runtime import registry_loader

    with _fleet_ledger(settings) as fleet, _friendly():
        existing = {s.name: s for s in registry_loader(settings, fleet)()}
        if name in existing:
            raise _fail(f"store {name} exists already (declared in {existing[name].origin})")
        fleet.add_store(spec, datetime.now(UTC))
    out.print(f"store {name} added ({source}); running pollers pick it up within seconds")
    if missing:
        out.print(_mark(False, f"not here: {missing.replace('missing configuration: ', '')} "
                               "— the pollers and workers must have them"))


@stores_app.command("list")
def stores_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every store, where it is declared, its state and which poller polls it."""
    from sync.service.runtime import registry_loader

    settings = _settings()
    with _fleet_ledger(settings) as fleet, _friendly():
        specs = registry_loader(settings, fleet)()
        states, leases = fleet.states(), fleet.leases()
    rows = [{"store": sp.name, "source": sp.source, "declared_in": sp.origin,
             **_state_dict(states.get(sp.name), leases.get(sp.name))} for sp in specs]
    if as_json:
        typer.echo(json.dumps({"stores": rows}, indent=2))
        return
    t = SafeTable(title=f"{len(rows)} stores")
    for col in ("store", "source", "declared in", "state", "polled by"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["store"], r["source"], r["declared_in"], _state_text(r),
                  r["polled_by"] or "—")
    out.print(t)


def _find_spec(settings: Settings, fleet: Any, name: str) -> Any:
    from sync.registry import resolve_name
    from sync.service.runtime import registry_loader

    with _friendly():
        specs = registry_loader(settings, fleet)()
    name = resolve_name(name, specs)
    for sp in specs:
        if sp.name == name:
            return sp
    raise _fail(f"no store named {name!r} (stores: "
                f"{', '.join(sp.name for sp in specs) or 'none'})", 1)


@stores_app.command("show")
def stores_show(name: Annotated[str, typer.Argument(help="Store name.")]) -> None:
    """A store's settings (secrets shown as where they are read from) and state."""
    settings = _settings()
    with _fleet_ledger(settings) as fleet:
        spec = _find_spec(settings, fleet, name)
        state = _state_dict(fleet.states().get(spec.name), fleet.leases().get(spec.name))
    t = SafeTable(title=f"store {spec.name} — declared in {spec.origin}")
    t.add_column("setting")
    t.add_column("value", overflow="fold")
    if spec.origin == "environment":
        t.add_row("(all)", "the environment's settings (`ordersync config-docs`)")
    for key, value in spec.describe().items():
        t.add_row(key, value)
    t.add_row("state", _state_text(state))
    t.add_row("polled by", state["polled_by"] or "—")
    out.print(t)


@stores_app.command("pause")
def stores_pause(
    name: Annotated[str, typer.Argument(help="Store name.")],
    reason: Annotated[str | None, typer.Option(help="Shown in `status`.")] = None,
) -> None:
    """Stop polling a store (its pending pushes wait in the ledger) until `resume`."""
    settings = _settings()
    with _fleet_ledger(settings) as fleet:
        spec = _find_spec(settings, fleet, name)
        fleet.set_paused(spec.name, True, reason, datetime.now(UTC))
    out.print(f"store {spec.name} paused; its poller stops it after the current step")


@stores_app.command("resume")
def stores_resume(name: Annotated[str, typer.Argument(help="Store name.")]) -> None:
    """Poll a paused store again (within seconds)."""
    settings = _settings()
    with _fleet_ledger(settings) as fleet:
        spec = _find_spec(settings, fleet, name)
        fleet.set_paused(spec.name, False, None, datetime.now(UTC))
    out.print(f"store {spec.name} resumed")


@stores_app.command("remove")
def stores_remove(name: Annotated[str, typer.Argument(help="Store name.")]) -> None:
    """Stop serving a store added with `stores add`. Its ledger rows are kept: adding it
    again under the same name resumes where it stopped (nothing re-sent)."""
    settings = _settings()
    with _fleet_ledger(settings) as fleet:
        spec = _find_spec(settings, fleet, name)
        if spec.origin == "file":
            raise _fail(f"store {spec.name} is declared in {settings.stores_file}: remove it "
                        "there (or `stores pause` it)", 1)
        if spec.origin == "environment":
            raise _fail(f"store {spec.name} is configured by the environment: unset its "
                        "credentials (or `stores pause` it)", 1)
        fleet.remove_store(spec.name)
    out.print(f"store {spec.name} removed; its poller stops it within seconds")



@app.command("config-docs")
def config_docs(
    check_only: Annotated[
        bool, typer.Option("--check", help="Exit 1 if the files are out of date.")
    ] = False,
) -> None:
    """Regenerate docs/configuration.md and .env.example from the Settings model."""
    from sync.docsgen import render_configuration_md, render_env_example, write_all

    root = Path.cwd()
    if check_only:
        stale = [
            str(p) for p, text in (
                (root / "docs" / "configuration.md", render_configuration_md()),
                (root / ".env.example", render_env_example()),
            )
            if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        if stale:
            raise _fail("out of date: " + ", ".join(stale), 1)
        out.print("configuration docs are up to date")
        return
    for path in write_all(root):
        out.print(f"wrote {path}")


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker that pushes orders (needs REDIS_URL)."""
    settings = _settings()
    if settings.embedded:
        raise _fail("REDIS_URL is not set: workers need a broker (embedded mode needs none)")
    from sync.ledger.store import Ledger

    ledger = Ledger(settings.database_url)
    try:
        with _friendly():
            ledger.check_schema()
    finally:
        ledger.dispose()
    from sync.logs import get_logger

    # Before prometheus_client is first imported: prefork children then count into files the
    # parent's endpoint sums.
    if "prometheus_client" not in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ordersync-metrics-")
    _serve_metrics(settings, get_logger("ordersync"), multiprocess=True)
    from workers.app import start_worker

    assert settings.redis_url is not None
    tune_for_daemon()  # before the pool forks: its processes inherit it
    if not start_worker(settings.redis_url, concurrency=concurrency, loglevel=loglevel):
        # Celery returns normally after an unrecoverable error (e.g. the broker vanished
        # mid-reconnect): say so and exit non-zero, so every supervisor restarts the worker.
        raise _fail("the Celery worker stopped without being asked to (lost broker "
                    "connection?); exiting 1 so that it is restarted", 1)


@app.command()
def audit(
    since: Annotated[
        str | None, typer.Option(help="First created date (default: the sync's start date).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last created date (default: now).")] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Queue the missing orders for the next pass.")
    ] = False,
    days: Annotated[int, typer.Option(help="Window size in days.")] = 7,
    store: StoreOption = None,
) -> None:
    """Compare the shop's order counts per created-date window with the ledger; list what is
    missing. Exit 1 when something is missing (and not repaired)."""
    from datetime import timedelta

    settings = _settings(store)
    rt = _runtime(settings)
    try:
        now = rt.clock.now()
        start = _parse_when(since, "--since") if since else settings.effective_start(now)
        end = _parse_when(until, "--until") if until else now
        with _friendly():
            report = rt.poller.auditor.run(start, end, chunk=timedelta(days=days),
                                           repair=repair)
    finally:
        rt.close()
    t = SafeTable(title=f"audit — store {settings.store}")
    for col in ("window", "in shop", "in ledger", "missing"):
        t.add_column(col, justify="left" if col == "window" else "right")
    for w in report.windows:
        style = "red" if w.drift > 0 else ("yellow" if w.drift < 0 else "")
        t.add_row(f"{w.window.start:%Y-%m-%d %H:%M} → {w.window.end:%Y-%m-%d %H:%M}",
                  str(w.shop), str(w.ledger), ", ".join(w.missing[:10])
                  + (" …" if len(w.missing) > 10 else ""), style=style)
    out.print(t)
    out.print(f"{len(report.missing)} missing, {report.calls} ShopWired calls"
              + (f"; {report.repaired} queued for the next pass" if repair else ""))
    if report.missing and not repair:
        raise typer.Exit(1)


@app.command()
def webhook(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default ORDERSYNC_WEBHOOK_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port (default ORDERSYNC_WEBHOOK_PORT).")
    ] = None,
) -> None:
    """Receive webhooks for every store (GET /healthz too). Put HTTPS in front.

    Per store: POST /webhooks/shopwired/STORE or /webhooks/elasticpath/STORE, verified with
    that store's secret (shopwired_webhook_secret / elasticpath_webhook_secret in its
    registry entry); an unknown store is 404. The store configured by the environment is
    also served on POST /webhooks/shopwired (SHOPWIRED_WEBHOOK_SECRET) or
    /webhooks/elasticpath (ELASTICPATH_WEBHOOK_SECRET). Each delivery is verified, recorded
    in the ledger and answered 200 at once; it only asks for a refresh: the store's poller
    re-reads the order by id within about a second.
    """
    settings = _settings()
    import uvicorn

    from sync.clock import SystemClock
    from sync.ledger.fleet import FleetLedger
    from sync.ledger.store import Ledger
    from sync.logs import get_logger
    from sync.registry import environment_store
    from sync.service.runtime import WebhookDirectory
    from sync.webhook import WebhookInbox, WebhookTarget, make_multi_app
    from sync.webhook.serve import BODY_TIMEOUT, quiet_asyncio_floods, server_options

    ledger = Ledger(settings.database_url)
    directory = None
    try:
        with _friendly():
            if settings.embedded:
                ledger.create_schema()
            else:
                ledger.check_schema()
            directory = WebhookDirectory(settings, FleetLedger(ledger))
        secret_name, secret = settings.webhook_secret()
        default = (WebhookTarget(settings.store, settings.source, secret.get_secret_value())
                   if secret is not None else None)
        if default is None and not len(directory):
            raise _fail(
                f"{secret_name} is not set and no store of the registry has a webhook "
                "secret: the receiver cannot verify deliveries"
                + ("" if settings.source == "shopwired" or environment_store(settings) is None
                   else f" (ORDERSYNC_SOURCE={settings.source})")
            )
        receiver = make_multi_app(
            inbox=WebhookInbox(ledger), directory=directory, default=default,
            clock=SystemClock(), log=get_logger("ordersync.webhook"),
            max_body=settings.webhook_max_body, replay_window=settings.webhook_replay_window,
            body_timeout=BODY_TIMEOUT,
        )
        quiet_asyncio_floods()
        uvicorn.run(
            receiver, host=host or settings.webhook_host, port=port or settings.webhook_port,
            **server_options(),
        )
    finally:
        if directory is not None:
            directory.close()
        ledger.dispose()


def _last_pass_ok(settings: Settings, ledger: Any) -> str | None:
    """The latest successful pass of any store the deployment serves (the environment
    store's alone when it is the only one): the pollers are alive and polling. Which store
    is unwell is for `status` to say."""
    from sync.ledger.fleet import FleetLedger
    from sync.ledger.store import LAST_PASS_OK
    from sync.service.runtime import registry_loader

    fleet = FleetLedger(ledger)
    names = [sp.name for sp in registry_loader(settings, fleet)()] or [settings.store]
    paused = {n for n, st in fleet.states().items() if st.paused}
    times = [t for n in names if n not in paused
             for t in [ledger.get_cursor(n, LAST_PASS_OK)] if t]
    return max(times, key=datetime.fromisoformat) if times else None


@app.command()
def health(
    max_age: Annotated[
        float | None,
        typer.Option(help="Seconds since the last successful pass (default 3 polls + 5 min)."),
    ] = None,
    no_pass_check: Annotated[
        bool, typer.Option("--no-pass-check", help="Only check database and broker (workers).")
    ] = False,
) -> None:
    """Exit 0 when healthy: database and broker reachable, a store's last successful pass
    recent enough (with several stores: the latest of any store's)."""
    from sync.ledger.store import Ledger

    settings = _settings()
    problems: list[str] = []
    ledger = Ledger(settings.database_url)
    last_ok = None
    try:
        ledger.check_schema()
        last_ok = _last_pass_ok(settings, ledger)
    except FatalError as exc:
        problems.append(str(exc))
    except Exception as exc:
        problems.append(f"database unreachable: {type(exc).__name__}")
    finally:
        ledger.dispose()
    if settings.redis_url:
        try:
            import redis

            redis.Redis.from_url(settings.redis_url, socket_timeout=3).ping()
        except Exception as exc:
            problems.append(f"broker unreachable: {type(exc).__name__}")
    if not no_pass_check and not problems:
        limit = max_age if max_age is not None else settings.poll_interval * 3 + 300
        if last_ok is None:
            problems.append("no successful pass yet")
        else:
            age = (datetime.now(UTC) - datetime.fromisoformat(last_ok)).total_seconds()
            if age > limit:
                problems.append(f"last successful pass was {age:.0f}s ago (limit {limit:.0f}s)")
    if problems:
        raise _fail("unhealthy: " + "; ".join(problems), 1)
    out.print("healthy")


@app.command()
def migrate() -> None:
    """Create or upgrade the ledger schema (Alembic); safe to run from several containers."""
    from sync.ledger import schema

    settings = _settings()
    with _friendly():
        schema.upgrade(settings.database_url)
    where = schema.redact_url(settings.database_url)
    from sync.logs import get_logger, json_lines

    if json_lines():  # a deployment's one-shot service: its output is log lines too
        get_logger("ordersync").info("ledger.migrated", revision=schema.HEAD, database=where)
        return
    out.print(f"ledger schema is at revision {schema.HEAD} ({where})")


@app.command()
def sandbox(
    orders: Annotated[int, typer.Option(help="Orders to generate.")] = 300,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 7,
    activity: Annotated[float, typer.Option(help="Seconds between activity ticks (0 = off).")] = 5,
    port_shopwired: Annotated[int, typer.Option(help="ShopWired port (0 = free).")] = 8081,
    port_wiredplus: Annotated[int, typer.Option(help="WiredPlus port (0 = free).")] = 8082,
    host: Annotated[str, typer.Option(
        help="Listen address. Containers on Linux reach this machine only on the docker0 "
             "address (`ip -4 addr show docker0`, usually 172.17.0.1); 0.0.0.0 = every "
             "address (also the network's: the sandbox has no real secrets, but mind it).")
    ] = "127.0.0.1",
    print_env: Annotated[
        bool, typer.Option("--print-env", help="Only print the export lines, serve nothing.")
    ] = False,
    shopwired_latency: Annotated[
        float, typer.Option(help="Seconds each ShopWired request takes (real APIs: ~0.15).")
    ] = 0.0,
    wiredplus_latency: Annotated[
        float, typer.Option(help="Seconds each WiredPlus request takes (real APIs: ~0.2).")
    ] = 0.0,
    latency_jitter: Annotated[
        float, typer.Option(help="± seconds of random jitter on each request's latency.")
    ] = 0.0,
    max_update_rows: Annotated[
        int, typer.Option(help="WiredPlus BulkOrderUpdate records per request.")
    ] = 50,
    bulk: Annotated[
        bool, typer.Option(help="Whether the WiredPlus account accepts BulkOrderUpdate "
                                "(--no-bulk: refused with 403).")
    ] = True,
    bulk_cost: Annotated[
        str, typer.Option(help="BulkOrderUpdate costs 'request' (one budget unit) or "
                               "'record' (one per order).")
    ] = "request",
    print_dotenv: Annotated[
        bool, typer.Option("--print-dotenv",
                           help="Only print the settings in .env form for docker compose "
                                "(URLs at host.docker.internal), serve nothing.")
    ] = False,
    stores: Annotated[int, typer.Option(
        help="Serve this many shops and WiredPlus accounts (shop01…) on two free ports and "
             "write --registry and --env-file for `ordersync run` (0 = one shop).")] = 0,
    registry: Annotated[Path, typer.Option(help="With --stores: the registry file to write.")
                        ] = Path("stores.toml"),
    env_file: Annotated[Path, typer.Option(
        help="With --stores: the file of `export` lines holding the secrets.")
    ] = Path("stores.env"),
    limits: Annotated[bool, typer.Option(
        help="With --stores: enforce each shop's and account's rate limits.")] = True,
    big_store_orders: Annotated[int, typer.Option(
        help="With --stores: also a store 'big' holding this many orders.")] = 0,
) -> None:
    """Serve the ShopWired and WiredPlus simulators until interrupted."""
    if stores:
        from sync.service.demo_fleet import serve_fleet

        serve_fleet(stores=stores, orders=orders, seed=seed, limits=limits, registry=registry,
                    env_file=env_file, big_store_orders=big_store_orders, console=Console())
        return
    from sync.sandbox import Sandbox
    from sync.sandbox.server import DOCKER_HOST_NAME, client_host, connection_env
    from sync.service.demo import serve_sandbox

    if print_env or print_dotenv:
        sb = Sandbox(seed=seed)  # the credentials only: nothing is generated or served
        url_host = DOCKER_HOST_NAME if print_dotenv else client_host(host)
        typer.echo(connection_env(
            (url_host, port_shopwired), (url_host, port_wiredplus), dotenv=print_dotenv,
            shopwired_credentials=sb.shopwired_credentials,
            wiredplus_credentials=sb.wiredplus_credentials,
        ))
        return

    if min(shopwired_latency, wiredplus_latency, latency_jitter) < 0:
        raise _fail("latencies and jitter must be >= 0 seconds")
    if bulk_cost not in ("request", "record") or max_update_rows < 1:
        raise _fail("--bulk-cost must be request or record; --max-update-rows >= 1")
    # The sandbox prints only text of its own (the generator's data), so its console
    # keeps rich markup for its styling.
    serve_sandbox(orders=orders, seed=seed, activity=activity,
                  ports=(port_shopwired, port_wiredplus), console=Console(), host=host,
                  options={"shopwired_latency": shopwired_latency,
                           "wiredplus_latency": wiredplus_latency,
                           "latency_jitter": latency_jitter,
                           "max_update_rows": max_update_rows, "bulk_enabled": bulk,
                           "bulk_cost": bulk_cost})


@app.command()
def demo(
    orders: Annotated[int, typer.Option(help="Orders the sandbox shop holds.")] = 800,
    passes: Annotated[int, typer.Option(help="Passes to run after the first import.")] = 3,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 7,
    source: Annotated[
        str, typer.Option(help="Which simulated shop: shopwired or elasticpath.")
    ] = "shopwired",
    stores: Annotated[int, typer.Option(
        help="Many stores, one deployment: this many sandbox shops, each with its own "
             "WiredPlus account, plus one added while running (0 = the one-store demo).")
    ] = 0,
) -> None:
    """Run the whole sync end to end against the built-in sandbox, then print a summary."""
    from sync.service.demo import run_demo

    if source not in ("shopwired", "elasticpath"):
        raise _fail("--source must be shopwired or elasticpath")
    if stores:
        from sync.service.demo_fleet import run_fleet_demo

        if not 1 <= stores <= 100:
            raise _fail("--stores must be between 1 and 100")
        with _friendly():
            code = run_fleet_demo(stores=stores, orders=min(orders, 400), seed=seed,
                                  console=Console())
        raise typer.Exit(code)
    with _friendly():
        code = run_demo(orders=orders, passes=passes, seed=seed, console=Console(),
                        source=source)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except FatalError as exc:  # pragma: no cover - last resort
        err.print(f"ordersync: {exc}")
        sys.exit(2)

