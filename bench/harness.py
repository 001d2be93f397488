"""Building blocks of the benchmark: the sandbox process, daemon subprocesses, measurements.

* :class:`SandboxProcess` starts :mod:`bench.sandbox_proc` and talks to its control endpoint.
* :func:`ordersync_env` builds the environment of an ``ordersync`` subprocess (nothing of the
  caller's own ``SHOPWIRED_*``/``WIREDPLUS_*``/``ORDERSYNC_*`` configuration leaks in; the
  subprocesses run in a scratch directory so no ``.env`` file is read).
* :class:`Daemon` is one measured subprocess; :class:`Sampler` samples CPU time and RSS of every
  daemon process *and its children* (Celery prefork children) with psutil on a thread.
* :func:`pg_schema` / :func:`flush_redis` give each scenario a private PostgreSQL schema
  (dropped afterwards) and an empty Redis database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import httpx
import psutil  # type: ignore[import-untyped]

from sync.service.dispatch import PRIORITY_STEPS

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_REDIS_BASE = [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")]
DEFAULT_REDIS_DB = 12
BIN = Path(sys.executable).parent / "ordersync"
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- sandbox


@dataclass(frozen=True)
class SandboxInfo:
    shopwired_url: str
    shopwired_key: str
    shopwired_secret: str
    wiredplus_url: str
    wiredplus_user: str
    wiredplus_key: str
    control_url: str
    pid: int
    orders: int


class SandboxProcess:
    """``python -m bench.sandbox_proc`` as a context manager."""

    def __init__(
        self,
        *,
        orders: int,
        seed: int = 5,
        days: float = 29.0,
        gap_minutes: float = 60.0,
        rate_limit: bool = False,
        bucket: int = 40,
        leak: float = 2.0,
        log_dir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.args = [
            "--orders", str(orders), "--seed", str(seed), "--days", str(days),
            "--gap-minutes", str(gap_minutes), "--bucket", str(bucket), "--leak", str(leak),
            *extra_args,
        ]
        if rate_limit:
            self.args.append("--rate-limit")
        self.log_dir = log_dir
        self.proc: subprocess.Popen[str] | None = None
        self.info: SandboxInfo | None = None
        self._http = httpx.Client(timeout=60.0)

    def start(self, timeout: float = 300.0) -> SandboxInfo:
        stderr: IO[str] | int = subprocess.DEVNULL
        if self.log_dir is not None:
            stderr = (self.log_dir / "sandbox.log").open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sandbox_proc", *self.args],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT,
            preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None
        line = _readline(self.proc.stdout, timeout)
        if not line:
            raise RuntimeError("the sandbox process did not start")
        d = json.loads(line)
        self.info = SandboxInfo(
            shopwired_url=d["shopwired_url"],
            shopwired_key=d["shopwired_credentials"][0],
            shopwired_secret=d["shopwired_credentials"][1],
            wiredplus_url=d["wiredplus_url"],
            wiredplus_user=d["wiredplus_credentials"][0],
            wiredplus_key=d["wiredplus_credentials"][1],
            control_url=d["control_url"],
            pid=int(d["pid"]),
            orders=int(d["orders"]),
        )
        return self.info

    def stats(self, times: bool = False, refs: bool = False) -> dict[str, Any]:
        assert self.info is not None
        r = self._http.get(
            f"{self.info.control_url}/stats", params={"times": int(times), "refs": int(refs)}
        )
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def reset(self) -> None:
        assert self.info is not None
        self._http.post(f"{self.info.control_url}/reset").raise_for_status()

    def activity(self, changes: int, new: int = 0) -> list[tuple[int, str]]:
        assert self.info is not None
        r = self._http.post(
            f"{self.info.control_url}/activity", params={"changes": changes, "new": new}
        )
        r.raise_for_status()
        return [(int(a), str(b)) for a, b in r.json()["changes"]]

    def created(self, start: int | None, end: int | None, archived: bool) -> list[tuple[int, int]]:
        """``(created second, id)`` of the (non-)archived orders created in [start, end]
        (UNIX seconds, inclusive), in list order."""
        assert self.info is not None
        params: dict[str, int] = {"archived": int(archived)}
        if start is not None:
            params["from"] = start
        if end is not None:
            params["to"] = end
        r = self._http.get(f"{self.info.control_url}/created", params=params)
        r.raise_for_status()
        return [(int(ts), int(oid)) for ts, oid in r.json()["rows"]]

    def stop(self) -> None:
        self._http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline(stream: IO[str], timeout: float) -> str:
    """First line of ``stream`` within ``timeout`` seconds ('' on timeout or EOF)."""
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else ""


# ---------------------------------------------------------------------------- config


def ordersync_env(
    info: SandboxInfo,
    database_url: str,
    *,
    redis_url: str | None = None,
    rate_limited: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for an ``ordersync`` subprocess against the sandbox ``info``.

    With ``rate_limited=False`` (the sandbox does not enforce its bucket) the client-side
    ShopWired bucket is opened up so the limiter measures nothing but the pipeline; the
    WiredPlus hourly budget is raised in every case (the sandbox does not enforce it).
    """
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("SHOPWIRED_", "WIREDPLUS_", "ORDERSYNC_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        SHOPWIRED_BASE_URL=info.shopwired_url,
        SHOPWIRED_API_KEY=info.shopwired_key,
        SHOPWIRED_API_SECRET=info.shopwired_secret,
        WIREDPLUS_BASE_URL=info.wiredplus_url,
        WIREDPLUS_API_USER=info.wiredplus_user,
        WIREDPLUS_API_KEY=info.wiredplus_key,
        DATABASE_URL=database_url,
        ORDERSYNC_LOG_FORMAT="json",
        ORDERSYNC_SETTLE_DELAY="1s",
        ORDERSYNC_STORE="bench",
        ORDERSYNC_WIREDPLUS_HOURLY_LIMIT="10000000",
    )
    if not rate_limited:
        env.update(ORDERSYNC_SHOPWIRED_RATE="1000", ORDERSYNC_SHOPWIRED_BUCKET="40")
    if redis_url:
        env["REDIS_URL"] = redis_url
    if extra:
        env.update(extra)
    return env


