"""A worker killed outright (SIGKILL) under `gateway serve --workers 2`: its live gauges go."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_serve import KEY, Served
from tests.mock_upstream import MockUpstream
from tests.support import DEFAULT_ROUTES, MOCK_KEY, free_port, routes_doc, tiers_doc

WAIT_S = 20


@pytest.fixture
def served(tmp_path: Path, upstream: MockUpstream) -> Iterator[Served]:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    tiers = tiers_doc({"free": {"routes": {**DEFAULT_ROUTES, "text": ["stall"]}}})
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path)]
    argv += ["--port", str(free_port()), "--workers", "2"]
    server = Served(argv, {"MOCK_KEY": MOCK_KEY, "GATEWAY_KEYS": f"{KEY}=free:alice"}, tmp_path)
    yield server
    server.stop()


def gauges(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    wanted = ("gateway_inflight_requests", "gateway_open_streams")
    return {
        family.name: sum(sample.value for sample in family.samples)
        for family in text_string_to_metric_families(text)
        if family.name in wanted
    }


def open_stream(served: Served) -> socket.socket:
    """A stalling stream, read up to its first chunk."""
    body = orjson.dumps(
        {"model": "text", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", served.port))
    sock.settimeout(WAIT_S)
    sock.sendall(head.encode() + body)
    received = b""
    while b"data: " not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    return sock


def serving_worker(served: Served, client: socket.socket) -> int:
    """The worker process holding the server side of ``client``'s connection."""
    client_port = client.getsockname()[1]
    inode = _server_socket_inode(served.port, client_port)
    for pid in _children(served.process.pid):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def _server_socket_inode(server_port: int, client_port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (
            int(local.split(":")[1], 16) == server_port
            and int(remote.split(":")[1], 16) == client_port
        ):
            return fields[9]
    raise AssertionError("the connection is not in /proc/net/tcp")


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def test_a_killed_workers_inflight_and_stream_gauges_are_dropped(served: Served) -> None:
    client = open_stream(served)
    try:
        assert gauges(served.url) == {"gateway_inflight_requests": 1, "gateway_open_streams": 1}
        os.kill(serving_worker(served, client), signal.SIGKILL)
        deadline = time.monotonic() + WAIT_S
        while (current := gauges(served.url)) != {
            "gateway_inflight_requests": 0,
            "gateway_open_streams": 0,
        }:
            assert time.monotonic() < deadline, f"a dead worker's gauges stay: {current}"
            time.sleep(0.1)
    finally:
        client.close()
    # the worker was replaced and the gateway still serves
    assert httpx.get(served.url + "/readyz").status_code == 200
