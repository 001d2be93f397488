"""serve() and Sandbox: the simulators over real HTTP on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sync.clock import FakeClock
from sync.sandbox import Sandbox, serve


def echo(request: httpx.Request) -> httpx.Response:
    body = request.read()
    return httpx.Response(
        200,
        json={
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.url.params),
            "body": body.decode(),
            "auth": request.headers.get("authorization"),
        },
        headers={"X-Echo": "yes"},
    )


def test_round_trip_and_keep_alive() -> None:
    srv = serve(echo)
    try:
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        with httpx.Client(base_url=srv.url, auth=("k", "s")) as c:
            r = c.post("/v1/orders/1/status?x=1&y=%C3%A9", json={"status": 2})
            assert r.status_code == 200 and r.headers["X-Echo"] == "yes"
            assert r.headers["Content-Length"] == str(len(r.content))
            out = r.json()
            assert out["method"] == "POST" and out["path"] == "/v1/orders/1/status"
            assert out["query"] == {"x": "1", "y": "é"}
            assert json.loads(out["body"]) == {"status": 2}
            assert out["auth"].startswith("Basic ")
            chunked = c.post("/v1/x", content=iter([b'{"a"', b":1}"]))
            assert chunked.json()["body"] == '{"a":1}'
            for _ in range(5):
                assert c.get("/v1/y").status_code == 200
        # one connection served everything: HTTP/1.1 keep-alive
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            f = s.makefile("rb")
            for _ in range(2):
                s.sendall(b"GET /v1/a HTTP/1.1\r\nHost: x\r\n\r\n")
                assert f.readline().startswith(b"HTTP/1.1 200")
                length = 0
                while (line := f.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                assert length > 0
                f.read(length)
    finally:
        srv.stop()


def test_204_has_no_body() -> None:
    srv = serve(lambda r: httpx.Response(204))
    try:
        r = httpx.delete(srv.url + "/v1/orders/1")
        assert r.status_code == 204 and r.content == b""
    finally:
        srv.stop()


def test_dropped_response_closes_the_connection() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("gone", request=request)

    srv = serve(drop)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(srv.url + "/v1/x")
    finally:
        srv.stop()


def test_timeout_stalls_until_the_client_gives_up_and_stop_ends_the_stall() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    srv = serve(slow, stall_seconds=30)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(srv.url + "/v1/x", timeout=0.3)
    srv.stop()
    assert time.monotonic() - started < 5


def test_handler_crash_is_a_500_and_recorded() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug")

    srv = serve(boom)
    try:
        r = httpx.get(srv.url + "/v1/x")
        assert r.status_code == 500 and "bug" in r.json()["error"]
        assert len(srv.errors) == 1
    finally:
        srv.stop()


# ------------------------------------------------------------------------------ Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=3, orders=120, clock=FakeClock(), stall_seconds=2) as sb:
        yield sb
    assert not sb.server_errors


def test_sandbox_serves_both_apis(sandbox: Sandbox) -> None:
    assert sandbox.shopwired_url.endswith("/v1") and sandbox.wiredplus_url.endswith("/v1")
    with httpx.Client(base_url=sandbox.shopwired_url, auth=sandbox.shopwired_credentials) as c:
        pages: list[Any] = []
        offset = 0
        while True:
            page = c.get("/orders", params={"count": 100, "offset": offset}).json()
            pages += page
            if len(page) < 100:
                break
            offset += 100
        assert len(pages) == 120
        assert c.get("/orders/count").json() == {"count": 120}
        assert httpx.get(sandbox.shopwired_url + "/orders").status_code == 401
    with httpx.Client(base_url=sandbox.wiredplus_url, auth=sandbox.wiredplus_credentials) as c:
        assert c.get("/GetAccountInfo").json()["api_user"] == "sandbox"
    assert sandbox.shopwired.calls["GET /v1/orders"] == 3  # the 401 counts too
    assert sandbox.shopwired.responses[401] == 1


def test_sandbox_drop_after_write_over_http(sandbox: Sandbox) -> None:
    body = {
        "api_reference_id": "1",
        "order_reference": "1001",
        "customer_email": "a@example.com",
        "order_lines": [{"order_line_id": "1-1", "quantity": 1, "product_price": 2.5}],
    }
    sandbox.wiredplus.faults.drop_after_write_rate = 1.0
    with httpx.Client(base_url=sandbox.wiredplus_url, auth=sandbox.wiredplus_credentials) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.post("/UpdateOrder", json=body)
        assert sandbox.wiredplus.order_by_ref("1") is not None
        sandbox.wiredplus.faults.clear()
        assert c.post("/UpdateOrder", json=body).json()["message"] == "Order updated"


def test_sandbox_activity_thread(sandbox: Sandbox) -> None:
    sandbox.start_activity(interval_seconds=0.02, changes_per_tick=3, new_per_tick=1)
    deadline = time.monotonic() + 5
    while len(sandbox.activity_log) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    sandbox.stop_activity()
    assert len(sandbox.activity_log) >= 10 and not sandbox.activity_errors
    assert len(sandbox.shopwired.orders) > 120
    n = len(sandbox.activity_log)
    time.sleep(0.1)
    assert len(sandbox.activity_log) == n


def test_sandbox_needs_starting() -> None:
    sb = Sandbox()
    with pytest.raises(RuntimeError):
        _ = sb.shopwired_url
    assert sb.shopwired_transport() is not None