@contextlib.contextmanager
def pg_schema(base_url: str = PG_URL) -> Iterator[str]:
    """A DATABASE_URL on a fresh private PostgreSQL schema, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(base_url)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        for attempt in range(5):  # the server may be restarting (a shared machine)
            try:
                with eng.begin() as c:
                    c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                break
            except sa.exc.OperationalError:
                if attempt == 4:
                    print(f"bench: could not drop schema {schema}", file=sys.stderr)
                time.sleep(2.0)
        eng.dispose()


def redis_url(db: int) -> str:
    return f"{_REDIS_BASE[0]}/{db}"


def set_redis_base(url: str) -> None:
    """Point every scenario at another Redis server (``redis://host:port``, no database)."""
    _REDIS_BASE[0] = url.rstrip("/")


class PrivateRedis:
    """A Redis server of the benchmark's own on a free loopback port, configured like the
    shared one (no persistence), for machines where other sessions restart or FLUSHALL the
    shared server mid-measurement."""

    def __init__(self, binary: str = "redis-server") -> None:
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        import socket

        import redis

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        self.url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=1)
                client.ping()
                client.close()
                return self.url
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def flush_redis(url: str) -> int:
    """Empty the Redis database ``url``; returns the number of keys it held."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        n = int(cast(int, client.dbsize()))
        client.flushdb()
        return n
    finally:
        client.close()


def queue_length(url: str, queue: str = "ordersync") -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        # One list per priority step (workers.app): the queue itself and "<queue>\x06\x16<n>".
        return sum(int(cast(int, client.llen(queue if step == 0 else f"{queue}\x06\x16{step}")))
                   for step in PRIORITY_STEPS)
    finally:
        client.close()


def pg_counters(base_url: str = PG_URL) -> dict[str, int]:
    """Server-side counters of the benchmark database (``pg_stat_database``): transactions
    committed, rows inserted/updated. Server-wide for that database: other clients count too."""
    import sqlalchemy as sa

    eng = sa.create_engine(base_url)
    try:
        with eng.connect() as c:
            row = c.execute(sa.text(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated "
                "FROM pg_stat_database WHERE datname = current_database()"
            )).one()
    finally:
        eng.dispose()
    return {"commits": int(row[0]), "rollbacks": int(row[1]), "inserted": int(row[2]),
            "updated": int(row[3])}


def pg_table_writes(database_url: str) -> dict[str, dict[str, int]]:
    """Rows inserted/updated per ledger table of the private schema in ``database_url``
    (``pg_stat_user_tables``): exact for this benchmark, whoever else uses the server."""
    import re

    import sqlalchemy as sa

    m = re.search(r"search_path%3D([A-Za-z0-9_]+)", database_url)
    if m is None:
        return {}
    eng = sa.create_engine(PG_URL)
    try:
        with eng.connect() as c:
            rows = c.execute(sa.text(
                "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables "
                "WHERE schemaname = :schema"
            ), {"schema": m.group(1)}).all()
    finally:
        eng.dispose()
    return {str(r[0]): {"inserted": int(r[1]), "updated": int(r[2])} for r in rows}


def redis_commands(url: str) -> int:
    """Redis ``total_commands_processed`` (server-wide: every client and database count)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = cast(dict[str, Any], client.info("stats"))
        return int(info["total_commands_processed"])
    finally:
        client.close()


