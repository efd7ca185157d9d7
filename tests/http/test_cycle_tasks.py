"""A request's task is in the server's set while it runs and leaves it when it ends, however
it ends (what uvicorn's shutdown and concurrency limit count)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.server import ServerState

from gateway.http.serve_guard import GuardedConfig, GuardedHttpToolsProtocol

REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        peers = {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}
        return peers.get(name, default)

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def served(app: Any, raw: bytes, turns: int = 5) -> tuple[ServerState, Transport, int]:
    """The server's state and the bytes written once ``raw`` was answered; also how many
    tasks the set held after the first turn."""
    config = GuardedConfig(app, lifespan="off", access_log=False, log_config=None)
    config.load()
    state = ServerState()
    protocol = GuardedHttpToolsProtocol(config, state, {}, asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(raw)
    running = len(state.tasks)
    for _ in range(turns):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return state, transport, running


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def fail(scope: Any, receive: Any, send: Any) -> None:
    raise ValueError("broken app")


def test_an_answered_request_leaves_the_set_of_tasks() -> None:
    state, transport, running = asyncio.run(served(answer, REQUEST))
    assert running == 1
    assert not state.tasks
    assert transport.written.endswith(b"\r\n2\r\nok\r\n0\r\n\r\n")


def test_a_failed_request_leaves_the_set_of_tasks_after_its_500() -> None:
    state, transport, running = asyncio.run(served(fail, REQUEST))
    assert running == 1
    assert not state.tasks
    assert transport.written.startswith(b"HTTP/1.1 500 ")


def test_pipelined_requests_each_leave_the_set_of_tasks() -> None:
    state, transport, _ = asyncio.run(served(answer, REQUEST * 3, turns=12))
    assert not state.tasks
    assert transport.written.count(b"HTTP/1.1 200 OK") == 3
