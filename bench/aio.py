"""Run a coroutine on uvloop when it is installed (it comes with uvicorn[standard]); serve a
protocol on a port (the mock upstreams)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def serve_protocol(host: str, port: int, protocol: Callable[[], asyncio.Protocol]) -> None:
    """A TCP server of ``protocol`` until cancelled (a deep backlog: the load opens at once)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()