class InfraRestarted(RuntimeError):
    """PostgreSQL or Redis restarted during a measurement (e.g. another session's chaos
    tests on a shared machine): the queued tasks are gone and the figures are void."""


def infra_ids(redis: str | None = None) -> dict[str, str]:
    """Identities of the running PostgreSQL and Redis servers (change when they restart)."""
    out: dict[str, str] = {}
    with contextlib.suppress(Exception):
        import sqlalchemy as sa

        eng = sa.create_engine(PG_URL)
        try:
            with eng.connect() as c:
                out["postgres"] = str(c.execute(sa.text("SELECT pg_postmaster_start_time()"))
                                      .scalar())
        finally:
            eng.dispose()
    with contextlib.suppress(Exception):
        import redis as redis_mod

        client = redis_mod.Redis.from_url(redis or redis_url(DEFAULT_REDIS_DB), socket_timeout=3)
        try:
            out["redis"] = str(cast(dict[str, Any], client.info("server"))["run_id"])
        finally:
            client.close()
    return out


def check_infra(before: dict[str, str], what: str) -> None:
    """Raise :class:`InfraRestarted` if PostgreSQL or Redis is not the server it was."""
    now = infra_ids()
    changed = [k for k in ("postgres", "redis") if before.get(k) != now.get(k)]
    if changed:
        raise InfraRestarted(
            f"{' and '.join(changed)} restarted (or became unreachable) during {what}; "
            "its figures are void"
        )


def services_available(pg_url: str = PG_URL, redis: str | None = None) -> tuple[bool, bool]:
    """(PostgreSQL reachable, Redis reachable)."""
    pg_ok = redis_ok = False
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(pg_url)
        with eng.connect():
            pass
        eng.dispose()
        pg_ok = True
    except Exception:
        pg_ok = False
    try:
        import redis as redis_mod

        client = redis_mod.Redis.from_url(redis or redis_url(DEFAULT_REDIS_DB), socket_timeout=3)
        client.ping()
        client.close()
        redis_ok = True
    except Exception:
        redis_ok = False
    return pg_ok, redis_ok


# ---------------------------------------------------------------------------- processes


def _label(cmdline: list[str] | None, name: str) -> str:
    if not cmdline:
        return name
    parts = [os.path.basename(a) if a.startswith("/") else a for a in cmdline[:6]]
    if parts and parts[0].startswith("python"):
        parts = parts[1:]
    return " ".join(parts)[:70]


