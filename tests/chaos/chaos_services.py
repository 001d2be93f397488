"""Chaos-suite plumbing: the real Redis and PostgreSQL servers, and ``ordersync`` subprocesses.

Everything here restores what it breaks:

* :func:`services_restored` is a context manager whose exit brings Redis and PostgreSQL back
  up (started again if they are down) whatever happened inside;
* :class:`Fleet` starts every ``ordersync`` subprocess in its own process group (a Celery
  worker is a main process plus its pool children) and, on exit, stops them all — SIGTERM to
  the group, then SIGKILL — so no process outlives a failed test.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BIN = Path(sys.executable).parent / "ordersync"

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
    "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=2"


# ------------------------------------------------------------------------------ Redis


def redis_up(timeout: float = 1.0) -> bool:
    """True when Redis answers PING."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait(check: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return bool(check())


def redis_cli(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def redis_start(timeout: float = 20.0) -> None:
    """Start the Redis server (the CI command) if it is not answering; wait for PING."""
    if redis_up():
        return
    for d in ("/var/lib/redis", "/var/log/redis"):
        os.makedirs(d, exist_ok=True)
    subprocess.run(REDIS_START, capture_output=True, timeout=20, check=False)
    if not _wait(redis_up, timeout):
        raise RuntimeError("Redis did not come back on 127.0.0.1:6379")


def redis_flushall_and_restart(down_seconds: float = 2.0) -> float:
    """FLUSHALL, shut the server down without saving, keep it down a while, start it again.
    Returns how long Redis was unreachable (seconds)."""
    redis_cli("FLUSHALL")
    stopped = time.monotonic()
    redis_cli("shutdown", "nosave")
    _wait(lambda: not redis_up(0.2), 10)
    time.sleep(down_seconds)
    redis_start()
    return time.monotonic() - stopped


# ------------------------------------------------------------------------- PostgreSQL


def pg_up() -> bool:
    """True when PostgreSQL accepts a connection and answers a query."""
    try:
        import psycopg

        with psycopg.connect(PG_DSN) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def _pg_ctl(action: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), "main", action],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def pg_restart(timeout: float = 60.0) -> float:
    """Restart the cluster and wait until it accepts connections; returns the outage length."""
    start = time.monotonic()
    _pg_ctl("restart")
    if not _wait(pg_up, timeout, step=0.2):
        pg_start(timeout)
    took = time.monotonic() - start
    dispose_pg_engines()
    return took


def dispose_pg_engines() -> int:
    """Drop the pooled connections a restart killed, in every SQLAlchemy engine of this
    process that talks to PostgreSQL — notably the ``pg_url`` fixture's own engine (no
    pre-ping), which would otherwise fail once when it drops the test schema."""
    import gc

    from sqlalchemy.engine import Engine

    engines = [o for o in gc.get_objects()
               if isinstance(o, Engine) and o.dialect.name == "postgresql"]
    for engine in engines:
        engine.dispose()
    return len(engines)


def pg_start(timeout: float = 60.0) -> None:
    """Start the cluster if it does not accept connections; wait until it does."""
    if pg_up():
        return
    _pg_ctl("start")
    if not _wait(pg_up, timeout, step=0.2):
        raise RuntimeError("PostgreSQL did not come back on 127.0.0.1:5432")


@contextlib.contextmanager
def services_restored() -> Iterator[None]:
    """Whatever happens inside, Redis and PostgreSQL are up again afterwards."""
    try:
        yield
    finally:
        errors = []
        for start in (redis_start, pg_start):
            try:
                start()
            except Exception as exc:  # keep trying the other one
                errors.append(f"{start.__name__}: {exc}")
        if errors:
            raise RuntimeError("could not restore services: " + "; ".join(errors))


# -------------------------------------------------------------------------- processes


try:  # resolved here, in the parent: the child must not import or lock anything
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test process dies (even by SIGKILL), so an
    aborted run leaves no daemon behind."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (which this suite created)."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, OSError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
    return out


