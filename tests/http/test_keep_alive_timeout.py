"""The gateway's protocol keeps uvicorn's keep-alive timeout (on its own lazily moved timer)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from starlette.types import Receive, Scope, Send

from tests.support import ThreadedServer

KEEP_ALIVE_S = 0.4
REQUEST = b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    served = ThreadedServer(app, gateway=True, timeout_keep_alive=KEEP_ALIVE_S).start()
    yield served
    served.stop()


def answered(sock: socket.socket) -> bool:
    sock.sendall(REQUEST)
    received = b""
    while not received.endswith(b"ok"):
        chunk = sock.recv(65536)
        if not chunk:
            return False
        received += chunk
    return received.startswith(b"HTTP/1.1 200 ")


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    server: ThreadedServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert answered(sock)
        answered_at = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server
        assert time.monotonic() - answered_at >= KEEP_ALIVE_S * 0.9


def test_requests_closer_than_the_timeout_keep_the_connection_open(
    server: ThreadedServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(6):  # six waits of 0.6 of the timeout: past it in all, never between two
            assert answered(sock)
            time.sleep(KEEP_ALIVE_S * 0.6)
        assert answered(sock)