class MachineLoad:
    """Who used the machine's CPUs during a measurement.

    ``busy`` is the system-wide busy fraction (all processes, including short-lived ones);
    per-process figures come from two snapshots, so processes born and gone in between only
    show in ``busy``. The benchmark's own processes are passed to :meth:`stop`."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.cpu0 = psutil.cpu_times()
        self.snap0 = self._snapshot()

    @staticmethod
    def _snapshot() -> dict[int, tuple[str, float, float]]:
        out: dict[int, tuple[str, float, float]] = {}
        for p in psutil.process_iter(["name", "cmdline", "cpu_times", "create_time"]):
            info = p.info
            ct = info.get("cpu_times")
            if ct is None:
                continue
            out[p.pid] = (_label(info.get("cmdline"), str(info.get("name") or "?")),
                          float(ct.user + ct.system), float(info.get("create_time") or 0.0))
        return out

    def stop(self, ours_cpu_s: float, ours_pids: set[int]) -> dict[str, Any]:
        """Figures in cores (1.0 = one CPU busy for the whole time)."""
        wall = max(time.time() - self.t0, 1e-9)
        cpu1 = psutil.cpu_times()
        total = sum(cpu1) - sum(self.cpu0)
        idle = (cpu1.idle + getattr(cpu1, "iowait", 0.0)) - (
            self.cpu0.idle + getattr(self.cpu0, "iowait", 0.0))
        ncpu = psutil.cpu_count() or 1
        busy_cores = (1.0 - idle / total) * ncpu if total > 0 else 0.0
        snap1 = self._snapshot()
        me = os.getpid()
        groups: dict[str, float] = {}
        for pid, (label, cpu, created) in snap1.items():
            if pid in ours_pids or pid == me:
                continue
            prev = self.snap0.get(pid)
            used = cpu - (prev[1] if prev is not None and prev[2] == created else 0.0)
            if used <= 0:
                continue
            key = ("postgres" if label.startswith("postgres") else
                   "redis-server" if "redis-server" in label else label)
            groups[key] = groups.get(key, 0.0) + used
        pg_redis = groups.pop("postgres", 0.0) + groups.pop("redis-server", 0.0)
        orchestrator = 0.0
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(me).cpu_times()
            orchestrator = float(t.user + t.system) - self.snap0.get(me, ("", 0.0, 0.0))[1]
        ours = ours_cpu_s / wall
        foreign = max(busy_cores - ours - pg_redis / wall - orchestrator / wall, 0.0)
        top = sorted(groups.items(), key=lambda kv: -kv[1])[:3]
        return {
            "busy_cores": busy_cores,
            "benchmark_cores": ours,
            "postgres_redis_cores": pg_redis / wall,
            "orchestrator_cores": orchestrator / wall,
            "foreign_cores": foreign,
            "foreign_top": [[k, v / wall] for k, v in top if v / wall >= 0.02],
        }



@dataclass
class Daemon:
    """One measured subprocess (an ``ordersync`` command)."""

    role: str
    proc: subprocess.Popen[bytes]
    log: Path
    rusage_cpu: float | None = None  # user+sys seconds from wait4 (incl. reaped children)
    rusage_maxrss_mb: float | None = None
    returncode: int | None = None
    signalled: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        """Exit code if it has exited (reaped with wait4 to keep its rusage), else None."""
        if self.returncode is not None:
            return self.returncode
        pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._reaped(status, ru)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                return code
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.role} (pid {self.pid}) still running after {timeout}s")
            time.sleep(0.05)

    def _reaped(self, status: int, ru: Any) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode
        self.rusage_cpu = float(ru.ru_utime + ru.ru_stime)
        self.rusage_maxrss_mb = ru.ru_maxrss / 1024.0

    def terminate(self) -> None:
        """SIGTERM once (a second one would mean "exit now" to ordersync and Celery)."""
        if not self.signalled and self.poll() is None:
            self.signalled = True
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (Celery: warm shutdown), then SIGKILL to the group after ``timeout``."""
        if self.poll() is None:
            self.terminate()
            try:
                return self.wait(timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                return self.wait(10)
        assert self.returncode is not None
        return self.returncode

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the orchestrator dies (Linux
    ``PR_SET_PDEATHSIG``), so a killed benchmark leaves no daemon behind."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def start_ordersync(
    role: str, args: list[str], env: Mapping[str, str], log_dir: Path
) -> Daemon:
    """Start ``ordersync ARGS`` in a new process group, output to ``log_dir/<role>.log``."""
    log = log_dir / f"{role}.log"
    fh = log.open("ab")
    proc = subprocess.Popen(
        [str(BIN), *args], env=dict(env), cwd=log_dir, stdout=fh, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_die_with_parent,
    )
    fh.close()
    return Daemon(role=role, proc=proc, log=log)


