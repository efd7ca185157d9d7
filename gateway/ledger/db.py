"""The PostgreSQL connection pool, made on first use (a gateway starts while Postgres is down)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gateway.errors import StoreUnavailable
from gateway.extras import POSTGRES, MissingExtra

try:
    import asyncpg
except ImportError as error:  # imported only with DATABASE_URL set: the ledger is configured
    raise MissingExtra(POSTGRES) from error

CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 30.0
POOL_SIZE = 4
# Connection failures: retried by the shipper and counted in gateway_ledger_failures_total.
# asyncpg raises InternalClientError (ProtocolError among them) for a connection that Postgres
# closed under it mid-exchange, as at a server shutdown.
ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)


async def connect(url: str, timeout: float) -> Any:
    """One connection outside the pool (``gateway db upgrade``)."""
    return await asyncpg.connect(url, timeout=timeout)


class Database:
    """One pool per process; ``pool()`` connects (again) when there is none."""

    def __init__(self, url: str, *, size: int = POOL_SIZE) -> None:
        self._url = url
        self._size = size
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=1,
                    max_size=self._size,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=COMMAND_TIMEOUT_S,
                )
        return self._pool

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Rows of a read; ``StoreUnavailable`` (503) when Postgres cannot answer."""
        try:
            pool = await self.pool()
            async with pool.acquire() as conn:
                return list(await conn.fetch(sql, *args))
        except ERRORS as exc:
            raise StoreUnavailable("The usage ledger is unavailable; try again shortly") from exc

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(*ERRORS):
                await asyncio.wait_for(pool.close(), 5)
            pool.terminate()
