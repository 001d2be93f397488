"""Serve a ``httpx.Request -> httpx.Response`` handler over real HTTP, and the whole sandbox.

Contract
--------
:func:`serve` runs ``handler`` behind a :class:`http.server.ThreadingHTTPServer` on loopback:
HTTP/1.1 with keep-alive, every response carries ``Content-Length`` (except 1xx/204/304,
which have no body), one daemon thread per connection, Nagle off. Each incoming request
becomes an ``httpx.Request`` (method, ``http://host:port`` + raw path and query, headers, body
-- ``Content-Length`` or chunked) and the handler's ``httpx.Response`` is written back as is.

How handler exceptions look on the wire:

* ``httpx.RemoteProtocolError`` (or any other ``httpx.TransportError`` except timeouts): the
  connection is closed without a response (the client sees "server disconnected").
* ``httpx.TimeoutException`` (e.g. ``ReadTimeout``): the server stalls ``stall_seconds``
  (real time: a client's timeout is wall-clock) without answering, then closes the
  connection. ``RunningServer.stop()`` cuts stalls short.
* anything else: 500 with ``{"status": 500, "code": 9, "error"/"message": "sandbox crashed:
  ..."}`` and the traceback kept in ``RunningServer.errors``.

:class:`Sandbox` (a context manager) builds both simulators on one clock and one seed, serves
them on free loopback ports and exposes ``shopwired_url``/``wiredplus_url`` (ending in ``/v1``),
the credentials and the simulator objects. ``start_activity`` runs
:class:`~sync.sandbox.generator.Activity` on a background thread every ``interval_seconds``
of *real* time (a FakeClock's ``sleep`` would not wait), until ``stop_activity``/``stop``.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import httpx

from sync.clock import Clock, SystemClock
from sync.sandbox.generator import Activity
from sync.sandbox.shopwired import ShopWiredSimulator
from sync.sandbox.wiredplus import WiredPlusSimulator

Handler = Callable[[httpx.Request], httpx.Response]

_NO_BODY = frozenset({204, 304})
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: Handler, stall_seconds: float) -> None:
        self.app = app
        self.stall_seconds = stall_seconds
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def track(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._conns.discard(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is not a server error:
        no traceback on stderr for it."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        host, port = self.server.server_address[:2]
        request = httpx.Request(
            self.command,
            f"http://{host!s}:{port}{self.path}",
            headers=[(k, v) for k, v in self.headers.items()],
            content=body,
        )
        try:
            response = self.server.app(request)
            content = response.read()
        except httpx.TimeoutException:
            self.server.stopping.wait(self.server.stall_seconds)
            self.close_connection = True
            return
        except httpx.TransportError:
            self.close_connection = True
            return
        except Exception as exc:
            self.server.errors.append(traceback.format_exc())
            text = f"sandbox crashed: {type(exc).__name__}: {exc}"
            response = httpx.Response(
                500,
                json={"status": 500, "code": 9, "error": text, "message": text},
            )
            content = response.read()
        self._write(response, content)

    def _write(self, response: httpx.Response, content: bytes) -> None:
        status = response.status_code
        reason = response.reason_phrase or "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"]
        for key, value in response.headers.multi_items():
            if key.lower() not in _HOP_HEADERS:
                lines.append(f"{key}: {value}")
        if status in _NO_BODY or 100 <= status < 200:
            content = b""
        else:
            lines.append(f"Content-Length: {len(content)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + content if self.command != "HEAD" else head)
        except OSError:
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_DELETE = _serve
    do_PATCH = _serve
    do_HEAD = _serve


class RunningServer:
    """A handler being served; ``url`` is ``http://127.0.0.1:PORT`` (no trailing slash)."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://{self.host}:{self.port}"
        self._stopped = False

    @property
    def errors(self) -> list[str]:
        """Tracebacks of handler crashes (answered 500)."""
        return self._server.errors

    def stop(self) -> None:
        """Stop accepting, close open keep-alive connections, end stalls. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(
    handler: Handler, host: str = "127.0.0.1", port: int = 0, *, stall_seconds: float = 30.0
) -> RunningServer:
    """Serve ``handler`` on ``host:port`` (port 0 = a free one) in a daemon thread."""
    server = _Server((host, port), handler, stall_seconds)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"sandbox-http-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return RunningServer(server, thread)


class ServedSimulators:
    """Lifecycle shared by the sandboxes: a shop side and a WiredPlus side, each behind
    :func:`serve` on loopback. Subclasses say which handlers (:meth:`_handlers`) and stop
    their own activity thread (:meth:`stop_activity`). ``start`` and ``stop`` are idempotent;
    the object is its own context manager."""

    host: str
    stall_seconds: float
    _servers: dict[str, RunningServer]

    def _handlers(self) -> dict[str, Handler]:
        raise NotImplementedError

    _activity_stop: threading.Event
    _activity_thread: threading.Thread | None

    def stop_activity(self) -> None:
        """Stop the activity thread, if running, and wait for it."""
        self._activity_stop.set()
        if self._activity_thread is not None:
            self._activity_thread.join(timeout=5)
            self._activity_thread = None

    def start(self) -> Self:
        """Start both HTTP servers (idempotent)."""
        if not self._servers:
            for name, handler in self._handlers().items():
                self._servers[name] = serve(handler, self.host,
                                            stall_seconds=self.stall_seconds)
        return self

    def stop(self) -> None:
        """Stop activity and both servers (idempotent)."""
        self.stop_activity()
        for srv in self._servers.values():
            srv.stop()
        self._servers.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Sandbox(ServedSimulators):
    """Both simulators, one clock, one seed, served on free loopback ports.

    Use as ``with Sandbox(orders=200) as sb: ...``; ``sb.shopwired_url`` and
    ``sb.wiredplus_url`` end in ``/v1``. ``orders`` generated orders are added at
    construction, ``created`` spread over ``created_between`` (default: the 30 days before
    ``clock.now()``).

    ``shopwired_latency`` / ``wiredplus_latency`` (seconds, ± ``latency_jitter``) make each
    simulated API answer that slowly (see :class:`~sync.sandbox._common.Latency`; requests on
    different connections wait concurrently). ``max_update_rows``, ``bulk_enabled`` and
    ``bulk_cost`` configure WiredPlus ``BulkOrderUpdate`` (see :mod:`sync.sandbox.wiredplus`).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        orders: int = 0,
        created_between: tuple[datetime, datetime] | None = None,
        host: str = "127.0.0.1",
        shopwired_rate_limit: bool = True,
        bucket_size: int = 40,
        leak_per_second: float = 2.0,
        retry_after_on_429: bool = True,
        wiredplus_rate_limit: bool = False,
        hourly_limit: int = 10000,
        stall_seconds: float = 30.0,
        shopwired_latency: float = 0.0,
        wiredplus_latency: float = 0.0,
        latency_jitter: float = 0.0,
        max_update_rows: int = 50,
        bulk_enabled: bool = True,
        bulk_cost: str = "request",
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.seed = seed
        self.host = host
        self.stall_seconds = stall_seconds
        self.shopwired = ShopWiredSimulator(
            clock=self.clock,
            seed=seed,
            bucket_size=bucket_size,
            leak_per_second=leak_per_second,
            enforce_rate_limit=shopwired_rate_limit,
            retry_after_on_429=retry_after_on_429,
            latency=shopwired_latency,
            jitter=latency_jitter,
        )
        self.wiredplus = WiredPlusSimulator(
            clock=self.clock,
            seed=seed,
            hourly_limit=hourly_limit,
            enforce_rate_limit=wiredplus_rate_limit,
            latency=wiredplus_latency,
            jitter=latency_jitter,
            max_update_rows=max_update_rows,
            bulk_enabled=bulk_enabled,
            bulk_cost=bulk_cost,
        )
        if orders:
            self.shopwired.generate_orders(orders, created_between=created_between)
        self.activity = Activity(self.shopwired, random.Random(f"activity-{seed}"))
        self.activity_log: list[tuple[int, str]] = []
        self.activity_errors: list[str] = []
        self._servers: dict[str, RunningServer] = {}
        self._activity_thread: threading.Thread | None = None
        self._activity_stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def _handlers(self) -> dict[str, Handler]:
        return {"shopwired": self.shopwired.handle, "wiredplus": self.wiredplus.handle}

    # ------------------------------------------------------------------ addresses

    def _server(self, name: str) -> RunningServer:
        srv = self._servers.get(name)
        if srv is None:
            raise RuntimeError("the sandbox is not running; call start() or use it in `with`")
        return srv

    @property
    def shopwired_url(self) -> str:
        """ShopWired base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return self._server("shopwired").url + "/v1"

    @property
    def wiredplus_url(self) -> str:
        """WiredPlus base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return self._server("wiredplus").url + "/v1"

    @property
    def shopwired_credentials(self) -> tuple[str, str]:
        """(API key, API secret) for HTTP Basic auth."""
        return self.shopwired.api_key, self.shopwired.api_secret

    @property
    def wiredplus_credentials(self) -> tuple[str, str]:
        """(API key name, API key) for HTTP Basic auth."""
        return self.wiredplus.api_user, self.wiredplus.api_key

    @property
    def server_errors(self) -> list[str]:
        """Handler crash tracebacks from both servers (should stay empty)."""
        return [e for srv in self._servers.values() for e in srv.errors]

    def shopwired_transport(self) -> httpx.MockTransport:
        """In-process transport to the ShopWired simulator (no sockets)."""
        return httpx.MockTransport(self.shopwired.handle)

    def wiredplus_transport(self) -> httpx.MockTransport:
        """In-process transport to the WiredPlus simulator (no sockets)."""
        return httpx.MockTransport(self.wiredplus.handle)

    # ------------------------------------------------------------------ activity

    def start_activity(
        self, interval_seconds: float = 1.0, changes_per_tick: int = 5, new_per_tick: int = 1
    ) -> None:
        """Every ``interval_seconds`` (real time) apply one :meth:`Activity.step`."""
        self.stop_activity()
        self._activity_stop = threading.Event()
        stop = self._activity_stop

        def run() -> None:
            while not stop.wait(interval_seconds):
                try:
                    self.activity_log.extend(self.activity.step(changes_per_tick, new_per_tick))
                except Exception:
                    self.activity_errors.append(traceback.format_exc())

        self._activity_thread = threading.Thread(target=run, name="sandbox-activity", daemon=True)
        self._activity_thread.start()