def wait_for_text(path: Path, text: str, timeout: float, proc: Daemon | None = None) -> None:
    """Wait until ``text`` appears in the file ``path`` (e.g. Celery's ``ready.``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if text in path.read_text(errors="replace"):
                return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.role} exited ({proc.returncode}): {proc.tail()}")
        time.sleep(0.1)
    raise TimeoutError(f"{text!r} did not appear in {path} within {timeout}s")


@dataclass
class ProcStat:
    role: str
    pid: int
    cpu: float = 0.0  # last seen user+sys seconds
    cpu_start: float | None = None  # at the last ``mark``
    peak_rss: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)
    cpus: list[tuple[float, float]] = field(default_factory=list)


class Sampler:
    """Samples CPU time and RSS of daemon processes and all their children on a thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._roots: dict[int, str] = {}
        self.stats: dict[int, ProcStat] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, psutil.Process] = {}

    def watch(self, daemon: Daemon) -> None:
        with self._lock:
            self._roots[daemon.pid] = daemon.role
        self.sample()

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _proc(self, pid: int) -> psutil.Process:
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = psutil.Process(pid)
        return p

    def sample(self) -> None:
        now = time.time()
        with self._lock:
            roots = dict(self._roots)
            for root_pid, role in roots.items():
                try:
                    root = self._proc(root_pid)
                    members = [(root, role)] + [
                        (c, f"{role}/child") for c in root.children(recursive=True)
                    ]
                except psutil.Error:
                    continue
                for p, r in members:
                    try:
                        with p.oneshot():
                            t = p.cpu_times()
                            rss = p.memory_info().rss
                    except psutil.Error:
                        continue
                    st = self.stats.get(p.pid)
                    if st is None:
                        st = self.stats[p.pid] = ProcStat(role=r, pid=p.pid)
                    st.cpu = float(t.user + t.system)
                    st.peak_rss = max(st.peak_rss, rss)
                    st.rss.append((now, rss))
                    st.cpus.append((now, st.cpu))

    def mark(self) -> None:
        """Remember every known process's CPU time now (the start of a measurement)."""
        self.sample()
        with self._lock:
            for st in self.stats.values():
                st.cpu_start = st.cpu

    def cpu_since_mark(self, roles_prefix: str | None = None) -> float:
        """CPU seconds used since :meth:`mark` (processes born later count from 0)."""
        self.sample()
        with self._lock:
            return sum(
                st.cpu - (st.cpu_start or 0.0)
                for st in self.stats.values()
                if roles_prefix is None or st.role.startswith(roles_prefix)
            )

    def cpu_at(self, pid: int, when: float) -> float:
        """CPU seconds process ``pid`` had used by the last sample at or before ``when``."""
        with self._lock:
            st = self.stats.get(pid)
            if st is None:
                return 0.0
            before = [c for t, c in st.cpus if t <= when]
            return before[-1] if before else 0.0

    def peak_rss_mb(self) -> dict[str, float]:
        """Largest RSS per role (MB), the maximum over processes of that role."""
        out: dict[str, float] = {}
        with self._lock:
            for st in self.stats.values():
                out[st.role] = max(out.get(st.role, 0.0), st.peak_rss / 2**20)
        return out

    def rss_slope(
        self, start: float, end: float, progress: list[tuple[float, float]],
        progress_by_role: dict[str, list[tuple[float, float]]] | None = None,
        min_orders: float = 2000.0,
    ) -> dict[str, float]:
        """Per role, the largest RSS slope (MB per 1,000 orders) of its processes after warm-up.

        ``progress`` is ``(time, orders done)``; a role may have its own (the poller's work is
        orders *read*, the workers' orders *pushed*). Warm-up — the first quarter of the orders
        a process saw — is skipped; the slope is a least-squares fit of RSS on orders, and is
        only reported over at least ``min_orders`` orders (Python's RSS moves in steps of a few
        MB; over fewer orders the noise would dominate)."""
        out: dict[str, float] = {}
        with self._lock:
            stats = list(self.stats.values())
        for st in stats:
            prog = (progress_by_role or {}).get(st.role.split("/")[0], progress)
            pts: list[tuple[float, float]] = []
            for t, r in st.rss:
                if not start <= t <= end:
                    continue
                done = [n for pt, n in prog if pt <= t]
                if done:
                    pts.append((done[-1] / 1000.0, r / 2**20))
            if not pts:
                continue
            final = pts[-1][0]
            # After warm-up, and only while the work goes on (not the wind-down at the end).
            pts = [(x, y) for x, y in pts if 0.25 * final <= x < final]
            if len(pts) < 8 or (pts[-1][0] - pts[0][0]) * 1000 < min_orders:
                continue
            mx = sum(x for x, _ in pts) / len(pts)
            my = sum(y for _, y in pts) / len(pts)
            var = sum((x - mx) ** 2 for x, _ in pts)
            if var <= 0:
                continue
            slope = sum((x - mx) * (y - my) for x, y in pts) / var
            out[st.role] = max(out.get(st.role, -1e9), slope)
        return out

    def rss_growth_mb(self, start: float, end: float) -> dict[str, float]:
        """Per role, the largest RSS growth (MB) of its processes after warm-up: the highest
        sample in the last three quarters of the time each was sampled within [start, end],
        minus the sample a quarter of the way in. Warm-up (imports, first pages) is the first
        quarter; a flat process shows ~0 here whatever the number of orders."""
        out: dict[str, float] = {}
        with self._lock:
            for st in self.stats.values():
                pts = [(t, r) for t, r in st.rss if start <= t <= end]
                if len(pts) < 4:
                    continue
                quarter = pts[0][0] + 0.25 * (pts[-1][0] - pts[0][0])
                later = [r for t, r in pts if t >= quarter]
                growth = (max(later) - later[0]) / 2**20
                out[st.role] = max(out.get(st.role, -1e9), growth)
        return out
