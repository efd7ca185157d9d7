"""A raw TCP upstream that answers whatever bytes a test scripts, per requested model.

The mock upstream (a real HTTP server) cannot misbehave at the byte level; this one can:
oversized or endless bodies, wrong content types, bodies cut short, encodings nobody asked for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import orjson

# model id → an async generator of the raw bytes to send (status line included)
Script = Callable[[], AsyncIterator[bytes]]


class HostileUpstream:
    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = scripts
        self.port = 0
        self.bytes_sent: dict[str, int] = {}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = orjson.loads(await reader.readexactly(length)) if length else {}
            model = str(body.get("model", ""))
            sent = 0
            async for piece in self.scripts[model]():
                writer.write(piece)
                sent += len(piece)
                self.bytes_sent[model] = sent
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @contextmanager
    def running(self) -> Iterator[HostileUpstream]:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve() -> asyncio.Server:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            return server

        def run() -> None:
            asyncio.set_event_loop(loop)
            holder.append(loop.run_until_complete(serve()))
            started.set()
            loop.run_forever()

        holder: list[asyncio.Server] = []
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        started.wait(5)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(_shutdown(holder[0]), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


async def _shutdown(server: asyncio.Server) -> None:
    """Stop listening and end every connection still being served."""
    server.close()
    handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)


def head(status: str = "200 OK", **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
