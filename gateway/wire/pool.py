"""Keep-alive connections per origin, with a cap on how many are open at once."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque

import httpx

from gateway.wire.connection import Connection
from gateway.wire.response_head import MAX_HEADER_BYTES, MAX_HEADERS

Origin = tuple[str, str, int]  # scheme, host, port


class ConnectionPool:
    """Hands out idle connections most-recently-used first (the least likely to have been
    closed by the other side) and opens new ones up to ``max_connections`` in total."""

    def __init__(
        self,
        max_connections: int,
        keepalive_expiry_s: float,
        ssl_context: ssl.SSLContext,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry_s
        self._ssl = ssl_context
        self._limits = (max_header_bytes, max_headers)
        self._idle: dict[Origin, list[Connection]] = {}
        # Open connections, each counted until its socket is gone (however that happens:
        # released, expired, dropped by the server, or its response abandoned unclosed).
        self._connections: set[Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(
        self, origin: Origin, connect_timeout: float | None, pool_timeout: float | None
    ) -> tuple[Connection, bool]:
        """(a connection to ``origin``, whether it was used before)."""
        idle = self.take_idle(origin)
        if idle is not None:
            return idle, True
        while len(self._connections) + self._connecting >= self._max and not self._evict_idle():
            await self._wait_for_room(pool_timeout)
            idle = self.take_idle(origin)
            if idle is not None:
                return idle, True
        self._connecting += 1
        try:
            connection = await self._connect(origin, connect_timeout)
        finally:
            self._connecting -= 1
            self._wake_one()
        self._connections.add(connection)
        connection.on_lost = self._forget
        return connection, False

    def release(self, connection: Connection, origin: Origin) -> None:
        reusable = connection.finish()
        if reusable:
            connection.idle_since = time.monotonic()
            idle = self._idle.get(origin)
            if idle is None:
                idle = self._idle[origin] = []
            idle.append(connection)
        else:
            self._drop(connection)
        if self._waiters:
            self._wake_one()

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def take_idle(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin`` still fresh, if there is one (``acquire`` without
        its wait)."""
        connections = self._idle.get(origin)
        now = time.monotonic()
        while connections:
            connection = connections.pop()
            if not connection.closed and now - connection.idle_since < self._expiry:
                return connection
            self._drop(connection)
        return None

    def _evict_idle(self) -> bool:
        """Close one idle connection to another origin to make room; False if there is none."""
        for connections in self._idle.values():
            if connections:
                self._drop(connections.pop(0))
                return True
        return False

    def _drop(self, connection: Connection) -> None:
        connection.close()
        self._forget(connection)

    def _forget(self, connection: Connection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self._wake_one()

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        secure = self._ssl if scheme == "https" else None
        max_header_bytes, max_headers = self._limits
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(loop, max_header_bytes, max_headers),
                    host,
                    port,
                    ssl=secure,
                    server_hostname=host if secure else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpx.ConnectError(f"Could not connect to {host}:{port}: {exc}") from None
        return connection

    async def _wait_for_room(self, timeout: float | None) -> None:
        """Wait to be woken by a released or lost connection.

        As in ``asyncio.Semaphore``, a waiter woken and then cancelled passes its wake-up on,
        so the room it was given is not lost to the waiters behind it; one woken just as its
        time ran out takes the room instead of failing."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            if _woken(waiter):
                return
            self._forget_waiter(waiter)
            raise httpx.PoolTimeout("No upstream connection became free in time") from None
        except BaseException:
            if _woken(waiter):
                self._wake_one()
            else:
                self._forget_waiter(waiter)
            raise

    def _forget_waiter(self, waiter: asyncio.Future[None]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _woken(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()