@dataclass
class Proc:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    log: Path
    log_offset: int  # where this incarnation's output starts in ``log``
    started: float = field(default_factory=time.monotonic)


class Fleet:
    """``ordersync`` subprocesses (workers and the poller), each in its own process group."""

    def __init__(self, env: Mapping[str, str], logdir: Path, cwd: Path) -> None:
        self.env = dict(env)
        self.logdir = logdir
        self.cwd = cwd
        self.procs: dict[str, Proc] = {}
        self.kills = 0
        self._files: list[IO[bytes]] = []

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one ``ordersync`` command to completion."""
        return subprocess.run(
            [str(BIN), *args], env=self.env, cwd=self.cwd, capture_output=True, text=True,
            timeout=timeout, check=False,
        )

    def start(self, name: str, *args: str) -> Proc:
        log = self.logdir / f"{name}.log"
        fh = log.open("ab")
        self._files.append(fh)
        offset = log.stat().st_size
        popen = subprocess.Popen(
            [str(BIN), *args], env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=fh, stderr=fh, start_new_session=True, preexec_fn=_die_with_parent,
        )
        proc = Proc(name, list(args), popen, log, offset)
        self.procs[name] = proc
        return proc

    def start_worker(self, i: int, concurrency: int = 2) -> Proc:
        return self.start(f"worker{i}", "worker", "--concurrency", str(concurrency))

    def start_poller(self) -> Proc:
        return self.start("poller", "run")

    def ready(self, name: str) -> bool:
        """A worker is ready once Celery logged ``celery@… ready.`` for this incarnation."""
        proc = self.procs[name]
        with proc.log.open("rb") as fh:
            fh.seek(proc.log_offset)
            return b" ready." in fh.read()

    def wait_ready(self, name: str, timeout: float = 30.0) -> bool:
        return _wait(lambda: self.ready(name) or self.procs[name].popen.poll() is not None,
                     timeout, step=0.05) and self.procs[name].popen.poll() is None

    def sigkill(self, name: str) -> None:
        """SIGKILL the whole process group (a worker and its pool children) and reap it."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=10)
        self.kills += 1

    def restart(self, name: str) -> Proc:
        proc = self.procs[name]
        return self.start(name, *proc.args)

    def alive(self, name: str) -> bool:
        return self.procs[name].popen.poll() is None

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        """SIGTERM the group, wait, then SIGKILL whatever is left; returns the exit code."""
        proc = self.procs[name]
        pgid = proc.popen.pid
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=timeout)
        if proc.popen.poll() is None or _group_members(pgid):
            # Pool children may outlive their parent: whatever is left of the group goes.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)
        return proc.popen.returncode

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for name in list(self.procs):
            try:
                codes[name] = self.stop(name)
            except Exception:  # never let cleanup of one process skip the others
                codes[name] = None
        for fh in self._files:
            with contextlib.suppress(OSError):
                fh.close()
        self._files.clear()
        return codes

    def tail(self, name: str, chars: int = 3000) -> str:
        log = self.logdir / f"{name}.log"
        if not log.exists():
            return ""
        return log.read_bytes()[-chars:].decode("utf-8", "replace")

# ------------------------------------------------------------------ shared by both chaos runs


def pass_covers(pass_started_at: float, t_stop: float) -> bool:
    """Whether a pass that started at ``pass_started_at`` (UNIX seconds) has read every change
    the shop made up to ``t_stop``: its window ends the product's default settle delay
    (``ORDERSYNC_SETTLE_DELAY``, 30 s) before it started, so a pass that started sooner sees
    none of the last changes. (A drain check without the settle delay passes on a pass that
    never saw the shop's final orders.)"""
    from config.settings import Settings

    settle = Settings.model_fields["settle_delay"].default.total_seconds()
    return pass_started_at >= t_stop + settle + 2


