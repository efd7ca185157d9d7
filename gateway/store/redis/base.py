"""The Redis store's connection: its client, the optional script runner, a script run by sha.

``RedisStore`` builds on this through ``redis_settle`` and ``redis_reserve``.
"""

from __future__ import annotations

from collections import deque
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


class RedisBase:
    """A redis-py asyncio client (``Redis`` or ``RedisCluster``) and how scripts run on it."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        stream_maxlen: int,
        scripts: ScriptRunner | None = None,
        rebuild: Callable[[], RedisCluster] | None = None,
    ) -> None:
        """``scripts``, when given, runs the reserve and settle scripts (and, on a cluster,
        the lease registry's writes): ``PipelinedConnection`` or ``ClusterPipelined``.
        ``rebuild`` makes a new cluster client, for when this one keeps failing."""
        self._client = client
        self._healer = ClientHealer(rebuild) if rebuild is not None else None
        self._cluster = isinstance(client, RedisCluster)
        self._maxlen = stream_maxlen
        self._scripts = scripts
        # (when, mark) of batches whose reply arrived: deleted by a batch FORGET_AFTER_S later
        self._forget: deque[tuple[float, str]] = deque()

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client, for the ledger's stream consumer (``gateway/ledger/``)."""
        return self._client

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
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

    async def _eval(
        self, keys: list[str], args: Sequence[str | int | bytes], script: Script
    ) -> Any:
        run = self._scripts.execute if self._scripts is not None else self._client.execute_command
        try:
            reply = await run("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            reply = await run("EVAL", script.text, len(keys), *keys, *args)
        return reply
