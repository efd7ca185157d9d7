"""The Redis store's connection: its client, the hot-path script runner, errors converted.

``RedisStore`` and its parts (``Reservations``, ``Settlements``) share one of these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from gateway.store.port import StoreError, StoreRejected
from gateway.store.redis.errors import guard
from gateway.store.redis.healer import ClientHealer
from gateway.store.redis.pipelined import ScriptRunner
from gateway.store.redis.scripts import Script

T = TypeVar("T")


class RedisConnection:
    """A redis-py asyncio client (``Redis`` or ``RedisCluster``) and how scripts run on it."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        scripts: ScriptRunner | None = None,
        rebuild: Callable[[], RedisCluster] | None = None,
    ) -> None:
        """``scripts``, when given, runs the reserve and settle scripts (and, on a cluster,
        the lease registry's writes): ``PipelinedConnection`` or ``ClusterPipelined``.
        ``rebuild`` makes a new cluster client, for when this one keeps failing."""
        self._client = client
        self._healer = ClientHealer(rebuild) if rebuild is not None else None
        self.cluster = isinstance(client, RedisCluster)
        self.scripts = scripts

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client (replaced on a cluster after it failed too often)."""
        return self._client

    @property
    def execute(self) -> Callable[..., Awaitable[Any]]:
        """Sends one command for the scripts: on the script runner when there is one."""
        if self.scripts is not None:
            return self.scripts.execute
        return self._client.execute_command

    async def guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """``guard``, and on a cluster a new client after the old one failed too often."""
        if self._healer is None:
            return await guard(call)
        try:
            result = await guard(call)
        except StoreRejected:
            raise
        except StoreError:
            fresh = self._healer.failed(cast(RedisCluster, self._client))
            if fresh is not None:
                self._client = fresh
            raise
        self._healer.succeeded()
        return result

    async def eval(self, keys: list[str], args: Sequence[str | int | bytes], script: Script) -> Any:
        """Run ``script`` by its sha; by its text when Redis does not hold it (NOSCRIPT)."""
        execute = self.execute
        try:
            return await execute(*script.by_sha(keys, args))
        except NoScriptError:
            return await execute(*script.by_text(keys, args))

    async def aclose(self) -> None:
        if self.scripts is not None:
            await self.scripts.aclose()
        await self._client.aclose()