def wait_for(check: Any, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:
            pass  # a server is restarting; ask again
        time.sleep(step)
    return False


class Supervisor:
    """What Docker's restart policy would do: a daemon process that exited is started again
    (and the exit is recorded — none is expected)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.exits: list[dict[str, Any]] = []

    def check(self, phase: str) -> None:
        for name in list(self.fleet.procs):
            if not self.fleet.alive(name):
                code = self.fleet.procs[name].popen.returncode
                self.exits.append({"process": name, "code": code, "phase": phase,
                                   "log_tail": self.fleet.tail(name, 600)})
                self.fleet.restart(name)


@contextlib.contextmanager
def redis_db_flushed(db: int) -> Iterator[None]:
    """Leave no Celery or rate-limit keys of this run behind in Redis database ``db``."""
    try:
        yield
    finally:
        if redis_up():
            redis_cli("-n", str(db), "FLUSHDB")


def results_table(rows: list[dict[str, Any]], figures: dict[str, Any], drain_s: float) -> str:
    head = ("| fault | injected | orders expected / delivered / lost / dup | events expected / "
            "delivered / lost / dup | time to drain |\n|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        inj = ", ".join(f"{k} {v}" for k, v in r["injected"].items())
        drain = f"{r['drain_s']} s" if r.get("drain_s") is not None else "—"
        lines.append(
            f"| {r['fault']} | {inj} | {r['orders_expected']} / {r['orders_delivered']} / "
            f"{r['orders_lost']} / {r['orders_duplicated']} | {r['events_expected']} / "
            f"{r['events_delivered']} / {r['events_lost']} / {r['events_duplicated']} | "
            f"{drain} |")
    f = figures
    lines.append(
        f"| **whole run** (after the shop went quiet) | | **{f['required_orders']} required / "
        f"{f['required_delivered']} / {f['orders_lost']} / {f['orders_duplicated']}** | "
        f"**{f['ledger_events']} / {f['wiredplus_events']} / {f['events_lost']} / "
        f"{f['events_duplicated']}** | **{drain_s:.1f} s** |")
    return "\n".join(lines)


def sigkill_phase(fleet: Fleet, monitor: Any, phases: list[Any], supervisor: Supervisor,
                  activity: Any, rng: Any, *, kills: int, burst: tuple[int, int],
                  small_burst: tuple[int, int]) -> None:
    """Fault: SIGKILL a worker (main process and pool children) ``kills`` times, alternating
    between the two, restarting it each time; shop activity keeps work in flight."""
    phase = monitor.begin("sigkill", "SIGKILL a worker, restart it")
    phases.append(phase)
    activity.burst(*burst)
    for k in range(kills):
        name = f"worker{k % 2}"
        fleet.wait_ready(name, 20)
        time.sleep(rng.uniform(0.2, 0.8))
        fleet.sigkill(name)
        fleet.restart(name)
        if k % 4 == 3:
            activity.burst(*small_burst)
    for i in (0, 1):
        fleet.wait_ready(f"worker{i}", 20)
    phase.injected = {"SIGKILLs": fleet.kills}
    monitor.end(phase)
    supervisor.check(phase.name)


def redis_phase(monitor: Any, phases: list[Any], supervisor: Supervisor, activity: Any, *,
                burst: tuple[int, int], before_s: float, after_s: float) -> None:
    """Fault: Redis ``FLUSHALL`` (every database) and a server restart, with work in flight."""
    phase = monitor.begin("redis", "Redis FLUSHALL + restart")
    phases.append(phase)
    activity.burst(*burst)
    time.sleep(before_s)
    down = redis_flushall_and_restart(down_seconds=2.0)
    time.sleep(after_s)
    phase.injected = {"FLUSHALL": 1, "restarts": 1, "down_s": round(down, 1)}
    monitor.end(phase)
    supervisor.check(phase.name)
