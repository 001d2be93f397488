"""Chaos run for the second source (issue 7): a real Elastic Path deployment under faults.

The same shape as ``test_chaos.py``, smaller (CI budget): real processes — ``ordersync
migrate``, two ``ordersync worker`` (Celery, concurrency 2) and one ``ordersync run`` poller
with ``ORDERSYNC_SOURCE=elasticpath`` — PostgreSQL (a private schema) and Redis (db 12) on
loopback, the Elastic Path simulator and the WiredPlus simulator served over HTTP from this
process on a SystemClock, and a shop that keeps living (payments, shipments, cancellations,
refunds, new orders; each bumps ``updated_at`` as EP does) the whole time.

Faults, one phase each (each phase starts with a burst of shop activity):

1. Elastic Path: 429 storms (with ``Retry-After``), bare 429s and 5xx, and every access token
   expired, then revoked, mid-run — during the first import and the passes after it;
2. ``SIGKILL`` of a worker (main process and pool children), restarted each time, ≥ 10 times;
3. Redis ``FLUSHALL`` and a server restart;
4. WiredPlus: 30 % 5xx, 429 storms with ``Retry-After``, 10 % responses lost after the write.

(A PostgreSQL restart is covered by the ShopWired run.) Then the shop stops changing, the
faults are off, and the system must drain; the verdict is
``chaos_oracle_elasticpath.verify_ep``. The figures go to
``tests/chaos/last_run_elasticpath.json``. Whatever happens, the subprocesses are stopped and
Redis is running again when the test ends.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sync.clock import SystemClock
from sync.ledger.models import EventRow, EventState, OrderRow, OrderState
from sync.ledger.store import LAST_PASS_OK, Ledger
from sync.sandbox import Sandbox
from sync.sandbox.elasticpath import ElasticPathSimulator
from sync.sandbox.server import serve

from .chaos_oracle import (  # type: ignore[import-not-found]
    LedgerMonitor,
    Phase,
    read_passes,
    retry,
    retry_gaps,
)
from .chaos_oracle_elasticpath import (  # type: ignore[import-not-found]
    EPActivity,
    EPWorld,
    invalid_copy,
    verify_ep,
)
from .chaos_services import (  # type: ignore[import-not-found]
    Fleet,
    Supervisor,
    pass_covers,
    redis_cli,
    redis_db_flushed,
    redis_phase,
    redis_up,
    results_table,
    services_restored,
    sigkill_phase,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

RESULTS = Path(__file__).parent / "last_run_elasticpath.json"
REDIS_DB = 12
STORE = "elasticpath"
SEED = 47
KILLS = 10
FIRST_SIGHT = timedelta(hours=24)
DRAIN_DEADLINE_S = 240.0  # the default 60 s poll interval and 2 min lease after a kill

# Product defaults (issue 11): poll interval, settle delay, retry schedule, attempts and lease
# are what a user gets. The hourly limit is the sandbox account's budget, not a shrunk knob.
SETTINGS = {
    "ORDERSYNC_WIREDPLUS_HOURLY_LIMIT": "1000000",
    "ORDERSYNC_METRICS_PORT": "0",
    "ORDERSYNC_LOG_FORMAT": "json",
    "ORDERSYNC_LOG_LEVEL": "info",
}


# ------------------------------------------------------------------------------ helpers


def _env(ep: ElasticPathSimulator, ep_url: str, sb: Sandbox, db_url: str, redis_url: str,
         start: datetime) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPWIRED_", "WIREDPLUS_", "ORDERSYNC_", "ELASTICPATH_"))
           and k not in ("DATABASE_URL", "REDIS_URL")}
    user, wkey = sb.wiredplus_credentials
    env.update(
        ORDERSYNC_SOURCE="elasticpath", ELASTICPATH_BASE_URL=ep_url,
        ELASTICPATH_CLIENT_ID=ep.client_id, ELASTICPATH_CLIENT_SECRET=ep.client_secret,
        WIREDPLUS_BASE_URL=sb.wiredplus_url, WIREDPLUS_API_USER=user, WIREDPLUS_API_KEY=wkey,
        DATABASE_URL=db_url, REDIS_URL=redis_url, ORDERSYNC_START_DATE=start.isoformat(),
        **SETTINGS,
    )
    return env


def _sleep_until(t0: float, at: float) -> None:
    time.sleep(max(0.0, t0 + at - time.monotonic()))


def _pass_lines(fleet: Fleet) -> dict[str, int]:
    """Completed and failed passes of the poller so far (from its JSON log)."""
    text = (fleet.logdir / "poller.log").read_text(encoding="utf-8", errors="replace")
    return {"done": text.count('"pass.done"'), "failed": text.count('"pass.step_failed"')}


def _drained(ledger: Ledger, t_stop: float) -> bool:
    """A full pass started after the shop stopped changing (its updated_at window covers every
    change), and nothing is pending."""
    last_ok = ledger.get_cursor(STORE, LAST_PASS_OK)
    if last_ok is None or not pass_covers(datetime.fromisoformat(last_ok).timestamp(), t_stop):
        return False
    with ledger.session() as s:
        pending = s.scalar(select(func.count()).select_from(OrderRow).where(
            OrderRow.store == STORE, OrderRow.state == OrderState.PENDING))
        pending_ev = s.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.store == STORE, EventRow.state == EventState.PENDING))
    return pending == 0 and pending_ev == 0


# ------------------------------------------------------------------------ the chaos run


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(900)
def test_chaos_elasticpath_every_order_and_event_delivered_exactly_once(
    pg_url: str, tmp_path: Path
) -> None:
    if not redis_up():
        pytest.fail("Redis is not reachable on 127.0.0.1:6379")
    t_begin = time.monotonic()
    timings: dict[str, float] = {}
    rng = random.Random(SEED)
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    redis_cli("-n", str(REDIS_DB), "FLUSHDB")

    clock = SystemClock()
    ep = ElasticPathSimulator(clock=clock, seed=SEED, rate_limit_per_second=25,
                              enforce_rate_limit=True)
    now = clock.now()
    start = (now - timedelta(days=30)).replace(microsecond=0)
    # History: created and last changed well before the start date (updated ≤ created + 72 h).
    history = ep.generate_orders(
        300, created_between=(now - timedelta(days=150), now - timedelta(days=34)))
    # In scope: a month of orders and a busy last day (events at first sight). Plus a few old
    # orders changed after the start date: EP's updated_at scan lists them, and they must be
    # ignored (created before the start date: never imported).
    in_scope = ep.generate_orders(
        250, created_between=(now - timedelta(days=28), now - timedelta(days=2)))
    in_scope += ep.generate_orders(
        60, created_between=(now - timedelta(hours=20), now - timedelta(minutes=3)))
    old_changed = ep.generate_orders(
        12, created_between=(now - timedelta(days=60), now - timedelta(days=40)))
    for k, oid in enumerate(old_changed):
        ep.touch(oid, at=now - timedelta(days=3, minutes=k))
    invalid = [invalid_copy(ep, in_scope[i], created=now - timedelta(days=1, minutes=i),
                            new_id=f"invalid-no-email-{i}") for i in (3, 4)]
    assert all(ep.updated_at(o) < start for o in history)
    activity = EPActivity(ep, in_scope, seed=SEED, interval=1.0, changes=3, new=1)
    phases: list[Phase] = []
    results: dict[str, Any] = {}
    ep_server = serve(ep.handle)
    sb = Sandbox(seed=SEED, clock=clock, hourly_limit=1_000_000)

    try:
        with services_restored(), redis_db_flushed(REDIS_DB), sb:
            logdir = tmp_path / "logs"
            logdir.mkdir()
            env = _env(ep, ep_server.url, sb, pg_url, redis_url, start)
            with Fleet(env, logdir, tmp_path) as fleet, \
                    LedgerMonitor(pg_url, STORE) as monitor:
                supervisor = Supervisor(fleet)
                mig = fleet.run("migrate")
                assert mig.returncode == 0, mig.stderr[-2000:]
                for i in (0, 1):
                    fleet.start_worker(i, concurrency=2)
                for i in (0, 1):
                    assert fleet.wait_ready(f"worker{i}"), fleet.tail(f"worker{i}")
                timings["setup_s"] = time.monotonic() - t_begin

                # -- 1. Elastic Path: 429 storms, 429s/5xx, tokens expired and revoked ------
                phase = monitor.begin("elasticpath",
                                      "Elastic Path 429 storms + 429/5xx + tokens expired/revoked")
                phases.append(phase)
                f = ep.faults
                resp0, calls0 = dict(ep.responses), dict(ep.calls)
                # 30 % of requests answered 429 (no Retry-After) or 5xx; storms (429 with
                # Retry-After) during and after the first import; EP's own limiter at 4/s for a
                # while (a store slower than ELASTICPATH_RATE: bare 429s); every token expired,
                # then revoked, then expired again while the poller is busy.
                f.error_statuses, f.error_rate = (429, 500, 502, 503), 0.3
                f.throttle_storm_until = ep.clock.monotonic() + 3
                ep.rate_limit_per_second = 4
                storms, token_faults = 1, {"expired": 0, "revoked": 0}
                t1 = time.monotonic()
                fleet.start_poller()
                activity.start()
                _sleep_until(t1, 6)
                ep.expire_tokens()
                token_faults["expired"] += 1
                _sleep_until(t1, 8)
                ep.rate_limit_per_second = 25
                _sleep_until(t1, 10)
                f.throttle_storm_until = ep.clock.monotonic() + 3
                storms += 1
                _sleep_until(t1, 12)
                ep.revoke_tokens()
                token_faults["revoked"] += 1
                _sleep_until(t1, 15)
                ep.expire_tokens()
                token_faults["expired"] += 1
                _sleep_until(t1, 18)
                f.clear()
                resp = ep.responses
                phase.injected = {
                    "429s": resp[429] - resp0.get(429, 0), "storms": storms,
                    "5xx": sum(resp[s] - resp0.get(s, 0) for s in (500, 502, 503)),
                    "401s": resp[401] - resp0.get(401, 0),
                    "tokens expired": token_faults["expired"],
                    "tokens revoked": token_faults["revoked"],
                    "new tokens": ep.calls["POST /oauth/access_token"]
                    - calls0.get("POST /oauth/access_token", 0),
                }
                phase_passes = _pass_lines(fleet)
                monitor.end(phase)
                supervisor.check(phase.name)

                # -- 2. SIGKILL workers; 3. Redis FLUSHALL + restart --------------------------
                sigkill_phase(fleet, monitor, phases, supervisor, activity, rng, kills=KILLS,
                              burst=(40, 5), small_burst=(15, 2))
                redis_phase(monitor, phases, supervisor, activity, burst=(40, 5), before_s=2,
                            after_s=3)

                # -- 4. WiredPlus: 5xx, 429 storms, lost responses --------------------------
                phase = monitor.begin("wiredplus",
                                      "WiredPlus 30 % 5xx + 429 storms + drop-after-write")
                phases.append(phase)
                wpf = sb.wiredplus.faults
                wresp0 = dict(sb.wiredplus.responses)
                dropped0 = sb.wiredplus.dropped_responses
                now = clock.now()
                invalid.append(invalid_copy(ep, in_scope[5], created=now,
                                            new_id="invalid-no-email-midrun"))
                activity.burst(40, 5)
                wpf.error_rate, wpf.drop_after_write_rate = 0.3, 0.1
                wstorms = 0
                t4 = time.monotonic()
                for at in (2, 8, 14):
                    _sleep_until(t4, at)
                    wpf.throttle_storm_until = sb.wiredplus.clock.monotonic() + 3
                    wstorms += 1
                _sleep_until(t4, 20)
                wpf.clear()
                wresp = sb.wiredplus.responses
                phase.injected = {
                    "5xx": sum(wresp[s] - wresp0.get(s, 0) for s in (500, 502, 503)),
                    "429s": wresp[429] - wresp0.get(429, 0), "storms": wstorms,
                    "dropped": sb.wiredplus.dropped_responses - dropped0,
                }
                monitor.end(phase)
                supervisor.check(phase.name)
                timings["faults_s"] = time.monotonic() - t_begin - timings["setup_s"]

                # -- drain -----------------------------------------------------------------
                activity.stop()
                assert activity.stopped_at is not None
                t_stop = activity.stopped_at
                drain_ledger = Ledger(pg_url)
                try:
                    drained = wait_for(lambda: _drained(drain_ledger, t_stop),
                                        DRAIN_DEADLINE_S, step=1.0)
                    supervisor.check("drain")
                finally:
                    drain_ledger.dispose()
                timings["drain_s"] = time.time() - t_stop
                monitor.settle()
                blockers = {p.name: monitor.blockers(p) for p in phases if p.drained_at is None}
                codes = fleet.stop_all()

            status = fleet.run("status", "--json")
            dlq = fleet.run("dlq", "list", "--json")
            passes = read_passes(logdir / "poller.log")
            pass_counts = _pass_lines(fleet)
            ledger = Ledger(pg_url)
            try:
                world = retry(lambda: EPWorld.capture(ep, sb.wiredplus, ledger, STORE))
            finally:
                ledger.dispose()
            dead_letters = json.loads(dlq.stdout) if dlq.returncode == 0 else None
            verdict = verify_ep(
                world, start=start, activity=activity.by_order(), invalid_ids=invalid,
                dead_letters=dead_letters, first_sight_window=FIRST_SIGHT, phases=phases,
            )
            timings["total_s"] = time.monotonic() - t_begin
            status_data = json.loads(status.stdout) if status.returncode == 0 else {}
            durations = [p.end - p.start for p in passes]
            results = {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "seed": SEED,
                "start_date": start.isoformat(),
                "settings": SETTINGS | {"workers": "2 x concurrency 2", "redis_db": REDIS_DB},
                "timings_s": {k: round(v, 1) for k, v in timings.items()},
                "drained": drained,
                "passes": {
                    "completed": len(passes), "failed_steps": pass_counts["failed"],
                    "completed_during_ep_faults": phase_passes["done"],
                    "failed_steps_during_ep_faults": phase_passes["failed"],
                    "median_s": round(sorted(durations)[len(durations) // 2], 1)
                    if durations else None,
                    "max_s": round(max(durations), 1) if durations else None,
                },
                "elasticpath_calls": dict(ep.calls),
                "elasticpath_responses": {str(k): v for k, v in ep.responses.items()},
                "activity_changes": len(activity.changes),
                "activity_new_orders": len(activity.appeared),
                "figures": verdict.figures,
                "phases": verdict.phase_rows,
                "status": {k: status_data.get(k) for k in ("orders", "events")},
                "cli_failures": {name: {"code": r.returncode, "stderr": r.stderr[-1500:]}
                                 for name, r in (("status", status), ("dlq", dlq))
                                 if r.returncode != 0},
                "process_exits_during_run": supervisor.exits,
                "exit_codes_on_sigterm": codes,
                "undrained_phase_blockers": blockers,
                "retry_gaps": retry_gaps(sorted(logdir.glob("worker*.log"))),
                "violations": {k: v[:50] for k, v in verdict.violations.items() if v},
                "table": results_table(verdict.phase_rows, verdict.figures, timings["drain_s"]),
            }
            RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n",
                               encoding="utf-8")
            print("\n" + results["table"])
            print(json.dumps({k: results[k] for k in ("timings_s", "figures", "passes")},
                             indent=1))
    finally:
        activity.stop()
        ep_server.stop()

    # -- the verdict -------------------------------------------------------------------------
    problems = []
    if not drained:
        problems.append(f"did not drain within {DRAIN_DEADLINE_S:.0f} s of the shop going quiet "
                        f"(status: {results['status']}; blockers: {blockers})")
    crashes = sb.server_errors + ep_server.errors + activity.errors
    if crashes:
        problems.append(f"simulator crashed: {crashes[:2]}")
    if results["cli_failures"]:
        problems.append(f"ordersync status/dlq failed: {results['cli_failures']}")
    orders_status = status_data.get("orders", {})
    if orders_status.get("pending"):
        problems.append(f"`ordersync status --json` still shows work: {results['status']}")
    silent = [e for e in supervisor.exits if e["process"].startswith("worker") and e["code"] == 0]
    if silent:
        problems.append(f"worker(s) exited with code 0 without being asked to stop: {silent}")
    if any(e["process"] == "poller" for e in supervisor.exits):
        problems.append(f"the poller exited on its own: {supervisor.exits}")
    bad_exits = {n: c for n, c in codes.items() if c not in (0, None)}
    if bad_exits or None in codes.values():
        problems.append(f"daemon processes did not stop cleanly on SIGTERM: {codes}")
    if verdict.kinds:
        problems.append(verdict.summary())
    assert not problems, "\n".join(problems)
    assert fleet.kills >= KILLS