def describe(sb: Sandbox) -> str:
    """One JSON line with the sandbox's URLs and credentials (for CLIs and logs)."""
    return json.dumps(
        {
            "shopwired_url": sb.shopwired_url,
            "shopwired_credentials": list(sb.shopwired_credentials),
            "wiredplus_url": sb.wiredplus_url,
            "wiredplus_credentials": list(sb.wiredplus_credentials),
        }
    )


DOCKER_HOST_NAME = "host.docker.internal"
"""The name containers use for the machine running the sandbox: built into Docker Desktop
(macOS, Windows); on Linux the compose file maps it to the host (``host-gateway``)."""


def connection_env(
    shopwired: tuple[str, int], wiredplus: tuple[str, int], *,
    shopwired_credentials: tuple[str, str], wiredplus_credentials: tuple[str, str],
    dotenv: bool,
) -> str:
    """The settings that point ordersync at a sandbox whose servers clients reach at
    ``(host, port)``: shell ``export`` lines, or with ``dotenv`` one ``NAME=value`` per line
    for a ``.env`` file (docker compose reads it; later lines win over earlier ones)."""
    values = {
        "SHOPWIRED_BASE_URL": f"http://{shopwired[0]}:{shopwired[1]}/v1",
        "SHOPWIRED_API_KEY": shopwired_credentials[0],
        "SHOPWIRED_API_SECRET": shopwired_credentials[1],
        "WIREDPLUS_BASE_URL": f"http://{wiredplus[0]}:{wiredplus[1]}/v1",
        "WIREDPLUS_API_USER": wiredplus_credentials[0],
        "WIREDPLUS_API_KEY": wiredplus_credentials[1],
    }
    if dotenv:
        return "\n".join(f"{k}={v}" for k, v in values.items())
    names = list(values)
    return "\n".join(
        "export " + " ".join(f"{k}={values[k]}" for k in group)
        for group in (names[:3], names[3:])
    )


def client_host(listen_host: str) -> str:
    """The address a client on this machine uses for a server listening on ``listen_host``
    (all addresses: loopback)."""
    return "127.0.0.1" if listen_host in ("0.0.0.0", "::", "") else listen_host
